"""GatewaySettings.from_env: documented defaults, LEADFLOW_* overrides, bad values."""

from __future__ import annotations

import pytest

from gateway.config import GatewaySettings

SECRET = b"g" * 32


def test_defaults_match_the_documented_limits() -> None:
    """Regression: an empty environment yields docs/protocol.md's defaults."""
    settings = GatewaySettings.from_env(SECRET, {})
    # from the environment, /metrics on 9100 (never the public port); built directly, none
    assert settings == GatewaySettings(resume_secret=SECRET, metrics_port=9100)
    assert settings.host == "127.0.0.1"
    assert settings.port == 8080
    assert settings.max_frame_bytes == 4096
    assert settings.max_transport_bytes == 65536
    assert (settings.rate_per_second, settings.rate_burst, settings.flood_limit) == (10.0, 20, 50)
    assert settings.heartbeat_seconds == 30.0  # above the widget's 25 s ping
    assert settings.idle_timeout_seconds == 300.0
    assert settings.resume_ttl_seconds == 30 * 24 * 3600


def test_every_variable_overrides_its_setting() -> None:
    """Regression: each LEADFLOW_* variable reaches its field with the right type."""
    env = {
        "LEADFLOW_HOST": "0.0.0.0",
        "LEADFLOW_PORT": "9000",
        "LEADFLOW_INSTANCE": "gw-7",
        "LEADFLOW_MAX_FRAME_BYTES": "1024",
        "LEADFLOW_MAX_TRANSPORT_BYTES": "2048",
        "LEADFLOW_RATE_PER_SECOND": "2.5",
        "LEADFLOW_RATE_BURST": "4",
        "LEADFLOW_FLOOD_LIMIT": "7",
        "LEADFLOW_HEARTBEAT_SECONDS": "5",
        "LEADFLOW_IDLE_TIMEOUT_SECONDS": "60.5",
        "LEADFLOW_RESUME_TTL_SECONDS": "86400",
        "LEADFLOW_COMMAND_TIMEOUT_SECONDS": "1.5",
    }
    settings = GatewaySettings.from_env(SECRET, env)
    assert settings == GatewaySettings(
        resume_secret=SECRET,
        host="0.0.0.0",
        port=9000,
        instance="gw-7",
        max_frame_bytes=1024,
        max_transport_bytes=2048,
        rate_per_second=2.5,
        rate_burst=4,
        flood_limit=7,
        heartbeat_seconds=5.0,
        idle_timeout_seconds=60.5,
        resume_ttl_seconds=86400,
        command_timeout_seconds=1.5,
        metrics_host="0.0.0.0",  # LEADFLOW_METRICS_HOST defaults to LEADFLOW_HOST
        metrics_port=9100,
    )
    assert isinstance(settings.port, int)
    assert isinstance(settings.heartbeat_seconds, float)


def test_empty_numeric_variables_fall_back_to_defaults() -> None:
    """Regression: `LEADFLOW_PORT=` (set but empty) means the default, not a crash."""
    settings = GatewaySettings.from_env(SECRET, {"LEADFLOW_PORT": "", "LEADFLOW_RATE_BURST": ""})
    assert settings.port == 8080
    assert settings.rate_burst == 20


def test_resume_secret_variable_overrides_the_given_secret() -> None:
    """Regression: LEADFLOW_RESUME_SECRET wins over the data-directory secret."""
    settings = GatewaySettings.from_env(SECRET, {"LEADFLOW_RESUME_SECRET": "from-the-env-123456"})
    assert settings.resume_secret == b"from-the-env-123456"


def test_empty_resume_secret_variable_keeps_the_given_secret() -> None:
    """Regression: an empty LEADFLOW_RESUME_SECRET must not become an empty secret."""
    assert GatewaySettings.from_env(SECRET, {"LEADFLOW_RESUME_SECRET": ""}).resume_secret == SECRET


def test_process_environment_is_read_when_no_mapping_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression: from_env() without a mapping reads os.environ."""
    monkeypatch.setenv("LEADFLOW_PORT", "8181")
    monkeypatch.delenv("LEADFLOW_RESUME_SECRET", raising=False)
    settings = GatewaySettings.from_env(SECRET)
    assert settings.port == 8181
    assert settings.resume_secret == SECRET


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LEADFLOW_PORT", "eighty"),
        ("LEADFLOW_PORT", "80.5"),
        ("LEADFLOW_RATE_BURST", "1e3"),
        ("LEADFLOW_MAX_FRAME_BYTES", "4k"),
        ("LEADFLOW_RATE_PER_SECOND", "fast"),
        ("LEADFLOW_HEARTBEAT_SECONDS", "20s"),
        ("LEADFLOW_LISTEN_BACKLOG", "lots"),
    ],
)
def test_bad_numbers_raise_value_error_naming_the_variable(name: str, value: str) -> None:
    """Regression: a typo in a numeric variable fails loudly at startup, and the
    one line says which variable and what it got (not Python's int() message)."""
    with pytest.raises(ValueError, match=rf"^{name} must be a positive (integer|number), got '"):
        GatewaySettings.from_env(SECRET, {name: value})


def test_the_listen_backlog_defaults_to_4096_and_is_set_by_its_variable() -> None:
    assert GatewaySettings.from_env(SECRET, {}).listen_backlog == 4096
    asked = GatewaySettings.from_env(SECRET, {"LEADFLOW_LISTEN_BACKLOG": "512"})
    assert asked.listen_backlog == 512


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LEADFLOW_RATE_PER_SECOND", "nan"),
        ("LEADFLOW_RATE_BURST", "-1"),
        ("LEADFLOW_MAX_FRAME_BYTES", "0"),
    ],
)
def test_out_of_range_numbers_raise_value_error(name: str, value: str) -> None:
    """Regression: NaN, negative or zero limits are bad numbers and must fail at startup."""
    with pytest.raises(ValueError, match=name):
        GatewaySettings.from_env(SECRET, {name: value})
