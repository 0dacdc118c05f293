"""Provenance: the commit, its dirty flag and the command line, read from git, recorded in every row and named in
every report's header; rows from before they were recorded say so."""

import json
import shutil
import subprocess

import pytest
import yaml

from satbench.cli import main
from satbench.harness.provenance import command_line, source_state
from satbench.harness.results import read_run

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def checkout(tmp_path):
    """A git repository with one commit: a satbench tree with code/ and results/."""
    repo = tmp_path / "repo"
    (repo / "code").mkdir(parents=True)
    (repo / "code" / "module.py").write_text("x = 1\n")
    (repo / "results").mkdir()
    (repo / "results" / "report.md").write_text("# old\n")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")
    return repo


@needs_git
def test_a_clean_checkout_gives_its_commit(checkout):
    assert source_state(checkout) == {"commit": git(checkout, "rev-parse", "HEAD").strip(), "dirty": False}


@needs_git
@pytest.mark.parametrize("change, dirty", [
    ("code/module.py", True),  # a tracked file changed
    ("code/new.py", True),  # an untracked file beside the code: it can be imported
    ("results/report.md", False),  # what a bench writes is no change to the code that wrote it
    ("results/runs/cells.jsonl", False),
])
def test_dirty_means_a_change_outside_results(checkout, change, dirty):
    (checkout / change).parent.mkdir(parents=True, exist_ok=True)
    (checkout / change).write_text("changed\n")
    assert source_state(checkout)["dirty"] is dirty


@needs_git
@pytest.mark.parametrize("change, dirty", [
    ("satbench/code/module.py", True),
    ("satbench/results/runs/cells.jsonl", False),  # the nested tree's own results/, not the outer repository's
    ("other/notes.md", False),  # the enclosing repository's files are no part of what ran
    ("results/cells.jsonl", False),
])
def test_a_tree_nested_in_a_larger_repository_is_dirty_by_its_own_files_alone(checkout, change, dirty):
    outer = checkout.parent / "outer"
    (outer / "other").mkdir(parents=True)
    (outer / "other" / "notes.md").write_text("notes\n")
    checkout.rename(outer / "satbench")
    shutil.rmtree(outer / "satbench" / ".git")
    git(outer, "init", "-q")
    git(outer, "add", ".")
    git(outer, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")
    assert source_state(outer / "satbench") == {"commit": git(outer, "rev-parse", "HEAD").strip(), "dirty": False}
    (outer / change).parent.mkdir(parents=True, exist_ok=True)
    (outer / change).write_text("changed\n")
    assert source_state(outer / "satbench")["dirty"] is dirty


@needs_git
def test_a_folder_git_does_not_track_has_no_commit(checkout, tmp_path):
    (checkout / ".gitignore").write_text("venv/\n")
    (checkout / "venv").mkdir()  # an installed copy inside someone's checkout, not tracked by it
    (checkout / "venv" / "module.py").write_text("x = 1\n")
    assert source_state(checkout / "venv") == {"commit": None, "dirty": None}
    outside = tmp_path / "plain"
    outside.mkdir()
    assert source_state(outside) == {"commit": None, "dirty": None}


def test_the_command_line_quotes_what_a_shell_would_split():
    assert command_line(["bench", "my grid.yaml", "train.steps=5"]) == "satbench bench 'my grid.yaml' train.steps=5"


def test_rows_carry_the_provenance_and_the_report_names_it(tmp_path, tiny_config):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    run = tmp_path / "run"
    argv = ["bench", str(path), "train.steps=5", "--run-dir", str(run), "--quiet"]
    assert main(argv) == 0
    rows = read_run(run)
    expected = source_state()
    command = command_line(argv)
    for row in rows:
        assert row["commit"] == expected["commit"] and row["dirty"] == expected["dirty"]
        assert row["command"] == command
    header = (run / "report.md").read_text().split("\n## ")[0]
    assert f"- command: `{command}`" in header
    if expected["commit"]:
        assert f"- commit: `{expected['commit'][:12]}{'-dirty' if expected['dirty'] else ''}`" in header
    assert rows[0]["device"] in header

    # Rows from before the provenance was recorded: half of the cells, then all of them.
    lines = (run / "cells.jsonl").read_text().splitlines()
    old = [json.loads(line) for line in lines]
    for row in old:
        for key in ("commit", "dirty", "command"):
            del row[key]
    (run / "cells.jsonl").write_text("".join(json.dumps(row) + "\n" for row in old[:4]) +
                                     "".join(line + "\n" for line in lines[4:]))
    assert main(["report", str(run)]) == 0
    header = (run / "report.md").read_text().split("\n## ")[0]
    assert "- commit: not recorded (4 cells); " in header
    assert f"- command: not recorded (4 cells); `{command}` (4 cells)" in header
    (run / "cells.jsonl").write_text("".join(json.dumps(row) + "\n" for row in old))
    assert main(["report", str(run), "--header", "Run on the lab machine."]) == 0
    header = (run / "report.md").read_text().split("\n## ")[0]
    assert "- commit: not recorded\n" in header and "- command: not recorded\n" in header
    assert "Run on the lab machine." in header
