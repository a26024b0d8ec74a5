"""LoRA: identity at initialisation, only adapters train, adapter-only state_dicts, and the
merged weight computing what the adapters compute."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.llm.lora import (
    LoRALinear,
    add_lora,
    count_lora_parameters,
    load_lora_state_dict,
    lora_parameter_count,
    lora_state_dict,
    merge_lora,
)
from course_lib.llm.model import encode_records, make_lm, make_records, train_lm

ALL = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj", "lm_head")


@pytest.fixture(scope="module")
def ids():
    return encode_records(make_records(8, style="recipe", seed=0))


def _randomise_adapters(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def test_wrapped_model_equals_base_at_initialisation(ids):
    base = make_lm(seed=0)
    before = torch.get_rng_state()
    wrapped = add_lora(base, rank=4, targets=ALL, seed=1)
    assert torch.equal(torch.get_rng_state(), before)
    with torch.no_grad():
        assert torch.equal(wrapped(ids[:, :-1]), base(ids[:, :-1]))  # B = 0 exactly
    assert all(isinstance(m, nn.Linear) and not isinstance(m, LoRALinear)
               for m in base.modules() if isinstance(m, nn.Linear))  # base not modified
    assert all(float(p.detach().abs().sum()) > 0 for n, p in wrapped.named_parameters()
               if n.endswith("lora_A"))


def test_only_adapters_require_grad_and_train(ids):
    base = make_lm(seed=0)
    wrapped = add_lora(base, rank=2, seed=0)
    trainable = [n for n, p in wrapped.named_parameters() if p.requires_grad]
    assert trainable and all(n.endswith((".lora_A", ".lora_B")) for n in trainable)
    assert len(trainable) == 2 * 2 * 2  # 2 layers x (c_attn, c_proj) x (A, B)
    trained = train_lm(wrapped, ids, epochs=2, batch_size=4, lr=1e-2, seed=0)
    frozen = {k: v for k, v in trained.state_dict().items() if "lora_" not in k}
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in frozen.items())
    assert not torch.equal(trained.h[0].attn.c_attn.lora_B, wrapped.h[0].attn.c_attn.lora_B)


def test_parameter_count_is_rank_times_in_plus_out():
    wrapped = add_lora(make_lm(seed=0), rank=4, targets=ALL, seed=0)
    width, vocab = 32, 48
    per_layer = 4 * ((width + 3 * width) + (width + width) + (width + 4 * width)
                     + (4 * width + width))
    adapters, total = lora_parameter_count(wrapped)
    assert adapters == 2 * per_layer + 4 * (width + vocab)
    assert total == adapters + sum(p.numel() for p in make_lm(seed=0).parameters())


def test_adapter_count_for_a_state_dict_of_another_shape():
    from course_lib.llm.model import gpt2_state_dict

    state = gpt2_state_dict(vocab=10, context=4, width=8, layers=3)
    # c_attn is (8, 24) in GPT-2's Conv1D layout, c_proj (8, 8): r * (in + out) each
    assert count_lora_parameters(state, rank=2) == 3 * 2 * ((8 + 24) + (8 + 8))
    assert count_lora_parameters(state, rank=1, targets=("mlp.c_fc",)) == 3 * (8 + 32)
    with pytest.raises(ValueError, match="`targets`.*match no 2-D weight"):
        count_lora_parameters(state, rank=1, targets=("nothing",))


def test_adapter_state_dict_round_trip(ids):
    source = add_lora(make_lm(seed=0), rank=3, seed=0)
    _randomise_adapters(source)
    state = lora_state_dict(source)
    assert sorted(state) == sorted(k for k in source.state_dict() if "lora_" in k)
    target = add_lora(make_lm(seed=0), rank=3, seed=5)  # other A: overwritten by the load
    load_lora_state_dict(target, state)
    with torch.no_grad():
        assert torch.equal(target(ids[:, :-1]), source(ids[:, :-1]))
    state["h.0.attn.c_attn.lora_A"].zero_()  # a copy: the model is not affected
    assert float(source.h[0].attn.c_attn.lora_A.detach().abs().sum()) > 0


def test_loading_wrong_adapters_is_refused():
    model = add_lora(make_lm(seed=0), rank=2, seed=0)
    state = lora_state_dict(model)
    with pytest.raises(ValueError, match="`state` keys.*missing"):
        load_lora_state_dict(model, {k: v for k, v in state.items() if "h.1" not in k})
    with pytest.raises(ValueError, match="`state` keys.*unexpected"):
        load_lora_state_dict(model, {**state, "extra.lora_A": torch.zeros(1)})
    bad = dict(state)
    bad["h.0.attn.c_attn.lora_A"] = torch.zeros(3, 32)
    with pytest.raises(ValueError, match=r"shape \(2, 32\)"):
        load_lora_state_dict(model, bad)
    with pytest.raises(TypeError, match="`state`"):
        load_lora_state_dict(model, [1, 2])
    with pytest.raises(ValueError, match="no LoRA adapters"):
        lora_state_dict(make_lm(seed=0))


def test_lora_linear_matches_the_merged_weight_formula():
    linear = nn.Linear(6, 5)
    layer = LoRALinear.from_linear(linear, rank=2, alpha=8.0,
                                   generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        layer.lora_B.normal_(generator=torch.Generator().manual_seed(1))
    x = torch.randn(4, 3, 6)
    delta = (8.0 / 2) * layer.lora_B @ layer.lora_A  # (alpha / r) B A, shape (5, 6)
    expected = F.linear(x, linear.weight + delta, linear.bias)  # the oracle: one plain layer
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-6)
    assert "rank=2, scaling=4" in repr(layer)


def test_merge_equals_unmerged_forward(ids):
    wrapped = add_lora(make_lm(seed=0), rank=4, targets=ALL, seed=0)
    _randomise_adapters(wrapped, seed=3)
    merged = merge_lora(wrapped)
    assert list(merged.state_dict()) == list(make_lm(seed=0).state_dict())
    assert not any(isinstance(m, LoRALinear) for m in merged.modules())
    with torch.no_grad():
        torch.testing.assert_close(merged(ids[:, :-1]), wrapped(ids[:, :-1]),
                                   rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="no LoRA adapters"):
        merge_lora(merged)


def test_bad_arguments_name_the_parameter():
    model = make_lm(seed=0)
    with pytest.raises(ValueError, match="`rank`"):
        add_lora(model, rank=0)
    with pytest.raises(TypeError, match="`rank`"):
        add_lora(model, rank=2.0)
    with pytest.raises(ValueError, match="`alpha`"):
        add_lora(model, rank=2, alpha=-1.0)
    with pytest.raises(ValueError, match="`targets`.*match no nn.Linear"):
        add_lora(model, targets=("conv",))
    with pytest.raises(ValueError, match="`targets`"):
        add_lora(model, targets="attn.c_attn")
    with pytest.raises(ValueError, match="`seed`"):
        add_lora(model, seed=-1)
