"""One visitor connection: frames in, commands out, reply frames back.

This is the gateway's only protocol logic; the aiohttp handler in
:mod:`gateway.ws` just moves text frames between the socket and here. One
command is in flight per connection at a time (the handler awaits each reply
before reading the next frame), which is the backpressure: a client that floods
is slowed down by TCP, and then refused by the rate limiter.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.config import GatewaySettings
from gateway.metrics import GatewayMetrics
from gateway.ratelimit import TokenBucket
from gateway.tokens import InvalidToken, ResumeTokens
from schemas.commands import (
    AnswerQuestion,
    Command,
    GoBack,
    PressButton,
    Resume,
    StartConversation,
    SubmitLead,
)
from schemas.frames import (
    PONG_FRAME,
    AnswerFrame,
    BackFrame,
    ClientFrame,
    FrameError,
    LeadFrame,
    PingFrame,
    PressFrame,
    ResumeFrame,
    StartFrame,
    error_frame,
    message_frame,
    moved_frame,
    parse_client_frame,
    session_frame,
)
from schemas.replies import ErrorCode, Reply, ReplyError
from services.catalog import FlowCatalog
from services.ports import CommandBus
from services.preview_tokens import InvalidPreview, PreviewClaims, PreviewTokens
from services.sites import Site

log = logging.getLogger(__name__)
CLOSE_POLICY_VIOLATION = 1008
PING_TEXT = '{"type":"ping","v":1}'  # JSON.stringify of the widget's ping, byte for byte


@dataclass(frozen=True, slots=True)
class GatewayContext:
    """What every connection of one gateway shares."""

    settings: GatewaySettings
    sites: dict[str, Site]
    catalog: FlowCatalog
    bus: CommandBus
    tokens: ResumeTokens
    metrics: GatewayMetrics
    clock: Callable[[], float] = time.time
    new_id: Callable[[], str] = field(default=lambda: str(uuid.uuid4()))
    # preview tokens' checker; None: derived from ``tokens``' secrets when a start has one
    previews: PreviewTokens | None = None

    def preview_tokens(self) -> PreviewTokens:
        return self.previews or PreviewTokens(self.tokens.secrets)


@dataclass(slots=True)
class Outcome:
    frames: list[str]
    close_code: int | None = None
    close_reason: str = ""


def _error(code: ErrorCode, message: str, *, retryable: bool = False) -> ReplyError:
    return ReplyError(code=code, message=message, retryable=retryable)


class Connection:
    def __init__(self, ctx: GatewayContext, origin: str | None) -> None:
        self._ctx = ctx
        self._origin = origin
        self._bucket = TokenBucket(
            ctx.settings.rate_per_second, ctx.settings.rate_burst, ctx.clock()
        )
        self._limited_in_a_row = 0
        starts = ctx.settings.starts_per_minute
        self._starts = TokenBucket(starts / 60.0, starts, ctx.clock())
        # command frames (start, press, lead, resume) parsed so far: what the idle
        # timeout counts as activity; pings and refused garbage are not activity
        self.commands = 0
        self.conversation_id: str | None = None
        self.flow_id: str | None = None  # known from start; a resume token does not carry it

    def _refuse(
        self,
        error: ReplyError,
        seq: int | None = None,
        *,
        close_code: int | None = None,
        close_reason: str = "",
    ) -> Outcome:
        reason = "flood" if close_reason == "flood" else error.code
        self._ctx.metrics.rejected.labels(reason).inc()
        return Outcome([error_frame(error, seq)], close_code, close_reason)

    async def on_text(self, text: str) -> Outcome:
        limit = self._ctx.settings.max_frame_bytes
        if not self._bucket.allow(self._ctx.clock()):
            self._limited_in_a_row += 1
            if self._limited_in_a_row >= self._ctx.settings.flood_limit:
                return self._refuse(
                    _error("rate_limited", "too many frames; closing"),
                    close_code=CLOSE_POLICY_VIOLATION,
                    close_reason="flood",
                )
            return self._refuse(_error("rate_limited", "slow down", retryable=True))
        self._limited_in_a_row = 0
        if text == PING_TEXT:  # the widget's keepalive, every 25 s per socket: not parsed
            self._ctx.metrics.count_frame("ping")
            return Outcome([PONG_FRAME])
        if len(text) > limit or (len(text) * 4 > limit and len(text.encode()) > limit):
            return self._refuse(_error("frame_too_large", f"frames are limited to {limit} bytes"))
        try:
            frame = parse_client_frame(text)
        except FrameError as exc:
            return self._refuse(_error(exc.code, exc.message))
        self._ctx.metrics.count_frame(frame.type)
        if not isinstance(frame, PingFrame):
            self.commands += 1
        return await self._dispatch(frame)

    async def _dispatch(self, frame: ClientFrame) -> Outcome:
        match frame:
            case PingFrame():
                return Outcome([PONG_FRAME])
            case StartFrame():
                return await self._start(frame)
            case ResumeFrame():
                return await self._resume(frame)
            case PressFrame() | LeadFrame() | AnswerFrame() | BackFrame():
                return await self._command(frame)

    def _site_for(self, site_id: str) -> tuple[Site | None, Outcome | None]:
        site = self._ctx.sites.get(site_id)
        if site is None:
            return None, self._refuse(_error("unknown_site", f"unknown site {site_id!r}"))
        if not site.allows_origin(self._origin):
            return None, self._refuse(
                _error("origin_not_allowed", "this page may not embed the widget"),
                close_code=CLOSE_POLICY_VIOLATION,
                close_reason="origin not allowed",
            )
        return site, None

    async def _start(self, frame: StartFrame) -> Outcome:
        if not self._starts.allow(self._ctx.clock()):
            per_minute = self._ctx.settings.starts_per_minute
            return self._refuse(
                _error("too_many_starts", f"at most {per_minute} new conversations a minute")
            )
        site, refused = self._site_for(frame.site)
        if refused is not None or site is None:
            return refused or Outcome([])
        preview: PreviewClaims | None = None
        if frame.preview:
            preview, refused = self._preview(frame, site)
            if refused is not None:
                return refused
        elif not site.allows_flow(frame.flow) or self._ctx.catalog.latest(frame.flow) is None:
            return self._refuse(_error("unknown_flow", f"unknown flow {frame.flow!r}"))
        cid = self._ctx.settings.regions.homed(
            self._ctx.tokens.conversation_for_start(site.id, frame.flow, frame.start_id)
            if frame.start_id
            else self._ctx.new_id()
        )
        command = StartConversation(
            conversation_id=cid,
            seq=1,
            at=self._ctx.clock(),
            flow_id=frame.flow,
            site_id=site.id,
            context=frame.context,
            reply_to=self._ctx.settings.instance,
            flow_version=0 if preview is None else preview.version,
            preview=preview is not None,
            fresh=not frame.start_id,
        )
        reply = await self._send(command)
        if isinstance(reply, Reply) and reply.error is None:
            self.conversation_id = cid
            self.flow_id = frame.flow
            self._ctx.metrics.conversations_started.inc()
        return self._with_session(reply, site, command.seq)

    def _preview(
        self, frame: StartFrame, site: Site
    ) -> tuple[PreviewClaims | None, Outcome | None]:
        """The claims of the start's preview token, or the refusal: a forged,
        expired or malformed token, one for another site or flow, or a draft this
        gateway does not have (yet) is ``invalid_preview``. The token stands in
        for the site's list of flows: a draft may be of a flow not yet published."""
        try:
            claims = self._ctx.preview_tokens().verify(frame.preview, self._ctx.clock())
        except InvalidPreview as exc:
            message = f"this preview cannot start: {exc}"
            return None, self._refuse(_error("invalid_preview", message))
        if not claims.allows_site(site.id) or claims.flow_id != frame.flow:
            message = "this preview is for another site or flow"
            return None, self._refuse(_error("invalid_preview", message))
        if self._ctx.catalog.get(claims.flow_id, claims.version) is None:
            message = "this draft is not loaded here yet; try again"
            return None, self._refuse(_error("invalid_preview", message, retryable=True))
        return claims, None

    async def _resume(self, frame: ResumeFrame) -> Outcome:
        try:
            claims = self._ctx.tokens.verify(frame.token, self._ctx.clock())
        except InvalidToken:
            return self._refuse(_error("invalid_token", "this conversation cannot be resumed"))
        site, refused = self._site_for(claims.site_id)
        if refused is not None or site is None:
            return refused or Outcome([])
        regions = self._ctx.settings.regions
        home = regions.elsewhere(claims.conversation_id)
        if home is not None:  # homed in another region: the visitor goes there
            url = regions.urls.get(home)
            if url is None:
                message = f"this conversation lives in region {home!r}, which is not configured"
                return self._refuse(_error("unknown_region", message))
            return Outcome([moved_frame(home, url)])
        command = Resume(
            conversation_id=claims.conversation_id,
            at=self._ctx.clock(),
            after_seq=frame.last_seq,
            site_id=site.id,  # the service refuses another site's conversation
            reply_to=self._ctx.settings.instance,
        )
        reply = await self._send(command)
        if isinstance(reply, Reply) and reply.error is None:
            self.conversation_id = claims.conversation_id
        return self._with_session(reply, site, command.seq)

    async def _command(self, frame: PressFrame | LeadFrame | AnswerFrame | BackFrame) -> Outcome:
        cid = self.conversation_id
        if cid is None:
            return self._refuse(_error("no_conversation", "start or resume first"), frame.seq)
        now = self._ctx.clock()
        reply_to = self._ctx.settings.instance
        command: Command
        if isinstance(frame, PressFrame):
            self._ctx.metrics.presses.labels(self.flow_id or "resumed").inc()
            command = PressButton(
                conversation_id=cid,
                seq=frame.seq,
                at=now,
                node_id=frame.node,
                button_id=frame.button,
                reply_to=reply_to,
            )
        elif isinstance(frame, BackFrame):
            command = GoBack(
                conversation_id=cid, seq=frame.seq, at=now, node_id=frame.node, reply_to=reply_to
            )
        elif isinstance(frame, AnswerFrame):
            command = AnswerQuestion(
                conversation_id=cid,
                seq=frame.seq,
                at=now,
                node_id=frame.node,
                value=frame.value,
                skip=frame.skip,
                reply_to=reply_to,
            )
        else:
            command = SubmitLead(
                conversation_id=cid,
                seq=frame.seq,
                at=now,
                node_id=frame.node,
                fields=frame.fields,
                reply_to=reply_to,
            )
        return self._frames(await self._send(command), command.seq)

    async def _send(self, command: Command) -> Reply | ReplyError:
        """The service's reply, or the gateway's own error when there is none (then
        the conversation's ack is unknown, so the error frame carries none)."""
        started = time.perf_counter()
        result: Reply | ReplyError
        try:
            # a timeout around the await, not wait_for: no task of its own per command
            async with asyncio.timeout(self._ctx.settings.command_timeout_seconds):
                result = await self._ctx.bus.send(command)
        except (TimeoutError, ConnectionError, OSError):
            log.warning(
                "conversation service unavailable",
                extra={"conversation_id": command.conversation_id},
            )
            result = _error("unavailable", "Please try again in a moment.", retryable=True)
        except Exception:
            log.exception("command failed", extra={"conversation_id": command.conversation_id})
            result = _error("internal", "Something went wrong; please retry.", retryable=True)
        self._ctx.metrics.observe_command(command.type, time.perf_counter() - started)
        return result

    def _with_session(self, reply: Reply | ReplyError, site: Site, seq: int) -> Outcome:
        if isinstance(reply, ReplyError) or reply.error is not None:
            return self._frames(reply, seq)
        token = self._ctx.tokens.issue(reply.conversation_id, site.id, self._ctx.clock())
        outcome = self._frames(reply, seq)
        session = session_frame(
            reply.conversation_id, token, reply.ack, len(reply.messages), reply.more
        )
        outcome.frames.insert(0, session)
        return outcome

    def _frames(self, reply: Reply | ReplyError, seq: int) -> Outcome:
        if isinstance(reply, ReplyError):
            return self._refuse(reply, seq or None)
        if reply.error is not None:
            self._ctx.metrics.rejected.labels(reply.error.code).inc()
            return Outcome([error_frame(reply.error, seq or None, reply.ack)])
        return Outcome([message_frame(m, reply.ack) for m in reply.messages])
