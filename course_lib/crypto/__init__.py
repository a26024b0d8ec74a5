"""Encryption for data and models.

- :mod:`~course_lib.crypto.symmetric`   AES-256-GCM recipe (keys, tokens, password-derived keys)
- :mod:`~course_lib.crypto.asymmetric`  RSA-OAEP hybrid encryption, RSA-PSS signatures, PEM files
- :mod:`~course_lib.crypto.model`       model-parameter encryption (state_dict <-> ciphertext)
- :mod:`~course_lib.crypto.insecure`    textbook RSA, ECB and nonce reuse: for teaching only, warns

Submodules are imported on demand so that ``import course_lib.crypto.symmetric`` does not pull
in PyTorch.
"""
