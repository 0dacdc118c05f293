"""`satbench construct`: a hand-built construction per length, at the saturated limit and at finite attention scales
c, and the measured first failing length n*(c) beside the predicted one (probes/theory_check.py measures, this file
prints). The constructions and the theory check need torch; they are imported when the command runs, not when the
command line starts."""

import math
import re
import sys

# ---- printing ----------------------------------------------------------------------------------------------------


def length_bins(lengths: list[int]) -> list[list[int]]:
    """Every length on its own up to 12 (or when there are few); beyond, bins 13-16, 17-32, 33-64, ... (powers of 2)."""
    from satbench.probes.theory_check import EXHAUSTIVE_UP_TO

    if len(lengths) <= 20:
        return [[n] for n in lengths]
    bins: dict[int, list[int]] = {}
    for n in lengths:
        key = n if n <= EXHAUSTIVE_UP_TO else max(16, 1 << (n - 1).bit_length())
        bins.setdefault(key, []).append(n)
    return [bins[key] for key in sorted(bins)]


def accuracy_cell(wrong: int, total: int) -> str:
    # Floored, so that a single wrong string never prints as 1.000.
    return "1" if wrong == 0 else f"{math.floor(1000 * (1 - wrong / total)) / 1000:.3f}"


def format_accuracy(rows, scales) -> str:
    lengths = sorted({r["length"] for r in rows})
    by_key = {(r["length"], r["scale"]): r for r in rows}
    header = ["lengths", "strings", *("inf (saturated)" if math.isinf(c) else f"c={c:g}" for c in scales)]
    lines = []
    for part in length_bins(lengths):
        label = str(part[0]) if len(part) == 1 else f"{part[0]}-{part[-1]}"
        strings = sum(by_key[(n, scales[0])]["strings"] for n in part)
        cells = [accuracy_cell(sum(by_key[(n, c)]["wrong"] for n in part), strings) for c in scales]
        lines.append([label, str(strings), *cells])
    return plain_table(header, lines)


def format_n_star(name: str, measured: dict[float, int | None], scales, first: int, longest: int) -> str:
    from satbench.probes.theory_check import predicted_n_star

    lines = []
    for c in scales:
        if math.isinf(c):
            continue
        found, predicted = measured.get(c), predicted_n_star(name, c)
        ratio = f"{found / predicted:.2f}" if found and predicted and found != first else "-"
        # Failing at the first length tested says only that n*(c) is at most that length.
        shown = f"<= {found}" if found and found == first and first > 1 else str(found) if found else f"> {longest}"
        lines.append([f"{c:g}", shown,
                      str(predicted) if predicted else "never (all scores tie)", ratio])
    return plain_table(["c", "measured n*(c)", "predicted n*(c)", "measured / predicted"], lines)


def plain_table(header: list[str], lines: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                     for row in [header, *lines])


# ---- command line ------------------------------------------------------------------------------------------------


def parse_lengths(text: str) -> list[int]:
    """'1..1000', '100', '1..12,100,500': lengths >= 0, in order, without repeats."""
    lengths = []
    for item in str(text).split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:\.\.\s*(\d+)\s*)?", item)
        if not match:
            raise ValueError(f"--lengths: {item.strip()!r} in {text!r} is not a length or a range such as 1..1000")
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        if hi < lo:
            raise ValueError(f"--lengths: range {item.strip()!r} ends before it starts")
        lengths += range(lo, hi + 1)
    return sorted(set(lengths))


def parse_scales(text: str) -> list[float]:
    scales = []
    for item in str(text).split(","):
        try:
            c = float(item)
        except ValueError:
            raise ValueError(f"--scales: {item.strip()!r} in {text!r} is not a number") from None
        if not c > 0 or math.isinf(c):
            raise ValueError(f"--scales: {item.strip()!r} must be a finite number > 0 (the saturated limit is always "
                             f"included)")
        scales.append(c)
    return scales


def describe_strings(lengths: list[int], samples: int, seed: int) -> str:
    from satbench.probes.theory_check import EXHAUSTIVE_UP_TO

    parts = []
    if lengths[0] <= EXHAUSTIVE_UP_TO:
        parts.append(f"every string up to length {EXHAUSTIVE_UP_TO}")
    if lengths[-1] > EXHAUSTIVE_UP_TO:
        drawn = (f"{samples} members, {samples} negatives, the members' near misses and the critical strings"
                 if samples else "the construction's critical strings only")
        parts.append(f"{drawn} per length{' beyond' if parts else ''}" + (f" (seed {seed})" if samples else ""))
    return "; ".join(parts)


def add_commands(commands):
    parser = commands.add_parser(
        "construct", help="a hand-built construction per length: saturated limit, finite scales, n*(c)",
        description="Evaluate a hand-built construction (models/constructions.py) on every length: all strings up to "
                    "length 12, sampled members and hard negatives beyond, at the saturated limit and with the "
                    "attention scores multiplied by each c; then the measured first failing length n*(c) beside the "
                    "one softmax concentration predicts.")
    parser.add_argument("name", help="a hand-built construction (an unknown name lists them)")
    parser.add_argument("--lengths", default="1..100", help="lengths such as 1..1000 or 1..12,100,500 (default 1..100)")
    parser.add_argument("--scales", help="finite attention scales c such as 10,100 (default: probes/theory_check.py's "
                                          "SCALES, 10 to 10^4)")
    parser.add_argument("--samples", type=int, default=8,
                        help="members and negatives drawn per length beyond 12 (default 8), plus near misses and the "
                             "construction's critical strings")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=construct_command)


def construct_command(args) -> int:
    from satbench.models.constructions import get_construction
    from satbench.probes.theory_check import SCALES, accuracy_table, first_failures

    construction = get_construction(args.name)
    lengths = parse_lengths(args.lengths)
    scales = [math.inf, *(parse_scales(args.scales) if args.scales is not None else SCALES)]
    if args.samples < 0:
        raise ValueError(f"--samples must be >= 0, got {args.samples}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    rows = accuracy_table(construction.name, lengths, scales, args.samples, args.seed, progress=sys.stderr.isatty())
    print(f"{construction.name}: {construction.summary}")
    print(f"lengths {lengths[0]}..{lengths[-1]}: {describe_strings(lengths, args.samples, args.seed)}. "
          f"c multiplies the attention scores; inf is the saturated limit.")
    print()
    print(format_accuracy(rows, scales))
    same = ", ".join(f"c={c:g} {'yes' if all(r['identical'] for r in rows if r['scale'] == c) else 'no'}"
                     for c in scales if not math.isinf(c))
    print(f"every logit bit-identical to the saturated limit: {same}")
    print()
    print(format_n_star(construction.name, first_failures(rows), scales, lengths[0], lengths[-1]))
    return 0
