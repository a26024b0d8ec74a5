"""Sending a model update: post-quantum HPKE vs the RSA-OAEP hybrid, side by side in one run.

Payloads: the course's digits MLP (2,410 float32 parameters) serialised with safetensors, and
a 1 MB and a 16 MB update for scale. For each payload both schemes (HPKE with ML-KEM-768 +
X25519, and RSA-3072-OAEP wrapping an AES-256-GCM key) are measured by
:func:`course_lib.crypto.transport.compare_with_rsa`: public-key size, bytes added per message,
key generation (once), and the median encrypt / decrypt time over --repeats runs.

Usage:  python benchmarks/bench_transport.py [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import platform

import cryptography
from safetensors.torch import save

from course_lib.crypto import transport
from course_lib.fl.models import make_mlp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    print(f"python {platform.python_version()}, cryptography {cryptography.__version__}, "
          f"{os.cpu_count()} CPUs")
    payloads = {"digits MLP update": save(make_mlp(seed=0).state_dict()),
                "1 MB update": os.urandom(1 << 20), "16 MB update": os.urandom(16 << 20)}
    header = (f"{'payload':<18} {'scheme':<38} {'PQ':>3} {'pubkey B':>9} {'overhead B':>10} "
              f"{'keygen ms':>10} {'enc ms':>8} {'dec ms':>8}")
    print(header)
    print("-" * len(header))
    for name, payload in payloads.items():
        repeats = args.repeats if len(payload) < 1 << 20 else max(3, args.repeats // 10)
        rows = transport.compare_with_rsa(payload, repeats=repeats)
        for row in rows:
            print(f"{name:<18} {row.scheme:<38} {'yes' if row.post_quantum else 'no':>3} "
                  f"{row.public_key_bytes:>9} {row.overhead_bytes:>10} {row.keygen_ms:>10.2f} "
                  f"{row.encrypt_ms:>8.3f} {row.decrypt_ms:>8.3f}")
        hpke_row, rsa_row = rows
        ratio = hpke_row.overhead_bytes / rsa_row.overhead_bytes
        print(f"{'':<18} HPKE/RSA: overhead {ratio:.2f}x, "
              f"encrypt {hpke_row.encrypt_ms / rsa_row.encrypt_ms:.2f}x, "
              f"decrypt {hpke_row.decrypt_ms / rsa_row.decrypt_ms:.2f}x "
              f"({len(payload):,} plaintext bytes)")


if __name__ == "__main__":
    main()
