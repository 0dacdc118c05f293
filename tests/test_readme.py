"""The commands of README.md and docs/*.md run as printed (inside the activated .venv), and the examples of
docs/add-a-language.md, docs/add-a-probe.md and docs/add-an-attention-variant.md and the README's own model work as
written.

Every `satbench` line of their shell blocks is run in-process, once however many pages print it: `languages` commands
as they are, `bench` commands with --dry-run --no-estimate appended (training is what `make bench` and the other tests
cover), `report` and `compare` against tiny runs made under the names the pages use. Lines that install things or need
a cluster are listed in SKIPPED with the reason.
"""

import json
import re
import shlex
from pathlib import Path

import pytest
import torch
import yaml

from satbench import languages
from satbench.cli import main
from satbench.data.check import check_language
from satbench.harness.results import read_run
from satbench.languages import automata
from satbench.languages import base as language_base
from satbench.models import attention
from satbench.probes import registry as probe_registry

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
# The front page and the reference pages it links to, whose commands run alike.
PAGES = {"README.md": README,
         **{f"docs/{path.name}": path.read_text() for path in sorted((ROOT / "docs").glob("*.md"))}}
SKIPPED = {
    "--launcher": "submits jobs (tests/test_launch.py runs the launchers)",
}
# Run by test_the_slow_commands_of_the_pages_run (make test-all): the constructions take minutes on 2 cores; checking
# every language is test_language_commands' slow test_check_all_passes, and its quick tests run the report.
SLOW = ("satbench construct", "satbench languages check --all", "satbench languages report")


def shell_lines(text=None):
    """Command lines of the shell blocks (``` or ```bash) of one page's `text`, or of every page, each line once;
    continuations joined, comments cut."""
    if text is None:
        return list(dict.fromkeys(line for page in PAGES.values() for line in shell_lines(page)))
    blocks, block, language = [], None, None
    for line in text.splitlines():
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
    for block_text in blocks:
        for line in block_text.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def satbench_lines():
    return [line for line in shell_lines() if line.startswith("satbench ")]


def test_the_pages_have_commands_and_name_no_venv_path():
    assert len(PAGES) > 1 and len(satbench_lines()) >= 10
    assert [line for line in shell_lines(README) if line.startswith("satbench ")]
    assert "source .venv/bin/activate" in shell_lines(README)
    assert not [line for line in shell_lines() if ".venv/bin/" in line and "activate" not in line]


def readme_script(name):
    """The README's ```python block that begins `# <name>`: a script the page has the reader run."""
    return re.search(rf"```python\n(# {re.escape(name)}.*?)```", README, flags=re.S).group(1)


def page_example(page, language):
    """The first ```<language> block of docs/<page>."""
    return re.search(rf"```{language}\n(.*?)```", PAGES[f"docs/{page}"], flags=re.S).group(1)


def automaton_example():
    """The "Add a language" YAML example: (its file name, its text)."""
    match = re.match(r"# (\S+)\n(.*)", page_example("add-a-language.md", "yaml"), flags=re.S)
    return match.group(1), match.group(2)


def test_every_satbench_command_of_the_pages_runs_as_printed(tmp_path, monkeypatch, tiny_config, capsys, registry,
                                                            example_plugin):
    monkeypatch.chdir(tmp_path)
    # The "Add a language" lines: the YAML example in the folder the page names, found through SATBENCH_AUTOMATA.
    path, text = automaton_example()
    (tmp_path / path).parent.mkdir(parents=True)
    (tmp_path / path).write_text(text)
    monkeypatch.setenv(automata.ENVIRONMENT_VARIABLE, str((tmp_path / path).parent))
    monkeypatch.setattr(language_base, "_plugins_loaded", False)
    # The plugin lines (`languages check palindrome`): the page's plugin as `pip install` leaves it (example_plugin).
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    # The published runs that `compare` reads as they are (results/cpu), and the runs that `report` and `compare` read,
    # tiny, under the names the pages give them.
    (tmp_path / "results").mkdir()
    for published in (ROOT / "results").iterdir():
        if published.is_dir() and published.name != "runs":
            (tmp_path / "results" / published.name).symlink_to(published)
    grid = tmp_path / "tiny.yaml"
    grid.write_text(yaml.safe_dump(tiny_config))
    for name in ("default", "quick", "gpu"):
        assert main(["bench", str(grid), f"name={name}", "--quiet", "--no-report"]) == 0
    ran = 0
    for line in satbench_lines():
        if any(marker in line for marker in SKIPPED) or line.startswith(SLOW):
            continue
        args = shlex.split(line)[1:]
        if args[0] == "bench":  # the time estimate's calibration is tests/test_estimate.py's
            args += ["--dry-run", "--no-estimate"]
        if args[0] == "score":  # the predictions the README's model writes (`python counter.py`)
            exec(compile(readme_script("counter.py"), "counter.py", "exec"), {})
        assert main(args) in (0, None), line
        ran += 1
    capsys.readouterr()
    assert ran >= 10
    # The README's model is the exact counter of majority: scored as the bench scores, it is right on every string.
    scored = [json.loads(line) for line in (tmp_path / "results/runs/counter/scored-counter.jsonl").open()]
    assert scored and all(row["metrics"]["acc"]["1"] == 1.0 for row in scored)


@pytest.mark.slow
def test_the_slow_commands_of_the_pages_run(capsys):
    lines = [line for line in satbench_lines() if line.startswith(SLOW)]
    assert lines
    for line in lines:
        assert main(shlex.split(line)[1:]) in (0, None), line


def test_the_add_a_language_example_registers_and_passes_check(registry, tmp_path):
    path, text = automaton_example()
    name = yaml.safe_load(text)["name"]
    used = {p.name for p in (ROOT / "tests").rglob("*.py")
            if f'"{name}"' in p.read_text() and p.name != "test_readme.py"}
    assert not used, f"tests already use the name {name!r}: {sorted(used)}"
    (tmp_path / "example.yaml").write_text(text)
    cls = automata.load_file(tmp_path / "example.yaml")
    assert cls.name == name and languages.get_language(name).definition == yaml.safe_load(text)["definition"]
    assert check_language(languages.get_language(name), seed=0).ok


def probe_example():
    """The "Add a probe" Python example."""
    return page_example("add-a-probe.md", "python")


def test_the_add_a_probe_example_puts_its_numbers_in_the_report(tmp_path, tiny_config, monkeypatch):
    # The built-in probes that every row needs, and the page's: a scratch registry, so it leaks into no other test.
    monkeypatch.setattr(probe_registry, "PROBES", {name: cls for name, cls in probe_registry.PROBES.items()
                                                   if cls.section == "metrics"})
    exec(compile(probe_example(), "docs/add-a-probe.md", "exec"), {})
    [cls] = [cls for cls in probe_registry.PROBES.values() if cls.section == "probes"]
    grid = tmp_path / "tiny.yaml"
    grid.write_text(yaml.safe_dump(dict(tiny_config, probes={"enabled": True, "strings": 16})))
    assert main(["bench", str(grid), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    report = (tmp_path / "run" / "report.md").read_text()
    assert f"## {cls.report.title}" in report
    for header in cls.report.columns.values():
        assert f"| {header}" in report
    for row in read_run(tmp_path / "run"):
        numbers = row["metrics"]["probes"]
        assert numbers["final_norm"] == pytest.approx(row["log"][-1]["norm"], rel=1e-5)
        cell = [row["config"]["language"], row["config"]["model"]["attention"], row["config"]["seed"]]
        line = rf"\|\s*{cell[0]}\s*\|\s*{cell[1]}\s*\|\s*{cell[2]}\s*\|\s*{round(numbers['final_norm'], 4):g}\s*\|"
        assert re.search(line, report), cell


def variant_example():
    """The "Add an attention variant" Python example."""
    return page_example("add-an-attention-variant.md", "python")


def test_the_add_an_attention_variant_example_trains_and_reaches_the_report(tmp_path, tiny_config, variant_registry):
    # As if added to models/attention.py: run in (a copy of) that module's namespace, where it registers.
    exec(compile(variant_example(), "docs/add-an-attention-variant.md", "exec"), dict(vars(attention)))
    [name] = set(variant_registry) - {"soft", "saturated", "hard"}
    grid = tmp_path / "tiny.yaml"
    tiny_config["model"]["attention"] = ["hard", name]
    grid.write_text(yaml.safe_dump(tiny_config))
    assert main(["bench", str(grid), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    rows = read_run(tmp_path / "run")
    trained = [row for row in rows if row["config"]["model"]["attention"] == name]
    assert len(trained) == len(rows) // 2 > 0
    report = (tmp_path / "run" / "report.md").read_text()
    assert re.search(rf"\|\s*first\s*\|\s*{name}\s*\|\s*—\s*\|", report), "the variant's row, no theory"


def test_rightmost_hard_attention_picks_the_last_of_the_tied_keys(variant_registry):
    exec(compile(variant_example(), "docs/add-an-attention-variant.md", "exec"), dict(vars(attention)))
    [name] = set(variant_registry) - {"soft", "saturated", "hard"}
    scores = torch.tensor([[2.0, 1.0, 2.0, 0.5], [0.0, 3.0, 1.0, 3.0], [1.0, 1.0, 1.0, 1.0]])
    allowed = torch.tensor([[True, True, True, True], [True, True, True, False], [False, False, False, False]])
    weights = attention.weights_from_masked(name, attention.mask_scores(scores, allowed), allowed, 1e-5)
    assert weights.tolist() == [[0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]]  # the masked 3.0 is not a key
