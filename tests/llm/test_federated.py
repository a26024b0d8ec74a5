"""Federated fine-tuning: adapters cost at least 10x fewer bytes than full FedAvg and reach a
comparable perplexity; encrypted adapters decrypt bit-exact and bind their round."""

from __future__ import annotations

import pytest
import torch

from course_lib.crypto import model as model_crypto
from course_lib.crypto import symmetric
from course_lib.errors import DecryptionError
from course_lib.fl.models import state_nbytes
from course_lib.llm.federated import FINETUNE_TARGETS, client_datasets, pretrain, run_finetune
from course_lib.llm.lora import add_lora, lora_state_dict
from course_lib.llm.model import make_lm


@pytest.fixture(scope="module")
def setting():
    base = pretrain(num_records=1000, epochs=3, seed=0)  # about 1 s
    clients, test = client_datasets(records_per_client=100, test_per_client=50, seed=0)
    return base, clients, test


@pytest.fixture(scope="module")
def runs(setting):
    base, clients, test = setting
    return {mode: run_finetune(base, clients, test, mode=mode, rounds=2, seed=0)
            for mode in ("lora", "full")}


def test_adapters_send_at_least_10x_fewer_bytes(runs):
    lora, full = runs["lora"], runs["full"]
    assert full.upload_bytes[0] / lora.upload_bytes[0] >= 10
    assert full.upload_ciphertext_bytes[0] / lora.upload_ciphertext_bytes[0] >= 10
    assert lora.upload_bytes == [4 * lora.trainable_parameters * 4] * 2  # 4 clients, float32
    assert full.upload_bytes[0] == 4 * state_nbytes(make_lm(seed=0))
    for h in (lora, full):  # ciphertext = plaintext + a small, fixed overhead
        assert h.upload_bytes[0] < h.upload_ciphertext_bytes[0] < h.upload_bytes[0] + 4 * 3000
        assert h.download_ciphertext_bytes == h.upload_ciphertext_bytes  # same shapes


def test_both_improve_and_lora_is_comparable(runs):
    lora, full = runs["lora"], runs["full"]
    assert lora.perplexity[0] == pytest.approx(full.perplexity[0])  # the same base model
    assert full.perplexity[-1] < full.perplexity[0]
    assert lora.perplexity[-1] < lora.perplexity[0]
    assert lora.perplexity[-1] < 1.05 * full.perplexity[-1]
    assert "bytes up per round" in repr(lora)


def test_lora_keeps_the_base_weights_frozen(setting, runs):
    base = setting[0]
    tuned = runs["lora"].model.state_dict()
    for name, tensor in base.state_dict().items():
        assert torch.equal(tuned[name], tensor), name
    full = runs["full"].model.state_dict()
    assert not torch.equal(full["h.0.attn.c_attn.weight"], base.h[0].attn.c_attn.weight)


def test_encrypted_adapters_decrypt_bit_exact_and_bind_the_round(runs):
    adapters = lora_state_dict(runs["lora"].model)
    key = symmetric.generate_key()
    blob = model_crypto.encrypt_state_dict(adapters, key, associated_data=b"round 3 up client 0")
    back = model_crypto.decrypt_state_dict(blob, key, associated_data=b"round 3 up client 0")
    assert list(back) == list(adapters)
    assert all(torch.equal(back[k], v) for k, v in adapters.items())
    with pytest.raises(DecryptionError):  # replayed into another round
        model_crypto.decrypt_state_dict(blob, key, associated_data=b"round 4 up client 0")
    blob[len(blob) // 2] ^= 1
    with pytest.raises(DecryptionError):
        model_crypto.decrypt_state_dict(blob, key, associated_data=b"round 3 up client 0")


def test_bad_arguments_name_the_parameter(setting):
    base, clients, test = setting
    with pytest.raises(ValueError, match="`mode`"):
        run_finetune(base, clients, test, mode="partial")
    with pytest.raises(ValueError, match="`rounds`"):
        run_finetune(base, clients, test, rounds=0)
    with pytest.raises(ValueError, match="`clients`"):
        run_finetune(base, [], test)
    with pytest.raises(TypeError, match=r"`clients\[1\]`"):
        run_finetune(base, [clients[0], clients[1].float()], test)
    with pytest.raises(ValueError, match="`rank`"):
        run_finetune(base, clients, test, rank=0)
    with pytest.raises(ValueError, match="`domain_share`"):
        pretrain(domain_share=1.5)
    with pytest.raises(ValueError, match="`styles`"):
        client_datasets("weather")
    with pytest.raises(ValueError, match="`style`"):
        client_datasets(["weather", "poems"])
    assert add_lora(base, rank=1)  # the base is a TinyLM LoRA can wrap


def test_a_round_is_fedavg_of_the_clients_trained_with_the_one_seed_derivation(setting):
    """Oracle written out: each client trains the adapters with train_lm and its seed
    derive_seeds(seed, 1, [k]); the server takes FedAvg's weighted mean of the weights."""
    from course_lib.fl.aggregate import fedavg
    from course_lib.fl.seeds import derive_seeds
    from course_lib.llm.model import train_lm

    base, clients, test = setting
    run = run_finetune(base, clients[:3], test, mode="lora", rounds=1, seed=7)
    model = add_lora(base, rank=4, targets=FINETUNE_TARGETS, seed=7)
    states = [lora_state_dict(train_lm(model, ids, epochs=1, batch_size=32, lr=2e-2,
                                       seed=int(derive_seeds(7, 1, [k])[0])))
              for k, ids in enumerate(clients[:3])]
    expected = fedavg(states, [len(ids) for ids in clients[:3]])
    got = lora_state_dict(run.model)
    assert list(got) == list(expected)
    assert max(float((got[k] - expected[k]).abs().max()) for k in got) < 1e-6
    assert run.config["seed"] == 7 and len(run.perplexity) == 2
