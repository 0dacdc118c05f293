"""The figures as a reader sees them: every figure the report draws for a small run, inspected from matplotlib's own
layout (report/style.py, `layout_problems`): no tick labels that overlap, no text clipped or overlapping, every axis
labelled and numbered, each variant in its one colour everywhere, a PDF beside every PNG. The inspection itself is
tested on figures drawn wrong on purpose, so that a pass means something."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import yaml

from satbench.cli import main
from satbench.report import style
from satbench.report.write import write_report

pytestmark = pytest.mark.xdist_group("figures")

# Every figure a run with probes draws: the recognition figures and the tie figures of each setting, and the figures
# the built-in probes ask for.
PER_SETTING = ["recognition_heatmap", "accuracy_vs_length", "accuracy_vs_scale", "tie_shares", "tie_tolerance"]
PROBE_FIGURES = ["norm_growth", "limit_over_training", "saturation_distance", "saturation_over_training",
                 "head_histogram"]


def bench_and_draw(folder, config, save=True):
    """Bench `config` in `folder` and write its report, each figure caught before it is saved: {figure name: its
    layout problems, legend colours, panel titles and x tick labels}. `save=False`: inspected and closed unsaved
    (writing PNG and PDF takes most of the time, and one run that does is enough)."""
    path = folder / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config))
    run = folder / "run"
    assert main(["bench", str(path), "--run-dir", str(run), "--quiet", "--no-report"]) == 0

    caught = {}
    real_save = style.save

    def inspecting(fig, target):
        panels = style._panels(fig)
        caught[target.stem] = {"problems": style.layout_problems(fig), "colours": legend_colours(fig),
                               "titles": [ax.get_title() for ax in panels],
                               "xticks": [[t.get_text() for t in sorted(style._drawn_ticklabels(ax.xaxis),
                                                                        key=lambda t: t.get_position()[0])]
                                          for ax in panels]}
        if save:
            real_save(fig, target)
        else:
            plt.close(fig)

    patch = pytest.MonkeyPatch()
    patch.setattr(style, "save", inspecting)
    try:
        write_report(run)
    finally:
        patch.undo()
    return run, caught


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """A small run with probes, all three variants and a weight-decay axis (so that figures split by setting and
    colour by a setting), benched once; its report written with every figure caught before it is saved."""
    return bench_and_draw(tmp_path_factory.mktemp("figures"), {
        "name": "figures", "languages": ["majority", "first"], "seeds": [0, 1],
        "model": {"attention": ["soft", "saturated", "hard"], "d_model": 16, "n_heads": 2, "n_layers": 2, "d_ff": 32,
                  "positional": "none", "layer_norm": "branch", "bias": False},
        "data": {"train_lengths": [1, 6], "test_lengths": [1, 9], "train_size": 200, "test_per_length": 6},
        "train": {"steps": 40, "batch_size": 16, "log_every": 10, "weight_decay": [0.0, 0.1]},
        "eval": {"scales": [1, 10, 1000, "inf"], "tie_tolerances": [0.00001, 0.01, 1]},
        "probes": {"enabled": True, "strings": 16},
    })


# Two settings besides the variant, one numeric (d_ff 8 before 16, which as text would come after it), in the order
# of the field names; the variant colours the lines.
SETTINGS = [f"bias {bias}, d ff {d_ff}" for bias in (False, True) for d_ff in (8, 16)]


@pytest.fixture(scope="module")
def two_settings(tmp_path_factory):
    """A tiny run whose cells differ in two fields besides the variant: the figures that follow training must give
    every combination panels of its own rather than pool them into one band."""
    return bench_and_draw(tmp_path_factory.mktemp("two_settings"), {
        "name": "two_settings", "languages": ["majority", "first"], "seeds": [0],
        "model": {"attention": ["soft", "saturated"], "d_model": 8, "n_heads": 1, "n_layers": 1, "d_ff": [16, 8],
                  "positional": "none", "layer_norm": "branch", "bias": [False, True]},
        "data": {"train_lengths": [1, 4], "test_lengths": [1, 5], "train_size": 40, "test_per_length": 3},
        "train": {"steps": 10, "batch_size": 8, "log_every": 5},
        "eval": {"scales": [1, 100, "inf"], "tie_tolerances": [0, 0.01]},  # 0: exact equality, still drawn
        "probes": {"enabled": True, "strings": 8},
    }, save=False)


def legend_colours(fig):
    """{label: rgb} of the coloured legend entries of a figure."""
    out = {}
    for legend in list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]:
        for handle, text in zip(legend.legend_handles, legend.get_texts()):
            colour = style._handle_color(handle)
            if colour is not None and np.ptp(colour) > 0.02:
                out[text.get_text()] = tuple(np.round(colour, 3))
    return out


def test_the_report_draws_every_figure_as_png_and_pdf(drawn):
    run, caught = drawn
    settings = ["-train_weight_decay_0_0", "-train_weight_decay_0_1"]
    expected = {name + tag for name in PER_SETTING for tag in settings} | set(PROBE_FIGURES)
    assert set(caught) == expected
    report = (run / "report.md").read_text()
    for name in expected:
        assert (run / "figures" / f"{name}.png").stat().st_size > 0
        assert (run / "figures" / f"{name}.pdf").read_bytes().startswith(b"%PDF")
        assert f"(figures/{name}.png)" in report


def test_no_figure_has_a_layout_problem(drawn):
    _, caught = drawn
    problems = {name: seen["problems"] for name, seen in caught.items() if seen["problems"]}
    assert problems == {}


def test_figures_with_two_settings_have_no_layout_problem(two_settings):
    _, caught = two_settings
    assert caught and {name: seen["problems"] for name, seen in caught.items() if seen["problems"]} == {}


@pytest.mark.parametrize("name", ["norm_growth", "limit_over_training", "saturation_distance",
                                  "saturation_over_training"])
def test_figures_over_training_have_a_panel_per_language_and_setting_in_numeric_order(two_settings, name):
    _, caught = two_settings
    expected = [f"{language}\n{setting}" for setting in SETTINGS for language in ("majority", "first")]
    assert caught[name]["titles"] == expected


def test_the_tolerance_figure_draws_exact_ties_at_a_tick_labelled_0(two_settings):
    _, caught = two_settings
    tolerance = [name for name in caught if name.startswith("tie_tolerance")]
    assert tolerance
    for name in tolerance:
        # Leftmost, apart from the positive tolerances on the log axis.
        assert all(ticks[0] == "0" and len(ticks) >= 2 for ticks in caught[name]["xticks"]), caught[name]["xticks"]


def test_panel_rows_sort_numbers_by_value():
    assert sorted(["100", 30, "10", 1.0, "pre"], key=style.by_value) == [1.0, "10", 30, "100", "pre"]


def test_each_variant_has_one_colour_in_every_figure(drawn):
    _, caught = drawn
    by_variant = {}
    for seen in caught.values():
        for label, colour in seen["colours"].items():
            if label in ("soft", "saturated", "hard"):
                by_variant.setdefault(label, set()).add(colour)
    assert set(by_variant) == {"soft", "saturated", "hard"}
    assert all(len(colours) == 1 for colours in by_variant.values()), by_variant
    assert len({next(iter(c)) for c in by_variant.values()}) == 3  # and three different colours


# --- the inspection finds what it should -------------------------------------------------------------------------

def test_the_inspection_finds_overlapping_ticks_clipped_titles_missing_labels_and_wrong_colours():
    with style.paper():
        fig, ax = plt.subplots(figsize=(2, 1.5))
        ax.plot([1, 2], [1, 2], color=style.variant_color("saturated"))
        ax.set_xticks([1.0, 1.01], ["a long label", "another long label"])
        fig.suptitle("a title far too long to fit into a figure two inches wide, so it is clipped")
        ax.legend(handles=[plt.Line2D([], [], color=style.variant_color("hard"), label="soft")])
        problems = " | ".join(style.layout_problems(fig))
        plt.close(fig)
    assert "x tick labels 'a long label' and 'another long label' overlap" in problems
    assert "reaches outside the figure" in problems
    assert "no x label" in problems and "no y label" in problems
    assert "legend entry 'soft' is drawn in" in problems
    assert "a colour no legend entry names" in problems  # the saturated-coloured line


def test_a_clean_figure_passes_the_inspection():
    with style.paper():
        fig, axes = style.panels(2)
        for ax in axes:
            ax.plot([1, 10, 100], [0.2, 0.5, 0.9], color=style.variant_color("soft"))
            ax.set_title("panel")
            style.log_axis(ax, "x", 1, 100)
        fig.supxlabel("x")
        fig.supylabel("y")
        style.legend_above(fig, style.variant_handles(["soft"]), "A heading")
        assert style.layout_problems(fig) == []
        plt.close(fig)


@pytest.mark.parametrize("lo, hi", [(1, 1e9), (1e-5, 1), (50, 600), (1, 5000), (0.9, 1.4), (8, 25), (3e-4, 30)])
@pytest.mark.parametrize("count", [1, 3, 6])
def test_log_axes_label_without_collisions_at_every_range_and_width(lo, hi, count):
    with style.paper():
        fig, axes = style.panels(count)
        for ax in axes:
            ax.plot([lo, hi], [lo, hi])
            ax.set_xlabel("x")
            ax.set_ylabel("y")
            style.log_axis(ax, "x")
            style.log_axis(ax, "y")
        problems = style.layout_problems(fig)
        labels = [t.get_text() for t in axes[0].get_xticklabels() if t.get_text()]
        plt.close(fig)
    assert problems == []
    assert len(labels) >= 2


def test_tick_labels_read_as_numbers():
    assert [style.number_label(v) for v in (1, 20, 0.001, 5000)] == ["1", "20", "0.001", "5000"]
    assert style.number_label(1e6) == "$10^{6}$" and style.number_label(1e-5) == "$10^{-5}$"
    assert style.number_label(100, powers=True) == "$10^{2}$" and style.number_label(1, powers=True) == "1"


def test_variants_keep_their_colours_and_unknown_ones_get_distinct_spares():
    assert style.variant_palette(["hard", "soft"]) == {"soft": style.KNOWN_COLORS["soft"],
                                                      "hard": style.KNOWN_COLORS["hard"]}
    seen = ["soft", "linear", "mamba"]
    spares = {style.variant_color(v, seen) for v in ("linear", "mamba")}
    assert len(spares) == 2 and not spares & {tuple(c) for c in style.KNOWN_COLORS.values()}
    # The same variant gets the same spare whichever order the variants come in.
    assert style.variant_color("mamba", ["mamba", "linear"]) == style.variant_color("mamba", seen)


def test_the_heading_wraps_to_the_figure():
    long = "word " * 60
    for width in (style.SINGLE_COLUMN, style.FULL_WIDTH):
        with style.paper():
            fig = plt.figure(figsize=(width, 3), layout="constrained")
            style.title(fig, long)
            assert style.layout_problems(fig) == []
            plt.close(fig)
