"""The one visual language of every figure the report draws, set here and nowhere else: a colour and a marker per
attention variant (and per model kind), one language order, the sizes and fonts of a two-column paper, log axes with
ticks that do not collide, intervals drawn as bands, and how a figure is saved (PNG for report.md, PDF beside it for a
paper). `layout_problems` is the inspection tests/test_figures.py runs on every figure: what a reader would see wrong.
"""

import math
import textwrap
from contextlib import contextmanager
from itertools import combinations
from pathlib import Path

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import seaborn as sns
from matplotlib.text import Text

from .common import VARIANT_ORDER, ordered_variants
from .stats import mean_interval

# Text widths of a two-column paper in inches (the ACL, ICML and NeurIPS templates lie within 0.1 in of these).
SINGLE_COLUMN = 3.25
FULL_WIDTH = 6.75
PANEL_HEIGHT = 1.65  # one row of panels; a figure is as tall as its rows
PNG_DPI = 200  # a full-width figure is 1350 px wide: sharp in report.md, small in git

# 8 pt text at print size; TrueType in the PDF (type 42), as publishers ask, rather than Type 3 bitmaps.
RC = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
      "legend.fontsize": 7, "legend.title_fontsize": 7, "figure.titlesize": 8, "figure.labelsize": 8,
      "lines.linewidth": 1.2, "lines.markersize": 3.5, "axes.spines.top": False, "axes.spines.right": False,
      "axes.grid": True, "grid.linewidth": 0.4, "grid.alpha": 0.5, "pdf.fonttype": 42, "ps.fonttype": 42,
      "legend.frameon": False}

# seaborn's colour-blind-safe palette. Each variant and model kind has its own entry for good: soft is blue in every
# figure of every run. Variants the suite does not know take the remaining colours in the order of their names.
_PALETTE = sns.color_palette("colorblind")
KNOWN_COLORS = {"soft": _PALETTE[0], "saturated": _PALETTE[1], "hard": _PALETTE[2], "lstm": _PALETTE[4],
                "rnn": _PALETTE[5]}
KNOWN_MARKERS = {"soft": "o", "saturated": "s", "hard": "^", "lstm": "D", "rnn": "v"}
_SPARE = [_PALETTE[i] for i in (6, 7, 8, 9, 3)]
_SPARE_MARKERS = ["P", "X", "*", "h", "<"]
SEQUENTIAL = "crest"  # a numeric setting (weight decay, scale): light to dark, far from the variant colours


def _spare(variant, seen, known, spares):
    """The variant's own entry of `known`; one the suite does not know gets a spare, by its rank among the unknown
    variants seen, so that it keeps its spare whichever order the variants come in."""
    if variant in known:
        return known[variant]
    unknown = sorted({v for v in seen if v not in known} | {variant})
    return spares[unknown.index(variant) % len(spares)]


def variant_color(variant, seen=()):
    return _spare(variant, seen, KNOWN_COLORS, _SPARE)


def variant_marker(variant, seen=()):
    return _spare(variant, seen, KNOWN_MARKERS, _SPARE_MARKERS)


def variant_markers(seen):
    """{variant: marker} for the variants in `seen`, for seaborn's `markers=`."""
    seen = set(seen)
    return {v: variant_marker(v, seen) for v in ordered_variants(seen)}


def variant_palette(seen):
    """{variant: colour} for the variants in `seen`, for seaborn's `palette=`."""
    seen = set(seen)
    return {v: variant_color(v, seen) for v in ordered_variants(seen)}


def setting_palette(values):
    """{value: colour} for a numeric setting drawn as colour (such as the weight decay), light to dark by value."""
    values = sorted(set(values), key=by_value)
    return dict(zip(values, sns.color_palette(SEQUENTIAL, n_colors=len(values))))


def by_value(value):
    """Sort key of a setting's values: numbers by value (1, 10, 30, 100, not 1, 10, 100, 30 as text), then text."""
    try:
        return 0, float(value), ""
    except (TypeError, ValueError):
        return 1, 0.0, str(value)


@contextmanager
def paper():
    """Draw inside this: the fonts and lines of RC, nothing else of the caller's matplotlib settings changed."""
    with plt.rc_context(RC):
        yield


def panels(count, columns=None, width=None, height=PANEL_HEIGHT, sharey=True, sharex=False):
    """A figure of `count` panels in rows of at most `columns` (3 at full width), at a paper's width: one column for
    one panel, else the full width. Panels left over in the last row are removed. Returns (figure, axes) with
    axes a flat list of the `count` panels."""
    columns = columns or min(count, 3)
    rows = math.ceil(count / columns)
    width = width or (SINGLE_COLUMN if count == 1 else FULL_WIDTH)
    fig, grid = plt.subplots(rows, columns, figsize=(width, height * rows + 0.55), squeeze=False, sharey=sharey,
                             sharex=sharex, layout="constrained")
    axes = list(grid.flat)
    for ax in axes[count:]:
        ax.remove()
    for ax in axes[:count]:
        ax.tick_params(labelleft=True)  # shared y axes keep their numbers on every panel: each reads alone
    return fig, axes[:count]


def band(values):
    """The band of a line over seeds: the report's 95% bootstrap interval of the mean (report/stats.py), the same
    numbers its tables print; a point where one seed or equal values leave no spread. For seaborn's `errorbar=`."""
    interval = mean_interval(values)
    if interval is None:  # one seed (a point) or none (nothing to draw)
        finite = np.asarray(values, dtype=float)
        finite = finite[~np.isnan(finite)]
        mean = float(finite.mean()) if len(finite) else math.nan
        return mean, mean
    return interval


def point_with_interval(ax, x, values, variant, seen):
    """One variant's mean over seeds at `x`, with whiskers to its band: a point that stands apart from the lines (the
    exact limit c = inf, exact ties tol = 0), in the variant's colour and marker."""
    low, high = band(values)
    mean = float(np.nanmean(values))
    ax.errorbar([x], [mean], yerr=[[mean - low], [high - mean]], color=variant_color(variant, seen),
                marker=variant_marker(variant, seen), ls="none", capsize=2, lw=1)


def log_axis(ax, axis="x", lo=None, hi=None, extra=None):
    """A log axis whose labels never collide: one label per decade when the range spans at least two decades (every
    k-th decade when the axis has no room for more), else labels at 1, 2 and 5 times powers of ten (finer, or evenly
    spaced, over a narrow range); no minor labels. `lo`, `hi`: the range to label (default: the axis's limits as
    drawn, margins included); `extra`: {position: label} ticks added beyond it, such as the exact limit's "∞"."""
    getattr(ax, f"set_{axis}scale")("log")
    target = ax.xaxis if axis == "x" else ax.yaxis
    if lo is None or hi is None:
        lo, hi = getattr(ax, f"get_{axis}lim")()
    lo, hi = max(lo, 1e-300), max(hi, lo * 1.0001)
    decades = math.log10(hi) - math.log10(lo)
    powers = False
    inches = _axis_inches(ax, axis)
    if hi <= lo * 1.0001:  # one value (a sweep of one finite scale): its one label, not a zoom into rounding
        ticks = [lo]
    elif decades >= 2:
        powers = decades > 4  # beyond 10^4, every label a power of ten: no 10000 beside 10^6
        # Labels the axis holds: side by side on x (a label is about 0.25 in wide), stacked on y (about 0.2 in).
        room = max(2, int(inches / (0.2 if axis == "y" else 0.27)))
        exponents = range(math.ceil(math.log10(lo) - 1e-9), math.floor(math.log10(hi) + 1e-9) + 1)
        step = next(k for k in range(1, 100) if math.ceil(len(exponents) / k) <= room)
        ticks = [10.0**e for e in exponents if e % step == 0]
    else:  # less than two decades: 1, 2, 5 times powers of ten, finer where that leaves fewer than three labels
        for mantissas in ((1, 2, 5), (1, 1.5, 2, 3, 5, 7)):
            ticks = [m * 10.0**e for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
                     for m in mantissas]
            ticks = [t for t in ticks if lo <= t <= hi]
            if len(ticks) >= 3:
                break
        else:  # less than a factor of three: evenly spaced round numbers, as on a linear axis
            ticks = [t for t in mticker.MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
                     if lo <= t <= hi and t > 0]
    extra = extra or {}
    target.set_major_locator(mticker.FixedLocator(ticks + list(extra)))
    target.set_major_formatter(mticker.FuncFormatter(lambda v, _: extra.get(v) or number_label(v, powers)))
    target.set_minor_formatter(mticker.NullFormatter())


def _axis_inches(ax, axis):
    """How long the panel's x or y axis is on paper, from its place in the figure's grid (before constrained layout
    trims it for labels: a slight overestimate)."""
    box = ax.get_position()
    return box.width * ax.figure.get_figwidth() if axis == "x" else box.height * ax.figure.get_figheight()


def number_label(value, powers=False):
    """A tick label: plain digits from 0.001 to 99,999 (what a reader reads at a glance), else 10^k; with `powers`,
    10^k for every power of ten but 1."""
    if value == 0 or (1e-3 <= abs(value) < 1e5 and not (powers and value != 1)):
        return f"{value:g}"
    exponent = math.log10(abs(value))
    if exponent == round(exponent):
        return f"$10^{{{int(round(exponent))}}}$"
    return f"{value:.0e}"


def heading(text, setting=None, width=FULL_WIDTH):
    """A figure's heading: what it shows, and on a line of its own the setting it shows (such as `model.bias=False`),
    each wrapped to the figure's `width` in inches."""
    characters = int(width * 72 / (0.62 * RC["figure.titlesize"]))  # a character is up to about 0.6 em wide
    return "\n".join(textwrap.fill(part, characters) for part in (text, setting) if part)


def field_name(field):
    """A config field as a figure names it: `train.weight_decay` -> `weight decay`."""
    return field.rsplit(".", 1)[-1].replace("_", " ")


def title(fig, text, setting=None):
    """The heading of a figure without a legend."""
    fig.suptitle(heading(text, setting, fig.get_figwidth()))


def legend_above(fig, handles, text, setting=None):
    """One legend for the whole figure, above its panels (where it hides no data and is never clipped), under the
    figure's heading: one block, because constrained layout stacks a figure-wide legend and a suptitle on each other."""
    width = fig.get_figwidth()
    # As many entries to a row as the width holds: about an inch each, more for long labels.
    longest = max(len(h.get_label()) for h in handles)
    per_row = max(1, min(len(handles), int(width / (0.45 + 0.065 * longest))))
    legend = fig.legend(handles=handles, labels=[h.get_label() for h in handles], title=heading(text, setting, width),
                        loc="outside upper center", ncols=per_row)
    legend.get_title().set_fontsize(RC["figure.titlesize"])


def variant_handles(variants, seen=None, marker=True):
    """Legend entries for `variants`: a line in the variant's colour, with its marker."""
    seen = set(seen or variants)
    return [plt.Line2D([], [], color=variant_color(v, seen), marker=variant_marker(v, seen) if marker else None,
                       label=v) for v in variants]


def save(fig, path):
    """Write the figure as PNG (for report.md) and as PDF (vector, for a paper) beside it, then close it. Everything
    the report draws is saved here: tests/test_figures.py wraps this function to inspect each figure first."""
    path = Path(path)
    fig.savefig(path.with_suffix(".png"), dpi=PNG_DPI)
    fig.savefig(path.with_suffix(".pdf"))
    plt.close(fig)


# --- what a reader would see wrong: the figure test's inspection ----------------------------------------------------

def layout_problems(fig):
    """What is wrong with a drawn figure, as sentences (empty: nothing):
    - two tick labels of one axis that overlap;
    - text that reaches outside the figure (a clipped title, legend or label);
    - two texts that overlap (titles, labels, legend entries, annotations), or one of them on a tick label;
    - a panel without an x or y label (a figure-wide label counts for every panel);
    - an axis without numbers (a log axis with fewer than two);
    - a legend entry named after a variant in any colour but the variant's;
    - data drawn in a colour no legend entry names (greys, for references such as chance, excepted)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    problems = []
    box = fig.bbox
    for text in _texts(fig):
        extent = text.get_window_extent(renderer)
        if extent.x0 < box.x0 - 1 or extent.y0 < box.y0 - 1 or extent.x1 > box.x1 + 1 or extent.y1 > box.y1 + 1:
            problems.append(f"text {text.get_text()!r} reaches outside the figure")
    ticks = [t for ax in fig.axes for axis in (ax.xaxis, ax.yaxis) for t in _drawn_ticklabels(axis)]
    others = [t for t in _texts(fig) if t not in set(ticks)]
    extents = {id(t): t.get_window_extent(renderer) for t in others + ticks}
    for a, b in combinations(others, 2):
        if extents[id(a)].overlaps(extents[id(b)]):
            problems.append(f"texts {a.get_text()!r} and {b.get_text()!r} overlap")
    for a in others:
        for b in ticks:
            if extents[id(a)].overlaps(extents[id(b)]):
                problems.append(f"text {a.get_text()!r} overlaps the tick label {b.get_text()!r}")
    figure_x, figure_y = bool(fig.get_supxlabel()), bool(fig.get_supylabel())
    for index, ax in enumerate(_panels(fig)):
        where = f"panel {index} ({ax.get_title() or 'untitled'})"
        for name, target in (("x", ax.xaxis), ("y", ax.yaxis)):
            labels = _drawn_ticklabels(target)
            extents = [t.get_window_extent(renderer) for t in labels]
            for (a, ea), (b, eb) in combinations(zip(labels, extents), 2):
                if ea.overlaps(eb):
                    problems.append(f"{where}: {name} tick labels {a.get_text()!r} and {b.get_text()!r} overlap")
            if len(labels) < (2 if target.get_scale() == "log" else 1):
                problems.append(f"{where}: the {name} axis has {len(labels) or 'no'} number{'s' * (len(labels) != 1)}"
                                " to read it by")
        if not (ax.get_xlabel() or figure_x):
            problems.append(f"{where}: no x label")
        if not (ax.get_ylabel() or figure_y):
            problems.append(f"{where}: no y label")
    named = [_handle_color(h) for legend in _legends(fig) for h in legend.legend_handles]
    named = [c for c in named if c is not None]
    for index, ax in enumerate(_panels(fig)):
        for colour in _data_colors(ax):
            if named and not any(np.allclose(colour, c, atol=0.01) for c in named):
                problems.append(f"panel {index} ({ax.get_title() or 'untitled'}): data drawn in "
                                f"{tuple(round(float(c), 2) for c in colour)}, a colour no legend entry names")
    seen = {t.get_text() for legend in _legends(fig) for t in legend.get_texts()}
    for legend in _legends(fig):
        for handle, text in zip(legend.legend_handles, legend.get_texts()):
            variant = text.get_text()
            if variant in KNOWN_COLORS or variant in VARIANT_ORDER:
                drawn = _handle_color(handle)
                # A grey entry keys a line style, not a colour (variants drawn dashed when colour shows a setting).
                if drawn is not None and np.ptp(drawn) > 0.02 and not np.allclose(drawn, variant_color(variant, seen),
                                                                                  atol=0.01):
                    problems.append(f"legend entry {variant!r} is drawn in {tuple(round(c, 2) for c in drawn)}, not "
                                    "its variant's colour")
    return problems


def _panels(fig):
    """The figure's data panels: its axes less colour bars."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>" and ax.get_visible()]


def _legends(fig):
    return list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]


def _texts(fig):
    """Every visible non-empty text a reader sees: the figure's own (title, figure-wide labels), its legends', and per
    panel the title, axis labels, the tick labels of the ticks in view and any annotation."""
    found = list(fig.texts)  # the figure-wide title and labels are among them
    for legend in _legends(fig):
        found += [legend.get_title(), *legend.get_texts()]
    for ax in fig.axes:
        # The axes' children hold its centre, left and right titles beside any annotation.
        found += [ax.title, *(c for c in ax.get_children() if isinstance(c, Text)), ax.xaxis.label, ax.yaxis.label,
                  *_drawn_ticklabels(ax.xaxis), *_drawn_ticklabels(ax.yaxis)]
    found = list({id(t): t for t in found if t is not None}.values())
    return [t for t in found if t.get_visible() and t.get_text().strip()]


def _drawn_ticklabels(axis):
    """The tick labels a reader sees: non-empty, visible, of ticks inside the view (matplotlib keeps labels for
    located ticks outside it too, and never draws them)."""
    lo, hi = sorted(axis.get_view_interval())
    slack = 1e-9 * max(abs(lo), abs(hi), 1.0)
    index = 0 if axis.axis_name == "x" else 1
    return [t for t in axis.get_ticklabels() if t.get_visible() and t.get_text().strip()
            and lo - slack <= t.get_position()[index] <= hi + slack]


def _data_colors(ax):
    """The colours of a panel's lines, bands, bars and error bars, less greys (reference lines, shading) and artists
    coloured by value through a colour map (a heatmap's cells)."""
    # A line without a stroke (an error bar's caps, a marker-only series) shows its markers' colour instead.
    found = [line.get_color() if line.get_linestyle() not in ("None", "") else line.get_markeredgecolor()
             for line in ax.lines if line.get_visible()]
    found += [patch.get_facecolor() for patch in ax.patches]
    for collection in ax.collections:
        if collection.get_array() is not None:
            continue
        colours = collection.get_facecolor() if len(collection.get_facecolor()) else collection.get_edgecolor()
        found += list(colours)
    rgb = [np.array(mcolors.to_rgb(c)) for c in found if mcolors.to_rgba(c)[3] > 0]
    return [c for c in rgb if np.ptp(c) > 0.02]  # r = g = b: a grey, black or white


def _handle_color(handle):
    """The colour a legend entry shows: a line's colour, a patch's face colour."""
    if hasattr(handle, "get_color") and not hasattr(handle, "get_facecolor"):
        return np.array(mcolors.to_rgb(handle.get_color()))
    if hasattr(handle, "get_facecolor"):
        face = handle.get_facecolor()
        face = face[0] if np.ndim(face) == 2 and len(face) else face
        return np.array(mcolors.to_rgb(face)) if len(face) else None
    return None
