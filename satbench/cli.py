"""The `satbench` command line: the top of the stack. Each subcommand is defined in a file of its own in this package
and drives one pillar: languages (satbench/language_commands.py), the bench, its report and comparisons
(satbench/bench_commands.py), and the hand-built constructions (satbench/construct_command.py)."""

import argparse
import sys

from harness.allocator import keep_freed_memory

from . import bench_commands, construct_command, language_commands


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="satbench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    language_commands.add_commands(commands)
    bench_commands.add_commands(commands)
    construct_command.add_commands(commands)
    # Dotted overrides (key=value) may stand anywhere on the line, also after options.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any(item.startswith("-") or "=" not in item for item in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides += extra
    keep_freed_memory()  # every subcommand builds and drops the same large tensors over and over (harness/allocator.py)
    try:
        return args.run(args) or 0
    except ValueError as error:
        # Bad input (unknown name, impossible length, bad config, corrupt file): one line naming it, exit 2.
        print(f"satbench: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
