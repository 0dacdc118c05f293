"""Where a bench's rows came from: the git commit of the satbench source that ran, whether that source had changes
not committed, and the command line. Every row carries them (harness/run.py), and every report names them.

No torch here: the report's tests and a notebook may ask for the provenance of a tree without loading the bench.
"""

import shlex
import subprocess
import sys
from pathlib import Path

GIT_TIMEOUT_S = 5  # git answers in milliseconds; a hung network filesystem must not hold a bench up for longer
ROOT = Path(__file__).resolve().parents[1]  # the satbench tree the running code comes from: its package folders
# Folders of that tree that hold what the bench writes, not code: rows, reports, figures. A bench that resumes a run or
# republishes one under results/ changes files there, and would otherwise call its own clean tree dirty.
OUTPUTS = ("results",)


def git(args, cwd):
    """git's stdout for `args` run in `cwd`, or None where git is missing, fails or takes too long."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT_S,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def source_state(root=ROOT) -> dict:
    """{"commit": the checkout's HEAD, "dirty": whether the satbench tree `root` differs from HEAD} for the git checkout
    whose tracked files include `root` (default: the running satbench's own tree). Both None where there is none: git
    is missing, the package was installed as a copy, or `root` lies in a checkout without being tracked by it (an
    installed copy inside a virtual environment inside some repository must not be credited with that repository's
    commit).

    Dirty means a tracked file under `root` changed or an untracked file appeared there, outside its OUTPUTS: an
    untracked module can be imported and change what ran. The rest of an enclosing repository (satbench as a folder of
    a larger one) is no part of what ran. None where git did not say."""
    unknown = {"commit": None, "dirty": None}
    if not git(["ls-files", "--", "."], root):  # None (no checkout) or "" (nothing here is tracked)
        return unknown
    commit = git(["rev-parse", "HEAD"], root)
    if commit is None:  # a repository without a commit yet
        return unknown
    # Pathspecs relative to `root`: its own files only, without what the bench writes.
    status = git(["status", "--porcelain", "--", ".", *(f":(exclude){folder}" for folder in OUTPUTS)], root)
    if status is None:
        return {"commit": commit.strip(), "dirty": None}
    return {"commit": commit.strip(), "dirty": bool(status.strip())}


def command_line(argv=None) -> str:
    """The command as a shell would take it back: `satbench` and the arguments the command line parsed (argv), or
    this process's own sys.argv when the bench was started from Python."""
    if argv is not None:
        return shlex.join(["satbench", *argv])
    return shlex.join(sys.argv)
