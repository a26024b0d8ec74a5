"""Interactive labs for the notebooks (ipywidgets): change a setting, see federated training redraw.

:func:`fedavg_lab` returns a :class:`FedAvgLab`: sliders and toggles for the number of clients
(nodes: a log-scale slider beside a box to type the exact number), rounds, the split (IID,
Dirichlet label skew with a log-scale ``alpha``, or McMahan's shards), local epochs, batch size
and the fraction of clients per round; the privacy controls (DP noise multiplier ``z`` with
clipping norm ``S``, secure aggregation and its graph, the fraction of clients dropping out per
round); a progress bar; a status line (accuracy, and ``epsilon`` under DP); and one figure with
the test accuracy per round next to the centralised baseline, and the clients' label counts.
Display the lab as the last line of a cell.

How it stays fast: the simulation is the batched engine of
:func:`~course_lib.fl.simulation.run_fedavg` (100 clients x 50 rounds in well under a second on a
laptop), sliders only report when released (``continuous_update=False``), changes that arrive
within ``debounce`` seconds of each other are merged into one run, the centralised baseline is
computed once per seed (longer runs extend it) and the figure is one matplotlib ``Figure``
redrawn in place into an ``ipywidgets.Image`` (works in JupyterLab, Notebook and Voila). While
a long run trains, the progress bar moves and the figure is refreshed about twice a second.

Privacy costs time too. DP adds little (the first run imports Opacus, about 1.5 s; each new
``(z, q)`` costs the accountant about 0.1 s). Secure aggregation runs the real protocol, key
agreements and all, so it is much slower than the training it protects (about 0.5 s per
round for 100 clients on the sparse graph, 1.5-2 s on the complete one): the status line says
how much of the run it took, and the lab refuses runs it estimates above
``MAX_SECAGG_SECONDS``, suggesting fewer clients per round or the sparse graph.

Languages: ``lang="en"``, ``"zh"`` (every label, button, status line and refusal, and the
figure's title, axes and legend, in Chinese with the terms of :mod:`course_lib.glossary`) or
``"auto"`` (the default), which picks, in this order: the ``COURSE_LANG`` environment variable
(``en`` or ``zh``; ``make dashboard DASHBOARD_LANG=zh`` sets it); the edition of the notebook the
kernel runs (``metadata.edition.lang`` of the file JupyterLab names in ``JPY_SESSION_NAME``); a
working folder named ``zh`` (Voila starts its kernel in the notebook's folder, and the Chinese
edition lives in ``notebooks/zh/``); else English. So the Chinese notebooks, whose code cells
are the English ones, show a Chinese lab. The figure needs a CJK font
(:func:`course_lib.plots.cjk_font`); without one its labels stay in English, with a
:class:`~course_lib.plots.CJKFontWarning`, while the controls (drawn by the browser) stay in
Chinese. Messages raised by the library itself (a configuration it refuses) stay in English.

Widgets need a live kernel: on GitHub or nbviewer only a note appears, so a notebook that
shows a lab also shows ``course_lib.plots.run_figure(lab.history, baseline=lab.baseline)``.

Examples
--------
>>> from course_lib.widgets import fedavg_lab
>>> lab = fedavg_lab(num_clients=10, rounds=5)   # builds and runs once; no display needed
>>> lab.update(num_clients=20)                    # what moving the slider does
History(fedavg, 20 clients, 5 rounds, final accuracy 0.8...)
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import ipywidgets as W
from matplotlib.figure import Figure

from course_lib import plots
from course_lib._validation import require_choice
from course_lib.dp import DPConfig
from course_lib.errors import CourseLibError
from course_lib.fl.config import FedAvgConfig
from course_lib.fl.data import Dataset, load_digits
from course_lib.fl.simulation import History, run_centralised, run_fedavg
from course_lib.secagg import GRAPHS, sparse_degree

__all__ = ["FedAvgLab", "fedavg_lab", "resolve_lang"]

MAX_NODES = 1_000
MAX_ROUNDS = 200
MAX_EPOCHS = 10
BATCH_SIZES = (("10", 10), ("32", 32), ("64", 64), ("all (one step)", None))
PARTITIONS = (("IID", "iid"), ("Dirichlet", "dirichlet"), ("Shards", "shards"))
LANGS = ("en", "zh", "auto")
LANG_ENV = "COURSE_LANG"  # "en" or "zh": the language of lang="auto" (see the module's docstring)
REFRESH_SECONDS = 0.5  # redraw during a run at most this often
MAX_NOISE = 8.0
MAX_DROPOUT = 0.5
DEFAULT_MAX_NORM = 0.1  # clip S: ~0.84 test accuracy clipped alone (100 clients, C=0.2, 50 rounds)
MAX_SECAGG_SECONDS = 60.0  # refuse secure-aggregation runs estimated to take longer
MAX_RUN_SECONDS = 60.0  # refuse any run estimated to take longer
SAY_SECONDS = 1.0  # runs estimated longer than this say so before they start
# Measured on a 2-core VM (batched engine): a round costs about 20 ms (evaluation and
# bookkeeping) + 30 us per client, local epoch and mini-batch + 0.21 ms per client under DP.
# Each run's measured time then rescales these for the machine at hand.
_ROUND_SECONDS, _STEP_SECONDS, _DP_SECONDS_PER_CLIENT = 0.02, 3e-5, 2.1e-4
# Measured on a 2-core VM: one secure-aggregation round costs about (0.5 ms + 0.17 ms x degree)
# per client (X25519 agreements, AES-CTR masks, Shamir shares and their reconstruction).
_SECAGG_SECONDS_PER_CLIENT, _SECAGG_SECONDS_PER_PAIR = 5e-4, 1.7e-4

# Every word the lab shows, per language (Chinese terms: course_lib.glossary; the Chinese
# dashboard, notebooks/zh/dashboard.ipynb, names the controls with these words).
TEXT = {
    "en": {
        "split": "split", "partitions": PARTITIONS, "alpha": "Dirichlet alpha",
        "nodes": "nodes (clients)", "rounds": "rounds", "epochs": "local epochs E",
        "fraction": "fraction per round C", "batch": "batch B", "batches": BATCH_SIZES,
        "seed": "seed", "noise": "DP noise z (0 = off)", "clip": "clip norm S",
        "secagg": "secure aggregation", "graphs": GRAPHS,
        "graph_tips": ["every pair of clients masks", "O(log n) neighbours each (SecAgg+)"],
        "dropout": "dropout per round",
        "box_tip": "type a value from 1 to {:,} and press Enter",
        "slider_tip": "drag (log scale), or type a value in the box",
        "hint": "&larr; drag, or type a value and press Enter",
        "round": "round {}", "running": "running&hellip;",
        "estimate": " about {:.0f} s ({:,} clients per round x {} rounds)",
        "cannot": "Cannot run: {}",
        "secagg_refused": "secure aggregation would take about {:.0f} s ({} clients per round x "
                          "{} rounds, ~{:.1f} s per round); lower the nodes, the rounds or the "
                          "fraction C{}",
        "or_sparse": ", or choose the sparse graph",
        "run_refused": "this run would take about {:.0f} s ({:,} clients per round x {} rounds "
                       "x {} local epochs{}); lower the nodes, the rounds, the local epochs or "
                       "the fraction C",
        "with_dp": ", with DP",
        "final": "final test accuracy <b>{:.1%}</b> (centralised {:.1%})",
        "reached": "{:.0%} reached in round {}", "not_reached": "{:.0%} not reached yet",
        "sent": "{:.1f} MB sent", "seconds": "{:.2f} s",
        "dp": "DP: <b>&epsilon; = {:.3g}</b> (&delta; = {:g})",
        "secagg_time": "secure aggregation: {:.2f} s of the {:.2f} s spent in rounds",
        "secagg_ratio": ", <b>{:.0f}x the time of the training itself</b>",
        "lost": "{:,} updates lost to dropouts",
        "offline": "(interactive: run the notebook in JupyterLab or Voila to move the sliders)",
    },
    "zh": {
        "split": "数据划分",
        "partitions": (("IID", "iid"), ("Dirichlet", "dirichlet"), ("分片", "shards")),
        "alpha": "Dirichlet α", "nodes": "节点数（客户端数）", "rounds": "通信轮次",
        "epochs": "本地训练 epoch 数 E", "fraction": "参与比例 C", "batch": "批大小 B",
        "batches": (("10", 10), ("32", 32), ("64", 64), ("全部（一步）", None)),
        "seed": "随机种子", "noise": "差分隐私噪声 z（0 = 关闭）", "clip": "裁剪范数 S",
        "secagg": "安全聚合", "graphs": (("完全图", "complete"), ("稀疏图", "sparse")),
        "graph_tips": ["每一对客户端之间都加成对掩码",
                       "每个客户端只与 O(log n) 个邻居加掩码（SecAgg+）"],
        "dropout": "每轮掉线比例",
        "box_tip": "输入 1 到 {:,} 之间的数值，然后按回车",
        "slider_tip": "拖动滑块（对数刻度），或在输入框中输入数值",
        "hint": "&larr; 拖动滑块，或输入数值后按回车",
        "round": "第 {} 轮", "running": "运行中……",
        "estimate": "预计约 {:.0f} 秒（每轮 {:,} 个客户端 × {} 轮）",
        "cannot": "无法运行：{}",
        "secagg_refused": "安全聚合预计需要约 {:.0f} 秒（每轮 {} 个客户端 × {} 轮，每轮约 "
                          "{:.1f} 秒）；调小节点数、通信轮次或参与比例 C{}",
        "or_sparse": "，或改用稀疏图",
        "run_refused": "这次运行预计需要约 {:.0f} 秒（每轮 {:,} 个客户端 × {} 轮 × {} 个本地训练 "
                       "epoch{}）；调小节点数、通信轮次、本地训练 epoch 数或参与比例 C",
        "with_dp": "，并启用差分隐私",
        "final": "最终测试准确率 <b>{:.1%}</b>（集中式训练 {:.1%}）",
        "reached": "第 {1} 轮达到 {0:.0%}", "not_reached": "尚未达到 {:.0%}",
        "sent": "传输 {:.1f} MB", "seconds": "用时 {:.2f} 秒",
        "dp": "差分隐私：<b>&epsilon; = {:.3g}</b>（&delta; = {:g}）",
        "secagg_time": "安全聚合：各轮共用时 {1:.2f} 秒，其中安全聚合占 {0:.2f} 秒",
        "secagg_ratio": "，<b>是训练本身用时的 {:.0f} 倍</b>",
        "lost": "{:,} 个更新因掉线而丢失",
        "offline": "（交互式：在 JupyterLab 或 Voila 中运行本笔记本，才能拖动滑块）",
    },
}


def resolve_lang(lang: str = "auto") -> str:
    """``"en"`` or ``"zh"``: ``lang`` itself, or what ``"auto"`` finds (the module's docstring).

    Examples
    --------
    >>> resolve_lang("zh")
    'zh'
    """
    require_choice("lang", lang, LANGS)
    if lang != "auto":
        return lang
    chosen = os.environ.get(LANG_ENV, "").strip().lower()
    if chosen:
        if chosen not in ("en", "zh"):
            raise ValueError(f"the environment variable `{LANG_ENV}` must be 'en' or 'zh', "
                             f"got {chosen!r}")
        return chosen
    session = os.environ.get("JPY_SESSION_NAME", "")
    if session.endswith(".ipynb"):
        notebook = Path(session)
        if not notebook.is_absolute():  # a path relative to the server's root
            notebook = Path.cwd() / notebook.name
        try:
            with notebook.open(encoding="utf-8") as handle:
                edition = json.load(handle).get("metadata", {}).get("edition", {})
            return "zh" if str(edition.get("lang", "")).startswith("zh") else "en"
        except (OSError, ValueError, AttributeError):
            pass  # unreadable: decide by the folder
    return "zh" if Path.cwd().name == "zh" else "en"


class FedAvgLab:
    """A FedAvg lab: controls, a progress bar, a status line and a figure redrawn in place.

    Build it with :func:`fedavg_lab`. Attributes for scripts and tests:

    Attributes
    ----------
    widget : ipywidgets.VBox
        The whole user interface (what a notebook displays).
    controls : dict of str to ipywidgets.Widget
        ``num_clients`` (the box beside :attr:`nodes_slider`), ``rounds``, ``partition``,
        ``alpha``, ``local_epochs``, ``batch_size``, ``fraction``, ``seed``,
        ``noise_multiplier`` (0 = no DP), ``max_norm``, ``secure_aggregation``,
        ``secagg_graph``, ``dropout``; their ``value`` is what the next run uses
        (:meth:`config` turns them into a ``FedAvgConfig``).
    nodes_slider : ipywidgets.FloatLogSlider
        Moves the nodes box on a log scale; typing in the box moves it back.
    progress : ipywidgets.IntProgress
    status : ipywidgets.HTML
        "running…" (with an estimate of the time when above ``SAY_SECONDS``) as soon as a
        run starts, then its summary, or why it could not run (e.g. a run estimated above
        ``MAX_RUN_SECONDS``, with what to lower).
    image : ipywidgets.Image
        The figure as PNG bytes, with the figure's title in the PNG's ``Title`` text chunk.
    figure : matplotlib.figure.Figure
        The figure itself (its axes hold the plotted data).
    history, baseline : History or None
        The last FedAvg run and the centralised baseline drawn with it.
    timings : dict of str to float
        Seconds spent in the last run: ``"train"``, ``"baseline"``, ``"draw"``, ``"total"``
        (wall time; ``"train"`` includes the redraws during a long run), ``"train_cpu"``
        (CPU seconds of the same) and ``"secagg"`` (CPU seconds of the secure-aggregation
        protocol, clients and server, from the reports).
    delta : float
        The ``delta`` of the ``(epsilon, delta)`` shown under DP.
    lang : {"en", "zh"}
        The language of the controls and status line (``"auto"`` resolved).
    plot_lang : {"en", "zh"}
        The language of the figure: ``lang``, or ``"en"`` without a CJK font.
    """

    def __init__(self, *, num_clients: int = 10, rounds: int = 30, partition: str = "dirichlet",
                 alpha: float = 0.1, local_epochs: int = 1, batch_size: int | None = 32,
                 fraction: float = 1.0, seed: int = 0, noise_multiplier: float = 0.0,
                 max_norm: float = DEFAULT_MAX_NORM, delta: float = 1e-5,
                 secure_aggregation: bool = False, secagg_graph: str = "complete",
                 dropout: float = 0.0, target: float = 0.9, debounce: float = 0.3,
                 max_clients_shown: int = 50, data: Dataset | None = None,
                 lang: str = "auto") -> None:
        self.lang = resolve_lang(lang)
        self.plot_lang = plots.figure_lang(self.lang)  # warns once if no font draws Chinese
        words = self._words = TEXT[self.lang]
        self.target, self.debounce, self.data, self.delta = target, debounce, data, delta
        self.max_clients_shown = max_clients_shown
        self.history: History | None = None
        self.baseline: History | None = None
        self.timings: dict[str, float] = {}
        self._baselines: dict[int, History] = {}  # seed -> longest centralised run so far
        self._pending: asyncio.TimerHandle | None = None
        self._speed = 1.0  # this machine's time / the model's, learnt from each run
        self._train_size = int((data or load_digits(seed=0)).y_train.shape[0])
        self._holding = False
        self.runs = 0
        slider = dict(continuous_update=False, style={"description_width": "initial"},
                      layout=W.Layout(width="340px"))
        self.controls: dict[str, W.ValueWidget] = {
            "partition": W.ToggleButtons(options=words["partitions"], value=partition,
                                         description=words["split"],
                                         style={"button_width": "80px"}),
            "alpha": W.FloatLogSlider(value=alpha, base=10, min=-2, max=2, step=0.1,
                                      readout_format=".2g", description=words["alpha"],
                                      **slider),
            "num_clients": W.BoundedIntText(
                value=num_clients, min=1, max=MAX_NODES, layout=W.Layout(width="80px"),
                tooltip=words["box_tip"].format(MAX_NODES)),
            "rounds": W.IntSlider(value=rounds, min=1, max=MAX_ROUNDS,
                                  description=words["rounds"], **slider),
            "local_epochs": W.IntSlider(value=local_epochs, min=1, max=MAX_EPOCHS,
                                        description=words["epochs"], **slider),
            "fraction": W.FloatSlider(value=fraction, min=0.01, max=1.0, step=0.01,
                                      description=words["fraction"], **slider),
            "batch_size": W.Dropdown(options=words["batches"], value=batch_size,
                                     description=words["batch"],
                                     layout=W.Layout(width="200px")),
            "seed": W.BoundedIntText(value=seed, min=0, max=10_000, description=words["seed"],
                                     layout=W.Layout(width="140px")),
            "noise_multiplier": W.FloatSlider(value=noise_multiplier, min=0.0, max=MAX_NOISE,
                                              step=0.1, description=words["noise"], **slider),
            "max_norm": W.FloatLogSlider(value=max_norm, base=10, min=-3, max=1, step=0.1,
                                         readout_format=".2g", description=words["clip"],
                                         **slider),
            "secure_aggregation": W.Checkbox(value=secure_aggregation,
                                             description=words["secagg"], indent=False,
                                             layout=W.Layout(width="160px")),
            "secagg_graph": W.ToggleButtons(options=words["graphs"], value=secagg_graph,
                                            tooltips=words["graph_tips"],
                                            style={"button_width": "96px"}),
            "dropout": W.FloatSlider(value=dropout, min=0.0, max=MAX_DROPOUT, step=0.01,
                                     description=words["dropout"], **slider),
        }
        # The slider is log-scaled (1, 10, 100, 1000 evenly spaced) and only moves the box:
        # the box holds the value, so typing and dragging run the same way.
        self.nodes_slider = W.FloatLogSlider(
            value=num_clients, base=10, min=0, max=math.log10(MAX_NODES), step=0.01,
            readout=False, description=words["nodes"], continuous_update=False,
            tooltip=words["slider_tip"], style=slider["style"],
            layout=W.Layout(width="260px"))
        self.nodes_slider.observe(self._on_nodes_slider, names="value")
        self.progress = W.IntProgress(value=0, min=0, max=rounds,
                                      description=words["round"].format(0),
                                      layout=W.Layout(width="340px"))
        self.status = W.HTML()
        self.image = W.Image(format="png", layout=W.Layout(width="100%", max_width="1000px"))
        self.figure = Figure(figsize=(10, 3.4), dpi=plots.DPI)  # not pyplot's: no stray copies
        c = self.controls
        self.widget = W.VBox([
            W.HBox([c["partition"], c["alpha"]]),
            W.HBox([self.nodes_slider, c["num_clients"],
                    W.HTML(f"<small>{words['hint']}</small>")]),
            W.HBox([c["rounds"], c["local_epochs"]]),
            W.HBox([c["fraction"], c["batch_size"], c["seed"]]),
            W.HBox([c["noise_multiplier"], c["max_norm"]]),
            W.HBox([c["secure_aggregation"], c["secagg_graph"], c["dropout"]]),
            W.HBox([self.progress, self.status]),
            self.image,
        ])
        self._sync_enabled()
        for control in c.values():
            control.observe(self._on_change, names="value")
        self.run()

    # -- what the controls say -------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`run_fedavg` that the controls describe now."""
        values = {name: control.value for name, control in self.controls.items()}
        if values["partition"] != "dirichlet":
            values["alpha"] = None
        z, max_norm = values.pop("noise_multiplier"), values.pop("max_norm")
        values["dp"] = DPConfig(noise_multiplier=z, max_norm=max_norm, delta=self.delta) \
            if z > 0 else None
        return values

    def config(self) -> FedAvgConfig:
        """The run the controls describe now, checked by :class:`FedAvgConfig` itself."""
        return FedAvgConfig(**self.options())

    def estimate_seconds(self, config: FedAvgConfig) -> float:
        """About how long ``config`` will train here (the model above, scaled to this machine)."""
        m = config.clients_per_round
        batch = config.batch_size or self._train_size
        batches = math.ceil(self._train_size / config.num_clients / batch)
        per_round = _ROUND_SECONDS + _STEP_SECONDS * m * config.local_epochs * max(batches, 1)
        if config.dp is not None:
            per_round += _DP_SECONDS_PER_CLIENT * m
        return self._speed * config.rounds * per_round + self._secagg_seconds(config)

    def _on_nodes_slider(self, change: dict) -> None:
        nodes = int(round(change["new"]))
        if nodes != self.controls["num_clients"].value:
            self.controls["num_clients"].value = nodes  # runs, as typing does

    def _sync_enabled(self) -> None:
        c = self.controls
        nodes = c["num_clients"].value
        if int(round(self.nodes_slider.value)) != nodes:
            self.nodes_slider.value = nodes  # a typed value moves the slider (no second run)
        c["alpha"].disabled = c["partition"].value != "dirichlet"
        c["max_norm"].disabled = c["noise_multiplier"].value == 0
        c["secagg_graph"].disabled = not c["secure_aggregation"].value

    def _on_change(self, change: dict) -> None:
        self._sync_enabled()
        if self._holding:
            return
        try:
            loop = asyncio.get_running_loop()  # in a kernel: merge changes close in time
        except RuntimeError:
            loop = None
        if loop is None or self.debounce <= 0:
            self.run()
            return
        if self._pending is not None:
            self._pending.cancel()
        self._pending = loop.call_later(self.debounce, self._run_scheduled)

    # -- running ------------------------------------------------------------------------------
    def baseline_for(self, *, seed: int, rounds: int) -> History:
        """The centralised baseline (one epoch per round), cached per seed.

        A run of ``R`` epochs is a prefix of any longer run with the same seed, so the cache
        keeps the longest run per seed and grows it (at least doubling) when more is needed.
        """
        cached = self._baselines.get(seed)
        if cached is None or len(cached.test_accuracy) < rounds:
            epochs = rounds if cached is None else min(MAX_ROUNDS, max(rounds, 2 * len(
                cached.test_accuracy)))
            cached = run_centralised(epochs=epochs, seed=seed, data=self.data)
            self._baselines[seed] = cached
        return cached

    def _run_scheduled(self) -> None:
        """A debounced run: called by the event loop, so an error must land in ``status``."""
        try:
            self.run()
        except Exception as err:  # raised here it would be lost in the kernel's log
            self._fail(err)

    def update(self, **values: Any) -> History | None:
        """Set several controls at once (as a learner would) and run once; return the history."""
        unknown = set(values) - set(self.controls)
        if unknown:
            raise ValueError(f"unknown control(s) {sorted(unknown)}; "
                             f"known: {sorted(self.controls)}")
        self._holding = True
        try:
            for name, value in values.items():
                self.controls[name].value = value
        finally:
            self._holding = False
        return self.run()

    def run(self) -> History | None:
        """Train with the current settings and redraw; on bad settings explain in ``status``."""
        self._pending = None
        start = time.perf_counter()
        try:
            config = self.config()
            self._check_cost(config)
        except (ValueError, TypeError) as err:
            return self._fail(err)
        self.progress.max, self.progress.value = config.rounds, 0
        words = self._words
        self.progress.bar_style, self.progress.description = "", words["round"].format(0)
        expected = self.estimate_seconds(config)
        self.status.value = "<i>" + words["running"] + (
            words["estimate"].format(expected, config.clients_per_round, config.rounds)
            if expected > SAY_SECONDS else "") + "</i>"
        t0 = time.perf_counter()
        try:
            baseline = self.baseline_for(seed=config.seed, rounds=config.rounds)
        except ValueError as err:
            return self._fail(err)
        t1 = time.perf_counter()
        last_draw = [t1, 0.0]  # when, and how long it took

        def on_round(history: History) -> None:
            done = len(history.test_accuracy)
            self.progress.value, self.progress.description = done, words["round"].format(done)
            # at most every REFRESH_SECONDS, and drawing at most a fifth of the time
            wait = max(REFRESH_SECONDS, 4 * last_draw[1])
            if time.perf_counter() - last_draw[0] > wait and done < config.rounds:
                drawn = time.perf_counter()
                self._draw(history, baseline)
                last_draw[:] = time.perf_counter(), time.perf_counter() - drawn

        cpu = time.process_time()
        try:
            history = run_fedavg(config, data=self.data, on_round=on_round)
        except (ValueError, CourseLibError) as err:  # e.g. too many dropouts for secure agg.
            return self._fail(err)
        t2, cpu = time.perf_counter(), time.process_time() - cpu
        model = self.estimate_seconds(config) / self._speed
        if t2 - t1 > 0.5 and model > 0:  # learn this machine's speed from real runs only
            self._speed = 0.5 * self._speed + 0.5 * (t2 - t1) / model
        self.history, self.baseline = history, baseline
        self._draw(history, baseline)
        self.progress.bar_style = "success"
        self.runs += 1
        t3 = time.perf_counter()
        secagg = sum(float(r.client_seconds.sum()) + r.server_seconds
                     for r in history.secagg if r is not None)
        self.timings = {"baseline": t1 - t0, "train": t2 - t1, "draw": t3 - t2,
                        "total": t3 - start, "train_cpu": cpu, "secagg": secagg}
        self.status.value = self._summary(history, baseline)
        return history

    def _secagg_seconds(self, config: FedAvgConfig) -> float:
        """The secure-aggregation protocol's estimated time (0 without it)."""
        m = config.clients_per_round
        if not config.secure_aggregation or m < 2:
            return 0.0
        degree = m - 1 if config.secagg_graph == "complete" else sparse_degree(m)
        return config.rounds * m * (_SECAGG_SECONDS_PER_CLIENT + _SECAGG_SECONDS_PER_PAIR
                                    * degree)

    def _check_cost(self, config: FedAvgConfig) -> None:
        """Refuse runs estimated above ``MAX_SECAGG_SECONDS`` of secure aggregation or
        ``MAX_RUN_SECONDS`` in all, saying what to lower."""
        m, rounds = config.clients_per_round, config.rounds
        secagg = self._secagg_seconds(config)
        words = self._words
        if secagg > MAX_SECAGG_SECONDS:
            sparse = config.secagg_graph == "complete" and m - 1 > sparse_degree(m)
            raise ValueError(words["secagg_refused"].format(
                secagg, m, rounds, secagg / rounds, words["or_sparse"] if sparse else ""))
        total = self.estimate_seconds(config)
        if total > MAX_RUN_SECONDS:
            raise ValueError(words["run_refused"].format(
                total, m, rounds, config.local_epochs, words["with_dp"] if config.dp else ""))

    def _fail(self, err: Exception) -> None:
        self.progress.bar_style = "danger"
        text = self._words["cannot"].format(err)
        self.status.value = f"<span style='color:#b00'>{text}</span>"
        return None

    def _draw(self, history: History, baseline: History) -> None:
        plots.run_figure(history, baseline=baseline, target=self.target,
                         max_clients=self.max_clients_shown, fig=self.figure,
                         lang=self.plot_lang)
        buffer = io.BytesIO()
        # the PNG carries the figure's title (a text chunk): for scripts, tests and archives
        title = self.figure.axes[0].get_title().replace("\n", " \u00b7 ")
        self.figure.savefig(buffer, format="png", metadata={"Title": title})
        self.image.value = buffer.getvalue()

    def _summary(self, history: History, baseline: History) -> str:
        reached = history.rounds_to_reach(self.target)
        rounds = len(history.test_accuracy)
        central = baseline.test_accuracy[rounds - 1]
        mb = sum(history.bytes_transferred) / 1e6
        words, dot = self._words, " &middot; "
        goal = words["reached"].format(self.target, reached) if reached else \
            words["not_reached"].format(self.target)
        parts = [words["final"].format(history.final_accuracy, central), goal,
                 words["sent"].format(mb), words["seconds"].format(self.timings["total"])]
        if history.final_epsilon is not None:
            parts.append(words["dp"].format(history.final_epsilon, self.delta))
        if history.secagg:  # wall times, both: a busy machine slows them alike
            secagg, rounds = sum(history.secagg_seconds), sum(history.round_seconds)
            parts.append(words["secagg_time"].format(secagg, rounds))
            if secagg > 0.5 * rounds:
                parts[-1] += words["secagg_ratio"].format(secagg / max(rounds - secagg, 1e-3))
        if any(len(d) for d in history.dropped):
            parts.append(words["lost"].format(sum(map(len, history.dropped))))
        return dot.join(parts)

    # -- display ------------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = f"{self!r}\n{self._words['offline']}"
        return bundle

    def __repr__(self) -> str:
        o = self.options()
        split = o["partition"] + (f" alpha={o['alpha']:g}" if o["alpha"] is not None else "")
        extra = "" if o["dp"] is None else \
            f", DP z={o['dp'].noise_multiplier:g} S={o['dp'].max_norm:g}"
        if o["secure_aggregation"]:
            extra += f", secure aggregation ({o['secagg_graph']})"
        if o["dropout"]:
            extra += f", dropout={o['dropout']:g}"
        return (f"FedAvgLab({o['num_clients']} clients, {o['rounds']} rounds, {split}, "
                f"E={o['local_epochs']}, C={o['fraction']:g}{extra})")


def fedavg_lab(*, num_clients: int = 10, rounds: int = 30, partition: str = "dirichlet",
               alpha: float = 0.1, local_epochs: int = 1, batch_size: int | None = 32,
               fraction: float = 1.0, seed: int = 0, noise_multiplier: float = 0.0,
               max_norm: float = DEFAULT_MAX_NORM, delta: float = 1e-5,
               secure_aggregation: bool = False, secagg_graph: str = "complete",
               dropout: float = 0.0, target: float = 0.9, debounce: float = 0.3,
               data: Dataset | None = None, lang: str = "auto") -> FedAvgLab:
    """Build the FedAvg lab, run it once with these starting values, and return it.

    Parameters
    ----------
    num_clients : int
        Nodes, 1 to 1,000: a log-scale slider, and a box to type the exact number.
    rounds : int
        1 to 200 on the slider.
    partition : {"iid", "dirichlet", "shards"}
    alpha : float
        Dirichlet concentration, 0.01 to 100 on a log-scale slider (used when
        ``partition="dirichlet"``).
    local_epochs : int
        ``E``, 1 to 10.
    batch_size : {10, 32, 64, None}
        ``B``; ``None`` is one full-batch step per local epoch.
    fraction : float
        ``C``, 0.01 to 1.
    seed : int
    noise_multiplier : float
        DP noise ``z``, 0 to 8; 0 turns DP off (no clipping either).
    max_norm : float
        Clipping norm ``S`` under DP, 0.001 to 10 on a log-scale slider. The default 0.1 suits
        the digits MLP at ``lr=0.3``: clipping alone then costs about 10 points of accuracy.
    delta : float
        The ``delta`` for which ``epsilon`` is reported.
    secure_aggregation : bool
    secagg_graph : {"complete", "sparse"}
    dropout : float
        Fraction of each round's clients that drop out after training, 0 to 0.5.
    target : float
        Accuracy marked on the plot and in the summary.
    debounce : float
        Seconds to wait for further changes before running (0: run on every change).
    data : Dataset or None
        Defaults to the digits.
    lang : {"auto", "en", "zh"}
        The language of the lab: ``"zh"`` for Chinese labels, status line and figure; ``"auto"``
        follows ``COURSE_LANG``, the notebook's edition or its folder (the module's docstring).

    Examples
    --------
    >>> lab = fedavg_lab(num_clients=5, rounds=2, lang="zh")
    >>> lab.nodes_slider.description
    '节点数（客户端数）'
    """
    return FedAvgLab(num_clients=num_clients, rounds=rounds, partition=partition, alpha=alpha,
                     local_epochs=local_epochs, batch_size=batch_size, fraction=fraction,
                     seed=seed, noise_multiplier=noise_multiplier, max_norm=max_norm,
                     delta=delta, secure_aggregation=secure_aggregation,
                     secagg_graph=secagg_graph, dropout=dropout, target=target,
                     debounce=debounce, data=data, lang=lang)
