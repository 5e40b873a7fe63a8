"""The Kubernetes manifests (deploy/k8s), checked offline: no cluster, no Docker.

Each overlay is rendered with ``kustomize build`` (a subprocess, hence this tier). Core
kinds must pass ``kubernetes-validate --strict``; the Strimzi and KEDA resources must pass
the JSON Schemas converted from their CRDs (deploy/k8s/schemas). Then what the manifests
promise is checked against the code: the topics, the ports and probe paths the services
serve, the gateways' replies partitions, resources on every container, secrets only by
reference, and NetworkPolicies that let only the gateway be reached from outside.

kustomize comes from ``KUSTOMIZE``, the PATH or ``$GOPATH/bin`` (.ci/run installs it with
``go install``). Without it the test is skipped on a developer's machine and fails in CI.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from gateway.shutdown import ShutdownSettings
from services.distributed.settings import KafkaSettings, ordinal_from_hostname
from services.distributed.topics import TopicSpec, all_topic_specs

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SCHEMAS = K8S / "schemas"
OVERLAYS = ("dev", "prod")
NAMESPACES = {"dev": "leadflow-dev", "prod": "leadflow"}
# the oldest Kubernetes minor the manifests support, and the newest the validator knows
KUBERNETES_VERSIONS = ("1.32.0", "1.37.0")
CUSTOM_GROUPS = ("kafka.strimzi.io/", "keda.sh/", "monitoring.coreos.com/")
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
SECRET_NAMES = {"leadflow-secrets", "leadflow-sites", "leadflow-delivery-secrets"}
# written by Strimzi: the cluster CA's certificate and one Secret per KafkaUser (prod)
STRIMZI_SECRET_NAMES = {
    "leadflow-cluster-ca-cert",
    *(
        f"leadflow-{s}"
        for s in ("gateway", "processor", "projector", "policy", "delivery", "replay")
    ),
}
# topic settings a KafkaTopic may add to what the code asks for
EXTRA_TOPIC_CONFIG = {"min.insync.replicas"}

Resource = dict[str, Any]


def _kustomize() -> str | None:
    found = os.environ.get("KUSTOMIZE") or shutil.which("kustomize")
    if found:
        return found
    gopath = os.environ.get("GOPATH") or str(Path.home() / "go")
    candidate = Path(gopath.split(os.pathsep)[0]) / "bin" / "kustomize"
    return str(candidate) if candidate.is_file() else None


@functools.cache
def _render(overlay: str) -> tuple[Resource, ...]:
    kustomize = _kustomize()
    if kustomize is None:
        message = (
            "kustomize is not installed: .ci/run installs it "
            "(go install sigs.k8s.io/kustomize/kustomize/v5@v5.8.2)"
        )
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    result = subprocess.run(
        [kustomize, "build", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert docs, f"{overlay} renders nothing"
    return tuple(docs)


def _resources(overlay: str, *kinds: str) -> list[Resource]:
    return [copy.deepcopy(r) for r in _render(overlay) if not kinds or r["kind"] in kinds]


def _one(overlay: str, kind: str, name: str) -> Resource:
    found = [r for r in _resources(overlay, kind) if r["metadata"]["name"] == name]
    assert len(found) == 1, f"{overlay}: {len(found)} {kind}/{name}"
    return found[0]


def _pod_spec(workload: Resource) -> dict[str, Any]:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    template: dict[str, Any] = spec["template"]["spec"]
    return template


def _containers(workload: Resource) -> list[dict[str, Any]]:
    pod = _pod_spec(workload)
    return [*pod.get("initContainers", []), *pod["containers"]]


def _config(overlay: str) -> dict[str, str]:
    """leadflow-config as rendered (kustomize adds a hash suffix to its name)."""
    maps = [
        r
        for r in _resources(overlay, "ConfigMap")
        if r["metadata"]["name"].startswith("leadflow-config")
    ]
    assert len(maps) == 1, maps
    return {str(k): str(v) for k, v in maps[0]["data"].items()}


def _image_env() -> dict[str, str]:
    """The ENV of the Dockerfile's final stage (LEADFLOW_HOST and the like)."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text("utf-8"))
    final = text.rsplit("\nFROM ", 1)[1]
    env: dict[str, str] = {}
    for line in final.splitlines():
        if line.startswith("ENV "):
            for pair in line[4:].split():
                key, sep, value = pair.partition("=")
                if sep:
                    env[key] = value
    return env


def _env(overlay: str, container: dict[str, Any]) -> dict[str, str]:
    """What the container's process sees, but for the values that come from Secrets."""
    env = dict(_image_env())
    for source in container.get("envFrom", []):
        if source.get("configMapRef", {}).get("name", "").startswith("leadflow-config"):
            env.update(_config(overlay))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif item["name"] == "LEADFLOW_KAFKA_PASSWORD":  # from its KafkaUser's Secret
            env[item["name"]] = f"<secret {item['valueFrom']['secretKeyRef']['name']}>"
    return env


def _kafka_settings(config: dict[str, str]) -> KafkaSettings:
    """leadflow-config's Kafka settings; the SASL user and password (prod) are each
    workload's own, not in the ConfigMap: stand-ins here."""
    return KafkaSettings.from_env(
        {"LEADFLOW_KAFKA_USERNAME": "u", "LEADFLOW_KAFKA_PASSWORD": "p", **config}
    )


def _service(container: dict[str, Any]) -> str | None:
    """gateway, processor, projector, policy or delivery for `leadflow run X`, else None."""
    command = [*container.get("command", []), *container.get("args", [])]
    return command[2] if command[:2] == ["leadflow", "run"] else None


def _leadflow_containers(overlay: str) -> Iterator[tuple[Resource, dict[str, Any], str]]:
    for workload in _resources(overlay, *WORKLOADS):
        for container in _containers(workload):
            service = _service(container)
            if service:
                yield workload, container, service


# ---- rendering and validation ---------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders_into_its_namespace(overlay: str) -> None:
    resources = _resources(overlay)
    kinds = {r["kind"] for r in resources}
    expected = {"StatefulSet", "Deployment", "KafkaTopic", "Kafka", "KafkaNodePool"}
    assert expected <= kinds, expected - kinds
    for resource in resources:
        if resource["kind"] == "Namespace":
            assert resource["metadata"]["name"] == NAMESPACES[overlay]
        else:
            assert resource["metadata"].get("namespace") == NAMESPACES[overlay], resource


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_core_kinds_pass_kubernetes_validate_strict(overlay: str) -> None:
    """Every resource that is not a Strimzi or KEDA one is a core kind, validated with
    strict schemas (unknown fields refused) for the oldest and newest supported minor."""
    try:
        import kubernetes_validate  # type: ignore[import-untyped]
    except ImportError:
        pytest.fail("kubernetes-validate is missing: pip install -e '.[dev]'", pytrace=False)
    core = [r for r in _resources(overlay) if not r["apiVersion"].startswith(CUSTOM_GROUPS)]
    assert core
    for version in KUBERNETES_VERSIONS:
        for resource in core:
            try:
                kubernetes_validate.validate(resource, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                name = f"{resource['kind']}/{resource['metadata']['name']}"
                pytest.fail(f"{overlay} {name} (Kubernetes {version}): {exc.message}")


@functools.cache
def _crd_validators() -> dict[tuple[str, str], jsonschema.Draft202012Validator]:
    validators: dict[tuple[str, str], jsonschema.Draft202012Validator] = {}
    for path in sorted(SCHEMAS.glob("*.json")):
        if path.name == "sources.json":
            continue
        schema = json.loads(path.read_text("utf-8"))
        jsonschema.Draft202012Validator.check_schema(schema)
        key = (schema["properties"]["apiVersion"]["const"], schema["properties"]["kind"]["const"])
        validators[key] = jsonschema.Draft202012Validator(schema)
    return validators


def _crd_errors(resource: Resource) -> list[str]:
    validator = _crd_validators()[(resource["apiVersion"], resource["kind"])]
    return [
        f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in validator.iter_errors(resource)
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_pass_the_checked_in_crd_schemas(overlay: str) -> None:
    validators = _crd_validators()
    custom = [r for r in _resources(overlay) if r["apiVersion"].startswith(CUSTOM_GROUPS)]
    assert {r["kind"] for r in custom} >= {"Kafka", "KafkaNodePool", "KafkaTopic"}
    for resource in custom:
        key = (resource["apiVersion"], resource["kind"])
        assert key in validators, f"no schema for {key} in deploy/k8s/schemas"
        errors = _crd_errors(resource)
        assert not errors, f"{resource['kind']}/{resource['metadata']['name']}: {errors}"
    if overlay == "prod":
        assert "ScaledObject" in {r["kind"] for r in custom}


def test_the_validators_refuse_unknown_fields() -> None:
    """Regression: a schema that admits anything (additionalProperties left open, or a
    non-strict core validation) would let a misspelt field through silently."""
    import kubernetes_validate

    topic = _resources("prod", "KafkaTopic")[0]
    topic["spec"]["partiton"] = 3
    assert any("partiton" in e for e in _crd_errors(topic))
    scaled = _resources("prod", "ScaledObject")[0]
    scaled["spec"]["maxReplicas"] = 3
    assert any("maxReplicas" in e for e in _crd_errors(scaled))
    pool = _resources("prod", "KafkaNodePool")[0]
    pool["spec"]["storage"]["volumes"][0]["sise"] = "1Gi"
    assert _crd_errors(pool)
    deployment = _resources("prod", "Deployment")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)
    # but Strimzi's free-form maps stay open, as the CRD says
    topic = _resources("prod", "KafkaTopic")[0]
    topic["spec"]["config"]["any.topic.setting"] = "1"
    assert not _crd_errors(topic)


def test_every_schema_records_where_it_came_from() -> None:
    sources = json.loads((SCHEMAS / "sources.json").read_text("utf-8"))
    files = {p.name for p in SCHEMAS.glob("*.json")} - {"sources.json"}
    assert files == set(sources), "regenerate with deploy/k8s/schemas/update.sh"
    for name, source in sources.items():
        assert source["origin"] and re.fullmatch(r"[0-9a-f]{64}", source["crd_sha256"]), name


# ---- topics: manifests, compose file and code agree -----------------------------------------


def _code_topics(settings: KafkaSettings) -> dict[str, TopicSpec]:
    """What the services create (all_topic_specs), the processors' changelog included."""
    return {spec.name: spec for spec in all_topic_specs(settings)}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_topics_match_the_code(overlay: str) -> None:
    config = _config(overlay)
    # the user and password are each workload's own (test_kafka_users_and_credentials)
    settings = KafkaSettings.from_env(
        {**config, "LEADFLOW_KAFKA_USERNAME": "u", "LEADFLOW_KAFKA_PASSWORD": "p"}
    )
    defaults = KafkaSettings()
    assert (settings.prefix, settings.partitions, settings.reply_partitions) == (
        defaults.prefix,
        defaults.partitions,
        defaults.reply_partitions,
    ), "leadflow-config must keep the code's topic layout"
    # Strimzi's Service: the plain listener in dev, the tls (SASL_SSL, SCRAM) one in prod
    port = 9093 if overlay == "prod" else 9092
    assert settings.bootstrap == f"leadflow-kafka-bootstrap:{port}"
    expected = _code_topics(settings)
    topics = {t["spec"]["topicName"]: t for t in _resources(overlay, "KafkaTopic")}
    assert set(topics) == set(expected), (
        f"missing KafkaTopics: {sorted(set(expected) - set(topics))}, "
        f"unknown: {sorted(set(topics) - set(expected))}"
    )
    for name, spec in expected.items():
        topic = topics[name]["spec"]
        assert topic["partitions"] == spec.partitions, name
        assert topic["replicas"] == spec.replication_factor, name
        got = {str(k): str(v) for k, v in topic.get("config", {}).items()}
        want = dict(spec.config)
        assert {k: got.get(k) for k in want} == want, name
        assert set(got) - set(want) <= EXTRA_TOPIC_CONFIG, name
    if overlay == "prod":
        assert settings.replication_factor == 3
        kafka = _one(overlay, "Kafka", "leadflow")["spec"]["kafka"]["config"]
        assert int(kafka["min.insync.replicas"]) == 2
        pool = _one(overlay, "KafkaNodePool", "dual-role")["spec"]
        assert pool["replicas"] >= settings.replication_factor


def test_the_compose_file_creates_the_topics_the_manifests_declare() -> None:
    """docker-compose.yml has no topic list of its own: `leadflow topics` creates them
    from its environment, which must give the same names and partition counts."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text("utf-8"))
    topics_job = compose["services"]["topics"]
    assert topics_job["command"] == ["leadflow", "topics"]
    env = {str(k): str(v) for k, v in topics_job["environment"].items()}
    from_compose = {s.name: s.partitions for s in all_topic_specs(KafkaSettings.from_env(env))}
    manifests = {
        t["spec"]["topicName"]: t["spec"]["partitions"] for t in _resources("prod", "KafkaTopic")
    }
    assert from_compose == {name: manifests.get(name) for name in from_compose}


def test_the_projectors_scale_on_their_own_consumer_group() -> None:
    from app.projector import events_follower

    settings = _kafka_settings(_config("prod"))
    scaled = _resources("prod", "ScaledObject")
    assert len(scaled) == 1
    spec = scaled[0]["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "projector",
    }
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == events_follower(settings).group_id
    assert trigger["metadata"]["topic"] == settings.events_topic
    assert trigger["metadata"]["bootstrapServers"].startswith("leadflow-kafka-bootstrap.")
    # the lag is read on the tls listener as leadflow-projector (authorization is on)
    assert trigger["metadata"]["bootstrapServers"].endswith(":9093")
    assert not {"sasl", "tls"} & set(trigger["metadata"]), "the TriggerAuthentication says"
    auth = _one("prod", "TriggerAuthentication", trigger["authenticationRef"]["name"])["spec"]
    assert trigger["authenticationRef"].get("kind", "TriggerAuthentication") == (
        "TriggerAuthentication"
    )
    secrets = {r["parameter"]: (r["name"], r["key"]) for r in auth["secretTargetRef"]}
    assert secrets == {
        "password": ("leadflow-projector", "password"),
        "ca": ("leadflow-cluster-ca-cert", "ca.crt"),
    }
    params = {}
    for ref in auth["configMapTargetRef"]:
        params[ref["parameter"]] = _one("prod", "ConfigMap", ref["name"])["data"][ref["key"]]
    assert params == {"sasl": "scram_sha512", "tls": "enable", "username": "leadflow-projector"}
    # what the scaler asks: metadata and ListOffsets (Describe on the topic), OffsetFetch
    # (Describe on the group)
    acls = _one("prod", "KafkaUser", "leadflow-projector")["spec"]["authorization"]["acls"]
    assert _acl_allows(acls, "topic", settings.events_topic, "Describe")
    assert _acl_allows(acls, "group", trigger["metadata"]["consumerGroup"], "Describe")
    assert spec["minReplicaCount"] >= 1
    assert spec["maxReplicaCount"] <= settings.partitions, "a projector past 12 gets nothing"
    assert "replicas" not in _one("prod", "Deployment", "projector")["spec"], "KEDA owns it"
    targets = [
        h["spec"]["scaleTargetRef"]["name"] for h in _resources("prod", "HorizontalPodAutoscaler")
    ]
    assert "projector" not in targets, "two autoscalers on one Deployment"


# ---- probes and ports --------------------------------------------------------------------------


def _served_paths(service: str, port: str = "http") -> set[str]:
    """The paths each service's aiohttp app really routes (built, never started) on
    its container port named ``port`` (the gateway's "metrics": its metrics listener)."""
    from aiohttp import web

    from app.delivery import DeliveryServiceSettings
    from app.delivery import init_app as delivery_app
    from app.gateway import init_app as gateway_app
    from app.policy import init_app as policy_app
    from app.projector import ProjectorSettings
    from app.projector import init_app as projector_app
    from gateway.config import GatewaySettings
    from policy.settings import PolicySettings
    from services.catalog import EXAMPLE_FLOWS_DIR, FlowCatalog
    from services.distributed.command_sealing import CommandSealer
    from services.sites import default_sites

    catalog = FlowCatalog.from_directory(EXAMPLE_FLOWS_DIR)
    kafka = KafkaSettings()
    app: web.Application
    if service == "gateway":
        sealer = CommandSealer("s" * 32)
        app = gateway_app(
            GatewaySettings.from_env(b"r" * 32, {}), kafka, 0, default_sites(), catalog, sealer
        )
        if port == "metrics":
            from services.health import METRICS_APP

            app = app[METRICS_APP]
    elif service == "projector":
        settings = ProjectorSettings.from_env("redis://127.0.0.1:1/0", {})
        app = projector_app(settings, default_sites(), catalog)
    elif service == "policy":
        app = policy_app(PolicySettings.from_env({}), kafka, catalog)
    elif service == "delivery":
        delivery = DeliveryServiceSettings.from_env("redis://127.0.0.1:1/0", {})
        app = delivery_app(delivery, default_sites(), catalog, {})
    elif service == "processor":
        from services.processor.http import Readiness, create_http_app
        from services.processor.metrics import ProcessorMetrics

        app = create_http_app(ProcessorMetrics(), Readiness(lambda: False, {}), lambda: None)
    else:
        return set()
    paths = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        paths.add(str(info.get("path") or info.get("formatter") or ""))
    return paths


def _listen_port(service: str, env: dict[str, str]) -> tuple[str, int]:
    from app.delivery import DeliveryServiceSettings
    from app.projector import ProjectorSettings
    from gateway.config import GatewaySettings
    from policy.settings import PolicySettings
    from services.processor.http import address_from_env

    if service == "processor":
        return address_from_env(env)
    if service == "gateway":
        gateway = GatewaySettings.from_env(b"r" * 32, env)
        return gateway.host, gateway.port
    if service == "projector":
        projector = ProjectorSettings.from_env("redis://127.0.0.1:1/0", env)
        return projector.host, projector.port
    if service == "delivery":
        delivery = DeliveryServiceSettings.from_env("redis://127.0.0.1:1/0", env)
        return delivery.host, delivery.port
    policy = PolicySettings.from_env(env)
    return policy.host, policy.port


def _probe_port(container: dict[str, Any], probe: dict[str, Any]) -> int:
    port = probe["httpGet"]["port"]
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    assert port in named, f"probe port {port} is not a container port"
    return int(named[port])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_point_at_endpoints_the_services_serve(overlay: str) -> None:
    """Liveness is /healthz (the process answers: never Kafka's or Redis's state),
    readiness /readyz (which follows them), on the port the service listens on."""
    seen = set()
    for workload, container, service in _leadflow_containers(overlay):
        if workload["kind"] in ("Job", "CronJob"):
            continue
        seen.add(service)
        name = f"{workload['metadata']['name']}/{container['name']}"
        for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert kind in container, f"{name}: no {kind}"
        paths = _served_paths(service)
        host, port = _listen_port(service, _env(overlay, container))
        assert host == "0.0.0.0", f"{name} listens on {host}: unreachable by the kubelet"
        expected = {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}
        if service == "processor":  # its startup is the changelog's recovery: wait for /readyz
            expected["startupProbe"] = "/readyz"
        for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
            probe = container[kind]
            assert "httpGet" in probe, f"{name}: {kind} is not an HTTP probe"
            path = probe["httpGet"]["path"]
            assert path in paths, f"{name}: {kind} {path} is not served ({sorted(paths)})"
            assert path == expected.get(kind, "/healthz"), f"{name}: {kind} on {path}"
            assert _probe_port(container, probe) == port, f"{name}: {kind} port"
    assert seen == {"gateway", "processor", "projector", "policy", "delivery"}, seen


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_processor_startup_budget_covers_a_changelog_recovery(overlay: str) -> None:
    """The processor's startup probe waits on /readyz (its partitions recovered) for at
    least 15 minutes: every start reads the states of its partitions from the changelog,
    and a shorter budget would restart a large recovery in a loop. Its metrics port
    admits `monitoring`."""
    processor = _one(overlay, "Deployment", "processor")
    (container,) = _pod_spec(processor)["containers"]
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 15 * 60
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    policy = _one(overlay, "NetworkPolicy", "processor-metrics")
    (rule,) = policy["spec"]["ingress"]
    assert [p["port"] for p in rule["ports"]] == [ports["http"]]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]


# ---- workloads ---------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits(overlay: str) -> None:
    for workload in _resources(overlay, *WORKLOADS):
        for container in _containers(workload):
            resources = container.get("resources", {})
            name = f"{workload['kind']}/{workload['metadata']['name']}/{container['name']}"
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(part, {})), f"{name}: {part}"
    pool = _one(overlay, "KafkaNodePool", "dual-role")["spec"]["resources"]
    assert {"cpu", "memory"} <= set(pool["requests"]) and {"cpu", "memory"} <= set(pool["limits"])
    operators = _one(overlay, "Kafka", "leadflow")["spec"]["entityOperator"]
    for name in ("topicOperator", "userOperator"):
        if name in operators:
            assert {"requests", "limits"} <= set(operators[name].get("resources", {})), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pinned_and_containers_unprivileged(overlay: str) -> None:
    for workload in _resources(overlay, *WORKLOADS):
        pod = _pod_spec(workload)
        assert pod.get("automountServiceAccountToken") is False, workload["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in _containers(workload):
            image = container["image"]
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            assert tag and tag != "latest", f"{image} is not pinned"
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, image
            assert context["readOnlyRootFilesystem"] is True, image
            assert context["capabilities"]["drop"] == ["ALL"], image
            if container.get("args", [])[:1] == ["leadflow"]:
                mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
                assert "/tmp" in mounts, f"{image}: PyTensor and Numba write to /tmp"
    if overlay == "prod":
        for _, container, _ in _leadflow_containers(overlay):
            assert not container["image"].endswith(":dev")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_come_only_from_secret_references(overlay: str) -> None:
    """No Secret in the manifests and no secret value in them: Secrets are created with
    kubectl (docs/runbook.md) and referenced by name."""
    assert not _resources(overlay, "Secret")
    secretish = re.compile(r"SECRET|PASSWORD|API_KEY", re.IGNORECASE)
    references = set()
    for workload in _resources(overlay, *WORKLOADS):
        for container in _containers(workload):
            for item in container.get("env", []):
                if "valueFrom" in item and "secretKeyRef" in item["valueFrom"]:
                    references.add(item["valueFrom"]["secretKeyRef"]["name"])
                elif secretish.search(item["name"]):
                    pytest.fail(f"{item['name']} has a literal value in {container['name']}")
                elif "value" in item and "://" in str(item["value"]):
                    assert "@" not in item["value"] or "$(REDIS_PASSWORD)@" in item["value"]
        for volume in _pod_spec(workload).get("volumes", []):
            if "secret" in volume:
                references.add(volume["secret"]["secretName"])
    assert references and references <= SECRET_NAMES | STRIMZI_SECRET_NAMES, references
    for key, value in _config(overlay).items():
        assert not secretish.search(key), f"leadflow-config holds {key}"
        assert "@" not in value, f"{key} looks like a URL with credentials"


# ---- the gateways ------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateways_have_stable_distinct_replies_partitions(overlay: str) -> None:
    """Gateway N reads replies partition N, N from its pod name: a StatefulSet, at most
    one gateway per partition, never an ordinal that would be shared."""
    settings = _kafka_settings(_config(overlay))
    gateway = _one(overlay, "StatefulSet", "gateway")
    (container,) = _pod_spec(gateway)["containers"]
    assert "LEADFLOW_GATEWAY_ORDINAL" not in _env(overlay, container), "from the pod name"
    hpa = _one(overlay, "HorizontalPodAutoscaler", "gateway")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": "gateway",
    }
    most = hpa["spec"]["maxReplicas"]
    assert 1 <= hpa["spec"]["minReplicas"] <= most <= settings.reply_partitions
    ordinals = {ordinal_from_hostname(f"gateway-{i}") for i in range(most)}
    assert ordinals == set(range(most))
    assert "replicas" not in gateway["spec"], "the HorizontalPodAutoscaler owns the count"
    if overlay == "prod":
        assert hpa["spec"]["minReplicas"] >= 3


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateways_drain_before_they_stop(overlay: str) -> None:
    settings = _kafka_settings(_config(overlay))
    gateway = _one(overlay, "StatefulSet", "gateway")
    pod = _pod_spec(gateway)
    (container,) = pod["containers"]
    env = _env(overlay, container)
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep" and int(pre_stop[1]) >= 5
    command_timeout = float(env.get("LEADFLOW_COMMAND_TIMEOUT_SECONDS", "10"))
    shutdown = ShutdownSettings.from_env(env)  # gateway/shutdown.py: SIGTERM to exit
    grace = pod["terminationGracePeriodSeconds"]
    assert grace >= int(pre_stop[1]) + shutdown.grace_seconds
    assert shutdown.inflight_seconds(command_timeout) >= command_timeout
    assert gateway["spec"]["podManagementPolicy"] == "Parallel"
    assert gateway["spec"]["updateStrategy"]["type"] == "RollingUpdate"
    assert gateway["spec"]["minReadySeconds"] > 0
    pdb = _one(overlay, "PodDisruptionBudget", "gateway")["spec"]
    assert pdb["selector"] == gateway["spec"]["selector"]
    assert pdb.get("maxUnavailable") == 1 or "minAvailable" in pdb
    assert settings.reply_partitions == 16


# the faust processor's settings, gone with it (the processor keeps no local state)
FAUST_SETTINGS = {
    "LEADFLOW_PROCESSOR_STORE",
    "LEADFLOW_PROCESSOR_DATA_DIR",
    "LEADFLOW_STANDBY_REPLICAS",
}
# SIGTERM to exit, besides the drain: the poll in hand (2 s), each writer's close (5 s),
# the replies producer's (5 s), leaving the group
PROCESSOR_STOP_SECONDS = 15


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_processors_keep_no_local_state(overlay: str) -> None:
    """States live in the changelog topic and the transactional ids are per partition, so
    a processor is a Deployment: no volume claim, nothing mounted but /tmp, the sites and
    an emptyDir for the states beyond its memory cache (the folder it is told to use),
    none of the faust processor's settings. Never more processors than partitions, even
    one surging in a rollout (one that holds no partition exits 70); the grace period
    covers the drain of each partition's batch."""
    config = _config(overlay)
    settings = _kafka_settings(config)
    assert not [
        w for w in _resources(overlay, "StatefulSet") if w["metadata"]["name"] == "processor"
    ]
    processor = _one(overlay, "Deployment", "processor")
    pod = _pod_spec(processor)
    (container,) = pod["containers"]
    env = _env(overlay, container)
    assert not FAUST_SETTINGS & set(env), FAUST_SETTINGS & set(env)
    assert not FAUST_SETTINGS & set(config)
    assert "volumeClaimTemplates" not in processor["spec"]
    assert all("emptyDir" in v or "secret" in v for v in pod["volumes"]), pod["volumes"]
    # prod also mounts the Kafka cluster CA's certificate (read-only, from a Secret)
    mounts = {m["mountPath"] for m in container["volumeMounts"]} - {"/etc/leadflow/kafka-ca"}
    assert mounts == {"/tmp", "/etc/leadflow/sites", env["LEADFLOW_PROCESSOR_STATE_DIR"]}
    assert int(env.get("LEADFLOW_PROCESSOR_MAX_BATCH", "500")) >= 1
    assert int(env["LEADFLOW_PROCESSOR_STATE_CACHE"]) >= 1
    replicas = processor["spec"]["replicas"]
    rolling = processor["spec"]["strategy"]["rollingUpdate"]
    assert replicas >= 1 and replicas + int(rolling["maxSurge"]) <= settings.partitions
    assert rolling["maxUnavailable"] == 0, "a rollout keeps every processor serving"
    if overlay == "prod":
        assert replicas >= 2, "a survivor takes the partitions of a processor that fails"
    drain = float(env.get("LEADFLOW_PROCESSOR_DRAIN_SECONDS", "3"))
    assert pod["terminationGracePeriodSeconds"] >= drain + PROCESSOR_STOP_SECONDS
    pdb = _one(overlay, "PodDisruptionBudget", "processor")["spec"]
    assert pdb["selector"] == processor["spec"]["selector"]
    assert pdb.get("maxUnavailable") == 1 or "minAvailable" in pdb


def test_the_policy_service_runs_a_leader_and_a_standby() -> None:
    """Two replicas elect one publisher (docs/policy.md): rolled one pod at a time, a
    PodDisruptionBudget keeps one up, and the policy user may join the election group
    and publish through the fenced transactional id."""
    for overlay in OVERLAYS:
        policy = _one(overlay, "Deployment", "policy")["spec"]
        assert policy["replicas"] == 2
        rolling = policy["strategy"]["rollingUpdate"]
        assert policy["strategy"]["type"] == "RollingUpdate" and rolling["maxSurge"] == 0
        pdb = _one(overlay, "PodDisruptionBudget", "policy")["spec"]
        assert pdb["selector"] == policy["selector"] and pdb["maxUnavailable"] == 1
    user = _one("prod", "KafkaUser", "leadflow-policy")["spec"]["authorization"]["acls"]
    names = {(a["resource"]["type"], a["resource"].get("name")) for a in user}
    assert ("group", "leadflow.policy-leader") in names
    assert ("transactionalId", "leadflow.policy-publisher") in names


DELIVERY_SECRETS_DIR = "/etc/leadflow/delivery-secrets"
# SIGTERM to exit: the attempts in flight (5 s, WorkerSettings.drain_seconds), the
# follower, the senders and Redis closing
DELIVERY_STOP_SECONDS = 20


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_delivery_workers_share_the_log_and_the_store(overlay: str) -> None:
    """The delivery service (docs/delivery.md): a Deployment of interchangeable workers
    (one consumer group, the state in Redis), no volume but /tmp, the sites and the
    destination secrets (files from leadflow-delivery-secrets, optional, read-only), a
    PodDisruptionBudget, and its metrics port open to `monitoring` only."""
    from app.delivery import DeliveryServiceSettings

    delivery = _one(overlay, "Deployment", "delivery")
    pod = _pod_spec(delivery)
    (container,) = pod["containers"]
    assert container["args"] == ["leadflow", "run", "delivery"]
    env = _env(overlay, container)
    settings = DeliveryServiceSettings.from_env("redis://127.0.0.1:1/0", env)  # raises if bad
    assert settings.delivery.enabled
    assert settings.redis_prefix == _config(overlay)["LEADFLOW_REDIS_PREFIX"]
    assert "LEADFLOW_REDIS_URL" in env
    assert not any(v.get("persistentVolumeClaim") for v in pod["volumes"])
    assert "volumeClaimTemplates" not in delivery["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert set(mounts) - {"/etc/leadflow/kafka-ca"} == {
        "/tmp",
        "/etc/leadflow/sites",
        DELIVERY_SECRETS_DIR,
    }
    secrets = volumes[mounts[DELIVERY_SECRETS_DIR]["name"]]["secret"]
    assert secrets["secretName"] == "leadflow-delivery-secrets"
    assert secrets["optional"] is True, "a cluster without destinations still starts"
    assert mounts[DELIVERY_SECRETS_DIR]["readOnly"] is True
    replicas = delivery["spec"]["replicas"]
    assert replicas == (1 if overlay == "dev" else 2)
    assert delivery["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert pod["terminationGracePeriodSeconds"] >= DELIVERY_STOP_SECONDS
    pdb = _one(overlay, "PodDisruptionBudget", "delivery")["spec"]
    assert pdb["selector"] == delivery["spec"]["selector"]
    assert pdb.get("maxUnavailable") == 1 or "minAvailable" in pdb
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": settings.port}
    policy = _one(overlay, "NetworkPolicy", "delivery-metrics")
    (rule,) = policy["spec"]["ingress"]
    assert [p["port"] for p in rule["ports"]] == [settings.port]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    if overlay == "prod":
        # its Kafka user reads the events in its own group, and writes nothing
        group = f"{_kafka_settings(_config(overlay)).prefix}delivery"
        acls = _one("prod", "KafkaUser", "leadflow-delivery")["spec"]["authorization"]["acls"]
        assert _acl_allows(acls, "group", group, "Read")
        assert _acl_allows(acls, "topic", "leadflow.events", "Read")
        assert not any("Write" in acl["operations"] for acl in acls)


# ---- network -----------------------------------------------------------------------------------


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are checked here"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _open_to_outside(rule: dict[str, Any]) -> bool:
    """A rule that admits peers from outside the namespace's own pods."""
    peers = rule.get("from", [])
    if not peers:
        return True
    for peer in peers:
        if "ipBlock" in peer:
            return True
        if "namespaceSelector" in peer and not peer["namespaceSelector"].get("matchLabels"):
            return True
    return False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_gateway_is_reachable_from_outside(overlay: str) -> None:
    policies = _resources(overlay, "NetworkPolicy")
    deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {}
        and p["spec"]["policyTypes"] == ["Ingress"]
        and not p["spec"].get("ingress")
    ]
    assert deny, "no default-deny ingress policy"
    pods = {
        w["metadata"]["name"]: w["spec"]["template"]["metadata"]["labels"]
        for w in _resources(overlay, "Deployment", "StatefulSet")
    }
    for policy in policies:
        spec = policy["spec"]
        for rule in spec.get("ingress", []):
            if not _open_to_outside(rule):
                continue
            selected = {
                name for name, labels in pods.items() if _selects(spec["podSelector"], labels)
            }
            assert selected == {"gateway"}, f"{policy['metadata']['name']} opens {selected}"
            assert [p["port"] for p in rule["ports"]] == [8080]
    for service in _resources(overlay, "Service"):
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", service["metadata"]
    for ingress in _resources(overlay, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["backend"]["service"]["name"] == "gateway"
    listeners = _one(overlay, "Kafka", "leadflow")["spec"]["kafka"]["listeners"]
    for listener in listeners:
        assert listener["type"] == "internal", "Kafka stays inside the cluster"
        assert listener.get("networkPolicyPeers"), "Strimzi opens a listener without peers"


def _acl_allows(acls: list[dict[str, Any]], kind: str, name: str, operation: str) -> bool:
    for acl in acls:
        resource = acl["resource"]
        if resource["type"] != kind or operation not in acl["operations"]:
            continue
        pattern = resource.get("patternType", "literal")
        if (pattern == "literal" and resource["name"] in (name, "*")) or (
            pattern == "prefix" and name.startswith(resource["name"])
        ):
            return True
    return False


# operations no Leadflow user needs: topics are pre-created, configs are the operators'
LEADFLOW_FORBIDDEN_OPERATIONS = {
    "All",
    "Create",
    "Delete",
    "Alter",
    "AlterConfigs",
    "ClusterAction",
    "DescribeConfigs",
}


def test_kafka_users_and_credentials_in_prod() -> None:
    """prod: Kafka over TLS with SCRAM-SHA-512 on the `tls` listener; one KafkaUser per
    Kafka-using workload, whose password comes from the Secret the User Operator writes
    for that user, and whose CA file is the cluster CA's Secret, mounted."""
    kafka = _one("prod", "Kafka", "leadflow")["spec"]
    listeners = {entry["name"]: entry for entry in kafka["kafka"]["listeners"]}
    assert listeners["tls"]["tls"] is True
    assert listeners["tls"]["authentication"] == {"type": "scram-sha-512"}
    # the ACLs are enforced, and no listener lets a client in without a user
    assert kafka["kafka"]["authorization"]["type"] == "simple"
    assert not kafka["kafka"]["authorization"].get("superUsers")
    assert set(listeners) == {"tls"}, "an anonymous listener in prod"
    assert "userOperator" in kafka["entityOperator"]
    users = {u["metadata"]["name"]: u for u in _resources("prod", "KafkaUser")}
    for user in users.values():
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
        assert user["metadata"]["labels"]["strimzi.io/cluster"] == "leadflow"
        name = user["metadata"]["name"]
        assert user["spec"]["authorization"]["type"] == "simple", name
        acls = user["spec"]["authorization"]["acls"]
        for acl in acls:
            resource = acl["resource"]
            assert acl.get("type", "allow") == "allow", name
            assert not LEADFLOW_FORBIDDEN_OPERATIONS & set(acl["operations"]), (name, acl)
            if resource["type"] == "cluster":
                assert acl["operations"] == ["IdempotentWrite"], name
                continue
            assert resource["name"].startswith("leadflow."), (name, resource)
            assert resource["name"] != "*" and acl.get("host", "*") == "*", name
            if resource.get("patternType") == "prefix":
                # the one prefix per resource kind: Describe on the leadflow. topics, and a
                # processor's transactional ids
                assert (resource["type"], sorted(acl["operations"])) in (
                    ("topic", ["Describe"]),
                    ("transactionalId", ["Describe", "Write"]),
                ), (name, acl)
    config = _config("prod")
    assert config["LEADFLOW_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["LEADFLOW_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    workloads = {
        ("StatefulSet", "gateway"): "leadflow-gateway",
        ("Deployment", "processor"): "leadflow-processor",
        ("Deployment", "projector"): "leadflow-projector",
        ("Deployment", "policy"): "leadflow-policy",
        ("Deployment", "delivery"): "leadflow-delivery",
        ("CronJob", "read-model-replay"): "leadflow-replay",
    }
    assert set(workloads.values()) == set(users)
    for (kind, name), user_name in workloads.items():
        workload = _one("prod", kind, name)
        container = _pod_spec(workload)["containers"][0]
        env = {e["name"]: e for e in container["env"]}
        assert env["LEADFLOW_KAFKA_USERNAME"]["value"] == user_name, name
        assert env["LEADFLOW_KAFKA_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": user_name,
            "key": "password",
        }, name
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        ca_file = config["LEADFLOW_KAFKA_CA_FILE"]
        assert ca_file == f"{mounts['kafka-ca']}/ca.crt", name
        volumes = {v["name"]: v for v in _pod_spec(workload)["volumes"]}
        assert volumes["kafka-ca"]["secret"]["secretName"] == "leadflow-cluster-ca-cert"
    # dev stays plaintext, without users
    assert "LEADFLOW_KAFKA_SECURITY_PROTOCOL" not in _config("dev")
    assert not _resources("dev", "KafkaUser")
