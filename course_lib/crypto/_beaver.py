"""Beaver-triple multiplication of additively shared values, for two non-colluding parties.

Adding shares is local, multiplying is not: ``(x0 + x1)(y0 + y1)`` has cross terms that no
single party can compute. A trusted *dealer* (or an offline protocol) hands each party shares
of a random triple ``a, b, c = a*b`` that is independent of the data. Then, online::

    1. party i publishes  e_i = x_i - a_i   and   f_i = y_i - b_i
    2. both learn         E = x - a         and   F = y - b       (one-time pads of x and y)
    3. party i computes   z_i = c_i + E*b_i + a_i*F  (+ E*F for party 0 only)

and ``z_0 + z_1 = c + E*b + a*F + E*F = (E + a)(F + b) = x*y``. ``E`` and ``F`` are uniformly
random because ``a`` and ``b`` are, so the opened values reveal nothing about ``x`` or ``y``; a
triple must never be reused (two openings with one ``a`` reveal ``x - x'``). The same algebra
works for a matrix product with ``a @ b = c`` and ``@`` in place of ``*``, which is what a
linear layer needs.

Fixed point: if ``x`` and ``y`` carry ``f`` fractional bits, the product carries ``2f``; a
further multiplication would need truncation, which this teaching module does not implement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from course_lib.crypto._field import PRIME, check_prime, field_mod, random_field_elements

__all__ = ["BeaverTriple", "make_beaver_triples", "beaver_product"]

_OPS = {"mul": lambda u, v: u * v, "matmul": lambda u, v: u @ v}


class BeaverTriple(NamedTuple):
    """One party's shares of a triple: ``a``, ``b`` and ``c = a * b`` (or ``a @ b``)."""

    a: np.ndarray
    b: np.ndarray
    c: np.ndarray


def _op(op: str) -> Any:
    if op not in _OPS:
        raise ValueError(f"`op` must be one of {sorted(_OPS)}, got {op!r}")
    return _OPS[op]


def _split(value: np.ndarray, prime: int, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    share0 = random_field_elements(value.shape, prime=prime, unsafe_seed=seed)
    return share0, field_mod(value - share0, prime)


def make_beaver_triples(x_shape: tuple[int, ...], y_shape: tuple[int, ...], *, op: str = "mul",
                        prime: int = PRIME, unsafe_seed: int | None = None
                        ) -> tuple[BeaverTriple, BeaverTriple]:
    """The dealer: a random triple for inputs of the given shapes, split into two shares.

    Parameters
    ----------
    x_shape, y_shape : tuple of int
        Shapes of the two factors (equal for ``"mul"``; ``(m, k)`` and ``(k, n)`` for
        ``"matmul"``).
    op : {"mul", "matmul"}
        Elementwise or matrix product.
    prime : int
        The field's prime (default ``2**127 - 1``).
    unsafe_seed : int, optional
        Reproducible triples for demonstrations only (predictable triples unmask the inputs).
    """
    prime, product = check_prime(prime), _op(op)

    def seed(i: int) -> int | None:
        return None if unsafe_seed is None else unsafe_seed * 7 + i

    a = random_field_elements(x_shape, prime=prime, unsafe_seed=seed(0))
    b = random_field_elements(y_shape, prime=prime, unsafe_seed=seed(1))
    try:
        c = field_mod(product(a, b), prime)
    except ValueError as exc:
        raise ValueError(f"shapes {tuple(x_shape)} and {tuple(y_shape)} do not fit op={op!r}") \
            from exc
    (a0, a1), (b0, b1), (c0, c1) = (_split(v, prime, seed(2 + i)) for i, v in enumerate((a, b, c)))
    return BeaverTriple(a0, b0, c0), BeaverTriple(a1, b1, c1)


def beaver_product(x_shares: Sequence[Any], y_shares: Sequence[Any],
                   triples: Sequence[BeaverTriple], *, op: str = "mul", prime: int = PRIME
                   ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Run the two-party protocol; return ``((z_0, z_1), (E, F))``.

    ``z_0 + z_1 = x * y`` (or ``x @ y``) modulo ``prime``. ``(E, F)`` are the only values the
    parties learn besides their own shares: masked copies of ``x`` and ``y``, returned so a
    notebook can show that they look random.
    """
    prime, product = check_prime(prime), _op(op)
    if not (len(x_shares) == len(y_shares) == len(triples) == 2):
        raise ValueError("`x_shares`, `y_shares` and `triples` must each hold 2 parties' shares")
    x = [np.asarray(s, dtype=object) for s in x_shares]
    y = [np.asarray(s, dtype=object) for s in y_shares]
    # 1-2. each party masks its shares with its triple shares; the masked values are opened
    e = [field_mod(x[i] - triples[i].a, prime) for i in range(2)]
    f = [field_mod(y[i] - triples[i].b, prime) for i in range(2)]
    E, F = field_mod(e[0] + e[1], prime), field_mod(f[0] + f[1], prime)
    # 3. local computation; only party 0 adds the public term E*F
    z = [field_mod(triples[i].c + product(E, triples[i].b) + product(triples[i].a, F), prime)
         for i in range(2)]
    z[0] = field_mod(z[0] + product(E, F), prime)
    return (z[0], z[1]), (E, F)
