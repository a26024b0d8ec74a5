"""The tiny language model: attention against PyTorch's fused kernel, causality, the loss
against plain cross-entropy, records, training, and the GPT-2-shaped state_dict."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from course_lib.llm import model as lm
from course_lib.llm.model import (
    PAD,
    STYLES,
    LMConfig,
    decode,
    encode,
    encode_records,
    generate,
    gpt2_small_state_dict,
    gpt2_state_dict,
    lm_loss,
    make_lm,
    make_records,
    perplexity,
    record_log_perplexity,
    train_lm,
)


def test_make_lm_is_seeded_and_leaves_the_global_rng_alone():
    before = torch.get_rng_state()
    a, b, c = make_lm(seed=3), make_lm(seed=3), make_lm(seed=4)
    assert torch.equal(torch.get_rng_state(), before)
    for (name, p), q, r in zip(a.state_dict().items(), b.state_dict().values(),
                               c.state_dict().values()):
        assert torch.equal(p, q), name
        if name.endswith("weight") and p.dim() == 2:
            assert not torch.equal(p, r), name
    assert list(a.state_dict())[:2] == ["wte.weight", "wpe.weight"]
    assert "TinyLM(vocab=48, context=32, width=32, layers=2, heads=4" in repr(a)


def test_attention_matches_pytorchs_scaled_dot_product_attention():
    model = make_lm(LMConfig(width=16, heads=2, context=8), seed=0)
    attn = model.h[0].attn
    x = torch.randn(3, 8, 16, generator=torch.Generator().manual_seed(0))  # (B, T, C)
    q, k, v = attn.c_attn(x).split(16, dim=2)
    q, k, v = (t.view(3, 8, 2, 8).transpose(1, 2) for t in (q, k, v))  # (B, heads, T, 8)
    fused = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # the oracle
    expected = attn.c_proj(fused.transpose(1, 2).reshape(3, 8, 16))
    torch.testing.assert_close(attn(x), expected, rtol=1e-5, atol=1e-6)


def test_the_model_is_causal():
    model = make_lm(seed=1)
    ids = encode_records(make_records(2, seed=0))[:, :-1]  # (2, 32)
    changed = ids.clone()
    changed[:, 10:] = encode("z")
    with torch.no_grad():
        torch.testing.assert_close(model(ids)[:, :10], model(changed)[:, :10])
        assert not torch.allclose(model(ids)[:, 10:], model(changed)[:, 10:])
    with pytest.raises(ValueError, match="context"):
        model(torch.zeros(1, 33, dtype=torch.long))


def test_text_round_trip_and_records():
    assert decode(encode("anna's pin: 4721.")) == "anna's pin: 4721."
    ids = encode_records(["ab", ""], context=6)
    assert ids.tolist() == [[1, 3, 4, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0]]  # "\n" is id 1
    assert decode(ids[0]) == "\nab\n"
    with pytest.raises(ValueError, match="`text`.*'A'"):
        encode("Anna")
    with pytest.raises(ValueError, match=r"`records`\[1\] has 6 characters, at most"):
        encode_records(["ok", "abcdef"], context=6)


@pytest.mark.parametrize("style", [*STYLES, "mixed"])
def test_records_are_seeded_and_fit_the_context(style):
    records = make_records(300, style=style, seed=5)
    assert records == make_records(300, style=style, seed=5)
    assert records != make_records(300, style=style, seed=6)
    assert max(map(len, records)) <= LMConfig().context - 1
    encode_records(records)  # every character is in the alphabet


def test_loss_ignores_padding_and_matches_cross_entropy():
    logits = torch.randn(2, 5, 48, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([[3, 4, 5, PAD, PAD], [6, 7, 8, 9, 10]])
    real = targets != PAD
    expected = F.cross_entropy(logits[real], targets[real])
    torch.testing.assert_close(lm_loss(logits, targets), expected)
    per_record = lm_loss(logits, targets, reduction="sum_per_record")
    torch.testing.assert_close(per_record.sum() / real.sum(), expected)
    with pytest.raises(ValueError, match="`reduction`"):
        lm_loss(logits, targets, reduction="max")


def test_record_log_perplexity_is_minus_log_probability():
    model = make_lm(seed=2)
    ids = encode_records(["my pin is 4721", "kai lives in rome."])
    scores = record_log_perplexity(model, ids, batch_size=1)
    for row, score in zip(ids, scores):
        n = int((row != PAD).sum())
        with torch.no_grad():
            logp = torch.log_softmax(model(row[None, :n - 1])[0], dim=-1)  # (n - 1, V)
        expected = -logp.gather(1, row[1:n, None]).sum()
        assert score == pytest.approx(float(expected), rel=1e-5)
    assert perplexity(model, ids) > 20  # untrained: close to a uniform guess over 48


def test_training_learns_is_seeded_and_copies():
    model = make_lm(seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids = encode_records(make_records(200, style="weather", seed=0))
    trained = train_lm(model, ids, epochs=3, batch_size=32, lr=1e-2, lr_decay=True, seed=1)
    again = train_lm(model, ids, epochs=3, batch_size=32, lr=1e-2, lr_decay=True, seed=1)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(torch.equal(a, b) for a, b in zip(trained.parameters(), again.parameters()))
    test = encode_records(make_records(100, style="weather", seed=9))
    assert perplexity(trained, test) < perplexity(model, test) / 3


def test_generate_completes_a_memorised_record():
    ids = encode_records(["the code is 123."] * 64)
    trained = train_lm(make_lm(seed=0), ids, epochs=6, batch_size=16, lr=1e-2, seed=0)
    assert generate(trained, "the code is ") == "123."


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="`width` must be a multiple of `heads`"):
        LMConfig(width=30, heads=4)
    with pytest.raises(ValueError, match="`layers`"):
        LMConfig(layers=0)
    with pytest.raises(TypeError, match="`config`"):
        make_lm({"width": 32})
    with pytest.raises(ValueError, match="`style`"):
        make_records(3, style="poetry")
    ids = encode_records(["abc"])
    with pytest.raises(ValueError, match="`lr`"):
        train_lm(make_lm(), ids, lr=0)
    with pytest.raises(ValueError, match="`epochs`"):
        train_lm(make_lm(), ids, epochs=-1)
    with pytest.raises(TypeError, match="`ids`"):
        train_lm(make_lm(), ids.float())
    with pytest.raises(ValueError, match="`max_chars`"):
        generate(make_lm(), "a", max_chars=0)


def test_gpt2_shapes():
    small = gpt2_state_dict(vocab=10, context=4, width=8, layers=2, seed=0)
    per_layer = 2 * 8 + 8 * 24 + 24 + 8 * 8 + 8 + 2 * 8 + 8 * 32 + 32 + 32 * 8 + 8
    assert sum(t.numel() for t in small.values()) == 10 * 8 + 4 * 8 + 2 * per_layer + 2 * 8
    assert small["h.1.attn.c_attn.weight"].shape == (8, 24)  # Conv1D: (in, out)
    assert all(torch.equal(a, b) for a, b in
               zip(small.values(), gpt2_state_dict(vocab=10, context=4, width=8, layers=2,
                                                   seed=0).values()))
    with pytest.raises(ValueError, match="`width`"):
        gpt2_state_dict(vocab=10, context=4, width=0, layers=1)


def test_gpt2_small_has_gpt2_smalls_parameter_count():
    state = gpt2_small_state_dict(seed=0)
    assert sum(t.numel() for t in state.values()) == 124_439_808
    assert len(state) == 2 + 12 * 12 + 2
    assert lm.__all__  # the module's public names are listed
