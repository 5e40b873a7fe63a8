"""The policy leader's assignor: the oldest member of the group leads, so a
standby that (re)starts never takes the lead from a running leader."""

from __future__ import annotations

from typing import Any

from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

from policy.leader_kafka import oldest_leads, oldest_member, started_at


class Cluster:
    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}


def test_the_oldest_member_leads_ties_by_member_id() -> None:
    assert oldest_member({"b": 10.0, "a": 20.0}) == "b"
    assert oldest_member({"b": 10.0, "a": 10.0}) == "a"


def test_a_member_without_a_start_time_is_last_in_line() -> None:
    assert started_at(None) == float("inf")
    assert started_at(b"junk") == float("inf")


def test_the_group_assignment_gives_the_partition_to_the_oldest_whoever_computes_it() -> None:
    old, new = oldest_leads(100.0), oldest_leads(200.0)
    members = {
        "member-new": new.metadata(["policy-control"]),
        "member-old": old.metadata(["policy-control"]),
        "member-unknown": ConsumerProtocolMemberMetadata(0, ["policy-control"], b""),
    }
    cluster: Any = Cluster()
    for computing in (old, new):  # any member may be the group's assignment leader
        assignment = computing.assign(cluster, members)
        owned = {m: a.assignment for m, a in assignment.items()}
        assert owned == {
            "member-old": [("policy-control", [0])],
            "member-new": [],
            "member-unknown": [],
        }
    assert old.name == new.name  # one protocol: the members agree on it
