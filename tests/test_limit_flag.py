"""The report flags every cell whose largest finite scale c and c = inf disagree: there the sweep has not reached the
limit it is said to approach."""

import math

import pandas as pd

from satbench.report.tables import LIMIT_GAP, limit_not_reached


def cell(hash_, variant, seed, accuracies):
    return [{"hash": hash_, "language": "majority", "variant": variant, "seed": seed, "scale": name,
             "scale_value": math.inf if name == "inf" else float(name), "acc": acc}
            for name, acc in accuracies.items()]


def test_a_cell_whose_largest_finite_c_and_limit_differ_is_flagged_and_one_that_converged_is_not():
    table = pd.DataFrame(cell("a", "soft", 0, {"1": 1.0, "1e+06": 0.914, "1e+09": 0.93, "inf": 1.0})
                         + cell("b", "soft", 1, {"1": 1.0, "1e+06": 0.52, "1e+09": 0.5, "inf": 0.5 + LIMIT_GAP / 2})
                         + cell("c", "saturated", 0, {"1": 0.7, "1e+06": 0.7, "1e+09": 0.7, "inf": 0.7}))
    flagged = limit_not_reached(table)
    assert flagged[["variant", "seed"]].values.tolist() == [["soft", 0]]
    row = flagged.iloc[0]
    assert row["largest finite c"] == "1e+09"  # the largest finite scale, not the last one listed
    assert math.isclose(row["difference"], 1.0 - 0.93)


def test_no_limit_column_flags_nothing():
    table = pd.DataFrame(cell("a", "soft", 0, {"1": 1.0, "16": 0.6}))
    assert limit_not_reached(table).empty
