"""The Flower App the deployment submits, its log, and the history it leaves behind.

The App is just a ``pyproject.toml``: its components name our apps (:mod:`.apps`, or
:mod:`.secagg_apps` for SecAgg+; installed in this environment, so nothing else travels) and
its run config holds the settings. The ServerApp writes the history as JSON and the final
model as safetensors (no pickle on the way back); :func:`load_history` turns them into a
``History``.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.torch import load_file

from course_lib.deploy import protocol as flower
from course_lib.fl.config import FedAvgConfig
from course_lib.fl.history import History
from course_lib.fl.models import make_mlp

__all__ = ["write_app", "follow_log", "load_history", "tail"]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def write_app(folder: Path, config: dict[str, Any], *, secure_aggregation: bool = False) -> Path:
    """Write the App's ``pyproject.toml`` (run config ``config``) into ``folder``."""
    module = "course_lib.deploy." + ("secagg_apps" if secure_aggregation else "apps")
    folder.mkdir(parents=True, exist_ok=True)
    values = "\n".join(f"{key} = {json.dumps(value)}" for key, value in config.items())
    (folder / "pyproject.toml").write_text(f"""\
[project]
name = "course-fedavg"
version = "1.0.0"
description = "course_lib's FedAvg (digits MLP) as a Flower App"
license = "MIT"
dependencies = []

[tool.flwr.app]
publisher = "course-lib"

[tool.flwr.app.components]
serverapp = "{module}:server_app"
clientapp = "{module}:client_app"

[tool.flwr.app.config]
{values}
""", encoding="utf-8")
    return folder


def follow_log(process: subprocess.Popen, log: Path, *, timeout: float,
               on_line: Callable[[str], None] | None) -> str:
    """Wait for ``process`` while passing each new complete line of ``log`` to ``on_line``."""
    deadline = time.monotonic() + timeout
    seen = 0
    while True:
        done = process.poll() is not None
        text = _ANSI.sub("", log.read_text(encoding="utf-8", errors="replace"))
        lines = text.splitlines()
        complete = len(lines) if done or text.endswith("\n") else len(lines) - 1
        for line in lines[seen:complete]:
            if on_line is not None:
                on_line(line)
        seen = max(seen, complete)
        if done:
            return text
        if time.monotonic() > deadline:
            raise TimeoutError(f"the run took more than {timeout:g} s; its log ends "
                               f"with:\n{tail(text)}")
        time.sleep(0.2)


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.splitlines()[-lines:])


def load_history(folder: Path, config: FedAvgConfig, counts: np.ndarray, *,
                 num_features: int) -> History:
    """The ``History`` of a deployed run from what its ServerApp wrote into ``folder``
    (:meth:`History.from_dict`; the launcher adds what the server does not know, the
    label counts of the split). ``history.config`` is ``config.as_dict()`` with
    ``engine="flower"`` and, under SecAgg+, Flower's protocol parameters as ``"secagg_plus"``."""
    record = json.loads((folder / flower.RESULT_FILE).read_text(encoding="utf-8"))
    model = make_mlp(in_features=num_features, num_classes=counts.shape[1])
    model.load_state_dict(load_file(str(folder / flower.MODEL_FILE)))  # safetensors: no pickle
    settings = {**config.as_dict(), "engine": "flower"}
    if "secagg_plus" in record:
        settings["secagg_plus"] = dict(record["secagg_plus"])
    return History.from_dict({**record, "algorithm": "fedavg", "config": settings,
                              "label_counts": counts.tolist()}, model=model)
