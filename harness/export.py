"""The exact splits of a bench, written to files, and predictions made anywhere, scored as the bench scores its own.

`export_splits(grid, out)` writes, for every language and seed of a grid (one per dataset the bench would build), the
train, validation (where data.validation_size asks for one) and test splits byte for byte as `satbench bench` with
the same config would train and test on them:

    <out>/manifest.json                          the config, its hash, the command, and per dataset its cell, the
                                                 hash of what the dataset is a function of, and each split's counts
    <out>/<language>/seed-<k>/<split>.jsonl      one JSON object per string, in the split's order: "string",
                                                 "label" (1 member, 0 not), "length", "kind" (member or the negative
                                                 kind that drew it), "prefixes" (membership of every prefix s[:i],
                                                 i = 0..n) and, for a member of a language that defines them,
                                                 "next_symbols" (the symbols that can follow each prefix)
    <out>/<language>/seed-<k>/flare/             the same in the plain-text layout FLaRe's code prepares
                                                 (rycolab/neural-network-recognizers, prepare_data.py): main.tok
                                                 (space-separated symbols), labels.txt, next-symbols.jsonl (per
                                                 position {"s": symbols, "e": prefix is a member}; [] for a non-member),
                                                 the training split at the top and the others under datasets/<split>/

`score_predictions(export, predictions, run_dir, name)` reads predictions for a test split, one JSON object per
line: {"language", "seed", "index" (the string's line in test.jsonl)} and the answer the task asks for: "accept"
(true or false) for membership; "prefixes" (one true or false per prefix s[:i], i = 0..n) for the prefix task; and
for the next-symbol task "prefixes" and "next_symbols" (one string of symbols per prefix, as in the export). It judges
each string as the bench does (models.objectives.judge_strings: membership by the label; the prefix and next-symbol
tasks right only if every prefix's bit and set are), computes the bench's metrics
(probes.evaluate.recognition_metrics: in distribution, every length bin, k/n over seeds in the report) and writes one
row per language and seed into <run_dir>/scored-<name>.jsonl, with model.kind <name>, which `satbench report` and
`satbench compare` read beside the run's trained cells. A prediction that is malformed, names a string or a dataset
the export lacks, or repeats one is refused with its file and line.
"""

import hashlib
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import torch
import yaml

from satbench.languages import get_language
from satbench.languages.base import STRING_KINDS
from satbench.models.attention import VARIANTS
from satbench.models.kinds import model_kinds
from satbench.probes.evaluate import EvalConfig, recognition_metrics

from .provenance import command_line, source_state
from .results import CONFIG_FILE, cell_hash, encode_inf, grid_hash, row_line, write_atomically
from .run import build_dataset, dataset_key

FORMAT, VERSION = "satbench-splits", 1
MANIFEST = "manifest.json"
SPLITS = ("train", "validation", "test")


def datasets_of(grid):
    """[(cell, dataset key)] once per dataset the bench would build, in the grid's order."""
    seen = {}
    for cell in grid.cells:
        seen.setdefault(dataset_key(cell), cell)
    return [(cell, key) for key, cell in seen.items()]


def string_records(language, split):
    lang = get_language(language)
    for i, s in enumerate(split.strings):
        member = bool(split.labels[i] > 0.5)
        record = {"string": s, "label": int(member), "length": len(s),
                  "kind": split.kinds[i] if split.kinds else None, "prefixes": lang.prefix_accepts(s)}
        following = lang.next_symbols(s) if member else None
        if following is not None:
            record["next_symbols"] = following
        yield record


def write_flare(folder, records):
    """FLaRe's plain-text layout of one split."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.tok").write_text("".join(" ".join(r["string"]) + "\n" for r in records))
    (folder / "labels.txt").write_text("".join(f"{r['label']}\n" for r in records))
    lines = []
    for r in records:
        steps = [{"s": " ".join(symbols), "e": bool(end)}
                 for symbols, end in zip(r.get("next_symbols", []), r["prefixes"])] if "next_symbols" in r else []
        lines.append(json.dumps(steps) + "\n")
    (folder / "next-symbols.jsonl").write_text("".join(lines))


def export_splits(grid, out):
    """Write every dataset of `grid` under `out` (see the module's docstring); returns the manifest. The export is
    written whole or not at all: into a folder beside `out`, which replaces `out` at the end where `out` is an earlier
    export holding nothing else (replaceable), and is refused otherwise."""
    out = Path(out)
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or replaceable(out))):
        raise ValueError(f"--out {out}: exists and is not an export (or holds files an export does not write); give "
                         "a new or empty directory")
    partial, earlier = (out.with_name(f".{out.name}.{part}-{os.getpid()}") for part in ("partial", "earlier"))
    try:
        manifest = _write_export(grid, partial)
        if out.exists():
            out.rename(earlier)  # set aside, not deleted, until the new export is in its place
        partial.rename(out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(earlier, ignore_errors=True)
    return manifest


def replaceable(out):
    """Whether `out` is an export and nothing else: a manifest that reads as one, and every other file inside the
    folder of one of its datasets."""
    try:
        folders = [Path(entry["folder"]) for entry in read_manifest(out)["entries"]]
    except ValueError:
        return False
    files = [path.relative_to(out) for path in out.rglob("*") if not path.is_dir()]
    return all(path == Path(MANIFEST) or any(folder in path.parents for folder in folders) for path in files)


def _write_export(grid, out):
    cache, entries = {}, []
    datasets = datasets_of(grid)
    shared = Counter((cell.language, cell.seed) for cell, _ in datasets)
    for cell, key in datasets:
        dataset = build_dataset(cell, cache)
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        # A grid with a data axis has several datasets of one language and seed: each its own folder.
        folder = out / cell.language / (f"seed-{cell.seed}" if shared[(cell.language, cell.seed)] == 1
                                        else f"seed-{cell.seed}-{digest[:8]}")
        splits = {"train": dataset.train, "validation": dataset.validation, "test": dataset.test}
        counts = {}
        for name, split in splits.items():
            if split is None:
                continue
            records = list(string_records(cell.language, split))
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
            write_flare(folder / "flare" if name == "train" else folder / "flare" / "datasets" / name, records)
            counts[name] = {"strings": len(records), "distinct": len({r["string"] for r in records}),
                            "members": sum(r["label"] for r in records)}
        entries.append({"language": cell.language, "seed": cell.seed, "cell": encode_inf(cell.as_dict()),
                        "dataset": digest, "label_kind": cell.data.label_kind,
                        "train_lengths": list(cell.data.train_lengths), "test_lengths": list(cell.data.test_lengths),
                        "splits": counts, "folder": str(folder.relative_to(out))})
        cache.clear()  # one dataset in memory at a time
    manifest = {"format": FORMAT, "version": VERSION, "config": grid.raw, "config_hash": grid_hash(grid.raw),
                "command": command_line(), "entries": entries}
    (out / MANIFEST).write_text(json.dumps(encode_inf(manifest), indent=1) + "\n")
    return manifest


ENTRY_FIELDS = ("language", "seed", "cell", "label_kind", "train_lengths", "test_lengths", "splits", "folder")


def read_manifest(export):
    path = Path(export) / MANIFEST
    if not path.is_file():
        raise ValueError(f"{export}: no {MANIFEST}; give a directory written by `satbench data export`")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: not a satbench export (no format {FORMAT!r})")
    entries = manifest.get("entries")
    if not isinstance(entries, list) or not all(isinstance(e, dict) and all(f in e for f in ENTRY_FIELDS)
                                                for e in entries):
        raise ValueError(f"{path}: its entries are missing or lack fields ({', '.join(ENTRY_FIELDS)})")
    return manifest


def read_jsonl(path):
    """The objects of a JSONL file; a line that is not JSON is named with its file and number."""
    found = []
    with open(path) as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    found.append((number, json.loads(line)))
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}:{number}: not JSON ({error})") from None
    return found


def is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def read_predictions(path):
    """{(language, seed): {index: (line number, prediction)}}; a line that is not a prediction, or that repeats the
    string of another, is named. Which answer each needs is the task's, checked where it is scored (answer_error)."""
    found = {}
    for number, p in read_jsonl(path):
        where = f"{path}:{number}"
        if not isinstance(p, dict) or not isinstance(p.get("language"), str) or not is_int(p.get("seed")) \
                or not is_int(p.get("index")) or p["index"] < 0:
            raise ValueError(f"{where}: not a prediction: needs language (a name), seed and index (integers, index "
                             ">= 0) and the task's answer")
        strings = found.setdefault((p["language"], p["seed"]), {})
        if p["index"] in strings:
            raise ValueError(f"{where}: {p['language']} seed {p['seed']} index {p['index']} was predicted already, "
                             f"on line {strings[p['index']][0]}")
        strings[p["index"]] = (number, p)
    return found


def answer_error(record, prediction, label_kind):
    """Why a prediction lacks the answer its task asks for, or None."""
    if label_kind == "membership":
        return None if isinstance(prediction.get("accept"), bool) else "accept must be true or false"
    prefixes = prediction.get("prefixes")
    if not isinstance(prefixes, list) or len(prefixes) != len(record["prefixes"]) or \
            not all(isinstance(e, bool) for e in prefixes):
        return f"prefixes must be {len(record['prefixes'])} values true or false, one per prefix s[:i], i = 0..n"
    given = prediction.get("next_symbols")
    if label_kind == "next_symbols" and (not isinstance(given, list) or len(given) != len(record["next_symbols"])
                                         or not all(isinstance(g, str) for g in given)):
        return f"next_symbols must be {len(record['next_symbols'])} strings of symbols, one per prefix"
    return None


def judged(record, prediction, label_kind):
    """Whether one prediction is right, as judge_strings judges the model's logits."""
    if label_kind == "membership":
        return prediction["accept"] == bool(record["label"])
    ends_right = prediction["prefixes"] == [bool(e) for e in record["prefixes"]]
    if label_kind == "prefix":
        return ends_right
    return ends_right and [set(g) for g in prediction["next_symbols"]] == [set(t) for t in record["next_symbols"]]


def other_than_languages(raw):
    """A config without its languages: an export names the languages it writes, of the run's or a subset."""
    return {k: v for k, v in raw.items() if k != "languages"}


def score_predictions(export, predictions, run_dir, name):
    """Score `predictions` (a JSONL file) on the test splits of the export at `export`; write the rows into
    <run_dir>/scored-<name>.jsonl (with the export's config.yaml where the run directory has none). Returns them."""
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"--name {name!r}: a model name of letters, digits, - and _")
    if name in VARIANTS or name in model_kinds():
        raise ValueError(f"--name {name}: the name of a model the bench trains; the report would count these rows "
                         "as its; choose another")
    manifest = read_manifest(export)
    given = read_predictions(predictions)
    exported = {(entry["language"], entry["seed"]) for entry in manifest["entries"]}
    for (language, seed), strings in given.items():
        if (language, seed) not in exported:
            line = min(number for number, _ in strings.values())
            raise ValueError(f"{predictions}:{line}: {language} seed {seed} is not in the export at {export}")
    run_dir = Path(run_dir)
    recorded = run_dir / CONFIG_FILE
    if recorded.exists():
        try:
            run_config = yaml.safe_load(recorded.read_text())
        except yaml.YAMLError as error:
            raise ValueError(f"{recorded}: not YAML ({type(error).__name__})") from None
        if not isinstance(run_config, dict) or \
                grid_hash(other_than_languages(run_config)) != grid_hash(other_than_languages(manifest["config"])):
            raise ValueError(f"{run_dir}: its config is not the one {export} was exported with; score into the run "
                             "of that config, or into a new directory")
    rows = []
    for entry in manifest["entries"]:
        key = (entry["language"], entry["seed"])
        if key not in given:
            continue
        test = Path(export) / entry["folder"] / "test.jsonl"
        records = [record for _, record in read_jsonl(test)]
        for index, (number, prediction) in given[key].items():
            if index >= len(records):
                raise ValueError(f"{predictions}:{number}: index {index}, but {test} holds {len(records)} strings")
            problem = answer_error(records[index], prediction, entry["label_kind"])
            if problem:
                raise ValueError(f"{predictions}:{number}: {problem} (the {entry['label_kind']} task)")
        missing = [i for i in range(len(records)) if i not in given[key]]
        if missing:
            raise ValueError(f"{predictions}: {key[0]} seed {key[1]}: no prediction for {len(missing)} of "
                             f"{len(records)} test strings (the first: index {missing[0]})")
        right = torch.tensor([judged(r, given[key][i][1], entry["label_kind"]) for i, r in enumerate(records)])
        lengths = torch.tensor([r["length"] for r in records])
        kinds = torch.tensor([STRING_KINDS.index(r["kind"]) if r["kind"] in STRING_KINDS else -1 for r in records])
        eval_cfg = EvalConfig(**entry["cell"]["eval"])
        metrics = recognition_metrics({"1": (right, torch.full(right.shape, float("nan")), torch.tensor(0))}, {},
                                      lengths, torch.ones_like(right), entry["train_lengths"],
                                      eval_cfg.bins(entry["train_lengths"], entry["test_lengths"]),
                                      eval_cfg.threshold, kinds=kinds)
        config = json.loads(json.dumps(entry["cell"]))
        # The export's cell as it is (so that the report splits it as it splits the run's cells), but the model is
        # this one, and nothing selected it among checkpoints.
        config["model"]["kind"] = name
        config["eval"] = {k: v for k, v in config["eval"].items() if k not in ("select", "checkpoints")}
        rows.append({"hash": cell_hash(config), "config": config,
                     "metrics": metrics, "log": [], "scored_from": {"export": str(export),
                                                                  "predictions": str(predictions)},
                     "dataset": {"meta": {"strings": {"test": len(records)}}, "baselines": {}},
                     **source_state(), "command": command_line()})
    if not rows:
        raise ValueError(f"{predictions}: no prediction names a language and seed of the export at {export}")
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / CONFIG_FILE).exists():
        write_atomically(run_dir / CONFIG_FILE, yaml.safe_dump(manifest["config"], sort_keys=False))
    write_atomically(run_dir / f"scored-{name}.jsonl", "".join(row_line(encode_inf(r)) for r in rows))
    return rows


def exported_equal(a, b):
    """Whether two exports hold the same datasets (their manifests' dataset hashes and counts)."""
    def held(manifest):
        return [{k: e[k] for k in ("language", "seed", "dataset", "splits")} for e in manifest["entries"]]
    return held(read_manifest(a)) == held(read_manifest(b))


