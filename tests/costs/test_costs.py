"""course_lib.costs: one table of every protection's cost relative to plain FedAvg.

The main fixture runs the notebook's quick mode once (a few seconds); timings are only
checked for sign and for the one ordering that holds by a wide margin (AES-GCM vs Fernet).
Correctness is checked through the rows' ``max_error`` against the plain results.
"""

from __future__ import annotations

import dataclasses
import math

import matplotlib
import pytest
import torch

from course_lib import costs
from course_lib.crypto import ckks
from course_lib.dp import epsilon
from course_lib.secagg import sparse_degree

matplotlib.use("Agg")

TINY = costs.CostSettings(num_clients=40, rounds=2, paillier_clients=2, per_scalar_values=3,
                          repeats=2, noise_multipliers=(1.0, 4.0))
# 80 clients: about the smallest K for which the sparse graph (k = 2 ceil(6 log2 K) = 76, the
# degree a majority threshold needs to survive a third of the clients dropping) is really
# sparser than the complete one (K - 1 = 79); below that the "sparse" graph is complete.
SPARSE = dataclasses.replace(TINY, num_clients=80)


@pytest.fixture(scope="module")
def table():
    return costs.measure_costs(quick=True, seed=0)


def expected_methods(settings: costs.CostSettings, *, with_ckks: bool) -> list[str]:
    drop = f"{settings.dropout:.0%} drop"
    return ["AES-256-GCM", "Fernet (torch.save)", "RSA-3072 hybrid", "HPKE ML-KEM-768+X25519",
            "Paillier per-scalar", "Paillier packed", *(["CKKS"] if with_ckks else []),
            "SecAgg complete", f"SecAgg complete, {drop}", f"SecAgg sparse, {drop}",
            *[f"DP-FedAvg z={z:g}" for z in settings.noise_multipliers]]


def test_every_protection_has_a_row_in_group_order(table):
    assert table.settings == costs.QUICK
    assert [r.method for r in table.rows] == expected_methods(
        costs.QUICK, with_ckks=ckks.is_available())
    groups = [r.group for r in table.rows]
    assert groups == sorted(groups, key=costs.GROUPS.index)
    if ckks.is_available():
        assert table.skipped == ()
    else:
        assert "TenSEAL" in table.skipped[0]


def test_ratios_are_positive_and_finite(table):
    assert 0 < table.baseline_seconds < 10
    assert table.baseline_bytes == 4 * table.num_parameters == 4 * 2410
    for row in table.rows:
        assert row.extra_seconds > 0, row
        assert math.isfinite(table.time_ratio(row)) and table.time_ratio(row) > 1, row
        assert row.bytes_per_client > 0 and table.bytes_ratio(row) > 0, row
    assert table.time_ratio("AES-256-GCM") < table.time_ratio("Fernet (torch.save)")
    assert table.bytes_ratio("Paillier per-scalar") == 128  # a 4096-bit ciphertext per float32
    assert table.bytes_ratio("Paillier packed") < table.bytes_ratio("Paillier per-scalar") / 50


def test_only_paillier_rows_are_extrapolated(table):
    flagged = {r.method for r in table.rows if r.extrapolated}
    assert flagged == {"Paillier per-scalar", "Paillier packed"}  # 2 of 50 clients measured
    full = costs.CostSettings(num_clients=2, rounds=1, paillier_clients=2, per_scalar_values=1,
                              repeats=1, noise_multipliers=(1.0,))
    small = costs.measure_costs(settings=full, groups=["homomorphic"])
    assert not small.row("Paillier packed").extrapolated
    assert small.row("Paillier per-scalar").extrapolated


def test_protected_results_match_the_plain_ones(table):
    k = table.settings.num_clients
    for name in ("AES-256-GCM", "Fernet (torch.save)", "RSA-3072 hybrid",
                 "HPKE ML-KEM-768+X25519"):
        assert table.row(name).max_error == 0.0  # exact round trips
    # Paillier: 16 fractional bits, at most half a step of rounding per summand
    m = table.settings.paillier_clients
    assert table.row("Paillier per-scalar").max_error <= m * 2.0**-17
    assert table.row("Paillier packed").max_error <= k * 2.0**-17
    if ckks.is_available():
        assert table.row("CKKS").max_error < 1e-5
    for row in table.rows:
        if row.group == "secure_aggregation":
            assert row.max_error < 1e-6, row  # same mean to fixed point (2**-32) and float32


def test_secure_aggregation_rows_drop_the_planned_clients(table):
    k = table.settings.num_clients
    kept = k - round(table.settings.dropout * k)
    assert f"{k}/{k} in the sum" in table.row("SecAgg complete").note
    assert f"{kept}/{k} in the sum" in table.row("SecAgg complete, 10% drop").note
    sparse = table.row("SecAgg sparse, 10% drop")
    assert f"{kept}/{k} in the sum" in sparse.note
    # at the quick table's 50 clients the default sparse degree, 2 ceil(6 log2 50) = 68, is
    # capped at K - 1: the sparse graph is the complete one (see test_sparse_graph_is_sparser)
    assert f"k={min(k - 1, sparse_degree(k))}," in sparse.note


def test_dp_rows_report_accuracy_and_the_accountants_epsilon(table):
    s = table.settings
    rows = [r for r in table.rows if r.group == "dp"]
    for z, row in zip(s.noise_multipliers, rows):
        assert 0 <= row.accuracy <= 1
        assert row.epsilon == pytest.approx(epsilon(
            noise_multiplier=z, sample_rate=1.0, steps=s.rounds, delta=s.delta), rel=1e-9)
        assert row.bytes_per_client == table.baseline_bytes  # DP sends what FedAvg sends
    assert [r.epsilon for r in rows] == sorted((r.epsilon for r in rows), reverse=True)
    assert rows[-1].accuracy < table.baseline_accuracy  # the most noise costs accuracy


def test_ckks_row_is_skipped_cleanly_without_tenseal(monkeypatch):
    monkeypatch.setattr(ckks, "is_available", lambda: False)
    table = costs.measure_costs(settings=TINY, groups=("homomorphic",))
    assert [r.method for r in table.rows] == ["Paillier per-scalar", "Paillier packed"]
    assert len(table.skipped) == 1 and "TenSEAL" in table.skipped[0]
    assert "skipped: CKKS" in repr(table)
    costs.plot_costs(table)  # no DP rows: the right panel shows the baseline only


def test_sparse_graph_is_sparser_with_80_clients():
    table = costs.measure_costs(settings=SPARSE, groups=("secure_aggregation",))
    complete, sparse = table.rows[1], table.rows[2]
    assert "k=79, t=41;" in complete.note and "k=76, t=39;" in sparse.note
    assert sparse.bytes_per_client < complete.bytes_per_client


def test_repr_and_to_rows(table):
    text = repr(table)
    assert all(r.method in text for r in table.rows)
    assert text.count("EXTRAPOLATED") == 2 and " at 0x" not in text
    rows = table.to_rows()
    assert rows[0]["method"] == "plain FedAvg" and rows[0]["time_ratio"] == 1.0
    assert rows[0]["accuracy"] == table.baseline_accuracy
    assert [r["method"] for r in rows[1:]] == [r.method for r in table.rows]
    assert {"group", "extra_seconds", "bytes_per_client", "max_error", "epsilon",
            "extrapolated", "note", "bytes_ratio"} <= set(rows[1])
    with pytest.raises(KeyError, match="no row 'ROT13'"):
        table.row("ROT13")


def test_plot_has_a_time_panel_and_a_dp_panel(table):
    fig = costs.plot_costs(table)
    left, right = fig.axes
    timed = [r for r in table.rows if r.group != "dp"]
    assert [t.get_text() for t in left.get_yticklabels()] == [r.method for r in timed]
    assert left.get_xscale() == "log" and right.get_ylabel() == "test accuracy"
    assert len(right.lines[0].get_xdata()) == len(table.settings.noise_multipliers)
    with pytest.raises(TypeError, match="CostTable"):
        costs.plot_costs(table.rows)


@pytest.mark.parametrize("change, message", [
    (dict(num_clients=1), "num_clients"),
    (dict(paillier_clients=200), "paillier_clients"),
    (dict(dropout=0.5), "dropout"),
    (dict(dropout=True), "dropout"),
    (dict(noise_multipliers=()), "noise_multipliers"),
    (dict(noise_multipliers=(1.0, -2.0)), "noise_multipliers"),
    (dict(max_norm=0.0), "max_norm"),
    (dict(delta=1.0), "delta"),
])
def test_bad_settings_name_the_parameter(change, message):
    with pytest.raises(ValueError, match=message):
        costs.CostSettings(**change)


def test_bad_arguments_raise_before_measuring():
    with pytest.raises(ValueError, match="not both"):
        costs.measure_costs(quick=True, settings=TINY)
    with pytest.raises(TypeError, match="CostSettings"):
        costs.measure_costs(settings={"num_clients": 10})
    for groups in ("dp", (), ("dp", "rot13")):
        with pytest.raises(ValueError, match="groups"):
            costs.measure_costs(groups=groups)
    with pytest.raises(ValueError, match="seed"):
        costs.measure_costs(seed=-1)


def test_the_measured_round_is_the_simulations_first_round():
    from course_lib.costs.measures import one_round
    from course_lib.fl.aggregate import fedavg, fedavg_stacked
    from course_lib.fl.round import apply
    from course_lib.fl.seeds import derive_seeds
    from course_lib.fl.simulation import run_fedavg

    settings = costs.CostSettings(num_clients=5, rounds=1, paillier_clients=2, repeats=1,
                                  noise_multipliers=(1.0,))
    r = one_round(settings, seed=3)
    assert r.config == settings.fedavg_config(3) and r.plan.clients.tolist() == list(range(5))
    assert r.plan.seeds.tolist() == derive_seeds(3, 1, range(5)).tolist()  # the one derivation
    simulated = run_fedavg(r.config, engine="sequential", data=r.data).model.state_dict()
    # the same plan, trainer and aggregation as the simulation's round 1: bit for bit
    mine = apply(r.global_state, fedavg_stacked(r.updates(), r.sizes))
    assert all(torch.equal(simulated[k], mine[k]) for k in mine)
    oracle = fedavg([r.state(k) for k in range(5)], r.sizes)  # FedAvg of the weights
    assert max(float((simulated[k] - oracle[k]).abs().max()) for k in oracle) < 1e-6
