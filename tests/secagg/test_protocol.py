"""Secure aggregation: sums against plain sums, uniformity of a masked update, dropouts,
the never-both rule, and mutations that must break the sum (so these tests can fail)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from scipy import stats

from course_lib.crypto import secret_sharing as ss
from course_lib.crypto.insecure import InsecureWarning
from course_lib.errors import CourseLibError
from course_lib.fl.aggregate import fedavg
from course_lib.fl.models import make_mlp
from course_lib.secagg import (
    Dropouts,
    SecAggClient,
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
from course_lib.secagg import primitives as _secagg_crypto
from course_lib.secagg.primitives import agree, make_identities, self_mask

N, DIM = 100, 48  # with n = 100 the sparse graph has degree 80 < 99: really sparse


def _inputs(n: int = N, dim: int = DIM, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, dim))  # (clients, dim)


def _clients(params, session: bytes = b"s") -> list[SecAggClient]:
    """Honest clients of the active protocol, with a fresh directory of signing keys."""
    keys, directory = make_identities(params.num_clients)
    return [SecAggClient(u, params, session=session, signing_key=keys[u], directory=directory)
            for u in range(params.num_clients)]


def _check_sum(x: np.ndarray, total: np.ndarray, report) -> None:
    expected = x[list(report.survivors)].sum(axis=0)
    tolerance = len(report.survivors) * report.resolution  # rounding of each input
    np.testing.assert_allclose(total, expected, rtol=0, atol=tolerance)


@pytest.mark.parametrize("graph", ["complete", "sparse"])
@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.33])
def test_sum_equals_plain_sum_of_survivors(graph, fraction):
    x = _inputs()
    total, report = secure_sum(x, dropouts=fraction, graph=graph, seed=3)
    _check_sum(x, total, report)
    dropped = plan_dropouts(N, fraction, seed=3).masked_input
    assert len(dropped) == round(fraction * N)
    assert report.survivors == tuple(u for u in range(N) if u not in dropped)
    # a survivor's self-mask and a dropout's key are rebuilt, nothing else
    assert report.reconstructed == {u: "mask_key" if u in dropped else "self_mask"
                                    for u in range(N)}
    assert report.params.degree == (99 if graph == "complete" else 80)


@pytest.mark.parametrize("graph", ["complete", "sparse"])
def test_dropouts_at_every_stage(graph):
    x = _inputs(seed=1)
    plan = Dropouts(share_keys=(5, 17), masked_input=(0, 42, 99, 63), unmasking=(7, 8, 50))
    total, report = secure_sum(x, dropouts=plan, graph=graph, seed=4)
    _check_sum(x, total, report)
    assert report.survivors == plan.in_sum(N)  # lost in round 3: its input still counts
    assert 7 in report.survivors and 5 not in report.survivors and 5 not in report.reconstructed


def test_tensor_and_state_dict_inputs_keep_their_types():
    x = torch.from_numpy(_inputs(n=6, dim=5)).float()
    total, _ = secure_sum(x, seed=0)
    assert total.dtype == torch.float32
    torch.testing.assert_close(total, x.sum(0), atol=1e-6, rtol=0)
    states = [make_mlp(seed=s).state_dict() for s in range(6)]
    summed, _ = secure_sum(states, seed=0)
    for key in states[0]:
        torch.testing.assert_close(summed[key], sum(s[key] for s in states), atol=1e-5, rtol=0)


@pytest.mark.parametrize("graph", ["complete", "sparse"])
def test_secure_fedavg_equals_fedavg_over_the_survivors(graph):
    states = [make_mlp(seed=s).state_dict() for s in range(60)]
    sizes = [int(n) for n in np.random.default_rng(0).integers(1, 200, size=60)]
    plan = plan_dropouts(60, 0.33, seed=5)
    mean, report = secure_fedavg(states, sizes, dropouts=plan, graph=graph, seed=5)
    kept = plan.in_sum(60)
    assert report.survivors == kept
    expected = fedavg([states[i] for i in kept], [sizes[i] for i in kept])
    for key in expected:
        torch.testing.assert_close(mean[key], expected[key], atol=1e-7, rtol=0)


# --- a single masked update looks uniform --------------------------------------------------

def _masked_update(x: np.ndarray, monkeypatch, *, client: int = 0) -> np.ndarray:
    """Run rounds 0-2 by hand with seeded key material; return one client's masked vector."""
    monkeypatch.setattr(_secagg_crypto, "_RANDOM", random.Random(1234))
    n, dim = x.shape
    params = make_params(n, dim, seed=0)
    clients = _clients(params)
    server = SecAggServer(params)
    server.collect_keys({u: c.advertise_keys() for u, c in enumerate(clients)})
    inbox = server.route_shares({u: c.share_keys(server.public_keys_for(u))
                                 for u, c in enumerate(clients)})
    return clients[client].masked_input(encode(x)[client], inbox[client])


def _byte_histogram_p(words: np.ndarray) -> float:
    counts = np.bincount(words.view(np.uint8), minlength=256)
    return float(stats.chisquare(counts).pvalue)


@pytest.mark.parametrize("value", [0.0, 0.5, -1024.0])
def test_a_masked_update_is_indistinguishable_from_uniform(value, monkeypatch):
    x = np.full((3, 2**15), value)  # (clients, dim): a maximally regular input
    y = _masked_update(x, monkeypatch)
    assert _byte_histogram_p(y) > 1e-3  # 256 KiB of bytes vs uniform
    assert stats.kstest(y.astype(np.float64) / 2.0**64, "uniform").pvalue > 1e-3
    top = np.bincount((y >> np.uint64(56)).astype(np.int64), minlength=256)  # top byte
    assert stats.chisquare(top).pvalue > 1e-3
    # sanity: the same tests reject the unmasked encoding, so they can fail
    assert _byte_histogram_p(encode(x)[0] + np.uint64(1)) < 1e-10


# --- too many dropouts: an error, never a wrong sum -------------------------------------------

def test_too_many_dropouts_raise_for_the_complete_graph():
    x = _inputs(n=10)  # t = 6
    secure_sum(x, dropouts=[0, 1, 2, 3], seed=0)  # 6 answer: enough
    with pytest.raises(TooManyDropoutsError, match="t = 6"):
        secure_sum(x, dropouts=[0, 1, 2, 3, 4], seed=0)
    with pytest.raises(TooManyDropoutsError):
        secure_sum(x, dropouts=Dropouts(unmasking=(0, 1, 2, 3, 4)), seed=0)
    assert issubclass(TooManyDropoutsError, CourseLibError)
    assert not issubclass(TooManyDropoutsError, ValueError)


def test_too_many_dropouts_among_one_clients_neighbours_raise_for_the_sparse_graph():
    params = make_params(300, 4, graph="sparse", seed=9)
    plan = Dropouts(masked_input=params.neighbours[0])  # 33% overall, but all of 0's holders
    with pytest.raises(TooManyDropoutsError, match="client 0: fewer than t"):
        simulate_round(encode(_inputs(n=300, dim=4)), params, plan)


def test_every_dropout_pattern_gives_the_right_sum_or_an_error():
    x, rng = _inputs(n=12, dim=8), np.random.default_rng(7)
    outcomes = set()
    for trial in range(25):
        gone = rng.permutation(12)[:rng.integers(0, 9)]
        cuts = np.sort(rng.integers(0, len(gone) + 1, size=2))
        plan = Dropouts(tuple(gone[:cuts[0]]), tuple(gone[cuts[0]:cuts[1]]),
                        tuple(gone[cuts[1]:]))
        try:
            total, report = secure_sum(x, dropouts=plan, seed=trial)
        except TooManyDropoutsError:
            outcomes.add("error")
            continue
        _check_sum(x, total, report)
        outcomes.add("sum")
    assert outcomes == {"sum", "error"}


# --- the server never gets both secrets of one client ---------------------------------------

@pytest.mark.parametrize("graph", ["complete", "sparse"])
def test_server_never_reconstructs_both_secrets_of_a_client(graph, monkeypatch):
    calls, revealed = [], []
    original_reconstruct, original_unmask = SecAggServer._reconstruct, SecAggClient.unmask

    def spy_reconstruct(self, owner, kind, points):
        calls.append((owner, kind))
        return original_reconstruct(self, owner, kind, points)

    def spy_unmask(self, survivors, dropped, **checks):
        answer = original_unmask(self, survivors, dropped, **checks)
        revealed.extend((owner, kind) for owner, (kind, _) in answer.items())
        return answer

    monkeypatch.setattr(SecAggServer, "_reconstruct", spy_reconstruct)
    monkeypatch.setattr(SecAggClient, "unmask", spy_unmask)
    plan = Dropouts(share_keys=(3,), masked_input=(1, 10, 11, 30), unmasking=(2, 20))
    secure_sum(_inputs(), dropouts=plan, graph=graph, seed=2)
    kinds: dict[int, set] = {}
    for owner, kind in calls + revealed:
        kinds.setdefault(owner, set()).add(kind)
    assert all(len(k) == 1 for k in kinds.values())
    assert {o for o, k in kinds.items() if k == {"mask_key"}} == {1, 10, 11, 30}
    assert 3 not in kinds and kinds[2] == {"self_mask"}
    assert len(calls) == len(set(calls)) == N - 1


def _through_round_two(n: int = 3, dim: int = 4):
    params = make_params(n, dim, seed=0)
    clients = _clients(params)
    server = SecAggServer(params)
    server.collect_keys({u: c.advertise_keys() for u, c in enumerate(clients)})
    inbox = server.route_shares({u: c.share_keys(server.public_keys_for(u))
                                 for u, c in enumerate(clients)})
    masked = {u: c.masked_input(np.zeros(dim, np.uint64), inbox[u])
              for u, c in enumerate(clients)}
    server.collect_masked(masked, {u: c.masked_peers() for u, c in enumerate(clients)})
    return params, clients, server


def test_a_client_refuses_to_reveal_both_secrets():
    params, clients, server = _through_round_two()
    with pytest.raises(SecureAggregationError, match="inconsistent"):
        clients[0].unmask(survivors=[0, 1, 2], dropped=[2])  # 2 on both lists
    with pytest.raises(SecureAggregationError, match="inconsistent"):
        clients[0].unmask(survivors=[1, 2], dropped=[0])  # "you dropped" to a live client
    with pytest.raises(SecureAggregationError, match="differs from the one it signed"):
        clients[0].unmask(survivors=[0, 1, 2], dropped=[])  # no consistency round yet
    server.collect_signatures({u: c.sign_survivors([0, 1, 2]) for u, c in enumerate(clients)})
    request = server.unmask_request(0)
    assert set(clients[0].unmask(**request)) == {0, 1, 2}
    with pytest.raises(SecureAggregationError, match="second, different survivor set"):
        clients[0].sign_survivors([0, 1])
    with pytest.raises(SecureAggregationError, match="differs from the one it signed"):
        clients[0].unmask(**{**request, "survivors": [0, 1], "dropped": [2]})
    with pytest.raises(SecureAggregationError, match="refusing to reconstruct"):
        server.reconstructed[1] = "self_mask"
        server._reconstruct(1, "mask_key", [(1, 0), (2, 0)])


def test_the_semi_honest_client_refuses_a_second_secret_per_holder_only():
    params = make_params(3, 4, seed=0)
    with pytest.warns(InsecureWarning):
        server = SecAggServer(params, unsafe_semi_honest=True)
    clients = [SecAggClient(u, params, unsafe_semi_honest=True) for u in range(3)]
    server.collect_keys({u: c.advertise_keys() for u, c in enumerate(clients)})
    inbox = server.route_shares({u: c.share_keys(server.public_keys_for(u))
                                 for u, c in enumerate(clients)})
    for u, c in enumerate(clients):
        c.masked_input(np.zeros(4, np.uint64), inbox[u])
    assert set(clients[0].unmask(survivors=[0, 1, 2], dropped=[])) == {0, 1, 2}
    with pytest.raises(SecureAggregationError, match="refusing to reveal client 2"):
        clients[0].unmask(survivors=[0, 1], dropped=[2])  # asks again, the other secret
    assert clients[1].unmask(survivors=[0, 1], dropped=[2])[2][0] == "mask_key"  # no check


# --- mutations: each must break the sum -----------------------------------------------------

def test_without_the_self_mask_the_sum_is_wrong(monkeypatch):
    monkeypatch.setattr(SecAggClient, "_add_self_mask", lambda self, y: None)
    total, _ = secure_sum(_inputs(n=5), seed=0)
    assert np.abs(total - _inputs(n=5).sum(0)).max() > 1e3


@pytest.mark.parametrize("graph", ["complete", "sparse"])
def test_without_one_pairwise_mask_the_sum_is_wrong(graph, monkeypatch):
    original = SecAggClient._add_pairwise_masks

    def forget_one(self, y, peers):
        original(self, y, peers[1:] if self.id == 4 else peers)

    monkeypatch.setattr(SecAggClient, "_add_pairwise_masks", forget_one)
    total, _ = secure_sum(_inputs(), dropouts=0.1, graph=graph, seed=0)
    assert np.abs(total - _inputs().sum(0)).max() > 1e3


def test_a_corrupted_key_share_is_detected_not_summed(monkeypatch):
    original = SecAggClient.unmask

    def corrupt(self, survivors, dropped, **checks):
        return {o: (k, v + 1 if k == "mask_key" else v)
                for o, (k, v) in original(self, survivors, dropped, **checks).items()}

    monkeypatch.setattr(SecAggClient, "unmask", corrupt)
    with pytest.raises(SecureAggregationError, match="does not match its public key"):
        secure_sum(_inputs(n=10), dropouts=[3], seed=0)


# --- oracles, wire format, graph ------------------------------------------------------------

def test_masks_match_secret_sharing_pairwise_mask(monkeypatch):
    x = _inputs(n=4, dim=16)
    y = _masked_update(x, monkeypatch, client=2)
    monkeypatch.setattr(_secagg_crypto, "_RANDOM", random.Random(1234))  # same keys again
    params = make_params(4, 16, seed=0)
    clients = _clients(params)
    seeds = {v: agree(clients[2]._mask_key, clients[v].advertise_keys()[1], b"pairwise mask")
             for v in (0, 1, 3)}
    start = ss.encode_ring(x[2], frac_bits=32) + self_mask(clients[2]._self_seed, 16)
    np.testing.assert_array_equal(y, ss.pairwise_mask(start, client=2, pair_keys=seeds))


def test_shamir_at_chosen_points_against_secret_sharing():
    xs = [v + 1 for v in (0, 4, 5, 17, 30, 31)]
    secret = 2**126 + 12345
    shares = _secagg_crypto.shamir_share_at(secret, xs, 4)
    points = list(zip(xs, shares))
    for subset in (points[:4], points[2:], points[::-1][:5]):
        assert ss.shamir_reconstruct(subset) == secret  # the course's own interpolation
    assert ss.shamir_reconstruct(points[:3]) != secret  # t - 1 shares: a wrong number
    theirs = ss.shamir_share(secret, threshold=4, num_shares=6)
    assert _secagg_crypto.LagrangeCache().reconstruct(theirs[1:5]) == secret


def test_bytes_sent_follow_the_wire_format():
    _, report = secure_sum(_inputs(n=200, dim=10), graph="sparse", seed=0)
    k = report.params.degree
    # round 0: 64 key bytes + a 64-byte signature; round 1: 69 per share ciphertext;
    # round 2: 8 per word + 4 per peer masked with + a signature; round 3: a signature;
    # round 4: 21 per share revealed (the k neighbours' and its own)
    assert k < 199 and set(report.bytes_sent) == {
        64 + 64 + 69 * k + 8 * 10 + 4 * k + 64 + 64 + 21 * (k + 1)}
    with pytest.warns(InsecureWarning, match="unsafe_semi_honest"):
        _, report = secure_sum(_inputs(n=200, dim=10), graph="sparse", seed=0,
                               unsafe_semi_honest=True)
    assert set(report.bytes_sent) == {64 + 69 * k + 8 * 10 + 21 * (k + 1)}  # the old format


def test_sparse_graph_is_regular_symmetric_seeded_and_logarithmic():
    params = make_params(200, 1, graph="sparse", seed=11)
    k = params.degree
    for u, nbrs in enumerate(params.neighbours):
        assert len(nbrs) == k and u not in nbrs and all(u in params.neighbours[v] for v in nbrs)
    assert make_params(200, 1, graph="sparse", seed=11).neighbours == params.neighbours
    assert make_params(200, 1, graph="sparse", seed=12).neighbours != params.neighbours
    degrees = [sparse_degree(n) for n in (10, 100, 1000, 10_000)]
    assert degrees == [9, 80, 120, 160]  # grows by a constant each time n grows tenfold
    assert all(d <= 2 * math.ceil(6 * math.log2(n)) for d, n in zip(degrees, (10, 100, 1000)))


# --- bad arguments --------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "error", "name"), [
    (dict(graph="star"), ValueError, "graph"),
    (dict(graph="sparse", degree=7), ValueError, "degree"),
    (dict(graph="complete", degree=3), ValueError, "degree"),
    (dict(threshold=1), ValueError, "threshold"),
    (dict(threshold=11), ValueError, "threshold"),
    (dict(threshold=2.5), TypeError, "threshold"),
    (dict(frac_bits=-1), ValueError, "frac_bits"),
    (dict(frac_bits="16"), TypeError, "frac_bits"),
    (dict(bound=0), ValueError, "bound"),
    (dict(bound=2.0**40), ValueError, "bound"),
    (dict(bound=0.5), ValueError, "bound"),  # the inputs exceed it
    (dict(dropouts=1.0), ValueError, "fraction"),
    (dict(dropouts=[3, 10]), ValueError, "dropouts"),
    (dict(dropouts=[3, 3]), ValueError, "dropouts"),
    (dict(dropouts="3"), TypeError, "dropouts"),
    (dict(seed=-1), ValueError, "seed"),
])
def test_bad_arguments_name_the_parameter(kwargs, error, name):
    with pytest.raises(error, match=name):
        secure_sum(_inputs(n=10, dim=3), **kwargs)


def test_bad_updates_and_weights_name_the_parameter():
    with pytest.raises(ValueError, match="updates"):
        secure_sum(np.zeros(5))
    with pytest.raises(ValueError, match="num_clients"):
        secure_sum(np.zeros((1, 5)))
    with pytest.raises(TypeError, match="updates"):
        secure_sum("not a matrix")
    with pytest.raises(ValueError, match="finite"):
        secure_sum(np.full((3, 2), np.nan))
    params = make_params(3, 4, seed=0)
    with pytest.raises(ValueError, match="encoded"):
        simulate_round(np.zeros((3, 4)), params, Dropouts())  # float, not encoded
    with pytest.raises(ValueError, match="dropouts"):
        simulate_round(encode(np.zeros((3, 4))), params, Dropouts(unmasking=(3,)))
    total, report = secure_sum(_inputs(n=6, dim=2), dropouts=np.array([1, 4]), seed=0)
    assert report.survivors == (0, 2, 3, 5)
    states = [make_mlp(seed=s).state_dict() for s in range(3)]
    with pytest.raises(ValueError, match="updates"):
        secure_sum([states[0], {**states[1], "fc1.bias": 1.0}])
    with pytest.raises(ValueError, match="weights"):
        secure_fedavg(states, [1, 2])
    with pytest.raises(ValueError, match="weights"):
        secure_fedavg(states, [0, 0, 0])
