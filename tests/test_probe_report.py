"""Probes drive their report: a registered probe's declared section reaches report.md through the run directory, and a
run directory recorded before the declarations still gets a report."""

import json
import re

import pytest
import yaml

from satbench.cli import main
from satbench.harness.results import PROBE_REPORTS_FILE
from satbench.probes.registry import Probe, register
from satbench.probes.report_section import ProbeReport, Table


def section(report, title):
    """The text of the ## section `title` of a report, up to the next ## heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", report, flags=re.S | re.M)
    assert match, f"no section {title!r} in the report"
    return match.group(1)


def table_row(*cells):
    return re.compile(r"\|\s*" + r"\s*\|\s*".join(re.escape(str(c)) for c in cells) + r"\s*\|")


def test_a_registered_probe_declares_its_section_and_its_numbers_reach_the_report(probes, tmp_path, tiny_config):
    @register
    class Toy(Probe):
        name = "toy"
        report = ProbeReport(
            title="Toy numbers",
            text="Numbers a test can predict.",
            columns={"toy_constant": "constant"},
            tables=[Table(["toy_seed"], rows="seed", title="Every toy cell", csv="toy.csv"),
                    Table(["toy_*_share"], rows="variant")],
            renderers=["no_such_renderer"])

        def measure(self, run):
            return [{"toy_constant": 0.125, "toy_seed": seed + 0.5, "toy_a_share": 0.25, "toy_b_share": 0.75}
                    for seed in run.seeds]

    @register
    class Quiet(Probe):
        name = "quiet"

        def measure(self, run):
            return [{"quiet_number": 7.0} for _ in run.cells]

    config = dict(tiny_config, probes={"enabled": True, "strings": 16})
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    assert main(["bench", str(path), "--run-dir", str(run), "--quiet"]) == 0

    recorded = {p["name"]: p for p in json.loads((run / PROBE_REPORTS_FILE).read_text())["probes"]}
    assert recorded["toy"]["report"]["title"] == "Toy numbers" and recorded["quiet"]["report"] is None
    report = (run / "report.md").read_text()
    toy = section(report, "Toy numbers")
    assert "Numbers a test can predict." in toy and "| constant" in toy
    for language in ("first", "majority"):
        for variant in ("soft", "hard"):
            assert table_row(language, variant, "0.125±0.000").search(toy)
            for seed in (0, 1):
                assert table_row(language, variant, seed, seed + 0.5).search(toy)
    assert "### Every toy cell" in toy and (run / "toy.csv").read_text().count("\n") == 8 + 1
    assert table_row("soft", "0.250±0.000", "0.750±0.000").search(toy)  # toy_a_share, toy_b_share
    assert "`no_such_renderer`" in toy
    assert "`quiet`: their numbers are in the rows only" in section(report, "Probes without a report section")
    assert "## Norm growth" in report and "## Attention heads under saturation" in report  # the built-in ones too

    # A run directory recorded before the declarations: every probe number, and a word on what is missing.
    (run / PROBE_REPORTS_FILE).unlink()
    assert main(["report", str(run)]) == 0
    report = (run / "report.md").read_text()
    assert "## Toy numbers" not in report and "## Norm growth" not in report
    numbers = section(report, "Probe numbers")
    assert f"no `{PROBE_REPORTS_FILE}`" in numbers
    assert "toy_constant" in numbers and "0.125±0.000" in numbers and "7.000±0.000" in numbers


def test_a_declaration_is_checked_when_the_probe_registers(probes):
    with pytest.raises(ValueError, match="ProbeReport"):
        register(type("Loose", (Probe,), {"name": "loose", "report": {"title": "a dict"}}))
    with pytest.raises(ValueError, match="rows"):
        Table(["x"], rows="language")
    with pytest.raises(ValueError, match="csv"):
        Table(["x"], csv="x.csv")
    with pytest.raises(ValueError, match="title"):
        ProbeReport(title="")
