"""course_lib.plots: every function returns a figure holding the data it was given."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from course_lib import plots
from course_lib.fl.simulation import run_centralised, run_fedavg


@pytest.fixture(scope="module")
def runs():
    return {"IID": run_fedavg(num_clients=12, rounds=3),
            "skewed": run_fedavg(num_clients=12, rounds=4, alpha=0.1)}


@pytest.fixture(scope="module")
def baseline():
    return run_centralised(epochs=6)


def test_accuracy_curves_plot_every_run_from_round_0_and_cut_the_baseline(runs, baseline):
    open_before = plt.get_fignums()
    fig = plots.accuracy_curves(runs, baseline=baseline, target=0.9)
    assert isinstance(fig, Figure)
    assert plt.get_fignums() == open_before  # not kept by pyplot: shows once in Jupyter
    ax = fig.axes[0]
    iid, skewed, central = ax.lines[:3]
    assert iid.get_label() == "IID" and skewed.get_label() == "skewed"
    h = runs["IID"]
    assert np.array_equal(iid.get_xdata(), np.arange(4))
    assert np.allclose(iid.get_ydata(), [h.initial_accuracy, *h.test_accuracy])
    assert len(central.get_ydata()) == 5  # round 0 + as many rounds as the longest run (4)
    assert ax.get_xlabel() == "round" and ax.get_ylabel() == "test accuracy"
    assert plots.accuracy_curves(runs, ylim=(0.5, 1)).axes[0].get_ylim() == (0.5, 1)


def test_accuracy_curves_accept_one_history_a_list_and_an_axes(runs):
    single = plots.accuracy_curves(runs["IID"])
    assert single.axes[0].lines[0].get_label() == "FedAvg, iid"
    listed = plots.accuracy_curves(list(runs.values()))
    assert [ln.get_label() for ln in listed.axes[0].lines] == \
        ["FedAvg, iid", "FedAvg, dirichlet alpha=0.1"]
    fig = Figure()
    ax = fig.add_subplot()
    assert plots.accuracy_curves(runs, ax=ax, title="mine") is fig
    assert ax.get_title() == "mine"


def test_label_heatmap_shows_counts_with_classes_as_rows(runs):
    h = runs["skewed"]
    fig = plots.label_heatmap(h)
    image = fig.axes[0].images[0].get_array()
    assert image.shape == (10, 12)  # (classes, clients)
    assert np.array_equal(np.asarray(image), h.label_counts.T)
    assert len(fig.axes) == 2  # the heatmap and its colour bar


def test_label_heatmap_shows_an_even_subset_of_many_clients():
    counts = np.arange(1000 * 10).reshape(1000, 10)
    fig = plots.label_heatmap(counts, max_clients=40, colorbar=False)
    ax = fig.axes[0]
    image = np.asarray(ax.images[0].get_array())
    assert image.shape == (10, 40)
    assert np.array_equal(image[:, 0], counts[0]) and np.array_equal(image[:, -1], counts[-1])
    assert "40 of 1,000 clients shown" in ax.get_title()


@pytest.mark.parametrize("bad, error", [(np.zeros(10), ValueError), (np.zeros((2, 2, 2)),
                                                                      ValueError)])
def test_label_heatmap_rejects_non_matrices(bad, error):
    with pytest.raises(error, match="counts"):
        plots.label_heatmap(bad)


def test_label_heatmap_validates_max_clients(runs):
    with pytest.raises(ValueError, match="max_clients"):
        plots.label_heatmap(runs["IID"], max_clients=0)


def test_label_heatmaps_share_one_colour_scale(runs):
    fig = plots.label_heatmaps(runs)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 2
    top = max(h.label_counts.max() for h in runs.values())
    assert all(im.get_clim() == (0, top) for im in images)
    assert [ax.get_title() for ax in fig.axes[:2]] == ["IID", "skewed"]
    with pytest.raises(ValueError, match="runs"):
        plots.label_heatmaps({})


def test_run_figure_redraws_into_the_same_figure(runs, baseline):
    fig = Figure(figsize=(10, 3.4))
    assert plots.run_figure(runs["IID"], baseline=baseline, fig=fig) is fig
    n_axes = len(fig.axes)
    plots.run_figure(runs["skewed"], baseline=baseline, target=0.9, fig=fig)
    assert len(fig.axes) == n_axes == 3  # curve, heatmap, colour bar: cleared, not stacked
    curve = fig.axes[0].lines[0]
    assert np.allclose(curve.get_ydata()[1:], runs["skewed"].test_accuracy)
    assert "12 clients" in fig.axes[0].get_title()


def test_describe_names_the_run(runs, baseline):
    assert plots.describe(runs["skewed"]) == "FedAvg, dirichlet alpha=0.1"
    assert plots.describe(baseline) == "centralised"


def _texts(fig):
    """Every visible piece of text in a figure (tick labels, labels, titles, legends)."""
    fig.canvas.draw()
    return [t for t in fig.findobj(lambda a: hasattr(a, "get_fontsize") and hasattr(a, "get_text"))
            if t.get_visible() and t.get_text()]


def test_every_figure_has_the_course_style(runs, baseline):
    figures = [plots.accuracy_curves(runs, baseline=baseline, target=0.9),
               plots.label_heatmap(runs["IID"]), plots.label_heatmaps(runs),
               plots.run_figure(runs["IID"], baseline=baseline, target=0.9),
               plots.image_grid([np.eye(8)] * 3, titles=list("abc"), colorbar="value"),
               plots.curves({"a": ([1, 2], [1, 2])}, xlabel="x", ylabel="y", title="t"),
               plots.bars({"g": {"a": 1.0}, "h": {"a": 2.0}}, ylabel="y", xlabel="x", title="t")]
    for fig in figures:
        assert fig.dpi >= 100
        sizes = [t.get_fontsize() for t in _texts(fig)]
        assert sizes and min(sizes) >= plots.MIN_FONT_SIZE, f"text below 9 pt: {min(sizes)}"


def test_target_and_reference_lines_are_in_the_legend(runs):
    fig = plots.accuracy_curves(runs, target=0.95, references={"centralised": 0.97})
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["IID", "skewed", "centralised", "target 95%"]
    lines = {ln.get_label(): ln for ln in ax.lines}
    assert np.allclose(lines["target 95%"].get_ydata(), 0.95)
    assert np.allclose(lines["centralised"].get_ydata(), 0.97)


def test_style_context_restores_the_defaults():
    before = plt.rcParams["figure.dpi"]
    with plots.style():
        assert plt.rcParams["figure.dpi"] == plots.DPI
        assert plt.rcParams["xtick.labelsize"] == plots.MIN_FONT_SIZE
    assert plt.rcParams["figure.dpi"] == before
    was = plt.isinteractive()
    try:
        plt.ioff()
        with plots.style():
            plt.ion()  # what Jupyter's inline backend does when it is activated inside
        assert plt.isinteractive(), "a mode switched on inside style() must survive it"
    finally:
        plt.interactive(was)


def test_image_grid_uses_one_scale_and_a_colour_bar():
    images = [np.full((8, 8), -2.0), np.arange(64.0).reshape(8, 8) / 10]
    fig = plots.image_grid(images, titles=["a", "b"], cmap="coolwarm", symmetric=True,
                           colorbar="weight")
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 2 and all(ax.images[0].get_clim() == (-6.3, 6.3) for ax in shown)
    assert np.array_equal(shown[1].images[0].get_array(), images[1])
    assert [ax.get_title() for ax in shown] == ["a", "b"]
    assert any(ax.get_ylabel() == "weight" for ax in fig.axes), "a labelled colour bar"
    grid = plots.image_grid(np.zeros((10, 8, 8)), ncols=5)
    assert len(grid.axes) == 10 and grid.get_size_inches()[1] > 3  # two rows of five


@pytest.mark.parametrize("kwargs, match", [
    (dict(images=[]), "images"), (dict(images=[np.zeros(3)]), "images"),
    (dict(images=[np.zeros((2, 2))], titles=["a", "b"]), "titles"),
    (dict(images=[np.zeros((2, 2))], ncols=0), "ncols")])
def test_image_grid_validates_its_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plots.image_grid(**kwargs)


def test_curves_draw_every_series_with_its_label_and_style():
    fig = plots.curves({"a": ([1, 2, 4], [3, 2, 1]), "b": ([1, 2], [5, 6])}, xlabel="x",
                       ylabel="y", logx=True, line_styles={"b": {"ls": "--"}}, title="t")
    ax = fig.axes[0]
    assert [ln.get_label() for ln in ax.lines] == ["a", "b"]
    assert np.array_equal(ax.lines[0].get_ydata(), [3, 2, 1])
    assert ax.lines[1].get_linestyle() == "--" and ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    with pytest.raises(ValueError, match="series"):
        plots.curves({}, xlabel="x", ylabel="y")


def test_bars_single_and_grouped_show_their_values():
    single = plots.bars({"plain": 1.0, "encrypted": 250.0}, ylabel="ms", log=True).axes[0]
    assert [p.get_height() for p in single.patches] == [1.0, 250.0] and single.get_yscale() == "log"
    assert [t.get_text() for t in single.texts] == ["1", "250"], "each bar carries its value"
    speeds = {"encrypt": {"ours": 3.0, "naive": 0.1}, "decrypt": {"ours": 4.0, "naive": 0.2}}
    grouped = plots.bars(speeds, ylabel="GB/s", value_format="{:.1f}").axes[0]
    assert [p.get_height() for p in grouped.patches] == [3.0, 0.1, 4.0, 0.2]
    assert [t.get_text() for t in grouped.get_legend().get_texts()] == ["encrypt", "decrypt"]
    assert [t.get_text() for t in grouped.get_xticklabels()] == ["ours", "naive"]
    formatted = plots.bars({"a": 1234.5}, ylabel="y", value_format=lambda v: f"{v:,.0f}")
    assert [t.get_text() for t in formatted.axes[0].texts] == ["1,234"]
    with pytest.raises(ValueError, match="values"):
        plots.bars({}, ylabel="y")
