"""Federated learning, the FedAvg engine: data -> partition -> client -> round -> history.

- :mod:`~course_lib.fl.data`         the digits, offline (scikit-learn ships them)
- :mod:`~course_lib.fl.partition`    IID, Dirichlet and shard splits, and the dispatch by name
- :mod:`~course_lib.fl.models`       the MLP every chapter trains
- :mod:`~course_lib.fl.client`       local training and evaluation
- :mod:`~course_lib.fl.aggregate`    FedAvg's weighted mean ``w = sum_k n_k / n * w_k``
- :mod:`~course_lib.fl.round`        one round, written once: plan, train, protect, aggregate
- :mod:`~course_lib.fl.simulation`   ``run_fedavg``, ``run_fedsgd``, ``run_centralised``
- :mod:`~course_lib.fl.batched`      the round's fast trainer: every client at once
- :mod:`~course_lib.fl.seeds`        every seed a run derives, and the shuffles
- :mod:`~course_lib.fl.history`      what a run records, round by round (and as JSON)
- :mod:`~course_lib.fl.experiments`  rounds-to-target tables (McMahan et al.)
"""

from course_lib.fl.aggregate import fedavg
from course_lib.fl.client import evaluate, train_local
from course_lib.fl.data import Dataset, load_digits
from course_lib.fl.history import History
from course_lib.fl.models import MLP, make_mlp
from course_lib.fl.simulation import run_centralised, run_fedavg, run_fedsgd

__all__ = ["Dataset", "load_digits", "MLP", "make_mlp", "train_local", "evaluate", "fedavg",
           "History", "run_fedavg", "run_fedsgd", "run_centralised"]
