"""Replies of the decider, rebuilt from state alone.

Because a reply is a function of the conversation's state, the reply to a
duplicate command is rebuilt exactly instead of being stored. Replies speak the
visitor's language (the start context's locale): the flow's texts in the locale
it picks, and the server's own messages (English in ``ERROR_MESSAGES`` and in
the events) translated (:mod:`services.conversation.messages`).
"""

from __future__ import annotations

from typing import cast

from schemas.commands import Command
from schemas.flow import Flow
from schemas.replies import ErrorCode, Reply, ReplyError
from services.conversation.messages import localise
from services.conversation.render import render_steps
from services.conversation.scope import Opener
from services.conversation.state import ConversationState

ERROR_MESSAGES: dict[str, str] = {
    "not_started": "This conversation has not started.",
    "no_conversation": "No conversation to resume.",
    "unknown_flow": "This quiz is not available.",
    "already_started": "This conversation has already started.",
    "completed": "This conversation has ended.",
    "wrong_node": "That question is no longer current.",
    "unknown_button": "That answer is not one of the choices.",
    "stale_command": "That was already answered.",
    "out_of_order": "A message was skipped; please resume the conversation.",
    "invalid_lead": "Please check the highlighted fields.",
    "invalid_answer": "Please check your answer.",
    "cannot_go_back": "That answer can no longer be changed.",
    "conversation_too_long": "This conversation is too long to go on; please start again.",
}

RETRYABLE: frozenset[str] = frozenset({"invalid_answer"})
"""Refusals the visitor fixes by sending again (the command's seq is used up, so
the retry takes the next one, like a corrected lead form)."""

MAX_RESUME_MESSAGES = 50
"""The most messages one resume answers with (oldest first); ``more`` tells the
client to resume again from the last one it got. A conversation's whole
transcript (up to the decider's caps) would otherwise answer one small frame
with hundreds of kilobytes."""


def error_reply(
    state: ConversationState,
    command: Command,
    code: ErrorCode,
    detail: str = "",
    fields: dict[str, str] | None = None,
) -> Reply:
    """A refusal, its message (and each field's) in the visitor's language: the
    conversation's start context's locale, or a start command's."""
    locale = (state.status == "new" and _command_locale(command)) or state.context.locale
    return Reply(
        conversation_id=state.conversation_id,
        command_seq=command.seq,
        ack=state.last_command_seq,
        error=ReplyError(
            code=code,
            message=localise(detail or ERROR_MESSAGES.get(code, code), locale),
            retryable=code in RETRYABLE,
            fields={name: localise(text, locale) for name, text in (fields or {}).items()},
        ),
        reply_to=command.reply_to,
        request_id=command.request_id,
    )


def _command_locale(command: Command) -> str:
    context = getattr(command, "context", None)
    locale = getattr(context, "locale", "")
    return locale if isinstance(locale, str) else ""


def messages_after(
    state: ConversationState,
    command: Command,
    flow: Flow,
    after: int,
    limit: int = MAX_RESUME_MESSAGES,
    opener: Opener | None = None,
) -> Reply:
    """The first ``limit`` messages after event seq ``after``; ``more`` if there are others."""
    steps = tuple(s for s in state.steps if s.seq > after)
    return Reply(
        conversation_id=state.conversation_id,
        command_seq=command.seq,
        ack=state.last_command_seq,
        messages=render_steps(flow, steps[:limit], state, opener),
        more=len(steps) > limit,
        reply_to=command.reply_to,
        request_id=command.request_id,
    )


def reply_to_applied(
    state: ConversationState, command: Command, flow: Flow | None, opener: Opener | None = None
) -> Reply:
    """The reply to the last applied command, rebuilt from state (for duplicates too)."""
    rejection = state.last_rejection
    if rejection is not None or flow is None:
        if rejection is None:
            return error_reply(state, command, "unknown_flow")
        code = cast(ErrorCode, rejection.reason)
        return error_reply(state, command, code, rejection.detail, rejection.fields)
    steps = tuple(s for s in state.steps if s.command_seq == state.last_command_seq)
    return Reply(
        conversation_id=state.conversation_id,
        command_seq=command.seq,
        ack=state.last_command_seq,
        messages=render_steps(flow, steps, state, opener),
        reply_to=command.reply_to,
        request_id=command.request_id,
    )
