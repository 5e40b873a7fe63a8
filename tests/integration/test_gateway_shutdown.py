"""The gateway's shutdown settings (gateway/shutdown.py): they bound
SIGTERM-to-exit within the grace, and the close reason's retry hint. The
shutdown itself, over sockets, is in tests/integration/test_gateway_shutdown_sockets.py."""

from __future__ import annotations

import orjson
import pytest

from gateway.shutdown import ShutdownSettings, close_reason


def test_settings_keep_sigterm_to_exit_within_the_grace() -> None:
    env = {"LEADFLOW_SHUTDOWN_DRAIN_SECONDS": "5", "LEADFLOW_SHUTDOWN_GRACE_SECONDS": "30"}
    settings = ShutdownSettings.from_env(env)
    assert settings.inflight_seconds(10.0) == 10.5
    total = settings.drain_seconds + settings.inflight_seconds(10.0)
    assert total + settings.server_timeout(10.0) + 4.0 <= settings.grace_seconds
    short = ShutdownSettings(drain_seconds=5.0, grace_seconds=12.0)
    assert short.drain_seconds + short.inflight_seconds(10.0) + 4.0 <= 12.0
    for bad in (
        {"LEADFLOW_SHUTDOWN_GRACE_SECONDS": "3"},
        {"LEADFLOW_SHUTDOWN_DRAIN_SECONDS": "-1"},
    ):
        with pytest.raises(ValueError, match="LEADFLOW_SHUTDOWN"):
            ShutdownSettings.from_env({**env, **bad})


def test_the_retry_hint_carries_up_to_as_much_again_of_jitter() -> None:
    assert orjson.loads(close_reason(1000, lambda: 0.0)) == {"retry_after_ms": 1000}
    assert orjson.loads(close_reason(1000, lambda: 0.999)) == {"retry_after_ms": 1999}
    assert len(close_reason(30_000, lambda: 0.999)) <= 123  # a close reason's limit
