"""The `data export` and `score` subcommands: a bench's exact splits written to files for a model trained anywhere,
and that model's predictions scored as the bench scores its own (harness/export.py)."""

from pathlib import Path

DEFAULT_CONFIG = Path("configs/default.yaml")


def add_commands(commands):
    data = commands.add_parser("data", help="export the exact splits of a bench for a model trained elsewhere")
    actions = data.add_subparsers(dest="action", required=True)
    export = actions.add_parser(
        "export", help="write the train, validation and test splits a bench would use, as JSONL and in FLaRe's layout",
        description="Write, for every seed of the config, the splits of each LANGUAGE that `satbench bench` with the "
                    "same config and overrides trains and tests on, byte for byte: <out>/<language>/seed-<k>/"
                    "{train,validation,test}.jsonl (every string with its label, kind, prefix memberships and next "
                    "symbols), the same in FLaRe's plain-text layout under flare/, and manifest.json (the config, "
                    "its hash, and each dataset's hash and counts, so that two exports can be compared).")
    # Languages and overrides may stand in any order: argparse hands the words before the options to `targets` and
    # cli.main those after them to `overrides`, so export_command sorts both by their "=".
    export.add_argument("targets", nargs="+", metavar="LANGUAGE", help="languages to export (satbench languages list)")
    export.add_argument("--out", required=True, help="the directory to write (a new or empty one, or an export, "
                                                     "which it replaces)")
    export.add_argument("--config", default=str(DEFAULT_CONFIG), help=f"a bench config (default: {DEFAULT_CONFIG})")
    export.add_argument("overrides", nargs="*", metavar="OVERRIDE",
                        help="dotted overrides such as seeds=[0,1] data.train_size=1000")
    export.set_defaults(run=export_command)

    score = commands.add_parser(
        "score", help="score predictions made anywhere on an export's test splits, as a row of a run",
        description="Read predictions on the test splits of an export (JSONL, one object per string: language, "
                    "seed, index (its line in test.jsonl), accept, and for the next-symbol task next_symbols and "
                    "prefixes), judge them as the bench judges its models, and write one row per language and seed "
                    "into <run-dir>/scored-<name>.jsonl, which `satbench report` and `satbench compare` read beside "
                    "the run's own cells (a new directory gets the export's config).")
    score.add_argument("export", help="a directory written by `satbench data export`")
    score.add_argument("predictions", help="the predictions, a JSONL file")
    score.add_argument("--run-dir", required=True, help="the run to add the scored model to, or a new directory")
    score.add_argument("--name", required=True, help="the model's name in the report's variant column")
    score.set_defaults(run=score_command)


def export_command(args):
    from satbench.harness import config as C
    from satbench.harness.export import export_splits

    targets = [*args.targets, *args.overrides]
    languages = [t for t in targets if "=" not in t]
    if not languages:
        raise ValueError("data export: name at least one language (satbench languages list)")
    overrides = [*(t for t in targets if "=" in t), f"languages=[{','.join(languages)}]"]
    manifest = export_splits(C.load_grid(args.config, overrides), args.out)
    splits = sum(len(entry["splits"]) for entry in manifest["entries"])
    print(f"satbench: {len(manifest['entries'])} datasets ({splits} splits) written to {args.out}")


def score_command(args):
    from satbench.harness.export import score_predictions

    rows = score_predictions(args.export, args.predictions, args.run_dir, args.name)
    print(f"satbench: {len(rows)} rows of {args.name} written to {Path(args.run_dir) / f'scored-{args.name}.jsonl'}")
