"""When has a decision point's world changed? Page's CUSUM over two learners' scores. Pure.

The online learner (:mod:`policy.online`) forgets slowly (a long half-life keeps
its steady state near the oracle), so on its own it would relearn a changed
world slowly. Beside it runs a *shadow*: the same model with a short
half-life. Per point, the CUSUM of the shadow's predictive log-likelihood of
each batch minus the learner's (both scored before the batch is learned) stays
near 0 while the world holds, since the long memory predicts at least as well,
and climbs once the shadow predicts better: above the threshold (nats) the
point's world has changed, and the learner takes the shadow's posterior,
tempered to :data:`ADOPTED_EVIDENCE` of its evidence. The learner's side (the
scores, the CUSUM's state, the adoption): :mod:`policy.online_change`.
"""

from __future__ import annotations

from collections.abc import Mapping

PointKey = tuple[str, str]

ADOPTED_EVIDENCE = 0.1
"""What a detected change keeps of the shadow's evidence. When the detector fires,
about half of the shadow's window (one change half-life) still predates the
change, so its posterior leans to the old best edge; kept whole, it was relearned
at the long half-life. ``python -m policy.sim --world drift`` without fits: back
to 90% of the oracle's leads 6,819 conversations after the flip with the whole
shadow, 3,887 with none of it, 3,698 with a tenth; the stationary worlds detect
no change, so nothing else moves (docs/policy-simulation.md)."""


CASCADE = 0.1
"""Once a point's CUSUM crosses the threshold, any other point of the flow whose
CUSUM is above this fraction of it in the same batch is taken to have changed
too. What moves one point's best edge (a new campaign's visitors, a season)
usually moves others, and their evidence, spread over fewer outcomes, crosses
later: in the drift world (every point flips at once) the detector otherwise
fired at the last point 1,200 to 1,800 conversations after the first. Without
fits: back to 90% of the oracle 2,510 conversations after the flip instead of
3,698. A point with no evidence of a change (its CUSUM at 0) keeps its posterior."""


def cusum_step(
    sums: Mapping[PointKey, float],
    mine: Mapping[PointKey, float],
    theirs: Mapping[PointKey, float],
    threshold: float,
) -> tuple[dict[PointKey, float], list[PointKey]]:
    """One batch of the per-point CUSUM: ``sums`` before it, the batch's scores
    under the learner (``mine``) and under the shadow (``theirs``; a point it did
    not score counts as a tie). Returns the sums after the batch, with the points
    that changed reset to 0, and those points in the sums' order. A change at one
    point lowers the bar for the others in the same batch to :data:`CASCADE` of
    the threshold."""
    after = dict(sums)
    for key, score in mine.items():
        after[key] = max(0.0, after.get(key, 0.0) + theirs.get(key, score) - score)
    if any(s > threshold for s in after.values()):
        threshold *= CASCADE
    changed = [key for key, s in after.items() if s > threshold]
    for key in changed:
        after[key] = 0.0
    return after, changed
