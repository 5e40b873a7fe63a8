"""Simulation of edge selection on synthetic visitor populations with a known truth.

``python -m policy.sim --world NAME`` runs Thompson sampling (the real
``ThompsonPolicy`` on snapshots from the real ``fit_flow``, with the conjugate
updates between fits) beside simple baselines (uniform random, the flow's
default edge, Beta-Bernoulli Thompson sampling per context cell and per answers
so far) and an oracle, on the same stream of visitors, and writes the table,
the JSON results and the regret curve (docs/policy-simulation.md explains the
worlds).

* :mod:`policy.sim.population`: the visitors, their answers and the true lead
  probabilities of every path;
* :mod:`policy.sim.conversations`: a visitor's walk through the flow, an arm
  picking the edge at every decision point;
* :mod:`policy.sim.worlds`: the named populations (baseline, interactions,
  answers, drift, sparse);
* :mod:`policy.sim.baselines`: the simple arms (pure);
* :mod:`policy.sim.runner`: the arms, the conversation loop, the fit schedule;
* :mod:`policy.sim.report`: the tables, the metrics and the figure;
  :mod:`policy.sim.results`: the JSON results.

Nothing here is imported by the bot; PyMC is imported only when a fit runs.

BLAS threads: as the services do, the simulator pins OpenBLAS to one thread unless
the variables are set (:func:`services.limits.one_blas_thread` says why). This
package is imported before any of its modules, so ``python -m policy.sim`` sets it
before numpy loads.
"""

from services.limits import one_blas_thread

one_blas_thread()
