"""Kafka TLS/SASL and Redis TLS/ACL settings (issue 14): parsed from the environment,
and every Kafka client of the services built with them. The settings read from
files (passwords, a CA) are checked in tests/integration/test_transport_security.py."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from services.distributed.kafka_security import KafkaSecurity, KafkaSecurityError
from services.distributed.redis_client import redis_client
from services.distributed.settings import KafkaSettings

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = {"AIOKafkaConsumer", "AIOKafkaProducer", "AIOKafkaAdminClient", "AIOKafkaClient"}
ROOMS = ("services", "gateway", "policy", "projector", "app")


def _client_calls() -> list[tuple[str, ast.Call]]:
    calls = []
    for room in ROOMS:
        for path in sorted((ROOT / room).rglob("*.py")):
            source = path.read_text(encoding="utf-8")
            if "AIOKafka" not in source:  # parse only what can build a client (fast)
                continue
            tree = ast.parse(source)
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in CLIENTS:
                    calls.append((f"{path.relative_to(ROOT)}:{node.lineno}", node))
    return calls


def test_every_kafka_client_is_built_with_the_security_settings() -> None:
    calls = _client_calls()
    assert len(calls) >= 10  # the scan sees the clients (a renamed room would empty it)
    wrong = []
    for where, call in calls:
        spread = [
            k.value
            for k in call.keywords
            if k.arg is None
            and isinstance(k.value, ast.Call)
            and isinstance(k.value.func, ast.Attribute)
            and k.value.func.attr == "client_kwargs"
        ]
        explicit = {k.arg for k in call.keywords} & {
            "bootstrap_servers",
            "security_protocol",
            "ssl_context",
            "sasl_mechanism",
        }
        if not spread or explicit or call.args:
            wrong.append(where)
    assert wrong == [], f"Kafka clients not built with **settings.client_kwargs(): {wrong}"


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    settings = KafkaSettings.from_env({"LEADFLOW_KAFKA_BOOTSTRAP": "k:9092"})
    assert settings.security == KafkaSecurity()
    assert settings.client_kwargs() == {"bootstrap_servers": "k:9092"}


def test_sasl_plaintext_has_no_tls_context() -> None:
    security = KafkaSecurity.from_env(
        {
            "LEADFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "LEADFLOW_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "LEADFLOW_KAFKA_USERNAME": "u",
            "LEADFLOW_KAFKA_PASSWORD": "p",
        }
    )
    assert "ssl_context" not in security.client_kwargs()
    assert security.client_kwargs()["sasl_mechanism"] == "SCRAM-SHA-256"


@pytest.mark.parametrize(
    "env",
    [
        {"LEADFLOW_KAFKA_SECURITY_PROTOCOL": "TLS"},
        {"LEADFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},  # no user
        {"LEADFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "LEADFLOW_KAFKA_USERNAME": "u"},
        {
            "LEADFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "LEADFLOW_KAFKA_USERNAME": "u",
            "LEADFLOW_KAFKA_PASSWORD": "p",
            "LEADFLOW_KAFKA_SASL_MECHANISM": "GSSAPI",
        },
        {"LEADFLOW_KAFKA_SECURITY_PROTOCOL": "SSL", "LEADFLOW_KAFKA_CERT_FILE": "c.pem"},
        {"LEADFLOW_KAFKA_PASSWORD_FILE": "/nonexistent/secret"},
        {"LEADFLOW_KAFKA_SSL_CHECK_HOSTNAME": "maybe"},
    ],
)
def test_inconsistent_security_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(KafkaSecurityError):
        KafkaSecurity.from_env(env)


async def test_redis_url_credentials_win_over_the_environment() -> None:
    env = {"LEADFLOW_REDIS_USERNAME": "env-user", "LEADFLOW_REDIS_PASSWORD": "env-pw"}
    client = redis_client("rediss://url-user:url-pw@r:6380/0", env=env)
    try:
        kwargs = client.connection_pool.connection_kwargs
        assert (kwargs["username"], kwargs["password"]) == ("url-user", "url-pw")
        assert kwargs["ssl_cert_reqs"] == "required"
    finally:
        await client.aclose()
    client = redis_client("redis://r:6379/0", env=env)
    try:
        kwargs = client.connection_pool.connection_kwargs
        assert (kwargs["username"], kwargs["password"]) == ("env-user", "env-pw")
    finally:
        await client.aclose()
