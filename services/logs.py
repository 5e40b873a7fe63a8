"""Structured JSON logs. Records carry the conversation id when there is one (an
``extra`` field, or the ``conversation`` contextvar set around a command's work) and
the trace id of the current OpenTelemetry span; nothing here ever formats lead field
values (commands redact them in repr)."""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

from services.tracing import trace_ids

_STANDARD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
conversation: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "leadflow_conversation_id", default=None
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        cid = conversation.get()
        if cid is not None:
            body["conversation_id"] = cid
        ids = trace_ids()
        if ids is not None:
            body["trace_id"], body["span_id"] = ids
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                body[key] = value
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(body, default=str).decode()


OWN = ("app", "services", "gateway", "policy", "projector", "schemas", "leadflow")


class RepeatFilter(logging.Filter):
    """At most ``burst`` records of one library message per ``window`` seconds.

    Why: while a broker is down aiokafka logs "Unable connect to node" for every
    attempt, about 27,000 lines in 12 s in one test, which buries everything else
    and costs a log pipeline real money. Records are grouped by (logger, level,
    unformatted message); the first one let through after a suppressed spell
    carries ``suppressed``, the number dropped. Leadflow's own loggers are never
    filtered: their records are deliberate and often per conversation.
    """

    MAX_KEYS = 2048

    def __init__(
        self,
        burst: int = 20,
        window: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._burst = burst
        self._window = window
        self._clock = clock
        self._spells: dict[tuple[str, int, str], list[float]] = {}  # key -> [start, count]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.split(".", 1)[0] in OWN:
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        spell = self._spells.get(key)
        if spell is None or now - spell[0] >= self._window:
            if spell is not None and spell[1] > self._burst:
                record.suppressed = int(spell[1] - self._burst)
            if spell is None and len(self._spells) >= self.MAX_KEYS:
                self._forget(now)
            self._spells[key] = [now, 1]
            return True
        spell[1] += 1
        return spell[1] <= self._burst

    def _forget(self, now: float) -> None:
        """Drop the spells that are over (messages that embed values make many keys)."""
        over = [k for k, (start, _) in self._spells.items() if now - start >= self._window]
        for key in over or list(self._spells):
            del self._spells[key]


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
