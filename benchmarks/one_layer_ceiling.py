"""The best accuracy any one-layer causal transformer without positional encoding can reach on a config's test strings.

Such a model's output at position i is a function of the symbol there and of how often each symbol occurs in the
prefix it sees: every query and key is a function of its token alone, so a head's weights, and the average of values
they take, depend on the prefix only through its symbol counts, whatever the attention (soft, saturated, or hard, whose
leftmost maximum carries the value of its token). Two prefixes with the same last symbol and the same counts but
different targets cannot both be answered right. A string is right only if every scored prefix is, so for each such
shared key K, at most (strings without K) + (the most strings that agree on one target at K) strings can be right; the
smallest of these over the keys is an upper bound on the string accuracy of any such model, reached by no training.

    python benchmarks/one_layer_ceiling.py configs/b20_core.yaml [override ...]

prints, per language and seed, the bound in distribution and in each length bin. A bound below eval.threshold says
the language cannot be recognized by the config's model, whatever the attention and the budget.
"""

import argparse
from collections import Counter, defaultdict

import numpy as np

from satbench.harness import config as C
from satbench.harness.run import build_dataset


def prefix_keys_and_targets(split, label_kind):
    """Per string: [(key, target)] for every scored position, key = (symbol read there, symbol counts so far)."""
    out = []
    for row, s in enumerate(split.strings):
        items = []
        if label_kind == "membership":
            items.append(((s[-1:], frozenset(Counter(s).items())), float(split.labels[row])))
        else:
            labels = split.next_labels if label_kind == "next_symbols" else split.prefix_labels
            for i in range(1, len(s) + 1):  # BOS's own position (i = 0) reads no symbol: a constant, learnable
                target = labels[row, i]
                key = (s[i - 1], frozenset(Counter(s[:i]).items()))
                items.append((key, target.numpy().tobytes()))
        out.append(items)
    return out


def ceiling(strings_items, among):
    """The upper bound above over the strings whose index is in `among` (a boolean array)."""
    chosen = [items for items, keep in zip(strings_items, among) if keep]
    if not chosen:
        return float("nan")
    by_key = defaultdict(Counter)  # key -> target -> strings
    for items in chosen:
        for key, target in items:
            by_key[key][target] += 1
    n, bound = len(chosen), len(chosen)
    for targets in by_key.values():
        if len(targets) > 1:
            holding = sum(targets.values())
            bound = min(bound, n - holding + max(targets.values()))
    return bound / n


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    grid = C.load_grid(args.config, args.overrides)
    seen, cache = set(), {}
    print(f"{'language':<16} seed  in dist.  " + "  ".join(f"{a}-{b:<5}" for a, b in
                                                        grid.cells[0].eval.bins(grid.cells[0].data.train_lengths,
                                                                                grid.cells[0].data.test_lengths)))
    for cell in grid.cells:
        if (cell.language, cell.seed) in seen:
            continue
        seen.add((cell.language, cell.seed))
        test = build_dataset(cell, cache).test
        items = prefix_keys_and_targets(test, cell.data.label_kind)
        lengths = np.array([len(s) for s in test.strings])
        lo, hi = cell.data.train_lengths
        regions = [(lengths >= lo) & (lengths <= hi)]
        regions += [(lengths >= a) & (lengths <= b) for a, b in cell.eval.bins(cell.data.train_lengths,
                                                                                 cell.data.test_lengths)]
        print(f"{cell.language:<16} {cell.seed:>4}  " + "  ".join(f"{ceiling(items, r):>8.3f}" for r in regions))


if __name__ == "__main__":
    main()
