"""The byte format behind :mod:`course_lib.crypto.model` (layout documented there).

This module is pure bookkeeping, no I/O and no threads: it checks a state_dict, encodes and
strictly parses the header, derives the per-stream key and nonces, and computes where every
chunk lives (the *plan*). Nothing here trusts a byte it has not been told is authenticated:
:func:`parse_prelude` only checks ranges, and :func:`decode_header` runs on a header that
AES-GCM has already authenticated.
"""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import Iterator, Mapping
from typing import NamedTuple

import torch
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from course_lib.crypto.symmetric import KEY_SIZE, TAG_SIZE
from course_lib.errors import DecryptionError

MAGIC = b"CLMODEL"  # 7 bytes
VERSION = 1
SALT_SIZE = 32
PREFIX_SIZE = 7  # nonce = prefix (7) || chunk index (4, big-endian) || last flag (1)
_PRELUDE = struct.Struct(">7sBII32s")  # magic, version, chunk size, header length, salt
PRELUDE_SIZE = _PRELUDE.size  # 48
MIN_CHUNK_SIZE = 16
MAX_CHUNK_SIZE = 8 * 2**20  # bounds the read buffers: 4 workers x 8 MiB
MAX_HEADER_SIZE = 16 * 2**20
MAX_NDIM = 32
MAX_DIM = 2**62
MAX_CHUNKS = 2**32 - 1
_KDF_LABEL = b"course_lib.crypto.model v1 stream\x00"

# Stored names -> torch dtypes. The bytes are the tensor's memory, little-endian.
DTYPES: dict[str, torch.dtype] = {
    "float64": torch.float64, "float32": torch.float32, "float16": torch.float16,
    "bfloat16": torch.bfloat16, "int64": torch.int64, "int32": torch.int32,
    "int16": torch.int16, "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool,
}
_NAMES = {dtype: name for name, dtype in DTYPES.items()}


class Chunk(NamedTuple):
    """One data chunk: bytes ``[start, start + length)`` of tensor ``tensor`` (its index in
    the header), stored at ``offset`` in the stream as ciphertext + 16-byte tag."""

    index: int
    tensor: int
    start: int
    length: int
    offset: int


class Plan(NamedTuple):
    """Where everything lives in a stream (computed from the header, never read from the file)."""

    names: list[str]
    dtypes: list[torch.dtype]
    shapes: list[tuple[int, ...]]
    nbytes: list[int]
    chunk_size: int
    header_size: int
    num_chunks: int  # data chunks, not counting the header chunk and the final chunk
    total: int  # length of the whole stream in bytes


def _check_platform() -> None:
    if sys.byteorder != "little":  # pragma: no cover - torch has no big-endian CPU build
        raise RuntimeError("course_lib.crypto.model stores little-endian bytes; this machine "
                           "is big-endian")


def collect(state_dict: object) -> list[tuple[str, torch.Tensor]]:
    """Check a state_dict (or ``nn.Module``); return ``[(name, cpu tensor), ...]`` in order.

    Raises TypeError/ValueError naming the offending entry. Tensors are only detached here;
    :func:`byte_view` moves them to the CPU and makes them contiguous, one at a time.
    """
    _check_platform()
    if isinstance(state_dict, torch.nn.Module):
        state_dict = state_dict.state_dict()
    if not isinstance(state_dict, Mapping):
        raise TypeError("`state_dict` must be a mapping of str to torch.Tensor or an "
                        f"nn.Module, got {type(state_dict).__name__}")
    entries = []
    for name, tensor in state_dict.items():
        if not isinstance(name, str):
            raise TypeError(f"`state_dict` keys must be str, got {type(name).__name__} "
                            f"({name!r})")
        where = f"`state_dict[{name!r}]`"
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{where} must be a torch.Tensor, got {type(tensor).__name__}")
        if tensor.layout != torch.strided or tensor.is_nested:
            raise ValueError(f"{where} must be a dense (strided) tensor, got layout "
                             f"{tensor.layout}; convert sparse tensors with .to_dense()")
        if tensor.is_quantized:
            raise ValueError(f"{where} must not be quantized, got dtype {tensor.dtype}; "
                             "dequantize it first")
        if tensor.device.type == "meta":
            raise ValueError(f"{where} is on the meta device and has no data to encrypt")
        if tensor.dtype not in _NAMES:
            raise ValueError(f"{where} has dtype {tensor.dtype}; supported: "
                             f"{', '.join(DTYPES)}")
        entries.append((name, tensor.detach()))
    return entries


def byte_view(tensor: torch.Tensor) -> memoryview:
    """The tensor's bytes as a flat memoryview: zero-copy for a contiguous CPU tensor, else
    one copy (to the CPU and/or into C order)."""
    # resolve_neg: a lazily negated view (torch's "negative bit", e.g. from torch._neg_view)
    # has memory holding -x; .view(torch.uint8) would refuse it. A copy only if the bit is set.
    flat = tensor.cpu().resolve_neg().contiguous().reshape(-1)  # (numel,), a view if possible
    return memoryview(flat.view(torch.uint8).numpy())  # (nbytes,) format "B"


def encode_header(entries: list[tuple[str, torch.Tensor]]) -> bytes:
    """The header: compact UTF-8 JSON ``{"tensors": [[name, dtype, shape], ...]}``."""
    doc = {"tensors": [[name, _NAMES[t.dtype], list(t.shape)] for name, t in entries]}
    try:
        header = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("`state_dict` keys must be encodable as UTF-8 (no lone surrogates)"
                         ) from None
    if len(header) > MAX_HEADER_SIZE:
        raise ValueError(f"`state_dict` header must be at most {MAX_HEADER_SIZE} bytes "
                         f"(names, dtypes, shapes), got {len(header)} bytes")
    return header


def header_text(plan: Plan) -> str:
    """The header of ``plan`` as the JSON text that :func:`encode_header` wrote."""
    doc = {"tensors": [[name, _NAMES[dtype], list(shape)]
                       for name, dtype, shape in zip(plan.names, plan.dtypes, plan.shapes)]}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate key")
    return dict(pairs)


def _reject(_: str) -> None:
    raise ValueError("floats, NaN and Infinity are not allowed in the header")


def decode_header(header: bytes) -> tuple[list[str], list[torch.dtype], list[tuple[int, ...]]]:
    """Strictly parse an (already authenticated) header; anything unexpected -> DecryptionError.

    Accepted: exactly ``{"tensors": [...]}``; each entry ``[str, known dtype name, [int, ...]]``
    with at most 32 dimensions, each in ``[0, 2**62]``; names unique.
    """
    try:
        doc = json.loads(header.decode("utf-8"), object_pairs_hook=_no_duplicates,
                         parse_float=_reject, parse_constant=_reject)
        if not isinstance(doc, dict) or set(doc) != {"tensors"}:
            raise ValueError("bad top level")
        items = doc["tensors"]
        if not isinstance(items, list):
            raise ValueError("bad tensor list")
        names, dtypes, shapes = [], [], []
        for item in items:
            if not (isinstance(item, list) and len(item) == 3):
                raise ValueError("bad entry")
            name, dtype, shape = item
            if not (isinstance(name, str) and isinstance(dtype, str) and dtype in DTYPES
                    and isinstance(shape, list) and len(shape) <= MAX_NDIM
                    and all(type(d) is int and 0 <= d <= MAX_DIM for d in shape)):
                raise ValueError("bad entry")
            names.append(name)
            dtypes.append(DTYPES[dtype])
            shapes.append(tuple(shape))
        if len(set(names)) != len(names):
            raise ValueError("duplicate name")
    except (ValueError, TypeError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise DecryptionError() from None
    return names, dtypes, shapes


def make_plan(names: list[str], dtypes: list[torch.dtype], shapes: list[tuple[int, ...]], *,
              chunk_size: int, header_size: int) -> Plan:
    """Count the chunks and the stream length with arithmetic only (nothing is allocated).

    Each tensor is cut into chunks of at most ``chunk_size`` bytes; chunks never span two
    tensors, so every chunk encrypts from, and decrypts into, one tensor's memory.
    """
    nbytes = []
    for dtype, shape in zip(dtypes, shapes):
        numel = 1
        for d in shape:
            numel *= d
        nbytes.append(numel * dtype.itemsize)
    num_chunks = sum(-(-size // chunk_size) for size in nbytes)
    total = (PRELUDE_SIZE + header_size + TAG_SIZE + sum(nbytes)
             + TAG_SIZE * num_chunks + TAG_SIZE)
    return Plan(names, dtypes, shapes, nbytes, chunk_size, header_size, num_chunks, total)


def iter_chunks(plan: Plan) -> Iterator[Chunk]:
    """The data chunks in stream order. Index 0 is the header chunk, data chunks are
    1..n, and n+1 is the empty final chunk at ``plan.total - 16``."""
    index, offset = 1, PRELUDE_SIZE + plan.header_size + TAG_SIZE
    for t, size in enumerate(plan.nbytes):
        for start in range(0, size, plan.chunk_size):
            length = min(plan.chunk_size, size - start)
            yield Chunk(index, t, start, length, offset)
            index += 1
            offset += length + TAG_SIZE


def pack_prelude(chunk_size: int, header_size: int, salt: bytes) -> bytes:
    return _PRELUDE.pack(MAGIC, VERSION, chunk_size, header_size, salt)


def parse_prelude(prelude: bytes | memoryview) -> tuple[int, int, bytes]:
    """``(chunk_size, header_size, salt)``; wrong magic, version or ranges -> DecryptionError.

    The values are not yet authenticated: the prelude is the associated data of the header
    chunk, so they are confirmed only once that chunk decrypts.
    """
    if len(prelude) != PRELUDE_SIZE:
        raise DecryptionError()
    magic, version, chunk_size, header_size, salt = _PRELUDE.unpack(prelude)
    if (magic != MAGIC or version != VERSION
            or not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE
            or not 2 <= header_size <= MAX_HEADER_SIZE):
        raise DecryptionError()
    return chunk_size, header_size, salt


def stream_keys(key: bytes, salt: bytes, associated_data: bytes) -> tuple[bytes, bytes]:
    """HKDF-SHA256(key, salt, label || associated_data) -> (AES-256 key, 7-byte nonce prefix).

    A fresh salt per stream gives every stream its own key, so nonces built from a counter
    never repeat under one key, however many models are encrypted under the master key.
    """
    okm = HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE + PREFIX_SIZE, salt=salt,
               info=_KDF_LABEL + bytes(associated_data)).derive(bytes(key))
    return okm[:KEY_SIZE], okm[KEY_SIZE:]


def nonce(prefix: bytes, index: int, last: bool) -> bytes:
    """The STREAM nonce: prefix || index (uint32, big-endian) || last flag (0x00 or 0x01)."""
    return prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")
