"""The decider: ``decide(state, command, flow, policy, sealer) -> Decision``.

Pure: no clock, no I/O, no global RNG. Time comes in the command, randomness
from the policy's seeded RNG, the conversation key through ``sealer``. The same
(state, command) therefore always yields the same events with the same ids,
which is what makes at-least-once delivery safe everywhere.

Command sequencing (per conversation, assigned by the client):
* ``seq == last + 1``: applied; a refused command (unknown button, invalid
  lead, ...) still uses its seq up and is logged as ``CommandRejected``.
* ``seq == last``: a duplicate; nothing is emitted, the original reply is
  returned again.
* ``seq < last``: stale; nothing is emitted, an error is returned.
* ``seq > last + 1``: out of order; logged once as ``CommandRejected`` without
  using a seq, and refused.

A conversation is capped: a command with a seq over :data:`MAX_COMMANDS`, or
any command once the conversation has :data:`MAX_EVENTS` events, is refused
with ``conversation_too_long`` and emits nothing (a cyclic flow otherwise let
one conversation grow without end). Duplicates, stale commands and resumes
are still answered.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from schemas.commands import (
    AnswerQuestion,
    Command,
    FireTimer,
    GoBack,
    PressButton,
    Resume,
    StartConversation,
    SubmitLead,
)
from schemas.events import (
    ButtonPressed,
    ConversationAbandoned,
    ConversationStarted,
    EdgeChosen,
    Event,
    LeadCaptured,
    QuestionAnswered,
    VisitorNudged,
    WentBack,
)
from schemas.flow import Button, FieldType, Flow, Node, NodeKind
from schemas.replies import Reply
from services.conversation.answers import validate_answer
from services.conversation.emitter import Emitter, rejected
from services.conversation.going_back import Refusal, step_to_reopen
from services.conversation.leads import validate_lead
from services.conversation.replies import error_reply, messages_after, reply_to_applied
from services.conversation.scope import Opener
from services.conversation.sealing import Sealer
from services.conversation.state import ConversationState
from services.conversation.timers import due_timer
from services.policy_port import DecisionPoint, EdgePolicy

MAX_COMMANDS = 300
"""The most commands one conversation takes (its start included): a real visitor
answers a few dozen questions at most."""
MAX_EVENTS = 3000
"""Events after which a conversation takes no more commands: bounds its log,
its state and its transcript even where commands add many events (message
runs, refused out-of-order commands). One command may end a little past it."""


@dataclass(frozen=True, slots=True)
class Decision:
    events: tuple[Event, ...]
    reply: Reply
    state: ConversationState


def _start(state: ConversationState, cmd: StartConversation, flow: Flow, em: Emitter) -> None:
    em.events.append(
        ConversationStarted(
            **em.next_header(),
            flow_id=flow.id,
            flow_version=flow.version,
            site_id=cmd.site_id,
            context=cmd.context,
            preview=cmd.preview,
        )
    )
    em.enter(flow, flow.start, lead_captured=False)


def _waiting_node(
    state: ConversationState,
    cmd: PressButton | SubmitLead | AnswerQuestion,
    flow: Flow,
    kind: NodeKind,
    em: Emitter,
) -> Node | None:
    """The current node if ``cmd`` answers it; otherwise log the rejection, return None."""
    node = flow.node(state.current_node or flow.start)
    if state.status == "completed":
        rejected(em, cmd, "completed", consumed=True)
        return None
    if cmd.node_id != node.id or node.kind is not kind:
        rejected(em, cmd, "wrong_node", consumed=True)
        return None
    return node


def _choose_edge(
    state: ConversationState,
    cmd: PressButton,
    flow: Flow,
    node: Node,
    button: Button,
    candidates: tuple[str, ...],
    policy: EdgePolicy,
    em: Emitter,
) -> str:
    """Ask the policy at a decision point and log its choice with the propensity."""
    choice = policy.choose(
        DecisionPoint(
            conversation_id=state.conversation_id,
            command_seq=cmd.seq,
            flow_id=flow.id,
            flow_version=flow.version,
            node_id=node.id,
            button_id=button.id,
            candidates=candidates,
            context=state.context,
            answers=(*state.answers(), (node.id, button.id)),
            at=cmd.at,
        )
    )
    if choice.chosen not in candidates:
        raise ValueError(f"policy {choice.policy_version} chose a non-candidate edge")
    em.events.append(
        EdgeChosen(
            **em.next_header(),
            node_id=node.id,
            button_id=button.id,
            candidates=candidates,
            chosen=choice.chosen,
            propensity=choice.propensity,
            policy_version=choice.policy_version,
            seed=choice.seed,
            features=choice.features,
        )
    )
    return choice.chosen


def _press(
    state: ConversationState, cmd: PressButton, flow: Flow, policy: EdgePolicy, em: Emitter
) -> None:
    node = _waiting_node(state, cmd, flow, NodeKind.QUESTION, em)
    if node is None:
        return
    button = node.button(cmd.button_id)
    if button is None:
        rejected(em, cmd, "unknown_button", consumed=True)
        return
    em.events.append(ButtonPressed(**em.next_header(), node_id=node.id, button_id=button.id))
    candidates = em.branch(flow, button.branches) if button.branches else button.next
    target = candidates[0]
    if len(candidates) > 1:
        target = _choose_edge(state, cmd, flow, node, button, candidates, policy, em)
    em.enter(flow, target, lead_captured=state.lead_captured)


def _next_of(flow: Flow, node: Node, em: Emitter) -> str | None:
    return em.branch(flow, node.branches)[0] if node.branches else node.next


def _answer(
    state: ConversationState, cmd: AnswerQuestion, flow: Flow, sealer: Sealer, em: Emitter
) -> None:
    node = _waiting_node(state, cmd, flow, NodeKind.INPUT, em)
    if node is None or node.input is None:
        return
    spec = node.input
    if cmd.skip:
        if not spec.skippable:
            rejected(em, cmd, "invalid_answer", consumed=True, detail="Please answer this one.")
            return
        value = None
    else:
        value, problem = validate_answer(spec, cmd.value, state.context.locale)
        if value is None:
            rejected(em, cmd, "invalid_answer", consumed=True, detail=problem)
            return
    header = em.next_header()
    clear, sealed = "", ""
    if value is not None and spec.personal:
        sealed = sealer.seal(value.encode(), header["id"])
    elif value is not None:
        clear = value
    em.events.append(
        QuestionAnswered(
            **header,
            node_id=node.id,
            variable=node.variable,
            personal=spec.personal,
            value=clear,
            sealed=sealed,
            skipped=value is None,
        )
    )
    target = _next_of(flow, node, em)
    if target is not None:
        em.enter(flow, target, lead_captured=state.lead_captured)


def _submit(
    state: ConversationState, cmd: SubmitLead, flow: Flow, sealer: Sealer, em: Emitter
) -> None:
    node = _waiting_node(state, cmd, flow, NodeKind.LEAD_FORM, em)
    if node is None or node.next is None:
        return
    values, errors = validate_lead(node.fields, cmd.fields, state.context.locale)
    if errors:
        rejected(em, cmd, "invalid_lead", consumed=True, fields=errors)
        return
    header = em.next_header()
    sealed = sealer.seal(orjson.dumps(values, option=orjson.OPT_SORT_KEYS), header["id"])
    em.events.append(
        LeadCaptured(
            **header,
            node_id=node.id,
            site_id=state.site_id,
            fields_present=tuple(sorted(values)),
            consent=any(
                values.get(f.name) == "true" for f in node.fields if f.type is FieldType.CONSENT
            ),
            sealed=sealed,
        )
    )
    em.enter(flow, _next_of(flow, node, em) or node.next, lead_captured=True)


def _go_back(state: ConversationState, cmd: GoBack, flow: Flow, em: Emitter) -> None:
    """Withdraw the last answer and enter its node again (services.conversation.going_back)."""
    step = step_to_reopen(state, flow, cmd.node_id)
    if isinstance(step, Refusal):
        rejected(em, cmd, step.code, consumed=True, detail=step.detail)
        return
    em.events.append(
        WentBack(
            **em.next_header(),
            node_id=step.node_id,
            from_node=state.current_node or "",
            withdrawn_seq=step.seq,
        )
    )
    em.enter(flow, step.node_id, lead_captured=state.lead_captured)


def _fire(
    state: ConversationState, cmd: FireTimer, flow: Flow | None, opener: Opener | None
) -> Decision:
    """Fire a due timer (services.conversation.timers): the idle nudge (its message
    shown as a step of its own, then its node if it has one) or abandonment. A
    stale or early timer changes nothing and answers with no messages."""
    if flow is None:
        return Decision((), error_reply(state, cmd, "unknown_flow"), state)
    timer = due_timer(state, flow, cmd.timer, cmd.for_seq, cmd.at)
    if timer is None or state.seq >= MAX_EVENTS:
        return Decision((), messages_after(state, cmd, flow, state.seq), state)
    em = Emitter(state, cmd)
    em.command_seq = state.last_command_seq  # a timer uses no command seq
    node_id = state.current_node or flow.start
    idle, abandon = flow.timers.idle, flow.timers.abandon_after
    if timer.timer == "idle" and idle is not None:
        nudge = VisitorNudged(**em.next_header(), node_id=node_id, idle_seconds=idle.after)
        em.events.append(nudge)
        if idle.to:
            em.enter(flow, idle.to, lead_captured=state.lead_captured)
    elif abandon is not None:
        em.events.append(
            ConversationAbandoned(
                **em.next_header(),
                node_id=node_id,
                idle_seconds=abandon,
                lead_captured=state.lead_captured,
            )
        )
    new_state = em.folded()
    reply = messages_after(new_state, cmd, flow, state.seq, opener=opener)
    return Decision(tuple(em.events), reply, new_state)


def decide(
    state: ConversationState,
    command: Command,
    flow: Flow | None,
    policy: EdgePolicy,
    sealer: Sealer,
    opener: Opener | None = None,
) -> Decision:
    """Decide what ``command`` does to the conversation in ``state``.

    ``flow`` is the flow the conversation runs (for a start: the one requested;
    None when it is unknown). ``opener`` opens personal values that the reply's
    templates show (in memory only; events never hold rendered text); without
    one they render their fallbacks, which changes replies, never events."""
    if isinstance(command, Resume):
        if state.status == "new" or (command.site_id and command.site_id != state.site_id):
            # another site's conversation looks exactly like one that does not exist
            unknown = ConversationState(state.conversation_id)
            return Decision((), error_reply(unknown, command, "no_conversation"), state)
        if flow is None:
            return Decision((), error_reply(state, command, "unknown_flow"), state)
        reply = messages_after(state, command, flow, command.after_seq, opener=opener)
        return Decision((), reply, state)
    if isinstance(command, FireTimer):
        return _fire(state, command, flow, opener)
    if state.status == "new":
        if not isinstance(command, StartConversation):
            return Decision((), error_reply(state, command, "not_started"), state)
        if command.seq != 1:
            return Decision((), error_reply(state, command, "out_of_order"), state)
        if flow is None:
            return Decision((), error_reply(state, command, "unknown_flow"), state)
    if command.seq == state.last_command_seq:
        return Decision((), reply_to_applied(state, command, flow, opener), state)
    if command.seq < state.last_command_seq:
        return Decision((), error_reply(state, command, "stale_command"), state)
    if command.seq > MAX_COMMANDS or state.seq >= MAX_EVENTS:
        return Decision((), error_reply(state, command, "conversation_too_long"), state)
    em = Emitter(state, command)
    if command.seq > state.last_command_seq + 1:
        if command.seq != state.last_gap_rejected:
            rejected(em, command, "out_of_order", consumed=False)
        new_state = em.folded()
        return Decision(
            tuple(em.events), error_reply(new_state, command, "out_of_order"), new_state
        )
    if flow is None:
        return Decision((), error_reply(state, command, "unknown_flow"), state)
    match command:
        case StartConversation():
            if state.status == "new":
                _start(state, command, flow, em)
            else:
                rejected(em, command, "already_started", consumed=True)
        case PressButton():
            _press(state, command, flow, policy, em)
        case SubmitLead():
            _submit(state, command, flow, sealer, em)
        case AnswerQuestion():
            _answer(state, command, flow, sealer, em)
        case GoBack():
            _go_back(state, command, flow, em)
    new_state = em.folded()
    reply = reply_to_applied(new_state, command, flow, opener)
    return Decision(tuple(em.events), reply, new_state)
