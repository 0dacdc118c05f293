"""Linear probes: do the hidden states hold the quantities a counter machine would keep?

Saturated transformers can recognize counting languages by averaging, which yields prefix ratios such as
(#a - #b) / i (Merrill, Sabharwal & Smith 2022; Bhattamishra et al. 2020). We fit a linear map from each layer's
hidden state at column i to the counter value of the prefix of length i, on half of the strings, and score it on the
other half. A randomly initialised model of the same config is probed the same way as the control: a probe can read
a counter off random features too (a uniform average of embeddings already is a count ratio), and only the gap
between trained and control says that training built the representation.
"""

import numpy as np
import torch
from joblib import Parallel, cpu_count, delayed
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import balanced_accuracy_score, r2_score
from sklearn.preprocessing import StandardScaler

from satbench.languages.base import FIRST_SYMBOL, get_language
from satbench.models import PAD, eval_mode

from .registry import Probe, register
from .report_section import ProbeReport

RIDGE_ALPHA = 1.0  # on standardised features, so the same penalty means the same thing for every layer and model


def _running_count(s, up: str, down: str) -> np.ndarray:
    """(len(s) + 1,) running #up - #down; entry i is the count over the prefix s[:i]."""
    steps = [1 if x == up else -1 if x == down else 0 for x in s]
    return np.concatenate([[0], np.cumsum(steps, dtype=np.int64)])


def _per_length(count: np.ndarray) -> np.ndarray:
    """count[i] / i, with 0 at i = 0 (the empty prefix has no ratio)."""
    i = np.arange(len(count), dtype=np.float64)
    return np.divide(count, i, out=np.zeros(len(count)), where=i > 0)


def counter_targets(language, strings) -> dict[str, list[np.ndarray]]:
    """The probe targets of every prefix of every string, as the language declares them (languages/base.py).

    Entry i of a string's array belongs to the prefix of length i, which is token column i (column 0 is BOS, the
    empty prefix).
      each counter name: (#up - #down) / i, float, for every (up, down) pair in `language.counters`; 0 at i = 0
      `language.prefix_flag`: whether the prefix is in the language (`prefix_accepts`), bool; absent when None
    A language that declares neither gives {}.
    """
    language = _registered(language)
    out: dict[str, list[np.ndarray]] = {}
    for name, (up, down) in language.counters.items():
        out[name] = [_per_length(_running_count(s, up, down)) for s in strings]
    if language.prefix_flag:
        out[language.prefix_flag] = [np.array(language.prefix_accepts(s), dtype=bool) for s in strings]
    return out


def _registered(language):
    """The registered language of a name, a Language, or anything with a `.name`."""
    return get_language(getattr(language, "name", language))


def has_targets(language) -> bool:
    language = _registered(language)
    return bool(language.counters or language.prefix_flag)


def _rows(hidden: np.ndarray, tokens: np.ndarray, target, strings: np.ndarray):
    """Features (L + 1, N, d) and targets (N,) for columns 1 .. len(target[b]) - 1 of the given strings."""
    feats, ys = [], []
    for b in strings:
        y = np.asarray(target[b])
        cols = np.arange(1, len(y))
        if len(y) > tokens.shape[1] or (tokens[b, cols] == PAD).any():
            raise ValueError(f"string {b}: {len(y) - 1} prefix targets but fewer real token columns")
        feats.append(hidden[:, b, cols])
        ys.append(y[1:])
    return np.concatenate(feats, axis=1), np.concatenate(ys)


def probe_layers(hidden, tokens, target, seed: int, kind: str | None = None) -> dict[str, float]:
    """Fit one linear probe per layer from hidden states to a per-prefix target; score it on held-out strings.

    hidden: (L + 1, B, T, d) residual stream; tokens: (B, T) with PAD after each string; target: B per-string arrays
    aligned with the token columns (see `counter_targets`). Column 0 (BOS) is left out. The strings, not the
    positions, are split in half (seeded): positions of one string share its prefix, so a position split would let
    the probe memorise strings.
    kind: "continuous" (StandardScaler + Ridge, scored by R^2 on the held-out half) or "flag" (StandardScaler +
    class-balanced LogisticRegression, scored by balanced accuracy, so chance is 0.5 however rare the flag is);
    default: "flag" for a bool target, else "continuous".
    Returns {"r2_layer0", ..., "r2_layer{L}"} or {"bacc_layer0", ...}; NaN for a layer whose halves lack the variety
    to fit or score (one string, a constant target, one class).
    """
    # float64: the states of a model whose norm collapsed or grew far are tiny or huge, and their variances must not
    # underflow or overflow in the scaler.
    hidden = hidden.detach().double().cpu().numpy() if torch.is_tensor(hidden) else np.asarray(hidden, np.float64)
    tokens = tokens.detach().cpu().numpy() if torch.is_tensor(tokens) else np.asarray(tokens)
    if len(target) != tokens.shape[0] or hidden.shape[1] != tokens.shape[0]:
        sizes = f"{hidden.shape[1]}, {tokens.shape[0]}, {len(target)}"
        raise ValueError(f"hidden, tokens and target disagree on the number of strings: {sizes}")
    if kind is None:
        kind = "flag" if all(np.asarray(y).dtype == bool for y in target) else "continuous"
    metric = {"continuous": "r2", "flag": "bacc"}[kind]
    n_layers = hidden.shape[0]
    nan = {f"{metric}_layer{layer}": float("nan") for layer in range(n_layers)}

    order = np.random.default_rng(seed).permutation(tokens.shape[0])
    half = len(order) // 2
    if half == 0:
        return nan
    x_train, y_train = _rows(hidden, tokens, target, order[:half])
    x_test, y_test = _rows(hidden, tokens, target, order[half:])
    if len(np.unique(y_train)) < 2 or len(np.unique(y_test)) < 2:
        return nan

    out = {}
    for layer in range(n_layers):
        if not (np.isfinite(x_train[layer]).all() and np.isfinite(x_test[layer]).all()):
            out[f"{metric}_layer{layer}"] = float("nan")  # overflowed states (a saturated model) carry no probe
            continue
        scaler = StandardScaler().fit(x_train[layer])
        train, test = scaler.transform(x_train[layer]), scaler.transform(x_test[layer])
        if not (np.isfinite(train).all() and np.isfinite(test).all()):
            out[f"{metric}_layer{layer}"] = float("nan")  # states too small or large to standardise carry no probe
            continue
        if kind == "continuous":
            score = r2_score(y_test, Ridge(alpha=RIDGE_ALPHA).fit(train, y_train).predict(test))
        else:
            probe = LogisticRegression(class_weight="balanced", max_iter=1000).fit(train, y_train)
            score = balanced_accuracy_score(y_test, probe.predict(test))
        out[f"{metric}_layer{layer}"] = float(score)
    return out


@torch.no_grad()
def hidden_states(model, tokens: torch.Tensor) -> torch.Tensor:
    """(L + 1, B, T, d) residual stream of the exact forward (eval mode; the training mode is put back)."""
    with eval_mode(model):
        return model(tokens, internals=True)["hidden"]


def random_init_like(model, seed: int, config=None):
    """A freshly initialised model of the same class and config (default: model.config), on the same device.

    Seeded inside a forked RNG so that building the control does not move the caller's random stream.
    """
    config = model.config if config is None else config
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        control = type(model)(config)
    return control.to(device)


def decode_strings(tokens, alphabet: str) -> list[str]:
    """The strings a batch of token rows spells: symbol id FIRST_SYMBOL + k is alphabet[k]; BOS and EOS are skipped
    and a row ends at its first PAD."""
    rows = tokens.tolist() if torch.is_tensor(tokens) else np.asarray(tokens).tolist()
    strings = []
    for row in rows:
        symbols = []
        for t in row:
            if t == PAD:
                break
            if t >= FIRST_SYMBOL:
                symbols.append(alphabet[t - FIRST_SYMBOL])
        strings.append("".join(symbols))
    return strings


def linear_probe_metrics(model, dataset_split, language, seed: int, config=None, max_strings: int = 512):
    """Linear probes for every target `language` declares (its counters and its prefix flag), on the trained model
    and on a random-init control.

    dataset_split: anything with .tokens (B, T); the first max_strings rows are used. The strings are decoded from
    those tokens with the language's alphabet, so the targets line up with exactly what the model read. language: a
    registered name or a language object (with .name and .alphabet). config: the model's config for the control
    (default model.config).
    Keys, for each target of `counter_targets` and each layer l (metric r2 for a float target, bacc for a flag):
      probe_{target}_{metric}_layer{l}, probe_{target}_{metric}_best            trained model (best = max over layers)
      probe_control_{target}_{metric}_layer{l}, probe_control_{target}_{metric}_best
    {} for a language that declares no targets.
    """
    if not has_targets(language):
        return {}
    tokens = torch.as_tensor(dataset_split.tokens[:max_strings]).to(next(model.parameters()).device)
    control = random_init_like(model, seed, config)
    return probe_scores(hidden_states(model, tokens), hidden_states(control, tokens), tokens, language, seed)


def probe_scores(hidden, control_hidden, tokens, language, seed: int) -> dict[str, float]:
    """`linear_probe_metrics` from hidden states already computed, (L + 1, B, T, d) for the trained model and for
    its random-init control (e.g. sliced out of one pass over a whole ensemble)."""
    language = _registered(language)
    targets = counter_targets(language, decode_strings(tokens, language.alphabet))
    out: dict[str, float] = {}
    for prefix, states in (("probe", hidden), ("probe_control", control_hidden)):
        for target_name, target in targets.items():
            scores = probe_layers(states, tokens, target, seed)
            for key, value in scores.items():
                out[f"{prefix}_{target_name}_{key}"] = value
            metric = next(iter(scores)).split("_layer")[0]
            finite = [v for v in scores.values() if np.isfinite(v)]
            out[f"{prefix}_{target_name}_{metric}_best"] = max(finite) if finite else float("nan")
    return out


# Fewer members' linear probes than this per worker process do not repay starting the process.
MEMBERS_PER_PROBE_WORKER = 8


@register
class LinearProbes(Probe):
    """`probe_scores` for every member whose language declares probe targets, against the untrained control."""

    name = "linear_probes"
    needs_internals = True
    report = ProbeReport(
        title="Counter representations (linear probes)",
        text="Best layer's held-out R² for a counter a language declares (its count over the prefix length, such as "
             "(#a-#b)/i or the Dyck depth/i) or balanced accuracy for its prefix flag (is the prefix in the language, "
             "or balanced), fit on half of the strings and scored on the other half; `probe_control_*` is the same "
             "probe on a randomly initialised model of the same shape.",
        columns=["probe_*_best"])

    def measure(self, run):
        jobs = []
        for i, (dataset, strings) in enumerate(zip(run.datasets, run.strings)):
            if not has_targets(dataset.language):
                continue
            n = len(strings.strings)
            jobs.append((i, delayed(probe_scores)(run.exact["hidden"][i][:, :n].cpu().numpy(),
                                                  run.control_hidden[i][:, :n].cpu().numpy(),
                                                  run.tokens[i, :n].cpu().numpy(), get_language(dataset.language),
                                                  run.seeds[i])))
        # scikit-learn fits on the CPU, hundreds of them in a large group: spread over the cores this process may use.
        n_jobs = min(cpu_count(), len(jobs) // MEMBERS_PER_PROBE_WORKER) or 1
        scores = Parallel(n_jobs=n_jobs)(job for _, job in jobs)
        out = [{} for _ in run.datasets]
        for (i, _), member in zip(jobs, scores, strict=True):
            out[i] = member
        return out
