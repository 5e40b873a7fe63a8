"""The container material, checked statically: docker-compose.yml against the Compose
Specification (check-jsonschema, in a subprocess) and against the code's Kafka settings,
no secret in the repository, and the Dockerfile's basics. Nothing here needs Docker."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.distributed.settings import KafkaSettings, gateway_ordinal_from_env

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
TOPIC_VARIABLES = ("LEADFLOW_TOPIC_PREFIX", "LEADFLOW_PARTITIONS", "LEADFLOW_REPLY_PARTITIONS")
SECRET_FROM_ENV = re.compile(r"\$\{LEADFLOW_RESUME_SECRET:\?[^}]+\}")
# a key that names a secret, then `:` or `=`, then its value (YAML, ENV, shell)
SECRET_ASSIGNMENT = re.compile(
    r"""(?P<key>[A-Za-z0-9_]*(?:SECRET|PASSWORD|PASSWD|TOKEN|API_KEY)[A-Za-z0-9_]*)["']?"""
    r"""\s*[:=]\s*(?P<value>\S*)""",
    re.IGNORECASE,
)


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text("utf-8"))
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    return data


def _services() -> dict[str, dict[str, Any]]:
    services = _compose()["services"]
    assert isinstance(services, dict)
    return services


def _leadflow_services() -> dict[str, dict[str, Any]]:
    """The services that run the project's image (built from the Dockerfile)."""
    return {name: svc for name, svc in _services().items() if "build" in svc}


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "use the mapping form of `environment`"
    return {str(key): str(value) for key, value in env.items()}


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return [str(part) for part in command] if isinstance(command, list) else str(command).split()


def _gateways() -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in _leadflow_services().items()
        if _command(svc)[:3] == ["leadflow", "run", "gateway"]
    }


def test_compose_file_follows_the_compose_specification() -> None:
    if importlib.util.find_spec("check_jsonschema") is None:
        pytest.fail(
            "check-jsonschema is not installed, so docker-compose.yml cannot be validated: "
            "install the dev extras (pip install -e '.[dev]'; check-jsonschema belongs there)",
            pytrace=False,
        )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(COMPOSE),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_has_every_service_of_the_distributed_mode() -> None:
    services = _services()
    assert "version" not in _compose(), "the Compose Specification has no `version:` key"
    assert {"kafka", "redis", "topics", "processor", "gateway-0", "gateway-1"} <= set(services)
    for name, svc in _leadflow_services().items():
        assert svc["build"] == ".", name
        assert svc["image"] == "leadflow:dev", name
    for name, svc in services.items():
        image = str(svc["image"])
        assert ":" in image.rsplit("/", 1)[-1], f"{name}: image {image} has no tag"
        assert not image.endswith(":latest"), f"{name}: image {image} is not pinned"


def test_every_service_uses_the_code_s_topic_layout() -> None:
    defaults = KafkaSettings()
    expected = {
        "LEADFLOW_TOPIC_PREFIX": defaults.prefix,
        "LEADFLOW_PARTITIONS": str(defaults.partitions),
        "LEADFLOW_REPLY_PARTITIONS": str(defaults.reply_partitions),
    }
    services = _leadflow_services()
    assert services
    for name, svc in services.items():
        env = _environment(svc)
        for variable in TOPIC_VARIABLES:
            assert env.get(variable) == expected[variable], (name, variable, env.get(variable))
        parsed = KafkaSettings.from_env(env)
        assert (parsed.prefix, parsed.partitions, parsed.reply_partitions) == (
            defaults.prefix,
            defaults.partitions,
            defaults.reply_partitions,
        ), name
        assert parsed.bootstrap == "kafka:9092", name


def test_the_policy_service_runs_beside_the_processor() -> None:
    """The policy service publishes the snapshots the processor follows (docs/policy.md)."""
    from policy.settings import PolicySettings

    policy = _services()["policy"]
    assert _command(policy) == ["leadflow", "run", "policy"]
    env = _environment(policy)
    settings = PolicySettings.from_env(env)  # raises on a bad value
    assert (settings.host, settings.port) == ("0.0.0.0", 8091)
    assert "127.0.0.1:8091:8091" in [str(port) for port in policy.get("ports", [])]
    assert "readyz" in " ".join(str(part) for part in policy["healthcheck"]["test"])
    processor = PolicySettings.from_env(_environment(_services()["processor"]))
    assert processor.enabled, "the processor must follow the snapshots (LEADFLOW_POLICY)"


def test_the_processor_keeps_no_local_state() -> None:
    """Its states are in the changelog topic: no writable volume (the sites file's
    directory only, read-only), none of the faust processor's settings (store, data
    directory, standby replicas), and compose waits for its drain."""
    processor = _services()["processor"]
    assert all(str(v).endswith(":ro") for v in processor.get("volumes", []))
    gone = {"LEADFLOW_PROCESSOR_STORE", "LEADFLOW_PROCESSOR_DATA_DIR", "LEADFLOW_STANDBY_REPLICAS"}
    assert not gone & set(_environment(processor))
    assert "processor-state" not in (_compose().get("volumes") or {})
    drain = float(_environment(processor).get("LEADFLOW_PROCESSOR_DRAIN_SECONDS", "3"))
    grace = str(processor["stop_grace_period"])
    assert grace.endswith("s") and float(grace[:-1]) >= drain + 15


def test_gateways_read_distinct_replies_partitions() -> None:
    gateways = _gateways()
    assert len(gateways) >= 2
    ordinals: dict[int, str] = {}
    published: dict[str, str] = {}
    for name, svc in gateways.items():
        env = _environment(svc)
        assert "LEADFLOW_GATEWAY_ORDINAL" in env, f"{name}: set LEADFLOW_GATEWAY_ORDINAL"
        reply_partitions = KafkaSettings.from_env(env).reply_partitions
        ordinal = gateway_ordinal_from_env(reply_partitions, env)  # raises when out of range
        assert 0 <= ordinal < reply_partitions, name
        assert ordinal not in ordinals, f"{name} and {ordinals.get(ordinal)} share {ordinal}"
        ordinals[ordinal] = name
        for port in svc.get("ports", []):
            host_port = str(port).rsplit(":", 1)[0]
            assert host_port not in published, f"{name} and {published[host_port]}: {port}"
            published[host_port] = name


def test_no_secret_is_written_in_the_repository_s_container_files() -> None:
    """Secrets come from the environment: resume secret for gateways, command secret
    for every Leadflow service; no literal secret values in the container files."""
    command_secret = re.compile(r"\$\{LEADFLOW_COMMAND_SECRET:\?[^}]+\}")
    for name in ("processor", *_gateways()):
        value = _environment(_services()[name]).get("LEADFLOW_COMMAND_SECRET", "")
        assert command_secret.fullmatch(value), f"{name}: LEADFLOW_COMMAND_SECRET from the env"
    for name, svc in _gateways().items():
        secret = _environment(svc).get("LEADFLOW_RESUME_SECRET", "")
        assert SECRET_FROM_ENV.fullmatch(secret), (
            f"{name}: LEADFLOW_RESUME_SECRET must come from the environment "
            "(${LEADFLOW_RESUME_SECRET:?...}), not be written in the file"
        )
    for path in (COMPOSE, DOCKERFILE):
        for number, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
            for match in SECRET_ASSIGNMENT.finditer(line):
                if line[: match.start()].endswith("${"):  # ${REDIS_PASSWORD:?...}: from the env
                    continue
                value = match.group("value").strip("\"'")
                assert value == "" or value.startswith("${"), (
                    f"{path.name}:{number}: {match.group('key')} has a literal value"
                )


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text("utf-8"))
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, args = line.partition(" ")
            out.append((keyword.upper(), args.strip()))
    return out


def test_dockerfile_basics() -> None:
    instructions = _instructions()
    stages: list[str] = []
    for keyword, args in instructions:
        if keyword != "FROM":
            continue
        words = args.split()
        image = next(w for w in words if not w.startswith("--"))
        if image in stages:  # FROM an earlier stage
            continue
        if "@sha256:" not in image:
            name, _, tag = image.rpartition(":")
            assert name and "/" not in tag, f"base image {image} has no tag"
            assert tag != "latest", f"base image {image} is not pinned"
            assert re.match(r"\d+\.\d+\.\d+", tag), f"{image}: pin a full x.y.z version"
        if len(words) >= 3 and words[-2].upper() == "AS":
            stages.append(words[-1])
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    final = instructions[last_from:]
    users = [args for keyword, args in final if keyword == "USER"]
    assert users, "the final stage has no USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"the final stage runs as {users[-1]}"
    assert ("EXPOSE", "8080") in final
    assert ("CMD", '["leadflow", "serve"]') in final


# The only services whose published ports may listen on every interface: the gateways,
# the edge visitors reach (docker-compose.yml says so in its header).
PUBLIC_SERVICES = frozenset({"gateway-0", "gateway-1"})
REDIS_PASSWORD = re.compile(r"\$\{REDIS_PASSWORD:\?[^}]+\}")


def _published(port: Any) -> tuple[str, str]:
    """(host address, host port) of one entry of ``ports`` (short or long syntax);
    no address means every interface."""
    if isinstance(port, dict):
        return str(port.get("host_ip", "0.0.0.0")), str(port.get("published", ""))
    parts = str(port).split(":")
    if len(parts) == 3:
        return parts[0], parts[1]
    return "0.0.0.0", parts[0] if len(parts) == 2 else ""


def test_only_the_public_services_publish_ports_on_every_interface() -> None:
    for name, svc in _services().items():
        for port in svc.get("ports", []):
            address, _ = _published(port)
            if name in PUBLIC_SERVICES:
                continue
            assert address == "127.0.0.1", (
                f"{name}: port {port} listens on {address}; bind it to 127.0.0.1 or list the"
                " service as public (PUBLIC_SERVICES and the compose file's header)"
            )
    for name in ("kafka", "redis"):
        assert not _services()[name].get("ports"), f"{name} must not be published"


def test_redis_requires_a_password_from_the_environment() -> None:
    """Required, without a default, and never on redis-server's command line (it
    would show in ``ps``): the server reads it as configuration from stdin."""
    redis = _services()["redis"]
    command = " ".join(_command(redis))
    assert "requirepass" in command and "redis-server -" in command, "no password"
    assert "--requirepass" not in command, "the password would be visible in ps"
    password = _environment(redis).get("REDISCLI_AUTH", "")
    assert REDIS_PASSWORD.fullmatch(password), "REDIS_PASSWORD: required, no default"
    for name, svc in _leadflow_services().items():
        url = _environment(svc).get("LEADFLOW_REDIS_URL", "")
        assert REDIS_PASSWORD.search(url) and url.startswith("redis://:"), (
            f"{name}: LEADFLOW_REDIS_URL must carry the password (redis://:${{REDIS_PASSWORD:?...}}@...)"
        )


def test_the_short_port_syntax_is_read_as_compose_reads_it() -> None:
    assert _published("8080:8080") == ("0.0.0.0", "8080")
    assert _published("127.0.0.1:8090:8090") == ("127.0.0.1", "8090")
    assert _published({"target": 80, "published": 8080}) == ("0.0.0.0", "8080")


def test_every_leadflow_service_can_read_the_sites_file_it_is_told_of() -> None:
    """LEADFLOW_SITES_FILE is shared, so every service that checks it at start (each
    ``leadflow run``) mounts the configuration directory the file is in, read-only:
    a gateway without it would serve the demo site only (origins), the projector
    would know no site's read-API key, the delivery service no destination."""
    for name, service in _services().items():
        if service.get("command", [None])[:2] != ["leadflow", "run"]:
            continue
        assert "LEADFLOW_SITES_FILE" in _environment(service), name
        mounts = [str(v) for v in service.get("volumes", [])]
        assert any(m.endswith(":/etc/leadflow/config:ro") for m in mounts), name
