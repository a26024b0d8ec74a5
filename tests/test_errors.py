"""The error contract (course_lib/errors.py): fixed messages, and every bad argument of the
public crypto API a ValueError/TypeError whose message names the parameter.

The sweep starts from one valid call of each public function and replaces one argument at a
time: first by ``object()`` (a wrong type for every parameter), then by the wrong values listed
in ``BAD_VALUES`` (right type, outside the constraint). Each must raise ``TypeError`` or
``ValueError`` whose message contains the parameter's name in backquotes. A function that is
not listed here (``test_every_public_crypto_function_is_swept``) fails the suite, so a new
function cannot skip the sweep. Decrypt failures are the fuzz tests' subject
(tests/crypto/test_fuzz.py).
"""

from __future__ import annotations

import inspect
import pickle

import numpy as np
import pytest
import torch

from course_lib import errors
from course_lib.crypto import (
    asymmetric,
    inference,
    insecure,
    linear,
    model,
    naive,
    paillier,
    symmetric,
    transport,
)

pytestmark = pytest.mark.filterwarnings("ignore::course_lib.crypto.insecure.InsecureWarning")


@pytest.mark.parametrize("cls", [errors.DecryptionError, errors.SignatureError])
def test_errors_are_course_lib_errors_with_a_fixed_message(cls):
    assert issubclass(cls, errors.CourseLibError)
    # Whatever a caller passes, the message stays the same: no detail leaks out.
    assert str(cls("the tag at byte 17 was wrong")) == str(cls()) == cls.MESSAGE


def test_errors_survive_pickling():
    err = pickle.loads(pickle.dumps(errors.DecryptionError()))
    assert isinstance(err, errors.DecryptionError)
    assert str(err) == errors.DecryptionError.MESSAGE


# --- the sweep --------------------------------------------------------------------------------

KEY = bytes(32)


@pytest.fixture(scope="module")
def env(rsa_key, tmp_path_factory):
    """Valid arguments: keys, ciphertexts and files, made once."""
    folder = tmp_path_factory.mktemp("sweep")
    hpke_private, hpke_public = transport.generate_hpke_keypair()
    toy_public, toy_private = paillier.generate_keypair_unsafe_toy(512, seed=3)
    scheme = paillier.PackingScheme(toy_public, frac_bits=8, bound=1.0, max_summands=3)
    state = {"w": torch.ones(2, 3)}
    model.save_encrypted(state, folder / "m.bin", KEY)
    asymmetric.save_public_key(rsa_key.public_key(), folder / "k.pub")
    weight, bias, X = np.ones((2, 3)) * 0.1, np.zeros(2), np.ones((4, 3))
    batch = inference.encrypt_features(toy_public, X, input_bound=2.0, slot_bits=48)
    return {
        "rsa": rsa_key, "pub": rsa_key.public_key(), "folder": folder,
        "hpke_private": hpke_private, "hpke_public": hpke_public,
        "toy_public": toy_public, "toy_private": toy_private, "scheme": scheme,
        "packed": scheme.encrypt(np.zeros(4)), "state": state,
        "token": symmetric.encrypt(KEY, b"x"),
        "blob": bytes(model.encrypt_state_dict(state, KEY)),
        "hybrid": asymmetric.encrypt_for(rsa_key.public_key(), b"x"),
        "hybrid_model": bytes(model.encrypt_state_dict_for(state, rsa_key.public_key())),
        "sealed": transport.seal_for(hpke_public, b"x"),
        "fernet_key": naive.generate_key(), "weight": weight, "bias": bias, "X": X,
        "batch": batch, "number": toy_public.encrypt(5),
    }


# name -> (function, valid keyword arguments), both from env
CALLS = {
    "symmetric.encrypt": lambda e: (symmetric.encrypt, dict(key=KEY, plaintext=b"x",
                                                            associated_data=b"")),
    "symmetric.decrypt": lambda e: (symmetric.decrypt, dict(key=KEY, token=e["token"],
                                                            associated_data=b"")),
    "symmetric.derive_key": lambda e: (symmetric.derive_key, dict(password="pw",
                                                                  salt=bytes(16))),
    "symmetric.parse_token": lambda e: (symmetric.parse_token, dict(token=e["token"])),
    "asymmetric.generate_private_key": lambda e: (asymmetric.generate_private_key,
                                                  dict(key_size=2048)),
    "asymmetric.wrap_key": lambda e: (asymmetric.wrap_key, dict(public_key=e["pub"], key=KEY)),
    "asymmetric.unwrap_key": lambda e: (asymmetric.unwrap_key,
                                        dict(private_key=e["rsa"], wrapped=e["hybrid"][3:387])),
    "asymmetric.encrypt_for": lambda e: (asymmetric.encrypt_for,
                                         dict(public_key=e["pub"], plaintext=b"x",
                                              associated_data=b"")),
    "asymmetric.decrypt_with": lambda e: (asymmetric.decrypt_with,
                                          dict(private_key=e["rsa"], blob=e["hybrid"],
                                               associated_data=b"")),
    "asymmetric.parse_blob": lambda e: (asymmetric.parse_blob, dict(blob=e["hybrid"])),
    "asymmetric.sign": lambda e: (asymmetric.sign, dict(private_key=e["rsa"], data=b"x")),
    "asymmetric.verify": lambda e: (asymmetric.verify,
                                    dict(public_key=e["pub"], data=b"x",
                                         signature=asymmetric.sign(e["rsa"], b"x"))),
    "asymmetric.save_private_key": lambda e: (asymmetric.save_private_key,
                                              dict(private_key=e["rsa"],
                                                   path=e["folder"] / "never.pem",
                                                   password="pw")),
    "asymmetric.load_private_key": lambda e: (asymmetric.load_private_key,
                                              dict(path=e["folder"] / "none.pem",
                                                   password="pw")),
    "asymmetric.save_public_key": lambda e: (asymmetric.save_public_key,
                                             dict(public_key=e["pub"],
                                                  path=e["folder"] / "k2.pub")),
    "asymmetric.load_public_key": lambda e: (asymmetric.load_public_key,
                                             dict(path=e["folder"] / "k.pub")),
    "model.encrypt_state_dict": lambda e: (model.encrypt_state_dict,
                                           dict(state_dict=e["state"], key=KEY,
                                                associated_data=b"")),
    "model.decrypt_state_dict": lambda e: (model.decrypt_state_dict,
                                           dict(blob=e["blob"], key=KEY, associated_data=b"")),
    "model.encrypt_state_dict_into": lambda e: (
        model.encrypt_state_dict_into,
        dict(state_dict=e["state"], key=KEY, out=bytearray(model.encrypted_size(e["state"])),
             associated_data=b"")),
    "model.decrypt_state_dict_into": lambda e: (
        model.decrypt_state_dict_into,
        dict(blob=e["blob"], key=KEY, state_dict={"w": torch.zeros(2, 3)}, associated_data=b"")),
    "model.encrypted_size": lambda e: (model.encrypted_size, dict(state_dict=e["state"])),
    "model.save_encrypted": lambda e: (model.save_encrypted,
                                       dict(state_dict=e["state"], path=e["folder"] / "m2.bin",
                                            key=KEY, associated_data=b"")),
    "model.load_encrypted": lambda e: (model.load_encrypted,
                                       dict(path=e["folder"] / "m.bin", key=KEY,
                                            associated_data=b"")),
    "model.encrypt_state_dict_for": lambda e: (model.encrypt_state_dict_for,
                                               dict(state_dict=e["state"], public_key=e["pub"],
                                                    associated_data=b"")),
    "model.decrypt_state_dict_with": lambda e: (model.decrypt_state_dict_with,
                                                dict(blob=e["hybrid_model"],
                                                     private_key=e["rsa"],
                                                     associated_data=b"")),
    "model.describe": lambda e: (model.describe, dict(blob=e["blob"], key=KEY,
                                                      associated_data=b"")),
    "transport.seal_for": lambda e: (transport.seal_for,
                                     dict(public_key=e["hpke_public"], plaintext=b"x",
                                          info=b"", associated_data=b"")),
    "transport.open_with": lambda e: (transport.open_with,
                                      dict(private_key=e["hpke_private"], blob=e["sealed"],
                                           info=b"", associated_data=b"")),
    "transport.parse_blob": lambda e: (transport.parse_blob, dict(blob=e["sealed"])),
    "transport.compare_with_rsa": lambda e: (transport.compare_with_rsa,
                                             dict(plaintext=b"x", repeats=1,
                                                  rsa_key_size=2048)),
    "naive.encrypt_state_dict": lambda e: (naive.encrypt_state_dict,
                                           dict(state_dict=e["state"], key=e["fernet_key"])),
    "naive.decrypt_state_dict": lambda e: (naive.decrypt_state_dict,
                                           dict(token=naive.encrypt_state_dict(
                                               e["state"], e["fernet_key"]),
                                                key=e["fernet_key"])),
    "paillier.generate_keypair": lambda e: (paillier.generate_keypair, dict(bits=2048)),
    "paillier.generate_keypair_unsafe_toy": lambda e: (paillier.generate_keypair_unsafe_toy,
                                                       dict(bits=64, seed=1)),
    "paillier.keypair_from_primes": lambda e: (paillier.keypair_from_primes,
                                               dict(p=11, q=13, unsafe_allow_small=True)),
    "paillier.encrypt_with_randomness_unsafe": lambda e: (
        paillier.encrypt_with_randomness_unsafe, dict(public_key=e["toy_public"], value=7,
                                                      r=23)),
    "paillier.PaillierPublicKey": lambda e: (paillier.PaillierPublicKey,
                                             dict(n=e["toy_public"].n, unsafe_allow_small=True)),
    "paillier.PaillierPrivateKey": lambda e: (paillier.PaillierPrivateKey,
                                              dict(public_key=e["toy_public"],
                                                   p=e["toy_private"].export()[1],
                                                   q=e["toy_private"].export()[2])),
    "paillier.EncryptedNumber": lambda e: (paillier.EncryptedNumber,
                                           dict(public_key=e["toy_public"],
                                                ciphertext=e["number"].ciphertext,
                                                frac_bits=0)),
    "PaillierPublicKey.encrypt": lambda e: (e["toy_public"].encrypt,
                                            dict(value=1.5, frac_bits=8)),
    "PaillierPrivateKey.encrypt": lambda e: (e["toy_private"].encrypt,
                                             dict(value=1.5, frac_bits=8)),
    "paillier.PackingScheme": lambda e: (paillier.PackingScheme,
                                         dict(public_key=e["toy_public"], frac_bits=8,
                                              bound=1.0, max_summands=3)),
    "PackingScheme.encrypt": lambda e: (e["scheme"].encrypt, dict(values=np.zeros(4))),
    "PackingScheme.decrypt": lambda e: (e["scheme"].decrypt,
                                        dict(private_key=e["toy_private"], packed=e["packed"])),
    "PackingScheme.max_abs_error": lambda e: (e["scheme"].max_abs_error,
                                              dict(num_summands=2)),
    "PackingScheme.num_ciphertexts": lambda e: (e["scheme"].num_ciphertexts, dict(length=10)),
    "paillier.PackedCiphertext": lambda e: (paillier.PackedCiphertext,
                                            dict(scheme=e["scheme"],
                                                 ciphertexts=e["packed"].ciphertexts,
                                                 length=4, num_summands=1, max_abs_slot=256)),
    "PackedCiphertext.__mul__": lambda e: (e["packed"].__mul__, dict(scalar=2)),
    "paillier.pack_slots": lambda e: (paillier.pack_slots, dict(values=[1, 2], slot_bits=8)),
    "paillier.unpack_slots": lambda e: (paillier.unpack_slots,
                                        dict(packed=258, slot_bits=8, count=2)),
    "insecure.is_prime": lambda e: (insecure.is_prime, dict(n=7)),
    "insecure.extended_gcd": lambda e: (insecure.extended_gcd, dict(a=240, b=46)),
    "insecure.modular_inverse": lambda e: (insecure.modular_inverse, dict(a=17, m=3120)),
    "insecure.toy_rsa_keygen": lambda e: (insecure.toy_rsa_keygen, dict(p=61, q=53, e=17)),
    "insecure.toy_rsa_encrypt": lambda e: (insecure.toy_rsa_encrypt, dict(m=65, n=3233, e=17)),
    "insecure.toy_rsa_decrypt": lambda e: (insecure.toy_rsa_decrypt,
                                           dict(c=2790, n=3233, d=2753)),
    "insecure.textbook_rsa_encrypt_unsafe": lambda e: (insecure.textbook_rsa_encrypt_unsafe,
                                                       dict(public_key=e["pub"], m=5)),
    "insecure.aes_ecb_encrypt_unsafe": lambda e: (insecure.aes_ecb_encrypt_unsafe,
                                                  dict(key=KEY, plaintext=b"x")),
    "insecure.aes_gcm_encrypt_with_nonce_unsafe": lambda e: (
        insecure.aes_gcm_encrypt_with_nonce_unsafe, dict(key=KEY, nonce=bytes(12),
                                                         plaintext=b"x", associated_data=b"")),
    "insecure.xor_bytes": lambda e: (insecure.xor_bytes, dict(a=b"ab", b=b"cd")),
    "insecure.warn_insecure": lambda e: (insecure.warn_insecure,
                                         dict(message="demo", stacklevel=2)),
    "inference.encrypt_features": lambda e: (inference.encrypt_features,
                                             dict(key=e["toy_public"], X=e["X"],
                                                  input_bound=2.0, frac_bits=8, slot_bits=48)),
    "inference.required_slot_bits": lambda e: (inference.required_slot_bits,
                                               dict(weight=e["weight"], bias=e["bias"],
                                                    input_bound=2.0, frac_bits=8)),
    "inference.encrypted_linear": lambda e: (inference.encrypted_linear,
                                             dict(batch=e["batch"], weight=e["weight"],
                                                  bias=e["bias"], rerandomize=True)),
    "inference.decrypt_logits": lambda e: (inference.decrypt_logits,
                                           dict(private_key=e["toy_private"],
                                                logits=e["batch"])),
    "inference.logit_error_bound": lambda e: (inference.logit_error_bound,
                                              dict(weight=e["weight"], X=e["X"], frac_bits=8)),
    "inference.two_server_linear": lambda e: (inference.two_server_linear,
                                              dict(weight=e["weight"], bias=e["bias"], X=e["X"],
                                                   frac_bits=8, prime=2**61 - 1,
                                                   unsafe_seed=1)),
    "linear.train_linear": lambda e: (linear.train_linear,
                                      dict(X=e["X"], y=np.array([0, 1, 0, 1]), epochs=2,
                                           lr=0.1)),
}

# Right type, wrong value: (call, parameter, value).
BAD_VALUES = [
    ("symmetric.encrypt", "key", b"short"), ("symmetric.encrypt", "plaintext", "text"),
    ("symmetric.decrypt", "key", bytes(31)), ("symmetric.decrypt", "token", "text"),
    ("symmetric.derive_key", "password", ""), ("symmetric.derive_key", "password", 123),
    ("symmetric.derive_key", "salt", bytes(8)),
    ("asymmetric.generate_private_key", "key_size", 1024),
    ("asymmetric.generate_private_key", "key_size", 2049),
    ("asymmetric.wrap_key", "key", bytes(16)),
    ("asymmetric.save_private_key", "password", ""),
    ("asymmetric.load_private_key", "password", b""),
    ("model.encrypt_state_dict", "state_dict", {"w": [1.0]}),
    ("model.encrypt_state_dict", "state_dict", {1: torch.ones(1)}),
    ("model.encrypt_state_dict", "state_dict", {"w": torch.ones(2, dtype=torch.complex64)}),
    ("model.encrypt_state_dict", "key", bytes(16)),
    ("model.save_encrypted", "path", b"bytes/path"), ("model.load_encrypted", "path", 3),
    ("model.encrypt_state_dict_into", "out", bytearray(10)),
    ("model.encrypt_state_dict_into", "out", bytes(10**4)),
    ("model.decrypt_state_dict_into", "state_dict", {"w": torch.zeros(3, 2)}),
    ("model.decrypt_state_dict_into", "state_dict", {"v": torch.zeros(2, 3)}),
    ("model.encrypted_size", "state_dict", {"w": [1.0]}),
    ("transport.compare_with_rsa", "repeats", 0),
    ("transport.compare_with_rsa", "rsa_key_size", 1024),
    ("naive.encrypt_state_dict", "key", b"not a fernet key"),
    ("naive.decrypt_state_dict", "key", bytes(32)),
    ("paillier.generate_keypair", "bits", 2049), ("paillier.generate_keypair", "bits", 1024),
    ("paillier.generate_keypair_unsafe_toy", "bits", 8),
    ("paillier.generate_keypair_unsafe_toy", "seed", 1.5),
    ("paillier.keypair_from_primes", "p", 15), ("paillier.keypair_from_primes", "q", 1),
    ("paillier.encrypt_with_randomness_unsafe", "r", 0),
    ("paillier.encrypt_with_randomness_unsafe", "value", 0.5),
    ("paillier.PaillierPublicKey", "n", 2**600), ("paillier.PaillierPublicKey", "n", 2**607 - 1),
    ("paillier.PaillierPrivateKey", "p", 4), ("paillier.EncryptedNumber", "ciphertext", 0),
    ("paillier.EncryptedNumber", "frac_bits", -1),
    ("paillier.EncryptedNumber", "frac_bits", 10**9),
    ("PaillierPublicKey.encrypt", "value", float("nan")),
    ("PaillierPublicKey.encrypt", "frac_bits", -2),
    ("paillier.PackingScheme", "bound", -1.0), ("paillier.PackingScheme", "frac_bits", 99),
    ("paillier.PackingScheme", "max_summands", 0),
    ("PackingScheme.encrypt", "values", np.zeros((2, 2))),
    ("PackingScheme.encrypt", "values", [0.5, 3.0]),
    ("PackingScheme.encrypt", "values", [float("nan")]),
    ("PackingScheme.num_ciphertexts", "length", -1),
    ("paillier.PackedCiphertext", "length", 10**6),
    ("paillier.PackedCiphertext", "max_abs_slot", 10**6),
    ("paillier.PackedCiphertext", "num_summands", 0),
    ("PackedCiphertext.__mul__", "scalar", 0.5), ("PackedCiphertext.__mul__", "scalar", 10**6),
    ("paillier.pack_slots", "slot_bits", 1), ("paillier.unpack_slots", "count", -1),
    ("insecure.modular_inverse", "m", 1), ("insecure.toy_rsa_keygen", "p", 60),
    ("insecure.toy_rsa_keygen", "e", 15), ("insecure.toy_rsa_encrypt", "m", 3233),
    ("insecure.toy_rsa_encrypt", "e", -1), ("insecure.toy_rsa_decrypt", "d", 0),
    ("insecure.aes_ecb_encrypt_unsafe", "key", bytes(10)),
    ("insecure.aes_gcm_encrypt_with_nonce_unsafe", "nonce", bytes(8)),
    ("insecure.warn_insecure", "stacklevel", 0),
    ("inference.encrypt_features", "X", np.ones(3)),
    ("inference.encrypt_features", "input_bound", -1.0),
    ("inference.encrypt_features", "X", np.full((2, 3), 5.0)),
    ("inference.encrypt_features", "slot_bits", 1),
    ("inference.required_slot_bits", "bias", np.zeros(3)),
    ("inference.encrypted_linear", "weight", np.ones((2, 5))),
    ("inference.logit_error_bound", "frac_bits", -1),
    ("inference.two_server_linear", "X", np.ones((4, 5))),
    ("inference.two_server_linear", "unsafe_seed", 1.5),
    ("linear.train_linear", "epochs", 0), ("linear.train_linear", "lr", -1.0),
]


def _failure(call_name: str, env: dict, param: str, value: object) -> str | None:
    """None if the call raised TypeError/ValueError naming ``param``; else what went wrong."""
    function, kwargs = CALLS[call_name](env)
    try:
        function(**{**kwargs, param: value})
    except (TypeError, ValueError) as err:
        if f"`{param}`" in str(err) or f"`{param}[" in str(err):  # `state_dict['w']` too
            return None
        return f"{call_name}({param}={value!r}): {type(err).__name__}: {err}"
    except Exception as err:  # noqa: BLE001 - any other exception is the finding
        return f"{call_name}({param}={value!r}): {type(err).__name__}: {err}"
    return f"{call_name}({param}={value!r}) was accepted"


@pytest.mark.parametrize("call_name", list(CALLS))
def test_a_wrong_type_names_the_parameter(env, call_name):
    params = list(CALLS[call_name](env)[1])
    failures = [f for p in params if (f := _failure(call_name, env, p, object())) is not None]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(("call_name", "param", "value"), BAD_VALUES,
                         ids=[f"{n}-{p}-{i}" for i, (n, p, _) in enumerate(BAD_VALUES)])
def test_a_wrong_value_names_the_parameter(env, call_name, param, value):
    failure = _failure(call_name, env, param, value)
    assert failure is None, failure


def test_derive_key_says_str_or_bytes():
    with pytest.raises(TypeError, match="`password` must be str or bytes, got int"):
        symmetric.derive_key(123)


def test_every_public_crypto_function_is_swept():
    swept = {name.split(".")[0] + "." + name.split(".")[1] for name in CALLS}
    missing = []
    for module in (symmetric, asymmetric, model, transport, naive, paillier, insecure,
                   inference, linear):
        short = module.__name__.rsplit(".", 1)[1]
        for name in module.__all__:
            obj = getattr(module, name)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and \
                    f"{short}.{name}" not in swept and name not in EXEMPT:
                missing.append(f"{short}.{name}")
    assert not missing, f"add these to CALLS (or EXEMPT, with a reason): {missing}"


EXEMPT = {
    "generate_key": "takes no argument",
    "generate_hpke_keypair": "takes no argument",
    "InsecureWarning": "a warning class", "ToyRSAKey": "a plain dataclass of results",
    "Region": "a NamedTuple of results", "TransportCost": "a dataclass of results",
    "EncryptedBatch": "a dataclass of results; decrypt_logits checks a received one",
    "TwoServerResult": "a dataclass of results", "LinearModel": "a dataclass of weights",
}
