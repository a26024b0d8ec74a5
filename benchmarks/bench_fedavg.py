"""FedAvg speed, measured side by side in one run: print the ratios issue 4 asks for.

    python benchmarks/bench_fedavg.py     # about 25 s without Flower, 50 s with it (2 cores)

Rows (digits, MLP 64-32-10, E=1, B=32, lr=0.3, IID; times are medians of repeats):

1. one centralised epoch over the 1,347 training images (the yardstick);
2. one batched FedAvg round (local training + aggregation) at 10 and 1,000 clients,
   as a ratio of (1). Goals: <= 0.5x at 10 clients, <= 2x at 1,000;
3. whole runs, batched vs sequential engine (10x20, 100x10, 1,000x5);
4. our whole 10 clients x 20 rounds run vs Flower's simulation of the same job (same data,
   split, model, local training and server-side evaluation). Goal: >= 100x faster. Flower is
   an optional extra (``pip install "flwr[simulation]"``); without it the column is skipped;
5. one intra-op thread (what the library uses) vs two. On an idle machine they are close
   (two can even win at 1,000 clients); when another process keeps a core busy, two threads
   made a centralised epoch 10-35x slower in our runs, one thread did not: hence one.

Timings on a shared 2-core machine are noisy; the ratios are the point, and each is measured
within the same run.
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

from course_lib.fl import client, simulation
from course_lib.fl.data import load_digits
from course_lib.fl.models import make_mlp
from course_lib.fl.partition import iid

DATA = load_digits(seed=0)


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def centralised_epoch() -> float:
    model = make_mlp(seed=0)
    return median_seconds(lambda: client.train_local(model, DATA.X_train, DATA.y_train,
                                                     epochs=1, seed=0), repeats=15)


def batched_round(num_clients: int) -> float:
    history = simulation.run_fedavg(num_clients=num_clients, rounds=12, engine="batched")
    return statistics.median(history.round_seconds[2:])  # skip warm-up rounds


def whole_run(num_clients: int, rounds: int, engine: str) -> float:
    repeats = 7 if engine == "batched" else 3
    runs = [simulation.run_fedavg(num_clients=num_clients, rounds=rounds, engine=engine)
            for _ in range(repeats)]
    return statistics.median(h.wall_seconds for h in runs)


def flower_run(num_clients: int, rounds: int) -> tuple[float, float] | str:
    """Flower's legacy simulation engine on the same job; (seconds, accuracy) or a reason."""
    try:
        import flwr as fl
        from flwr.common import ndarrays_to_parameters
    except ImportError:
        return "skipped: flwr is not installed (optional extra: pip install 'flwr[simulation]')"
    try:
        import ray  # noqa: F401  (Flower's simulation engine runs on Ray)
    except ImportError:
        return ("skipped: Flower's simulation engine needs Ray, which the course's `flower` "
                "extra leaves out (pip install 'flwr[simulation]')")
    import logging
    import warnings

    import torch

    from course_lib.fl.client import evaluate, train_local
    logging.getLogger("flwr").setLevel(logging.WARNING)  # one INFO line per round otherwise
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    parts = iid(DATA.y_train, num_clients=num_clients, seed=0)
    keys = list(make_mlp(seed=0).state_dict())

    def to_model(arrays):
        model = make_mlp(seed=0)
        model.load_state_dict({k: torch.from_numpy(np.array(a)) for k, a in zip(keys, arrays)})
        return model

    class DigitsClient(fl.client.NumPyClient):
        def __init__(self, cid: int) -> None:
            self.ix = torch.from_numpy(parts[cid])

        def fit(self, parameters, config):
            state, n = train_local(to_model(parameters), DATA.X_train[self.ix],
                                   DATA.y_train[self.ix], seed=int(config.get("seed", 0)))
            return [v.numpy() for v in state.values()], n, {}

    def client_fn(context):
        return DigitsClient(int(context.node_config["partition-id"])).to_client()

    accuracy = []

    def server_eval(server_round, parameters, config):
        acc, loss = evaluate(to_model(parameters), DATA.X_test, DATA.y_test)
        accuracy.append(acc)
        return loss, {"accuracy": acc}

    initial = [v.numpy() for v in make_mlp(seed=0).state_dict().values()]
    strategy = fl.server.strategy.FedAvg(
        fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=num_clients,
        min_available_clients=num_clients, evaluate_fn=server_eval,
        initial_parameters=ndarrays_to_parameters(initial))
    t0 = time.perf_counter()
    fl.simulation.start_simulation(
        client_fn=client_fn, num_clients=num_clients, strategy=strategy,
        config=fl.server.ServerConfig(num_rounds=rounds), client_resources={"num_cpus": 1},
        ray_init_args={"include_dashboard": False, "log_to_driver": False})
    return time.perf_counter() - t0, accuracy[-1]


def main() -> None:
    print(f"python {sys.version.split()[0]}, torch threads in the library: {client.NUM_THREADS}")
    epoch = centralised_epoch()
    print(f"\ncentralised epoch (1,347 images, B=32): {epoch * 1e3:8.2f} ms")
    for k, goal in ((10, 0.5), (1000, 2.0)):
        r = batched_round(k)
        verdict = "meets" if r / epoch <= goal else "MISSES"
        print(f"batched round, {k:>5} clients:         {r * 1e3:8.2f} ms = {r / epoch:5.2f}x "
              f"an epoch ({verdict} goal <= {goal}x)")

    print("\nwhole run (incl. per-round test evaluation)   batched   sequential  ratio")
    ours_10x20 = None
    for k, rounds in ((10, 20), (100, 10), (1000, 5)):
        b = whole_run(k, rounds, "batched")
        s = whole_run(k, rounds, "sequential")
        ours_10x20 = b if (k, rounds) == (10, 20) else ours_10x20
        print(f"  {k:>5} clients x {rounds:>2} rounds                "
              f"{b * 1e3:8.1f} ms {s * 1e3:9.1f} ms  {s / b:5.1f}x")

    print("\nthreads (torch intra-op), alternating 3 times   1 thread    2 threads")
    timings = {1: ([], []), 2: ([], [])}
    for _ in range(3):
        for threads in (1, 2):
            client.NUM_THREADS = simulation.NUM_THREADS = threads
            timings[threads][0].append(centralised_epoch())
            timings[threads][1].append(batched_round(1000))
    client.NUM_THREADS = simulation.NUM_THREADS = 1
    for row, label in enumerate(("centralised epoch", "batched round, 1,000 clients")):
        one, two = (statistics.median(timings[t][row]) for t in (1, 2))
        print(f"  {label:<44} {one * 1e3:8.2f} ms  {two * 1e3:8.2f} ms")

    print("\nFlower (flwr) simulation of the same 10 x 20 job:")
    flower = flower_run(10, 20)
    if isinstance(flower, str):
        print(f"  {flower}")
    else:
        seconds, accuracy = flower
        ours = simulation.run_fedavg(num_clients=10, rounds=20)
        print(f"  Flower {seconds:7.2f} s (final accuracy {accuracy:.3f}); ours "
              f"{ours_10x20 * 1e3:.1f} ms (final accuracy {ours.final_accuracy:.3f}): "
              f"{seconds / ours_10x20:,.0f}x faster (goal >= 100x)")


if __name__ == "__main__":
    main()
