"""How every Kafka client of the distributed mode authenticates and encrypts.

One place builds the aiokafka keyword arguments (``security_protocol``,
``ssl_context``, ``sasl_*``) from the environment; every producer, consumer,
admin client and probe is built with :func:`kafka_client_kwargs`, which adds
them to the bootstrap servers (a unit test checks that no client is built
another way).

| variable | default | meaning |
|---|---|---|
| LEADFLOW_KAFKA_SECURITY_PROTOCOL | PLAINTEXT | PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL |
| LEADFLOW_KAFKA_SASL_MECHANISM | SCRAM-SHA-512 | SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN |
| LEADFLOW_KAFKA_USERNAME | (none) | SASL user (required with SASL_*) |
| LEADFLOW_KAFKA_PASSWORD | (none) | its password |
| LEADFLOW_KAFKA_PASSWORD_FILE | (none) | file with the password (a mounted secret); wins |
| LEADFLOW_KAFKA_CA_FILE | system CAs | PEM CA bundle to check the broker's certificate |
| LEADFLOW_KAFKA_CERT_FILE | (none) | PEM client certificate (mutual TLS) |
| LEADFLOW_KAFKA_KEY_FILE | (none) | PEM key of that certificate |
| LEADFLOW_KAFKA_KEY_PASSWORD | (none) | password of that key, if encrypted |
| LEADFLOW_KAFKA_SSL_CHECK_HOSTNAME | true | check the broker's host name against its certificate |
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


class KafkaSecurityError(ValueError):
    """The security settings are inconsistent (a SASL protocol without a user...)."""


def secret_from_env(env: Mapping[str, str], name: str) -> str | None:
    """``NAME_FILE``'s content (trailing newline stripped) if set, else ``NAME``, else None:
    a password mounted from a secret never has to be in the environment or on a command line."""
    path = env.get(f"{name}_FILE", "")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise KafkaSecurityError(f"{name}_FILE={path!r} cannot be read: {exc}") from exc
    return env.get(name) or None


def flag_from_env(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise KafkaSecurityError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """The security part of a Kafka client's configuration; plaintext by default."""

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    key_password: str | None = field(default=None, repr=False)
    check_hostname: bool = True

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise KafkaSecurityError(
                f"LEADFLOW_KAFKA_SECURITY_PROTOCOL must be one of {', '.join(PROTOCOLS)}, "
                f"got {self.protocol!r}"
            )
        if self.sasl:
            if self.sasl_mechanism not in MECHANISMS:
                raise KafkaSecurityError(
                    f"LEADFLOW_KAFKA_SASL_MECHANISM must be one of {', '.join(MECHANISMS)}, "
                    f"got {self.sasl_mechanism!r}"
                )
            if not self.username or self.password is None:
                raise KafkaSecurityError(
                    f"{self.protocol} needs LEADFLOW_KAFKA_USERNAME and "
                    "LEADFLOW_KAFKA_PASSWORD (or LEADFLOW_KAFKA_PASSWORD_FILE)"
                )
        if (self.cert_file is None) != (self.key_file is None):
            raise KafkaSecurityError(
                "LEADFLOW_KAFKA_CERT_FILE and LEADFLOW_KAFKA_KEY_FILE go together"
            )

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext:
        """The client's TLS context: the CA file (else the system's CAs), the client
        certificate for mutual TLS if given, host name checked unless turned off."""
        from aiokafka.helpers import create_ssl_context

        context: ssl.SSLContext = create_ssl_context(
            cafile=self.ca_file,
            certfile=self.cert_file,
            keyfile=self.key_file,
            password=self.key_password,
        )
        if self.ca_file is None:
            context.load_default_certs()
        context.check_hostname = self.check_hostname
        return context

    def client_kwargs(self) -> dict[str, Any]:
        """The aiokafka keyword arguments: nothing for PLAINTEXT (aiokafka's defaults)."""
        kwargs: dict[str, Any] = {}
        if self.protocol == "PLAINTEXT":
            return kwargs
        kwargs["security_protocol"] = self.protocol
        if self.tls:
            kwargs["ssl_context"] = self.ssl_context()
        if self.sasl:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.username
            kwargs["sasl_plain_password"] = self.password
        return kwargs

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaSecurity:
        env = os.environ if env is None else env
        return cls(
            protocol=(env.get("LEADFLOW_KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").upper(),
            sasl_mechanism=(env.get("LEADFLOW_KAFKA_SASL_MECHANISM") or "SCRAM-SHA-512").upper(),
            username=env.get("LEADFLOW_KAFKA_USERNAME") or None,
            password=secret_from_env(env, "LEADFLOW_KAFKA_PASSWORD"),
            ca_file=env.get("LEADFLOW_KAFKA_CA_FILE") or None,
            cert_file=env.get("LEADFLOW_KAFKA_CERT_FILE") or None,
            key_file=env.get("LEADFLOW_KAFKA_KEY_FILE") or None,
            key_password=secret_from_env(env, "LEADFLOW_KAFKA_KEY_PASSWORD"),
            check_hostname=flag_from_env(env, "LEADFLOW_KAFKA_SSL_CHECK_HOSTNAME", True),
        )
