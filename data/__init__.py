"""Datasets built from the languages: balanced, length-matched splits as token tensors, their shortcut baselines, the
checks `satbench languages check` runs, and the stacking of several members' splits into one block.

Apart from satbench.languages because these need torch and scikit-learn, and the oracles and samplers do not.
"""

from satbench.data.dataset import LABEL_KINDS, NEGATIVES, DataConfig, Dataset, Split, make_dataset, with_next_symbols
from satbench.data.stack import StackedSplit, stack_splits

__all__ = ["LABEL_KINDS", "NEGATIVES", "DataConfig", "Dataset", "Split", "StackedSplit", "make_dataset",
           "stack_splits", "with_next_symbols"]
