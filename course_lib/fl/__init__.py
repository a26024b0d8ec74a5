"""Federated learning, the FedAvg engine: data -> partition -> client -> round -> history.

- :mod:`~course_lib.fl.data`         the digits, offline (scikit-learn ships them)
- :mod:`~course_lib.fl.partition`    IID, Dirichlet and shard splits, and the dispatch by name
- :mod:`~course_lib.fl.models`       the MLP every chapter trains
- :mod:`~course_lib.fl.client`       local training and evaluation
- :mod:`~course_lib.fl.aggregate`    FedAvg's weighted mean ``w = sum_k n_k / n * w_k``
- :mod:`~course_lib.fl.round`        the server's step of a round, with its protections
- :mod:`~course_lib.fl.simulation`   ``run_fedavg``, ``run_fedsgd``, ``run_centralised``
- :mod:`~course_lib.fl.batched`      the fast path: every client trained at once
- :mod:`~course_lib.fl.seeds`        per-client, per-round seeds and shuffles
- :mod:`~course_lib.fl.history`      what a run records, round by round
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
