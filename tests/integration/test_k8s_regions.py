"""The regions overlays (deploy/k8s/overlays/region-eu, region-us, analytics), checked
offline like the others (tests/integration/test_k8s_manifests.py: ``kustomize build``,
strict core kinds, the Strimzi CRD schemas), then against the topology the local proof
runs (tests/support/mirror.py, tests/integration/test_regions_mirror.py): each region's
events and commands go to the analytics cluster, its flow registry and policy topics come
back to every region, every topic under its own name and no topic both ways; the policy
service runs on the analytics side only, and no processor, gateway or lead delivery
does; every cluster has the code's topics with the same partitions."""

from __future__ import annotations

import re
from typing import Any

import pytest

from services.distributed.settings import KafkaSettings
from services.distributed.topics import all_topic_specs
from services.regions import Regions
from tests.integration import test_k8s_manifests as manifests
from tests.integration.test_k8s_manifests import Resource, _config, _one, _resources
from tests.support.mirror import DOWN_TOPICS, IDENTITY_POLICY, UP_TOPICS

REGIONS = ("eu", "us")
ANALYTICS = "analytics"
OVERLAYS = (*(f"region-{r}" for r in REGIONS), ANALYTICS)
PREFIX = KafkaSettings().prefix


# ---- the generic checks, on these overlays too ----------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_core_kinds_pass_kubernetes_validate_strict(overlay: str) -> None:
    manifests.test_core_kinds_pass_kubernetes_validate_strict(overlay)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_pass_the_checked_in_crd_schemas(overlay: str) -> None:
    manifests.test_custom_resources_pass_the_checked_in_crd_schemas(overlay)
    assert len(_resources(overlay, "KafkaMirrorMaker2")) == 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits(overlay: str) -> None:
    manifests.test_every_container_has_requests_and_limits(overlay)
    for mirror in _resources(overlay, "KafkaMirrorMaker2"):
        resources = mirror["spec"]["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]) & set(resources["limits"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pinned_and_containers_unprivileged(overlay: str) -> None:
    manifests.test_images_are_pinned_and_containers_unprivileged(overlay)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_come_only_from_secret_references(overlay: str) -> None:
    manifests.test_secrets_come_only_from_secret_references(overlay)


def test_the_mirror_schema_refuses_what_strimzi_refuses() -> None:
    """The KafkaMirrorMaker2 schema is as strict as the others (a misspelt field is
    refused), and its ``oneOf`` branches only require (a trusted certificate names its
    Secret and one of ``certificate`` or ``pattern``)."""
    mirror = _resources(ANALYTICS, "KafkaMirrorMaker2")[0]
    assert not manifests._crd_errors(mirror)
    mirror["spec"]["mirrors"][0]["topicPattern"] = "leadflow\\..*"
    assert any("topicPattern" in e for e in manifests._crd_errors(mirror))
    mirror = _resources(ANALYTICS, "KafkaMirrorMaker2")[0]
    del mirror["spec"]["target"]["tls"]["trustedCertificates"][0]["pattern"]
    assert manifests._crd_errors(mirror)


# ---- what runs where -----------------------------------------------------------------------


def _services(overlay: str) -> set[str]:
    return {service for _, _, service in manifests._leadflow_containers(overlay)}


@pytest.mark.parametrize("region", REGIONS)
def test_a_region_runs_the_conversation_stack_without_the_policy_service(region: str) -> None:
    overlay = f"region-{region}"
    assert _services(overlay) == {"gateway", "processor", "projector", "delivery"}
    users = {u["metadata"]["name"] for u in _resources(overlay, "KafkaUser")}
    assert "leadflow-policy" not in users
    assert not [d for d in _resources(overlay, "Deployment") if d["metadata"]["name"] == "policy"]
    config = _config(overlay)
    regions = Regions.from_env(config)
    assert regions.name == region
    assert set(regions.urls) == set(REGIONS)
    (ingress,) = _resources(overlay, "Ingress")
    assert ingress["spec"]["rules"][0]["host"] == f"{region}.bot.example.com"
    assert f"{region}.bot.example.com" in regions.urls[region]


def test_the_analytics_cluster_serves_no_visitor_and_runs_the_policy_service() -> None:
    # the read side and what the regions only receive (policy snapshots, flows)
    assert _services(ANALYTICS) == {"projector", "policy"}
    assert {w["metadata"]["name"] for w in _resources(ANALYTICS, "CronJob")} == {
        "read-model-replay"
    }
    assert not _resources(ANALYTICS, "Ingress")
    assert "LEADFLOW_REGION" not in _config(ANALYTICS)
    users = {u["metadata"]["name"] for u in _resources(ANALYTICS, "KafkaUser")}
    assert not users & {"leadflow-gateway", "leadflow-processor", "leadflow-delivery"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_cluster_has_the_codes_topics_with_the_same_partitions(overlay: str) -> None:
    """Identity naming copies a record into the partition it had: every cluster needs
    the same names and partition counts (commands and events stay co-partitioned)."""
    settings = manifests._kafka_settings(_config(overlay))
    assert (settings.prefix, settings.partitions) == (PREFIX, KafkaSettings().partitions)
    assert settings.bootstrap == "leadflow-kafka-bootstrap:9093"
    topics = {t["spec"]["topicName"]: t["spec"] for t in _resources(overlay, "KafkaTopic")}
    expected = {s.name: s for s in all_topic_specs(settings)}
    assert set(topics) == set(expected)
    for name, spec in expected.items():
        assert topics[name]["partitions"] == spec.partitions, name
        got = {str(k): str(v) for k, v in topics[name].get("config", {}).items()}
        assert spec.config.items() <= got.items(), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_cluster_has_an_external_listener_with_tls_and_scram(overlay: str) -> None:
    listeners = _one(overlay, "Kafka", "leadflow")["spec"]["kafka"]["listeners"]
    (external,) = [x for x in listeners if x["name"] == "external"]
    assert external["tls"] is True
    assert external["authentication"] == {"type": "scram-sha-512"}


# ---- the mirrors ------------------------------------------------------------------------------


def _mirror(overlay: str) -> dict[str, Any]:
    (mirror,) = _resources(overlay, "KafkaMirrorMaker2")
    spec: dict[str, Any] = mirror["spec"]
    return spec


def _mirrored(pattern: str) -> set[str]:
    """Which of the code's topics a mirror's topicsPattern (a Java regex, matched in
    full; these use no syntax that Python's re reads otherwise) selects."""
    names = [s.name for s in all_topic_specs(KafkaSettings())]
    return {name for name in names if re.fullmatch(pattern, name)}


def _acl_topics(user: Resource, operation: str) -> set[str]:
    """The code's topics on which ``user`` may do ``operation``."""
    names = [s.name for s in all_topic_specs(KafkaSettings())]
    out: set[str] = set()
    for acl in user["spec"]["authorization"]["acls"]:
        resource = acl["resource"]
        if resource["type"] != "topic" or operation not in acl["operations"]:
            continue
        if resource.get("patternType") == "prefix":
            out |= {n for n in names if n.startswith(resource["name"])}
        else:
            out |= {n for n in names if n == resource["name"]}
    return out


def _connector_config(mirror: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = mirror["sourceConnector"]["config"]
    assert config["replication.policy.class"] == IDENTITY_POLICY
    assert config["consumer.isolation.level"] == "read_committed"
    assert config["sync.topic.configs.enabled"] is False  # the KafkaTopics' settings win
    assert config["offset-syncs.topic.location"] == "target"  # sources are only read
    assert config["exactly.once.support"] == "required"  # nothing copied twice
    return config


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_mirror_copies_exactly_once(overlay: str) -> None:
    spec = _mirror(overlay)
    assert spec["target"]["config"]["exactly.once.source.support"] == "enabled"
    user = _one(overlay, "KafkaUser", spec["target"]["authentication"]["username"])
    ids = {
        acl["resource"]["name"]
        for acl in user["spec"]["authorization"]["acls"]
        if acl["resource"]["type"] == "transactionalId"
    }
    assert f"connect-cluster-{spec['target']['groupId']}" in ids  # the worker's
    assert spec["target"]["groupId"] in ids  # the tasks' (a prefix)


def test_every_regions_log_goes_to_the_analytics_cluster_and_nothing_else() -> None:
    spec = _mirror(ANALYTICS)
    assert spec["target"]["alias"] == ANALYTICS
    assert spec["target"]["bootstrapServers"] == "leadflow-kafka-bootstrap:9093"
    assert [m["source"]["alias"] for m in spec["mirrors"]] == list(REGIONS)
    up = {f"{PREFIX}{t}" for t in UP_TOPICS}
    for mirror in spec["mirrors"]:
        _connector_config(mirror)
        assert _mirrored(mirror["topicsPattern"]) == up
        assert mirror["source"]["bootstrapServers"].endswith(":9094")  # the external one
        # the region's read-only user, which exists there and may read exactly these
        auth = mirror["source"]["authentication"]
        region = mirror["source"]["alias"]
        user = _one(f"region-{region}", "KafkaUser", auth["username"])
        assert _acl_topics(user, "Read") == up
        assert not _acl_topics(user, "Write")


@pytest.mark.parametrize("region", REGIONS)
def test_the_analytics_sides_flows_and_policy_topics_come_back_to_every_region(
    region: str,
) -> None:
    overlay = f"region-{region}"
    spec = _mirror(overlay)
    assert spec["target"]["alias"] == region  # the region's LEADFLOW_REGION
    (mirror,) = spec["mirrors"]
    assert mirror["source"]["alias"] == ANALYTICS
    _connector_config(mirror)
    down = {f"{PREFIX}{t}" for t in DOWN_TOPICS}
    assert _mirrored(mirror["topicsPattern"]) == down
    user = _one(ANALYTICS, "KafkaUser", mirror["source"]["authentication"]["username"])
    assert _acl_topics(user, "Read") == down
    assert not _acl_topics(user, "Write")
    # the local writer may write exactly what it copies
    writer = _one(overlay, "KafkaUser", spec["target"]["authentication"]["username"])
    assert _acl_topics(writer, "Write") == down


def test_no_topic_is_mirrored_both_ways_nor_any_region_state() -> None:
    """IdentityReplicationPolicy cannot detect a cycle: the two directions are disjoint,
    and the per-region topics (replies, the changelog, dead letters) go nowhere."""
    up = _mirrored(_mirror(ANALYTICS)["mirrors"][0]["topicsPattern"])
    down = set().union(
        *(_mirrored(_mirror(f"region-{r}")["mirrors"][0]["topicsPattern"]) for r in REGIONS)
    )
    assert not up & down
    settings = KafkaSettings()
    private = {settings.replies_topic, settings.changelog_topic, settings.dead_letters_topic}
    assert not (up | down) & private
    # and nothing ever lands in a region's commands or events (a processor acts on them)
    assert not down & {settings.commands_topic, settings.events_topic}
