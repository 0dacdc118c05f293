"""Consistency checks of one language: does its sampler agree with its own oracle, and are its datasets free of
length, parity and counting shortcuts? This is what `satbench languages check` runs, on built-in languages and on
plugins alike.

A check also returns the meta of the dataset a default bench builds, whose distinct strings `satbench languages check`
judges through report/data_warnings.py: weak data is a warning, not a failure."""

import dataclasses
import itertools
from dataclasses import dataclass, field

import numpy as np

from satbench.data.dataset import DataConfig, make_dataset
from satbench.languages.base import ENUMERATION_LIMIT, Language

CHECK_LENGTHS = (*range(25), 50, 100)
DRAWS_PER_LENGTH = 12
# Lengths up to this many strings are enumerated to check `count` (the report's table stops at 12).
MAX_ENUMERATED_LENGTH = 12
# The data section of configs/default.yaml (and of gpu.yaml and theory.yaml): the dataset whose distinct strings
# report/data_warnings.py judges, from the meta the check returns. configs/ is not installed with the package, so it is
# spelled out here; tests check that they agree.
BENCH_DATA = DataConfig(train_lengths=(1, 20), test_lengths=(1, 40), train_size=4000, test_per_length=40)


@dataclass
class CheckResult:
    name: str
    failures: list[str] = field(default_factory=list)
    baselines: dict = field(default_factory=dict)
    bench_meta: dict = field(default_factory=dict)  # the meta of the dataset a default bench builds

    @property
    def ok(self) -> bool:
        return not self.failures


def enumerated_count(lang: Language, n: int) -> int | None:
    """Members of length n, counted by running the oracle on every string (None when there are too many)."""
    if lang.strings_of_length(n) > ENUMERATION_LIMIT:
        return None
    return sum(lang.accepts("".join(s)) for s in itertools.product(lang.alphabet, repeat=n))


def members_of_length(lang: Language, n: int) -> int | None:
    """The exact count where the language knows it, else by enumeration where that is small; None otherwise."""
    known = lang.count(n)
    return known if known is not None else enumerated_count(lang, n)


def check_language(lang: Language, seed: int = 0) -> CheckResult:
    result = CheckResult(lang.name)
    try:
        _check_samplers(lang, seed, result.failures)
        _check_counts(lang, result.failures)
        _check_next_symbols(lang, result.failures)
        dataset = make_dataset(lang, seed=seed)
        bench_dataset = make_dataset(lang, seed=seed, **dataclasses.asdict(BENCH_DATA))
    except Exception as error:  # a plugin may fail in any way; the check reports it instead of crashing
        result.failures.append(f"{type(error).__name__}: {error}")
        return result
    result.baselines = dataset.baselines
    result.bench_meta = bench_dataset.meta
    for shortcut, bound in lang.shortcut_bounds.items():
        accuracy = dataset.baselines.get(shortcut)
        if shortcut not in lang.decided_by and accuracy is not None and accuracy > bound:
            result.failures.append(f"the {shortcut} shortcut scores {accuracy:.3f} > {bound} on the test split")
    return result


def _check_samplers(lang, seed, failures):
    for n in CHECK_LENGTHS:
        rng = np.random.default_rng([seed, n])
        members = [lang.sample(rng, n) for _ in range(DRAWS_PER_LENGTH)]
        others = [lang.negative(rng, n) for _ in range(DRAWS_PER_LENGTH)]
        for s in members:
            if s is not None and not (isinstance(s, str) and len(s) == n and lang.accepts(s)):
                failures.append(f"sample(rng, {n}) returned {s!r}, which is not a member of length {n}")
                return
        for s in others:
            if s is not None and not (isinstance(s, str) and len(s) == n and not lang.accepts(s)):
                failures.append(f"negative(rng, {n}) returned {s!r}, which is not a non-member of length {n}")
                return
        count = lang.count(n)
        if count is not None and (count == 0) != (members[0] is None):
            failures.append(f"count({n}) = {count} but sample(rng, {n}) returned {members[0]!r}")
        if count is not None and (count == lang.strings_of_length(n)) != (others[0] is None):
            failures.append(f"count({n}) = {count} of {lang.strings_of_length(n)} strings but negative(rng, {n}) "
                            f"returned {others[0]!r}")
        for s in filter(None, members[:2] + others[:2]):
            if lang.prefix_accepts(s) != [lang.accepts(s[:i]) for i in range(n + 1)]:
                failures.append(f"prefix_accepts({s!r}) disagrees with accepts() on its prefixes")
        again = np.random.default_rng([seed, n])
        if [lang.sample(again, n) for _ in range(DRAWS_PER_LENGTH)] != members:
            failures.append(f"sample(rng, {n}) is not reproducible from the generator's seed")


def _check_counts(lang, failures):
    for n in range(MAX_ENUMERATED_LENGTH + 1):
        known, enumerated = lang.count(n), enumerated_count(lang, n)
        if enumerated is None:
            break
        if known is not None and known != enumerated:
            failures.append(f"count({n}) = {known}, but {enumerated} strings of length {n} are accepted")


def _check_next_symbols(lang, failures):
    """Where the language defines next_symbols: every symbol that continues some enumerated member must be in the set
    (the converse, a symbol in the set that only longer members use, cannot be seen by enumeration)."""
    if lang.next_symbols("") is None:
        return
    seen: dict[str, set] = {}
    for n in range(MAX_ENUMERATED_LENGTH + 1):
        if lang.strings_of_length(n) > ENUMERATION_LIMIT:
            break
        for s in map("".join, itertools.product(lang.alphabet, repeat=n)):
            if lang.accepts(s):
                for i in range(n):
                    seen.setdefault(s[:i], set()).add(s[i])
    for prefix, followers in seen.items():
        claimed = lang.next_symbols(prefix)
        if len(claimed) != len(prefix) + 1:
            failures.append(f"next_symbols({prefix!r}) has {len(claimed)} entries, not {len(prefix) + 1}")
            return
        missing = followers - set(claimed[-1])
        if missing:
            failures.append(f"next_symbols({prefix!r}) ends with {claimed[-1]!r}, but members continue "
                            f"{prefix!r} with {''.join(sorted(missing))!r}")
            return
