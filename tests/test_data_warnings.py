"""Weak data said aloud: a held-out split whose strings, or whose members, are mostly repeats is named by `satbench
languages check` and in the report's header, both through report/data_warnings.py."""

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import yaml

from satbench.data import check as data_check
from satbench.data import make_dataset
from satbench.languages import get_language
from satbench.report import data_warnings
from satbench.report.write import write_report

REPO = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def bench_datasets():
    """The datasets a default bench builds at seed 0, for languages weak in different ways and two that are not."""
    names = ["anbn", "anbncn", "aa_star", "dyck1", "majority"]
    return {name: make_dataset(name, seed=0, **dataclasses.asdict(data_check.BENCH_DATA)) for name in names}


def test_bench_data_is_the_data_section_of_the_default_configs():
    for name in ("default", "gpu", "theory"):
        section = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())["data"]
        assert {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(data_check.BENCH_DATA).items() if key in section} == section
        assert set(section) <= {field.name for field in dataclasses.fields(data_check.BENCH_DATA)}


def test_distinct_members_counts_the_members_of_each_split(bench_datasets):
    for dataset in bench_datasets.values():
        for split in ("train", "test"):
            strings, labels = getattr(dataset, split).strings, getattr(dataset, split).labels.tolist()
            assert dataset.meta["distinct_members"][split] == len({s for s, y in zip(strings, labels) if y == 1})


def test_anbn_test_split_is_weak_and_its_members_are_one_per_length(bench_datasets):
    meta = bench_datasets["anbn"].meta
    test = bench_datasets["anbn"].test
    members = [s for s, y in zip(test.strings, test.labels.tolist()) if y == 1]
    member_lengths = {len(s) for s in members}
    assert len(set(members)) == len(member_lengths)  # a^n b^n: one member per length, drawn again and again
    (warning,) = data_warnings.weak_split_warnings("anbn", meta)
    assert warning.startswith(f"weak data: anbn test split: {len(set(test.strings))} of {len(test)} strings distinct, "
                              f"{len(member_lengths)} of {len(members)} members (one per length); under 50% distinct")
    assert "non-members" not in warning  # a^n b^n's near misses are many


def test_a_split_whose_members_alone_are_repeats_is_weak(bench_datasets):
    meta = bench_datasets["anbncn"].meta
    assert meta["distinct"]["test"] >= meta["strings"]["test"] / 2  # as a whole the split looks fine
    assert [p["part"] for p in data_warnings.weak_parts(meta)] == ["members"]
    members = meta["distinct_members"]["test"]
    assert members == sum(row["positive"] > 0 for row in meta["per_length"]["test"].values())
    (warning,) = data_warnings.weak_split_warnings("anbncn", meta)
    assert warning.startswith(f"weak data: anbncn test split: {members} of {meta['strings']['test'] // 2} members "
                              "distinct (one per length); ")


def test_dyck1_and_majority_are_not_weak_and_training_splits_are_not_judged(bench_datasets):
    for name in ("dyck1", "majority"):
        assert data_warnings.weak_split_warnings(name, bench_datasets[name].meta) == []
    meta = bench_datasets["dyck1"].meta
    assert meta["distinct_members"]["train"] < meta["strings"]["train"] / 4  # short members recur by design
    assert data_warnings.weak_split_warnings("dyck1", meta, split="train") != []  # what judging it would say


def test_a_row_judges_its_split_as_the_dataset_does(bench_datasets):
    for dataset in bench_datasets.values():
        as_in_a_row = json.loads(json.dumps(dataset.meta))  # lengths become string keys
        assert data_warnings.weak_parts(as_in_a_row) == data_warnings.weak_parts(dataset.meta)


def test_the_check_returns_the_bench_dataset_meta_it_is_judged_by(bench_datasets):
    result = data_check.check_language(get_language("anbn"))
    assert result.ok
    assert result.bench_meta["distinct"] == bench_datasets["anbn"].meta["distinct"]


# ---- the report's lines, from rows built by hand --------------------------------------------------------------------


def meta(distinct, distinct_members=None, lengths=(22, 24), per_class=10):
    """A row's dataset meta whose test split holds `per_class` members and non-members at each of `lengths`."""
    out = {"strings": {"train": 1000, "test": 2 * per_class * len(lengths)},
           "distinct": {"train": 900, "test": distinct},
           "per_length": {"train": {"1": {"positive": 500, "negative": 500, "distinct": 900}},
                          "test": {str(n): {"positive": per_class, "negative": per_class, "distinct": distinct // 2}
                                   for n in lengths}}}
    if distinct_members is not None:
        out["distinct_members"] = {"train": 450, "test": distinct_members}
    return out


def row(language, seed, dataset_meta, variant="soft", train_size=4000):
    return {"config": {"language": language, "seed": seed, "model": {"attention": variant},
                       "data": {"train_size": train_size, "test_lengths": [1, 40]}},
            "dataset": {"meta": dataset_meta, "baselines": {}}}


def test_a_weak_split_gets_one_line_over_its_seeds_and_variants_and_a_sound_one_none():
    rows = [row("stub", seed, meta(distinct, 2), variant) for seed, distinct in ((0, 15), (1, 13))
            for variant in ("soft", "hard")]
    rows += [row("sound", seed, meta(40, 20), variant) for seed in (0, 1) for variant in ("soft", "hard")]
    assert data_warnings.weak_data_lines(rows) == [
        "- **weak data**: stub test split: 13-15 of 40 strings distinct, 2 of 20 members (one per length), in every "
        "seed; under 50% distinct, so accuracies on it rest on fewer strings than it looks."]


def test_a_split_weak_in_some_seeds_says_in_how_many():
    rows = [row("stub", 0, meta(22, 2)), row("stub", 1, meta(40, 20)), row("stub", 2, meta(40, 20))]
    (line,) = data_warnings.weak_data_lines(rows)
    assert "stub test split: 2 of 20 members distinct (one per length), in 1 of 3 seeds;" in line


def test_rows_without_member_counts_are_judged_as_a_whole_and_rows_without_a_dataset_are_skipped():
    rows = [row("old", 0, meta(10)), row("old", 1, meta(30)), {**row("bare", 0, None), "dataset": {}}]
    assert data_warnings.weak_data_lines(rows) == [
        "- **weak data**: old test split: 10 of 40 strings distinct, in 1 of 2 seeds; under 50% distinct, so "
        "accuracies on it rest on fewer strings than it looks."]


def test_a_run_that_varies_its_data_section_names_the_setting():
    rows = [row("stub", 0, meta(10, 2), train_size=2000), row("stub", 0, meta(40, 20), train_size=4000)]
    (line,) = data_warnings.weak_data_lines(rows)
    assert line.startswith("- **weak data**: stub (data.train_size=2000) test split: 10 of 40 strings distinct")


def test_write_report_names_the_weak_split_of_a_published_run_in_its_header(tmp_path):
    """results/cpu: a^n b^n's test split is weak in every seed, majority's is not."""
    published = [json.loads(line) for line in (REPO / "results" / "cpu" / "cells.jsonl").read_text().splitlines()]
    rows = [r for r in published if r["config"]["language"] in ("anbn", "majority")
            and r["config"]["model"]["attention"] == "soft" and r["config"]["seed"] in (0, 1)]
    assert {r["config"]["language"] for r in rows} == {"anbn", "majority"}
    (tmp_path / "cells.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    shutil.copy(REPO / "results" / "cpu" / "config.yaml", tmp_path / "config.yaml")
    report = write_report(tmp_path).read_text()
    header = report[:report.index("## Recognition")]
    weak = [line for line in header.splitlines() if line.startswith("- **weak data**")]
    assert len(weak) == 1 and weak[0].startswith("- **weak data**: anbn test split: ")
    assert "in every seed" in weak[0]
