"""Benchmarks of the Bayesian edge-selection policy (``policy/``).

* ``python -m bench.policy.decision``: latency of one decision
  (``ThompsonPolicy.choose``) next to the uniform policy, in the same run.
"""
