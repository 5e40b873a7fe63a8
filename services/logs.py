"""Structured JSON logs. Records carry the conversation id when there is one (an
``extra`` field, or the ``conversation`` contextvar set around a command's work) and
the trace id of the current OpenTelemetry span; nothing here ever formats lead field
values (commands redact them in repr)."""

from __future__ import annotations

import contextvars
import logging
import sys
import time
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


def worker_logging_config() -> dict[str, Any]:
    """``logging_config`` for faust's worker (mode merges it into its own): the root
    handler writes these JSON lines to stderr instead of faust's coloured text."""
    return {
        "version": 1,
        "merge": True,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
    }


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
