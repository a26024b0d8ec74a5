"""The large-model track's costs as the model grows, measured side by side in one run.

1. Bytes per federated round, one client, full state vs LoRA adapters (rank 4 on attention and
   the output layer, as course_lib.llm.federated fine-tunes), raw and encrypted with
   course_lib.crypto.model, for TinyLM widths 32-256 and (by shape, no training) GPT-2 small.
   The ratio grows with the width d: full weights grow with d^2, adapters with d * r.
2. One training step over 64 records of the memorisation model: plain Adam vs DP-SGD with
   per-record gradients (torch.func), i.e. what differential privacy costs in compute.
3. Scoring all 10^4 PIN candidates for the Secret Sharer: one forward pass per candidate record
   vs the prefix trick of course_lib.attacks.memorisation.secret_log_perplexities.

Encryption throughput at model scale (GB/s, against the naive path and a memory copy) is
benchmarks/bench_crypto.py's job; this script does not repeat it.

Usage:  python benchmarks/bench_model_scale.py [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from course_lib._threads import torch_threads
from course_lib.attacks.memorisation import candidates, private_gradient, secret_log_perplexities
from course_lib.crypto import model as model_crypto
from course_lib.crypto import symmetric
from course_lib.dp import DPConfig
from course_lib.fl.models import state_nbytes
from course_lib.llm.federated import FINETUNE_TARGETS
from course_lib.llm.lora import add_lora, count_lora_parameters, lora_state_dict
from course_lib.llm.model import (
    LMConfig,
    encode_records,
    gpt2_small_state_dict,
    lm_loss,
    make_lm,
    make_records,
    record_log_perplexity,
)


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bytes_per_round() -> None:
    print("\n1. bytes per round and client: full state vs LoRA r=4 (attention + output layer)")
    print(f"{'model':28}{'parameters':>13}{'full B':>13}{'LoRA B':>10}{'full enc.':>13}"
          f"{'LoRA enc.':>11}{'ratio':>8}")
    key = symmetric.generate_key()
    for width, layers in [(32, 2), (64, 2), (128, 4), (256, 4)]:
        model = make_lm(LMConfig(width=width, layers=layers, heads=4), seed=0)
        adapters = lora_state_dict(add_lora(model, rank=4, targets=FINETUNE_TARGETS))
        full_enc = len(model_crypto.encrypt_state_dict(model, key))
        lora_enc = len(model_crypto.encrypt_state_dict(adapters, key))
        params = sum(p.numel() for p in model.parameters())
        print(f"{f'TinyLM d={width}, {layers} layers':28}{params:>13,}{state_nbytes(model):>13,}"
              f"{state_nbytes(adapters):>10,}{full_enc:>13,}"
              f"{lora_enc:>11,}{state_nbytes(model) / state_nbytes(adapters):>7.0f}x")
    gpt2 = gpt2_small_state_dict(seed=0)
    lora_bytes = 4 * count_lora_parameters(gpt2, rank=4, targets=("attn.c_attn", "attn.c_proj"))
    print(f"{'GPT-2 small (attention only)':28}{sum(t.numel() for t in gpt2.values()):>13,}"
          f"{state_nbytes(gpt2):>13,}{lora_bytes:>10,}{'':>13}{'':>11}"
          f"{state_nbytes(gpt2) / lora_bytes:>7.0f}x")


def dp_step_cost(repeats: int) -> None:
    print("\n2. one step over 64 records, memorisation model (29,568 parameters), 1 thread")
    model = make_lm(seed=0)
    ids = encode_records(make_records(64, seed=0))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    dp, g = DPConfig(1.0, 1.0), torch.Generator().manual_seed(0)

    def plain() -> None:
        loss = lm_loss(model(ids[:, :-1]), ids[:, 1:])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    def private() -> None:
        private_gradient(model, ids, dp=dp, expected_batch=64.0, generator=g)

    with torch_threads(1):
        t_plain, t_dp = median_seconds(plain, repeats), median_seconds(private, repeats)
    print(f"plain Adam step:               {t_plain * 1e3:7.1f} ms")
    print(f"DP-SGD per-record gradients:   {t_dp * 1e3:7.1f} ms   ({t_dp / t_plain:.1f}x)")


def scoring_cost(repeats: int) -> None:
    print("\n3. Secret Sharer: scoring all 10^4 candidates of 'my pin is ____'")
    model = make_lm(seed=0)
    every = encode_records(candidates("my pin is ", 4))
    t_all = median_seconds(lambda: record_log_perplexity(model, every), repeats)
    t_trick = median_seconds(lambda: secret_log_perplexities(model, prefix="my pin is ",
                                                             digits=4), repeats)
    print(f"10^4 records, one forward each:        {t_all:6.3f} s")
    print(f"10^3 prefixes, all last digits at once: {t_trick:6.3f} s   ({t_all / t_trick:.0f}x)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case (median)")
    args = parser.parse_args(argv)
    print(__doc__.splitlines()[0])
    bytes_per_round()
    dp_step_cost(args.repeats)
    scoring_cost(args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
