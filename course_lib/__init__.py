"""course_lib: the library behind the large-model privacy course (大模型隐私保护).

Subpackages, lowest layer first:

- :mod:`course_lib.errors`   the exceptions (one ``DecryptionError`` for every failed decryption)
- :mod:`course_lib.crypto`   data and model encryption (AES-GCM, RSA, model parameters, ...)
- :mod:`course_lib.fl`       federated learning (data, models, local training, FedAvg, DP)
- :mod:`course_lib.attacks`  gradient inversion and membership inference: why FL needs more

Notebooks import the piece they teach, e.g. ``from course_lib.crypto import symmetric``.
"""

from course_lib.errors import CourseLibError, DecryptionError, SignatureError

__version__ = "0.1.0"
__all__ = ["CourseLibError", "DecryptionError", "SignatureError", "__version__"]
