"""What every report table shares: Markdown that stays readable rendered on a laptop, theory's predictions read under
each cell's own positional encoding, and the tables that read seeds as samples."""

import pandas as pd
import pytest

from satbench.report import common
from satbench.report.common import (
    DEFAULT_POSITIONAL,
    MAX_COLUMNS,
    VARIANT_ORDER,
    load_theory,
    markdown,
    predicted,
    theory_cell,
)
from satbench.report.tables import criteria_table, long_table, positionals, theory_flags


def tables(text):
    return [block for block in text.split("\n\n") if block.startswith("|")]


def header(table):
    return [cell.strip() for cell in table.splitlines()[0].strip("|").split("|")]


def test_a_wide_table_is_split_into_tables_that_repeat_the_row_labels():
    index = pd.MultiIndex.from_tuples([("anbn", "soft"), ("dyck1", "hard")], names=["language", "variant"])
    frame = pd.DataFrame([[float(i + 25 * j) for i in range(25)] for j in range(2)], index=index,
                         columns=[f"c{i}" for i in range(25)])
    parts = tables(markdown(frame))
    assert len(parts) == 3  # 25 value columns, 10 beside the two label columns per table
    for part in parts:
        assert len(header(part)) <= MAX_COLUMNS
        assert header(part)[:2] == ["language", "variant"]
        assert "dyck1" in part and "hard" in part
    assert [c for part in parts for c in header(part)[2:]] == list(frame.columns)


def test_a_narrow_table_stays_one_table_and_tuples_become_columns():
    index = pd.MultiIndex.from_tuples([("anbn", "soft", 0.0)], names=["language", "variant", "weight_decay"])
    text = markdown(pd.DataFrame({"acc": [1.0]}, index=index))
    assert len(tables(text)) == 1
    assert header(text) == ["language", "variant", "weight_decay", "acc"]
    assert "('anbn'" not in text


def test_the_uniform_control_sorts_first_and_is_headed_by_its_name():
    from satbench.report.common import scale_heading, scale_value
    from satbench.report.tables import sweep_table

    names = ["inf", "1000", "1", "uniform", "4"]
    assert sorted(names, key=scale_value) == ["uniform", "1", "4", "1000", "inf"]
    assert scale_value("uniform") == 0.0 and [scale_heading(n) for n in ("uniform", "4")] == ["uniform", "c=4"]
    records = [{"language": "first", "variant": "soft", "scale": scale, "scale_value": scale_value(scale), "acc": acc}
               for scale, acc in (("1", 1.0), ("inf", 0.5), ("uniform", 0.75))]
    records += [{"language": "majority", "variant": "soft", "scale": scale, "scale_value": scale_value(scale),
                 "acc": 0.5} for scale in ("1", "inf")]  # a row of a run without the control
    table = sweep_table(pd.DataFrame.from_records(records), threshold=0.99)
    assert list(table.columns) == ["uniform", "c=1", "c=inf"]
    assert table.loc[("first", "soft"), "uniform"].startswith("0.75")
    assert table.loc[("majority", "soft"), "uniform"] == "—"


# --- theory conditioned on the positional encoding -------------------------------------------------------------------

def recognition_row(language, variant, seed, acc, beyond=None, positional=None):
    """A row as the bench writes it, reduced to what the recognition tables read; no `positional` leaves the field out
    of the config, as in rows of configs from before it existed."""
    beyond = acc if beyond is None else beyond
    model = {"attention": variant, **({"positional": positional} if positional else {})}
    return {"hash": f"{language}-{variant}-{positional}-{seed}",
            "config": {"language": language, "seed": seed, "model": model},
            "metrics": {"acc": {"1": acc, "inf": acc}, "acc_long": {"1": beyond, "inf": beyond},
                        "ce": {"1": 0.1, "inf": 0.1}, "acc_bins": {"21-40": {"1": beyond, "inf": beyond}}}}


def test_the_default_encoding_is_the_model_configs():
    from satbench.models.recognizer import POSITIONALS, ModelConfig

    assert DEFAULT_POSITIONAL == ModelConfig(vocab_size=8).positional
    for language, entry in load_theory()["languages"].items():
        for variant in VARIANT_ORDER:
            if isinstance(entry[variant], dict):
                assert set(entry[variant]) - {"default"} <= set(POSITIONALS), (language, variant)


def test_parity_is_predicted_with_i_over_n_positions_and_open_without():
    theory = load_theory()
    parity = theory["languages"]["parity"]
    assert [predicted(parity, "soft", p) for p in ("fraction", "none", "sinusoidal", None)] == \
        ["yes", "open", "open", "open"]
    assert predicted(parity, "hard", "fraction") == "no"
    assert predicted(theory["languages"]["majority"], "saturated", "none") == "yes"
    assert predicted(theory["languages"]["aa_star"], "hard", "none") == "no"
    assert predicted(theory["languages"]["aa_star"], "hard", "learned") == "open"
    assert theory_cell("parity", theory) == "yes with fraction, else open / yes with fraction, else open / no"
    assert theory_cell("parity", theory, "fraction") == "yes / yes / no"


@pytest.mark.parametrize("text, message", [
    ("{soft: {fraction: yes}, saturated: yes, hard: no}", "x.soft: a prediction by positional encoding needs a"),
    ("{soft: maybe, saturated: yes, hard: no}", "x.soft: 'maybe' is not one of yes, no, open"),
])
def test_a_malformed_prediction_is_one_clear_error(tmp_path, monkeypatch, text, message):
    path = tmp_path / "theory.yaml"
    path.write_text(f"variants: [soft, saturated, hard]\nlanguages:\n  x: {text}\n")
    monkeypatch.setattr(common, "THEORY_PATH", path)
    with pytest.raises(ValueError, match=message):
        load_theory()


def test_parity_falls_below_theory_only_with_the_encoding_theory_needs():
    theory = load_theory()
    rows = [recognition_row("parity", "soft", seed, 0.6, positional=positional)
            for positional in ("none", "fraction") for seed in (0, 1)]
    rows += [recognition_row("parity", "soft", seed, 0.6) for seed in (2, 3)]  # no positional: sinusoidal
    table = long_table(rows)
    by_encoding = {p: table[positionals(table) == p] for p in ("none", "fraction", "sinusoidal")}
    assert len(by_encoding["sinusoidal"]) == 4
    assert theory_flags(by_encoding["none"], 0.99, theory) == {}
    assert theory_flags(by_encoding["sinusoidal"], 0.99, theory) == {}
    flags = theory_flags(by_encoding["fraction"], 0.99, theory)["parity"]
    assert set(flags) == {"▼ soft", "▼ soft at c=inf"}
    assert "a construction that exists with positional fraction (see chiang2022" in flags["▼ soft"]
    assert criteria_table(by_encoding["none"], 0.99, theory, {})["theory"].tolist() == ["open with none"]
    fraction = criteria_table(by_encoding["fraction"], 0.99, theory, {"parity": flags})
    assert fraction["theory"].tolist() == ["yes with fraction"]
    assert fraction["vs theory"].tolist() == ["▼ soft, ▼ soft at c=inf"]
    # Both encodings in one table: one line each, each with its own prediction and flags.
    both = table[positionals(table) != "sinusoidal"]
    mixed_flags = theory_flags(both, 0.99, theory)
    assert set(mixed_flags["parity"]) == {"▼ soft with positional=fraction", "▼ soft at c=inf with positional=fraction"}
    mixed = criteria_table(both, 0.99, theory, mixed_flags)
    assert mixed.index.names == ["language", "variant", "model.positional"]
    assert mixed.loc[("parity", "soft", "none"), "vs theory"] == ""
    assert mixed.loc[("parity", "soft", "fraction"), "theory"] == "yes with fraction"


def test_no_flag_claims_a_construction_where_theory_does_not_say_yes():
    """Every language, variant and encoding failing everywhere: a "construction that exists" cause appears exactly
    where the prediction in that setting is yes, and names the entry's sources."""
    from satbench.models.recognizer import POSITIONALS

    theory = load_theory()
    for positional in POSITIONALS:
        rows = [recognition_row(language, variant, seed, 0.5, positional=positional)
                for language in theory["languages"] for variant in VARIANT_ORDER for seed in (0, 1)]
        flags = theory_flags(long_table(rows), 0.99, theory)
        for language, entry in theory["languages"].items():
            for variant in VARIANT_ORDER:
                text = flags.get(language, {}).get(f"▼ {variant}", "")
                assert ("construction that exists" in text) == (predicted(entry, variant, positional) == "yes")
                if text and entry["cite"]:
                    assert f"(see {', '.join(entry['cite'])})" in text


def test_the_recognition_cell_has_the_interval_best_and_seeds_passing():
    rows = [recognition_row("majority", "soft", seed, acc) for seed, acc in enumerate([0.5, 0.7, 1.0])]
    frame = criteria_table(long_table(rows), 0.99, load_theory(), {})
    assert frame.loc[("majority", "soft"), "in dist. c=1"] == "0.73 [0.50, 1.00] best 1.00, 1/3 ✓"
    assert frame.loc[("majority", "soft"), "theory"] == "yes"
