"""A WebSocket heartbeat that does not blame visitors for this process's own lateness.

aiohttp pings an idle socket every ``heartbeat`` seconds and closes it when no PONG
has been *handled* within half of that. When the event loop itself is late (a
reconnect storm after another gateway died: tens of thousands of resumes queued),
the visitor's PONG is often already in the socket and read in the very loop
iteration whose timer declares it missing; the timer runs after the read, but
before the callback that would have re-armed the heartbeat. Healthy visitors were
then closed by the thousand (1006), reconnected, and made the storm worse
(bench/results/scale-100k.md). Here a PONG timeout that fires while data from the
peer is waiting to be handled in the same iteration is not a timeout: that data
re-arms the heartbeat, as it does whenever a visitor sends anything.
"""

from __future__ import annotations

from aiohttp import web


class LateLoopTolerantResponse(web.WebSocketResponse):
    """``web.WebSocketResponse`` whose PONG timeout yields to data just received."""

    def _pong_not_received(self) -> None:
        # aiohttp sets this flag in the protocol's data_received, before the
        # iteration's due timers run, and clears it when it re-arms the heartbeat
        if getattr(self, "_need_heartbeat_reset", False):
            return
        super()._pong_not_received()
