"""Turn the steps of a conversation into the bot messages a widget shows."""

from __future__ import annotations

from schemas.flow import Flow, NodeKind
from schemas.replies import BotMessage, ButtonView, FieldView
from services.conversation.state import LEAD_SUBMITTED, Step

LEAD_ANSWER_LABEL = "Details sent"


def render_step(flow: Flow, step: Step) -> BotMessage:
    node = flow.node(step.node_id)
    answer: str | None = None
    if step.answer == LEAD_SUBMITTED:
        answer = LEAD_ANSWER_LABEL
    elif step.answer is not None:
        button = node.button(step.answer)
        answer = button.label if button else step.answer
    return BotMessage(
        seq=step.seq,
        node_id=node.id,
        kind=node.kind.value,
        text=node.text,
        buttons=tuple(ButtonView(id=b.id, label=b.label) for b in node.buttons),
        fields=tuple(
            FieldView(name=f.name, type=f.type.value, label=f.label, required=f.required)
            for f in node.fields
        ),
        done=node.kind is NodeKind.END,
        answer=answer,
    )


def render_steps(flow: Flow, steps: tuple[Step, ...]) -> tuple[BotMessage, ...]:
    return tuple(render_step(flow, step) for step in steps)
