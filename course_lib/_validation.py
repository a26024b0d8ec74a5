"""Small argument checks shared by the public functions (never ``assert``: it vanishes under -O)."""

from __future__ import annotations

import math
import numbers
from typing import Any

BytesLike = (bytes, bytearray, memoryview)


def require_bytes(name: str, value: Any) -> bytes | bytearray | memoryview:
    """Return ``value`` if it is bytes-like, else raise ``TypeError`` naming ``name``.

    A ``str`` is refused on purpose: text has no single byte encoding, so the caller must
    choose one (``text.encode("utf-8")``).
    """
    if isinstance(value, BytesLike):
        return value
    hint = " (encode text first, e.g. text.encode('utf-8'))" if isinstance(value, str) else ""
    raise TypeError(f"`{name}` must be bytes, got {type(value).__name__}{hint}")


def require_int(name: str, value: Any, *, minimum: int | None = None,
                maximum: int | None = None) -> int:
    """Return ``value`` if it is an int within the bounds, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an int, got {type(value).__name__}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        lo = "-inf" if minimum is None else minimum
        hi = "inf" if maximum is None else maximum
        raise ValueError(f"`{name}` must be an int in [{lo}, {hi}], got {value}")
    return value


def require_real(name: str, value: Any, *, minimum: float | None = None,
                 maximum: float | None = None, allow_minimum: bool = True,
                 allow_maximum: bool = True) -> float:
    """Return ``value`` as a float if it is a finite real number within the bounds.

    ``allow_minimum``/``allow_maximum`` say whether each bound itself is allowed (closed or
    open interval). ``bool`` is refused: ``True`` is an int to Python, never a learning rate.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number, got {type(value).__name__}")
    x = float(value)
    low_ok = minimum is None or (x >= minimum if allow_minimum else x > minimum)
    high_ok = maximum is None or (x <= maximum if allow_maximum else x < maximum)
    if not math.isfinite(x) or not low_ok or not high_ok:
        lo = "(-inf" if minimum is None else ("[" if allow_minimum else "(") + f"{minimum:g}"
        hi = "inf)" if maximum is None else f"{maximum:g}" + ("]" if allow_maximum else ")")
        kind = "a number" if minimum is not None and maximum is not None else "a finite number"
        raise ValueError(f"`{name}` must be {kind} in {lo}, {hi}, got {value!r}")
    return x


def require_probability(name: str, value: Any, *, include_zero: bool = False,
                        include_one: bool = True) -> float:
    """A number in (0, 1], or with the flags [0, 1], (0, 1) or [0, 1)."""
    return require_real(name, value, minimum=0.0, maximum=1.0, allow_minimum=include_zero,
                        allow_maximum=include_one)


def require_choice(name: str, value: Any, choices: tuple[Any, ...]) -> Any:
    """Return ``value`` if it is one of ``choices``, else a ValueError listing them."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}, got {value!r}")
    return value
