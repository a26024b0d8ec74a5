"""Plots of federated runs, shared by the notebooks, the widget lab and the command line.

Every function draws a :class:`~course_lib.fl.simulation.History` (or a few of them) and
returns the matplotlib ``Figure``. Pass ``ax`` (or ``fig``) to draw into your own axes;
otherwise a new figure is made and *not* kept by pyplot: in Jupyter it shows once, as the
value of the cell (``fig = ...`` shows nothing until you evaluate ``fig``), and in a script you
save it with ``fig.savefig(path)``.

- :func:`accuracy_curves`: test accuracy per round, one line per run, the centralised
  baseline dashed;
- :func:`label_heatmap`: how many samples of each class every client holds (for many
  clients an evenly spaced subset of columns, said in the title);
- :func:`label_heatmaps`: one heatmap per run, side by side, on one colour scale;
- :func:`run_figure`: the two panels of one run side by side (the lab's figure);
- :func:`image_grid`: small images (digits, weight maps) in a grid, on one colour scale with
  an optional colour bar;
- :func:`curves` and :func:`bars`: labelled lines and bars (grouped, with their values) for the
  measurements the notebooks make, so that no notebook cell draws a figure by hand.

One style for every figure of the course: :data:`STYLE` (100 dpi, text of at least 9 pt,
a light grid) is applied by each function here, and :func:`style` applies it to figures a
notebook draws itself (``with plots.style(): ...``). Every line that a function draws has a
legend entry.

Examples
--------
>>> from course_lib import plots
>>> from course_lib.fl.simulation import run_fedavg
>>> fig = plots.run_figure(run_fedavg(num_clients=10, rounds=3, alpha=0.5))
>>> [ax.get_xlabel() for ax in fig.axes[:2]]
['round', 'client']
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from course_lib._validation import require_int
from course_lib.fl.simulation import History

__all__ = ["STYLE", "style", "accuracy_curves", "label_heatmap", "label_heatmaps", "run_figure",
           "image_grid", "curves", "bars", "describe"]

DPI = 100  # readable on screen, and keeps committed notebook images small
MIN_FONT_SIZE = 9.0  # points: no text of any figure is smaller
STYLE = {
    "figure.dpi": DPI, "savefig.dpi": DPI,
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10,
    "xtick.labelsize": MIN_FONT_SIZE, "ytick.labelsize": MIN_FONT_SIZE,
    "legend.fontsize": MIN_FONT_SIZE, "legend.title_fontsize": MIN_FONT_SIZE,
    "figure.titlesize": 11, "axes.grid": False, "grid.alpha": 0.3,
}
CMAP = "Blues"
BASELINE_STYLE = dict(color="0.45", linestyle="--", linewidth=1.2)
TARGET_STYLE = dict(color="0.3", linestyle=":", linewidth=1.2)


@contextmanager
def style() -> Iterator[None]:
    """Apply the course's figure style (:data:`STYLE`) inside a ``with`` block.

    Examples
    --------
    >>> from course_lib import plots
    >>> with plots.style():
    ...     fig = plt.figure()
    >>> fig.dpi
    100.0
    >>> plt.close(fig)
    """
    with plt.rc_context(STYLE):
        try:
            yield
        finally:
            # rc_context restores every rcParam on exit, "interactive" included: a backend that
            # was first activated inside (Jupyter's inline backend turns interactive mode on)
            # would lose its mode, and later pyplot figures would no longer show by themselves.
            interactive = matplotlib.is_interactive()
    matplotlib.interactive(interactive)


def _new_figure(figsize: tuple[float, float]) -> Figure:
    """A figure that pyplot does not keep: it displays once (as a cell's value) and is freed."""
    fig = plt.figure(figsize=figsize, dpi=DPI, layout="constrained")
    plt.close(fig)
    return fig


def describe(history: History) -> str:
    """A short legend label for a run, e.g. ``"FedAvg, dirichlet alpha=0.1"``."""
    names = {"fedavg": "FedAvg", "fedsgd": "FedSGD", "centralised": "centralised"}
    cfg = history.config
    label = names.get(history.algorithm, history.algorithm)
    if "partition" in cfg:
        label += f", {cfg['partition']}"
        if cfg.get("alpha") is not None:
            label += f" alpha={cfg['alpha']:g}"
    return label


def _runs(runs: History | Mapping[str, History] | Sequence[History]) -> dict[str, History]:
    if isinstance(runs, History):
        return {describe(runs): runs}
    if isinstance(runs, Mapping):
        return dict(runs)
    return {describe(h): h for h in runs}


def accuracy_curves(runs: History | Mapping[str, History] | Sequence[History], *,
                    baseline: History | None = None, target: float | None = None,
                    references: Mapping[str, float] | None = None,
                    ax: Axes | None = None, title: str | None = None,
                    ylim: tuple[float, float] = (0.0, 1.02)) -> Figure:
    """Test accuracy per round (round 0 is the initial model), one line per run.

    Parameters
    ----------
    runs : History, mapping of label to History, or sequence of History
        Unlabelled runs are named by :func:`describe`.
    baseline : History or None
        Drawn dashed grey, cut to the longest run's number of rounds.
    target : float or None
        A horizontal dotted line at this accuracy, in the legend as "target 95%".
    references : mapping of label to float, or None
        Further horizontal lines (dash-dotted), e.g. ``{"centralised, 20 epochs": 0.973}``.
    ax : Axes or None
        Draw here; by default on a new 6 x 3.6 inch figure.
    title : str or None
    ylim : (float, float)
        Range of the accuracy axis (raise the bottom to see the late rounds better).
    """
    runs = _runs(runs)
    with style():
        fig = ax.figure if ax is not None else _new_figure((6, 3.6))
        ax = ax if ax is not None else fig.add_subplot()
    longest = max((len(h.test_accuracy) for h in runs.values()), default=0)
    for label, h in runs.items():
        ax.plot(np.arange(len(h.test_accuracy) + 1), [h.initial_accuracy, *h.test_accuracy],
                label=label, linewidth=1.6)
    if baseline is not None:
        n = max(longest, 1) if runs else len(baseline.test_accuracy)
        acc = [baseline.initial_accuracy, *baseline.test_accuracy[:n]]
        ax.plot(np.arange(len(acc)), acc, label="centralised (1 epoch per round)",
                **BASELINE_STYLE)
    for (label, value), colour in zip((references or {}).items(), ("0.15", "0.55", "0.75")):
        ax.axhline(value, color=colour, linestyle="-.", linewidth=1.1, label=label)
    if target is not None:
        ax.axhline(target, label=f"target {target:.0%}", **TARGET_STYLE)
    ax.set(xlabel="round", ylabel="test accuracy", ylim=ylim)
    ax.set_xlim(left=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # rounds are whole numbers
    _finish(ax)
    ax.legend(loc="lower right", fontsize=MIN_FONT_SIZE)
    ax.set_title(title if title is not None else "Test accuracy per round", fontsize=11)
    return fig


def _finish(ax: Axes) -> None:
    """The course's grid and tick-label size on axes that may have been made outside style()."""
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=MIN_FONT_SIZE)


def _shown_clients(num_clients: int, max_clients: int) -> np.ndarray:
    """All clients, or ``max_clients`` of them evenly spaced (always the first and last)."""
    if num_clients <= max_clients:
        return np.arange(num_clients)
    return np.unique(np.linspace(0, num_clients - 1, max_clients).round().astype(np.int64))


def label_heatmap(counts: np.ndarray | History, *, max_clients: int = 50, ax: Axes | None = None,
                  title: str | None = None, vmax: float | None = None,
                  colorbar: bool = True) -> Figure:
    """Samples of each class (rows) held by each client (columns).

    Parameters
    ----------
    counts : array of shape (clients, classes), or a History (its ``label_counts``)
    max_clients : int
        Beyond this many clients, show an evenly spaced subset of columns (named in the
        title) so that every column stays readable.
    ax : Axes or None
        Draw here; by default on a new 6 x 3 inch figure.
    title : str or None
    vmax : float or None
        Top of the colour scale (to share one scale between several heatmaps).
    colorbar : bool
    """
    require_int("max_clients", max_clients, minimum=1)
    counts = np.asarray(counts.label_counts if isinstance(counts, History) else counts)
    if counts.ndim != 2:
        raise ValueError(f"`counts` must be a (clients, classes) matrix, got shape {counts.shape}")
    shown = _shown_clients(counts.shape[0], max_clients)
    with style():
        fig = ax.figure if ax is not None else _new_figure((6, 3))
        ax = ax if ax is not None else fig.add_subplot()
    image = ax.imshow(counts[shown].T, aspect="auto", cmap=CMAP, vmin=0, vmax=vmax,
                      interpolation="nearest", origin="lower")  # (classes, shown clients)
    step = max(1, len(shown) // 10)
    ax.set_xticks(np.arange(0, len(shown), step), [str(k) for k in shown[::step]])
    ax.set_yticks(np.arange(counts.shape[1]))
    ax.tick_params(labelsize=MIN_FONT_SIZE)
    ax.set(xlabel="client", ylabel="class")
    if title is None:
        title = "Labels per client"
    if len(shown) < counts.shape[0]:
        title += f" ({len(shown)} of {counts.shape[0]:,} clients shown)"
    ax.set_title(title, fontsize=11)
    if colorbar:
        _count_bar(fig.colorbar(image, ax=ax, label="samples", fraction=0.05, pad=0.02))
    return fig


def _count_bar(bar) -> None:
    """A colour bar of sample counts: whole numbers, readable labels."""
    bar.locator = MaxNLocator(integer=True)  # counts: no half samples on the scale
    bar.update_ticks()
    bar.ax.tick_params(labelsize=MIN_FONT_SIZE)
    bar.set_label(bar.ax.get_ylabel(), fontsize=10)


def label_heatmaps(runs: Mapping[str, History] | Sequence[History], *, max_clients: int = 50,
                   fig: Figure | None = None) -> Figure:
    """One :func:`label_heatmap` per run, side by side, sharing one colour scale."""
    runs = _runs(runs)
    if not runs:
        raise ValueError("`runs` must hold at least one History, got none")
    with style():
        fig = fig if fig is not None else _new_figure((3.3 * len(runs) + 0.8, 3))
    axes = fig.subplots(1, len(runs), squeeze=False)[0]
    vmax = max(float(h.label_counts.max()) for h in runs.values())
    for ax, (label, h) in zip(axes, runs.items()):
        label_heatmap(h, max_clients=max_clients, ax=ax, title=label, vmax=vmax, colorbar=False)
    for ax in axes[1:]:
        ax.set_ylabel("")
    _count_bar(fig.colorbar(axes[0].images[0], ax=list(axes), label="samples", fraction=0.03,
                            pad=0.02))
    return fig


def _protections(history: History) -> list[str]:
    """What protected a run, for a title: DP (with its epsilon), secure aggregation, dropouts."""
    cfg, parts = history.config, []
    dp = cfg.get("dp")
    if dp is not None:
        eps = history.final_epsilon
        parts.append(f"DP z={dp.noise_multiplier:g}, S={dp.max_norm:g}"
                     + ("" if eps is None else f" (\u03b5={eps:.3g})"))
    if cfg.get("secure_aggregation"):
        parts.append(f"secure aggregation ({cfg.get('secagg_graph', 'complete')} graph)")
    dropout = cfg.get("dropout")
    if dropout:
        parts.append(f"dropout {dropout:g}" if isinstance(dropout, (int, float))
                     else "dropouts per round")
    return parts


def run_figure(history: History, *, baseline: History | None = None,
               target: float | None = None, max_clients: int = 50,
               fig: Figure | None = None) -> Figure:
    """One run's accuracy curve (with the baseline) and its label heatmap, side by side.

    ``fig`` is cleared and redrawn if given (the widget lab reuses one figure); a figure
    without a layout engine gets fixed margins sized for 10 x 3.4 inches.
    """
    if fig is None:
        with style():
            fig = _new_figure((10, 3.4))
    else:
        fig.clear()
    left, right = fig.subplots(1, 2, gridspec_kw=dict(width_ratios=(1, 1.15)))
    if fig.get_layout_engine() is None:  # fixed margins: 3x faster to draw than a layout engine
        fig.subplots_adjust(left=0.06, right=0.94, bottom=0.14, top=0.91, wspace=0.15)
    cfg = history.config
    clients = cfg.get("num_clients", 1)
    title = f"{describe(history)}: {clients:,} client{'s' * (clients != 1)}"
    if "fraction" in cfg and cfg["fraction"] < 1:
        title += f", C={cfg['fraction']:g}"
    if "local_epochs" in cfg:
        title += f", E={cfg['local_epochs']}"
    protections = _protections(history)
    if protections:
        title += "\n" + "; ".join(protections)
        if fig.get_layout_engine() is None:
            fig.subplots_adjust(top=0.85)  # room for the second line
    label = describe(history) + "".join(
        f" + {p.split(' (')[0].split(' z=')[0]}" for p in protections if "dropout" not in p)
    accuracy_curves({label: history}, baseline=baseline, target=target, ax=left, title=title)
    label_heatmap(history, max_clients=max_clients, ax=right)
    return fig


def image_grid(images: Sequence[np.ndarray] | np.ndarray, *, titles: Sequence[str] | None = None,
               ncols: int | None = None, cmap: str = "gray_r", symmetric: bool = False,
               colorbar: str | None = None, title: str | None = None,
               panel_size: float = 1.6) -> Figure:
    """Small images side by side (in rows of ``ncols``), all on ONE colour scale.

    Parameters
    ----------
    images : sequence of 2-D arrays (or a 3-D array, first axis = image)
    titles : sequence of str or None
        One per image, drawn above it.
    ncols : int or None
        Images per row; by default all in one row.
    cmap : str
        A matplotlib colour map; ``"coolwarm"`` with ``symmetric=True`` for signed weights.
    symmetric : bool
        Centre the scale on zero (``-m .. m`` with ``m`` the largest absolute value), so
        that white means 0 in a diverging map.
    colorbar : str or None
        If given, a colour bar with this label, shared by every image.
    title : str or None
    panel_size : float
        Inches per image (at 100 dpi, 1.6 inches is 160 pixels for an 8 x 8 image).
    """
    stack = [np.asarray(im, dtype=float) for im in images]
    if not stack or any(im.ndim != 2 for im in stack):
        raise ValueError(f"`images` must be a non-empty sequence of 2-D arrays, got shapes "
                         f"{[im.shape for im in stack]}")
    if titles is not None and len(titles) != len(stack):
        raise ValueError(f"`titles` must have one entry per image ({len(stack)}), "
                         f"got {len(titles)}")
    ncols = len(stack) if ncols is None else require_int("ncols", ncols, minimum=1)
    nrows = -(-len(stack) // ncols)
    low, high = min(im.min() for im in stack), max(im.max() for im in stack)
    if symmetric:
        high = max(abs(low), abs(high)) or 1.0
        low = -high
    with style():
        fig = _new_figure((panel_size * ncols + (1.0 if colorbar else 0.2),
                           panel_size * nrows + (0.5 if title else 0.25)))
        axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(stack):
            image = ax.imshow(stack[i], cmap=cmap, vmin=low, vmax=high,
                              interpolation="nearest")
            if titles is not None:
                ax.set_title(titles[i], fontsize=10)
    if colorbar:
        bar = fig.colorbar(image, ax=list(axes.flat), label=colorbar, fraction=0.04, pad=0.02)
        bar.ax.tick_params(labelsize=MIN_FONT_SIZE)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    with style():
        fig = ax.figure if ax is not None else _new_figure(figsize)
        return fig, (ax if ax is not None else fig.add_subplot())


def curves(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], *, xlabel: str,
           ylabel: str, title: str | None = None, logx: bool = False, logy: bool = False,
           line_styles: Mapping[str, Mapping] | None = None, ylim: tuple | None = None,
           ax: Axes | None = None) -> Figure:
    """One labelled line per entry ``label -> (x, y)``, with a legend.

    ``line_styles`` maps a label to matplotlib keyword arguments (``color``, ``ls``, ``marker``).
    """
    if not series:
        raise ValueError("`series` must hold at least one (x, y) pair, got none")
    fig, ax = _axes(ax, (6, 3.6))
    for label, (x, y) in series.items():
        ax.plot(x, y, label=label, linewidth=1.6, **(line_styles or {}).get(label, {}))
    ax.set(xlabel=xlabel, ylabel=ylabel, xscale="log" if logx else "linear",
           yscale="log" if logy else "linear")
    if ylim is not None:
        ax.set_ylim(ylim)
    _finish(ax)
    ax.legend(fontsize=MIN_FONT_SIZE)
    if title:
        ax.set_title(title, fontsize=11)
    return fig


def bars(values: Mapping[str, float] | Mapping[str, Mapping[str, float]], *, ylabel: str,
         xlabel: str | None = None, title: str | None = None, log: bool = False,
         value_format: str | Callable[[float], str] | None = "{:.3g}",
         colors: Sequence[str] | None = None, ylim: tuple | None = None,
         ax: Axes | None = None) -> Figure:
    """Bars, each with its value written on top (a format string or a function of the value;
    ``value_format=None``: no values).

    A mapping ``category -> value`` draws one bar per category; a mapping of mappings
    ``series -> {category -> value}`` draws grouped bars, one colour per series, in the legend.
    ``colors`` gives one colour per bar (single series) or per series.
    """
    if not values:
        raise ValueError("`values` must hold at least one bar, got none")
    grouped = all(isinstance(v, Mapping) for v in values.values())
    groups = dict(values) if grouped else {"": dict(values)}
    categories = list(dict.fromkeys(c for g in groups.values() for c in g))
    fig, ax = _axes(ax, (6, 3.6))
    width = 0.8 / len(groups)
    for i, (name, group) in enumerate(groups.items()):
        x = np.arange(len(categories)) + (i - (len(groups) - 1) / 2) * width
        heights = [group.get(c, np.nan) for c in categories]
        colour = (colors[i] if grouped else list(colors)) if colors is not None else None
        drawn = ax.bar(x, heights, width=width, label=name or None, color=colour)
        if value_format is not None:
            text = value_format if callable(value_format) else value_format.format
            ax.bar_label(drawn, labels=[text(h) for h in heights], fontsize=MIN_FONT_SIZE)
    ax.set_xticks(np.arange(len(categories)), [str(c) for c in categories])
    ax.set(ylabel=ylabel, xlabel=xlabel or "", yscale="log" if log else "linear")
    if ylim is not None:
        ax.set_ylim(ylim)
    _finish(ax)
    ax.grid(axis="x", visible=False)
    if grouped:
        ax.legend(fontsize=MIN_FONT_SIZE)
    if title:
        ax.set_title(title, fontsize=11)
    return fig


# --- chapter 5.2 ---

__all__ += ["EXTRACTION_LABELS", "extraction_curves"]

EXTRACTION_LABELS = {"probabilities": "full probabilities", "rounded": "rounded probabilities",
                     "label": "label only", "budget": "probabilities, query budget"}


def extraction_curves(curve, *, fig: Figure | None = None) -> Figure:
    """Model extraction: the stolen copy's fidelity (left) and accuracy (right) against the
    number of queries, one line per kind of answer the API gives.

    ``curve`` is an :class:`~course_lib.attacks.extraction.ExtractionCurve` (anything with
    ``rows`` of ``(series, queries, fidelity, accuracy)``, ``victim_accuracy`` and ``budget``).
    The right panel draws the victim's own accuracy as a dashed reference line; a query budget,
    if the curve has one, is a dotted vertical line on both panels. The query axis is
    logarithmic.
    """
    rows = getattr(curve, "rows", None)
    if not rows:
        raise ValueError("`curve` must be an ExtractionCurve with at least one row, "
                         f"got {type(curve).__name__}")
    with style():
        fig = fig if fig is not None else _new_figure((10, 3.6))
    left, right = fig.subplots(1, 2, sharex=True)
    for name in dict.fromkeys(r[0] for r in rows):
        picked = sorted((r for r in rows if r[0] == name), key=lambda r: r[1])
        label = EXTRACTION_LABELS.get(name, name)
        dashed = dict(linestyle="--") if name == "budget" else {}
        for ax, column in ((left, 2), (right, 3)):
            ax.plot([r[1] for r in picked], [r[column] for r in picked], marker="o",
                    linewidth=1.6, label=label, **dashed)
    right.axhline(curve.victim_accuracy, label=f"victim ({curve.victim_accuracy:.3f})",
                  **BASELINE_STYLE)
    budget = getattr(curve, "budget", None)
    bottom = min(0.5, 0.05 * np.floor(20 * min(min(r[2], r[3]) for r in rows)))
    for ax, ylabel, title in ((left, "fidelity (agrees with the victim)", "Fidelity of the copy"),
                              (right, "test accuracy of the copy", "Accuracy of the copy")):
        if budget is not None:
            ax.axvline(budget, label=f"budget: {budget} queries", **TARGET_STYLE)
        ax.set(xscale="log", xlabel="queries to the prediction API", ylabel=ylabel,
               ylim=(bottom, 1.0))
        ax.set_title(title, fontsize=11)
        _finish(ax)
        ax.legend(loc="lower right", fontsize=MIN_FONT_SIZE)
    queries = sorted({r[1] for r in rows})
    left.set_xticks(queries, [str(q) for q in queries])
    left.minorticks_off()
    right.minorticks_off()
    return fig
