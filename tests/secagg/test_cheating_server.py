"""A cheating server, alone, against secure aggregation (course_lib.secagg.attacks).

Against the active protocol every strategy ends with an honest client's
SecureAggregationError and no individual input recovered, on both graphs with default
parameters; a threshold below the safe range is refused, and with the unsafe flag the split
view works. Against the semi-honest teaching variant the same strategies recover the victim's
input exactly, so these tests can fail.
"""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.crypto.insecure import InsecureWarning
from course_lib.secagg import (
    SecAggClient,
    SecAggServer,
    SecureAggregationError,
    make_params,
    parties,
    secure_sum,
)
from course_lib.secagg.attacks import STRATEGIES, AttackOutcome, run_attack
from course_lib.secagg.primitives import Directory, make_identities, new_signing_key

# complete: n = 15, h = 15, t = 8 (7 peers fed to the victim still leave t survivors);
# sparse: n = 100, default k = 80, h = 81, t = 41: really sparse, default parameters
GRAPHS = [("complete", 15), ("sparse", 100)]
VICTIM = 3
STOPPED_BY = {
    "withhold_shares": "refusing to send its input",  # the round-2 abort
    "withhold_most_shares": "did not mask its input with this client",  # signed peer list
    "split_view": "valid signatures",  # the consistency round
    "replay_survivors": "valid signatures",
    "forge_survivors": "valid signatures",
    "ask_both_secrets": "differs from the one it signed",
}


def _inputs(n: int, dim: int = 4) -> np.ndarray:
    return np.random.default_rng(n).uniform(-1, 1, size=(n, dim))  # (clients, dim)


def _low_threshold(graph: str, n: int) -> int:
    """Bell et al.'s semi-honest choice, about a third of the holders: 2 t <= h."""
    return make_params(n, 1, graph=graph, seed=0).holders_per_client // 3 + 1


def _semi_honest_attack(strategy: str, x: np.ndarray, **kwargs) -> AttackOutcome:
    with pytest.warns(InsecureWarning, match="unsafe_semi_honest"):
        return run_attack(strategy, x, victim=VICTIM, unsafe_semi_honest=True, seed=0, **kwargs)


@pytest.mark.parametrize(("graph", "n"), GRAPHS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_attack_fails_against_the_active_protocol(strategy, graph, n):
    x = _inputs(n)
    outcome = run_attack(strategy, x, victim=VICTIM, graph=graph, seed=0)
    assert outcome.params.colluders_tolerated >= 0 and outcome.params.graph == graph
    assert outcome.params.degree == (n - 1 if graph == "complete" else 80)
    assert isinstance(outcome.error, SecureAggregationError), outcome
    assert STOPPED_BY[strategy] in str(outcome.error)
    assert outcome.recovered is None and not outcome.succeeded  # nothing unmasked
    assert "stopped" in repr(outcome)


@pytest.mark.parametrize(("graph", "n"), GRAPHS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_attack_but_asking_twice_unmasks_the_victim_in_the_semi_honest_variant(
        strategy, graph, n):
    x = _inputs(n)
    outcome = _semi_honest_attack(strategy, x, graph=graph, threshold=_low_threshold(graph, n),
                                  unsafe_allow_low_threshold=True)
    if strategy == "ask_both_secrets":  # each holder's one-kind rule predates the active model
        assert not outcome.succeeded and "refusing to reveal client 3" in str(outcome.error)
        return
    assert outcome.error is None and outcome.succeeded, outcome
    np.testing.assert_allclose(outcome.recovered, x[VICTIM], rtol=0, atol=2.0**-32)
    assert not np.allclose(outcome.recovered, x[VICTIM + 1])  # the victim's, no one else's


@pytest.mark.parametrize(("graph", "n"), GRAPHS)
def test_withheld_shares_unmask_the_victim_at_the_default_threshold_if_semi_honest(graph, n):
    x = _inputs(n)
    outcome = _semi_honest_attack("withhold_shares", x, graph=graph)
    assert outcome.params.threshold == outcome.params.holders_per_client // 2 + 1
    assert outcome.succeeded  # a majority threshold alone does not help: the abort does
    np.testing.assert_allclose(outcome.recovered, x[VICTIM], rtol=0, atol=2.0**-32)


@pytest.mark.parametrize(("graph", "n"), GRAPHS)
def test_a_threshold_below_the_safe_range_is_refused(graph, n):
    x, t = _inputs(n), _low_threshold(graph, n)
    h = make_params(n, 1, graph=graph, seed=0).holders_per_client
    for low in (t, h // 2):
        with pytest.raises(ValueError, match="`threshold` must be > h / 2"):
            run_attack("split_view", x, graph=graph, threshold=low, seed=0)
        with pytest.raises(ValueError, match="unsafe_allow_low_threshold"):
            secure_sum(x, graph=graph, threshold=low, seed=0)
    assert make_params(n, 1, graph=graph, threshold=h // 2 + 1, seed=0).threshold == h // 2 + 1
    with pytest.raises(TypeError, match="unsafe_allow_low_threshold"):
        make_params(n, 1, graph=graph, unsafe_allow_low_threshold="yes")


@pytest.mark.parametrize(("graph", "n"), GRAPHS)
@pytest.mark.parametrize("strategy", ["split_view", "replay_survivors", "forge_survivors"])
def test_with_the_unsafe_flag_a_split_view_unmasks_the_victim(strategy, graph, n):
    x = _inputs(n)
    h = make_params(n, 1, graph=graph, seed=0).holders_per_client
    # on the sparse graph the two groups' own neighbourhoods must also hold t signers each
    # (the consistency round), which t = h // 2 leaves too tight there; t ~ h / 3 does not
    low = h // 2 if graph == "complete" else _low_threshold(graph, n)
    outcome = run_attack(strategy, x, victim=VICTIM, graph=graph, threshold=low, seed=0,
                         unsafe_allow_low_threshold=True)  # 2 t <= h
    assert outcome.params.colluders_tolerated == -1
    assert outcome.succeeded and outcome.error is None, outcome
    np.testing.assert_allclose(outcome.recovered, x[VICTIM], rtol=0, atol=2.0**-32)
    if graph == "complete":  # the safe threshold one higher stops the same attack
        assert not run_attack(strategy, x, victim=VICTIM, threshold=h // 2 + 1,
                              seed=0).succeeded


def test_without_the_session_id_a_replay_goes_unnoticed_and_only_the_threshold_is_left(
        monkeypatch):
    x = _inputs(15)
    assert "valid signatures" in str(run_attack("replay_survivors", x, seed=0).error)
    original = parties.survivors_statement
    monkeypatch.setattr(parties, "survivors_statement",
                        lambda session, survivors: original(b"", survivors))  # no session
    outcome = run_attack("replay_survivors", x, victim=VICTIM, seed=0)
    assert outcome.error is None  # the replayed signatures were accepted ...
    assert not outcome.succeeded and "too few shares" in repr(outcome)  # ... 2 t > h held
    low = run_attack("replay_survivors", x, victim=VICTIM, seed=0, threshold=7,
                     unsafe_allow_low_threshold=True)
    assert low.succeeded


def test_a_key_substituted_by_the_server_is_refused():
    params = make_params(4, 2, seed=0)
    keys, directory = make_identities(4)
    clients = [SecAggClient(u, params, session=b"r1", signing_key=keys[u], directory=directory)
               for u in range(4)]
    server = SecAggServer(params)
    server.collect_keys({u: c.advertise_keys() for u, c in enumerate(clients)})
    honest = server.public_keys_for(0)
    fake = SecAggClient(1, params, session=b"r1", signing_key=new_signing_key(),
                        directory=directory).advertise_keys()  # the server's own keys for 1
    for bad in ({**honest, 1: fake}, {**honest, 1: honest[1][:2]},
                {**honest, 1: (fake[0], *honest[1][1:])}):
        with pytest.raises(SecureAggregationError, match="client 1's advertised keys"):
            clients[0].share_keys(bad)
    replayed = SecAggClient(0, params, session=b"r2", signing_key=keys[0], directory=directory)
    with pytest.raises(SecureAggregationError, match="no valid signature for this session"):
        replayed.share_keys(honest)  # signatures of session r1 shown in session r2
    with pytest.raises(SecureAggregationError, match="not a neighbour"):
        clients[0].share_keys({**honest, 0: honest[1]})
    assert len(clients[0].share_keys(honest)) == 3  # the genuine keys go through


def test_the_directory_never_raises_on_garbage():
    keys, directory = make_identities(2)
    message = b"m"
    good = keys[0].sign(message)
    assert directory.verify(0, good, message)
    for client, signature in ((1, good), (2, good), ("0", good), (0, good[:-1]), (0, None),
                              (0, bytes(64)), (0, good[:-1] + bytes([good[-1] ^ 1]))):
        assert not directory.verify(client, signature, message)
    assert not Directory({0: bytes(32)}).verify(0, good, message)


def test_colluders_tolerated_follow_the_counting_rule():
    assert make_params(10, 1, seed=0).colluders_tolerated == 1  # h = 10, t = 6
    assert make_params(11, 1, seed=0).colluders_tolerated == 0  # h = 11, t = 6
    assert make_params(30, 1, threshold=21, seed=0).colluders_tolerated == 11  # t ~ 2h/3
    assert make_params(30, 1, threshold=30, seed=0).colluders_tolerated == 28  # t = h
    sparse = make_params(1000, 1, graph="sparse", seed=0)
    assert (sparse.degree, sparse.threshold, sparse.colluders_tolerated) == (120, 61, 0)


def test_bad_attack_arguments_name_the_parameter():
    x = _inputs(6)
    with pytest.raises(ValueError, match="strategy"):
        run_attack("bribe", x)
    with pytest.raises(ValueError, match="victim"):
        run_attack("split_view", x, victim=6)
    with pytest.raises(ValueError, match="inputs"):
        run_attack("split_view", x[0])
    with pytest.raises(TypeError, match="unsafe_semi_honest"):
        run_attack("split_view", x, unsafe_semi_honest=1)


def test_each_defence_is_needed_remove_it_and_its_attack_succeeds(monkeypatch):
    x = _inputs(15)
    with monkeypatch.context() as patch:  # no check of the victim's signed peer list
        patch.setattr(SecAggClient, "_check_masked_with_me", lambda self, owner, claim: None)
        assert run_attack("withhold_most_shares", x, victim=VICTIM, seed=0).succeeded
    assert not run_attack("withhold_most_shares", x, victim=VICTIM, seed=0).succeeded
    with monkeypatch.context() as patch:  # no round-2 abort: the victim masks with nobody ...
        patch.setattr(SecAggClient, "masked_input", _without_the_abort)
        outcome = run_attack("withhold_shares", x, victim=VICTIM, seed=0)
        assert "did not mask its input with this client" in str(outcome.error)  # ... caught later
        patch.setattr(SecAggClient, "_check_masked_with_me", lambda self, owner, claim: None)
        outcome = run_attack("withhold_shares", x, victim=VICTIM, seed=0)  # both gone
        assert outcome.succeeded, outcome
        np.testing.assert_allclose(outcome.recovered, x[VICTIM], rtol=0, atol=2.0**-32)


_ORIGINAL_MASKED_INPUT = SecAggClient.masked_input


def _without_the_abort(self, values, ciphertexts):
    self.semi_honest = True  # skips the abort (and nothing else that this round needs)
    try:
        return _ORIGINAL_MASKED_INPUT(self, values, ciphertexts)
    finally:
        self.semi_honest = False
