"""The reward ledger with the holdout counted apart, for the lift over the holdout.

The ledger (:mod:`policy.rewards`) does not know which conversations were held
out. :class:`HoldoutLedger` is that ledger (what fits and updates read is
unchanged) plus a second fold of the same events, :attr:`HoldoutLedger.groups`,
in which a conversation in the holdout counts under the flow id
``{flow_id}`` + :data:`HOLDOUT_MARK` and the others under their own: the same
rules of finality, order and once-per-point, per group.

Membership is derived, not logged: a conversation is in the holdout when
``holdout_share(conversation id) < h`` (:func:`policy.decision_draws.holdout_share`,
the very test a decision makes), with ``h`` the flow's holdout share in force
when the conversation's start is folded (``holdout_of(flow_id)``: the policy
service's guardrails; while the history is read at a start, the current ones).
After a change of the holdout share the groups are exact for conversations
that started after it; earlier ones are sorted by the share in force when they
were read. Folding the events twice costs about twice the ledger's CPU.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

from policy.decision_draws import holdout_share
from policy.reward_conversations import DEFAULT_HORIZON_SECONDS, DEFAULT_IDLE_SECONDS
from policy.reward_counts import FlowCounts, FlowKey
from policy.rewards import RewardLedger
from schemas.events import ConversationStarted, Event

HOLDOUT_MARK = "\x1fholdout"


class HoldoutLedger(RewardLedger):
    def __init__(
        self,
        horizon_seconds: float = DEFAULT_HORIZON_SECONDS,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
        holdout_of: Callable[[str], float] = lambda flow_id: 0.0,
    ) -> None:
        super().__init__(horizon_seconds, idle_seconds)
        self.groups = RewardLedger(horizon_seconds, idle_seconds)
        self.holdout_of = holdout_of

    def observe(self, events: Iterable[Event]) -> None:
        batch = list(events)
        super().observe(batch)
        self.groups.observe([self._grouped(e) for e in batch])

    def expire(self, now: float | None = None) -> int:
        ended = super().expire(now)
        self.groups.expire(now)
        return ended

    def _grouped(self, event: Event) -> Event:
        if isinstance(event, ConversationStarted):
            h = self.holdout_of(event.flow_id)
            if h > 0.0 and holdout_share(event.conversation_id) < h:
                return dataclasses.replace(event, flow_id=event.flow_id + HOLDOUT_MARK)
        return event

    def split(self, flow: FlowKey) -> tuple[FlowCounts | None, FlowCounts | None]:
        """(the holdout's counts, the rest's counts) of a flow version."""
        held = self.groups.flows.get(FlowKey(flow.flow_id + HOLDOUT_MARK, flow.flow_version))
        return held, self.groups.flows.get(flow)
