"""Event-loop lateness (gateway/loop_lag.py): the worst of the last second, and the
setting that sheds by it (gateway/config.py; the shedding itself:
tests/integration/test_gateway_admission.py)."""

from __future__ import annotations

import pytest

from gateway.config import GatewaySettings
from gateway.loop_lag import LoopLag

SECRET = b"s" * 32


def test_the_worst_lateness_is_that_of_the_last_window_only() -> None:
    lag = LoopLag(interval=0.1, window=1.0)
    assert lag.worst(0.0) == 0.0
    lag.record(10.0, 0.8)
    lag.record(10.1, 0.02)
    lag.record(10.2, -0.001)  # early wake-ups count as on time
    assert lag.worst(10.5) == 0.8
    assert lag.worst(11.0) == 0.8  # still within the second after it
    assert lag.worst(11.05) == 0.02
    assert lag.worst(11.3) == 0.0


def test_the_shed_lag_setting() -> None:
    def shed(value: str | None) -> float | None:
        env = {} if value is None else {"LEADFLOW_SHED_LAG_MS": value}
        return GatewaySettings.from_env(SECRET, env).shed_lag_seconds

    assert shed(None) == 2.0 and shed("") == 2.0
    assert shed("250") == 0.25
    assert shed("off") is None and shed("0") is None
    for bad in ("-5", "soon", "nan", "inf"):
        with pytest.raises(ValueError, match="LEADFLOW_SHED_LAG_MS"):
            shed(bad)
