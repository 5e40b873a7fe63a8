"""Transport security on real servers (issue 14): a Kafka broker from kafka.sh with a
SASL_SSL listener (SCRAM-SHA-512, certificates made here) and a redis-server with TLS
and an ACL user; the project's own clients, configured by environment variables, get
through, and clients without the right credentials or CA do not."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from aiokafka.errors import KafkaError
from redis.exceptions import AuthenticationError, ConnectionError, NoPermissionError

from services.distributed.kafka_follower import KafkaLogFollower
from services.distributed.kafka_probe import KafkaProbe
from services.distributed.kafka_security import KafkaSecurity
from services.distributed.kafka_writer import KafkaPartitionWriter
from services.distributed.redis_client import redis_client, redis_connection_kwargs
from services.distributed.settings import KafkaSettings
from services.distributed.topics import ensure_topics, partition_count
from services.log_follower import LogRecord
from services.processor.batch import Out
from tests.support.kafka import LocalKafka
from tests.support.server import free_port
from tests.support.tls import Pem, make_ca, make_cert

USER, PASSWORD = "leadflow-processor", "scram-secret-1"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pem, Pem, Path]:
    directory = tmp_path_factory.mktemp("certs")
    ca = make_ca(directory)
    return ca, make_cert(directory, ca, "server"), directory


@pytest.fixture(scope="module")
def secure_kafka(
    tmp_path_factory: pytest.TempPathFactory, certs: tuple[Pem, Pem, Path]
) -> Iterator[LocalKafka]:
    ca, server, _ = certs
    broker = LocalKafka(
        tmp_path_factory.mktemp("secure-kafka"),
        env={
            "LEADFLOW_KAFKA_TLS_CERT": str(server.cert_file),
            "LEADFLOW_KAFKA_TLS_KEY": str(server.key_file),
            "LEADFLOW_KAFKA_TLS_CA": str(ca.cert_file),
            "LEADFLOW_KAFKA_SCRAM_USERS": f"{USER}:{PASSWORD}",
        },
    ).start()
    yield broker
    broker.stop()


def _settings(broker: LocalKafka, env: dict[str, str]) -> KafkaSettings:
    return KafkaSettings.from_env(
        {
            "LEADFLOW_KAFKA_BOOTSTRAP": broker.sasl_ssl_bootstrap,
            "LEADFLOW_TOPIC_PREFIX": f"s{uuid.uuid4().hex[:8]}.",
            "LEADFLOW_PARTITIONS": "2",
            "LEADFLOW_REPLY_PARTITIONS": "1",
            **env,
        }
    )


async def test_sasl_ssl_round_trip_through_the_projects_clients(
    secure_kafka: LocalKafka, certs: tuple[Pem, Pem, Path]
) -> None:
    ca, _, directory = certs
    secret = directory / "kafka-password"
    secret.write_text(PASSWORD + "\n")
    settings = _settings(
        secure_kafka,
        {
            "LEADFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "LEADFLOW_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "LEADFLOW_KAFKA_USERNAME": USER,
            "LEADFLOW_KAFKA_PASSWORD_FILE": str(secret),
            "LEADFLOW_KAFKA_CA_FILE": str(ca.cert_file),
        },
    )
    await ensure_topics(settings)
    assert await partition_count(settings, settings.events_topic) == 2
    probe = KafkaProbe(settings, timeout=10.0)
    try:
        assert await probe.answers()
    finally:
        await probe.close()

    writer = KafkaPartitionWriter(settings, 1)  # the processor's transactional writer
    await writer.start()
    try:
        offsets = await writer.commit([Out("events", b"c-1", b"sealed-event")], marker=0)
    finally:
        await writer.stop()
    follower = KafkaLogFollower(settings, settings.events_topic, partitions=[1])
    await follower.start()
    try:
        await follower.seek(1, None)
        records: list[LogRecord] = []
        deadline = time.monotonic() + 20
        while not records and time.monotonic() < deadline:
            records = await follower.poll(wait=0.5)
    finally:
        await follower.stop()
    assert [(r.partition, r.offset, r.key, r.value) for r in records] == [
        (1, offsets[0], b"c-1", b"sealed-event")
    ]


@pytest.mark.parametrize(
    "case",
    ["plaintext", "tls-without-sasl", "wrong-password", "unknown-user", "untrusted-ca"],
)
async def test_clients_without_the_right_credentials_are_refused(
    secure_kafka: LocalKafka, certs: tuple[Pem, Pem, Path], tmp_path: Path, case: str
) -> None:
    ca, _, _ = certs
    good = {
        "LEADFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "LEADFLOW_KAFKA_USERNAME": USER,
        "LEADFLOW_KAFKA_PASSWORD": PASSWORD,
        "LEADFLOW_KAFKA_CA_FILE": str(ca.cert_file),
    }
    env = {
        "plaintext": {},
        "tls-without-sasl": {
            "LEADFLOW_KAFKA_SECURITY_PROTOCOL": "SSL",
            "LEADFLOW_KAFKA_CA_FILE": str(ca.cert_file),
        },
        "wrong-password": {**good, "LEADFLOW_KAFKA_PASSWORD": "not-it"},
        "unknown-user": {**good, "LEADFLOW_KAFKA_USERNAME": "mallory"},
        "untrusted-ca": {
            **good,
            "LEADFLOW_KAFKA_CA_FILE": str(make_ca(tmp_path, "other-ca").cert_file),
        },
    }[case]
    settings = _settings(secure_kafka, env)
    with pytest.raises((KafkaError, TimeoutError)):
        await asyncio.wait_for(ensure_topics(settings), 30)
    probe = KafkaProbe(settings, timeout=5.0)
    try:
        assert not await probe.answers()
    finally:
        await probe.close()


def test_plaintext_settings_stay_the_default(secure_kafka: LocalKafka) -> None:
    """The plaintext listener kafka.sh keeps (readiness, inter-broker) is what
    unconfigured local clients use."""
    settings = replace(KafkaSettings.from_env({}), bootstrap=secure_kafka.bootstrap)
    assert settings.security == KafkaSecurity()
    assert settings.client_kwargs() == {"bootstrap_servers": secure_kafka.bootstrap}


# --- Redis: TLS and an ACL user ---------------------------------------------------------------


@pytest.fixture(scope="module")
def secure_redis(certs: tuple[Pem, Pem, Path]) -> Iterator[int]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    ca, server, directory = certs
    acl = directory / "users.acl"
    # The default user is off: every connection must log in as an ACL user.
    acl.write_text("user default off\nuser leadflow on >redis-secret-1 ~leadflow:* +@all\n")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            str(server.cert_file),
            "--tls-key-file",
            str(server.key_file),
            "--tls-ca-cert-file",
            str(ca.cert_file),
            "--tls-auth-clients",
            "no",
            "--aclfile",
            str(acl),
            "--save",
            "",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    time.sleep(0.3)
    if proc.poll() is not None:
        out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
        if "tls" in out.lower():
            pytest.skip(f"this redis-server has no TLS: {out[-300:]}")
        raise RuntimeError(f"redis-server exited: {out[-2000:]}")
    yield port
    proc.terminate()
    proc.wait(10)


async def test_redis_over_tls_with_an_acl_user(
    secure_redis: int, certs: tuple[Pem, Pem, Path]
) -> None:
    ca, _, directory = certs
    secret = directory / "redis-password"
    secret.write_text("redis-secret-1\n")
    env = {
        "LEADFLOW_REDIS_USERNAME": "leadflow",
        "LEADFLOW_REDIS_PASSWORD_FILE": str(secret),
        "LEADFLOW_REDIS_CA_FILE": str(ca.cert_file),
    }
    url = f"rediss://127.0.0.1:{secure_redis}/0"
    deadline = time.monotonic() + 10
    client = redis_client(url, env=env)
    try:
        while True:
            try:
                await client.set("leadflow:probe", b"1")
                break
            except ConnectionError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        assert await client.get("leadflow:probe") == b"1"
        with pytest.raises(NoPermissionError):  # the user's keys are leadflow:* only
            await client.get("other:key")
    finally:
        await client.aclose()

    # Credentials in the URL work too.
    client = redis_client(
        f"rediss://leadflow:redis-secret-1@127.0.0.1:{secure_redis}/0",
        env={"LEADFLOW_REDIS_CA_FILE": str(ca.cert_file)},
    )
    try:
        assert await client.get("leadflow:probe") == b"1"
    finally:
        await client.aclose()

    refused: list[tuple[str, dict[str, str], type[Exception]]] = [
        ("no password", {"LEADFLOW_REDIS_CA_FILE": str(ca.cert_file)}, AuthenticationError),
        (
            "wrong password",
            {**env, "LEADFLOW_REDIS_PASSWORD_FILE": "", "LEADFLOW_REDIS_PASSWORD": "x"},
            AuthenticationError,
        ),
        (
            "untrusted CA",
            {**env, "LEADFLOW_REDIS_CA_FILE": str(make_ca(directory / "other").cert_file)},
            ConnectionError,
        ),
    ]
    for _what, bad_env, error in refused:
        client = redis_client(url, env=bad_env, wait_seconds=2)
        try:
            with pytest.raises(error):
                await client.get("leadflow:probe")
        finally:
            await client.aclose()
    plain = redis_client(f"redis://127.0.0.1:{secure_redis}/0", env=env, wait_seconds=2)
    try:
        with pytest.raises(ConnectionError):  # no plaintext port at all
            await plain.get("leadflow:probe")
    finally:
        await plain.aclose()


# Settings read from files (no broker needed)


def test_sasl_ssl_from_env_with_a_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    ca = make_ca(tmp_path).cert_file
    settings = KafkaSettings.from_env(
        {
            "LEADFLOW_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "LEADFLOW_KAFKA_USERNAME": "leadflow-gateway",
            "LEADFLOW_KAFKA_PASSWORD": "ignored",
            "LEADFLOW_KAFKA_PASSWORD_FILE": str(secret),
            "LEADFLOW_KAFKA_CA_FILE": str(ca),
        }
    )
    kwargs = settings.client_kwargs()
    context = kwargs.pop("ssl_context")
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert kwargs == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "leadflow-gateway",
        "sasl_plain_password": "s3cret",
    }
    assert "s3cret" not in repr(settings)


def test_redis_credentials_from_env_and_tls_only_for_rediss(tmp_path: Path) -> None:
    secret = tmp_path / "redis-password"
    secret.write_text("pw\n")
    env = {
        "LEADFLOW_REDIS_USERNAME": "leadflow",
        "LEADFLOW_REDIS_PASSWORD_FILE": str(secret),
        "LEADFLOW_REDIS_CA_FILE": "/ca.pem",
    }
    assert redis_connection_kwargs("redis://r:6379/0", env) == {
        "username": "leadflow",
        "password": "pw",
    }
    assert redis_connection_kwargs("rediss://r:6380/0", env) == {
        "username": "leadflow",
        "password": "pw",
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": True,
        "ssl_ca_certs": "/ca.pem",
    }
    assert redis_connection_kwargs("redis://r:6379/0", {}) == {}
