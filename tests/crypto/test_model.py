"""Model-parameter encryption: round trips, every tampering, no pickle, atomic files, memory.

The format is also decoded independently from its documentation (pycryptodome's AES-GCM
and HKDF), so the module docstring is checked, not just our own inverse.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import textwrap
import threading
import warnings

import numpy as np
import pytest
import torch
from Crypto.Cipher import AES as PycryptodomeAES
from Crypto.Hash import SHA256
from Crypto.Protocol.KDF import HKDF as PycryptodomeHKDF

from course_lib.crypto import _model_stream, _parallel, model, symmetric
from course_lib.errors import DecryptionError

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64,
          torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool]


@pytest.fixture
def key():
    return symmetric.generate_key()


@pytest.fixture
def small_chunks(monkeypatch):
    """16-byte chunks, so that a tiny model spans many chunks."""
    monkeypatch.setattr(model, "_CHUNK_SIZE", 16)


def bits(t: torch.Tensor) -> torch.Tensor:
    """A tensor's raw bytes (NaN-safe equality)."""
    return t.contiguous().reshape(-1).view(torch.uint8)


def random_tensor(dtype: torch.dtype, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=g).bool()
    if dtype.is_floating_point:
        t = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
        if t.numel() >= 4:  # special values must survive bit for bit
            t.view(-1)[:4] = torch.tensor([float("nan"), float("inf"), -0.0, -float("inf")])
        return t
    info = torch.iinfo(dtype)
    return torch.randint(info.min, info.max, shape, generator=g, dtype=dtype)


def assert_same(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for name in a:
        assert b[name].dtype == a[name].dtype, name
        assert b[name].shape == a[name].shape, name
        assert torch.equal(bits(b[name]), bits(a[name])), name


def round_trip(state_dict, key, via, tmp_path, ad=b""):
    if via == "memory":
        return model.decrypt_state_dict(model.encrypt_state_dict(state_dict, key,
                                                                 associated_data=ad),
                                        key, associated_data=ad)
    path = tmp_path / "model.enc"
    model.save_encrypted(state_dict, path, key, associated_data=ad)
    return model.load_encrypted(path, key, associated_data=ad)


def small_state() -> dict[str, torch.Tensor]:
    return {"w": random_tensor(torch.float32, (4, 3)), "b": random_tensor(torch.int8, (5,)),
            "s": torch.tensor(7, dtype=torch.int64), "e": torch.empty(0, 2)}


# ----------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("via", ["memory", "file"])
def test_every_dtype_shape_and_order_round_trips_bit_exactly(key, via, tmp_path):
    state = {f"t_{dt}".replace("torch.", ""): random_tensor(dt, (3, 5), seed=i)
             for i, dt in enumerate(DTYPES)}
    state |= {"zero_dim": torch.tensor(2.5), "zero_dim_bool": torch.tensor(True),
              "empty": torch.empty(0), "empty_3d": torch.empty(3, 0, 2, dtype=torch.int32),
              "big": random_tensor(torch.bfloat16, (70, 130))}
    assert_same(state, round_trip(state, key, via, tmp_path, ad=b"arch"))


@pytest.mark.parametrize("via", ["memory", "file"])
def test_non_contiguous_inputs(key, via, tmp_path, small_chunks):
    base = random_tensor(torch.float32, (6, 8))
    state = {"transposed": base.t(), "strided": base[::2, 1::3], "offset": base[3:],
             "expanded": torch.tensor([1.0, 2.0]).expand(4, 2), "bf16_t": base.bfloat16().t()}
    assert not state["transposed"].is_contiguous()
    out = round_trip(state, key, via, tmp_path)
    assert_same(state, out)
    assert all(t.is_contiguous() for t in out.values())


@pytest.mark.parametrize("via", ["memory", "file"])
def test_module_input_keeps_names_order_and_predictions(key, via, tmp_path):
    torch.manual_seed(0)  # test-local: the library itself never seeds
    net = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.BatchNorm1d(6), torch.nn.ReLU(),
                              torch.nn.Linear(6, 3)).eval()
    out = round_trip(net, key, via, tmp_path)
    assert list(out) == list(net.state_dict())
    assert_same(net.state_dict(), out)
    twin = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.BatchNorm1d(6), torch.nn.ReLU(),
                               torch.nn.Linear(6, 3)).eval()
    twin.load_state_dict(out)
    x = torch.randn(5, 8)
    assert torch.equal(twin(x), net(x))


def test_empty_state_dict_and_multi_chunk_tensors(key, tmp_path, small_chunks):
    assert model.decrypt_state_dict(model.encrypt_state_dict({}, key), key) == {}
    state = {"a": random_tensor(torch.float64, (7, 3)), "z": torch.empty(0)}  # 168 B: 11 chunks
    assert_same(state, round_trip(state, key, "file", tmp_path))


def test_memory_blob_and_file_hold_the_same_format(key, tmp_path):
    state = small_state()
    path = tmp_path / "m.enc"
    model.save_encrypted(state, path, key)
    assert_same(state, model.decrypt_state_dict(path.read_bytes(), key))
    path.write_bytes(model.encrypt_state_dict(state, key))
    assert_same(state, model.load_encrypted(path, key))


def test_output_is_fresh_every_time_and_tiles_the_buffer(key, monkeypatch):
    """Every byte of the (uninitialised) output buffer is written: two runs with the same
    salt into buffers pre-filled with different garbage give identical streams."""
    state = {"w": random_tensor(torch.float32, (40, 30))}
    assert model.encrypt_state_dict(state, key) != model.encrypt_state_dict(state, key)
    monkeypatch.setattr(os, "urandom", lambda n: b"\x07" * n)
    blobs = []
    for fill in (0x00, 0xFF):
        monkeypatch.setattr(_parallel, "new_bytearray", lambda n, f=fill: bytearray([f]) * n)
        blobs.append(model.encrypt_state_dict(state, key))
    assert blobs[0] == blobs[1]


def test_threaded_and_sequential_paths_agree(key, tmp_path, monkeypatch, small_chunks):
    monkeypatch.setattr(_parallel, "default_workers", lambda nbytes: 3)  # force worker threads
    state = {"a": random_tensor(torch.float32, (9, 11)), "b": random_tensor(torch.int64, (13,))}
    blob = model.encrypt_state_dict(state, key)
    assert_same(state, model.decrypt_state_dict(blob, key))
    assert_same(state, round_trip(state, key, "file", tmp_path))
    blob[200] ^= 1  # a data chunk, decrypted by a worker thread
    with pytest.raises(DecryptionError):
        model.decrypt_state_dict(blob, key)
    monkeypatch.setattr(_parallel, "POSITIONAL_IO", False)  # seek + read/write, one worker
    assert_same(state, round_trip(state, key, "file", tmp_path))


# --------------------------------------------------------------- the documented byte format

def test_an_independent_decoder_reads_the_documented_format(key, small_chunks):
    state = {"w": random_tensor(torch.float32, (3, 4)), "n": torch.tensor([1, 2, 3])}
    ad = b"Linear(4, 3)"
    blob = bytes(model.encrypt_state_dict(state, key, associated_data=ad))
    magic, version, chunk, hlen, salt = struct.unpack(">7sBII32s", blob[:48])
    assert (magic, version, chunk) == (b"CLMODEL", 1, 16)
    okm = PycryptodomeHKDF(key, 39, salt, SHA256,
                           context=b"course_lib.crypto.model v1 stream\x00" + ad)
    stream_key, prefix = okm[:32], okm[32:]

    def open_chunk(i, sealed, aad=b"", last=False):
        nonce = prefix + i.to_bytes(4, "big") + (b"\x01" if last else b"\x00")
        cipher = PycryptodomeAES.new(stream_key, PycryptodomeAES.MODE_GCM, nonce=nonce)
        cipher.update(aad)
        return cipher.decrypt_and_verify(sealed[:-16], sealed[-16:])

    header = json.loads(open_chunk(0, blob[48:64 + hlen], aad=blob[:48]))
    assert header == {"tensors": [["w", "float32", [3, 4]], ["n", "int64", [3]]]}
    pos, index, data = 64 + hlen, 1, []
    for size in (48, 24):
        for start in range(0, size, chunk):
            n = min(chunk, size - start)
            data.append(open_chunk(index, blob[pos:pos + n + 16]))
            pos, index = pos + n + 16, index + 1
    assert open_chunk(index, blob[pos:], last=True) == b"" and len(blob) == pos + 16
    plain = b"".join(data)
    assert plain == state["w"].numpy().tobytes() + state["n"].numpy().tobytes()


def test_describe_lists_regions_that_tile_the_blob(key, small_chunks):
    blob = model.encrypt_state_dict(small_state(), key)
    regions = model.describe(blob, key)
    assert regions[0] == model.Region(0, 7, "magic b'CLMODEL'")
    assert all(a.offset + a.length == b.offset for a, b in zip(regions, regions[1:]))
    assert regions[-1].offset + regions[-1].length == len(blob)
    assert '"w","float32",[4,3]' in regions[5].field


# ------------------------------------------------------------------------------- tampering

def test_every_single_byte_flip_of_a_blob_is_caught(key, small_chunks):
    blob = model.encrypt_state_dict(small_state(), key, associated_data=b"ad")
    rng = np.random.default_rng(0)
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= int(rng.integers(1, 256))
        with pytest.raises(DecryptionError):
            model.decrypt_state_dict(bad, key, associated_data=b"ad")


def test_every_single_byte_flip_and_truncation_of_a_file_is_caught(key, tmp_path, small_chunks):
    path = tmp_path / "m.enc"
    model.save_encrypted(small_state(), path, key)
    good = path.read_bytes()
    assert len(good) > 300  # header + a dozen chunks
    for i in range(len(good)):
        bad = bytearray(good)
        bad[i] ^= 0x01 if i % 2 else 0x80
        path.write_bytes(bad)
        with pytest.raises(DecryptionError):
            model.load_encrypted(path, key)
    for n in range(len(good)):
        path.write_bytes(good[:n])
        with pytest.raises(DecryptionError):
            model.load_encrypted(path, key)
        with pytest.raises(DecryptionError):
            model.decrypt_state_dict(good[:n], key)


def _chunks(blob, key):
    """(offset, length) of every chunk after the header, final chunk included."""
    return [(r.offset, r.length) for r in model.describe(blob, key)[6:]]


def test_reordered_duplicated_dropped_and_extended_streams_are_caught(key, tmp_path,
                                                                      small_chunks):
    state = {"w": random_tensor(torch.float32, (16,))}  # 64 bytes: four 16-byte chunks
    blob = bytes(model.encrypt_state_dict(state, key))
    (a, n), (b, _), (c, _), (d, _), (f, _) = _chunks(blob, key)
    assert n == 32 and b == a + 32 and f == len(blob) - 16
    piece = {k: blob[o:o + 32] for k, o in zip("abcd", (a, b, c, d))}
    head, final = blob[:a], blob[f:]
    variants = {
        "swapped": head + piece["b"] + piece["a"] + piece["c"] + piece["d"] + final,
        "duplicated": head + piece["a"] + piece["a"] + piece["c"] + piece["d"] + final,
        "duplicated_extra": head + piece["a"] + piece["b"] + piece["b"] + piece["c"]
        + piece["d"] + final,
        "dropped_final": blob[:f],
        "dropped_last_data": head + piece["a"] + piece["b"] + piece["c"] + final,
        "final_moved": head + piece["a"] + piece["b"] + piece["c"] + final + piece["d"],
        "extended_1": blob + b"\x00",
        "extended_tag": blob + final,
        "extended_block": blob + os.urandom(4096),
    }
    path = tmp_path / "m.enc"
    for name, bad in variants.items():
        with pytest.raises(DecryptionError):
            model.decrypt_state_dict(bad, key)
        path.write_bytes(bad)
        with pytest.raises(DecryptionError, match="decryption failed"):
            model.load_encrypted(path, key)
        assert name  # (the loop names the variant in a failure's traceback)


def test_header_spliced_from_another_stream_is_caught(key):
    one = bytes(model.encrypt_state_dict({"w": torch.zeros(8)}, key))
    two = bytes(model.encrypt_state_dict({"w": torch.ones(8)}, key))
    cut = model.describe(one, key)[6].offset  # the first data chunk
    with pytest.raises(DecryptionError):
        model.decrypt_state_dict(one[:cut] + two[cut:], key)


@pytest.mark.parametrize("via", ["memory", "file"])
def test_wrong_key_and_wrong_associated_data_are_caught(key, via, tmp_path):
    state, path = small_state(), tmp_path / "m.enc"
    blob = model.encrypt_state_dict(state, key, associated_data=b"mlp 64-32-10")
    path.write_bytes(blob)
    for k, ad in [(symmetric.generate_key(), b"mlp 64-32-10"), (key, b"mlp 64-32-11"),
                  (key, b"")]:
        with pytest.raises(DecryptionError):
            if via == "memory":
                model.decrypt_state_dict(blob, k, associated_data=ad)
            else:
                model.load_encrypted(path, k, associated_data=ad)


def test_unknown_version_garbage_and_crafted_sizes_are_caught(key):
    blob = bytearray(model.encrypt_state_dict(small_state(), key))
    bad = bytearray(blob)
    bad[7] = 2
    candidates = [bad, b"", b"CLMODEL", os.urandom(200), bytes(blob[:48])]
    huge = bytearray(blob)
    huge[12:16] = (2**31).to_bytes(4, "big")  # header length far over the cap
    tiny_chunk = bytearray(blob)
    tiny_chunk[8:12] = (1).to_bytes(4, "big")
    candidates += [huge, tiny_chunk]
    for bad in candidates:
        with pytest.raises(DecryptionError):
            model.decrypt_state_dict(bad, key)


def test_no_pickle_on_any_read_path(key, tmp_path, monkeypatch, rsa_key):
    state, path = small_state(), tmp_path / "m.enc"
    blob = model.encrypt_state_dict(state, key)
    model.save_encrypted(state, path, key)
    sent = model.encrypt_state_dict_for(state, rsa_key.public_key())

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle used on a read path")

    class ForbiddenUnpickler:
        def __init__(self, *args, **kwargs):
            forbidden()

    for name in ("load", "loads"):
        monkeypatch.setattr(pickle, name, forbidden)
    monkeypatch.setattr(pickle, "Unpickler", ForbiddenUnpickler)
    monkeypatch.setattr(torch, "load", forbidden)
    assert_same(state, model.decrypt_state_dict(blob, key))
    assert_same(state, model.load_encrypted(path, key))
    assert_same(state, model.decrypt_state_dict_with(sent, rsa_key))


# ------------------------------------------------------------------------------- arguments

def _quantized() -> torch.Tensor:
    with warnings.catch_warnings():  # quantized tensors are deprecated, but still exist
        warnings.simplefilter("ignore")
        return torch.quantize_per_tensor(torch.zeros(3), 0.1, 0, torch.quint8)


@pytest.mark.parametrize("make_bad, error, words", [
    (lambda: [torch.zeros(2)], TypeError, "`state_dict` must be a mapping"),
    (lambda: {"w": [1.0, 2.0]}, TypeError, "`state_dict['w']` must be a torch.Tensor, got list"),
    (lambda: {3: torch.zeros(2)}, TypeError, "`state_dict` keys must be str, got int"),
    (lambda: {"s": torch.zeros(3, 3).to_sparse()}, ValueError, "dense (strided)"),
    (lambda: {"q": _quantized()}, ValueError, "must not be quantized"),
    (lambda: {"m": torch.empty(3, device="meta")}, ValueError, "meta device"),
    (lambda: {"c": torch.zeros(3, dtype=torch.complex64)}, ValueError, "supported: float64"),
    (lambda: {"\ud800": torch.zeros(1)}, ValueError, "UTF-8"),
])
def test_bad_state_dicts_name_the_problem(key, tmp_path, make_bad, error, words):
    bad = make_bad()
    with pytest.raises(error) as info:
        model.encrypt_state_dict(bad, key)
    assert words in str(info.value)
    with pytest.raises(error):
        model.save_encrypted(bad, tmp_path / "x.enc", key)
    assert list(tmp_path.iterdir()) == []


def test_bad_keys_and_associated_data(key):
    state = small_state()
    with pytest.raises(ValueError, match="`key` must be 32 bytes"):
        model.encrypt_state_dict(state, key[:16])
    with pytest.raises(TypeError, match="`key` must be bytes"):
        model.decrypt_state_dict(b"x" * 100, "secret")
    with pytest.raises(TypeError, match="`associated_data` must be bytes"):
        model.encrypt_state_dict(state, key, associated_data="mlp")
    with pytest.raises(TypeError, match="`blob` must be bytes"):
        model.decrypt_state_dict(np.zeros(10), key)
    for path in (3, b"model.enc"):  # an int would be opened as a file descriptor
        with pytest.raises(TypeError, match="`path` must be a str or os.PathLike"):
            model.save_encrypted(state, path, key)
        with pytest.raises(TypeError, match="`path` must be a str or os.PathLike"):
            model.load_encrypted(path, key)


# ---------------------------------------------------------------------------- atomic files

@pytest.mark.parametrize("failure", ["fsync", "mid-write", "interrupt"])
def test_failed_save_leaves_no_partial_or_temporary_file(key, tmp_path, monkeypatch,
                                                         small_chunks, failure):
    path = tmp_path / "m.enc"
    old = {"old": torch.arange(5)}
    model.save_encrypted(old, path, key)
    calls = []
    real_write_at = _model_stream.write_at

    def flaky_write_at(*args):
        calls.append(1)
        if len(calls) == 3:  # after the header and one chunk
            raise KeyboardInterrupt if failure == "interrupt" else OSError("disk full")
        return real_write_at(*args)

    def failing_fsync(fd):
        raise OSError("fsync failed")

    if failure == "fsync":
        monkeypatch.setattr(os, "fsync", failing_fsync)
    else:
        monkeypatch.setattr(_model_stream, "write_at", flaky_write_at)
    expected = KeyboardInterrupt if failure == "interrupt" else OSError
    for target in (path, tmp_path / "new.enc"):
        calls.clear()
        with pytest.raises(expected):
            model.save_encrypted(small_state(), target, key)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.enc"]
    monkeypatch.undo()
    assert_same(old, model.load_encrypted(path, key))


def test_save_replaces_an_existing_file_and_accepts_str_paths(key, tmp_path):
    path = str(tmp_path / "m.enc")
    model.save_encrypted({"a": torch.zeros(3)}, path, key)
    model.save_encrypted({"b": torch.ones(2)}, path, key)
    assert list(model.load_encrypted(path, key)) == ["b"]
    assert os.listdir(tmp_path) == ["m.enc"]
    with pytest.raises(FileNotFoundError):
        model.load_encrypted(tmp_path / "missing.enc", key)


# -------------------------------------------------------------------------------- hybrid

def test_hybrid_round_trip_and_failures(rsa_key, other_rsa_key):
    state = {"w": random_tensor(torch.float32, (4, 3))}
    blob = model.encrypt_state_dict_for(state, rsa_key.public_key(), associated_data=b"v1")
    assert blob[:8] == b"CLMWRAP\x01" and int.from_bytes(blob[8:10], "big") == 256
    assert_same(state, model.decrypt_state_dict_with(blob, rsa_key, associated_data=b"v1"))
    with pytest.raises(DecryptionError):
        model.decrypt_state_dict_with(blob, other_rsa_key, associated_data=b"v1")
    with pytest.raises(DecryptionError):
        model.decrypt_state_dict_with(blob, rsa_key, associated_data=b"v2")
    for i in range(len(blob)):  # every byte: magic, version, length, wrapped key, stream
        bad = bytearray(blob)
        bad[i] ^= 0x01
        with pytest.raises(DecryptionError):
            model.decrypt_state_dict_with(bad, rsa_key, associated_data=b"v1")
    for n in (0, 9, 200, 266, len(blob) - 1):
        with pytest.raises(DecryptionError):
            model.decrypt_state_dict_with(blob[:n], rsa_key, associated_data=b"v1")
    with pytest.raises(TypeError, match="public key"):
        model.encrypt_state_dict_for(state, rsa_key)
    with pytest.raises(TypeError, match="`private_key` must be an RSA private key"):
        model.decrypt_state_dict_with(blob, rsa_key.public_key())


# -------------------------------------------------------------------------------- memory

MEMORY_SCRIPT = textwrap.dedent("""
    import gc, json, os, sys, tempfile
    import torch
    from course_lib.crypto import model, symmetric

    def status(field):
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith(field + ":"))

    def peak_growth(fn):
        gc.collect()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak (VmHWM) to the current RSS
        before = status("VmRSS")
        result = fn()
        return status("VmHWM") - before, result

    g = torch.Generator().manual_seed(0)
    # about 200 MB: one 64 MB embedding, 4 MB blocks, small biases, a non-contiguous tensor
    state = {"wte": torch.empty(16384, 1024).uniform_(generator=g),
             "proj_t": torch.empty(1024, 1024).uniform_(generator=g).t()}
    for i in range(32):
        state[f"h{i}.w"] = torch.empty(1024, 1024).uniform_(generator=g)
        state[f"h{i}.b"] = torch.empty(1024).uniform_(generator=g)
    size = sum(t.numel() * t.element_size() for t in state.values())
    key = symmetric.generate_key()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.enc")
        save, _ = peak_growth(lambda: model.save_encrypted(state, path, key))
        load, loaded = peak_growth(lambda: model.load_encrypted(path, key))
    ok = all(torch.equal(loaded[k], v) for k, v in state.items())
    print(json.dumps({"size": size, "save": save, "load": load, "ok": ok}))
""")


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
def test_save_and_load_memory_stay_bounded():
    done = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT], capture_output=True,
                          text=True, timeout=120, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    mib, slack = 2**20, 16 * 2**20  # slack: interpreter noise, allocator rounding
    assert result["ok"]
    assert result["size"] > 190 * mib
    assert result["save"] <= 64 * mib + slack, result
    assert result["load"] <= result["size"] + 64 * mib + slack, result


def test_a_lazily_negated_tensor_encrypts_its_values(key):
    # torch's "negative bit" (a view whose memory holds -x): .view(torch.uint8) refuses it,
    # which used to escape as RuntimeError("... negative bit ...")
    negated = torch._neg_view(torch.arange(6.0).reshape(2, 3))
    assert negated.is_neg()
    restored = model.decrypt_state_dict(model.encrypt_state_dict({"w": negated}, key), key)
    assert torch.equal(restored["w"], -torch.arange(6.0).reshape(2, 3))
    assert not restored["w"].is_neg()


# ------------------------------------------------- memory safety when a stream fails part way

def _objects_behind(exc: BaseException, skip):
    """Everything the exception keeps alive through its tracebacks' frames (a few levels deep:
    local variables, the cells of closures held in them, containers, futures), except the
    frames of code ``skip`` (the test itself, which holds the buffers to inspect them)."""
    import concurrent.futures
    import types

    seen, todo, chained = set(), [], [exc]
    while chained:
        e = chained.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        chained += [e.__cause__, e.__context__]
        tb = e.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code is not skip:
                todo += [(v, 0) for v in tb.tb_frame.f_locals.values()]
            tb = tb.tb_next
    while todo:
        obj, depth = todo.pop()
        if id(obj) in seen or isinstance(obj, types.ModuleType):
            continue
        seen.add(id(obj))
        yield obj
        if depth >= 4:
            continue
        children = []
        if isinstance(obj, (list, tuple, set, frozenset)):
            children = list(obj)
        elif isinstance(obj, dict):
            children = list(obj.values())
        elif isinstance(obj, types.FunctionType):
            children = [c.cell_contents for c in obj.__closure__ or () if _filled(c)]
        elif isinstance(obj, concurrent.futures.Future) and obj.done() and not obj.cancelled():
            children = [obj.exception()]
        elif isinstance(obj, memoryview):
            try:
                children = [obj.obj]
            except ValueError:  # released
                pass
        elif isinstance(obj, BaseException):
            chained = [obj]
            while chained:  # its frames too
                e = chained.pop()
                tb = e.__traceback__ if e is not None else None
                while tb is not None:
                    children += list(tb.tb_frame.f_locals.values())
                    tb = tb.tb_next
        todo += [(c, depth + 1) for c in children]


def _filled(cell) -> bool:
    try:
        _ = cell.cell_contents
    except ValueError:  # an empty cell (a deleted variable)
        return False
    return True


def _holds(exc: BaseException, buffer) -> bool:
    caller = sys._getframe(1)
    while caller.f_code.co_name == "<genexpr>":
        caller = caller.f_back
    return any(obj is buffer for obj in _objects_behind(exc, caller.f_code))


_FAIL_LOCK = threading.Lock()


class _FailingAESGCM:
    """AES-GCM whose n-th ``encrypt_into``/``decrypt_into`` call (counted over all threads)
    raises, as a failing allocation or a bug in a chunk would."""

    calls = 0
    fail_at = 3

    def __init__(self, key):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        self._aead = AESGCM(key)

    def _count(self):
        with _FAIL_LOCK:
            type(self).calls += 1
            if type(self).calls == type(self).fail_at:
                raise RuntimeError(f"injected failure in chunk call {type(self).calls} "
                                   f"on {threading.current_thread().name}")

    def encrypt(self, *args):
        return self._aead.encrypt(*args)

    def decrypt(self, *args):
        return self._aead.decrypt(*args)

    def encrypt_into(self, *args):
        self._count()
        return self._aead.encrypt_into(*args)

    def decrypt_into(self, *args):
        self._count()
        return self._aead.decrypt_into(*args)


@pytest.mark.parametrize("workers", [1, 3])
def test_a_failed_encryption_zeroes_its_buffer_and_keeps_no_reference(key, monkeypatch,
                                                                      small_chunks, workers):
    state = {"w": random_tensor(torch.float32, (40, 30)), "b": random_tensor(torch.int64, (50,))}
    made = []
    monkeypatch.setattr(_parallel, "new_bytearray", lambda n: made.append(bytearray(n)) or made[-1])
    monkeypatch.setattr(_parallel, "default_workers", lambda nbytes: workers)
    monkeypatch.setattr(_model_stream, "AESGCM", _FailingAESGCM)
    monkeypatch.setattr(_FailingAESGCM, "calls", 0)
    monkeypatch.setattr(_FailingAESGCM, "fail_at", 40)  # after dozens of chunks were written
    with pytest.raises(RuntimeError, match="injected failure") as info:
        model.encrypt_state_dict(state, key)
    (buffer,) = made
    assert len(buffer) > 1000 and not any(buffer)  # header and written chunks zeroed
    assert not _holds(info.value, buffer)
    # the same run without the failure writes that buffer: the check above can fail
    monkeypatch.setattr(_FailingAESGCM, "fail_at", -1)
    blob = model.encrypt_state_dict(state, key)
    assert blob is made[1] and any(blob)
    assert_same(state, model.decrypt_state_dict(blob, key))


@pytest.mark.parametrize("via", ["memory", "file"])
@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("failure", ["tampered last chunk", "error in a chunk"])
def test_a_failed_decryption_zeroes_the_plaintext_and_keeps_no_reference(
        key, monkeypatch, small_chunks, tmp_path, via, workers, failure):
    state = {"w": random_tensor(torch.float32, (40, 30)), "b": random_tensor(torch.int64, (50,))}
    blob = model.encrypt_state_dict(state, key)
    path = tmp_path / "m.enc"
    made, memory = [], []
    real_new_tensor = _model_stream._new_tensor

    def recording_new_tensor(*args):
        tensor, view = real_new_tensor(*args)
        made.append(tensor)
        memory.append(view.obj)  # the numpy array that owns the tensor's memory
        return tensor, view

    monkeypatch.setattr(_model_stream, "_new_tensor", recording_new_tensor)
    monkeypatch.setattr(_parallel, "default_workers", lambda nbytes: workers)
    if failure == "tampered last chunk":
        blob[-17] ^= 1  # the last data chunk's tag: every other chunk decrypts first
        expected = DecryptionError
    else:
        monkeypatch.setattr(_model_stream, "AESGCM", _FailingAESGCM)
        monkeypatch.setattr(_FailingAESGCM, "calls", 0)
        monkeypatch.setattr(_FailingAESGCM, "fail_at", 60)
        expected = RuntimeError
    path.write_bytes(blob)
    with pytest.raises(expected) as info:
        if via == "memory":
            model.decrypt_state_dict(blob, key)
        else:
            model.load_encrypted(path, key)
    assert [tuple(t.shape) for t in made] == [(40, 30), (50,)]
    assert all(not bits(t).any() for t in made)  # decrypted chunks were zeroed
    assert not any(_holds(info.value, t) for t in made + memory)


def test_the_reachability_check_sees_a_buffer_left_in_a_frame():
    """The helper above must be able to fail: a buffer in a local or a closure is found."""
    buffer = bytearray(b"secret")

    def fail():
        view = memoryview(buffer)

        def inner():
            return view

        local = [inner]  # noqa: F841
        raise RuntimeError

    with pytest.raises(RuntimeError) as info:
        fail()
    assert _holds(info.value, buffer)


def test_zero_overwrites_every_kind_of_buffer():
    for buffer in (bytearray(b"abc"), np.arange(5, dtype=np.float32),
                   memoryview(bytearray(b"xyz"))):
        _parallel.zero(buffer)
        assert not any(memoryview(buffer).cast("B"))


# ------------------------------------------------- into the caller's buffers and tensors

def _all_dtypes_state() -> dict[str, torch.Tensor]:
    state = {f"t{i}": random_tensor(dtype, (3, 7), seed=i) for i, dtype in enumerate(DTYPES)}
    state.update(small_state())
    return state


def _out_buffers(size: int):
    """Every kind of writable buffer the into-variant accepts, each 5 bytes too long and
    pre-filled with 0xAB, so that bytes it must not touch can be checked."""
    import mmap
    mapped = mmap.mmap(-1, size + 5)
    mapped.write(b"\xab" * (size + 5))
    words = np.full((size + 5 + 3) // 4, 0xABABABAB, dtype=np.uint32)  # a 4-byte-item array
    return {"bytearray": bytearray(b"\xab") * (size + 5),
            "numpy": np.full(size + 5, 0xAB, dtype=np.uint8),
            "memoryview": memoryview(bytearray(b"\xab") * (size + 5)),
            "mmap": mapped, "numpy uint32": words}


@pytest.mark.parametrize("workers", [1, 3])
def test_into_variants_write_and_read_the_same_bytes_as_the_allocating_ones(
        key, monkeypatch, small_chunks, workers):
    monkeypatch.setattr(_parallel, "default_workers", lambda nbytes: workers)
    monkeypatch.setattr(os, "urandom", lambda n: b"\x05" * n)  # the same salt for every run
    state = _all_dtypes_state()
    expected = model.encrypt_state_dict(state, key, associated_data=b"ad")
    size = model.encrypted_size(state)
    assert size == len(expected)
    for kind, out in _out_buffers(size).items():
        written = model.encrypt_state_dict_into(state, key, out, associated_data=b"ad")
        raw = memoryview(out).cast("B")
        assert written == size, kind
        assert raw[:size] == expected, kind
        assert raw[size:size + 5] == b"\xab" * 5, kind  # nothing beyond the stream
    targets = {name: torch.full_like(t, 1) for name, t in reversed(list(state.items()))}
    model.decrypt_state_dict_into(expected, key, targets, associated_data=b"ad")
    allocated = model.decrypt_state_dict(expected, key, associated_data=b"ad")
    assert_same(allocated, {name: targets[name] for name in allocated})
    assert_same(state, allocated)
    expected += b"!"  # the allocating result is still a plain, resizable bytearray
    assert len(expected) == size + 1


def test_encrypted_size_is_the_stream_length(key):
    for state in ({}, small_state(), _all_dtypes_state(), {"x" * 300: torch.zeros(5, 0)}):
        assert model.encrypted_size(state) == len(model.encrypt_state_dict(state, key))
    net = torch.nn.Linear(3, 2)
    assert model.encrypted_size(net) == len(model.encrypt_state_dict(net, key))


def test_decrypting_into_a_module_loads_it(key):
    source, target = torch.nn.Linear(6, 3), torch.nn.Linear(6, 3)
    with torch.no_grad():
        target.weight.add_(1.0)  # surely different from the source
    blob = model.encrypt_state_dict(source, key)
    x = random_tensor(torch.float32, (4, 6), seed=3)[1:]  # finite rows only
    assert not torch.equal(source(x), target(x))
    model.decrypt_state_dict_into(blob, key, target)
    assert torch.equal(source(x), target(x))


def test_an_output_buffer_that_is_too_small_or_not_writable_is_refused(key):
    state = small_state()
    size = model.encrypted_size(state)
    out = bytearray(b"\xab") * (size - 1)
    with pytest.raises(ValueError, match=rf"`out` must hold at least {size} bytes.*{size - 1}"):
        model.encrypt_state_dict_into(state, key, out)
    assert out == bytearray(b"\xab") * (size - 1)  # untouched
    with pytest.raises(TypeError, match="`out` must be a writable buffer.*read-only bytes"):
        model.encrypt_state_dict_into(state, key, bytes(size))
    with pytest.raises(TypeError, match="`out` must be a writable buffer.*list"):
        model.encrypt_state_dict_into(state, key, [0] * size)
    with pytest.raises(ValueError, match="`out` must be a contiguous buffer"):
        model.encrypt_state_dict_into(state, key, np.zeros(2 * size, np.uint8)[::2])


@pytest.mark.parametrize("change, words", [
    (lambda t: t.pop("w"), "missing \\['w'\\]"),
    (lambda t: t.update(extra=torch.zeros(1)), "unexpected \\['extra'\\]"),
    (lambda t: t.update(w=torch.zeros(4, 3, dtype=torch.float64)), "dtype torch.float32"),
    (lambda t: t.update(w=torch.zeros(3, 4)), "shape \\[4, 3\\]"),
    (lambda t: t.update(w=torch.zeros(3, 4).T), "contiguous CPU tensor"),
    (lambda t: t.update(w=[[0.0] * 3] * 4), "must be a torch.Tensor"),
])
def test_a_target_that_does_not_match_the_blob_is_refused_untouched(key, change, words):
    state = small_state()
    blob = model.encrypt_state_dict(state, key)
    targets = {name: torch.full_like(t, 3) for name, t in state.items()}
    change(targets)
    before = {name: t.clone() for name, t in targets.items() if isinstance(t, torch.Tensor)}
    with pytest.raises((ValueError, TypeError), match=rf"`state_dict.*{words}"):
        model.decrypt_state_dict_into(blob, key, targets)
    assert_same(before, {name: targets[name] for name in before})
    with pytest.raises(TypeError, match="`state_dict` must be a mapping"):
        model.decrypt_state_dict_into(blob, key, [torch.zeros(1)])


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("where", ["first data chunk", "last data chunk", "final tag"])
def test_a_tampered_blob_zeroes_every_target_and_keeps_no_reference(
        key, monkeypatch, small_chunks, workers, where):
    monkeypatch.setattr(_parallel, "default_workers", lambda nbytes: workers)
    state = {"w": random_tensor(torch.float32, (40, 30)), "b": random_tensor(torch.int64, (50,))}
    blob = model.encrypt_state_dict(state, key)
    first_data = model.describe(blob, key)[6].offset
    blob[{"first data chunk": first_data, "last data chunk": -17, "final tag": -1}[where]] ^= 1
    targets = {name: torch.full_like(t, 1) for name, t in state.items()}
    with pytest.raises(DecryptionError) as info:
        model.decrypt_state_dict_into(blob, key, targets)
    assert all(not bits(t).any() for t in targets.values())
    memory = [t.numpy() for t in targets.values()]
    assert not any(_holds(info.value, m) for m in memory)
    blob[{"first data chunk": first_data, "last data chunk": -17, "final tag": -1}[where]] ^= 1
    model.decrypt_state_dict_into(blob, key, targets)  # the same call untampered fills them
    assert_same(state, targets)


def test_a_tampered_header_leaves_the_target_untouched(key):
    state = small_state()
    blob = model.encrypt_state_dict(state, key)
    blob[60] ^= 1  # inside the sealed header: refused before anything is written
    targets = {name: torch.full_like(t, 2) for name, t in state.items()}
    with pytest.raises(DecryptionError):
        model.decrypt_state_dict_into(blob, key, targets)
    assert all(torch.equal(t, torch.full_like(t, 2)) for t in targets.values())
    with pytest.raises(DecryptionError):
        model.decrypt_state_dict_into(blob, symmetric.generate_key(), targets)


@pytest.mark.parametrize("workers", [1, 3])
def test_a_failed_encryption_into_a_buffer_zeroes_what_it_wrote(key, monkeypatch, small_chunks,
                                                                workers):
    state = {"w": random_tensor(torch.float32, (40, 30)), "b": random_tensor(torch.int64, (50,))}
    size = model.encrypted_size(state)
    monkeypatch.setattr(_parallel, "default_workers", lambda nbytes: workers)
    monkeypatch.setattr(_model_stream, "AESGCM", _FailingAESGCM)
    monkeypatch.setattr(_FailingAESGCM, "calls", 0)
    monkeypatch.setattr(_FailingAESGCM, "fail_at", 40)
    out = np.full(size + 5, 0xAB, dtype=np.uint8)
    with pytest.raises(RuntimeError, match="injected failure"):
        model.encrypt_state_dict_into(state, key, out)
    assert not out[:size].any() and (out[size:] == 0xAB).all()
    monkeypatch.setattr(_FailingAESGCM, "fail_at", -1)  # without the failure it is written
    assert model.encrypt_state_dict_into(state, key, out) == size and out[:size].any()
    assert_same(state, model.decrypt_state_dict(memoryview(out)[:size], key))


def test_model_encryption_does_not_use_ctypes():
    """Buffers come from supported APIs only: no module of model encryption imports ctypes."""
    import ast
    import inspect

    from course_lib.crypto import _model_format
    for module in (model, _model_stream, _model_format, _parallel):
        tree = ast.parse(inspect.getsource(module))
        imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                    if isinstance(node, (ast.Import, ast.ImportFrom))
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.module}
        assert "ctypes" not in imported, module.__name__
        assert "pythonapi" not in inspect.getsource(module), module.__name__


def test_run_jobs_runs_every_job_once_and_keeps_at_most_one_per_worker_in_flight():
    import time
    lock, done, taken = threading.Lock(), [], [0]

    def source():
        for i in range(120):
            with lock:
                assert taken[0] - len(done) <= 3  # jobs taken but not finished: one per worker
                taken[0] += 1
            yield i

    def work(state, job):
        time.sleep(0.0002)
        with lock:
            done.append((id(state), job, threading.current_thread().name))

    _parallel.run_jobs(source(), work, object, 3)
    assert sorted(job for _, job, _ in done) == list(range(120))
    assert len({state for state, _, _ in done}) <= 3  # one state per worker
    assert all(name.startswith("course_lib.crypto") for _, _, name in done)


def test_run_jobs_re_raises_the_first_failure_after_every_worker_stopped():
    import time
    calls = []

    def work(state, job):
        calls.append(job)
        if job == 5:
            raise RuntimeError("job 5 failed")
        time.sleep(0.001)

    with pytest.raises(RuntimeError, match="job 5 failed"):
        _parallel.run_jobs(range(1000), work, object, 3)
    count = len(calls)
    time.sleep(0.05)
    assert len(calls) == count < 20  # nothing runs after the return; the rest never started
