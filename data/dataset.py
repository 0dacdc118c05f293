"""Datasets: balanced, length-matched members and non-members of a language, as padded token tensors.

Layout of a split: column 0 holds BOS, columns 1..n the symbols of a string of length n, PAD after it. The membership
label belongs to the last symbol (column n), which a causal model reads after seeing the whole string; no EOS is
needed for that, so none is added (the width is 1 + the longest length of the split's range).

Balance: labels are balanced within every length that has both members and non-members, so that neither the length
nor its parity predicts the label. Lengths with no member (odd lengths for a^n b^n) are left out. Lengths with members
but no non-members (even lengths of (aa)*) keep their members, and their share of non-members is drawn at the lengths
that have them: labels are then balanced across lengths rather than within each, and the metadata says so.

The test split holds `test_per_length` strings at each usable length of the test range. Strings of the training lengths
are held out: a test string never occurs in the training split, so a length whose members all occur in training
(a^n b^n has one member per length) has no test strings; the metadata names such lengths.

The next-symbol task (label kind `next_symbols`, Bhattamishra et al. 2020) trains on members only: at every prefix
s[:i] the target is the set of symbols that can follow it in some member, as one bit per token id (the symbol's id,
and EOS for "s[:i] is itself a member"); ids the language does not use are not scored.
"""

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from satbench.languages.base import (
    BOS,
    EOS,
    FIRST_SYMBOL,
    MAX_LENGTH,
    PAD,
    Language,
    PluginError,
    checked_negative,
    checked_negative_and_kind,
    checked_sample,
    get_language,
)

LABEL_KINDS = ("membership", "prefix", "next_symbols")
# Negative mixtures a protocol may impose instead of each language's own. flare: FLaRe (Butoi et al. 2025) perturbs a
# member with probability 0.5 and otherwise draws a random string; here the edits keep the length, as every negative
# of this suite does.
NEGATIVES = {"language": None, "flare": {"edit": 0.5, "random": 0.5}}
# Draws allowed per held-out string wanted before a length is declared short of held-out strings.
HELD_OUT_TRIES = 50


@dataclass
class DataConfig:
    """The `data` section of a bench config: what make_dataset builds for each cell."""

    train_lengths: tuple[int, int] = (1, 20)
    test_lengths: tuple[int, int] = (1, 40)
    train_size: int = 2000
    test_per_length: int = 40
    label_kind: str = "membership"  # one of LABEL_KINDS
    # language: each language's own negative mixture | flare: length-keeping edits and random strings, 1:1
    negatives: str = "language"
    # Strings of a validation split drawn like the training split (its balance; its lengths, or validation_lengths),
    # for eval.select validation: a fresh sample, so it may repeat training strings (a^n b^n has one member per
    # length), while the test split holds none of its strings. 0: no validation split. FLaRe validates on lengths
    # 0-40 (its training lengths: "inductive bias") or 0-80 ("expressivity").
    validation_size: int = 0
    validation_lengths: tuple[int, int] | None = None  # unset: the training lengths

    def __post_init__(self):
        self.train_lengths, self.test_lengths = tuple(self.train_lengths), tuple(self.test_lengths)
        for key in ("train_lengths", "test_lengths"):
            lo, hi = getattr(self, key)
            if not 0 <= lo <= hi:
                raise ValueError(f"data.{key}: [{lo}, {hi}] is not a range 0 <= lo <= hi")
            if hi > MAX_LENGTH:
                raise ValueError(f"data.{key}: {hi} is above the samplers' limit of {MAX_LENGTH} "
                                 "(satbench.languages.base.MAX_LENGTH)")
        if self.test_lengths[1] < self.train_lengths[1]:
            raise ValueError("data.test_lengths: the test range must reach at least as far as the training range")
        if not self.train_size >= 2:  # a member and a non-member at least
            raise ValueError(f"data.train_size: {self.train_size} must be >= 2")
        if not self.test_per_length > 0:
            raise ValueError(f"data.test_per_length: {self.test_per_length} must be > 0")
        if self.validation_lengths is not None:
            if not self.validation_size:
                raise ValueError("data.validation_lengths: given without data.validation_size, it draws nothing")
            self.validation_lengths = tuple(self.validation_lengths)
            lo, hi = self.validation_lengths
            if not 0 <= lo <= hi <= self.test_lengths[1]:
                raise ValueError(f"data.validation_lengths: [{lo}, {hi}] is not a range within 0 and the longest "
                                 f"test length {self.test_lengths[1]}")
        if isinstance(self.validation_size, bool) or not isinstance(self.validation_size, int) or \
                self.validation_size < 0 or self.validation_size == 1:
            raise ValueError(f"data.validation_size: {self.validation_size!r} must be 0 or an integer >= 2")
        for key, choices in (("label_kind", LABEL_KINDS), ("negatives", NEGATIVES)):
            if getattr(self, key) not in choices:
                raise ValueError(f"data.{key}: {getattr(self, key)!r} is not one of {', '.join(choices)}")


@dataclass
class Split:
    tokens: torch.Tensor  # (N, T) long: BOS, the symbols, PAD
    lengths: torch.Tensor  # (N,) long: string length, BOS not counted
    labels: torch.Tensor  # (N,) float: 1.0 member, 0.0 non-member
    prefix_labels: torch.Tensor | None  # (N, T) float for label_kind "prefix": column i = accepts(s[:i]); -1 on PAD
    strings: list[str]
    # (N, T, vocab) int8 for label_kind "next_symbols": [n, i, id] = 1 if the token can follow s[:i], 0 if it cannot,
    # -1 where not scored (int8: a test split of long strings holds N * T * vocab of them)
    next_labels: torch.Tensor | None = None
    # What each string is: "member", or the kind of negative that produced it (languages.base.STRING_KINDS), so that
    # accuracy can be read per kind. None for a split built without them.
    kinds: list[str] | None = None

    def __len__(self):
        return len(self.strings)


@dataclass
class Dataset:
    language: str
    label_kind: str
    vocab_size: int
    train: Split
    test: Split
    meta: dict
    baselines: dict
    validation: Split | None = None  # with validation_size > 0


def make_dataset(language: str | Language, train_lengths=(1, 20), test_lengths=(1, 40), train_size=2000,
                 test_per_length=50, seed=0, label_kind="membership", vocab_size=None, negatives="language",
                 validation_size=0, validation_lengths=None) -> Dataset:
    """Train, test and (with validation_size) validation splits of `language`, reproducible byte for byte from
    `seed`; a validation split leaves the other two as they are without it, except that the test split avoids its
    strings."""
    lang = get_language(language)
    train_lo, train_hi = _length_range("train_lengths", train_lengths)
    test_lo, test_hi = _length_range("test_lengths", test_lengths)
    _count("train_size", train_size, minimum=2)
    _count("test_per_length", test_per_length, minimum=0)
    _count("seed", seed, minimum=0)
    if label_kind not in LABEL_KINDS:
        raise ValueError(f"label_kind {label_kind!r} is not one of {', '.join(LABEL_KINDS)}")
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives {negatives!r} is not one of {', '.join(NEGATIVES)}")
    mixture = NEGATIVES[negatives]
    if vocab_size is None:
        vocab_size = lang.vocab_size
    elif _count("vocab_size", vocab_size, minimum=1) < lang.vocab_size:
        raise ValueError(f"vocab_size {vocab_size} is too small for '{lang.name}', which needs {lang.vocab_size}")
    if label_kind == "next_symbols" and lang.next_symbols("") is None:
        raise ValueError(f"language '{lang.name}' does not define next_symbols, which label_kind next_symbols needs")
    members_only = label_kind == "next_symbols"

    train_rng, test_rng, order_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    notes = []

    pos, neg = _plan(lang, range(train_lo, train_hi + 1), {}, notes, "train", total=train_size,
                     members_only=members_only)
    if not pos:
        raise ValueError(f"language '{lang.name}' has no members of any length in {train_lo}..{train_hi}")
    if not neg and not members_only:
        raise ValueError(f"language '{lang.name}' has no non-members of any length in {train_lo}..{train_hi}")
    train = _draw(lang, train_rng, pos, neg, set(), notes, "train", mixture)

    validation = []
    if validation_size:
        # Its own random streams (the fourth and fifth children of the seed), so that the other splits do not move.
        validation_rng, validation_order_rng = (np.random.default_rng(s)
                                                for s in np.random.SeedSequence(seed).spawn(5)[3:])
        valid_lo, valid_hi = validation_lengths or (train_lo, train_hi)
        pos, neg = _plan(lang, range(valid_lo, valid_hi + 1), {}, notes, "validation", total=validation_size,
                         members_only=members_only)
        validation = _draw(lang, validation_rng, pos, neg, set(), notes, "validation", mixture)

    seen = {}  # (length, label) -> distinct training and validation strings, which the test split must avoid
    for s, label, _ in train + validation:
        seen.setdefault((len(s), label), set()).add(s)
    pos, neg = _plan(lang, range(test_lo, test_hi + 1), seen, notes, "test", per_length=test_per_length,
                     members_only=members_only)
    exclude = {s for s, _, _ in train + validation}
    test = _draw(lang, test_rng, pos, neg, exclude, notes, "test", mixture) if pos and (neg or members_only) else []
    if test_per_length and not test:
        notes.append("test: no usable length (no held-out member and non-member); the test split is empty")

    train_split = _split(lang, train, 1 + train_hi, label_kind, order_rng, vocab_size)
    test_split = _split(lang, test, 1 + test_hi, label_kind, order_rng, vocab_size)
    validation_split = _split(lang, validation, 1 + max(len(s) for s, _, _ in validation), label_kind,
                              validation_order_rng, vocab_size) if validation else None
    meta = {
        "seed": seed,
        "train_lengths": [train_lo, train_hi],
        "test_lengths": [test_lo, test_hi],
        "train_size": train_size,
        "test_per_length": test_per_length,
        "uses_eos": False,
        "negative_mixture": dict(lang.negative_mixture if mixture is None else mixture),
        "decided_by": sorted(lang.decided_by),
        "strings": {"train": len(train), "test": len(test)},
        "distinct": {"train": len(set(train_split.strings)), "test": len(set(test_split.strings))},
        # Members and non-members are disjoint, so these and `distinct` give both classes: a split whose members are a
        # few strings repeated (a^n b^n has one member per length) is weak where its total does not show it.
        "distinct_members": {"train": len({s for s, label, _ in train if label}),
                             "test": len({s for s, label, _ in test if label})},
        "per_length": {"train": _per_length(train), "test": _per_length(test)},
        "notes": notes,
    }
    if validation:
        meta["validation_size"] = validation_size
        meta["validation_lengths"] = [valid_lo, valid_hi]
        meta["strings"]["validation"] = len(validation)
        meta["distinct"]["validation"] = len(set(validation_split.strings))
    if members_only:
        notes.append("next_symbols: members only, so the membership shortcut baselines do not apply")
        baselines = {}
    else:
        # scikit-learn when a dataset is built, not when satbench.data is imported (models/train.py imports it).
        from satbench.data.baselines import shortcut_baselines

        baselines = shortcut_baselines(train_split, test_split, len(lang.alphabet), lang.decided_by)
    return Dataset(lang.name, label_kind, vocab_size, train_split, test_split, meta, baselines, validation_split)


def with_next_symbols(split: Split, language, vocab_size: int) -> Split:
    """`split` with next-symbol labels on its members (non-members' rows unscored): the targets of train.aux_losses'
    next_symbols term on a membership split."""
    lang = get_language(language)
    members = torch.nonzero(split.labels > 0.5).squeeze(1)
    labels = torch.full((len(split), split.tokens.shape[1], vocab_size), -1, dtype=torch.int8)
    labels[members] = _next_labels(lang, [split.strings[i] for i in members.tolist()], split.tokens.shape[1],
                                   vocab_size)
    return dataclasses.replace(split, next_labels=labels)


# ---- which lengths, how many of each label ---------------------------------------------------------------------


def _members(lang, n):
    """(members, non-members) of length n; for a language that cannot count them, inf stands for "some"."""
    known = lang.count(n)
    total = lang.strings_of_length(n)
    if known is None:
        probe = np.random.default_rng(n)
        some = (checked_sample(lang, probe, n) is not None, checked_negative(lang, probe, n) is not None)
        return tuple(math.inf if exists else 0 for exists in some)
    return known, total - known


def _seen_count(seen, n, label):
    return len(seen.get((n, label), ()))


def _plan(lang, lengths, seen, notes, split, total=None, per_length=None, members_only=False):
    """Strings wanted per length and label, as {length: count} for members and for non-members.

    `seen` holds the training strings when planning the test split: only held-out strings count as available.
    With `members_only` every string is a member, spread over the lengths that have held-out members.
    """
    if members_only:
        usable = [n for n in lengths if _members(lang, n)[0] > _seen_count(seen, n, 1)]
        if not usable:
            return {}, {}
        return _spread(total if total is not None else per_length * len(usable), usable), {}
    has_pos, has_neg, lopsided = {}, {}, {}
    for n in lengths:
        members, others = _members(lang, n)
        has_pos[n] = members > _seen_count(seen, n, 1)
        has_neg[n] = others > _seen_count(seen, n, 0)
        # A length with only one label by definition ((aa)* at any length) is usable; one whose other label merely
        # ran out of held-out strings is not, since its test strings would all carry one label.
        lopsided[n] = members == 0 or others == 0
    both = [n for n in lengths if has_pos[n] and has_neg[n]]
    pos_only = [n for n in lengths if has_pos[n] and not has_neg[n] and lopsided[n]]
    neg_only = [n for n in lengths if has_neg[n] and not has_pos[n] and lopsided[n]]
    pos_lengths = sorted(both + pos_only)
    # Non-members come from the lengths that also have members; only a language with no such length (one decided by
    # its length) takes them from lengths without members.
    neg_lengths = both or neg_only
    if not pos_lengths or not neg_lengths:
        return {}, {}
    held = " held-out" if seen else ""
    used = set(pos_lengths) | set(neg_lengths)
    for missing, label in ((has_pos, "members"), (has_neg, "non-members")):
        left_out = [n for n in lengths if n not in used and not missing[n]]
        if left_out:
            notes.append(f"{split}: no{held} {label} at {_lengths(left_out)}; left out")
        used.update(left_out)
    if pos_only:
        notes.append(f"{split}: only members exist at {_lengths(pos_only)}; labels are balanced across lengths "
                     f"(non-members drawn at {_ranges(neg_lengths)}), not within each")
    if total is None:
        total = per_length * len(set(pos_lengths) | set(neg_lengths))
    return _spread(total // 2, pos_lengths), _spread(total - total // 2, neg_lengths)


def _spread(k, lengths):
    base, extra = divmod(k, len(lengths))
    return {n: base + (i < extra) for i, n in enumerate(lengths)}


def _draw(lang, rng, pos, neg, exclude, notes, split, mixture=None):
    """[(string, label, kind)] drawn length by length, members first; strings in `exclude` are redrawn."""
    out = []
    member = lambda lang, rng, n: (checked_sample(lang, rng, n), "member")  # noqa: E731
    negative = lambda lang, rng, n: checked_negative_and_kind(lang, rng, n, mixture)  # noqa: E731
    for n in sorted(set(pos) | set(neg)):
        members = _draw_one_kind(member, lang, rng, n, pos.get(n, 0), exclude)
        others = _draw_one_kind(negative, lang, rng, n, neg.get(n, 0), exclude)
        if len(members) < pos.get(n, 0) or len(others) < neg.get(n, 0):
            if n in pos and n in neg:  # keep the length balanced
                k = min(len(members), len(others))
                members, others = members[:k], others[:k]
            notes.append(f"{split}: length {n}: drew only {len(members)} members and {len(others)} non-members "
                         f"not in the training split (wanted {pos.get(n, 0)} and {neg.get(n, 0)})")
        out += [(s, 1, kind) for s, kind in members] + [(s, 0, kind) for s, kind in others]
    return out


def _draw_one_kind(draw, lang, rng, n, k, exclude):
    """Up to k (string, kind) pairs of one label from `draw`, which returns one such pair."""
    out = []
    tries = k if not exclude else HELD_OUT_TRIES * k + 200
    while len(out) < k and tries > 0:
        s, kind = draw(lang, rng, n)
        tries -= 1
        if s is None:
            break
        if s not in exclude:
            out.append((s, kind))
    return out


def _per_length(pairs):
    table = {}
    for s, label, _ in pairs:
        row = table.setdefault(len(s), {"positive": 0, "negative": 0, "distinct": set()})
        row["positive" if label else "negative"] += 1
        row["distinct"].add(s)
    return {n: {**row, "distinct": len(row["distinct"])} for n, row in sorted(table.items())}


def _lengths(lengths):
    return f"length {lengths[0]}" if len(lengths) == 1 else f"lengths {_ranges(lengths)}"


def _ranges(lengths):
    """[1, 3, 5, 6, 7] -> '1, 3, 5-7'."""
    parts, start = [], None
    for i, n in enumerate(lengths):
        if start is None:
            start = n
        if i + 1 == len(lengths) or lengths[i + 1] != n + 1:
            parts.append(str(start) if start == n else f"{start}-{n}")
            start = None
    return ", ".join(parts)


# ---- tensors ----------------------------------------------------------------------------------------------------


def _split(lang, pairs, width, label_kind, rng, vocab_size):
    """Shuffled into a random order (the first rows of either split are a fair sample of it)."""
    order = rng.permutation(len(pairs))
    strings = [pairs[i][0] for i in order]
    labels = np.array([pairs[i][1] for i in order], dtype=np.float32)
    kinds = [pairs[i][2] for i in order]
    lengths = np.array([len(s) for s in strings], dtype=np.int64)
    tokens = np.full((len(strings), width), PAD, dtype=np.int64)
    tokens[:, 0] = BOS
    symbols = np.arange(width - 1)[None, :] < lengths[:, None]
    tokens[:, 1:][symbols] = _symbol_ids(lang, "".join(strings))
    prefix = None
    if label_kind == "prefix":
        prefix = np.full((len(strings), width), -1.0, dtype=np.float32)
        rows = []
        for s, label in zip(strings, labels, strict=True):
            row = lang.prefix_accepts(s)
            if len(row) != len(s) + 1 or row[-1] != bool(label):
                raise PluginError(f"language '{lang.name}': prefix_accepts({s!r}) disagrees with accepts()")
            rows += row
        prefix[np.arange(width)[None, :] <= lengths[:, None]] = rows
        prefix = torch.from_numpy(prefix)
    next_labels = _next_labels(lang, strings, width, vocab_size) if label_kind == "next_symbols" else None
    return Split(torch.from_numpy(tokens), torch.from_numpy(lengths), torch.from_numpy(labels), prefix, strings,
                 next_labels, kinds)


def _next_labels(lang, strings, width, vocab_size):
    """(N, width, vocab_size): row i of string s scores the ids of lang's symbols and EOS after s[:i]; -1 elsewhere."""
    out = np.full((len(strings), width, vocab_size), -1, dtype=np.int8)
    scored = [EOS, *range(FIRST_SYMBOL, FIRST_SYMBOL + len(lang.alphabet))]
    column = {c: FIRST_SYMBOL + k for k, c in enumerate(lang.alphabet)}
    for row, s in enumerate(strings):
        follow, ends = lang.next_symbols(s), lang.prefix_accepts(s)
        if len(follow) != len(s) + 1 or len(ends) != len(s) + 1 or any(s[i] not in follow[i] for i in range(len(s))) \
                or any(c not in column for symbols in follow for c in symbols):
            raise PluginError(f"language '{lang.name}': next_symbols({s!r}) or prefix_accepts({s!r}) is not one set "
                              "of alphabet symbols per prefix holding the member's own next symbol")
        out[row, :len(s) + 1, scored] = 0
        out[row, :len(s) + 1, EOS] = ends
        for i, symbols in enumerate(follow):
            out[row, i, [column[c] for c in symbols]] = 1
    return torch.from_numpy(out)


def _symbol_ids(lang, text):
    """Token ids of every symbol of text, vectorised: code points looked up in the sorted alphabet."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    alphabet = np.frombuffer(lang.alphabet.encode("utf-32-le"), dtype=np.uint32)
    order = np.argsort(alphabet)
    return FIRST_SYMBOL + order[np.searchsorted(alphabet[order], codes)]


# ---- argument checks --------------------------------------------------------------------------------------------


def _length_range(key, value):
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise ValueError(f"{key}: expected a pair (lo, hi), got {value!r}") from None
    if not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in (lo, hi)) or not 0 <= lo <= hi:
        raise ValueError(f"{key}: ({lo!r}, {hi!r}) is not a range of lengths 0 <= lo <= hi")
    return int(lo), int(hi)


def _count(key, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{key}: expected an integer >= {minimum}, got {value!r}")
    return int(value)
