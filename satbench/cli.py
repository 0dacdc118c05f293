"""satbench: which formal languages a transformer recognizes with soft, saturated or hard attention, and how that
changes as its parameters grow. Subcommands: the languages (list, sample, check), the bench (train and measure a grid
of cells), its report, the comparison of two runs or of two attention variants of one run, the hand-built
constructions, and a bench's exact splits exported and predictions made elsewhere scored."""

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version

from satbench.harness.allocator import keep_freed_memory

from . import bench_commands, construct_command, data_commands, language_commands


class OneLineParser(argparse.ArgumentParser):
    """argparse with the house rule for bad input: one line naming the problem (and where help is), exit 2. The
    subcommands' parsers are of this class too (add_subparsers takes the parent's class)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def main(argv=None) -> int:
    parser = OneLineParser(prog="satbench", description=__doc__)
    try:
        installed = version("satbench")
    except PackageNotFoundError:  # run from a checkout that was never installed
        installed = "unknown (not installed)"
    parser.add_argument("--version", action="version", version=f"satbench {installed}")
    commands = parser.add_subparsers(dest="command", required=True)
    language_commands.add_commands(commands)
    bench_commands.add_commands(commands)
    construct_command.add_commands(commands)
    data_commands.add_commands(commands)
    # Dotted overrides (key=value) may stand anywhere on the line, also after options.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any(item.startswith("-") for item in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        for item in extra:
            if "=" not in item:
                parser.error(f"'{item}' is neither an option nor an override of the form key=value")
        args.overrides += extra
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as typed: the bench records its command in every row
    keep_freed_memory()  # every subcommand builds and drops the same large tensors over and over (harness/allocator.py)
    try:
        return args.run(args) or 0
    except ValueError as error:
        # Bad input (unknown name, impossible length, bad config, corrupt file): one line naming it, exit 2.
        print(f"satbench: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a file or directory that cannot be read or written (read-only, full disk, ...)
        where = f"{error.filename}: " if error.filename else ""
        print(f"satbench: {where}{error.strerror or error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
