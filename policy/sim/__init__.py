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
* :mod:`policy.sim.worlds`: the named populations (baseline, interactions,
  answers, drift, sparse);
* :mod:`policy.sim.baselines`: the simple arms (pure);
* :mod:`policy.sim.runner`: the arms, the conversation loop, the fit schedule;
* :mod:`policy.sim.report`: the tables, the metrics, the JSON results and the figure.

Nothing here is imported by the bot; PyMC is imported only when a fit runs.

BLAS threads: as the services do (``app/__init__.py``), the simulator pins
OpenBLAS to one thread unless the variables are set. With a thread per core,
two simulations on the 2-core machine took 351 and 379 s where one alone takes
15 s (their BLAS threads spin waiting for each other). This package is imported
before any of its modules, so ``python -m policy.sim`` sets it before numpy loads.
"""

import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
