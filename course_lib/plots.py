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

Chinese labels: :func:`accuracy_curves`, :func:`label_heatmap`, :func:`run_figure` and
:func:`describe` take ``lang="zh"`` (terms from :mod:`course_lib.glossary`). Their Chinese text is
drawn with a CJK font that :func:`cjk_font` finds (Debian: ``apt-get install fonts-noto-cjk``),
set on each text of the figure, so pyplot's global settings are never changed. Without such a
font the labels fall back to English, with a :class:`CJKFontWarning`.

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

import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import MaxNLocator

from course_lib._validation import require_choice, require_int
from course_lib.fl.simulation import History

__all__ = ["STYLE", "style", "accuracy_curves", "label_heatmap", "label_heatmaps", "run_figure",
           "image_grid", "curves", "bars", "describe", "LANGS", "CJK_FONTS", "CJKFontWarning",
           "cjk_font", "figure_lang", "use_cjk_font"]

# --- CJK fonts ---
LANGS = ("en", "zh")
# Fonts that draw simplified Chinese, best first: Debian's fonts-noto-cjk, then what other
# systems ship. Latin letters and digits keep the course's font; only Chinese glyphs fall back.
CJK_FONTS = ("Noto Sans CJK SC", "Source Han Sans SC", "Noto Sans SC", "WenQuanYi Zen Hei",
             "WenQuanYi Micro Hei", "Microsoft YaHei", "SimHei", "PingFang SC",
             "Hiragino Sans GB", "Heiti SC")
# Their files, for fonts installed after matplotlib cached its font list (it does not rescan).
_CJK_FILES = ("notosanscjk", "sourcehansans", "notosanssc", "wqy", "msyh", "simhei", "pingfang",
              "hiragino", "stheiti")


class CJKFontWarning(UserWarning):
    """No font that draws Chinese was found: the figure's labels are in English instead."""


def _known_cjk_font() -> str | None:
    names = {entry.name for entry in font_manager.fontManager.ttflist}
    return next((name for name in CJK_FONTS if name in names), None)


@lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """The name of a font that draws Chinese, or ``None`` when the system has none.

    A font installed after matplotlib built its font cache is found on disk and registered
    with matplotlib's font manager (that adds a font; it changes no ``rcParams``).
    """
    found = _known_cjk_font()
    if found is None:
        for path in font_manager.findSystemFonts():
            if any(hint in Path(path).name.lower().replace("-", "") for hint in _CJK_FILES):
                try:
                    font_manager.fontManager.addfont(path)
                except (OSError, RuntimeError, ValueError):  # unreadable: try the next file
                    continue
        found = _known_cjk_font()
    return found


def figure_lang(lang: str) -> str:
    """The language a figure can be labelled in: ``lang``, or ``"en"`` (with a
    :class:`CJKFontWarning`) when ``lang="zh"`` and :func:`cjk_font` finds no font."""
    require_choice("lang", lang, LANGS)
    if lang == "zh" and cjk_font() is None:
        warnings.warn("no font that draws Chinese was found (on Debian or Ubuntu: apt-get "
                      "install fonts-noto-cjk); the figure's labels are in English",
                      CJKFontWarning, stacklevel=3)
        return "en"
    return lang


def use_cjk_font(fig: Figure) -> Figure:
    """Let every text of ``fig`` draw Chinese glyphs with :func:`cjk_font` (per text, so no
    global setting changes); Latin letters and digits keep their font. Returns ``fig``."""
    font = cjk_font()
    if font is not None:
        for text in fig.findobj(Text):
            family = list(text.get_fontfamily())
            if font not in family:
                text.set_fontfamily([*family, font])
    return fig


# Every word a figure of this module writes, in each language (terms: course_lib.glossary).
_TEXT = {
    "en": {"round": "round", "accuracy": "test accuracy",
           "accuracy_title": "Test accuracy per round",
           "centralised": "centralised (1 epoch per round)", "target": "target {:.0%}",
           "client": "client", "class": "class", "labels_title": "Labels per client",
           "shown": " ({} of {:,} clients shown)", "samples": "samples",
           "names": {"fedavg": "FedAvg", "fedsgd": "FedSGD", "centralised": "centralised"},
           "partitions": {}, "sep": ", ", "alpha": " alpha={:g}",
           "clients": lambda n: f"{n:,} client{'s' * (n != 1)}", "colon": ": ",
           "dp": "DP z={:g}, S={:g}", "eps": " (\u03b5={:.3g})", "dp_short": "DP",
           "secagg": "secure aggregation ({} graph)", "secagg_short": "secure aggregation",
           "graphs": {}, "dropout": "dropout {:g}", "dropouts": "dropouts per round",
           "join": "; "},
    "zh": {"round": "通信轮次", "accuracy": "测试准确率", "accuracy_title": "每轮的测试准确率",
           "centralised": "集中式训练（每轮 1 个 epoch）", "target": "目标 {:.0%}",
           "client": "客户端", "class": "类别", "labels_title": "各客户端的标签分布",
           "shown": "（显示 {1:,} 个客户端中的 {0} 个）", "samples": "样本数",
           "names": {"fedavg": "FedAvg", "fedsgd": "FedSGD", "centralised": "集中式训练"},
           "partitions": {"iid": "IID", "dirichlet": "Dirichlet", "shards": "分片"},
           "sep": "，", "alpha": " α={:g}", "clients": lambda n: f"{n:,} 个客户端",
           "colon": "：", "dp": "差分隐私 z={:g}，S={:g}", "eps": "（\u03b5={:.3g}）",
           "dp_short": "差分隐私", "secagg": "安全聚合（{}）", "secagg_short": "安全聚合",
           "graphs": {"complete": "完全图", "sparse": "稀疏图"}, "dropout": "掉线 {:g}",
           "dropouts": "每轮掉线", "join": "；"},
}

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


def describe(history: History, *, lang: str = "en") -> str:
    """A short legend label for a run, e.g. ``"FedAvg, dirichlet alpha=0.1"`` (``lang="zh"``:
    ``"FedAvg，Dirichlet α=0.1"``)."""
    words = _TEXT[require_choice("lang", lang, LANGS)]
    cfg = history.config
    label = words["names"].get(history.algorithm, history.algorithm)
    if "partition" in cfg:
        label += words["sep"] + words["partitions"].get(cfg["partition"], cfg["partition"])
        if cfg.get("alpha") is not None:
            label += words["alpha"].format(cfg["alpha"])
    return label


def _runs(runs: History | Mapping[str, History] | Sequence[History], *,
          lang: str = "en") -> dict[str, History]:
    if isinstance(runs, History):
        return {describe(runs, lang=lang): runs}
    if isinstance(runs, Mapping):
        return dict(runs)
    return {describe(h, lang=lang): h for h in runs}


def accuracy_curves(runs: History | Mapping[str, History] | Sequence[History], *,
                    baseline: History | None = None, target: float | None = None,
                    references: Mapping[str, float] | None = None,
                    ax: Axes | None = None, title: str | None = None,
                    ylim: tuple[float, float] = (0.0, 1.02), lang: str = "en") -> Figure:
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
    lang : {"en", "zh"}
        Language of the axes, legend and default title ("zh" falls back to "en" with a
        :class:`CJKFontWarning` when no CJK font exists).
    """
    lang = figure_lang(lang)
    words = _TEXT[lang]
    runs = _runs(runs, lang=lang)
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
        ax.plot(np.arange(len(acc)), acc, label=words["centralised"], **BASELINE_STYLE)
    for (label, value), colour in zip((references or {}).items(), ("0.15", "0.55", "0.75")):
        ax.axhline(value, color=colour, linestyle="-.", linewidth=1.1, label=label)
    if target is not None:
        ax.axhline(target, label=words["target"].format(target), **TARGET_STYLE)
    ax.set(xlabel=words["round"], ylabel=words["accuracy"], ylim=ylim)
    ax.set_xlim(left=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # rounds are whole numbers
    _finish(ax)
    ax.legend(loc="lower right", fontsize=MIN_FONT_SIZE)
    ax.set_title(title if title is not None else words["accuracy_title"], fontsize=11)
    return use_cjk_font(fig) if lang == "zh" else fig


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
                  colorbar: bool = True, lang: str = "en") -> Figure:
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
    lang : {"en", "zh"}
        Language of the axes and default title, as in :func:`accuracy_curves`.
    """
    require_int("max_clients", max_clients, minimum=1)
    lang = figure_lang(lang)
    words = _TEXT[lang]
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
    ax.set(xlabel=words["client"], ylabel=words["class"])
    if title is None:
        title = words["labels_title"]
    if len(shown) < counts.shape[0]:
        title += words["shown"].format(len(shown), counts.shape[0])
    ax.set_title(title, fontsize=11)
    if colorbar:
        _count_bar(fig.colorbar(image, ax=ax, label=words["samples"], fraction=0.05, pad=0.02))
    return use_cjk_font(fig) if lang == "zh" else fig


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


def _protections(history: History, words: Mapping) -> list[tuple[str, str | None]]:
    """What protected a run: (for the title, for the legend or None) for DP (with its
    epsilon), secure aggregation and dropouts."""
    cfg, parts = history.config, []
    dp = cfg.get("dp")
    if dp is not None:
        eps = history.final_epsilon
        parts.append((words["dp"].format(dp.noise_multiplier, dp.max_norm)
                      + ("" if eps is None else words["eps"].format(eps)), words["dp_short"]))
    if cfg.get("secure_aggregation"):
        graph = cfg.get("secagg_graph", "complete")
        parts.append((words["secagg"].format(words["graphs"].get(graph, graph)),
                      words["secagg_short"]))
    dropout = cfg.get("dropout")
    if dropout:
        parts.append((words["dropout"].format(dropout) if isinstance(dropout, (int, float))
                      else words["dropouts"], None))
    return parts


def run_figure(history: History, *, baseline: History | None = None,
               target: float | None = None, max_clients: int = 50,
               fig: Figure | None = None, lang: str = "en") -> Figure:
    """One run's accuracy curve (with the baseline) and its label heatmap, side by side.

    ``fig`` is cleared and redrawn if given (the widget lab reuses one figure); a figure
    without a layout engine gets fixed margins sized for 10 x 3.4 inches. ``lang="zh"``
    labels it in Chinese (or in English, with a :class:`CJKFontWarning`, without a CJK font).
    """
    lang = figure_lang(lang)
    words = _TEXT[lang]
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
    title = describe(history, lang=lang) + words["colon"] + words["clients"](clients)
    if "fraction" in cfg and cfg["fraction"] < 1:
        title += f"{words['sep']}C={cfg['fraction']:g}"
    if "local_epochs" in cfg:
        title += f"{words['sep']}E={cfg['local_epochs']}"
    protections = _protections(history, words)
    if protections:
        title += "\n" + words["join"].join(long for long, _ in protections)
        if fig.get_layout_engine() is None:
            fig.subplots_adjust(top=0.85)  # room for the second line
    label = describe(history, lang=lang) + "".join(
        f" + {short}" for _, short in protections if short is not None)
    accuracy_curves({label: history}, baseline=baseline, target=target, ax=left, title=title,
                    lang=lang)
    label_heatmap(history, max_clients=max_clients, ax=right, lang=lang)
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


# --- chapter 5.1 ---
# Figures of chapter 5.1 (attacks and differential privacy). They take the library's result
# objects (MembershipResult, History, CompositionTable, AuditTable) duck-typed, by attribute,
# so that this module imports nothing from attacks/ or dp/.
__all__ += ["membership_figure", "dp_fedavg_figure", "gaussian_mechanism_figure",
            "composition_figure", "audit_figure"]

def _two_panels(width: float = 10.0, height: float = 3.6) -> tuple[Figure, Axes, Axes]:
    with style():
        fig = _new_figure((width, height))
        left, right = fig.subplots(1, 2)
    return fig, left, right


def membership_figure(membership: Mapping[str, Sequence], *, reference: str = "no DP") -> Figure:
    """Membership inference against DP-SGD: the losses the attacker sees, and AUC against epsilon.

    ``membership`` maps a setting's label to the runs (``MembershipResult``, one per seed) of
    that setting; ``reference`` names the run without DP. Left: the member and non-member
    losses of its first seed. Right: mean attack AUC and mean test accuracy of every DP
    setting against its epsilon (more private to the right), with the no-DP values as
    horizontal reference lines and the chance level 0.5.
    """
    if reference not in membership:
        raise ValueError(f"`reference` must be one of {sorted(membership)}, got {reference!r}")
    private = [name for name in membership if name != reference]
    if not private:
        raise ValueError("`membership` must hold at least one setting besides the reference")
    fig, left, right = _two_panels()
    plain = membership[reference][0]
    losses = np.r_[plain.member_losses, plain.nonmember_losses]
    bins = np.logspace(np.log10(max(losses.min(), 1e-8)), np.log10(losses.max()), 27)
    left.hist(plain.member_losses, bins=bins, alpha=0.6, label="members (trained on)")
    left.hist(plain.nonmember_losses, bins=bins, alpha=0.6, label="non-members")
    left.set(xscale="log", xlabel="cross-entropy loss (log scale)", ylabel="examples")
    left.set_title(f"{reference}: AUC {plain.auc:.2f} (first seed)", fontsize=11)
    _finish(left)
    left.legend(fontsize=MIN_FONT_SIZE)

    def mean(name: str, key: str) -> float:
        return float(np.mean([getattr(r, key) for r in membership[name]]))

    eps = [membership[name][0].epsilon for name in private]
    seeds = len(membership[private[0]])
    for i, (key, label) in enumerate((("auc", "attack AUC"), ("test_accuracy", "test accuracy"))):
        right.plot(eps, [mean(n, key) for n in private], "o-", color=f"C{i}",
                   label=f"{label}, DP-SGD")
        right.axhline(mean(reference, key), color=f"C{i}", linestyle="--", linewidth=1.2,
                      label=f"{label}, {reference} ({mean(reference, key):.2f})")
    right.axhline(0.5, color="0.5", linestyle=":", label="chance (AUC 0.5)")
    right.set(xscale="log", xlabel="epsilon (more private →)", ylabel="mean over seeds",
              ylim=(0, 1.02))
    right.set_xticks(eps, [f"{e:.2g}" for e in eps])
    right.minorticks_off()
    right.invert_xaxis()
    _finish(right)
    right.legend(fontsize=MIN_FONT_SIZE, loc="lower left")
    right.set_title(f"DP-SGD: mean of {seeds} seeds", fontsize=11)
    return fig


def dp_fedavg_figure(runs: Mapping[str, History], *, title: str = "Test accuracy") -> Figure:
    """DP-FedAvg: accuracy per round of every run (left) and the epsilon each DP run spends
    (right, log scale). Runs without DP (no ``epsilon``) appear on the left only."""
    if not runs:
        raise ValueError("`runs` must hold at least one History, got none")
    fig, left, right = _two_panels()
    accuracy_curves(dict(runs), ax=left, title=title)
    private = [(i, label, h) for i, (label, h) in enumerate(runs.items()) if h.epsilon]
    for i, label, h in private:
        right.plot(h.rounds, h.epsilon, color=f"C{i}", label=label, linewidth=1.6)
    right.set(xlabel="round", ylabel="epsilon spent", yscale="log")
    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    _finish(right)
    if private:
        right.legend(fontsize=MIN_FONT_SIZE)
    right.set_title("Privacy budget spent", fontsize=11)
    return fig


def gaussian_mechanism_figure(*, sigma: float, sensitivity: float = 1.0,
                              sigmas: Sequence[float] = (), delta: float | None = None,
                              delta_of: Callable[[float, float, float], float] | None = None
                              ) -> Figure:
    """The Gaussian mechanism seen by an attacker, and its privacy curve.

    Left: the output densities on two neighbouring datasets, ``N(0, sigma^2)`` and
    ``N(sensitivity, sigma^2)`` (the query's value on ``D`` set to 0), and the privacy loss
    ``log(p / p')`` on a second axis: a straight line, unbounded, which is why a ``delta``
    is needed. Right (when ``delta_of`` is given, e.g.
    :func:`course_lib.dp.definition.gaussian_delta`): ``delta(epsilon)`` for ``sigma`` and
    every entry of ``sigmas``, with the target ``delta`` as a horizontal line.
    """
    if not sigma > 0 or not sensitivity > 0:
        raise ValueError(f"`sigma` and `sensitivity` must be > 0, got {sigma!r}, {sensitivity!r}")
    fig, left, right = _two_panels()
    x = np.linspace(-4 * sigma, sensitivity + 4 * sigma, 400)
    for centre, label in ((0.0, "output on D'"), (sensitivity, "output on D (one more record)")):
        density = np.exp(-0.5 * ((x - centre) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
        left.plot(x, density, linewidth=1.6, label=label)
    loss_ax = left.twinx()
    loss = (2 * x * sensitivity - sensitivity ** 2) / (2 * sigma ** 2)  # log p_D(x) / p_D'(x)
    loss_ax.plot(x, loss, color="0.3", linestyle="--", linewidth=1.2,
                 label="privacy loss (right axis)")
    loss_ax.set_ylabel("privacy loss log(p / p')")
    loss_ax.tick_params(labelsize=MIN_FONT_SIZE)
    left.set(xlabel="released value", ylabel="density")
    _finish(left)
    handles = left.get_legend_handles_labels()
    extra = loss_ax.get_legend_handles_labels()
    left.legend(handles[0] + extra[0], handles[1] + extra[1], fontsize=MIN_FONT_SIZE,
                loc="upper left")
    left.set_title(f"sigma = {sigma:.3g}, sensitivity = {sensitivity:g}", fontsize=11)
    if delta_of is None:
        right.set_visible(False)
        return fig
    eps = np.linspace(0.0, 4.0, 161)
    for s in dict.fromkeys([sigma, *sigmas]):
        right.plot(eps, [delta_of(s, e, sensitivity) for e in eps], linewidth=1.6,
                   label=f"sigma = {s:.3g}")
    if delta is not None:
        right.axhline(delta, label=f"target delta = {delta:g}", **TARGET_STYLE)
    right.set(xlabel="epsilon", ylabel="delta(epsilon)", yscale="log", ylim=(1e-9, 1.5))
    _finish(right)
    right.legend(fontsize=MIN_FONT_SIZE)
    right.set_title("Privacy curve: every (epsilon, delta) it meets", fontsize=11)
    return fig


def composition_figure(table, *, title: str | None = None, ax: Axes | None = None) -> Figure:
    """Epsilon after ``k`` Gaussian steps by simple, advanced and Renyi-DP composition, and
    the exact value, from a ``CompositionTable`` (log-log axes)."""
    series = {"simple composition": (table.steps, table.simple),
              "advanced composition": (table.steps, table.advanced),
              "RDP accountant": (table.steps, table.rdp),
              "exact (Gaussian DP)": (table.steps, table.exact)}
    styles = {"exact (Gaussian DP)": dict(color="0.2", linestyle="--"),
              **{k: dict(marker="o") for k in list(series)[:3]}}
    return curves(series, xlabel="steps k", ylabel=f"epsilon (delta = {table.delta:g})",
                  logx=True, logy=True, line_styles=styles, ax=ax,
                  title=title or f"Composing k Gaussian steps, z = {table.noise_multiplier:g}")


def audit_figure(table, *, show: int | None = None) -> Figure:
    """The privacy audit: the attacker's scores in the two worlds (left, for ``table[show]``,
    by default the first noisy row) and, for every noise level, the empirical lower bound
    beside the exact and the accountant's epsilon (right; ``inf`` written as text)."""
    rows = list(table)
    if not rows:
        raise ValueError("`table` must hold at least one AuditResult, got none")
    if show is None:
        show = next((i for i, r in enumerate(rows) if r.noise_multiplier > 0), 0)
    one = rows[require_int("show", show, minimum=0, maximum=len(rows) - 1)]
    fig, left, right = _two_panels()
    both = np.r_[one.scores_without, one.scores_with]
    bins = np.linspace(both.min(), both.max(), 50)
    left.hist(one.scores_without, bins=bins, alpha=0.6, label="trained without the canary")
    left.hist(one.scores_with, bins=bins, alpha=0.6, label="trained with the canary")
    left.axvline(one.threshold, label="threshold (chosen on the other half)", **TARGET_STYLE)
    left.set(xlabel="attacker's score", ylabel="trainings")
    _finish(left)
    left.legend(fontsize=MIN_FONT_SIZE)
    left.set_title(f"z = {one.noise_multiplier:g}: the distinguishing game", fontsize=11)
    labels = [f"z={r.noise_multiplier:g}" for r in rows]
    values = {"empirical epsilon (lower bound)": [r.epsilon_lower for r in rows],
              "exact epsilon": [r.epsilon_exact for r in rows],
              "accountant epsilon (upper bound)": [r.epsilon_accountant for r in rows]}
    finite = [v for vs in values.values() for v in vs if np.isfinite(v)]
    top = 1.35 * max(finite) if finite else 1.0
    width = 0.8 / len(values)
    for i, (name, vs) in enumerate(values.items()):
        x = np.arange(len(rows)) + (i - 1) * width
        heights = [v if np.isfinite(v) else np.nan for v in vs]
        drawn = right.bar(x, heights, width=width, label=name, color=f"C{i + 2}")
        right.bar_label(drawn, labels=["" if np.isnan(h) else f"{h:.1f}" for h in heights],
                        fontsize=MIN_FONT_SIZE)
        for xi, v in zip(x, vs):
            if not np.isnan(v) and not np.isfinite(v):
                right.text(xi, 0.04 * top, "∞", ha="center", fontsize=11)
    right.set_xticks(np.arange(len(rows)), labels)
    right.set(ylabel=f"epsilon (delta = {rows[0].delta:g})", ylim=(0, top))
    _finish(right)
    right.grid(axis="x", visible=False)
    right.legend(fontsize=MIN_FONT_SIZE, loc="upper right")
    right.set_title("Audit: measured lower bound vs the accountant", fontsize=11)
    return fig


# --- chapter 6 and 7 ---

from matplotlib.ticker import NullLocator  # noqa: E402  (this block's own import)

__all__ += ["epsilon_accuracy", "exposure_curves", "finetune_figure"]


def epsilon_accuracy(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], *,
                     references: Mapping[str, float] | None = None,
                     delta: float | None = None, title: str | None = None,
                     ax: Axes | None = None) -> Figure:
    """Test accuracy against the privacy budget epsilon, one line per setting.

    ``series`` maps a label to ``(epsilons, accuracies)``; ``references`` maps the same labels
    to the accuracy of the run without DP, drawn as a dashed line of the same colour (with its
    own legend entry). The epsilon axis is logarithmic and runs from large (little privacy,
    left) to small (more private, right); its ticks are the measured epsilons themselves,
    written out (``0.59``, ``1.5``, ``21``), so no tick label is a power of ten in small print.
    """
    if not series:
        raise ValueError("`series` must hold at least one (epsilons, accuracies) pair, got none")
    fig, ax = _axes(ax, (6.5, 3.6))
    ticks = set()
    for i, (label, (eps, acc)) in enumerate(series.items()):
        eps, acc = np.asarray(eps, dtype=float), np.asarray(acc, dtype=float)
        if eps.shape != acc.shape or eps.ndim != 1 or not np.all(eps > 0):
            raise ValueError(f"`series[{label!r}]` must be two equal-length sequences with "
                             f"epsilon > 0, got shapes {eps.shape} and {acc.shape}")
        colour = f"C{i}"
        ax.plot(eps, acc, "o-", color=colour, linewidth=1.6, label=label)
        ticks.update(float(e) for e in eps)
        if references and label in references:
            ax.axhline(references[label], color=colour, linestyle="--", linewidth=1.1,
                       label=f"{label}, no DP")
    ax.set_xscale("log")
    ordered = sorted(ticks)
    ax.set_xticks(ordered, [f"{e:.2g}" for e in ordered])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(max(ordered) * 1.4, min(ordered) / 1.4)  # inverted: more private to the right
    suffix = f" (δ = {delta:g})" if delta is not None else ""
    ax.set(xlabel=f"ε{suffix}, log scale; more private →", ylabel="test accuracy",
           ylim=(0, 1.02))
    _finish(ax)
    ax.legend(loc="lower left", fontsize=MIN_FONT_SIZE)
    if title:
        ax.set_title(title, fontsize=11)
    return fig


def exposure_curves(repeats: Sequence[int], series: Mapping[str, Sequence[float]], *,
                    max_exposure: float, title: str | None = None,
                    ax: Axes | None = None) -> Figure:
    """A canary's exposure (bits) against how often it was inserted, one line per setting,
    with the ceiling ``max_exposure`` (= log2 of the candidate space: extracted in one guess)
    as a dashed, labelled line. The x axis is symmetric-log so that ``k = 0`` is shown."""
    if not series:
        raise ValueError("`series` must hold at least one line, got none")
    fig, ax = _axes(ax, (6, 3.6))
    for (label, values), marker in zip(series.items(), "osd^v"):
        if len(values) != len(repeats):
            raise ValueError(f"`series[{label!r}]` must have one value per repeat "
                             f"({len(repeats)}), got {len(values)}")
        ax.plot(list(repeats), list(values), marker=marker, linewidth=1.6, label=label)
    ax.axhline(max_exposure, color="0.45", linestyle="--", linewidth=1.1,
               label=f"fully extractable ({max_exposure:.2f} bits)")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(min(repeats) - 0.3, max(repeats) * 1.4 + 0.3)  # room round the first and last k
    ax.set_xticks(list(repeats), [str(k) for k in repeats])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set(xlabel="canary repeats k", ylabel="exposure (bits)", ylim=(0, max_exposure * 1.3))
    _finish(ax)
    ax.legend(loc="upper left", fontsize=MIN_FONT_SIZE)
    if title:
        ax.set_title(title, fontsize=11)
    return fig


def finetune_figure(histories: Mapping[str, object]) -> Figure:
    """Two panels for federated fine-tuning runs (``label -> FineTuneHistory``): test
    perplexity per round (one labelled line per run), and the encrypted kB each run sends up
    per round (one bar per run, its value written on it)."""
    if not histories:
        raise ValueError("`histories` must hold at least one run, got none")
    with style():
        fig = _new_figure((9, 3.4))
        left, right = fig.subplots(1, 2)
    curves({label: (list(range(len(h.perplexity))), list(h.perplexity))
            for label, h in histories.items()},
           xlabel="round", ylabel="test perplexity", title="quality on the clients' styles",
           ax=left)
    for line in left.lines:
        line.set_marker("o")
    left.legend(fontsize=MIN_FONT_SIZE)
    bars({label: h.upload_ciphertext_bytes[0] / 1e3 for label, h in histories.items()},
         ylabel="kB sent up per round (encrypted)", title="communication per round",
         value_format="{:.0f}", colors=[f"C{i}" for i in range(len(histories))], ax=right)
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
