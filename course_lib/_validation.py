"""Small argument checks shared by the public functions (never ``assert``: it vanishes under -O)."""

from __future__ import annotations

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
