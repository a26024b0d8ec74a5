"""Secure aggregation: the server learns the sum of the clients' updates, not any one of them.

- :mod:`~course_lib.secagg.protocol`    the protocol end to end (``secure_sum``, ``secure_fedavg``)
- :mod:`~course_lib.secagg.parties`     a client and the server, message by message
- :mod:`~course_lib.secagg.setup`       parameters, masking graphs (complete, SecAgg+), dropouts
- :mod:`~course_lib.secagg.primitives`  key agreement, PRG, Shamir shares, signatures, directory
- :mod:`~course_lib.secagg.attacks`     a cheating server's strategies, played against clients

Threat model: a server that deviates from the protocol, alone or with a few colluding clients
(``SecAggParams.colluders_tolerated``); ``unsafe_semi_honest=True`` keeps the weaker,
honest-but-curious protocol for teaching.
"""

from course_lib.secagg.primitives import Directory, make_identities
from course_lib.secagg.protocol import (
    DEFAULT_BOUND,
    DEFAULT_FRAC_BITS,
    GRAPHS,
    RING_BITS,
    STAGES,
    Dropouts,
    SecAggClient,
    SecAggParams,
    SecAggReport,
    SecAggServer,
    SecureAggregationError,
    TooManyDropoutsError,
    encode,
    make_params,
    new_round,
    plan_dropouts,
    safe_threshold,
    secure_fedavg,
    secure_sum,
    simulate_round,
    sparse_degree,
)

__all__ = ["secure_sum", "secure_fedavg", "simulate_round", "new_round", "encode",
           "SecAggReport", "SecAggParams", "make_params", "sparse_degree", "safe_threshold",
           "Dropouts", "plan_dropouts", "Directory", "make_identities", "SecAggClient",
           "SecAggServer", "SecureAggregationError", "TooManyDropoutsError",
           "GRAPHS", "STAGES", "RING_BITS", "DEFAULT_FRAC_BITS", "DEFAULT_BOUND"]
