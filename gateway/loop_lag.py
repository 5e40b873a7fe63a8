"""How late this process's event loop runs, for shedding new sockets when it is.

A gateway whose loop is seconds behind (a reconnect storm after another gateway
died, a campaign spike past its capacity) serves every visitor it holds late; each
new socket it accepts (a resume: a signature check, a state read, the transcript
sent again) makes all of them later. Refusing new upgrades while the loop is late
is cheap (503 before the upgrade, :mod:`gateway.admission`), and the widget backs
off exponentially with jitter, which spreads the storm out instead of feeding it.

The measure: a ticker sleeps ``interval`` seconds and records by how much each
wake-up came late; :meth:`LoopLag.worst` is the worst lateness of the last
``window`` seconds, so one late tick sheds for about a window, not for ever.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

TICK_SECONDS = 0.1
WINDOW_SECONDS = 1.0


@dataclass(eq=False)
class LoopLag:
    """Lateness samples of the last ``window`` seconds (pure: ``record`` and
    ``worst`` take the time; :meth:`run` is the ticker)."""

    interval: float = TICK_SECONDS
    window: float = WINDOW_SECONDS
    _samples: deque[tuple[float, float]] = field(default_factory=deque, repr=False)

    def record(self, now: float, lateness: float) -> None:
        self._samples.append((now, max(0.0, lateness)))
        self._forget(now)

    def worst(self, now: float) -> float:
        """The worst lateness (seconds) recorded within the window before ``now``."""
        self._forget(now)
        return max((lateness for _, lateness in self._samples), default=0.0)

    def _forget(self, now: float) -> None:
        while self._samples and self._samples[0][0] < now - self.window:
            self._samples.popleft()

    async def run(self) -> None:
        """Tick until cancelled, recording each tick's lateness."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            now = loop.time()
            self.record(now, now - due)
