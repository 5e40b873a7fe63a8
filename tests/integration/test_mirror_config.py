"""The local MirrorMaker 2 configuration (tests/support/mirror.py), read as MirrorMaker
reads it: the regions topology without a cycle, identity naming, committed records only,
exactly once; and its jars of the broker's Kafka version."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.support.mirror import IDENTITY_POLICY, mm2_properties, region_flows

ROOT = Path(__file__).resolve().parents[2]
CLUSTERS = {"eu": "127.0.0.1:1", "us": "127.0.0.1:2", "analytics": "127.0.0.1:3"}


def _properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


# every topic of the distributed mode (services/distributed/topics.py, all_topic_specs;
# tests/integration/test_k8s_regions.py checks the manifests against the code itself)
TOPICS = (
    "commands",
    "events",
    "replies",
    "processor-conversations-changelog",
    "commands-dead",
    "policy-snapshots",
    "policy-snapshot-archive",
    "policy-control",
    "flows",
)


def _selected(pattern: str, prefix: str) -> set[str]:
    return {f"{prefix}{t}" for t in TOPICS if re.fullmatch(pattern, f"{prefix}{t}")}


def test_the_regions_topology_has_no_cycle_and_no_region_state() -> None:
    prefix = "lf."
    props = _properties(mm2_properties(CLUSTERS, region_flows(["eu", "us"], "analytics", prefix)))
    up = {f"{prefix}events", f"{prefix}commands"}
    down = {f"{prefix}{t}" for t in ("flows", "policy-snapshots")} | {
        f"{prefix}policy-snapshot-archive",
        f"{prefix}policy-control",
    }
    for region in ("eu", "us"):
        assert props[f"{region}->analytics.enabled"] == "true"
        assert _selected(props[f"{region}->analytics.topics"], prefix) == up
        assert props[f"analytics->{region}.enabled"] == "true"
        assert _selected(props[f"analytics->{region}.topics"], prefix) == down
    assert props["eu->us.enabled"] == props["us->eu.enabled"] == "false"
    assert props["replication.policy.class"] == IDENTITY_POLICY
    assert {props[f"{c}.consumer.isolation.level"] for c in CLUSTERS} == {"read_committed"}
    assert {props[f"{t}.exactly.once.source.support"] for t in CLUSTERS} == {"enabled"}
    assert props["sync.topic.configs.enabled"] == "false"


def test_a_prefix_with_regex_characters_matches_only_itself() -> None:
    props = _properties(mm2_properties(CLUSTERS, region_flows(["eu"], "analytics", "a.b")))
    assert not re.fullmatch(props["eu->analytics.topics"], "aXbevents")
    assert re.fullmatch(props["eu->analytics.topics"], "a.bevents")


def test_at_least_once_is_only_ever_asked_for() -> None:
    text = mm2_properties(CLUSTERS, region_flows(["eu"], "analytics", "x."), exactly_once=False)
    assert "exactly.once" not in text


def _kafka_version(pom: Path) -> str:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    found = ET.parse(pom).getroot().find("m:properties/m:kafka.version", ns)
    assert found is not None and found.text
    return found.text


def test_the_mirror_jars_are_the_brokers_kafka_version() -> None:
    local = ROOT / "deploy" / "local"
    assert _kafka_version(local / "mirror" / "pom.xml") == _kafka_version(
        local / "kafka" / "pom.xml"
    )
