"""Messages a visitor did not ask for (a fired timer's nudge), pushed to their socket.

A gateway registers each open socket under its conversation id; whoever
produces such a reply (the embedded server's timers, a gateway's replies
reader for a reply without a request) pushes it here. A reply for a
conversation this gateway does not hold is dropped: the visitor sees it at
their next resume, since every message is in the log."""

from __future__ import annotations

import logging
from collections.abc import Callable

from schemas.replies import Reply

log = logging.getLogger(__name__)
Deliver = Callable[[Reply], None]


class Pushes:
    def __init__(self) -> None:
        self._sockets: dict[str, Deliver] = {}
        self.pushed = 0
        self.dropped = 0

    def register(self, conversation_id: str, deliver: Deliver) -> None:
        self._sockets[conversation_id] = deliver

    def unregister(self, conversation_id: str, deliver: Deliver) -> None:
        if self._sockets.get(conversation_id) is deliver:
            del self._sockets[conversation_id]

    def push(self, reply: Reply) -> bool:
        """Hand ``reply`` to the socket of its conversation; False if none is open here."""
        deliver = self._sockets.get(reply.conversation_id)
        if deliver is None or not reply.messages:
            self.dropped += 1
            return False
        try:
            deliver(reply)
        except Exception:  # a socket closing under us: the visitor resumes
            log.warning("push failed", extra={"conversation_id": reply.conversation_id})
            self.dropped += 1
            return False
        self.pushed += 1
        return True

    @property
    def sockets(self) -> int:
        """How many sockets are registered (not ``__len__``: an empty registry is
        still a registry, never falsy)."""
        return len(self._sockets)
