"""Every number the README's findings quote, recomputed from the published rows, so that prose and tables cannot drift
apart.

Each claim below is a function of the rows of one published run (results/...) that returns the words the README
prints, such as `1.00 [1.00, 1.00], 5/5`: the mean over seeds, its 95% bootstrap interval (report/stats.py, the
report's own) and the seeds at or above the threshold. `test_every_claim_is_quoted` finds each in the findings;
`test_no_number_in_the_findings_goes_unchecked` removes every claim from the findings and asserts that no number is
left (beyond the few words in NOT_NUMBERS). Print the claims with `python tests/test_findings.py`.
"""

import math
import re
from functools import cache
from pathlib import Path

import numpy as np
import yaml

from satbench.harness import config as C
from satbench.harness.results import load_rows_with_config
from satbench.models.kinds import build_model
from satbench.report.common import flat_config, flatten
from satbench.report.stats import CONFIDENCE, mean_interval
from satbench.report.tables import LIMIT_GAP, limit_not_reached, long_table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
FINDINGS = ("## What the theory run found", "## What the norm-growth run found",
            "## Can training reach the saturated limit?", "## The peers at their own budget")
THRESHOLD = 0.99
# Words of the findings that hold digits but quote no measurement or config value: names and definitions.
NOT_NUMBERS = (r"Dyck-1", r"Dyck-2", r"B20", r"Tomita 4", r"Figure 1",
               r"2-core", r"sqrt\(t\)", r"t\^gamma", r"c\^4", r"\(0 would be saturated\)",
               r"c = 1(?![\d.e])", r"c -> 0", r"c > 0", r"(?:^| )\d\. (?=\*\*)")

HOMOGENEOUS = {"model.layer_norm": "branch", "model.bias": False}
PRE_LN = {"model.layer_norm": "pre", "model.bias": True}


def findings_text(readme: str) -> str:
    """The README's findings sections, each up to the next ## heading, with every run of whitespace one space (a
    quoted number may be wrapped onto the next line)."""
    parts = []
    for heading in FINDINGS:
        start = readme.index(heading)
        end = readme.find("\n## ", start + len(heading))
        parts.append(readme[start:end if end >= 0 else None])
    return " ".join(" ".join(parts).split())


@cache
def rows(run: str) -> tuple:
    return tuple(load_rows_with_config(RESULTS / run))


def select(run: str, language: str, variant: str, **setting) -> list[dict]:
    """The rows of one cell over seeds: a language, a variant and any config fields (dots as in `flatten`, passed with
    `__` for the dot)."""
    wanted = {key.replace("__", "."): value for key, value in setting.items()}
    found = [row for row in rows(run) if row["config"]["language"] == language
             and row["config"]["model"]["attention"] == variant
             and all(flatten(row["config"]).get(k) == v for k, v in wanted.items())]
    assert found, (run, language, variant, setting)
    return found


def values(found: list[dict], read) -> np.ndarray:
    return np.array([read(row) for row in found], dtype=float)


def mean_words(numbers, digits=2) -> str:
    """`mean [low, high]`: the mean over seeds with its 95% bootstrap interval."""
    numbers = np.asarray(numbers, dtype=float)
    numbers = numbers[~np.isnan(numbers)]
    low, high = mean_interval(numbers)
    return f"{numbers.mean():.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def accuracy_words(numbers) -> str:
    """`mean [low, high], k/n`: also how many seeds reach the threshold."""
    numbers = np.asarray(numbers, dtype=float)
    return f"{mean_words(numbers)}, {int((numbers >= THRESHOLD).sum())}/{len(numbers)}"


def accuracy(run, language, variant, scale="1", region="in", **setting):
    """Accuracy per seed at a scale, in distribution ("in") or in a length bin ("31-40")."""
    def read(row):
        metrics = row["metrics"]
        return metrics["acc"][scale] if region == "in" else metrics["acc_bins"][region][scale]
    return values(select(run, language, variant, **setting), read)


def probe(run, language, variant, key, **setting):
    return values(select(run, language, variant, **setting), lambda row: row["metrics"]["probes"].get(key, math.nan))


CLAIMS = {}


def claim(function):
    CLAIMS[function.__name__] = function
    return function


# ---- what the findings read by (configs and the report's own constants) -----------------------------------------

def short_float(x: float) -> str:
    """1e-05 -> 1e-5, 1000000000.0 -> 1e9."""
    mantissa, _, exponent = f"{x:.0e}".partition("e")
    return f"{mantissa}e{int(exponent)}"


@claim
def reading():
    return f"its {CONFIDENCE:.0%} bootstrap interval over seeds, and the seeds at or above {THRESHOLD}"


@claim
def scales():
    config = rows("theory")[0]["config"]
    largest = max(float(c) for c in config["eval"]["scales"] if math.isfinite(float(c)))
    return f"from c = 1 to {short_float(largest)}"


@claim
def tie_rule():
    return f"(tol = {short_float(rows('theory')[0]['config']['model']['tol'])})"


@claim
def limit_gap():
    return f"differ by more than {LIMIT_GAP}"


@claim
def criteria():
    config = rows("theory")[0]["config"]
    lo, hi = config["data"]["train_lengths"]
    bins = " and ".join(f"{a}-{b}" for a, b in config["eval"]["length_bins"])
    return f"the training lengths {lo}-{hi}) and length generalization ({bins})"


@claim
def longest_bin():
    a, b = rows("theory")[0]["config"]["eval"]["length_bins"][-1]
    return f"on lengths {a}-{b}"


@claim
def norm_growth_grid():
    found = rows("norm_growth")
    decays = sorted({row["config"]["train"]["weight_decay"] for row in found})
    seeds = sorted({row["config"]["seed"] for row in found})
    return f"weight decay {' or '.join(f'{d:g}' for d in decays)} x {len(seeds)} seeds"


@claim
def norm_growth_points():
    return f"probed at {rows('norm_growth')[0]['config']['train']['log_points']} log-spaced steps"


@claim
def norm_growth_gpu():
    config = yaml.safe_load((ROOT / "configs" / "norm_growth_gpu.yaml").read_text())
    return f"{config['train']['steps']:,} steps at d_model {config['model']['d_model']}"


# ---- the theory run (results/theory) ----------------------------------------------------------------------------

ARCHITECTURES = {"homogeneous": HOMOGENEOUS, "pre-LN": PRE_LN}


def by_architecture(words_of):
    """`homogeneous X, pre-LN Y` from a function of one architecture's setting."""
    return ", ".join(f"{name} {words_of(setting)}" for name, setting in ARCHITECTURES.items())


def setting_args(setting):
    return {key.replace(".", "__"): value for key, value in setting.items()}


@claim
def theory_size():
    found = rows("theory")
    config = found[0]["config"]
    seeds = sorted({row["config"]["seed"] for row in found})
    return f"{len(seeds)} seeds ({len(found)} cells, {config['train']['steps']} steps each)"


def soft_accuracy(language, scale="1", region="in"):
    return by_architecture(lambda setting: accuracy_words(
        accuracy("theory", language, "soft", scale, region, **setting_args(setting))))


@claim
def soft_majority_in_distribution():
    return f"majority {soft_accuracy('majority')}"


@claim
def soft_dyck1_in_distribution():
    return f"Dyck-1 {soft_accuracy('dyck1')}"


@claim
def soft_majority_longest_bin():
    return f"majority {soft_accuracy('majority', region='31-40')}"


@claim
def soft_dyck1_longest_bin():
    return f"Dyck-1 {soft_accuracy('dyck1', region='31-40')}"


@claim
def soft_majority_at_the_limit():
    return f"majority {soft_accuracy('majority', 'inf')}"


@claim
def soft_dyck1_at_the_limit():
    return f"Dyck-1 {soft_accuracy('dyck1', 'inf')}"


@claim
def soft_first_at_the_limit():
    return f"first {soft_accuracy('first', 'inf')}"


@claim
def soft_majority_uniform():
    return f"majority {soft_accuracy('majority', 'uniform')}"


@claim
def soft_dyck1_uniform():
    return f"Dyck-1 {soft_accuracy('dyck1', 'uniform')}"


def soft_probe(language, key, digits=2):
    return by_architecture(lambda setting: mean_words(probe("theory", language, "soft", key,
                                                            **setting_args(setting)), digits))


@claim
def layer_alone_majority():
    return (f"majority: layer 1 alone {soft_probe('majority', 'acc_limit_layer0')}; layer 2 alone "
            f"{soft_probe('majority', 'acc_limit_layer1')}")


@claim
def layer_alone_dyck1():
    return (f"Dyck-1: layer 1 alone {soft_probe('dyck1', 'acc_limit_layer0')}; layer 2 alone "
            f"{soft_probe('dyck1', 'acc_limit_layer1')}")


@claim
def kappa_counters():
    return (f"majority {soft_probe('majority', 'decision_kappa')}; Dyck-1 {soft_probe('dyck1', 'decision_kappa')}")


@claim
def distance_to_saturation():
    return (f"majority {soft_probe('majority', 'tv_limit')}; Dyck-1 {soft_probe('dyck1', 'tv_limit')}")


def tie_share(language, variant, key):
    found = [row for setting in ARCHITECTURES.values()
             for row in select("theory", language, variant, **setting_args(setting))]
    return values(found, lambda row: row["metrics"]["ties"].get(key, math.nan))


@claim
def value_distinct_ties():
    shares = np.concatenate([tie_share(language, "soft", "value_distinct_share") for language in ("majority", "dyck1")])
    splits = np.concatenate([tie_share(language, "soft", "split_share") for language in ("majority", "dyck1")])
    return f"{np.nanmin(splits):.0%}-{np.nanmax(splits):.0%} of the queries"  \
        + f" split their attention at the limit and {np.nanmax(shares):.0%} of those splits"


def tolerance_words(language, tol):
    return by_architecture(lambda setting: accuracy_words(values(
        select("theory", language, "soft", **setting_args(setting)),
        lambda row: row["metrics"]["tie_tolerance_acc"][tol]["in"])))


@claim
def tolerance_majority():
    return f"majority {tolerance_words('majority', '0.1')} at tol 0.1 and {tolerance_words('majority', '1')} at tol 1"


@claim
def tolerance_dyck1():
    return f"Dyck-1 {tolerance_words('dyck1', '0.1')} at tol 0.1 and {tolerance_words('dyck1', '1')} at tol 1"


def trained_words(language, variant):
    return by_architecture(lambda setting: accuracy_words(accuracy("theory", language, variant,
                                                                   **setting_args(setting))))


@claim
def trained_saturated():
    return "; ".join(f"{name} {trained_words(language, 'saturated')}"
                     for name, language in (("majority", "majority"), ("Dyck-1", "dyck1"), ("a^n b^n", "anbn")))


@claim
def trained_hard_equals_saturated():
    same = total = 0
    for setting in ARCHITECTURES.values():
        for language in ("majority", "dyck1", "anbn"):
            for saturated, hard in zip(select("theory", language, "saturated", **setting_args(setting)),
                                       select("theory", language, "hard", **setting_args(setting)), strict=True):
                total += 1
                same += saturated["metrics"]["acc_by_length"]["1"] == hard["metrics"]["acc_by_length"]["1"]
    return f"{same} of the {total} saturated/hard pairs"


@claim
def anbn_by_kind():
    def kind(name):
        return mean_words(values([row for setting in ARCHITECTURES.values()
                                  for row in select("theory", "anbn", "saturated", **setting_args(setting))],
                                 lambda row: row["metrics"]["acc_by_kind"]["1"].get(name, math.nan)))
    return f"members {kind('member')}, near misses {kind('near_miss')}, random strings {kind('random')}"


@claim
def tolerant_surrogate():
    def trained(language):
        return by_architecture(lambda setting: accuracy_words(accuracy("theory/tolerant", language, "saturated",
                                                                       **setting_args(setting))))
    shares = [np.nanmean(values(select("theory/tolerant", language, "saturated", **setting_args(setting)),
                                lambda row: row["metrics"]["ties"].get("value_distinct_share", math.nan)))
              for language in ("majority", "dyck1") for setting in ARCHITECTURES.values()]
    return (f"{min(shares):.0%}-{max(shares):.0%} of split queries (cell means), and saturated majority reaches "
            f"{trained('majority')}, Dyck-1 {trained('dyck1')}")


@claim
def limit_reached():
    table = long_table(list(rows("theory")))
    flagged = limit_not_reached(table)
    return f"{len(flagged)} of the {table['hash'].nunique()} cells"


def parameter_and_logit_differences():
    """Per architecture, the largest |accuracy difference| between the parameter sweep at c and the logit sweep at c^4
    over the trained cells the two runs share (benchmarks/parameter_vs_logit.py prints the table)."""
    def trained(row):
        config = {key: value for key, value in row["config"].items() if key != "eval"}
        return repr(sorted((key, repr(value)) for key, value in config.items()))

    by_logits = {trained(row): row for row in rows("theory")}
    largest, pairs = {}, {}
    for row in rows("theory/parameters"):
        twin = by_logits[trained(row)]
        for scale, acc in row["metrics"]["acc"].items():
            logit_scale = f"{round(float(scale) ** 4, 1):g}" if scale not in ("1", "inf", "uniform") else None
            if logit_scale in twin["metrics"]["acc"]:
                name = "homogeneous" if row["config"]["model"]["layer_norm"] == "branch" else "pre-LN"
                largest[name] = max(largest.get(name, 0.0), abs(acc - twin["metrics"]["acc"][logit_scale]))
                pairs[name] = pairs.get(name, 0) + 1
    return largest, pairs


@claim
def parameter_vs_logit():
    largest, pairs = parameter_and_logit_differences()
    return (f"largest difference {largest['homogeneous']:.3f} over {pairs['homogeneous']} pairs of cell and scale; in "
            f"the pre-LN block with biases up to {largest['pre-LN']:.3f}")


# ---- the norm-growth run (results/norm_growth) ------------------------------------------------------------------

LANGUAGES = {"majority": "majority", "Dyck-1": "dyck1", "first": "first"}


def growth(language, key, optimizer="adamw", decay=0.0, digits=2):
    return mean_words(probe("norm_growth", language, "soft", key, train__optimizer=optimizer,
                            train__weight_decay=decay), digits)


def per_language(words_of):
    return "; ".join(f"{name} {words_of(language)}" for name, language in LANGUAGES.items())


@claim
def norm_growth_size():
    found = rows("norm_growth")
    config = found[0]["config"]
    return f"{len(found)} cells, {config['train']['steps']:,} steps"


def best_laws(optimizer, decay):
    counts = {}
    for language in LANGUAGES.values():
        for row in select("norm_growth", language, "soft", train__optimizer=optimizer, train__weight_decay=decay):
            law = row["metrics"]["probes"]["best_law"]
            counts[law] = counts.get(law, 0) + 1
    return ", ".join(f"{law} in {count}" for law, count in sorted(counts.items(), key=lambda item: -item[1]))


@claim
def adamw_best_law():
    return f"AdamW without decay: {best_laws('adamw', 0.0)} of {len(select_all('adamw', 0.0))} cells"


@claim
def sgd_best_law():
    return f"SGD without decay: {best_laws('sgd', 0.0)} of {len(select_all('sgd', 0.0))} cells"


def select_all(optimizer, decay):
    return [row for language in LANGUAGES.values()
            for row in select("norm_growth", language, "soft", train__optimizer=optimizer, train__weight_decay=decay)]


@claim
def adamw_gamma():
    return per_language(lambda language: growth(language, "law_gamma"))


@claim
def adamw_gamma_excludes_sqrt():
    intervals = [mean_interval(probe("norm_growth", language, "soft", "law_gamma", train__optimizer="adamw",
                                     train__weight_decay=0.0)) for language in LANGUAGES.values()]
    outside = sum(not low <= 0.5 <= high for low, high in intervals)
    return "0.5 lies outside every interval" if outside == len(intervals) else \
        f"0.5 lies outside {outside} of the {len(intervals)} intervals"


@claim
def adamw_norm_ratio():
    return per_language(lambda language: growth(language, "norm_ratio", digits=1))


@claim
def adamw_norm_ratio_with_embeddings():
    return per_language(lambda language: growth(language, "norm_ratio_with_embeddings"))


@claim
def adamw_cosine():
    return per_language(lambda language: growth(language, "cos_first_last"))


@claim
def adamw_decay_norm_ratio():
    return per_language(lambda language: growth(language, "norm_ratio", decay=0.1, digits=1))


@claim
def sgd_norm_ratio():
    return per_language(lambda language: growth(language, "norm_ratio", optimizer="sgd", digits=1))


def growth_accuracy(language, scale):
    return accuracy_words(accuracy("norm_growth", language, "soft", scale, train__optimizer="adamw",
                                   train__weight_decay=0.0))


@claim
def adamw_at_c1():
    return per_language(lambda language: growth_accuracy(language, "1"))


@claim
def adamw_at_the_limit():
    return per_language(lambda language: growth_accuracy(language, "inf"))


@claim
def adamw_uniform():
    return per_language(lambda language: growth_accuracy(language, "uniform"))


@claim
def adamw_distance_at_initialisation():
    return per_language(lambda language: mean_words(values(
        select("norm_growth", language, "soft", train__optimizer="adamw", train__weight_decay=0.0),
        lambda row: row["log"][0]["tv_limit"])))


@claim
def adamw_kappa():
    return per_language(lambda language: growth(language, "decision_kappa"))


@claim
def adamw_distance_to_saturation():
    return per_language(lambda language: growth(language, "tv_limit"))


# ---- the training experiments (results/decay_ties, results/fixed_scale, results/soft_to_saturated) -------------

def setting_means(run, key, read, by=("language", "model.layer_norm")):
    """{setting: mean over seeds} of `read(row)` for every combination of the config fields `by` (and `key`)."""
    groups = {}
    for row in rows(run):
        flat = flatten(row["config"])
        groups.setdefault(tuple(flat[f] for f in (*by, key)), []).append(read(row))
    return {setting: float(np.mean(v)) for setting, v in groups.items()}


def limit_accuracy(row):
    return row["metrics"]["acc"]["inf"]


def grid_words(run, field, name, joiner=" or "):
    found = rows(run)
    values = sorted({flatten(row["config"])[field] for row in found})
    seeds = sorted({row["config"]["seed"] for row in found})
    steps = found[0]["config"]["train"]["steps"]
    return (f"{name} {', '.join(f'{v:g}' for v in values[:-1])}{joiner}{values[-1]:g} x {len(seeds)} seeds "
            f"({len(found)} cells, {steps} steps each)")


def recognized_at_the_limit(run):
    """`k of n cells`: the cells whose accuracy at c = inf reaches the threshold, in distribution."""
    found = rows(run)
    return f"{sum(limit_accuracy(row) >= THRESHOLD for row in found)} of {len(found)} cells"


@claim
def decay_grid():
    return grid_words("decay_ties", "train.weight_decay", "AdamW weight decay")


def decayed(language, decay, read, **setting):
    return values(select("decay_ties", language, "soft", train__weight_decay=decay,
                         **setting_args(setting or HOMOGENEOUS)), read)


@claim
def decay_query_norm():
    norm = lambda row: row["metrics"]["probes"]["wq_norm_layer0"]  # noqa: E731
    return (f"from {mean_words(decayed('majority', 0.0, norm))} at decay 0 to "
            f"{mean_words(decayed('majority', 3.0, norm))} at decay 3")


@claim
def decay_uniform():
    uniform = lambda row: row["metrics"]["acc"]["uniform"]  # noqa: E731
    return (f"{accuracy_words(decayed('majority', 0.0, uniform))} at decay 0 and "
            f"{accuracy_words(decayed('majority', 3.0, uniform))} at decay 3")


@claim
def decay_limit():
    means = setting_means("decay_ties", "train.weight_decay", limit_accuracy).values()
    return (f"between {min(means):.2f} and {max(means):.2f} in all {len(means)} settings; "
            f"{recognized_at_the_limit('decay_ties')}")


@claim
def decay_tolerances():
    found = rows("decay_ties")
    tolerances = sorted(found[0]["metrics"]["tie_tolerance_acc"], key=float)
    same = sum(len({row["metrics"]["tie_tolerance_acc"][t]["in"] for t in tolerances}) == 1 for row in found)
    names = ", ".join(short_float(float(t)) if float(t) else "0" for t in tolerances)
    return f"the same in {same} of {len(found)} cells at tie tolerances {names}"


@claim
def decay_value_distinct():
    share = max(row["metrics"]["ties"]["value_distinct_share"] for row in rows("decay_ties"))
    return f"value-distinct ties: at most {share:.2f} of the split queries of any cell"


@claim
def decay_cost():
    trained = lambda row: row["metrics"]["acc"]["1"]  # noqa: E731
    return (f"a^n b^n from {accuracy_words(decayed('anbn', 0.0, trained))} at decay 0 to "
            f"{accuracy_words(decayed('anbn', 3.0, trained))} at decay 3")


@claim
def fixed_scale_grid():
    return grid_words("fixed_scale", "model.attention_scale", "attention_scale")


def scaled(language, variant, scale, c):
    return accuracy("fixed_scale", language, variant, c, model__attention_scale=float(scale))


@claim
def fixed_scale_tolerance():
    config = rows("fixed_scale")[0]["config"]
    assert config["train"]["tolerance_schedule"] != "constant"
    return f"falls from {config['model']['tolerant_tol']:g} to 0 at the last step"


@claim
def fixed_scale_soft():
    small, large = ({c: accuracy_words(scaled("dyck1", "soft", scale, c)) for c in ("1", "inf")} for scale in (1, 100))
    return (f"Dyck-1 at scale 1: {small['1']} as trained and {small['inf']} at the limit; at scale 100: "
            f"{large['1']} and {large['inf']}")


@claim
def fixed_scale_limit():
    means = setting_means("fixed_scale", "model.attention_scale", limit_accuracy,
                          by=("language", "model.attention")).values()
    return f"at most {max(means):.2f}; {recognized_at_the_limit('fixed_scale')}"


@claim
def fixed_scale_ties():
    found = [row for row in rows("fixed_scale") if row["config"]["model"]["attention"] == "saturated"]
    share = max(row["metrics"]["ties"]["value_distinct_share"] for row in found)
    return f"at most {share:.2f} of the split queries in any of the {len(found)} saturated cells"


@claim
def fixed_scale_near_ties_during_training():
    found = [row for row in rows("fixed_scale") if row["config"]["model"]["attention"] == "saturated"]
    share = max(entry["value_distinct_share"] for row in found for entry in row["log"]
                if entry["step"] < row["config"]["train"]["steps"] and not math.isnan(entry["value_distinct_share"]))
    return f"up to {share:.2f} of the split queries of a model, before its tolerance reached 0"


@claim
def soft_to_saturated_grid():
    config = rows("soft_to_saturated")[0]["config"]["train"]
    found = rows("soft_to_saturated")
    return (f"{config['soft_steps']} soft steps, then {config['steps'] - config['soft_steps']} saturated ones "
            f"({len(found)} cells)")


def fine_tuned(language, surrogate="ste"):
    return accuracy("soft_to_saturated", language, "saturated", "1", model__surrogate=surrogate,
                    **setting_args(PRE_LN))


@claim
def soft_to_saturated_final():
    return ", ".join(f"{name} {accuracy_words(fine_tuned(language))}"
                     for name, language in (("majority", "majority"), ("Dyck-1", "dyck1"), ("a^n b^n", "anbn")))


def per_seed(run, language, **setting):
    return {row["config"]["seed"]: row["metrics"]["acc"]["1"] for row in select(run, language, "saturated", **setting)}


@claim
def seed_for_seed():
    """The fine-tuned models' accuracy equals, seed by seed, that of the theory grid's saturated models."""
    languages = ("majority", "dyck1", "anbn")
    same = all(per_seed("soft_to_saturated", language, model__surrogate="ste", **setting_args(PRE_LN))
               == per_seed("theory", language, **setting_args(PRE_LN)) for language in languages)
    return "seed for seed the accuracies" if same else "unlike the accuracies"


@claim
def saturated_from_scratch():
    return ", ".join(f"{name} {accuracy_words(accuracy('theory', language, 'saturated', **setting_args(PRE_LN)))}"
                     for name, language in (("majority", "majority"), ("Dyck-1", "dyck1"), ("a^n b^n", "anbn")))


@claim
def soft_to_saturated_near_ties():
    switch = rows("soft_to_saturated")[0]["config"]["train"]["soft_steps"]
    found = select("soft_to_saturated", "majority", "saturated", model__surrogate="tolerant",
                   **setting_args(HOMOGENEOUS))
    at_switch = values(found, lambda row: next(e for e in row["log"] if e["step"] == switch)["value_distinct_share"])
    tolerant = [row for row in rows("soft_to_saturated") if row["config"]["model"]["surrogate"] == "tolerant"]
    end = max(row["metrics"]["ties"]["value_distinct_share"] for row in tolerant)
    return f"{mean_words(at_switch)} at the switch to at most {end:.2f} at the end"


@claim
def soft_to_saturated_recognized():
    return recognized_at_the_limit("soft_to_saturated")


# ---- The peers at their own budget ---------------------------------------------------------------------------

B20_BIN = "51-100"  # B20's first bin beyond training, where its headline results are read
DEVIATION_LANGUAGES = (("Dyck-1", "dyck1"), ("Shuffle-2", "shuffle2"), ("a^n b^n", "anbn"), ("(10)*", "tomita2"))
# Each deviation from B20's protocol that results/b20_deviations measures: its words in the table and the setting
# that undoes one field of results/b20_core at a time.
DEVIATIONS = (("pre-LN block", {"model.layer_norm": "pre"}),
              ("BOS a key for every query", {"model.bos_key": True}),
              ("cross-entropy loss", {"train.loss": "bce"}),
              ("2,000 strings, 1,000 steps", {"data.train_size": 2000, "train.steps": 1000}))


def languages_of(run) -> list[str]:
    """A run's languages, in its config's order."""
    return list(dict.fromkeys(row["config"]["language"] for row in rows(run)))


def peer_rows(run, language, **setting):
    found = [row for row in rows(run) if row["config"]["language"] == language
             and all(flat_config(row).get(k) == v for k, v in setting.items())]
    assert found, (run, language, setting)
    return found


def bin_accuracy(found, region=B20_BIN, final=False):
    if final:
        return values(found, lambda row: row["metrics"]["selection"]["final"][region])
    return values(found, lambda row: row["metrics"]["acc_bins"][region]["1"] if region != "in"
                  else row["metrics"]["acc"]["1"])


@claim
def b20_budget():
    config = rows("b20_core")[0]["config"]
    train, data = config["train"], config["data"]
    epochs = round(train["steps"] * train["batch_size"] / data["train_size"])
    return (f"({data['train_size']:,} strings, {epochs} epochs of batch {train['batch_size']} with RMSprop at "
            f"{train['lr']:g})")


@claim
def b20_bin():
    lo, hi = rows("b20_core")[0]["config"]["eval"]["length_bins"][0]
    assert f"{lo}-{hi}" == B20_BIN
    return f"lengths {lo}-{hi}"


@claim
def deviation_table():
    """The README's table of B20's protocol and each deviation from it, on lengths 51-100 (as one line of text)."""
    header = "| setting | " + " | ".join(name for name, _ in DEVIATION_LANGUAGES) + " |"
    lines = [header, "|" + " --- |" * (len(DEVIATION_LANGUAGES) + 1)]
    core = [peer_rows("b20_core", language) for _, language in DEVIATION_LANGUAGES]
    lines.append("| B20's protocol (`b20_core`) | " + " | ".join(accuracy_words(bin_accuracy(f)) for f in core) + " |")
    for words, setting in DEVIATIONS:
        cells = [accuracy_words(bin_accuracy(peer_rows("b20_deviations", language, **setting)))
                 for _, language in DEVIATION_LANGUAGES]
        lines.append(f"| {words} | " + " | ".join(cells) + " |")
    lines.append("| the last step, not the best epoch on test | "
                 + " | ".join(accuracy_words(bin_accuracy(f, final=True)) for f in core) + " |")
    return " ".join(" ".join(lines).split())


# B20's published statements that could be read offline (its abstract and its repository's README; its tables were
# not reachable), per core language, and how the suite's numbers under B20's protocol compare.
B20_STATEMENTS = (
    ("Dyck-1", "dyck1", "does well; learned the construction", "differs"),
    ("Shuffle-2", "shuffle2", "does well (Dyck-1's generalizations)", "in distribution only"),
    ("Shuffle-4", "shuffle4", "does well (Dyck-1's generalizations)", "in distribution only"),
    ("BoolExp-3", "boolexp3", "does well (n-ary Boolean expressions)", "agrees"),
    ("parity", "crl3", "limited (modular counting)", "agrees"),
    ("(aa)*", "aa_star", "limited (periodicity)", "agrees"),
    ("(10)*", "tomita2", "does well on a subset of regular languages", "consistent"),
    ("(ab)*", "ab_star", "does well on a subset of regular languages", "consistent"),
)


def core_words(language, region=B20_BIN, run="b20_core"):
    return accuracy_words(bin_accuracy(peer_rows(run, language), region))


@claim
def b20_side_by_side():
    lines = ["| language | B20's statement | `b20_core`, in distribution | `b20_core`, 51-100 | verdict |",
             "|" + " --- |" * 5]
    for name, language, statement, verdict in B20_STATEMENTS:
        lines.append(f"| {name} | {statement} | {core_words(language, 'in')} | {core_words(language)} | {verdict} |")
    return " ".join(" ".join(lines).split())


@claim
def b20_not_comparable():
    """The core languages no reachable B20 statement names, with their numbers (51-100)."""
    named = {language for _, language, _, _ in B20_STATEMENTS}
    others = [language for language in languages_of("b20_core") if language not in named]
    return "; ".join(f"{language} {core_words(language)}" for language in others)


@claim
def b20_lstm_table():
    """B20's LSTM under the same protocol beside the transformer, every core language, in distribution and 51-100."""
    lines = ["| language | transformer, in distribution | LSTM, in distribution | transformer, 51-100 | LSTM, 51-100 |",
             "|" + " --- |" * 5]
    for language in languages_of("b20_core"):
        cells = [core_words(language, region, run)
                 for region in ("in", B20_BIN) for run in ("b20_core", "b20_core_lstm")]
        lines.append(f"| {language} | " + " | ".join(cells) + " |")
    return " ".join(" ".join(lines).split())


def generalizing(run):
    """The core languages on which at least one seed of a run reaches the threshold on lengths 51-100."""
    languages = languages_of(run)
    return [language for language in languages if bin_accuracy(peer_rows(run, language)).max() >= THRESHOLD]


@claim
def b20_lstm_generalizes():
    lstm, transformer = generalizing("b20_core_lstm"), generalizing("b20_core")
    return (f"{len(lstm)} of {len(languages_of('b20_core_lstm'))} languages "
            f"({', '.join(lstm)}) against the transformer's {len(transformer)}")


@claim
def one_layer_ceiling():
    """The bound of benchmarks/one_layer_ceiling.py on b20_core's test strings: its range for each language where it
    falls below 0.99, and how many languages it leaves at exactly 1.000."""
    bounds = {}
    for line in (RESULTS / "b20_core" / "one_layer_ceiling.txt").read_text().splitlines()[2:]:
        language, _, *numbers = line.split()
        bounds.setdefault(language, []).extend(float(x) for x in numbers if x != "nan")
    low = [f"{language} {min(b):.3f}-{max(b):.3f}" for language, b in bounds.items() if min(b) < THRESHOLD]
    exact = sum(min(b) == 1.0 for b in bounds.values())
    return "; ".join(low) + f" (the other {exact}: 1.000)"


FLARE_SETTINGS = (("recognition alone", []), ("+ language modelling + next symbols", ["lm", "next_symbols"]))


def flare_beyond(language, aux, run="flare_core"):
    """Accuracy over every test length beyond training, per restart, of one loss setting of a FLaRe core run."""
    found = peer_rows(run, language, **{"train.aux_losses": aux})
    assert len(found) == 5, (language, aux)
    return values(found, lambda row: row["metrics"]["acc_long"]["1"])


def flare_statistics(run):
    """FLaRe's two statistics per loss setting: the mean over restarts with its interval (inductive bias) and the best
    restart (expressivity), beyond the training lengths."""
    languages = languages_of(run)
    lines = ["| language | " + " | ".join(f"{name}: mean over restarts | best" for name, _ in FLARE_SETTINGS) + " |",
             "|" + " --- |" * (1 + 2 * len(FLARE_SETTINGS))]
    for language in languages:
        cells = []
        for _, aux in FLARE_SETTINGS:
            beyond = flare_beyond(language, aux, run)
            cells += [mean_words(beyond), f"{beyond.max():.2f}"]
        lines.append(f"| {language} | " + " | ".join(cells) + " |")
    return " ".join(" ".join(lines).split())


@claim
def flare_table():
    return flare_statistics("flare_core")


@claim
def flare_lstm_table():
    return flare_statistics("flare_core_lstm")


def flare_expressive_languages(run):
    """The languages whose best restart, in either setting, is at or above the threshold beyond training."""
    languages = languages_of(run)
    return [language for language in languages
            if max(flare_beyond(language, aux, run).max() for _, aux in FLARE_SETTINGS) >= THRESHOLD]


@claim
def flare_expressive():
    return ", ".join(flare_expressive_languages("flare_core"))


@claim
def flare_lstm_expressive():
    return ", ".join(flare_expressive_languages("flare_core_lstm"))


def at_chance(run, aux):
    """(restarts of a loss setting at chance beyond training, all of them): accuracy within 0.01 of 0.50."""
    beyond = np.concatenate([flare_beyond(language, aux, run) for language in languages_of(run)])
    return int((np.abs(beyond - 0.5) <= 0.01).sum()), len(beyond)


@claim
def flare_lstm_at_chance():
    (alone, n), (aux, m) = (at_chance("flare_core_lstm", setting) for _, setting in FLARE_SETTINGS)
    return f"{aux} of its {m} restarts with them are at chance beyond training, against {alone} of {n} without"


def chosen_last(run):
    chosen = [row["metrics"]["selection"]["step"] for row in rows(run)]
    steps = rows(run)[0]["config"]["train"]["steps"]
    return f"{sum(step == steps for step in chosen)} of {len(chosen)} restarts"


@claim
def flare_chosen_last():
    return chosen_last("flare_core")


@claim
def flare_lstm_chosen_last():
    return chosen_last("flare_core_lstm")


def lstm_size(run):
    model = rows(run)[0]["config"]["model"]
    assert model["kind"] == "lstm"
    layers = model.get("n_layers", 1)
    return f"{layers} layer{'s' if layers > 1 else ''} of {model['d_model']} units"


@claim
def flare_lstm_size():
    return lstm_size("flare_core_lstm")


@claim
def b20_lstm_size():
    return lstm_size("b20_core_lstm")


def parameter_count(run) -> int:
    """The parameters of a run's first cell's model, as the harness builds it."""
    cell = C.expand(C.load_yaml(RESULTS / run / "config.yaml")).cells[0]
    return sum(p.numel() for p in build_model(cell.model).parameters())


@claim
def b20_lstm_parameters():
    return f"{parameter_count('b20_core_lstm'):,} parameters against the transformer's {parameter_count('b20_core'):,}"


@cache
def claimed() -> dict[str, str]:
    """Every claim's words, computed once for both tests."""
    return {name: function() for name, function in CLAIMS.items()}


def test_every_claim_is_quoted():
    text = findings_text((ROOT / "README.md").read_text())
    missing = {name: words for name, words in claimed().items() if words not in text}
    assert not missing, f"the README's findings do not quote these recomputed numbers: {missing}"


def test_no_number_in_the_findings_goes_unchecked():
    text = findings_text((ROOT / "README.md").read_text())
    for words in sorted(claimed().values(), key=len, reverse=True):
        text = text.replace(words, " ")
    text = re.sub(r"\[`[^`]*`\]\([^)]*\)|`[^`]*`", " ", text)  # links and code name files and fields, not numbers
    for pattern in NOT_NUMBERS:
        text = re.sub(pattern, " ", text)
    left = [word for word in text.split() if re.search(r"\d", word)]
    assert not left, f"numbers in the README's findings that no claim of tests/test_findings.py recomputes: {left}"


if __name__ == "__main__":
    for name, function in CLAIMS.items():
        print(f"{name}: {function()}")
