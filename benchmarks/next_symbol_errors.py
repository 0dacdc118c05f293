"""Where a next-symbol model is wrong: the prefixes whose predicted set or end bit is wrong, split by whether the prefix
is itself a member, on the training and test splits of each cell of a run saved with train.keep_checkpoints.

    python benchmarks/next_symbol_errors.py RUN_DIR

A model that fails every string can be wrong everywhere or at one kind of prefix only: for Dyck-1, the member prefixes
are the balanced ones, and a model that answers every balanced prefix as if its depth were positive is wrong at
exactly those (and at their end bit and `)` columns), and right everywhere else.
"""

import argparse
from collections import Counter

import torch

from satbench.harness import config as C
from satbench.harness.results import load_rows_with_config
from satbench.harness.run import build_dataset, checkpoint_path
from satbench.languages import get_language
from satbench.languages.base import EOS, FIRST_SYMBOL
from satbench.models import load


def prefix_errors(model, split, language):
    """(wrong, total) per prefix class ("member prefix", "other prefix", "BOS") and wrong counts per column."""
    with torch.no_grad():
        logits = model.eval()(split.tokens)["next_logits"]
    labels = split.next_labels
    known = labels >= 0
    wrong = ((logits > 0) != (labels > 0)) & known
    lang = get_language(language)
    names = {EOS: "end", **{FIRST_SYMBOL + k: symbol for k, symbol in enumerate(lang.alphabet)}}
    wrong_at, total, columns = Counter(), Counter(), Counter()
    strings_right = 0
    for row, s in enumerate(split.strings):
        members = lang.prefix_accepts(s)
        bad = wrong[row, :len(s) + 1].any(dim=-1)
        strings_right += not bool(bad.any())
        for i, member in enumerate(members):
            kind = "BOS" if i == 0 else ("member prefix" if member else "other prefix")
            total[kind] += 1
            if bad[i]:
                wrong_at[kind] += 1
                columns.update(names.get(c, str(c)) for c in torch.nonzero(wrong[row, i]).flatten().tolist())
    return strings_right, len(split.strings), wrong_at, total, columns


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    args = parser.parse_args()
    grid = C.load_grid(f"{args.run_dir}/config.yaml")
    by_hash = {C.cell_hash(cell): cell for cell in grid.cells}
    for row in load_rows_with_config(args.run_dir):
        cell = by_hash[row["hash"]]
        model = load(checkpoint_path(args.run_dir, cell, cell.train.steps))
        dataset = build_dataset(cell, {})
        for name, split in (("train", dataset.train), ("test", dataset.test)):
            right, n, wrong_at, total, columns = prefix_errors(model, split, cell.language)
            kinds = ", ".join(f"{kind}: {wrong_at[kind]} of {total[kind]} wrong" for kind in sorted(total))
            print(f"{cell.language} seed {cell.seed} step {cell.train.steps} {name}: {right} of {n} strings right; "
                  f"{kinds}; wrong columns {dict(columns)}")


if __name__ == "__main__":
    main()
