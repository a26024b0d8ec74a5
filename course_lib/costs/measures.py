"""How :mod:`course_lib.costs` measures each protection: one function per group of rows.

Every function takes the same :class:`_Round` and returns :class:`CostRow` s. The round is the
simulation's own first round (:mod:`course_lib.fl.round`: its plan, seeds and aggregation) of
the settings' :class:`~course_lib.fl.config.FedAvgConfig`, with the reference trainer (the
``K`` clients one after another, as each spends its own CPU). Secure aggregation and DP are
measured as that round's protected aggregation step. Times are CPU seconds of this process
(``time.process_time``), so that other jobs on a shared machine inflate them less than wall
time; every operation here runs on one thread.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from safetensors.torch import save

from course_lib.costs.settings import CostSettings
from course_lib.crypto import asymmetric, ckks, model, naive, paillier, symmetric, transport
from course_lib.fl.aggregate import fedavg_stacked
from course_lib.fl.config import FedAvgConfig
from course_lib.fl.data import Dataset, load_digits
from course_lib.fl.models import make_mlp, state_nbytes
from course_lib.fl.round import RoundPlan, Server, Updates, train_sequential
from course_lib.fl.simulation import run_fedavg

__all__ = ["CostRow", "MEASURE", "one_round"]

FRAC_BITS = 16  # Paillier fixed point, as in benchmarks/bench_he.py


@dataclass(frozen=True)
class CostRow:
    """One protection, measured.

    ``extra_seconds``: compute added to one round, all parties. ``bytes_per_client``: what a
    client uploads per round. ``max_error``: largest entry-wise difference between the
    protected and the plain result (``0.0`` for an exact round trip). ``accuracy`` and
    ``epsilon`` for the DP rows (the model is otherwise the plain one).
    """

    group: str
    method: str
    extra_seconds: float
    bytes_per_client: int
    max_error: float | None = None
    accuracy: float | None = None
    epsilon: float | None = None
    extrapolated: bool = False
    note: str = ""


def _medians(functions: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median CPU time of each function over ``repeats`` calls, after one warm-up call.

    Each function runs in its own block: interleaving them let one's allocations (torch.save's,
    say) slow the next one down by half as much again.
    """
    medians = []
    for fn in functions:
        fn()
        times = []
        for _ in range(repeats):
            start = time.process_time()
            fn()
            times.append(time.process_time() - start)
        medians.append(statistics.median(times))
    return medians


def _cpu(fn: Callable[[], object]) -> tuple[float, object]:
    """``(CPU seconds, result)`` of one call."""
    start = time.process_time()
    out = fn()
    return time.process_time() - start, out


@dataclass
class _Round:
    """One round's inputs, shared by every protection: the K clients' updates after local
    training (round 1 of :attr:`config`), and the CPU time of the plain round."""

    settings: CostSettings
    config: FedAvgConfig
    data: Dataset
    global_state: dict[str, torch.Tensor]
    plan: RoundPlan
    trained: Updates  # rows in the plan's order
    seconds: float  # CPU time of one plain round

    @property
    def num_clients(self) -> int:
        return len(self.trained.sizes)

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def sizes(self) -> list[int]:
        return self.trained.sizes.tolist()

    def updates(self) -> dict[str, torch.Tensor]:
        """Fresh stacked copies ``(clients, *shape)`` of the updates (aggregation may overwrite
        its input)."""
        return {k: t.clone() for k, t in self.trained.tensors.items()}

    def state(self, k: int) -> dict[str, torch.Tensor]:
        """Client ``k``'s weights ``w + d_k``, what it would upload in plain FedAvg."""
        return {n: w + self.trained.tensors[n][k] for n, w in self.global_state.items()}

    def weighted(self) -> np.ndarray:
        """``p_k * (w_k - w)`` flattened, shape (clients, parameters): their sum is FedAvg's
        update, so this is what an additively homomorphic scheme adds up."""
        share = self.trained.sizes / self.trained.sizes.sum()  # (clients,)
        flat = torch.cat([t.reshape(self.num_clients, -1) for t in self.trained.tensors.values()],
                         dim=1).double().numpy()  # (clients, parameters)
        return share[:, None] * flat

    def protected(self, **protections: object) -> tuple[Server, Updates, RoundPlan]:
        """A server for this round with ``protections`` (FedAvgConfig options) and its plan;
        ``server.aggregate(updates, plan)`` is then the protected step, on fresh updates."""
        server = Server(self.config.replace(rounds=1, **protections))
        return server, Updates(self.updates(), self.trained.sizes,
                               self.trained.position), server.plan()


def one_round(settings: CostSettings, seed: int) -> _Round:
    """Round 1 of ``settings.fedavg_config(seed)`` from the initial model, the K clients
    trained one after another; the plain round (plan, K local trainings, weighted mean,
    apply) timed as the median of five."""
    config = settings.fedavg_config(seed)
    data = load_digits(seed=seed)
    net = make_mlp(in_features=data.num_features, num_classes=data.num_classes, seed=seed)
    parts = config.split(data.y_train)
    trained: list[Updates] = []

    def train(plan: RoundPlan) -> Updates:
        trained.append(train_sequential(net, data.X_train, data.y_train,
                                        [parts[k] for k in plan.clients], plan.seeds,
                                        epochs=config.local_epochs,
                                        batch_size=config.batch_size, lr=config.lr))
        return trained[-1]

    def plain_round() -> RoundPlan:
        return Server(config.replace(rounds=1)).run_round(net.state_dict(), train).plan

    (seconds,) = _medians([plain_round], 5)
    return _Round(settings, config, data, net.state_dict(), plain_round(), trained[-1], seconds)


def _check(ok: bool, what: str) -> None:
    if not ok:  # pragma: no cover - a library bug, not a user error
        raise RuntimeError(f"{what}: the protected result differs from the plain one")


def _symmetric(r: _Round, skipped: list[str]) -> list[CostRow]:
    state, k = r.state(0), r.num_clients
    key, fernet_key = symmetric.generate_key(), naive.generate_key()
    blob, token = model.encrypt_state_dict(state, key), naive.encrypt_state_dict(state, fernet_key)
    for restored in (model.decrypt_state_dict(blob, key), naive.decrypt_state_dict(token,
                                                                                     fernet_key)):
        _check(all(torch.equal(restored[n], t) for n, t in state.items()), "decryption")
    gcm_enc, gcm_dec, fer_enc, fer_dec = _medians([
        lambda: model.encrypt_state_dict(state, key), lambda: model.decrypt_state_dict(blob, key),
        lambda: naive.encrypt_state_dict(state, fernet_key),
        lambda: naive.decrypt_state_dict(token, fernet_key)], r.settings.repeats)
    return [CostRow("symmetric", "AES-256-GCM", k * (gcm_enc + gcm_dec), len(blob), 0.0,
                    note="course_lib.crypto.model"),
            CostRow("symmetric", "Fernet (torch.save)", k * (fer_enc + fer_dec), len(token), 0.0,
                    note="course_lib.crypto.naive; base64 text")]


def _public_key(r: _Round, skipped: list[str]) -> list[CostRow]:
    payload = save(r.state(0))  # safetensors bytes of one client's model
    rsa_keygen, rsa_key = _cpu(asymmetric.generate_private_key)  # RSA-3072
    hpke_keygen, (hpke_key, hpke_public) = _cpu(transport.generate_hpke_keypair)
    rsa_blob = asymmetric.encrypt_for(rsa_key.public_key(), payload)
    hpke_blob = transport.seal_for(hpke_public, payload)
    _check(asymmetric.decrypt_with(rsa_key, rsa_blob) == payload
           and transport.open_with(hpke_key, hpke_blob) == payload, "decryption")
    times = _medians([lambda: asymmetric.encrypt_for(rsa_key.public_key(), payload),
                      lambda: asymmetric.decrypt_with(rsa_key, rsa_blob),
                      lambda: transport.seal_for(hpke_public, payload),
                      lambda: transport.open_with(hpke_key, hpke_blob)], r.settings.repeats)
    k, rows = r.num_clients, []
    for name, blob, keygen, (enc, dec), extra in (
            ("RSA-3072 hybrid", rsa_blob, rsa_keygen, times[:2], ""),
            ("HPKE ML-KEM-768+X25519", hpke_blob, hpke_keygen, times[2:], "post-quantum; ")):
        rows.append(CostRow("public_key", name, k * (enc + dec), len(blob), 0.0,
                            note=f"{extra}keygen {1e3 * keygen:.1f} ms, once"))
    return rows


def _homomorphic(r: _Round, skipped: list[str]) -> list[CostRow]:
    s, k = r.settings, r.num_clients
    x = r.weighted()  # (clients, parameters)
    dim, m, v = x.shape[1], s.paillier_clients, min(s.per_scalar_values, x.shape[1])
    keygen, (public_key, private_key) = _cpu(paillier.generate_keypair)
    ct_bytes = 2 * -(-public_key.bits // 8)  # a ciphertext is an integer below n^2
    enc, cts = _cpu(lambda: [[public_key.encrypt(float(a)) for a in row[:v]] for row in x[:m]])
    add, total = _cpu(lambda: [sum(column[1:], column[0]) for column in zip(*cts)])
    dec, values = _cpu(lambda: [private_key.decrypt(c) for c in total])
    scale = dim / v
    rows = [CostRow(
        "homomorphic", "Paillier per-scalar",
        (enc / m * k + add / (m - 1) * (k - 1) + dec) * scale, dim * ct_bytes,
        float(np.abs(np.array(values) - x[:m, :v].sum(axis=0)).max()), extrapolated=True,
        note=f"{v} values x {m} clients measured, scaled to {dim:,} x {k}; keygen "
             f"{1e3 * keygen:.0f} ms, once")]
    scheme = paillier.PackingScheme(public_key, frac_bits=FRAC_BITS, bound=1.0, max_summands=k)
    enc, packed = _cpu(lambda: [scheme.encrypt(row) for row in x[:m]])
    add, total = _cpu(lambda: sum(packed))
    dec, values = _cpu(lambda: scheme.decrypt(private_key, total))
    rows.append(CostRow(
        "homomorphic", "Paillier packed", enc / m * k + add / (m - 1) * (k - 1) + dec,
        packed[0].nbytes, float(np.abs(values - x[:m].sum(axis=0)).max()), extrapolated=m < k,
        note=(f"{m} of {k} clients measured, scaled; " if m < k else "")
        + f"{scheme.slots_per_ciphertext} values/ciphertext"))
    if not ckks.is_available():
        skipped.append("CKKS: TenSEAL, the optional 'he' extra, is not installed "
                       "(pip install 'model-privacy-course[he]')")
        return rows
    keygen, context = _cpu(ckks.make_context)
    public = ckks.public_context(context)
    enc, vectors = _cpu(lambda: [ckks.encrypt(public, row) for row in x])
    add, total = _cpu(lambda: sum(vectors))
    dec, values = _cpu(lambda: total.decrypt(context.secret_key()))
    rows.append(CostRow("homomorphic", "CKKS", enc + add + dec, vectors[0].nbytes,
                        float(np.abs(values - x.sum(axis=0)).max()),
                        note=f"TenSEAL, degree 8192; keygen {1e3 * keygen:.0f} ms, once"))
    return rows


def _secure_aggregation(r: _Round, skipped: list[str]) -> list[CostRow]:
    d, k = r.settings.dropout, r.num_clients
    cases = dict.fromkeys([("complete", 0.0), ("complete", d), ("sparse", d)])  # ordered, unique
    rows = []
    for graph, drop in cases:
        server, updates, plan = r.protected(secure_aggregation=True, secagg_graph=graph,
                                            dropout=drop)
        seconds, (mean, report) = _cpu(functools.partial(server.aggregate, updates, plan))
        kept = list(report.survivors)
        weights = np.zeros(k)
        weights[kept] = np.asarray(r.sizes)[kept]
        plain = fedavg_stacked(r.updates(), weights)  # the same survivors, in the clear
        error = max(float((mean[n] - t).abs().max()) for n, t in plain.items())
        name = f"SecAgg {graph}" + (f", {drop:.0%} drop" if drop else "")
        rows.append(CostRow(
            "secure_aggregation", name, seconds, int(report.bytes_sent[kept].mean()), error,
            note=f"k={report.params.degree}, t={report.params.threshold}; {len(kept)}/{k} "
                 "in the sum"))
    return rows


def _dp(r: _Round, skipped: list[str]) -> list[CostRow]:
    s = r.settings
    server, updates, plan = r.protected(dp=s.dp_config(s.noise_multipliers[0]))
    (seconds,) = _medians([lambda: server.aggregate(updates, plan)], s.repeats)
    rows = []
    for z in s.noise_multipliers:
        history = run_fedavg(r.config, dp=s.dp_config(z), data=r.data)
        rows.append(CostRow(
            "dp", f"DP-FedAvg z={z:g}", seconds, state_nbytes(r.global_state),
            accuracy=history.final_accuracy, epsilon=history.final_epsilon,
            note=f"S={s.max_norm:g}, delta={s.delta:g}, client-level"))
    return rows


MEASURE = {"symmetric": _symmetric, "public_key": _public_key, "homomorphic": _homomorphic,
           "secure_aggregation": _secure_aggregation, "dp": _dp}
