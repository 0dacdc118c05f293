"""`satbench compare`: two runs, or two attention variants of one run, one table per language whose rows are the
criteria as trained and at the limit and whose cells are the report's statistics of the seeds' accuracies."""

import json

import pytest

from satbench.cli import main
from satbench.report.common import MAX_COLUMNS
from satbench.report.compare import SAME_AS_TRAINED, compare_runs, compare_variants
from satbench.report.stats import difference_interval, excludes_zero, seed_cell

THRESHOLD = 0.99
BINS = ("21-30", "31-40")
# Accuracy of the bins relative to in distribution: each criterion gets numbers of its own, so a table that read the
# wrong column would show it.
BIN_FACTORS = {"21-30": 0.9, "31-40": 0.8}


def accuracies(acc, criterion):
    return acc if criterion == "in dist." else round(acc * BIN_FACTORS[criterion.removeprefix("len ")], 6)


def row(language, variant, seed, trained, limit=None, bins=BINS, steps=5, **model):
    """A row as the bench writes it, reduced to what compare reads: accuracy in distribution `trained` at c=1 and
    `limit` at c=inf (the same when not given, as for saturated and hard attention), each bin a fixed fraction of it."""
    limit = trained if limit is None else limit
    by_scale = {"1": trained, "inf": limit}
    return {"hash": f"{language}-{variant}-{seed}-{sorted(model.items())}",
            "config": {"language": language, "seed": seed, "model": {"attention": variant, **model},
                       "train": {"steps": steps}, "eval": {"threshold": THRESHOLD}},
            "metrics": {"acc": by_scale, "acc_long": by_scale, "ce": {"1": 0.1, "inf": 0.1},
                        "acc_over": "all test lengths",
                        "acc_bins": {name: {s: accuracies(a, f"len {name}") for s, a in by_scale.items()}
                                     for name in bins}}}


def write_run(path, rows):
    path.mkdir()
    (path / "cells.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# Five seeds per variant. majority: soft learns it and loses it at the limit, saturated does not learn it, so the
# variants differ at both scales; dyck1: the variants overlap, so nothing differs as trained.
SOFT = {"majority": ([0.95, 0.97, 1.00, 0.96, 0.98], [0.50, 0.55, 0.52, 0.58, 0.51]),
        "dyck1": ([0.70, 0.80, 0.90, 0.75, 0.85], [0.60, 0.65, 0.70, 0.62, 0.68])}
SATURATED = {"majority": [0.60, 0.62, 0.58, 0.61, 0.63], "dyck1": [0.75, 0.90, 0.70, 0.80, 0.85]}
HARD = {"majority": [0.50, 0.52, 0.51, 0.55, 0.50], "dyck1": [0.60, 0.62, 0.58, 0.61, 0.66]}


def variants_rows():
    rows = []
    for language, (trained, limit) in SOFT.items():
        rows += [row(language, "soft", s, t, l) for s, (t, l) in enumerate(zip(trained, limit))]
        rows += [row(language, "saturated", s, acc) for s, acc in enumerate(SATURATED[language])]
        rows += [row(language, "hard", s, acc) for s, acc in enumerate(HARD[language])]
    return rows


@pytest.fixture
def run(tmp_path):
    return write_run(tmp_path / "run", variants_rows())


def sections(text):
    """{heading: [{column: cell}]}: the Markdown tables of compare's output, each under its `## heading`."""
    out = {}
    for block in text.split("\n## ")[1:]:
        heading, _, body = block.partition("\n\n")
        lines = [line for line in body.splitlines() if line.startswith("|")]
        header = [cell.strip() for cell in lines[0].strip("|").split("|")]
        out[heading] = [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[2:]]
    return out


def difference_text(a, b):
    """The difference of the means and difference_interval's interval, as compare prints them: 3 decimals, signed."""
    interval = difference_interval(a, b)
    signed = [f"{round(x, 3) + 0.0:+.3f}" for x in (sum(b) / len(b) - sum(a) / len(a), *interval)]  # no -0.000
    return f"{signed[0]} [{signed[1]}, {signed[2]}]", interval


def test_soft_vs_saturated_has_a_row_per_criterion_and_scale_with_the_statistics_of_the_seeds(run):
    tables = sections(compare_variants(run, "soft", "saturated"))
    assert list(tables) == ["dyck1", "majority"]
    marked = []
    for language, lines in tables.items():
        assert len(lines[0]) <= MAX_COLUMNS
        assert list(lines[0]) == ["criterion", "scale", "soft", "saturated", "saturated - soft [95%]", "differs"]
        criteria = ["in dist.", "len 21-30", "len 31-40"]
        assert [(line["criterion"], line["scale"]) for line in lines] == \
            [(criterion, scale) for criterion in criteria for scale in ("c=1", "c=inf")]
        for line in lines:
            trained, limit = SOFT[language]
            soft = [accuracies(a, line["criterion"]) for a in (trained if line["scale"] == "c=1" else limit)]
            saturated = [accuracies(a, line["criterion"]) for a in SATURATED[language]]
            assert line["soft"] == seed_cell(soft, THRESHOLD)
            # Saturated attention does not change with c: its c=inf cell points to the c=1 cell above it.
            assert line["saturated"] == (seed_cell(saturated, THRESHOLD) if line["scale"] == "c=1" else SAME_AS_TRAINED)
            words, interval = difference_text(soft, saturated)
            assert line["saturated - soft [95%]"] == words
            assert line["differs"] == ("yes" if excludes_zero(interval) else "")
            marked.append(line["differs"])
    assert "yes" in marked and "" in marked  # both cases occur, so the marks above were tested both ways
    assert all(line["differs"] == "yes" for line in tables["majority"])
    assert not any(line["differs"] for line in tables["dyck1"] if line["scale"] == "c=1")


def test_variants_that_do_not_change_with_c_get_no_rows_at_c_inf(run):
    tables = sections(compare_variants(run, "saturated", "hard"))
    assert list(tables) == ["dyck1, c=1 and c=inf alike", "majority, c=1 and c=inf alike"]
    for lines in tables.values():
        assert [line["criterion"] for line in lines] == ["in dist.", "len 21-30", "len 31-40"]
        assert list(lines[0]) == ["criterion", "saturated", "hard", "hard - saturated [95%]", "differs"]


def test_a_language_or_bin_one_side_lacks_is_named_in_one_line_and_left_out(tmp_path):
    rows = variants_rows() + [row("parity", "soft", s, 0.5, 0.4) for s in range(3)]
    text = compare_variants(write_run(tmp_path / "run", rows), "soft", "saturated")
    assert [line for line in text.splitlines() if line.startswith("Left out")] == \
        ["Left out, held by one side only: language parity (soft only)."]
    assert "## parity" not in text and "- language: dyck1, majority, parity -> dyck1, majority" in text
    a = write_run(tmp_path / "a", variants_rows())
    b = write_run(tmp_path / "b", [row(**{**r, "bins": ("21-30",)}) for r in variants_args()] +
                  [row("parity", "soft", s, 0.5) for s in range(3)])
    text = compare_runs(a, b)
    left = [line for line in text.splitlines() if line.startswith("Left out")]
    assert left == ["Left out, held by one side only: language parity (b only); len 31-40 (a only)."]
    assert "| len 31-40 " not in text and "## parity" not in text
    assert "| len 21-30 " in text


def variants_args():
    """The rows of `variants_rows` as the keyword arguments of `row`."""
    args = []
    for language, (trained, limit) in SOFT.items():
        args += [dict(language=language, variant="soft", seed=s, trained=t, limit=l)
                 for s, (t, l) in enumerate(zip(trained, limit))]
        args += [dict(language=language, variant="saturated", seed=s, trained=acc)
                 for s, acc in enumerate(SATURATED[language])]
        args += [dict(language=language, variant="hard", seed=s, trained=acc) for s, acc in enumerate(HARD[language])]
    return args


def test_two_runs_keep_their_config_differences_and_compare_each_variant(tmp_path):
    before = [row("majority", "soft", s, acc, 0.5) for s, acc in enumerate([0.50, 0.55, 0.52, 0.58])]
    after = [row("majority", "soft", s, acc, 0.5, steps=6) for s, acc in enumerate([0.97, 0.99, 1.00, 0.96, 0.98])]
    before += [row("majority", "hard", s, acc) for s, acc in enumerate([0.7, 0.8, 0.9, 0.75])]
    after += [row("majority", "hard", s, acc, steps=6) for s, acc in enumerate([0.75, 0.9, 0.7, 0.8])]
    text = compare_runs(write_run(tmp_path / "a", before), write_run(tmp_path / "b", after))
    assert "- train.steps: 5 -> 6" in text and "Left out" not in text
    (lines,) = sections(text).values()
    assert list(lines[0]) == ["variant", "criterion", "scale", "a", "b", "b - a [95%]", "differs"]
    # Hard attention is the same at c=1 and c=inf in both runs, so it holds c=1 rows only.
    criteria = ("in dist.", "len 21-30", "len 31-40")
    assert [(line["variant"], line["criterion"], line["scale"]) for line in lines] == \
        [("soft", c, s) for c in criteria for s in ("c=1", "c=inf")] + [("hard", c, "c=1") for c in criteria]
    soft, soft_limit, hard = lines[0], lines[1], lines[6]
    a, b = [0.50, 0.55, 0.52, 0.58], [0.97, 0.99, 1.00, 0.96, 0.98]
    assert (soft["a"], soft["b"]) == (seed_cell(a, THRESHOLD), seed_cell(b, THRESHOLD))
    assert soft["b - a [95%]"] == difference_text(a, b)[0] and soft["differs"] == "yes"
    assert soft_limit["b - a [95%]"] == "+0.000 [+0.000, +0.000]" and soft_limit["differs"] == ""
    assert hard["differs"] == ""


def test_a_setting_that_varies_within_the_run_gets_its_own_tables_and_a_zipped_field_is_named(tmp_path):
    rows = [row("majority", "soft", s, 0.9, 0.5, positional=p, surrogate="none")
            for s in range(2) for p in ("none", "learned")]
    rows += [row("majority", "saturated", s, 0.6, positional=p, surrogate="ste") for s in range(2)
             for p in ("none", "learned")]
    text = compare_variants(write_run(tmp_path / "run", rows), "soft", "saturated")
    assert list(sections(text)) == ["majority, model.positional=learned", "majority, model.positional=none"]
    assert "- model.surrogate: none -> ste" in text and "model.attention" not in text


def test_a_variant_of_one_run_against_a_variant_of_another(tmp_path):
    """compare RUN_A RUN_B --variants A B: variant A of the first run against variant B of the second, as within one
    run, with a title that names both runs."""
    a = write_run(tmp_path / "a", variants_rows())
    baseline = [row("majority", "lstm", s, acc) for s, acc in enumerate([0.99, 1.00, 0.98, 1.00, 0.99])]
    for r in baseline:
        r["config"]["model"]["kind"] = "lstm"
    b = write_run(tmp_path / "b", baseline)
    text = compare_variants(a, "soft", "lstm", run_b=b)
    assert text.startswith(f"# soft of {a} (a) -> lstm of {b} (b)")
    (first, *_) = sections(text)["majority"]
    assert first["soft"] == seed_cell(SOFT["majority"][0], THRESHOLD)
    assert first["lstm"] == seed_cell([0.99, 1.00, 0.98, 1.00, 0.99], THRESHOLD)
    with pytest.raises(ValueError, match="holds no cells of lstm"):
        compare_variants(a, "soft", "lstm", run_b=a)


@pytest.mark.parametrize("args, message", [
    (["{run}"], "give two runs, or one run with --variants A B"),
    (["{run}", "--variants", "soft"], "expected 2 arguments"),
    (["{run}", "--variants", "soft", "soft"], "soft twice"),
    (["{run}", "--variants", "soft", "linear"], "holds no cells of linear; its variants are soft, saturated, hard"),
])
def test_bad_compare_lines_get_one_line_and_exit_2(run, capsys, args, message):
    try:
        status = main(["compare", *(a.format(run=run) for a in args)])
    except SystemExit as stop:  # argparse's own errors (cli.OneLineParser) exit from the parser
        status = stop.code
    assert status == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and message in err, err


def test_the_command_prints_the_comparison_of_two_variants(run, capsys):
    assert main(["compare", str(run), "--variants", "soft", "saturated"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# run: soft (a) -> saturated (b)")
    assert out == compare_variants(str(run), "soft", "saturated") + "\n"
    assert "## majority" in out and "| saturated - soft [95%] " in out


def test_a_field_one_run_leaves_out_splits_both_runs_at_its_default_and_never_pools_settings(tmp_path):
    # Run a varies model.attention_scale, its rows at the default leaving the field out as the bench does; run b
    # never sets it. Pooled, a's 7 cells would face b's 5 in one table.
    scaled = [0.90, 0.92, 0.94]
    plain_a, plain_b = [0.50, 0.60, 0.55, 0.52], [0.97, 0.99, 1.00, 0.96, 0.98]
    a = [row("majority", "soft", s, acc, 0.5, attention_scale=2.0) for s, acc in enumerate(scaled)]
    a += [row("majority", "soft", s, acc, 0.5) for s, acc in enumerate(plain_a)]
    b = [row("majority", "soft", s, acc, 0.5) for s, acc in enumerate(plain_b)]
    text = compare_runs(write_run(tmp_path / "a", a), write_run(tmp_path / "b", b))
    tables = sections(text)
    assert list(tables) == ["majority, model.attention_scale=None, soft"]
    (lines,) = tables.values()
    assert (lines[0]["criterion"], lines[0]["scale"]) == ("in dist.", "c=1")
    assert (lines[0]["a"], lines[0]["b"]) == (seed_cell(plain_a, THRESHOLD), seed_cell(plain_b, THRESHOLD))
    left = [line for line in text.splitlines() if line.startswith("Left out")]
    assert left == ["Left out, held by one side only: setting model.attention_scale=2.0 (a only)."]

    # A field with no known default reads "—" where it is left out: its settings are named, not compared.
    c = [row("majority", "soft", s, acc, 0.5, width=w) for s, acc in enumerate(plain_a) for w in (8, 16)]
    text = compare_runs(write_run(tmp_path / "c", c), write_run(tmp_path / "b2", b))
    assert sections(text) == {}
    left = [line for line in text.splitlines() if line.startswith("Left out")]
    assert left == ["Left out, held by one side only: settings model.width=16, model.width=8 (a only); "
                    "setting model.width=— (b only)."]
