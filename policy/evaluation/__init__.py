"""Off-policy evaluation: a candidate policy's lead rate, estimated from logged decisions.

* :mod:`policy.evaluation.trajectories`: the log -> one trajectory per conversation
  (its decisions with their logged propensities, and its reward);
* :mod:`policy.evaluation.candidates`: the candidate policies' probabilities of
  the logged actions (a snapshot, uniform, the default edge, fixed edges);
* :mod:`policy.evaluation.conversation_terms`: each conversation's reward,
  importance weight and doubly robust term under a candidate;
* :mod:`policy.evaluation.estimators`: IPS, self-normalised IPS and doubly
  robust estimates with confidence intervals (IPS's widened by Fieller's,
  :mod:`policy.evaluation.ratio_interval`);
* :mod:`policy.evaluation.summary`: a candidate's evaluation as users are shown
  it: the estimates clipped to [0, 1], the effective sample size, the warnings,
  and no estimate below the floor on the effective sample size;
* :mod:`policy.evaluation.report`: an evaluation as JSON or a text table;
* :mod:`policy.evaluation.validate`: the check against the simulator's known truth
  (its simulated world, logged runs and exact true values: :mod:`policy.evaluation.truth`).

Pure, numpy only: PyMC is never imported here.
"""
