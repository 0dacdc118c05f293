"""Do parameter scaling and attention-logit scaling coincide? Compare two runs of the same trained cells: one swept with
eval.scaling=attention, one with eval.scaling=parameters. In the homogeneous block (layer_norm: branch, bias: false,
no fixed positions) f(x; c*theta) = c^2 f_{logits*c^4}(x; theta) (models/recognizer.py, Block), so the parameter
column c must equal the logit column c^4; in the pre-LN block with biases nothing says it should.

    python benchmarks/parameter_vs_logit.py results/theory results/theory/parameters

Prints one Markdown table: per architecture, language and scale, the mean accuracy in distribution over the cells the
two runs share, under each sweep, and the largest difference between matching cells.
"""

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # benchmarks.* for a script run by path

from satbench.harness.results import CorruptResults, load_rows_with_config  # noqa: E402


def trained_cell(row):
    """What identifies a trained model across the two runs: its config without the eval section."""
    config = dict(row["config"])
    config.pop("eval")
    return repr(sorted((k, repr(v)) for k, v in config.items()))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("attention_run", help="run directory swept with eval.scaling=attention")
    parser.add_argument("parameters_run", help="run directory of the same cells swept with eval.scaling=parameters")
    args = parser.parse_args(argv)
    try:
        by_logits = {trained_cell(r): r for r in load_rows_with_config(args.attention_run)}
        by_parameters = [r for r in load_rows_with_config(args.parameters_run)]
    except CorruptResults as error:
        print(f"parameter_vs_logit: {error}", file=sys.stderr)
        return 2
    table = defaultdict(list)
    for row in by_parameters:
        twin = by_logits.get(trained_cell(row))
        if twin is None:
            continue
        if row["metrics"]["acc"]["1"] != twin["metrics"]["acc"]["1"]:
            print("parameter_vs_logit: a shared cell has different accuracy at c=1: the runs trained different "
                  "models", file=sys.stderr)
            return 2
        model = row["config"]["model"]
        architecture = f"{model['layer_norm']}, bias={model['bias']}"
        for scale, acc in row["metrics"]["acc"].items():
            if scale in ("1", "inf", "uniform"):  # the same operation under either sweep, or none of it
                continue
            logit_scale = f"{round(float(scale) ** 4, 1):g}"  # scale names keep 6 digits: 5.62341^4 = 999.998
            if logit_scale in twin["metrics"]["acc"]:
                table[(architecture, row["config"]["language"], scale, logit_scale)].append(
                    (acc, twin["metrics"]["acc"][logit_scale]))
    if not table:
        print("parameter_vs_logit: the runs share no cell with a parameter scale c whose c^4 is a logit scale",
              file=sys.stderr)
        return 2
    print("| architecture | language | parameters c | logits c^4 | acc, parameters | acc, logits | max cell diff |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for (architecture, language, scale, logit_scale), pairs in sorted(table.items()):
        mean_p = sum(p for p, _ in pairs) / len(pairs)
        mean_l = sum(q for _, q in pairs) / len(pairs)
        worst = max(abs(p - q) for p, q in pairs)
        print(f"| {architecture} | {language} | {float(scale):.4g} | {logit_scale} | {mean_p:.3f} | {mean_l:.3f} "
              f"| {worst:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
