"""Weak data said aloud: a held-out split whose strings, or whose members or non-members, are mostly repeats. An
accuracy over such a split rests on fewer strings than its size says, so the report's header names it, read off the
dataset meta every row carries (harness/run.py writes it; data/dataset.py, `make_dataset`, builds it)."""

from .common import setting, varying_fields

# An accuracy over a held-out split is read as resting on all of its strings. With under half of them distinct it
# rests on fewer than half as many as it looks, which is worth saying where the number is read. The same share holds
# for each class: a^n b^n's test members are one string per length, drawn again and again. `satbench languages check`
# judges the datasets it builds by the same function (satbench/language_commands.py).
MIN_DISTINCT_SHARE = 0.5
PARTS = ("strings", "members", "non-members")


def weak_parts(meta, split="test") -> list[dict]:
    """The parts of `split` under MIN_DISTINCT_SHARE distinct, from a dataset's meta (data/dataset.py,
    `make_dataset`) or a row's copy of it: the whole split and, in rows that record `distinct_members`, each class.
    Each part is {"part", "distinct", "strings", "one_per_length"}, the last marking exactly one distinct string at
    each of the part's lengths."""
    per_length = meta["per_length"][split].values()
    parts = [("strings", meta["distinct"][split], meta["strings"][split], len(per_length))]
    if "distinct_members" in meta:  # older rows judge the split as a whole
        members = meta["distinct_members"][split]
        parts += [("members", members, sum(row["positive"] for row in per_length),
                   sum(row["positive"] > 0 for row in per_length)),
                  ("non-members", meta["distinct"][split] - members, sum(row["negative"] for row in per_length),
                   sum(row["negative"] > 0 for row in per_length))]
    return [{"part": part, "distinct": distinct, "strings": strings, "one_per_length": distinct == lengths}
            for part, distinct, strings, lengths in parts if strings and distinct < MIN_DISTINCT_SHARE * strings]


def weak_split_warnings(language, meta, split="test") -> list[str]:
    """A line naming the language and the split when the split is weak (`weak_parts`): how many distinct strings its
    accuracies rest on, in all and per class. [] for a split that is not weak."""
    parts = weak_parts(meta, split)
    if not parts:
        return []
    counts = ", ".join(f"{p['distinct']} of {p['strings']} {p['part']}" + (" distinct" if i == 0 else "")
                       + (" (one per length)" if p["one_per_length"] else "") for i, p in enumerate(parts))
    return [f"weak data: {language} {split} split: {counts}; under {MIN_DISTINCT_SHARE:.0%} distinct, so accuracies "
            "on it rest on fewer strings than it looks"]


def weak_data_lines(rows, split="test") -> list[str]:
    """One header bullet per language (and data setting, where the run varies one) whose `split` is weak in some seed,
    the seeds deduplicated: a dataset is a function of language, seed and data section, shared by every variant."""
    data_fields = [field for field in varying_fields(rows) if field.startswith("data.")]
    datasets: dict[tuple, dict] = {}  # (language, data setting) -> {seed: meta}
    for row in rows:
        meta = row.get("dataset", {}).get("meta")
        if not meta or any(split not in meta.get(key, {}) for key in ("strings", "distinct", "per_length")):
            continue  # a row without the counts (or without this split) has nothing to judge
        where = ", ".join(f"{key}={value}" for key, value in setting(row, data_fields).items())
        datasets.setdefault((row["config"]["language"], where), {})[row["config"]["seed"]] = meta
    lines = []
    for (language, where), by_seed in datasets.items():  # in the rows' order, the config's language order
        weak = [parts for parts in (weak_parts(meta, split) for meta in by_seed.values()) if parts]
        if not weak:
            continue
        found = [(part, [p for parts in weak for p in parts if p["part"] == part]) for part in PARTS]
        counts = ", ".join(_count_words(part, hits, first=i == 0)
                           for i, (part, hits) in enumerate((part, hits) for part, hits in found if hits))
        seeds = "in every seed" if len(weak) == len(by_seed) else f"in {len(weak)} of {len(by_seed)} seeds"
        label = f"{language} ({where})" if where else language
        lines.append(f"- **weak data**: {label} {split} split: {counts}, {seeds}; under {MIN_DISTINCT_SHARE:.0%} "
                     "distinct, so accuracies on it rest on fewer strings than it looks.")
    return lines


def _count_words(part, hits, first):
    """`145-157 of 400 strings distinct` over the weak seeds' `hits` of one part (`distinct` after the first only)."""
    words = f"{_span(h['distinct'] for h in hits)} of {_span(h['strings'] for h in hits)} {part}"
    words += " distinct" if first else ""
    return words + (" (one per length)" if all(h["one_per_length"] for h in hits) else "")


def _span(values):
    """154, or 145-157 where the seeds differ."""
    values = sorted(set(values))
    return str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}"
