"""Operators' safe defaults of the gateway: /metrics never on the public port, the demo
page opt-in (on for ``leadflow serve``, off for ``leadflow run gateway``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.embedded_settings import settings_from_env
from gateway.config import DEFAULT_METRICS_PORT, GatewaySettings


def test_the_distributed_gateway_defaults_to_metrics_on_9100_and_no_demo_page() -> None:
    settings = GatewaySettings.from_env(b"r" * 32, {"LEADFLOW_HOST": "0.0.0.0"})
    assert settings.metrics_port == DEFAULT_METRICS_PORT == 9100
    assert settings.metrics_host == "0.0.0.0"  # beside the public port, for Prometheus
    assert settings.demo_page is False


def test_the_embedded_mode_defaults_to_the_demo_page_and_no_metrics_port(tmp_path: Path) -> None:
    settings = settings_from_env({"LEADFLOW_DATA_DIR": str(tmp_path)}).gateway
    assert settings.demo_page is True
    assert settings.metrics_port is None


@pytest.mark.parametrize(
    ("env", "port", "demo"),
    [
        ({"LEADFLOW_METRICS_PORT": "off", "LEADFLOW_DEMO_PAGE": "on"}, None, True),
        ({"LEADFLOW_METRICS_PORT": "9200", "LEADFLOW_DEMO_PAGE": "0"}, 9200, False),
        ({"LEADFLOW_DEMO_PAGE": "true"}, 9100, True),
    ],
)
def test_the_variables_override_the_defaults(
    env: dict[str, str], port: int | None, demo: bool
) -> None:
    settings = GatewaySettings.from_env(b"r" * 32, env)
    assert (settings.metrics_port, settings.demo_page) == (port, demo)


@pytest.mark.parametrize(
    "env",
    [{"LEADFLOW_METRICS_PORT": "70000"}, {"LEADFLOW_DEMO_PAGE": "maybe"}],
)
def test_bad_values_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="LEADFLOW_"):
        GatewaySettings.from_env(b"r" * 32, env)
