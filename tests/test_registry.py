"""The probe registry: the harness runs every registered probe, through one calling convention."""

import pytest
import yaml

from satbench.cli import main
from satbench.harness.results import read_run
from satbench.probes import registry
from satbench.probes.registry import Probe, register


def test_the_built_in_probes_are_registered_with_recognition_first():
    names = [cls.name for cls in registry.probe_classes()]
    assert names[0] == "recognition"
    assert set(names) == {"recognition", "ties", "norm_growth", "saturation", "heads", "attention_maps",
                          "linear_probes"}
    assert [cls.name for cls in registry.probe_classes(enabled=False)] == ["recognition", "ties"]


def test_a_registered_probe_is_run_by_the_bench_and_follows_training(probes, tmp_path, tiny_config):
    @register
    class StepsSeen(Probe):
        name = "steps_seen"

        def during_training(self, step, ensemble):
            return [{"seen_step": step} for _ in self.run.cells]

        def measure(self, run):
            return [{"steps_logged": len(log), "language_length": len(cell.language)}
                    for log, cell in zip(run.logs, run.cells, strict=True)]

    config = dict(tiny_config, probes={"enabled": True, "strings": 16})
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["bench", str(path), "--run-dir", str(tmp_path / "run"), "--quiet", "--no-report"]) == 0
    rows = read_run(tmp_path / "run")
    assert len(rows) == 8
    for row in rows:
        steps = [entry["step"] for entry in row["log"]]
        assert [entry["seen_step"] for entry in row["log"]] == steps
        assert row["metrics"]["probes"]["steps_logged"] == len(steps)
        assert row["metrics"]["probes"]["language_length"] == len(row["config"]["language"])
        assert "acc" in row["metrics"] and "acc" not in row["metrics"]["probes"]  # recognition: the row's metrics


def test_probes_off_runs_recognition_alone(probes, tmp_path, tiny_config):
    @register
    class Never(Probe):
        name = "never"

        def measure(self, run):
            raise AssertionError("a probe ran with probes.enabled false")

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config))  # probes.enabled: false
    assert main(["bench", str(path), "--run-dir", str(tmp_path / "run"), "--quiet", "--no-report"]) == 0
    assert all("probes" not in row["metrics"] for row in read_run(tmp_path / "run"))


def test_a_probe_needs_a_name_a_known_section_and_a_name_of_its_own(probes):
    with pytest.raises(ValueError, match="needs a `name`"):
        register(type("Nameless", (Probe,), {}))
    with pytest.raises(ValueError, match="section"):
        register(type("Elsewhere", (Probe,), {"name": "elsewhere", "section": "log"}))
    with pytest.raises(ValueError, match="defined twice"):
        register(type("Heads", (Probe,), {"name": "heads"}))


@pytest.mark.parametrize("when", ["during_training", "measure"])
def test_a_failing_probe_costs_its_own_numbers_not_the_groups_training(probes, tmp_path, tiny_config, capsys, when):
    @register
    class Broken(Probe):
        name = "broken"

        def during_training(self, step, ensemble):
            if when == "during_training" and step > 0:
                raise ZeroDivisionError("a member's norm is 0")
            return None

        def measure(self, run):
            if when == "measure":
                raise ZeroDivisionError("a member's norm is 0")
            return [{"never": 1.0} for _ in run.cells]

    config = dict(tiny_config, probes={"enabled": True, "strings": 16})
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["bench", str(path), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    rows = read_run(tmp_path / "run")
    assert len(rows) == 8
    for row in rows:
        assert row["metrics"]["probe_errors"] == {"broken": "ZeroDivisionError: a member's norm is 0"}
        assert "never" not in row["metrics"]["probes"]
        assert "split_share" in row["metrics"]["ties"] and "attended_mean" in row["metrics"]["probes"]  # others ran
    assert "probe 'broken' failed" in capsys.readouterr().err
    assert "**probe `broken` failed** in 8 of 8 cells" in (tmp_path / "run" / "report.md").read_text()
