"""Path probabilities of a policy with a holdout: the logging snapshots' and a
candidate's. Pure.

A Thompson snapshot with a holdout share ``h`` logs, for every decision, the
propensity *marginal* over the holdout coin, ``p = h [e = e_0] + (1 - h) l_e``
(:meth:`policy.point_policy.Distribution.probabilities`). But the coin is not
drawn per decision: a conversation is held out when ``u = holdout_share(id) <
h``, one number per conversation, for all its decisions. So the probability
of a conversation's *path* is not the product of the logged propensities: a
held-out conversation that met three decision points took the default edge
three times with probability 1, while the product says ``(h + (1 - h)
l_0)^3``. IPS then put weights far above 1 on the default paths (the default
edge's estimate came out at 0.376 against a true 0.207 with ``h = 0.2``).

Two fixes were possible:

* *condition on the coin*: weight each decision with its propensity given the
  conversation's holdout status (1 for a held-out default edge, ``l_e``
  otherwise). Exact for the logging policy, but a held-out conversation then
  gives no support to any other path, and a candidate that explores there
  (uniform, another snapshot) cannot be weighted on it: its estimate comes out
  too low by the held-out share of the paths it would take;
* *integrate the coin out*, which is what is done here. ``u`` is a hash of a
  random conversation id: uniform on [0, 1) and independent of the visitor and
  their outcome. So the path ``a_1..a_t`` of a conversation has probability
  ``P(a_1..a_t) = int_0^1 prod_s [u < h_s ? held_s(a_s) : free_s(a_s)] du``
  (``held``: the default edge; ``free``: ``l``, recovered from the logged
  propensity as ``(p - h [a = e_0]) / (1 - h)``; ``h_s`` the holdout of the
  snapshot decision ``s`` names, so a holdout changed mid-conversation is
  exact too). The candidate's own holdout coin is integrated out the same way
  (the reward depends on the visitor and the path, not on ``u``). IPS weights
  the whole path with ``P_candidate / P_logged``; DR uses the same ratio of
  the prefixes ``a_1..a_t`` as its cumulative weights, and the candidate's
  probabilities given the prefix for its baselines. Without a holdout all this
  is the product of the per-decision probabilities, as before.

``h`` comes from the snapshot the decision names (``EdgeChosen.policy_version``):
the caller looks it up in the snapshot archive (:func:`with_holdouts`).
``uniform-v1`` has no holdout; ``<version>:killed`` logs 1.0 for the default
edge and needs nothing. A decision whose snapshot is not known keeps holdout 0
and is counted (:attr:`Holdouts.unknown_decisions`): if that snapshot had a
holdout, the estimate is biased, and the report says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise

from policy.decision_draws import holdout_share
from policy.uniform import UniformPolicy

from .trajectories import Decision, LogError, Trajectory

KILLED_SUFFIX = ":killed"


def snapshot_version(policy_version: str) -> str | None:
    """The snapshot a logged decision's holdout comes from (None: no snapshot)."""
    if policy_version == UniformPolicy.version or policy_version.endswith(KILLED_SUFFIX):
        return None
    return policy_version


def snapshot_versions(trajectories: Sequence[Trajectory]) -> set[str]:
    """Every snapshot version the decisions of ``trajectories`` name."""
    out: set[str] = set()
    for t in trajectories:
        for d in t.decisions:
            version = snapshot_version(d.policy_version)
            if version is not None:
                out.add(version)
    return out


def prefix_probabilities(
    thresholds: Sequence[float], held: Sequence[float], free: Sequence[float]
) -> list[float]:
    """``P(a_1..a_t)`` for ``t = 1..T`` marginal over a coin ``u`` uniform on [0, 1):
    decision ``s`` had probability ``held[s]`` when ``u < thresholds[s]``, else
    ``free[s]``. Exact: the integrand is constant between the sorted thresholds."""
    n = len(thresholds)
    cuts = sorted({0.0, 1.0, *(min(max(h, 0.0), 1.0) for h in thresholds)})
    out = [0.0] * n
    for low, high in pairwise(cuts):
        product = high - low
        for s in range(n):
            # u in [low, high) is below thresholds[s] exactly when thresholds[s] >= high
            product *= held[s] if thresholds[s] >= high else free[s]
            out[s] += product
    return out


def logged_prefixes(decisions: Sequence[Decision]) -> list[float]:
    """The logging policies' probability of each prefix of the logged path."""
    return prefix_probabilities(
        [d.holdout for d in decisions],
        [d.held_propensity for d in decisions],
        [d.free_propensity for d in decisions],
    )


@dataclass(frozen=True, slots=True)
class Holdouts:
    trajectories: tuple[Trajectory, ...]
    held_out: int  # conversations with at least one decision taken in a holdout
    decisions: int  # decisions logged by a snapshot with a holdout above 0
    unknown_versions: tuple[str, ...]  # snapshot versions named but not known
    unknown_decisions: int  # their decisions: taken to have had no holdout


def _checked(decision: Decision, conversation_id: str, holdout: float) -> bool:
    """Whether the conversation was held out; LogError when the logged decision
    cannot have come from a snapshot with this holdout (an archive that does not
    match the log)."""
    held = holdout_share(conversation_id) < holdout
    where = (
        f"conversation {conversation_id} at {decision.node_id}/{decision.button_id}"
        f" ({decision.policy_version}, holdout {holdout:g})"
    )
    if held and decision.chosen != 0:
        raise LogError(
            f"{where}: held out, yet it took {decision.candidates[decision.chosen]!r},"
            " not the default edge: the snapshot archive does not match the log"
        )
    floor = holdout if decision.chosen == 0 else 0.0
    if holdout < 1.0 and decision.propensity <= floor:
        raise LogError(
            f"{where}: logged propensity {decision.propensity!r} is not a mixture with that"
            " holdout: the snapshot archive does not match the log"
        )
    return held


def with_holdouts(trajectories: Sequence[Trajectory], holdouts: Mapping[str, float]) -> Holdouts:
    """``trajectories`` with each decision's :attr:`Decision.holdout` set from the
    snapshot it names; ``holdouts``: each known snapshot version's share."""
    out: list[Trajectory] = []
    unknown: set[str] = set()
    held_out = adjusted = unknown_decisions = 0
    for t in trajectories:
        decisions: list[Decision] = []
        held_here = False
        for d in t.decisions:
            version = snapshot_version(d.policy_version)
            holdout = 0.0 if version is None else holdouts.get(version)
            if holdout is None:
                unknown.add(str(version))
                unknown_decisions += 1
                holdout = 0.0
            if holdout > 0.0:
                held_here |= _checked(d, t.conversation_id, holdout)
                adjusted += 1
            decisions.append(d if d.holdout == holdout else replace(d, holdout=holdout))
        held_out += held_here
        out.append(replace(t, decisions=tuple(decisions)))
    return Holdouts(tuple(out), held_out, adjusted, tuple(sorted(unknown)), unknown_decisions)


def candidate_path(
    splits: Sequence[tuple[float, Sequence[float], Sequence[float]]], chosen: Sequence[int]
) -> tuple[list[tuple[float, ...]], list[float]]:
    """For a candidate with per-decision ``(holdout, held, free)`` distributions and
    the logged path ``chosen``: its distribution at each decision given the path
    before it (its holdout coin integrated out), and the probability of each
    prefix of the path."""
    thresholds = [min(max(h, 0.0), 1.0) for h, _, _ in splits]
    cuts = sorted({0.0, 1.0, *thresholds})
    segments = [(low, high) for low, high in pairwise(cuts)]
    mass = [high - low for low, high in segments]  # P(u in segment and the prefix so far)
    conditionals: list[tuple[float, ...]] = []
    prefixes: list[float] = []
    for s, (_, held, free) in enumerate(splits):
        dists = [held if thresholds[s] >= high else free for _, high in segments]
        total = sum(mass)
        k = len(free)
        if total > 0.0:
            conditionals.append(
                tuple(
                    sum(m * d[a] for m, d in zip(mass, dists, strict=True)) / total
                    for a in range(k)
                )
            )
        else:
            conditionals.append(tuple(free))
        mass = [m * d[chosen[s]] for m, d in zip(mass, dists, strict=True)]
        prefixes.append(sum(mass))
    return conditionals, prefixes
