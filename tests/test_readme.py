"""The README's commands run as printed (inside the activated .venv), and its "Add a language" example works as
written.

Every `satbench` line of the README's shell blocks is run in-process: `languages` commands as they are, `bench`
commands with --dry-run appended (training is what `make bench` and the other tests cover), `report` and `compare`
against tiny runs made under the names the README uses. Lines that install things or need a cluster are listed in
SKIPPED with the reason.
"""

import re
import shlex
from pathlib import Path

import pytest
import yaml

import languages
from languages.check import check_language
from satbench.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SKIPPED = {
    "--launcher": "submits jobs (tests/test_launch.py runs the launchers)",
    "palindrome": "needs the plugin pip-installed first (tests/test_language_commands.py installs it)",
}
SLOW = ("satbench construct",)  # minutes on 2 cores: run by test_the_slow_readme_commands_run (make test-all)


def shell_lines():
    """Command lines of the README's shell blocks (``` or ```bash), continuations joined, comments cut."""
    blocks, block, language = [], None, None
    for line in README.splitlines():
        if line.startswith("```"):
            if block is None:
                block, language = [], line[3:].strip()
            else:
                if language in ("", "bash"):
                    blocks.append("\n".join(block))
                block = None
        elif block is not None:
            block.append(line)
    lines = []
    for text in blocks:
        for line in text.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def satbench_lines():
    return [line for line in shell_lines() if line.startswith("satbench ")]


def test_the_readme_has_commands_and_names_no_venv_path():
    assert len(satbench_lines()) >= 10
    assert "source .venv/bin/activate" in shell_lines()
    assert not [line for line in shell_lines() if ".venv/bin/" in line and "activate" not in line]


def test_every_satbench_command_of_the_readme_runs_as_printed(tmp_path, monkeypatch, tiny_config, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    # The runs that `report` and `compare` read, tiny, under the names the README gives them.
    grid = tmp_path / "tiny.yaml"
    grid.write_text(yaml.safe_dump(tiny_config))
    for name in ("default", "quick", "gpu"):
        assert main(["bench", str(grid), f"name={name}", "--quiet", "--no-report"]) == 0
    ran = 0
    for line in satbench_lines():
        if any(marker in line for marker in SKIPPED) or line.startswith(SLOW):
            continue
        args = shlex.split(line)[1:]
        if args[0] == "bench":
            args.append("--dry-run")
        assert main(args) in (0, None), line
        ran += 1
    capsys.readouterr()
    assert ran >= 10


@pytest.mark.slow
def test_the_slow_readme_commands_run(capsys):
    lines = [line for line in satbench_lines() if line.startswith(SLOW)]
    assert lines
    for line in lines:
        assert main(shlex.split(line)[1:]) in (0, None), line


def test_the_add_a_language_example_registers_and_passes_check(registry):
    example = re.search(r"```python\n(@register\nclass \w+\(DFALanguage\):.*?)```", README, flags=re.S).group(1)
    name = re.search(r'name = "(\w+)"', example).group(1)
    used = {path.name for path in (ROOT / "tests").rglob("*.py") if f'"{name}"' in path.read_text()}
    assert not used, f"tests already use the name {name!r}: {sorted(used)}"
    namespace = {"register": languages.register, "DFALanguage": languages.DFALanguage}
    exec(compile(example, "README.md", "exec"), namespace)
    assert check_language(languages.get_language(name), seed=0).ok
