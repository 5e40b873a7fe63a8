"""Simulation of edge selection on a synthetic visitor population with a known truth.

``python -m policy.sim`` runs Thompson sampling (the real ``ThompsonPolicy`` on
snapshots from the real ``fit_flow``), uniform random, the flow's default edge
and an oracle side by side on the same stream of visitors, and writes the table
and the regret curve (docs/policy-simulation.md explains the population).

* :mod:`policy.sim.population`: the visitors, their answers and the true lead
  probabilities;
* :mod:`policy.sim.runner`: the arms, the conversation loop, the fit schedule;
* :mod:`policy.sim.report`: the table, the JSON results and the figure.

Nothing here is imported by the bot; PyMC is imported only when a fit runs.
"""
