"""`satbench languages list | sample | check | report`.

`list` and `sample` need only the oracles and samplers (numpy); `check` and `report` build datasets and fit baselines,
so they import torch and scikit-learn when they run, not when the command line starts.

Bad input raises ValueError with one line naming the problem; the `satbench` entry point prints it and exits 2.
`check` returns 1 when a language fails a check. Its weak-data warnings (a held-out split of the default bench's dataset
under half distinct) are printed but pass, unless `--strict` counts them as failures.
"""

import numpy as np

from satbench.languages.base import checked_negative, checked_sample, get_language, language_names, registration_order

REPORT_LENGTHS = range(13)


def add_commands(subparsers):
    parser = subparsers.add_parser("languages", help="list, sample, check and tabulate the formal languages",
                                   description="The formal languages of the suite, built in and from plugins.")
    commands = parser.add_subparsers(dest="languages_command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="name, family, alphabet and definition of every language")
    listing.set_defaults(run=run_list)

    sample = commands.add_parser("sample", help="print strings of one length, members or (--negative) non-members")
    sample.add_argument("name")
    sample.add_argument("--length", "-l", type=int, required=True, help="length of every string")
    sample.add_argument("-n", type=int, default=10, help="how many strings (default 10)")
    sample.add_argument("--negative", action="store_true", help="non-members from the negative sampler")
    sample.add_argument("--seed", type=int, default=0)
    sample.set_defaults(run=run_sample)

    check = commands.add_parser("check", help="sampler against oracle, exact counts, shortcut baselines, weak data")
    check.add_argument("name", nargs="?")
    check.add_argument("--all", action="store_true", help="check every language")
    check.add_argument("--seed", type=int, default=0)
    check.add_argument("--strict", action="store_true",
                       help="fail a language with a weak-data warning too (exit 1), not only one failing a check")
    check.set_defaults(run=run_check)

    report = commands.add_parser("report", help="Markdown table: members per length up to 12 and baselines")
    report.add_argument("--seed", type=int, default=0)
    report.set_defaults(run=run_report)


FAMILIES = ("counter", "context-free", "context-sensitive", "regular")  # docs/languages.md's table order; others follow
# The peer studies of report/theory.yaml's sources, as the table names them.
PEERS = {"bhattamishra2020": "B20", "butoi2025": "FLaRe"}


def language_table(names) -> str:
    """The Markdown table of `names` that docs/languages.md prints: grouped by family, in registration order within a
    family, with the peer studies that use each language (B20: Bhattamishra et al. 2020; FLaRe: Butoi et al. 2025)."""
    registered = list(names)
    def order(lang):
        family = FAMILIES.index(lang.family) if lang.family in FAMILIES else len(FAMILIES)
        return family, registered.index(lang.name)
    lines = ["| name | family | alphabet | definition | used by |", "| --- | --- | --- | --- | --- |"]
    for lang in sorted(map(get_language, registered), key=order):
        peers = ", ".join(PEERS.get(key, key) for key in lang.sources) or "—"
        alphabet = lang.alphabet.replace("|", "\\|")
        lines.append(f"| `{lang.name}` | {lang.family} | `{alphabet}` | {lang.definition} | {peers} |")
    return "\n".join(lines)


def run_list(args) -> int:
    print(language_table(registration_order()))
    return 0


def run_sample(args) -> int:
    lang = get_language(args.name)
    if args.length < 0:
        raise ValueError(f"--length must be >= 0, got {args.length}")
    if args.n < 0:
        raise ValueError(f"-n must be >= 0, got {args.n}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    rng = np.random.default_rng(args.seed)
    draw, kind = (checked_negative, "non-members") if args.negative else (checked_sample, "members")
    strings = []
    for _ in range(args.n):
        s = draw(lang, rng, args.length)
        if s is None:
            raise ValueError(f"language '{lang.name}' has no {kind} of length {args.length}")
        strings.append(s)
    print("\n".join(strings))
    return 0


def run_check(args) -> int:
    if args.all == (args.name is not None):
        raise ValueError("check: give one language name or --all")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    names = language_names() if args.all else [get_language(args.name).name]
    from satbench.data.check import check_language
    from satbench.report.data_warnings import weak_split_warnings

    failed = warned = 0
    for name in names:
        result = check_language(get_language(name), seed=args.seed)
        warnings = weak_split_warnings(name, result.bench_meta) if result.bench_meta else []
        passed = result.ok and not (args.strict and warnings)
        status = "ok" if passed else "FAIL"
        print(f"{name:10} {status:4}  {format_baselines(result.baselines)}".rstrip())
        for line in result.failures + warnings:
            print(f"    {line}")
        failed += not passed
        warned += bool(warnings)
    if len(names) > 1:
        summary = f"{len(names) - failed} of {len(names)} languages pass"
        if warned:
            summary += f"; {warned} with weak data" + (", failing under --strict" if args.strict else "")
        print(f"{summary}; * = exact by definition")
    return 1 if failed else 0


def format_baselines(baselines) -> str:
    parts = []
    for name in ("length", "parity", "counts"):
        if baselines.get(name) is not None:
            mark = "*" if baselines.get(f"{name}_by_definition") else ""
            parts.append(f"{name} {baselines[name]:.2f}{mark}")
    return "  ".join(parts)


def run_report(args) -> int:
    print(markdown_report(seed=args.seed))
    return 0


def markdown_report(seed=0) -> str:
    """Members per length 0..12 and the shortcut baselines of the default dataset, one row per language."""
    from satbench.data import make_dataset
    from satbench.data.check import members_of_length

    header = ["language", "family", "alphabet", *map(str, REPORT_LENGTHS), "length", "parity", "counts+length"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in language_names():
        lang = get_language(name)
        counts = [members_of_length(lang, n) for n in REPORT_LENGTHS]
        baselines = make_dataset(lang, seed=seed).baselines
        cells = [name, lang.family, f"`{lang.alphabet}`", *("?" if c is None else str(c) for c in counts)]
        for shortcut in ("length", "parity", "counts"):
            value = baselines[shortcut]
            mark = "*" if baselines[f"{shortcut}_by_definition"] else ""
            cells.append("n/a" if value is None else f"{value:.2f}{mark}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Columns 0-12: members of each length. Baselines: test accuracy of a classifier fit on the training "
              "split of the default dataset (train lengths 1-20, test lengths 1-40, seed "
              f"{seed}); * marks a shortcut that decides membership by the language's definition."]
    return "\n".join(lines)

