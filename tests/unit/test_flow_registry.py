"""The flow registry's rules: content hashing, version numbering, idempotent
publishing, activation and rollback, seeding from files, the record codec, diffs,
and the catalog's active versions."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from schemas.flow_registry import (
    ALL_SITES,
    FlowActivated,
    FlowPublished,
    UnreadableRegistryRecord,
    content_hash,
    decode_record,
    encode_record,
    record_key,
)
from schemas.flow_validation import parse_document, validate_document, validate_text
from services.catalog import FlowCatalog
from services.log_follower_fake import MemoryLog, MemoryLogFollower
from services.registry.core import (
    Conflict,
    Published,
    Registry,
    UnknownVersion,
    apply,
    fold,
    plan_activate,
    plan_publish,
)
from services.registry.diff import diff, edges_of
from services.registry.feed import RegistryFeed
from services.registry.memory import MemoryRegistryWriter
from services.registry.seed import SEEDED_BY, plan_seed
from tests.support.tour_flow import TOUR_YAML
from tests.unit.flows import QUIZ_YAML

T0 = 1_700_000_000.0


_QUIZ, _ = parse_document(QUIZ_YAML.format(version=1), "quiz.yaml")  # the project's YAML rules


def quiz_doc(version: int = 1, colour_text: str | None = None) -> dict[str, Any]:
    """The quiz flow's document as ``version``, the same content whatever the version."""
    doc: dict[str, Any] = {**copy.deepcopy(_QUIZ), "version": version}
    if colour_text is not None:
        next(n for n in doc["nodes"] if n["id"] == "colour")["text"] = colour_text
    return doc


def published(registry: Registry, doc: dict[str, Any], **kw: Any) -> tuple[Registry, Published]:
    plan = plan_publish(registry, doc, by="ann", at=T0, **kw)
    assert isinstance(plan, Published)
    return fold_into(registry, plan), plan


def fold_into(registry: Registry, plan: Published) -> Registry:
    for record in plan.records:
        registry = apply(registry, record)
    return registry


def test_the_content_hash_ignores_the_version_and_the_order_of_keys() -> None:
    doc = quiz_doc(1)
    reordered = dict(reversed(list(copy.deepcopy(doc).items())))
    assert content_hash(doc) == content_hash(reordered) == content_hash(quiz_doc(7))
    assert content_hash(doc) != content_hash(quiz_doc(1, colour_text="Which hue?"))
    assert content_hash(doc).startswith("sha256:") and len(content_hash(doc)) == 7 + 64


def test_a_first_publish_keeps_the_declared_version_and_activates_it() -> None:
    registry, plan = published(Registry(), quiz_doc(3), activate_for=ALL_SITES)
    assert plan.created and plan.version == 3
    kinds = [type(r) for r in plan.records]
    assert kinds == [FlowPublished, FlowActivated]
    stored = registry.published[("quiz", 3)]
    assert stored.document["version"] == 3 and stored.published_by == "ann"
    assert registry.active_version("quiz") == 3


def test_new_content_gets_the_next_version_when_the_declared_one_is_taken() -> None:
    registry, _ = published(Registry(), quiz_doc(3), activate_for=ALL_SITES)
    registry, plan = published(registry, quiz_doc(3, colour_text="Hue?"), activate_for=ALL_SITES)
    assert plan.version == 4
    assert registry.published[("quiz", 4)].document["version"] == 4
    registry, plan = published(registry, quiz_doc(9, colour_text="Tint?"), activate_for=None)
    assert plan.version == 9  # a higher declared version is kept
    assert registry.active_version("quiz") == 4  # published, not activated


def test_publishing_the_same_content_again_changes_nothing() -> None:
    registry, first = published(Registry(), quiz_doc(1), activate_for=ALL_SITES)
    again = plan_publish(registry, quiz_doc(5), by="bob", at=T0 + 1, activate_for=ALL_SITES)
    assert isinstance(again, Published)
    assert again.version == first.version == 1 and not again.created
    assert again.records == ()  # already the active version


def test_publishing_known_content_for_a_site_only_activates_it_there() -> None:
    registry, _ = published(Registry(), quiz_doc(1), activate_for=ALL_SITES)
    registry, _ = published(registry, quiz_doc(1, colour_text="Hue?"), activate_for=ALL_SITES)
    registry, plan = published(registry, quiz_doc(1), activate_for="acme")
    assert [type(r) for r in plan.records] == [FlowActivated]
    assert registry.active_version("quiz", "acme") == 1
    assert registry.active_version("quiz", "other") == 2


def test_a_stale_if_match_is_a_conflict() -> None:
    registry, _ = published(Registry(), quiz_doc(1), activate_for=ALL_SITES)
    stale = plan_publish(registry, quiz_doc(1, "Hue?"), by="a", at=T0, if_match=0)
    assert stale == Conflict(latest=1)
    fresh = plan_publish(registry, quiz_doc(1, "Hue?"), by="a", at=T0, if_match=1)
    assert isinstance(fresh, Published) and fresh.version == 2
    first = plan_publish(Registry(), quiz_doc(1), by="a", at=T0, if_match=0)
    assert isinstance(first, Published)  # 0: "there is no version yet"


def test_rollback_is_activating_an_older_version_per_site_or_for_all() -> None:
    registry, _ = published(Registry(), quiz_doc(1), activate_for=ALL_SITES)
    registry, _ = published(registry, quiz_doc(1, "Hue?"), activate_for=ALL_SITES)
    assert registry.active_version("quiz", "acme") == 2
    back = plan_activate(registry, "quiz", 1, "acme", by="ann", at=T0)
    assert isinstance(back, FlowActivated)
    registry = apply(registry, back)
    assert registry.active_version("quiz", "acme") == 1
    assert registry.active_version("quiz", "beta") == 2
    assert plan_activate(registry, "quiz", 7, "", by="ann", at=T0) == UnknownVersion("quiz", 7)


def test_apply_never_replaces_a_version_and_ignores_unknown_activations() -> None:
    registry, plan = published(Registry(), quiz_doc(1), activate_for=ALL_SITES)
    first = plan.records[0]
    assert isinstance(first, FlowPublished)
    imposter = FlowPublished(
        flow_id="quiz",
        version=1,
        document=quiz_doc(1, "Forged?"),
        content_hash="sha256:" + "0" * 64,
        published_by="eve",
        published_at=T0 + 5,
    )
    assert apply(registry, imposter) == registry
    ghost = FlowActivated(flow_id="quiz", version=8, site_id="", activated_by="x", activated_at=T0)
    assert apply(registry, ghost) == registry
    assert fold(plan.records) == registry


def test_seeding_publishes_new_file_content_only_and_keeps_a_rollback() -> None:
    docs = [quiz_doc(2, "Hue?"), quiz_doc(1)]
    records = plan_seed(Registry(), docs, T0)
    registry = fold(records)
    assert [r.version for r in records if isinstance(r, FlowPublished)] == [1, 2]
    assert {r.published_by for r in records if isinstance(r, FlowPublished)} == {SEEDED_BY}
    assert registry.active_version("quiz") == 2
    rolled = apply(
        registry,
        FlowActivated(flow_id="quiz", version=1, site_id="", activated_by="a", activated_at=T0),
    )
    assert plan_seed(rolled, docs, T0 + 60) == []  # a restart keeps the rollback
    edited = plan_seed(rolled, [quiz_doc(2, "Tint?")], T0 + 60)
    assert fold_active(rolled, edited) == 3  # an edited file is a new, active version


def fold_active(registry: Registry, records: list[Any]) -> int | None:
    for record in records:
        registry = apply(registry, record)
    return registry.active_version("quiz")


def test_records_round_trip_and_carry_their_compaction_key() -> None:
    _, plan = published(Registry(), quiz_doc(1), activate_for="acme")
    pub, act = plan.records
    assert decode_record(encode_record(pub)) == pub
    assert decode_record(encode_record(act)) == act
    assert record_key(pub) == b"published/quiz/1"
    assert record_key(act) == b"active/acme/quiz"
    everyone = FlowActivated(
        flow_id="quiz", version=1, site_id="", activated_by="a", activated_at=T0
    )
    assert record_key(everyone) == b"active/*/quiz"


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        b'{"v": 2, "type": "FlowPublished"}',
        b'{"v": 1, "type": "FlowDeleted"}',
        b'{"v": 1, "type": "FlowActivated", "flow_id": "q", "version": "1", "site_id": "",'
        b' "activated_by": "a", "activated_at": 1}',
        b'{"v": 1, "type": "FlowPublished", "flow_id": "q", "version": 1, "document": [],'
        b' "content_hash": "h", "published_by": "a", "published_at": 1}',
        b'{"v": 1, "type": "FlowActivated", "flow_id": "q", "version": true, "site_id": "",'
        b' "activated_by": "a", "activated_at": 1}',
    ],
)
def test_an_unreadable_record_is_one_typed_error(data: bytes) -> None:
    with pytest.raises(UnreadableRegistryRecord):
        decode_record(data)


def test_the_diff_lists_nodes_and_edges_added_removed_and_changed() -> None:
    old_doc = quiz_doc(1)
    new_doc = quiz_doc(2, colour_text="Which hue?")
    nodes = new_doc["nodes"]
    nodes[:] = [n for n in nodes if n["id"] != "note"]
    size = next(n for n in nodes if n["id"] == "size")
    size["buttons"][1]["next"] = ["colour", "extra"]
    nodes.append({"id": "bye2", "kind": "end", "text": "Later."})
    next(n for n in nodes if n["id"] == "end_early")["kind"] = "message"
    next(n for n in nodes if n["id"] == "end_early")["next"] = "bye2"
    old, _ = validate_document(old_doc, "a.yaml")
    new, errors = validate_document(new_doc, "b.yaml")
    assert old is not None and new is not None, errors
    d = diff(old, new)
    assert d.nodes_added == ("bye2",)
    assert d.nodes_removed == ("note",)
    assert set(d.nodes_changed) == {"colour", "end_early"}
    assert ("size", "big", "note") in d.edges_removed and ("note", "", "colour") in d.edges_removed
    assert d.edges_added == (("end_early", "", "bye2"),)
    assert not d.start_changed and not d.empty
    assert diff(old, old).empty
    assert d.as_json()["edges"]["added"] == [{"from": "end_early", "button": "", "to": "bye2"}]


def test_the_catalog_starts_new_conversations_on_the_active_version() -> None:
    flows = [validate_document(quiz_doc(v, f"v{v}?"), "q.yaml")[0] for v in (1, 2, 3)]
    catalog = FlowCatalog([f for f in flows if f is not None])
    assert len(catalog.ids()) == 1
    assert catalog.latest("quiz").version == 3  # type: ignore[union-attr]  # no activation: the highest
    catalog.activate("quiz", 2)
    catalog.activate("quiz", 1, "acme")
    catalog.activate("quiz", 9)  # not loaded: ignored
    assert [catalog.for_site("quiz", s).version for s in ("acme", "beta")] == [1, 2]  # type: ignore[union-attr]
    assert catalog.latest("quiz").version == 2  # type: ignore[union-attr]
    assert catalog.highest("quiz").version == 3  # type: ignore[union-attr]
    assert catalog.get("quiz", 1) is not None and catalog.for_site("nope", "acme") is None


async def test_a_version_this_process_cannot_validate_is_skipped_and_the_rest_serves() -> None:
    log = MemoryLog(name="flows")
    writer = MemoryRegistryWriter(log)
    good = plan_publish(Registry(), quiz_doc(1), by="a", at=T0, activate_for=ALL_SITES)
    assert isinstance(good, Published)
    await writer.append_registry(good.records)
    newer = {**quiz_doc(2, "Hue?"), "nodes": [{"id": "x", "kind": "hologram"}]}
    await writer.append_registry(
        [
            FlowPublished(
                flow_id="quiz",
                version=2,
                document=newer,
                content_hash=content_hash(newer),
                published_by="future",
                published_at=T0,
            ),
            FlowActivated(flow_id="quiz", version=2, site_id="", activated_by="f", activated_at=T0),
        ]
    )
    feed = RegistryFeed(MemoryLogFollower(log), FlowCatalog())
    await feed.load()
    assert feed.skipped == 1
    assert feed.catalog.latest("quiz").version == 1  # type: ignore[union-attr]


def test_the_diff_sees_conditional_edges_conditions_and_translations() -> None:
    """Flow format v2: every branch's target is an edge, a changed condition or a
    change to one translation changes its node."""
    old, errors = validate_text(TOUR_YAML, "tour.yaml")
    assert old is not None, errors
    assert {("rooms", "", "garden"), ("rooms", "", "flat_guide")} <= edges_of(old)
    german = TOUR_YAML.replace('de: "Wie viele Zimmer?"', 'de: "Wie viele Räume?"')
    condition = TOUR_YAML.replace("""'home == "house"'""", """'home == "flat"'""")
    branch = """      - {to: flat_guide}\n"""
    target = TOUR_YAML.replace(branch, """      - {when: 'rooms > 20', to: bye}\n""" + branch)
    for changed, nodes, added in (
        (german, ("rooms",), ()),
        (condition, ("rooms",), ()),
        (target, ("rooms",), (("rooms", "", "bye"),)),
    ):
        new, errors = validate_text(changed, "tour.yaml")
        assert new is not None, errors
        d = diff(old, new)
        assert d.nodes_changed == nodes
        assert (d.edges_added, d.edges_removed) == (added, ())
    assert diff(old, validate_text(TOUR_YAML, "tour.yaml")[0]).empty  # type: ignore[arg-type]
