"""Encryption for data and models.

- :mod:`~course_lib.crypto.symmetric`   AES-256-GCM recipe (keys, tokens, password-derived keys)
- :mod:`~course_lib.crypto.asymmetric`  RSA-OAEP hybrid encryption, RSA-PSS signatures, PEM files
- :mod:`~course_lib.crypto.model`       model-parameter encryption (state_dict <-> ciphertext)
                                        (``encrypt_state_dict[_into]``,
                                        ``decrypt_state_dict[_into]``, ``encrypted_size``,
                                        ``save_encrypted``, ``load_encrypted``)
- :mod:`~course_lib.crypto.paillier`    additively homomorphic encryption, packed vectors
- :mod:`~course_lib.crypto.secret_sharing`  additive and Shamir sharing, Beaver triples, masking
- :mod:`~course_lib.crypto.inference`   encrypted inference of a linear model (Paillier, 2 servers)
- :mod:`~course_lib.crypto.ckks`        approximate HE through TenSEAL (optional extra ``he``)
- :mod:`~course_lib.crypto.transport`   post-quantum HPKE (ML-KEM-768 + X25519) for model updates
- :mod:`~course_lib.crypto.insecure`    textbook RSA, ECB and nonce reuse: for teaching only, warns
- :mod:`~course_lib.crypto.naive`       the naive torch.save + Fernet path, a benchmark baseline

Submodules are imported on demand so that ``import course_lib.crypto.symmetric`` does not pull
in PyTorch.
"""
