"""The theory check: the hand-built constructions of models/constructions.py, per length, at the saturated limit and
at finite attention scales c, beside the length n*(c) that softmax concentration predicts they fail at.

    accuracy_table(name, lengths, scales)  rows {length, scale, strings, wrong, accuracy, identical}; inf = saturated
                                           limit; identical: every logit equal to the limit's, bit for bit
    n_star(name, c)                        first length at which the construction gets a test string wrong at scale c
    predicted_n_star(name, c)              first length at which the concentration bound stops guaranteeing it
    construction_rows(lengths)             one "hand-built" row per construction for the report's recognition table
The command line, `satbench construct NAME --lengths 1..1000 [--scales 10,100,1000,10000] [--samples K]`, prints these
(satbench/construct_command.py).

Which scale. A finite scale here is `scale_attention(model, c)`: every attention score multiplied by c, i.e.
softmax(c * s), nothing else touched. That is exactly the quantity the concentration bound speaks about, and the
constructions' thresholds (flags, margins) live in the residual stream, where they must stay put. `saturate(model, c)`,
the paper's operation, multiplies every parameter by c instead: the scores then grow like c^2 (queries and keys both
scale), and the feed-forward biases and the readout scale with them, so the flag values and margins move too and the
bound no longer applies in its plain form. The saturated limit (`saturated_limit`) is the c = inf point of both.

The test strings of a length n: every string when n <= 12; beyond, `samples` members (language.sample), `samples`
negatives from the language's negative sampler (near misses, edits, shuffles, random strings), the near misses of
every sampled member, and the construction's *critical* strings (`critical_strings` in models/constructions.py):
the strings its finite-scale analysis says fail first, so that a measured n*(c) does not depend on whether a random
draw happened to be hard.
The draws of length n come from the seed (seed, n), so a length gives the same strings in any range.

The prediction (`predicted_n_star`). Let s be the scores of the deciding head at the last query, A the keys it must
attend to (for a construction with a flag-selecting head: the flagged keys, any of which gives the right answer)
and g the gap between the lowest score in A and every score outside A. Softmax puts mass

    eps = sum_{j not in A} e^{c s_j} / sum_j e^{c s_j} <= (n_off e^{-c g} e^{c max_A}) / e^{c max_A} <= n e^{-c g}

on the keys outside A (n_off <= n of the n + 1 keys are outside A, and the denominator has at least one term at
max_A). Twice this is the l1 distance between softmax(c s) and its restriction to A, which is the bound
||softmax(c s) - saturated(s)||_1 <= 2n exp(-c gap) with the saturated weights spread over A. The construction's
output tolerates a leak up to `tolerated_leak(n)` (its output margin divided by the smallest attended value, see
its docstring). So the decision is guaranteed while n e^{-c gap(n)} < tolerated_leak(n), and the predicted n*(c) is the
first n where that fails. With gap(n) ~ 1/n that is n ln(2n) ~ c: n*(c) grows like c / ln c.

The bound can only be early: the measured n*(c) is >= the predicted one. It is early by the factor that n e^{-c g}
overestimates eps for the critical string, whose single attended key competes with n keys at score 0:
eps = n / (n + e^{c g}). For the Dyck-1 construction the critical string fails when c/n <= ln(n^2/(n+2)) and the
bound gives up at c/n <= ln(2n(n+1)/(n+2)); the two logarithms differ by ln 2, so the measured n* exceeds the
predicted one by a factor of about 1 + ln 2 / ln n: 1.1 to 1.2 for c between 100 and 10^4. At c = 10 the lengths are
so short that whole steps count: failures need an even length (a balanced string), and 8 / 5 = 1.6.

fp32. At the saturated limit the decision has margin mu(n) = 1/(2(n+1)) in logit units and every quantity lies in
[-1, 1], so fp32 (unit roundoff 2^-24 ~ 6e-8) decides correctly as long as the rounding of an average of n + 1
terms of size 1/(n+1) stays below mu(n). A worst-case bound on that rounding, n * 2^-24 * max|partial sum| with
partial sums up to 1/2 for the deepest strings, reaches mu(n) near n ~ 4000; the observed error grows like
sqrt(n) and is far smaller (`margin_table` measures it); it is not reached below length 1000. The tie tolerance of
saturated attention sets no limit: it is relative to the row's largest |score| (models/attention.py, tie_floor), which
is the flag itself, so the unflagged keys (score exactly 0) never come within tol of a flag 1/(j*+1), at any length.
"""

import itertools
import math
import sys

import numpy as np
import torch
from tqdm import tqdm

from satbench.languages import BOS, get_language
from satbench.models.constructions import CONSTRUCTIONS, construct, get_construction

from .evaluate import at_scale, scale_name

EXHAUSTIVE_UP_TO = 12
SCALES = (10.0, 100.0, 1000.0, 10000.0)
REPORT_SCALES = (1.0, 1000.0, math.inf)
# Strings per forward pass are capped so that one (B, T, T) attention tensor stays near 64 MB.
ATTENTION_ELEMENTS = 1 << 24


# ---- test strings ------------------------------------------------------------------------------------------------


def evaluation_strings(name: str, n: int, samples: int = 8, seed: int = 0) -> tuple[list[str], list[bool]]:
    """The test strings of length n (see the module docstring) and their labels from the language's oracle."""
    language = get_language(name)
    if n <= EXHAUSTIVE_UP_TO:
        strings = ["".join(chars) for chars in itertools.product(language.alphabet, repeat=n)]
    else:
        rng = np.random.default_rng([seed, n])
        found = []
        for _ in range(samples):
            member = language.sample(rng, n)
            if member is not None:
                found += [member, *language.near_misses(rng, member)]
            negative = language.negative(rng, n)
            if negative is not None:
                found.append(negative)
        found += get_construction(name).critical_strings(n)
        strings = sorted({s for s in found if len(s) == n})
    return strings, [language.accepts(s) for s in strings]


def encode(name: str, strings: list[str]) -> torch.Tensor:
    """BOS + symbol ids, one row per string; the strings all have the same length, so there is no padding."""
    language = get_language(name)
    return torch.tensor([[BOS, *language.encode(s)] for s in strings], dtype=torch.long).reshape(len(strings), -1)


@torch.no_grad()
def logits(model, tokens: torch.Tensor, c: float) -> torch.Tensor:
    """Membership logits at attention scale c (inf: the saturated limit), in chunks that bound the memory."""
    T = tokens.shape[1]
    chunk = max(1, ATTENTION_ELEMENTS // (T * T))
    # Finite c scales the attention logits only: the quantity the concentration bound is about.
    with at_scale(model, c, scaling="attention"):
        return torch.cat([model(tokens[i:i + chunk])["logit"] for i in range(0, len(tokens), chunk)])


# ---- measurements ------------------------------------------------------------------------------------------------


def length_rows(model, name: str, n: int, scales, samples: int, seed: int) -> list[dict]:
    strings, labels = evaluation_strings(name, n, samples, seed)
    if not strings:
        return []
    tokens, labels = encode(name, strings), torch.tensor(labels)
    # "identical": every logit equals the saturated limit's bit for bit (a head whose scores all tie exactly); None
    # when the limit is not among the scales.
    limit = logits(model, tokens, math.inf) if any(math.isinf(c) for c in scales) else None
    rows = []
    for c in scales:
        out = limit if math.isinf(c) else logits(model, tokens, c)
        wrong = int(((out > 0) != labels).sum())
        rows.append({"length": n, "scale": c, "strings": len(strings), "wrong": wrong,
                     "accuracy": 1.0 - wrong / len(strings),
                     "identical": None if limit is None else torch.equal(out, limit)})
    return rows


def accuracy_table(name: str, lengths, scales=(math.inf, *SCALES), samples: int = 8, seed: int = 0,
                   progress: bool = False) -> list[dict]:
    """Rows {length, scale, strings, wrong, accuracy, identical} for every length and scale (inf = saturated limit)."""
    model = construct(name)
    # The cost grows like length^2 (attention), so a long range shows a progress bar weighted by it.
    lengths = list(lengths)
    bar = tqdm(total=sum((n + 1) ** 2 for n in lengths), disable=not progress, unit="pos^2", unit_scale=True,
               desc=name, file=sys.stderr)
    rows = []
    for n in lengths:
        rows += length_rows(model, name, n, scales, samples, seed)
        bar.update((n + 1) ** 2)
    bar.close()
    return rows


def n_star(name: str, c: float, lengths=range(1, 1001), samples: int = 8, seed: int = 0) -> int | None:
    """The first length at which the construction gets a test string wrong at scale c; None if it never does."""
    model = construct(name)
    for n in lengths:
        if any(row["wrong"] for row in length_rows(model, name, n, [c], samples, seed)):
            return n
    return None


def first_failures(rows) -> dict[float, int | None]:
    """n*(c) per scale from `accuracy_table` rows."""
    out = {}
    for row in sorted(rows, key=lambda r: r["length"]):
        out.setdefault(row["scale"], None)
        if row["wrong"] and out[row["scale"]] is None:
            out[row["scale"]] = row["length"]
    return out


def predicted_n_star(name: str, c: float, max_length: int = 10**7) -> int | None:
    """First n where n exp(-c gap(n)) >= tolerated_leak(n): where the concentration bound stops guaranteeing the
    construction (module docstring). None where it never does (every score ties: gap = inf) up to max_length.

    The guarantee n e^{-c/n} < leak holds for all small n and fails for all large n, so a doubling search followed by
    bisection finds the crossing without a sweep.
    """
    construction = get_construction(name)

    def guaranteed(n):
        gap = construction.gap(n)
        return math.isinf(gap) or n * math.exp(-c * gap) < construction.tolerated_leak(n)

    hi = 1
    while guaranteed(hi):
        if hi >= max_length:
            return None
        hi = min(2 * hi, max_length)
    lo = hi // 2  # guaranteed(lo) holds (or lo = 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if guaranteed(mid) else (lo, mid)
    return hi


@torch.no_grad()
def margin_table(name: str, lengths, samples: int = 8, seed: int = 0) -> list[dict]:
    """How close fp32 comes to flipping a decision at the saturated limit, per length.

    Each row: "min_margin", the smallest signed logit over the test strings (positive for a right answer) in units
    of the margin mu(n) = 1/(2(n+1)), and "rounding", the largest |fp32 logit - fp64 logit| over the strings in the
    same units: the same model in float64 stands in for exact arithmetic. A decision can only flip once the rounding
    reaches the margin, i.e. "rounding" reaches 1.
    """
    model32 = construct(name)
    model64 = construct(name).double()
    rows = []
    for n in lengths:
        strings, labels = evaluation_strings(name, n, samples, seed)
        if not strings:
            continue
        tokens, mu = encode(name, strings), 1.0 / (2 * (n + 1))
        single = logits(model32, tokens, math.inf).double()
        exact = logits(model64, tokens, math.inf)
        signed = torch.where(torch.tensor(labels), single, -single)
        rows.append({"length": n, "min_margin": float(signed.min()) / mu,
                     "rounding": float((single - exact).abs().max()) / mu})
    return rows


def construction_rows(lengths=(1, 40), scales=REPORT_SCALES, samples: int = 8, seed: int = 0) -> list[dict]:
    """One row per construction for the report's recognition table, marked hand-built.

    Each row: {"language", "variant": "hand-built", "construction", "lengths": (lo, hi), "strings",
    "acc": {scale name: accuracy over every test string of every length lo..hi}, "acc_by_length":
    {scale name: {length: accuracy}}, "scaling": "scale_attention"}. Scale names follow the report ("1", "1000",
    "inf"); a finite scale multiplies the attention scores only (module docstring), inf is the saturated limit.
    "acc" pools the strings, so the exhaustive lengths up to 12 (8190 strings) weigh most; "acc_by_length" has each.
    """
    lo, hi = lengths
    out = []
    for name in CONSTRUCTIONS:
        rows = accuracy_table(name, range(lo, hi + 1), scales, samples, seed)
        acc, by_length = {}, {}
        for c in scales:
            mine = [r for r in rows if r["scale"] == c]
            total = sum(r["strings"] for r in mine)
            acc[scale_name(c)] = 1.0 - sum(r["wrong"] for r in mine) / total
            by_length[scale_name(c)] = {r["length"]: r["accuracy"] for r in mine}
        out.append({"language": name, "variant": "hand-built", "construction": name, "lengths": (lo, hi),
                    "strings": sum(r["strings"] for r in rows if r["scale"] == scales[0]), "acc": acc,
                    "acc_by_length": by_length, "scaling": "scale_attention"})
    return out
