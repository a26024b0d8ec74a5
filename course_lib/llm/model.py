"""A tiny character-level transformer language model and the synthetic text it learns from.

Large language models are GPT-style transformers: tokens are embedded, pass through ``L``
blocks of causal self-attention and an MLP, and the model predicts the next token. This is
the same architecture (nanoGPT's, with GPT-2's parameter names ``c_attn``, ``c_proj``,
``c_fc``), shrunk until it trains in seconds on one CPU core: characters as tokens, records
of at most ``context - 1`` characters, two layers of width 32 by default (29,568
parameters against GPT-2 small's 124,439,808). One training step over 64 records takes about
15 ms on one core (``train_lm`` runs with one intra-op thread, which is faster here).

The text is generated, never downloaded, by :mod:`course_lib.llm.data` (its functions are
re-exported here): short records in one of several *styles*. Every record is its own
training example, ``"\\n" + text + "\\n"`` padded to ``context + 1`` tokens, so that
differential privacy can protect one record, and the loss ignores the padding.

:func:`gpt2_state_dict` builds a state_dict with GPT-2's exact shapes (124,439,808 random
float32 parameters for GPT-2 small), for encryption at model scale.

Examples
--------
>>> from course_lib.llm.model import LMConfig, make_lm, make_records, encode_records, perplexity
>>> model = make_lm(LMConfig(), seed=0)
>>> model
TinyLM(vocab=48, context=32, width=32, layers=2, heads=4, 29,568 parameters)
>>> records = make_records(3, style="weather", seed=0)
>>> len(records)
3
>>> ids = encode_records(records, context=32)
>>> ids.shape
torch.Size([3, 33])
>>> perplexity(model, ids) > 40  # untrained: about as unsure as a uniform guess over 48
True
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from course_lib._threads import torch_threads
from course_lib._validation import require_int
from course_lib.llm.data import (
    ALPHABET,
    PAD,
    STYLES,
    decode,
    encode,
    encode_records,
    make_records,
)

__all__ = ["ALPHABET", "PAD", "STYLES", "LMConfig", "TinyLM", "make_lm", "encode", "decode",
           "encode_records", "make_records", "lm_loss", "record_log_perplexity", "perplexity",
           "train_lm", "generate", "check_lr", "check_ids", "gpt2_state_dict",
           "gpt2_small_state_dict"]

@dataclass(frozen=True)
class LMConfig:
    """Shape of a :class:`TinyLM`. ``vocab_size`` is the alphabet plus the padding token."""

    context: int = 32
    width: int = 32
    layers: int = 2
    heads: int = 4
    vocab_size: int = len(ALPHABET) + 1

    def __post_init__(self) -> None:
        require_int("context", self.context, minimum=2, maximum=4096)
        require_int("width", self.width, minimum=1, maximum=8192)
        require_int("layers", self.layers, minimum=1, maximum=64)
        require_int("heads", self.heads, minimum=1, maximum=self.width)
        require_int("vocab_size", self.vocab_size, minimum=2)
        if self.width % self.heads:
            raise ValueError(f"`width` must be a multiple of `heads` ({self.heads}), "
                             f"got {self.width}")


class CausalSelfAttention(nn.Module):
    """Multi-head attention where position ``t`` only sees positions ``<= t``."""

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.heads = config.heads
        self.c_attn = nn.Linear(config.width, 3 * config.width)  # queries, keys, values at once
        self.c_proj = nn.Linear(config.width, config.width)
        mask = torch.ones(config.context, config.context).tril().bool()  # (T, T)
        self.register_buffer("causal", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape  # (batch, time, width)
        q, k, v = self.c_attn(x).split(C, dim=2)  # each (B, T, C)
        q = q.view(B, T, self.heads, C // self.heads).transpose(1, 2)  # (B, heads, T, C/heads)
        k = k.view(B, T, self.heads, C // self.heads).transpose(1, 2)  # (B, heads, T, C/heads)
        v = v.view(B, T, self.heads, C // self.heads).transpose(1, 2)  # (B, heads, T, C/heads)
        # softmax(q k^T / sqrt(d)) v, written out: torch.func.vmap (per-example gradients for
        # DP-SGD) has no fast rule for F.scaled_dot_product_attention on the CPU.
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // self.heads)  # (B, heads, T, T)
        att = att.masked_fill(~self.causal[:T, :T], float("-inf")).softmax(dim=-1)
        y = att @ v  # (B, heads, T, C/heads)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C): heads side by side again
        return self.c_proj(y)


class Block(nn.Module):
    """One transformer block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))`` (pre-norm, GPT-2)."""

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.width)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.width)
        self.mlp = nn.ModuleDict(dict(c_fc=nn.Linear(config.width, 4 * config.width),
                                      c_proj=nn.Linear(4 * config.width, config.width)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))  # (B, T, C)
        h = F.gelu(self.mlp["c_fc"](self.ln_2(x)))  # (B, T, 4C)
        return x + self.mlp["c_proj"](h)  # (B, T, C)


class TinyLM(nn.Module):
    """A GPT-style character model: ``ids (B, T) -> next-token logits (B, T, vocab)``.

    Build it with :func:`make_lm`, which initialises it from a ``seed``.
    """

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.width)  # token embeddings
        self.wpe = nn.Embedding(config.context, config.width)  # position embeddings
        self.h = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.ln_f = nn.LayerNorm(config.width)
        self.lm_head = nn.Linear(config.width, config.vocab_size, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        T = ids.shape[1]  # ids: (B, T) token indices, T <= context
        if T > self.config.context:
            raise ValueError(f"sequence length must be <= context ({self.config.context}), "
                             f"got {T}")
        x = self.wte(ids) + self.wpe.weight[:T]  # (B, T, C)
        for block in self.h:
            x = block(x)  # (B, T, C)
        return self.lm_head(self.ln_f(x))  # (B, T, vocab): logits, softmax is in the loss

    def __repr__(self) -> str:
        c = self.config
        params = sum(p.numel() for p in self.parameters())
        return (f"TinyLM(vocab={c.vocab_size}, context={c.context}, width={c.width}, "
                f"layers={c.layers}, heads={c.heads}, {params:,} parameters)")


def make_lm(config: LMConfig | None = None, *, seed: int = 0) -> TinyLM:
    """A freshly initialised :class:`TinyLM`; the same ``seed`` gives the same weights.

    GPT-2's initialisation: weights ``N(0, 0.02)`` (output projections ``0.02 / sqrt(2L)``,
    so the residual stream does not grow with depth), biases 0, LayerNorms ``(1, 0)``. It is
    drawn from a private generator: torch's global random state is neither read nor changed.
    """
    config = LMConfig() if config is None else config
    if not isinstance(config, LMConfig):
        raise TypeError(f"`config` must be an LMConfig, got {type(config).__name__}")
    require_int("seed", seed, minimum=0)
    with torch.device("meta"):  # allocate nothing and draw no random numbers yet
        model = TinyLM(config)
    model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("c_proj.weight"):
                p.normal_(0.0, 0.02 / math.sqrt(2 * config.layers), generator=g)
            elif p.dim() == 2:  # embeddings and the other linear layers
                p.normal_(0.0, 0.02, generator=g)
            elif name.endswith("weight"):  # LayerNorm gains
                p.fill_(1.0)
            else:  # biases
                p.zero_()
        for block in model.h:  # to_empty left the causal-mask buffers uninitialised
            block.attn.causal.copy_(torch.ones(config.context, config.context).tril().bool())
    return model


# --------------------------------------------------------------------------- training

def lm_loss(logits: torch.Tensor, targets: torch.Tensor, *,
            reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of next-token ``logits (B, T, V)`` against ``targets (B, T)``, PAD ignored.

    ``reduction="mean"`` averages over all real tokens; ``"sum_per_record"`` returns each
    record's summed negative log-likelihood in nats, shape ``(B,)``.
    """
    B, T, V = logits.shape
    nll = F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T),  # (B*T, V)
                          ignore_index=PAD, reduction="none").view(B, T)  # (B, T)
    if reduction == "sum_per_record":
        return nll.sum(dim=1)  # (B,)
    if reduction == "mean":
        return nll.sum() / (targets != PAD).sum().clamp(min=1)
    raise ValueError(f"`reduction` must be 'mean' or 'sum_per_record', got {reduction!r}")


def record_log_perplexity(model: nn.Module, ids: torch.Tensor, *,
                          batch_size: int = 2048) -> np.ndarray:
    """``-log Pr(record)`` in nats for every row of ``ids (n, T+1)``, shape ``(n,)``.

    This is the Secret Sharer's "log-perplexity" of a sequence: the lower, the likelier the
    model finds the record. Rows are scored in batches of ``batch_size`` without gradients.
    """
    require_int("batch_size", batch_size, minimum=1)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), torch_threads(1):
            parts = []
            for chunk in ids.split(batch_size):  # (chunk, T+1)
                chunk = chunk[:, :int((chunk != PAD).sum(dim=1).max())]  # drop all-PAD columns
                parts.append(lm_loss(model(chunk[:, :-1]), chunk[:, 1:],
                                     reduction="sum_per_record"))  # (chunk,)
    finally:
        model.train(was_training)
    return torch.cat(parts).double().numpy() if parts else np.zeros(0)


def perplexity(model: nn.Module, ids: torch.Tensor) -> float:
    """Per-character perplexity ``exp(mean NLL)`` over all real tokens of ``ids (n, T+1)``."""
    total = record_log_perplexity(model, ids).sum()
    return float(math.exp(total / int((ids[:, 1:] != PAD).sum())))


def train_lm(model: nn.Module, ids: torch.Tensor, *, epochs: int = 1, batch_size: int = 32,
             lr: float = 3e-3, lr_decay: bool = False, seed: int = 0) -> nn.Module:
    """Train a copy of ``model`` with Adam on records ``ids (n, T+1)``; return the copy.

    Every epoch visits each record once, in an order shuffled with ``seed``, in batches of
    ``batch_size`` (the last one may be smaller). With ``lr_decay`` the step size falls
    linearly from ``lr`` to 0 over the run, which makes where training ends less noisy. Only
    parameters with ``requires_grad`` are trained, so a LoRA-wrapped model trains its adapters
    alone. ``model`` is not modified.
    """
    require_int("epochs", epochs, minimum=0, maximum=100_000)
    require_int("batch_size", batch_size, minimum=1)
    check_lr(lr)
    require_int("seed", seed, minimum=0)
    check_ids(ids)
    local = copy.deepcopy(model)
    local.train()
    optimiser = torch.optim.Adam([p for p in local.parameters() if p.requires_grad], lr=lr)
    steps = epochs * math.ceil(len(ids) / batch_size)
    g = torch.Generator().manual_seed(seed)
    with torch_threads(1):
        for step, batch in enumerate(
                b for _ in range(epochs)
                for b in ids[torch.randperm(len(ids), generator=g)].split(batch_size)):
            if lr_decay:
                optimiser.param_groups[0]["lr"] = lr * (1 - step / steps)
            loss = lm_loss(local(batch[:, :-1]), batch[:, 1:])  # batch: (B, T+1)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    return local


def generate(model: nn.Module, prompt: str, *, max_chars: int = 30) -> str:
    """Greedy completion of ``prompt`` (the likeliest next character, until a newline).

    The prompt is read as the start of a record (``"\n"`` is put before it). Returns the
    characters the model added, without the final newline.
    """
    require_int("max_chars", max_chars, minimum=1)
    ids = encode("\n" + prompt)[None]  # (1, T)
    stop = (PAD, int(encode("\n")[0]))
    context = model.config.context
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad(), torch_threads(1):
            for _ in range(max_chars):
                nxt = int(model(ids[:, -context:])[0, -1].argmax())  # logits (1, T, V) -> id
                if nxt in stop:
                    break
                out.append(nxt)
                ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)  # (1, T + 1)
    finally:
        model.train(was_training)
    return decode(out)


def check_lr(lr: object) -> float:
    """``lr`` as a float, or ``ValueError`` unless it is a positive finite number."""
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < math.inf:
        raise ValueError(f"`lr` must be a positive finite number, got {lr!r}")
    return float(lr)


def check_ids(ids: object, name: str = "ids") -> torch.Tensor:
    """``ids`` if it is a non-empty ``(records, T+1)`` int64 tensor, else TypeError/ValueError."""
    if not isinstance(ids, torch.Tensor) or ids.dtype != torch.long:
        raise TypeError(f"`{name}` must be an int64 tensor from encode_records, "
                        f"got {type(ids).__name__}")
    if ids.dim() != 2 or len(ids) == 0 or ids.shape[1] < 2:
        raise ValueError(f"`{name}` must have shape (records >= 1, context + 1 >= 2), "
                         f"got {tuple(ids.shape)}")
    return ids


# ------------------------------------------------------------------------ model scale

def gpt2_state_dict(*, vocab: int, context: int, width: int, layers: int,
                    seed: int = 0) -> dict[str, torch.Tensor]:
    """A GPT-2-shaped state_dict of random float32 ``N(0, 0.02)`` weights, built locally.

    Hugging Face ``GPT2Model`` names and its Conv1D layout (``c_attn.weight`` is
    ``(width, 3 * width)``). Nothing is downloaded: the values are random, the shapes real.
    """
    for name, value in dict(vocab=vocab, context=context, width=width, layers=layers).items():
        require_int(name, value, minimum=1)
    require_int("seed", seed, minimum=0)
    g = torch.Generator().manual_seed(seed)

    def w(*shape: int) -> torch.Tensor:
        return torch.empty(shape).normal_(0.0, 0.02, generator=g)

    state = {"wte.weight": w(vocab, width), "wpe.weight": w(context, width)}
    for i in range(layers):
        p = f"h.{i}."
        state |= {p + "ln_1.weight": w(width), p + "ln_1.bias": w(width),
                  p + "attn.c_attn.weight": w(width, 3 * width),
                  p + "attn.c_attn.bias": w(3 * width),
                  p + "attn.c_proj.weight": w(width, width), p + "attn.c_proj.bias": w(width),
                  p + "ln_2.weight": w(width), p + "ln_2.bias": w(width),
                  p + "mlp.c_fc.weight": w(width, 4 * width), p + "mlp.c_fc.bias": w(4 * width),
                  p + "mlp.c_proj.weight": w(4 * width, width), p + "mlp.c_proj.bias": w(width)}
    state |= {"ln_f.weight": w(width), "ln_f.bias": w(width)}
    return state


def gpt2_small_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """GPT-2 small's exact shapes: 124,439,808 float32 parameters (498 MB), random weights."""
    return gpt2_state_dict(vocab=50257, context=1024, width=768, layers=12, seed=seed)
