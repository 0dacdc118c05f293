"""Hand-built weights for the Recognizer that recognize majority, Dyck-1 and a^n b^n exactly under saturated attention.

They check the machinery against theory (ARCHITECTURE.md, "What theory predicts"): each is a plain state_dict for the
same `Recognizer` the harness trains, so the saturated limit, `scale_attention` and every probe run on them unchanged.

    construct(name) -> Recognizer   (eval mode)
    CONSTRUCTIONS[name]             the builder and the two numbers of its finite-scale analysis (`Construction`)

The shared shape: causal, one head, no positional encoding, no layer norm, biases on, d_model = 16, d_ff = 2. The
residual stream is a set of named scalar channels (below). d_model = 16 makes the head width 16, whose 1/sqrt(16) =
1/4 is exact in fp32, so a query bias of 4 turns q.k / sqrt(d) into exactly the key's channel value.

Notation. The string has n symbols; column 0 holds BOS and column i the i-th symbol, so a causal query at column i
sees i + 1 keys. Every construction starts with a *uniform* head: query and key weights are 0, all scores are exactly
0, and softmax(c * 0) is the uniform average at every c, the same as the saturated limit. Averaging the channel that
is 1 at BOS gives U_i = 1/(i+1), which stands in for a positional encoding: thresholds of size 1/(i+1) are written as
multiples of U_i, which is how every decision below keeps a margin that shrinks like 1/n without knowing n.

Decisions are read at the last column, n, as the sign of the logit (accept when logit > 0), with margin
mu(n) = 1/(2(n+1)) on each side. A test such as "balance == 0" becomes |DIFF_n| < U_n/2: the tolerance
1/(2(n+1)) sits halfway between the exact value 0 and the nearest wrong value 1/(n+1), so it must be (and is) below
1/n and scale with it. fp32 carries about 7 significant digits, so a margin of 5e-4 at n = 1000 sits four
orders of magnitude above the rounding of an average of +-1/(n+1) terms (see probes/theory_check.py for the length
where fp32 would run out).
"""

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from satbench.languages.base import BOS
from satbench.models.recognizer import ModelConfig, Recognizer

D_MODEL = 16
HEAD_WIDTH_ROOT = 4.0  # sqrt(D_MODEL) with one head: a query bias of 4 cancels the 1/sqrt(d) of the scores

# Residual channels. Token embedding writes the first four; attention and feed-forward layers add the rest.
BOS_CH = 0  # 1 at BOS
SYM = 1  # +1 for the first symbol (a, "("), -1 for the second (b, ")")
IS_A = 2  # 1 for the first symbol
IS_B = 3  # 1 for the second symbol
U = 4  # layer 1: 1/(i+1), the mean of BOS_CH
DIFF = 5  # layer 1: (#first - #second)/(i+1), the mean of SYM
BETA = 6  # layer 1: #second/(i+1), the mean of IS_B
FLAG = 7  # layer 1 feed-forward: U_i where position i is a violation, exactly 0 elsewhere
Y = 8  # layer 2: the attended mean of FLAG
ABS = 9  # layer 2 feed-forward: |DIFF|

FIRST, SECOND = 3, 4  # token ids of the alphabet's two symbols (languages/base.py: symbol k -> 3 + k)


def config(n_layers: int) -> ModelConfig:
    return ModelConfig(vocab_size=5, d_model=D_MODEL, n_heads=1, n_layers=n_layers, d_ff=2, attention="soft",
                       positional="none", layer_norm="none", causal=True, bias=True)


def zero_state(cfg: ModelConfig) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in Recognizer(cfg).state_dict().items()}
    return {k: torch.zeros(shape) for k, shape in shapes.items()}


def embed(sd):
    """Token embedding: BOS -> BOS_CH; first symbol -> SYM = +1, IS_A; second -> SYM = -1, IS_B. PAD and EOS -> 0."""
    E = sd["token_embedding.weight"]
    E[BOS, BOS_CH] = 1.0
    E[FIRST, SYM], E[FIRST, IS_A] = 1.0, 1.0
    E[SECOND, SYM], E[SECOND, IS_B] = -1.0, 1.0


def uniform_head(sd, layer, copies):
    """A head whose scores are all exactly 0 (q = k = 0), copying each `copies` (from, to) channel's prefix mean.

    The qkv weight stacks q (rows 0..15), k (16..31) and v (32..47); the output projection is the identity, so the
    averaged v lands in the residual stream channel by channel.
    """
    W = sd[f"blocks.{layer}.attn.qkv.weight"]
    for source, target in copies:
        W[2 * D_MODEL + target, source] = 1.0
    sd[f"blocks.{layer}.attn.proj.weight"].copy_(torch.eye(D_MODEL))


def flag_selecting_head(sd, layer):
    """score_ij = FLAG_j (q = constant 4 from the bias, k = FLAG, scaled by 1/4), value FLAG_j -> Y.

    Saturated, a query attends to the keys of largest FLAG: the earliest violation when there is one, every key (an
    exact tie at 0) when there is none.
    """
    sd[f"blocks.{layer}.attn.qkv.bias"][0] = HEAD_WIDTH_ROOT
    W = sd[f"blocks.{layer}.attn.qkv.weight"]
    W[D_MODEL + 0, FLAG] = 1.0
    W[2 * D_MODEL + Y, FLAG] = 1.0
    sd[f"blocks.{layer}.attn.proj.weight"].copy_(torch.eye(D_MODEL))


def step_of_u(sd, layer, weights, bias, target):
    """Feed-forward: target += relu(g) - relu(g - u) with g = weights . x + bias, i.e. clamp(g, 0, u).

    The constructions only feed it g <= -u (answer: exactly 0, since both ReLUs see a negative number at least u
    away from their kink, which no rounding of g can cross) or g >= u (answer: u, up to the rounding of g; the
    clamp is continuous there, so an error of size e in g moves the output by at most e).
    """
    fc_w, fc_b = sd[f"blocks.{layer}.mlp.fc.weight"], sd[f"blocks.{layer}.mlp.fc.bias"]
    for channel, w in weights.items():
        fc_w[0, channel] = w
        fc_w[1, channel] = w
    fc_w[1, U] -= 1.0
    fc_b[0], fc_b[1] = bias, bias
    proj = sd[f"blocks.{layer}.mlp.proj.weight"]
    proj[target, 0], proj[target, 1] = 1.0, -1.0


def absolute_value(sd, layer, source, target):
    """Feed-forward: target += relu(x) + relu(-x)."""
    fc_w = sd[f"blocks.{layer}.mlp.fc.weight"]
    fc_w[0, source], fc_w[1, source] = 1.0, -1.0
    proj = sd[f"blocks.{layer}.mlp.proj.weight"]
    proj[target, 0], proj[target, 1] = 1.0, 1.0


def readout(sd, weights):
    for channel, w in weights.items():
        sd["head.weight"][0, channel] = w


def load(cfg, sd) -> Recognizer:
    model = Recognizer(cfg)
    model.load_state_dict(sd)
    return model.eval()


def majority() -> Recognizer:
    """Majority (#a > #b) in one layer (Merrill, Sabharwal & Smith 2022, Theorem 3).

    Layer 1, uniform head (all scores exactly 0; there is no score gap, every key is attended at every c):
        U_i    = mean_{j<=i} [x_j = BOS]                 = 1/(i+1)
        DIFF_i = mean_{j<=i} ([x_j = a] - [x_j = b])     = (#a - #b)/(i+1)      over the prefix of length i
    Feed-forward: 0.
    Readout at the last column n:
        logit = DIFF_n - U_n / 2 = (#a - #b - 1/2)/(n+1)

    (#a - #b)/(n+1) > 0 is the textbook test; the -U/2 moves the threshold to the middle of the integer gap between a
    tie and a lead of one, so a tie whose fp32 sum of +-1/(n+1) rounds to +1e-9 is still rejected. Margin: 1/(2(n+1)).
    The empty string reads column 0: logit = -1/2, rejected.
    Since every score is 0, softmax(c * s) is the uniform average for every c: the model is the same function at
    c = 1, c = 10^4 and the saturated limit.
    """
    cfg = config(n_layers=1)
    sd = zero_state(cfg)
    embed(sd)
    uniform_head(sd, 0, [(BOS_CH, U), (SYM, DIFF)])
    readout(sd, {DIFF: 1.0, U: -0.5})
    return load(cfg, sd)


def dyck1() -> Recognizer:
    """Dyck-1 in two layers: prefix ratios, a flag per negative prefix, then "no flag and final balance 0"
    (the prefix-ratio construction of Bhattamishra, Ahuja & Goyal 2020, with a selecting head for the check).

    Layer 1, uniform head (all scores exactly 0, no gap):
        U_i    = 1/(i+1),     DIFF_i = (#( - #))/(i+1)       over the prefix of length i
    Feed-forward 1, with g_i = -2 DIFF_i - U_i = (-2 depth_i - 1)/(i+1):
        FLAG_i = relu(g_i) - relu(g_i - U_i) = clamp(g_i, 0, U_i)
               = U_i = 1/(i+1) if depth_i <= -1 (g_i >= U_i), exactly 0 if depth_i >= 0 (g_i <= -U_i)
    Layer 2, selecting head: score_ij = FLAG_j, value FLAG_j -> Y.
        Saturated: Y_n = max_j FLAG_j = 1/(j*+1) for the earliest negative prefix j* (or the mean of the flags within
        the tie tolerance of it, all >= 1/n), else Y_n = 0 (all scores tie at exactly 0, so a member gives the same
        Y = 0 at every c).
    Feed-forward 2: ABS_i = |DIFF_i|.
    Readout at column n:
        logit = U_n/2 - ABS_n - Y_n
        member:                           = 1/(2(n+1))              > 0
        final depth != 0:                 <= 1/(2(n+1)) - 1/(n+1)   < 0  (whatever Y is, since Y >= 0)
        final depth 0, a negative prefix: <= 1/(2(n+1)) - 1/n       < 0

    Score gap of the selecting head (the only one that depends on c): a negative prefix j has j <= n - 1 when the
    final depth is 0, so its score is >= 1/n; every other key scores exactly 0. The gap between attended and
    unattended keys is gap(n) = 1/n. At scale c the head leaks attention mass eps onto the unflagged keys, and
    Y >= (1 - eps)/n, so the decision survives as long as eps < 1 - n/(2(n+1)) (`tolerated_leak`).
    """
    cfg = config(n_layers=2)
    sd = zero_state(cfg)
    embed(sd)
    uniform_head(sd, 0, [(BOS_CH, U), (SYM, DIFF)])
    step_of_u(sd, 0, {DIFF: -2.0, U: -1.0}, 0.0, FLAG)
    flag_selecting_head(sd, 1)
    absolute_value(sd, 1, DIFF, ABS)
    readout(sd, {U: 0.5, ABS: -1.0, Y: -1.0})
    return load(cfg, sd)


def anbn() -> Recognizer:
    """a^n b^n (n >= 1) in two layers: flag every a that follows a b, then "no flag, #a = #b, not empty".

    Layer 1, uniform head (all scores exactly 0, no gap):
        U_i = 1/(i+1),   DIFF_i = (#a - #b)/(i+1),   BETA_i = #b/(i+1)        over the prefix of length i
    Feed-forward 1, with g_i = 2 BETA_i - U_i - 2 (1 - [x_i = a]):
        FLAG_i = clamp(g_i, 0, U_i) = U_i if x_i = a and a b came before (g_i >= U_i), exactly 0 otherwise
                 (x_i = a with no b before: g_i = -U_i; x_i != a: g_i <= 2 i/(i+1) - 2 < -U_i)
    Layer 2, selecting head: score_ij = FLAG_j, value FLAG_j -> Y (saturated: Y = 1/(j*+1) for the earliest flagged
    a, else 0, with all scores tied at exactly 0 for strings of the form a* b*).
    Feed-forward 2: ABS_i = |DIFF_i|.
    Readout at column n:
        logit = U_n/2 - ABS_n - Y_n - [x_n = BOS]
        a^k b^k:                          = 1/(2(n+1))              > 0
        #a != #b:                         <= -1/(2(n+1))
        #a = #b, an a after a b:          <= 1/(2(n+1)) - 1/(n+1)   < 0
        the empty string (column 0 = BOS): = 1/2 - 1                 < 0
    A string with no flag and #a = #b is a^k b^k, so these cases are all of them.

    Score gap of the selecting head: a flagged a sits at j <= n, score >= 1/(n+1); all other keys score exactly 0, so
    gap(n) = 1/(n+1). With leaked mass eps, Y >= (1 - eps)/(n+1), and the decision survives while eps < 1/2.
    """
    cfg = config(n_layers=2)
    sd = zero_state(cfg)
    embed(sd)
    uniform_head(sd, 0, [(BOS_CH, U), (SYM, DIFF), (IS_B, BETA)])
    step_of_u(sd, 0, {BETA: 2.0, U: -1.0, IS_A: 2.0}, -2.0, FLAG)
    flag_selecting_head(sd, 1)
    absolute_value(sd, 1, DIFF, ABS)
    readout(sd, {U: 0.5, ABS: -1.0, Y: -1.0, BOS_CH: -1.0})
    return load(cfg, sd)


@dataclass(frozen=True)
class Construction:
    """A builder and the two numbers of its finite-scale analysis (both read off its docstring).

    gap(n):              score gap, before the scale c, between the keys the deciding head must attend to and all
                         other keys, at the last query of a length-n string; math.inf where every score ties exactly
    tolerated_leak(n):   the attention mass on the other keys that the output margin absorbs
    critical_strings(n): the strings of length n its analysis says are hardest: those that fail first at a finite
                         scale, and those whose averages round the most, so that a measured n*(c) does not depend on
                         whether a random draw happened to be hard
    """

    name: str
    build: Callable[[], Recognizer]
    gap: Callable[[int], float]
    tolerated_leak: Callable[[int], float]
    critical_strings: Callable[[int], list[str]]

    @property
    def summary(self) -> str:
        return self.build.__doc__.strip().splitlines()[0]


def majority_critical(n: int) -> list[str]:
    """The block strings with a lead of one and a tie (or a deficit of one), whose running sums are largest."""
    if n == 0:
        return []
    lead = n // 2 + 1
    return ["a" * lead + "b" * (n - lead), "a" * (n - lead) + "b" * lead, "a" * (n // 2) + "b" * (n - n // 2)]


def dyck1_critical(n: int) -> list[str]:
    """A member followed by ")(": one negative prefix, at column n - 1, whose flag 1/n is the smallest a flag can be on
    a string of final depth 0; and the deepest member (n/2 opens then n/2 closes), whose prefix ratios round the
    most."""
    if n % 2 or n == 0:
        return []
    return ["()" * (n // 2 - 1) + ")(", "(" * (n // 2) + ")" * (n // 2)]


def anbn_critical(n: int) -> list[str]:
    """a^(k-1) b^k a: one flagged a, at the last column, flag 1/(n+1); and a^k b^k itself."""
    if n % 2 or n == 0:
        return []
    k = n // 2
    return ["a" * (k - 1) + "b" * k + "a", "a" * k + "b" * k]


CONSTRUCTIONS = {
    "majority": Construction("majority", majority, lambda n: math.inf, lambda n: 1.0, majority_critical),
    "dyck1": Construction("dyck1", dyck1, lambda n: 1.0 / max(n, 1), lambda n: 1.0 - n / (2.0 * (n + 1)),
                          dyck1_critical),
    "anbn": Construction("anbn", anbn, lambda n: 1.0 / (n + 1), lambda n: 0.5, anbn_critical),
}


def get_construction(name: str) -> Construction:
    if name not in CONSTRUCTIONS:
        close = difflib.get_close_matches(str(name), list(CONSTRUCTIONS), n=1)
        hint = f"did you mean '{close[0]}'?" if close else "known: " + ", ".join(CONSTRUCTIONS)
        raise ValueError(f"unknown construction '{name}' ({hint})")
    return CONSTRUCTIONS[name]


def construct(name: str) -> Recognizer:
    """The hand-built Recognizer for `name` (majority, dyck1 or anbn), in eval mode."""
    return get_construction(name).build()
