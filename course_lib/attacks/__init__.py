"""Attacks that show why federated learning alone is not private.

- :mod:`~course_lib.attacks.gradient_inversion`  rebuild a client's image from its gradient
  (DLG / iDLG), and how batch size, noise, pruning and secure aggregation defeat it
- :mod:`~course_lib.attacks.membership`          tell training members from non-members by
  their loss (Yeom et al. 2018), with and without DP-SGD
- :mod:`~course_lib.attacks.memorisation`        the Secret Sharer's exposure of a canary in a
  small language model (Carlini et al. 2019), against repeats and with DP training
- :mod:`~course_lib.attacks.extraction`          steal a served model through its prediction
  API (Tramer et al. 2016), and what labels only, rounding and a query budget change

They use the course's data and models from :mod:`course_lib.fl`.
"""
