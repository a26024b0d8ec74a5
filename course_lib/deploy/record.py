"""What a deployed ServerApp records per round, and how it hands the record back.

Both server apps (plain FedAvg in :mod:`course_lib.deploy.apps`, SecAgg+ in
:mod:`course_lib.deploy.secagg_apps`) evaluate the global model on the server's test set
before round 1 and after every round, as ``run_fedavg`` does, through :class:`RunRecord`.
The record leaves the ServerApp's process as JSON plus the final model as safetensors (no
pickle on the way back), in the field names of ``History.to_dict``;
:func:`course_lib.deploy._app.load_history` reads them with ``History.from_dict``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from course_lib.deploy.protocol import MODEL_FILE, RESULT_FILE
from course_lib.fl.client import evaluate
from course_lib.fl.models import state_nbytes

__all__ = ["RunRecord", "log"]


def log(line: str) -> None:
    """Print one line of the ServerApp's table (its stdout is what ``flwr run --stream``
    shows, between Flower's own ``INFO`` lines)."""
    print(line, flush=True)


class RunRecord:
    """The per-round record of a deployed run (the fields of ``History``).

    Parameters
    ----------
    model : nn.Module
        The global model; :meth:`evaluate` loads each new global state into it.
    data : Dataset
        The server's test set is ``data.X_test, data.y_test``.
    """

    def __init__(self, model: nn.Module, data: Any) -> None:
        self.model, self.data = model, data
        self.start = time.perf_counter()
        self._mark = self.start  # end of the last evaluation: a round's clock starts there
        self.fields: dict[str, Any] = {key: [] for key in (
            "test_accuracy", "test_loss", "participants", "bytes_transferred", "round_seconds",
            "dropped")}
        self.extra: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"RunRecord({len(self.fields['test_accuracy'])} rounds)"

    def begin(self) -> None:
        """Start the clock of round 1 (after the nodes connected)."""
        self._mark = time.perf_counter()

    def evaluate(self, round_number: int, state: Mapping[str, torch.Tensor] | None,
                 participants: Sequence[int]) -> tuple[float, float]:
        """Load ``state`` (``None``: keep the model), evaluate, record round ``round_number``
        (0 is the initial model); return ``(accuracy, loss)``."""
        seconds = time.perf_counter() - self._mark  # training + aggregation of this round
        if state is not None:
            self.model.load_state_dict(dict(state))  # strict: same keys and shapes
        accuracy, loss = evaluate(self.model, self.data.X_test, self.data.y_test)
        if round_number == 0:
            self.extra.update(initial_accuracy=accuracy, initial_loss=loss)
        else:
            f = self.fields
            f["round_seconds"].append(seconds)
            f["test_accuracy"].append(accuracy)
            f["test_loss"].append(loss)
            f["participants"].append([int(k) for k in participants])
            f["dropped"].append([])  # a deployment has no simulated dropouts
            f["bytes_transferred"].append(2 * state_nbytes(self.model) * len(participants))
            log(f"{round_number:>5}  {accuracy:>8.4f}  {loss:>7.4f}  {len(participants):>7}  "
                f"{seconds:>8.2f}")
        self._mark = time.perf_counter()
        return accuracy, loss

    def header(self, text: str) -> None:
        """Log ``text`` and the column names of the round table."""
        log(f"{text}; connected in {time.perf_counter() - self.start:.1f} s")
        log(f"{'round':>5}  {'accuracy':>8}  {'loss':>7}  {'clients':>7}  {'time (s)':>8}")

    def save(self, folder: str) -> None:
        """Write :data:`RESULT_FILE` and :data:`MODEL_FILE` into ``folder`` ('' : nowhere)."""
        from safetensors.torch import save_file

        if self.fields["test_accuracy"]:
            log(f"final test accuracy: {self.fields['test_accuracy'][-1]:.4f}")
        if not folder:
            return
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(path / MODEL_FILE))
        record = {**self.fields, **self.extra,
                  "wall_seconds": time.perf_counter() - self.start}
        (path / RESULT_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")
