"""The `satbench` command line: one subcommand per pillar, each defined next to the code it drives."""

import argparse
import sys

from languages import cli as languages_cli

from . import commands as bench_commands
from . import theory_check
from .allocator import keep_freed_memory


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="satbench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    languages_cli.add_commands(commands)
    bench_commands.add_commands(commands)
    theory_check.add_commands(commands)
    # Dotted overrides (key=value) may stand anywhere on the line, also after options.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any(item.startswith("-") or "=" not in item for item in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides += extra
    keep_freed_memory()  # every subcommand builds and drops the same large tensors over and over (probes/allocator.py)
    try:
        return args.run(args) or 0
    except ValueError as error:
        # Bad input (unknown name, impossible length, bad config, corrupt file): one line naming it, exit 2.
        print(f"satbench: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
