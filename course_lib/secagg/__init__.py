"""Secure aggregation: the server learns the sum of the clients' updates, not any one of them.

- :mod:`~course_lib.secagg.protocol`    the protocol end to end (``secure_sum``, ``secure_fedavg``)
- :mod:`~course_lib.secagg.parties`     a client and the server, message by message
- :mod:`~course_lib.secagg.setup`       parameters, masking graphs (complete, SecAgg+), dropouts
- :mod:`~course_lib.secagg.primitives`  key agreement, PRG, Shamir shares in the protocol's field
"""

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
    plan_dropouts,
    secure_fedavg,
    secure_sum,
    simulate_round,
    sparse_degree,
)

__all__ = ["secure_sum", "secure_fedavg", "simulate_round", "encode", "SecAggReport",
           "SecAggParams", "make_params", "sparse_degree", "Dropouts", "plan_dropouts",
           "SecAggClient", "SecAggServer", "SecureAggregationError", "TooManyDropoutsError",
           "GRAPHS", "STAGES", "RING_BITS", "DEFAULT_FRAC_BITS", "DEFAULT_BOUND"]
