"""Time to build a dataset of about 10,000 strings of lengths 1..100, per language, on one core.

Each dataset has 9,000 training strings spread over lengths 1-100 and 10 held-out test strings at each of the lengths
1-100, so the figure includes the held-out redraws, the tensors and the shortcut baselines. The target is under 2 s
per language. Usage: python benchmarks/datasets.py [language ...]
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import sys  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from satbench.data import make_dataset
from satbench.languages import get_language, language_names  # noqa: E402

TRAIN_SIZE, TEST_PER_LENGTH, LENGTHS = 9000, 10, (1, 100)


def build_seconds(name, seed=0):
    get_language(name).count(LENGTHS[1])  # counting tables are built once per process; time them separately
    start = time.perf_counter()
    dataset = make_dataset(name, train_lengths=LENGTHS, test_lengths=LENGTHS, train_size=TRAIN_SIZE,
                           test_per_length=TEST_PER_LENGTH, seed=seed)
    return time.perf_counter() - start, len(dataset.train) + len(dataset.test)


def main(names):
    torch.set_num_threads(1)
    names = names or language_names()
    print(f"{'language':10} {'strings':>8} {'seconds':>8} {'us/string':>10}")
    worst = 0.0
    for name in names:
        start = time.perf_counter()
        get_language(name).count(LENGTHS[1])
        tables = time.perf_counter() - start
        seconds, strings = build_seconds(name)
        worst = max(worst, seconds)
        print(f"{name:10} {strings:8d} {seconds:8.3f} {1e6 * seconds / strings:10.1f}"
              + (f"   (+{tables:.3f} s counting tables, once)" if tables > 0.01 else ""))
    print(f"slowest: {worst:.3f} s for about {TRAIN_SIZE + TEST_PER_LENGTH * (LENGTHS[1] - LENGTHS[0] + 1)} strings "
          f"(target < 2 s)")


if __name__ == "__main__":
    main(sys.argv[1:])
