"""Turn the steps of a conversation into the bot messages a widget shows.

Texts and button labels are templates (:mod:`schemas.templates`), rendered
here, at reply and resume time, from the conversation's state: a rendered
text is never stored or logged, so a personal value in it (opened in memory
through the :class:`~services.conversation.scope.Opener`) never reaches the
event log. Inserted values are escaped for the Markdown subset of texts.

Texts are shown in the visitor's language: the locale of the conversation's
start context picks one of the flow's locales (:meth:`Flow.for_locale`, parsed
with the flow), so a reply, a resume and the reply to a duplicate all speak
the same language; the events never hold it.
"""

from __future__ import annotations

from schemas.flow import Flow, Node, NodeKind
from schemas.replies import BotMessage, ButtonView, FieldView, ImageView, InputView
from schemas.templates import render
from services.conversation.messages import ANSWER_SENT, DETAILS_SENT, SKIPPED, in_language
from services.conversation.scope import Opener, Scope
from services.conversation.state import (
    INPUT_ANSWERED,
    INPUT_SKIPPED,
    LEAD_SUBMITTED,
    ConversationState,
    Step,
)

LEAD_ANSWER_LABEL = DETAILS_SENT.en
SKIPPED_ANSWER_LABEL = SKIPPED.en
SEALED_ANSWER_LABEL = ANSWER_SENT.en


def _input_view(node: Node) -> InputView | None:
    spec = node.input
    if spec is None:
        return None
    return InputView(
        type=spec.type.value,
        max_length=spec.max_length,
        skippable=spec.skippable,
        placeholder=spec.placeholder,
        choices=tuple(ButtonView(id=c.id, label=c.label) for c in spec.choices),
        other=spec.other,
        min=spec.min,
        max=spec.max,
    )


def _answer(node: Node, step: Step, scope: Scope, locale: str) -> str | None:
    if step.answer is None:
        return None
    if step.answer == LEAD_SUBMITTED and node.kind is NodeKind.LEAD_FORM:
        return in_language(DETAILS_SENT, locale)
    if node.kind is NodeKind.INPUT:
        if step.answer == INPUT_SKIPPED:
            return in_language(SKIPPED, locale)
        if step.answer == INPUT_ANSWERED:
            shown = scope.input_display(node, step)
            return in_language(ANSWER_SENT, locale) if shown is None else shown
    button = node.button(step.answer)
    return render(button.label, scope.display_value, markdown=False) if button else step.answer


def render_nudge(flow: Flow, step: Step, scope: Scope) -> BotMessage:
    """The flow's idle nudge given on ``step.node_id`` (a message of its own: the
    question it was given on keeps waiting, its buttons stay)."""
    idle = flow.timers.idle
    text = render(idle.message, scope.display_value) if idle is not None else ""
    return BotMessage(seq=step.seq, node_id=step.node_id, kind=NodeKind.MESSAGE.value, text=text)


def render_step(flow: Flow, step: Step, scope: Scope, locale: str = "") -> BotMessage:
    """One message; ``flow`` is the translation shown (:meth:`Flow.for_locale`),
    ``locale`` the visitor's (the language of the server's own answer labels)."""
    if step.nudge:
        return render_nudge(flow, step, scope)
    node = flow.node(step.node_id)
    return BotMessage(
        seq=step.seq,
        node_id=node.id,
        kind=node.kind.value,
        text=render(node.text, scope.display_value),
        buttons=tuple(
            ButtonView(id=b.id, label=render(b.label, scope.display_value, markdown=False))
            for b in node.buttons
        ),
        fields=tuple(
            FieldView(name=f.name, type=f.type.value, label=f.label, required=f.required)
            for f in node.fields
        ),
        done=node.kind is NodeKind.END,
        answer=_answer(node, step, scope, locale),
        input=_input_view(node),
        image=ImageView(src=node.image.src, alt=node.image.alt) if node.image else None,
    )


def render_steps(
    flow: Flow,
    steps: tuple[Step, ...],
    state: ConversationState | None = None,
    opener: Opener | None = None,
) -> tuple[BotMessage, ...]:
    """The messages of ``steps`` in the visitor's language (the start context's
    locale picks one of the flow's locales); templates read ``state``'s variables
    (none without a state: every placeholder renders its fallback)."""
    state = state or ConversationState("")
    locale = state.context.locale
    flow = flow.for_locale(locale)
    scope = Scope(flow, state, opener)
    silent = flow.timers.idle is None or not flow.timers.idle.message
    return tuple(
        render_step(flow, step, scope, locale) for step in steps if not (step.nudge and silent)
    )
