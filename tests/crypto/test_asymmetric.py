"""RSA hybrid encryption, signatures and key files, with pycryptodome as the independent oracle."""

from __future__ import annotations

import base64
import os
import stat
import time

import pytest
from Crypto.Cipher import AES as PycryptodomeAES
from Crypto.Cipher import PKCS1_OAEP
from Crypto.Hash import SHA256
from Crypto.PublicKey import RSA as PycryptodomeRSA
from Crypto.Signature import pss
from Crypto.Util.asn1 import DerInteger, DerObjectId, DerOctetString, DerSequence
from cryptography.hazmat.primitives import serialization

from course_lib.crypto import asymmetric, symmetric
from course_lib.errors import DecryptionError, SignatureError


def _as_pycryptodome(private_key):
    der = private_key.private_bytes(serialization.Encoding.DER,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    return PycryptodomeRSA.import_key(der)


def test_default_key_size_is_3072_and_small_keys_are_refused():
    assert asymmetric.DEFAULT_KEY_SIZE == 3072
    with pytest.raises(ValueError, match=r"`key_size` must be an int in \[2048, 16384\], got 1024"):
        asymmetric.generate_private_key(key_size=1024)
    with pytest.raises(TypeError, match="`key_size` must be an int"):
        asymmetric.generate_private_key(key_size="3072")


@pytest.mark.parametrize("size", [0, 1, 100, 10_000, 1_000_003])
def test_hybrid_round_trip_any_size(rsa_key, size):
    plaintext = os.urandom(size)
    blob = asymmetric.encrypt_for(rsa_key.public_key(), plaintext, b"to: hospital B")
    assert asymmetric.decrypt_with(rsa_key, blob, b"to: hospital B") == plaintext


def test_blob_layout_and_pycryptodome_unwraps_our_oaep_key(rsa_key):
    plaintext = b"gradient update from client 7"
    blob = asymmetric.encrypt_for(rsa_key.public_key(), plaintext, b"round=3")
    assert blob[0] == 0x01
    length = int.from_bytes(blob[1:3], "big")
    assert length == 256
    wrapped, token = blob[3:3 + length], blob[3 + length:]
    assert asymmetric.parse_blob(blob) == (1, wrapped, token)
    oaep = PKCS1_OAEP.new(_as_pycryptodome(rsa_key), hashAlgo=SHA256)  # MGF1 uses SHA-256 too
    aes_key = oaep.decrypt(wrapped)
    assert len(aes_key) == 32
    cipher = PycryptodomeAES.new(aes_key, PycryptodomeAES.MODE_GCM, nonce=token[1:13])
    cipher.update(b"round=3")
    assert cipher.decrypt_and_verify(token[13:-16], token[-16:]) == plaintext


def test_we_unwrap_a_key_wrapped_by_pycryptodome(rsa_key):
    aes_key = symmetric.generate_key()
    wrapped = PKCS1_OAEP.new(_as_pycryptodome(rsa_key).public_key(), hashAlgo=SHA256).encrypt(
        aes_key)
    assert asymmetric.unwrap_key(rsa_key, wrapped) == aes_key


def test_oaep_is_randomised(rsa_key):
    key = symmetric.generate_key()
    assert asymmetric.wrap_key(rsa_key.public_key(), key) != asymmetric.wrap_key(
        rsa_key.public_key(), key)


def test_every_single_byte_flip_of_a_hybrid_blob_is_detected(rsa_key):
    blob = asymmetric.encrypt_for(rsa_key.public_key(), b"short payload", b"ad")
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x01 if i % 2 else 0x80
        with pytest.raises(DecryptionError):
            asymmetric.decrypt_with(rsa_key, bytes(bad), b"ad")


def test_truncation_extension_wrong_key_and_ad_are_detected(rsa_key, other_rsa_key):
    blob = asymmetric.encrypt_for(rsa_key.public_key(), b"payload", b"ad")
    for n in list(range(0, 300, 7)) + [len(blob) - 1]:
        with pytest.raises(DecryptionError):
            asymmetric.decrypt_with(rsa_key, blob[:n], b"ad")
    for bad in (blob + b"\x00", blob[:1] + b"\x01\x01" + blob[3:]):
        with pytest.raises(DecryptionError):
            asymmetric.decrypt_with(rsa_key, bad, b"ad")
    with pytest.raises(DecryptionError):
        asymmetric.decrypt_with(other_rsa_key, blob, b"ad")
    with pytest.raises(DecryptionError):
        asymmetric.decrypt_with(rsa_key, blob, b"other ad")
    with pytest.raises(DecryptionError):
        asymmetric.unwrap_key(rsa_key, b"\x00" * 256)


def test_argument_errors_name_the_parameter(rsa_key):
    with pytest.raises(TypeError, match="`public_key` must be an RSA public key; pass"):
        asymmetric.encrypt_for(rsa_key, b"x")
    with pytest.raises(TypeError, match="`plaintext` must be bytes, got str"):
        asymmetric.encrypt_for(rsa_key.public_key(), "x")
    with pytest.raises(TypeError, match="`private_key` must be an RSA private key"):
        asymmetric.decrypt_with(rsa_key.public_key(), b"x")
    with pytest.raises(ValueError, match="`key` must be 32 bytes, got 16"):
        asymmetric.wrap_key(rsa_key.public_key(), b"k" * 16)


def test_pss_signatures_interoperate_with_pycryptodome(rsa_key):
    data = b"model card: mlp-64-32-10, trained on digits"
    signature = asymmetric.sign(rsa_key, data)
    assert asymmetric.verify(rsa_key.public_key(), data, signature) is None
    theirs = _as_pycryptodome(rsa_key)
    pss.new(theirs.public_key(), salt_bytes=32).verify(SHA256.new(data), signature)
    their_signature = pss.new(theirs, salt_bytes=32).sign(SHA256.new(data))
    asymmetric.verify(rsa_key.public_key(), data, their_signature)


def test_bad_signatures_raise_signature_error(rsa_key, other_rsa_key):
    data = b"weights v2"
    signature = asymmetric.sign(rsa_key, data)
    for bad_data, bad_sig, key in (
        (b"weights v3", signature, rsa_key),
        (data, signature[:-1] + bytes([signature[-1] ^ 1]), rsa_key),
        (data, signature[:-1], rsa_key),
        (data, signature, other_rsa_key),
    ):
        with pytest.raises(SignatureError):
            asymmetric.verify(key.public_key(), bad_data, bad_sig)


def test_private_key_file_round_trip_permissions_and_wrong_password(rsa_key, tmp_path):
    path = tmp_path / "alice.pem"
    asymmetric.save_private_key(rsa_key, path, "s3cret pass")
    pem = path.read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = asymmetric.load_private_key(path, "s3cret pass")
    assert loaded.private_numbers() == rsa_key.private_numbers()
    with pytest.raises(DecryptionError):
        asymmetric.load_private_key(path, "wrong pass")
    assert list(tmp_path.iterdir()) == [path], "no temporary file may be left behind"


def test_private_key_file_uses_pbes2_with_600k_pbkdf2_iterations(rsa_key, tmp_path):
    from Crypto.IO import PEM
    from Crypto.Util.asn1 import DerObjectId, DerOctetString, DerSequence

    path = tmp_path / "k.pem"
    asymmetric.save_private_key(rsa_key, path, "pw")
    der, marker, _ = PEM.decode(path.read_text())
    assert marker == "ENCRYPTED PRIVATE KEY"
    info = DerSequence().decode(der)  # EncryptedPrivateKeyInfo
    algorithm = DerSequence().decode(info[0])
    assert DerObjectId().decode(algorithm[0]).value == "1.2.840.113549.1.5.13"  # PBES2
    pbes2 = DerSequence().decode(algorithm[1])
    kdf = DerSequence().decode(pbes2[0])
    assert DerObjectId().decode(kdf[0]).value == "1.2.840.113549.1.5.12"  # PBKDF2
    params = DerSequence().decode(kdf[1])
    assert len(DerOctetString().decode(params[0]).payload) >= 16
    assert params[1] >= 600_000
    cipher = DerSequence().decode(pbes2[1])
    assert DerObjectId().decode(cipher[0]).value == "2.16.840.1.101.3.4.1.42"  # AES-256-CBC
    # An independent PKCS#8 reader decrypts it to the same key.
    theirs = PycryptodomeRSA.import_key(path.read_text(), passphrase="pw")
    assert theirs.d == rsa_key.private_numbers().d


def test_private_key_file_tampering_and_plain_keys_are_refused(rsa_key, tmp_path):
    path = tmp_path / "k.pem"
    asymmetric.save_private_key(rsa_key, path, b"pw")
    pem = bytearray(path.read_bytes())
    pem[200] = ord("A") if pem[200] != ord("A") else ord("B")
    (tmp_path / "bad.pem").write_bytes(bytes(pem))
    with pytest.raises(DecryptionError):
        asymmetric.load_private_key(tmp_path / "bad.pem", b"pw")
    plain = rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    (tmp_path / "plain.pem").write_bytes(plain)
    with pytest.raises(DecryptionError):
        asymmetric.load_private_key(tmp_path / "plain.pem", b"pw")


def test_empty_password_is_refused(rsa_key, tmp_path):
    with pytest.raises(ValueError, match="`password` must not be empty"):
        asymmetric.save_private_key(rsa_key, tmp_path / "k.pem", "")
    assert not (tmp_path / "k.pem").exists()


def test_public_key_file_round_trip(rsa_key, tmp_path):
    path = tmp_path / "alice.pub.pem"
    asymmetric.save_public_key(rsa_key.public_key(), path)
    assert path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    loaded = asymmetric.load_public_key(path)
    assert loaded.public_numbers() == rsa_key.public_key().public_numbers()
    (tmp_path / "junk.pem").write_bytes(b"not a key")
    with pytest.raises(DecryptionError):  # one error for every bad key file
        asymmetric.load_public_key(tmp_path / "junk.pem")


# --- key files read from disk: one error, and no key derivation the file can make slow ------

def _pem(der: bytes, label: str = "ENCRYPTED PRIVATE KEY") -> bytes:
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = b"\n".join(body[i:i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN {label}-----\n".encode() + lines + f"\n-----END {label}-----\n".encode()


def _der(pem: bytes) -> bytes:
    return base64.b64decode(b"".join(pem.splitlines()[1:-1]))


def _with_rounds(der: bytes, rounds: int) -> bytes:
    """Our key file's DER with another PBKDF2 count, rebuilt by pycryptodome's DER encoder."""
    info = DerSequence().decode(der)
    algorithm = DerSequence().decode(info[0])
    pbes2 = DerSequence().decode(algorithm[1])
    kdf = DerSequence().decode(pbes2[0])
    params = DerSequence().decode(kdf[1])
    params[1] = rounds
    kdf[1] = params.encode()
    pbes2[0] = kdf.encode()
    algorithm[1] = pbes2.encode()
    info[0] = algorithm.encode()
    return info.encode()


@pytest.fixture(scope="module")
def key_file(rsa_key, tmp_path_factory):
    path = tmp_path_factory.mktemp("keys") / "k.pem"
    asymmetric.save_private_key(rsa_key, path, "pw")
    return path.read_bytes()


@pytest.mark.parametrize("rounds", [2**31 - 1, 2**63 - 1, asymmetric.MAX_KEY_FILE_KDF_ROUNDS + 1,
                                    0, -5])
def test_a_huge_pbkdf2_count_is_refused_before_any_key_derivation(key_file, tmp_path, rounds):
    path = tmp_path / "slow.pem"
    path.write_bytes(_pem(_with_rounds(_der(key_file), rounds)))
    start = time.perf_counter()
    with pytest.raises(DecryptionError):
        asymmetric.load_private_key(path, "pw")
    # not a timed test: 2**31 rounds would take minutes, so a second means it never ran
    assert time.perf_counter() - start < 30


def test_the_cap_is_ten_times_our_count():
    assert asymmetric.MAX_KEY_FILE_KDF_ROUNDS == 10 * asymmetric.KEY_FILE_KDF_ROUNDS == 6_000_000


def test_a_pkcs8_file_written_by_cryptography_itself_loads(rsa_key, tmp_path):
    pem = rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.BestAvailableEncryption(b"pw"))
    (tmp_path / "theirs.pem").write_bytes(pem)
    loaded = asymmetric.load_private_key(tmp_path / "theirs.pem", "pw")
    assert loaded.private_numbers() == rsa_key.private_numbers()


def test_every_bit_of_the_iv_flipped_raises_decryption_error(key_file, tmp_path):
    # AES-CBC: flipping IV bit i flips plaintext bit i of the first block, which holds the
    # key's algorithm OID; cryptography then raises UnsupportedAlgorithm, which must not escape.
    der = _der(key_file)
    info = DerSequence().decode(der)
    iv = DerOctetString().decode(DerSequence().decode(DerSequence().decode(
        DerSequence().decode(info[0])[1])[1])[1]).payload
    at = der.index(iv)
    path = tmp_path / "flipped.pem"
    for byte in range(9, 16):  # the OID bytes (each load derives a key: 600,000 rounds)
        flipped = bytearray(der)
        flipped[at + byte] ^= 1
        path.write_bytes(_pem(bytes(flipped)))
        with pytest.raises(DecryptionError):
            asymmetric.load_private_key(path, "pw")


@pytest.mark.parametrize("content", [
    b"", b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n-----END ENCRYPTED PRIVATE KEY-----\n",
    b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n!!!!\n-----END ENCRYPTED PRIVATE KEY-----\n",
    b"\x00" * (2**20 + 1),
])
def test_malformed_private_key_files_raise_decryption_error(tmp_path, content):
    (tmp_path / "bad.pem").write_bytes(content)
    with pytest.raises(DecryptionError):
        asymmetric.load_private_key(tmp_path / "bad.pem", "pw")


def test_unusual_kdfs_and_two_blocks_are_refused(key_file, tmp_path):
    der = _der(key_file)
    # PBES1 (pbeWithSHA1AndDES-CBC) instead of PBES2: refused, we never derive with it
    pbes1 = DerSequence([DerSequence([DerObjectId("1.2.840.113549.1.5.10").encode(),
                                      DerSequence([DerOctetString(b"s" * 8).encode(),
                                                   DerInteger(2048).encode()]).encode()]).encode(),
                         DerOctetString(b"x" * 32).encode()]).encode()
    for content in (_pem(pbes1), key_file + key_file, b"junk\n" + key_file):
        (tmp_path / "odd.pem").write_bytes(content)
        with pytest.raises(DecryptionError):
            asymmetric.load_private_key(tmp_path / "odd.pem", "pw")
    assert der  # the original still parses


def test_small_or_non_rsa_public_key_files_raise_decryption_error(tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    curve = ec.generate_private_key(ec.SECP256R1()).public_key()
    for key in (small, curve):
        pem = key.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo)
        (tmp_path / "k.pub").write_bytes(pem)
        with pytest.raises(DecryptionError):
            asymmetric.load_public_key(tmp_path / "k.pub")


def test_key_file_paths_must_be_str_or_pathlike(rsa_key):
    for call in (lambda: asymmetric.load_private_key(123, "pw"),
                 lambda: asymmetric.load_public_key(b"k.pem"),
                 lambda: asymmetric.save_public_key(rsa_key.public_key(), 7),
                 lambda: asymmetric.save_private_key(rsa_key, None, "pw")):
        with pytest.raises(TypeError, match="`path` must be a str or os.PathLike"):
            call()
