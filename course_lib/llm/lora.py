"""LoRA: fine-tune a frozen model through small low-rank adapters (Hu et al. 2021).

A pre-trained weight ``W`` (``out x in``) stays frozen; the layer learns a low-rank change

    y = x W^T + b + (alpha / r) * x A^T B^T,      A: (r, in),  B: (out, r),  r << min(in, out)

``A`` starts random and ``B`` at zero, so a freshly wrapped model computes exactly what the
base model does. Only ``A`` and ``B`` train: ``r * (in + out)`` numbers per layer instead of
``in * out``. In federated fine-tuning they are also all that travels, which is what makes it
cheap (:mod:`course_lib.llm.federated`). After training, :func:`merge_lora` folds the
product into the weight, ``W' = W + (alpha / r) B A``, and the adapters disappear.

:class:`LoRALinear` *is* an ``nn.Linear`` (as in Microsoft's ``loralib``), so the base
weights keep their names (``...c_attn.weight``) and the adapters sit beside them
(``...c_attn.lora_A``, ``...c_attn.lora_B``).

Examples
--------
>>> import torch
>>> from course_lib.llm.model import make_lm
>>> from course_lib.llm.lora import add_lora, lora_state_dict
>>> base = make_lm(seed=0)
>>> tuned = add_lora(base, rank=4, seed=0)
>>> ids = torch.zeros(1, 5, dtype=torch.long)
>>> torch.equal(tuned(ids), base(ids))  # B = 0: the adapters change nothing yet
True
>>> sorted(lora_state_dict(tuned))[:2]
['h.0.attn.c_attn.lora_A', 'h.0.attn.c_attn.lora_B']
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from course_lib._validation import require_int

__all__ = ["LoRALinear", "DEFAULT_TARGETS", "add_lora", "lora_state_dict", "load_lora_state_dict",
           "merge_lora", "lora_parameter_count", "count_lora_parameters"]

DEFAULT_TARGETS = ("attn.c_attn", "attn.c_proj")  # LoRA's original choice: attention only


class LoRALinear(nn.Linear):
    """An ``nn.Linear`` with a frozen weight and bias plus trainable ``lora_A`` and ``lora_B``."""

    def __init__(self, in_features: int, out_features: int, *, rank: int, alpha: float,
                 bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.rank = rank
        self.scaling = alpha / rank
        self.lora_A = nn.Parameter(torch.zeros(rank, in_features))  # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank))  # (out, r)
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, rank: int, alpha: float,
                    generator: torch.Generator) -> LoRALinear:
        """Wrap a copy of ``linear``'s weights; ``A`` drawn from ``generator``, ``B = 0``."""
        with torch.device("meta"):  # the base weights are copied in: no default init
            layer = cls(linear.in_features, linear.out_features, rank=rank, alpha=alpha,
                        bias=linear.bias is not None)
        layer.to_empty(device=linear.weight.device)
        with torch.no_grad():
            layer.weight.copy_(linear.weight)
            if linear.bias is not None:
                layer.bias.copy_(linear.bias)
            bound = 1.0 / math.sqrt(linear.in_features)  # nn.Linear's (and LoRA's) range
            layer.lora_A.uniform_(-bound, bound, generator=generator)
            layer.lora_B.zero_()
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = F.linear(x, self.weight, self.bias)  # (..., out)
        update = (x @ self.lora_A.T) @ self.lora_B.T  # (..., r) -> (..., out)
        return base + self.scaling * update

    def merged_weight(self) -> torch.Tensor:
        """``W + (alpha / r) B A``, shape ``(out, in)``."""
        return self.weight + self.scaling * (self.lora_B @ self.lora_A)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, scaling={self.scaling:g}"


def _check(rank: int, alpha: float, targets: Sequence[str]) -> tuple[str, ...]:
    require_int("rank", rank, minimum=1, maximum=4096)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) \
            or not 0 < alpha < math.inf:
        raise ValueError(f"`alpha` must be a positive finite number, got {alpha!r}")
    if isinstance(targets, str) or not all(isinstance(t, str) for t in targets) or not targets:
        raise ValueError(f"`targets` must be a non-empty sequence of module-name suffixes, "
                         f"got {targets!r}")
    return tuple(targets)


def add_lora(model: nn.Module, *, rank: int = 4, alpha: float | None = None,
             targets: Sequence[str] = DEFAULT_TARGETS, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with every ``nn.Linear`` named ``...<target>`` wrapped in LoRA.

    Parameters
    ----------
    model : nn.Module
        Not modified.
    rank : int
        ``r``, the adapters' inner dimension.
    alpha : float or None
        Scale numerator; ``None`` means ``alpha = rank`` (scaling 1).
    targets : sequence of str
        Suffixes of the module names to adapt, e.g. ``("attn.c_attn", "mlp.c_fc")``.
    seed : int
        Seeds the ``A`` matrices.

    Returns
    -------
    nn.Module
        Every parameter frozen (``requires_grad=False``) except the ``lora_A``/``lora_B``.

    Raises
    ------
    ValueError
        If no ``nn.Linear`` matches ``targets``, or an argument is out of range.
    """
    alpha = float(rank) if alpha is None else alpha
    targets = _check(rank, alpha, targets)
    require_int("seed", seed, minimum=0)
    adapted = copy.deepcopy(model)
    for p in adapted.parameters():
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(seed)
    matches = [name for name, m in adapted.named_modules()
               if type(m) is nn.Linear and name.endswith(targets)]
    if not matches:
        raise ValueError(f"`targets` {targets!r} match no nn.Linear of the model")
    for name in matches:
        parent_name, _, child = name.rpartition(".")
        parent = adapted.get_submodule(parent_name)
        setattr(parent, child, LoRALinear.from_linear(getattr(parent, child), rank=rank,
                                                      alpha=alpha, generator=g))
    return adapted


def _is_adapter(name: str) -> bool:
    return name.endswith((".lora_A", ".lora_B"))


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapters: ``{name: tensor}`` for every ``lora_A`` and ``lora_B`` (copies)."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items() if _is_adapter(k)}
    if not state:
        raise ValueError("`model` has no LoRA adapters; wrap it with add_lora first")
    return state


def load_lora_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Copy adapter tensors into ``model`` in place; the keys must be exactly its adapters."""
    own = {k: v for k, v in model.state_dict().items() if _is_adapter(k)}
    if not isinstance(state, Mapping):
        raise TypeError(f"`state` must be a mapping of names to tensors, "
                        f"got {type(state).__name__}")
    if set(state) != set(own):
        raise ValueError(f"`state` keys must be the model's adapters: missing "
                         f"{sorted(set(own) - set(state))}, unexpected "
                         f"{sorted(set(state) - set(own))}")
    for k, tensor in state.items():
        if not isinstance(tensor, torch.Tensor) or tensor.shape != own[k].shape:
            raise ValueError(f"`state`[{k!r}] must be a tensor of shape {tuple(own[k].shape)}, "
                             f"got {getattr(tensor, 'shape', type(tensor).__name__)}")
    with torch.no_grad():
        for k, tensor in state.items():
            own[k].copy_(tensor)


def merge_lora(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with each :class:`LoRALinear` folded into a plain ``nn.Linear``.

    The merged model computes the same function (to float rounding), has the base model's
    state_dict keys, and costs nothing extra at inference. All its parameters are trainable.
    """
    merged = copy.deepcopy(model)
    layers = [name for name, m in merged.named_modules() if isinstance(m, LoRALinear)]
    if not layers:
        raise ValueError("`model` has no LoRA adapters to merge")
    for name in layers:
        parent_name, _, child = name.rpartition(".")
        parent = merged.get_submodule(parent_name)
        lora = getattr(parent, child)
        with torch.device("meta"):
            plain = nn.Linear(lora.in_features, lora.out_features, bias=lora.bias is not None)
        plain.to_empty(device=lora.weight.device)
        with torch.no_grad():
            plain.weight.copy_(lora.merged_weight())
            if lora.bias is not None:
                plain.bias.copy_(lora.bias)
        setattr(parent, child, plain)
    for p in merged.parameters():
        p.requires_grad_(True)
    return merged


def lora_parameter_count(model: nn.Module) -> tuple[int, int]:
    """``(adapter parameters, all parameters)`` of a LoRA-wrapped model."""
    adapters = sum(p.numel() for n, p in model.named_parameters() if _is_adapter(n))
    return adapters, sum(p.numel() for p in model.parameters())


def count_lora_parameters(state_dict: Mapping[str, torch.Tensor], *, rank: int,
                          targets: Sequence[str] = DEFAULT_TARGETS) -> int:
    """Adapter parameters LoRA of ``rank`` would add to the 2-D weights ``<target>.weight``.

    ``r * (in + out)`` per matching weight, whichever way round it is stored (GPT-2's Conv1D
    keeps ``(in, out)``, ``nn.Linear`` ``(out, in)``): the size of what federated LoRA sends,
    for any state_dict, e.g. :func:`course_lib.llm.model.gpt2_small_state_dict`'s.
    """
    targets = _check(rank, 1.0, targets)
    weights = [t for k, t in state_dict.items()
               if k.endswith(".weight") and k[:-len(".weight")].endswith(targets) and t.dim() == 2]
    if not weights:
        raise ValueError(f"`targets` {targets!r} match no 2-D weight of the state_dict")
    return sum(rank * (t.shape[0] + t.shape[1]) for t in weights)
