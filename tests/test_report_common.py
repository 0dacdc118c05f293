"""What every report table shares: Markdown that stays readable rendered on a laptop."""

import pandas as pd

from satbench.report.common import MAX_COLUMNS, markdown


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
