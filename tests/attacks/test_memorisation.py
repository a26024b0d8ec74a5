"""The Secret Sharer: exposure by hand, candidate scores against brute force, DP-SGD's step
against autograd, and exposure rising with the canary's repeats and falling under DP."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from course_lib.attacks.memorisation import (
    candidates,
    exposure_from_scores,
    insert_canary,
    measure_exposure,
    private_gradient,
    run_secret_sharer,
    secret_log_perplexities,
    train_lm_dp,
)
from course_lib.dp import DPConfig, clip_update
from course_lib.llm.model import encode_records, lm_loss, make_lm, make_records

SMALL = dict(num_records=500, epochs=5)  # about 0.6 s per run on one core


def test_exposure_by_hand():
    scores = np.array([3.0, 1.0, 2.0, 0.5])  # likeliest first: 3, 1, 2, 0
    assert exposure_from_scores(scores, 2) == (pytest.approx(2 - math.log2(3)), 3)
    assert exposure_from_scores(scores, 3) == (2.0, 1)  # ranked first: log2 |R| bits
    assert exposure_from_scores(scores, 0)[1] == 4
    assert exposure_from_scores([1.0, 1.0, 2.0], 1)[1] == 1  # ties go to the secret
    with pytest.raises(ValueError, match="`secret_index`"):
        exposure_from_scores(scores, 4)
    with pytest.raises(ValueError, match="`scores`"):
        exposure_from_scores([], 0)


def test_candidates_are_every_digit_string_in_order():
    space = candidates("pin ", 3)
    assert len(space) == 1000 and space[0] == "pin 000" and space[472] == "pin 472"


def test_secret_scores_match_brute_force_over_every_candidate():
    model = make_lm(seed=3)
    scores = secret_log_perplexities(model, prefix="my pin is ", digits=3)
    ids = encode_records(candidates("my pin is ", 3))[:, :1 + 10 + 3]  # "\n" prefix secret
    with torch.no_grad():
        logp = torch.log_softmax(model(ids[:, :-1]), dim=-1)  # (1000, 13, V)
    per_token = logp.gather(2, ids[:, 1:, None])[..., 0]  # (1000, 13)
    brute = -per_token[:, 10:].sum(dim=1)  # the three secret digits only
    np.testing.assert_allclose(scores, brute.double().numpy(), rtol=1e-5)
    exposure, rank, best = measure_exposure(model, prefix="my pin is ", secret="047")
    assert rank == 1 + int((scores < scores[47]).sum())
    assert best == f"{int(scores.argmin()):03d}"
    assert exposure == pytest.approx(math.log2(1000 / rank))


def test_insert_canary_adds_exact_copies_and_keeps_the_order():
    records = make_records(50, seed=0)
    out = insert_canary(records, "my pin is 4721", repeats=7, seed=1)
    assert out.count("my pin is 4721") == 7 and len(out) == 57
    assert [r for r in out if r != "my pin is 4721"] == records
    assert insert_canary(records, "x", repeats=0) == records


def _record_grads(model, ids):
    grads = []
    for row in ids:  # one record at a time, by autograd
        copy_ = copy.deepcopy(model)
        lm_loss(copy_(row[None, :-1]), row[None, 1:]).backward()
        grads.append({k: p.grad for k, p in copy_.named_parameters()})
    return grads


def test_private_gradient_clips_each_record_then_sums():
    model = make_lm(seed=0)
    ids = encode_records(make_records(6, seed=2))
    for max_norm in (1e6, 0.05):  # no clipping, then every record clipped
        noisy = private_gradient(model, ids, dp=DPConfig(0.0, max_norm), expected_batch=4.0,
                                 generator=torch.Generator())
        clipped = [clip_update(g, max_norm) for g in _record_grads(model, ids)]
        for name in noisy:
            expected = sum(c[name] for c in clipped) / 4.0
            torch.testing.assert_close(noisy[name], expected, rtol=1e-4, atol=1e-7, msg=name)
    assert all(p.grad is None for p in model.parameters())  # the input model is untouched


def test_private_gradient_noise_has_std_z_c_over_batch():
    model = make_lm(seed=0)
    empty = encode_records(["a"])[:0]  # no record picked: pure noise
    noisy = private_gradient(model, empty, dp=DPConfig(2.0, 0.5), expected_batch=4.0,
                             generator=torch.Generator().manual_seed(0))
    values = torch.cat([v.flatten() for v in noisy.values()])  # 29,568 draws
    assert float(values.std()) == pytest.approx(2.0 * 0.5 / 4.0, rel=0.02)
    assert abs(float(values.mean())) < 0.01


def test_dp_training_takes_epochs_over_q_steps_and_only_trains_adapters():
    from course_lib.llm.lora import add_lora

    ids = encode_records(make_records(20, seed=0))
    base = make_lm(seed=0)
    wrapped = add_lora(base, rank=2, seed=0)
    trained, steps, q = train_lm_dp(wrapped, ids, dp=DPConfig(1.0, 1.0), epochs=2,
                                    batch_size=5, lr=1e-2)
    assert (steps, q) == (8, 0.25)
    for name, p in trained.state_dict().items():
        if "lora_" not in name:
            assert torch.equal(p, wrapped.state_dict()[name]), name


def test_dp_noise_is_seeded():
    ids = encode_records(make_records(20, seed=0))
    dp = DPConfig(1.0, 1.0)
    a, _, _ = train_lm_dp(make_lm(seed=0), ids, dp=dp, epochs=1, batch_size=5, lr=1e-2, seed=4)
    b, _, _ = train_lm_dp(make_lm(seed=0), ids, dp=dp, epochs=1, batch_size=5, lr=1e-2, seed=4)
    c, steps, q = train_lm_dp(make_lm(seed=0), ids, dp=dp, epochs=1, batch_size=5, lr=1e-2,
                              seed=5)
    assert (steps, q) == (4, 0.25)
    assert all(torch.equal(p, r) for p, r in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, r) for p, r in zip(a.parameters(), c.parameters()))


def test_exposure_rises_with_repeats_and_falls_with_dp():
    never = run_secret_sharer(repeats=0, seed=0, **SMALL)
    often = run_secret_sharer(repeats=16, seed=0, **SMALL)
    private = run_secret_sharer(repeats=16, seed=0, dp=DPConfig(1.0, 1.0, delta=1e-5), **SMALL)
    assert often.exposure > never.exposure + 6
    assert often.most_likely == "4721" and often.rank <= 2
    assert private.exposure < often.exposure - 6
    assert 0 < private.epsilon < 10 and math.isinf(often.epsilon)
    assert never.test_perplexity < 4  # the model did learn the generic text
    assert "exposure=" in repr(private) and "epsilon=" in repr(private)


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="`secret`"):
        run_secret_sharer(repeats=1, secret="47a1")
    with pytest.raises(ValueError, match="`secret`"):
        run_secret_sharer(repeats=1, secret="1234567")
    with pytest.raises(ValueError, match="`repeats`"):
        run_secret_sharer(repeats=-1)
    with pytest.raises(TypeError, match="`dp`"):
        run_secret_sharer(repeats=1, dp=1.0)
    with pytest.raises(TypeError, match="`model`"):
        run_secret_sharer(repeats=1, model=torch.nn.Linear(2, 2))
    ids = encode_records(["abc"])
    with pytest.raises(ValueError, match="`batch_size`"):
        train_lm_dp(make_lm(), ids, dp=DPConfig(1.0, 1.0), epochs=1, batch_size=2, lr=0.1)
    with pytest.raises(ValueError, match="`lr`"):
        train_lm_dp(make_lm(), ids, dp=DPConfig(1.0, 1.0), epochs=1, batch_size=1, lr=-1)
    with pytest.raises(ValueError, match="`digits`"):
        secret_log_perplexities(make_lm(), prefix="a", digits=6)
