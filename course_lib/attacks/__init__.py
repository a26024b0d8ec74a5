"""Attacks that show why federated learning alone is not private.

- :mod:`~course_lib.attacks.gradient_inversion`  rebuild a client's image from its gradient
  (DLG / iDLG), and how batch size, noise, pruning and secure aggregation defeat it
- :mod:`~course_lib.attacks.membership`          tell training members from non-members by
  their loss (Yeom et al. 2018), with and without DP-SGD

Both use the course's digits and MLP from :mod:`course_lib.fl`.
"""
