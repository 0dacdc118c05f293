"""Shortcut baselines: how far length, length parity or symbol counts alone get on a dataset's test split.

Each is fit on the training split and scored on the test split. A dataset where one of them scores near 100% has a
shortcut a model could take instead of recognizing the language; where the language's definition makes the shortcut
exact (counts decide majority), the `<name>_by_definition` flag says so.
"""

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from satbench.languages.base import FIRST_SYMBOL

SHORTCUTS = ("length", "parity", "counts")


def lookup_accuracy(train_keys, train_labels, test_keys, test_labels) -> float:
    """Predict, for each key (a length, or a length parity), the label most frequent with that key in training.

    Ties and keys never seen in training get the label most frequent in the whole training split.
    """
    fallback = float(train_labels.mean() > 0.5)
    table = {}
    for key in np.unique(train_keys):
        rate = train_labels[train_keys == key].mean()
        table[int(key)] = fallback if rate == 0.5 else float(rate > 0.5)
    predicted = np.array([table.get(int(k), fallback) for k in test_keys])
    return float((predicted == test_labels).mean())


def count_features(split, alphabet_size) -> np.ndarray:
    """(N, alphabet_size + 1): how often each symbol occurs, then the length."""
    tokens = split.tokens.numpy()
    counts = [(tokens == FIRST_SYMBOL + k).sum(axis=1) for k in range(alphabet_size)]
    return np.stack(counts + [split.lengths.numpy()], axis=1).astype(np.float64)


def counts_accuracy(train, test, alphabet_size) -> float:
    """A logistic regression on symbol counts plus length (standardised; weakly regularised, so that a linear rule
    in the counts, such as #a > #b, is found when it exists)."""
    y = train.labels.numpy()
    if len(np.unique(y)) < 2:
        return float((test.labels.numpy() == y[0]).mean())
    model = make_pipeline(StandardScaler(), LogisticRegression(C=100.0, max_iter=2000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(count_features(train, alphabet_size), y)
    return float(model.score(count_features(test, alphabet_size), test.labels.numpy()))


def shortcut_baselines(train, test, alphabet_size, decided_by=frozenset()) -> dict:
    """{"length", "parity", "counts"}: test accuracies (None on an empty test split), and a `<name>_by_definition`
    flag for each."""
    out = {}
    if len(test.labels) == 0:
        out.update(dict.fromkeys(SHORTCUTS))
    else:
        y_train, y_test = train.labels.numpy(), test.labels.numpy()
        n_train, n_test = train.lengths.numpy(), test.lengths.numpy()
        out["length"] = lookup_accuracy(n_train, y_train, n_test, y_test)
        out["parity"] = lookup_accuracy(n_train % 2, y_train, n_test % 2, y_test)
        out["counts"] = counts_accuracy(train, test, alphabet_size)
    for name in SHORTCUTS:
        out[f"{name}_by_definition"] = name in decided_by
    return out
