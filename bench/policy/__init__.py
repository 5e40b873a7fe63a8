"""Benchmarks of the Bayesian edge-selection policy (``policy/``).

* ``python -m bench.policy.decision``: latency of one decision
  (``ThompsonPolicy.choose``) next to the uniform policy, in the same run.
* ``python -m bench.policy.learner``: CPU per batch of
  final outcomes the online learner takes (production config and plain); 34.3 ms
  per batch of 350 with the production config on 2026-12-07 with the learnt pair
  scales (29.6 ms with the weighed pairs, 34.8 ms before the change detector's
  shadow stopped keeping an additive model, 65 ms before the batch's score took
  one solve per edge, cd78727).
"""

# one BLAS thread, as the services run numpy, unless set; this package is imported
# before its modules, so before numpy loads
from services.limits import one_blas_thread

one_blas_thread()
