"""Interactive labs for the notebooks (ipywidgets): change a setting, see federated training redraw.

:func:`fedavg_lab` returns a :class:`FedAvgLab`: sliders and toggles for the number of
clients (nodes), rounds, the split (IID, Dirichlet label skew with a log-scale ``alpha``, or
McMahan's shards), local epochs, batch size and the fraction of clients per round; a progress
bar; and one figure with the test accuracy per round next to the centralised baseline, and the
clients' label counts. Display the lab as the last line of a cell.

How it stays fast: the simulation is the batched engine of
:func:`~course_lib.fl.simulation.run_fedavg` (100 clients x 50 rounds in well under a second on a
laptop), sliders only report when released (``continuous_update=False``), changes that arrive
within ``debounce`` seconds of each other are merged into one run, the centralised baseline is
computed once per seed (longer runs extend it) and the figure is one matplotlib ``Figure``
redrawn in place into an ``ipywidgets.Image`` (works in JupyterLab, Notebook and Voila). While
a long run trains, the progress bar moves and the figure is refreshed about twice a second.

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
import time
from typing import Any

import ipywidgets as W
from matplotlib.figure import Figure

from course_lib import plots
from course_lib.fl.data import Dataset
from course_lib.fl.simulation import History, run_centralised, run_fedavg

__all__ = ["FedAvgLab", "fedavg_lab"]

MAX_NODES = 1_000
MAX_ROUNDS = 200
MAX_EPOCHS = 10
BATCH_SIZES = (("10", 10), ("32", 32), ("64", 64), ("all (one step)", None))
PARTITIONS = (("IID", "iid"), ("Dirichlet", "dirichlet"), ("Shards", "shards"))
REFRESH_SECONDS = 0.5  # redraw during a run at most this often


class FedAvgLab:
    """A FedAvg lab: controls, a progress bar, a status line and a figure redrawn in place.

    Build it with :func:`fedavg_lab`. Attributes for scripts and tests:

    Attributes
    ----------
    widget : ipywidgets.VBox
        The whole user interface (what a notebook displays).
    controls : dict of str to ipywidgets.Widget
        ``num_clients``, ``rounds``, ``partition``, ``alpha``, ``local_epochs``,
        ``batch_size``, ``fraction``, ``seed``; their ``value`` is what the next run uses.
    progress : ipywidgets.IntProgress
    status : ipywidgets.HTML
        The last run's summary, or why it could not run.
    image : ipywidgets.Image
        The figure as PNG bytes.
    figure : matplotlib.figure.Figure
        The figure itself (its axes hold the plotted data).
    history, baseline : History or None
        The last FedAvg run and the centralised baseline drawn with it.
    timings : dict of str to float
        Seconds spent in the last run: ``"train"``, ``"baseline"``, ``"draw"``, ``"total"``.
    """

    def __init__(self, *, num_clients: int = 10, rounds: int = 30, partition: str = "dirichlet",
                 alpha: float = 0.1, local_epochs: int = 1, batch_size: int | None = 32,
                 fraction: float = 1.0, seed: int = 0, target: float = 0.9,
                 debounce: float = 0.3, max_clients_shown: int = 50,
                 data: Dataset | None = None) -> None:
        self.target, self.debounce, self.data = target, debounce, data
        self.max_clients_shown = max_clients_shown
        self.history: History | None = None
        self.baseline: History | None = None
        self.timings: dict[str, float] = {}
        self._baselines: dict[int, History] = {}  # seed -> longest centralised run so far
        self._pending: asyncio.TimerHandle | None = None
        self._holding = False
        self.runs = 0
        slider = dict(continuous_update=False, style={"description_width": "initial"},
                      layout=W.Layout(width="340px"))
        self.controls: dict[str, W.ValueWidget] = {
            "partition": W.ToggleButtons(options=PARTITIONS, value=partition,
                                         description="split", style={"button_width": "80px"}),
            "alpha": W.FloatLogSlider(value=alpha, base=10, min=-2, max=2, step=0.1,
                                      readout_format=".2g", description="Dirichlet alpha",
                                      **slider),
            "num_clients": W.IntSlider(value=num_clients, min=1, max=MAX_NODES,
                                       description="nodes (clients)", **slider),
            "rounds": W.IntSlider(value=rounds, min=1, max=MAX_ROUNDS, description="rounds",
                                  **slider),
            "local_epochs": W.IntSlider(value=local_epochs, min=1, max=MAX_EPOCHS,
                                        description="local epochs E", **slider),
            "fraction": W.FloatSlider(value=fraction, min=0.01, max=1.0, step=0.01,
                                      description="fraction per round C", **slider),
            "batch_size": W.Dropdown(options=BATCH_SIZES, value=batch_size,
                                     description="batch B", layout=W.Layout(width="200px")),
            "seed": W.BoundedIntText(value=seed, min=0, max=10_000, description="seed",
                                     layout=W.Layout(width="140px")),
        }
        self.progress = W.IntProgress(value=0, min=0, max=rounds, description="round 0",
                                      layout=W.Layout(width="340px"))
        self.status = W.HTML()
        self.image = W.Image(format="png", layout=W.Layout(width="100%", max_width="1000px"))
        self.figure = Figure(figsize=(10, 3.4), dpi=plots.DPI)  # not pyplot's: no stray copies
        c = self.controls
        self.widget = W.VBox([
            W.HBox([c["partition"], c["alpha"]]),
            W.HBox([c["num_clients"], c["rounds"]]),
            W.HBox([c["local_epochs"], c["fraction"]]),
            W.HBox([c["batch_size"], c["seed"]]),
            W.HBox([self.progress, self.status]),
            self.image,
        ])
        self._sync_alpha()
        for control in c.values():
            control.observe(self._on_change, names="value")
        self.run()

    # -- what the controls say -------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`run_fedavg` that the controls describe now."""
        values = {name: control.value for name, control in self.controls.items()}
        if values["partition"] != "dirichlet":
            values["alpha"] = None
        return values

    def _sync_alpha(self) -> None:
        self.controls["alpha"].disabled = self.controls["partition"].value != "dirichlet"

    def _on_change(self, change: dict) -> None:
        self._sync_alpha()
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
        options = self.options()
        self.progress.max, self.progress.value = options["rounds"], 0
        self.progress.bar_style = ""
        t0 = time.perf_counter()
        try:
            baseline = self.baseline_for(seed=options["seed"], rounds=options["rounds"])
        except ValueError as err:
            return self._fail(err)
        t1 = time.perf_counter()
        last_draw = [t1]

        def on_round(history: History) -> None:
            done = len(history.test_accuracy)
            self.progress.value, self.progress.description = done, f"round {done}"
            if time.perf_counter() - last_draw[0] > REFRESH_SECONDS and done < options["rounds"]:
                self._draw(history, baseline)
                last_draw[0] = time.perf_counter()

        try:
            history = run_fedavg(**options, data=self.data, on_round=on_round)
        except ValueError as err:
            return self._fail(err)
        t2 = time.perf_counter()
        self.history, self.baseline = history, baseline
        self._draw(history, baseline)
        self.progress.bar_style = "success"
        self.runs += 1
        t3 = time.perf_counter()
        self.timings = {"baseline": t1 - t0, "train": t2 - t1, "draw": t3 - t2,
                        "total": t3 - start}
        self.status.value = self._summary(history, baseline)
        return history

    def _fail(self, err: Exception) -> None:
        self.progress.bar_style = "danger"
        self.status.value = f"<span style='color:#b00'>Cannot run: {err}</span>"
        return None

    def _draw(self, history: History, baseline: History) -> None:
        plots.run_figure(history, baseline=baseline, target=self.target,
                         max_clients=self.max_clients_shown, fig=self.figure)
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png")
        self.image.value = buffer.getvalue()

    def _summary(self, history: History, baseline: History) -> str:
        reached = history.rounds_to_reach(self.target)
        rounds = len(history.test_accuracy)
        central = baseline.test_accuracy[rounds - 1]
        mb = sum(history.bytes_transferred) / 1e6
        return (f"final test accuracy <b>{history.final_accuracy:.1%}</b> "
                f"(centralised {central:.1%}) &middot; {self.target:.0%} reached "
                f"{'in round ' + str(reached) if reached else 'not yet'} &middot; "
                f"{mb:.1f} MB sent &middot; {self.timings['total']:.2f} s")

    # -- display ------------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = (f"{self!r}\n(interactive: run the notebook in JupyterLab or "
                                f"Voila to move the sliders)")
        return bundle

    def __repr__(self) -> str:
        o = self.options()
        split = o["partition"] + (f" alpha={o['alpha']:g}" if o["alpha"] is not None else "")
        return (f"FedAvgLab({o['num_clients']} clients, {o['rounds']} rounds, {split}, "
                f"E={o['local_epochs']}, C={o['fraction']:g})")


def fedavg_lab(*, num_clients: int = 10, rounds: int = 30, partition: str = "dirichlet",
               alpha: float = 0.1, local_epochs: int = 1, batch_size: int | None = 32,
               fraction: float = 1.0, seed: int = 0, target: float = 0.9,
               debounce: float = 0.3, data: Dataset | None = None) -> FedAvgLab:
    """Build the FedAvg lab, run it once with these starting values, and return it.

    Parameters
    ----------
    num_clients : int
        Nodes, 1 to 1,000 on the slider.
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
    target : float
        Accuracy marked on the plot and in the summary.
    debounce : float
        Seconds to wait for further changes before running (0: run on every change).
    data : Dataset or None
        Defaults to the digits.
    """
    return FedAvgLab(num_clients=num_clients, rounds=rounds, partition=partition, alpha=alpha,
                     local_epochs=local_epochs, batch_size=batch_size, fraction=fraction,
                     seed=seed, target=target, debounce=debounce, data=data)
