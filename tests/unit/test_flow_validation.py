"""Flow validation: structural (JSON Schema) and semantic (graph) checks.

Every test builds its flow as YAML/JSON text and calls ``validate_text``, or as a
document and calls ``validate_document``; the only file reads are the three shipped
example flows, loaded with ``load_flow``.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas.flow import Button, FieldType, Flow, Node, NodeKind
from schemas.flow_errors import FlowError, InvalidFlow
from schemas.flow_limits import MAX_FLOW_BYTES, MAX_FLOW_DEPTH, MAX_LABEL_CHARS, MAX_TEXT_CHARS
from schemas.flow_validation import (
    load_flow,
    parse_document,
    validate_bytes,
    validate_document,
    validate_text,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flows"
EXAMPLE_FLOWS = ("solar-quote.yaml", "insurance-quote.yaml", "saas-demo.yaml")

Doc = dict[str, Any]

# A small but complete flow: a message, a question with one decision point,
# a lead form and two ends. Tests copy it and break one thing at a time.
MINIMAL_YAML = """\
id: mini
version: 3
title: Minimal flow
start: welcome
nodes:
  - id: welcome
    kind: message
    text: Hi! Two quick questions.
    next: q
  - id: q
    kind: question
    text: Interested?
    buttons:
      - id: a
        label: "Yes"
        next: [form, e_ok]
      - id: b
        label: "No"
        next: e_no
  - id: form
    kind: lead_form
    text: Where can we reach you?
    fields:
      - {name: name, type: text, label: Name, required: true}
      - {name: email, type: email, required: true}
      - {name: consent, type: consent, required: true}
    next: e_ok
  - id: e_ok
    kind: end
    text: Thanks!
  - id: e_no
    kind: end
    text: Bye!
"""


_MINIMAL_DOC: Doc = yaml.safe_load(MINIMAL_YAML)


def minimal_doc() -> Doc:
    """A fresh, mutable copy of MINIMAL_YAML as a document."""
    return copy.deepcopy(_MINIMAL_DOC)


def dump(doc: Doc) -> str:
    """YAML text for a document: JSON is YAML's flow style, and the quickest to build and parse."""
    return json.dumps(doc)


def node(doc: Doc, node_id: str) -> Doc:
    found: Doc = next(n for n in doc["nodes"] if n.get("id") == node_id)
    return found


def errors_of(doc: Doc, filename: str = "f.yaml") -> list[FlowError]:
    """The document's errors, as if read from ``filename``: the document is checked as
    parsed (parsing JSON text gives back an equal document; the parser's limits and
    refusals have tests of their own, on text)."""
    flow, errors = validate_document(json.loads(dump(doc)), filename)
    assert (flow is None) == bool(errors), "a flow is returned exactly when there are no errors"
    return errors


def only_error(doc: Doc) -> FlowError:
    errors = errors_of(doc)
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


def located(errors: list[FlowError]) -> set[tuple[str, str]]:
    return {(e.node, e.field) for e in errors}


def valid_flow(text: str, filename: str = "f.yaml") -> Flow:
    flow, errors = validate_text(text, filename)
    assert errors == [], [str(e) for e in errors]
    assert flow is not None
    return flow


@cache
def minimal_flow() -> Flow:
    """MINIMAL_YAML validated once (flows are frozen, so sharing it is safe)."""
    return valid_flow(MINIMAL_YAML)


@cache
def example(name: str) -> Flow:
    return load_flow(EXAMPLES / name)


# --- valid documents ---------------------------------------------------------


def test_minimal_flow_parses_into_frozen_types() -> None:
    """A valid YAML flow yields a Flow with every node, kind and field parsed."""
    flow = minimal_flow()
    assert (flow.id, flow.version, flow.start, flow.title) == ("mini", 3, "welcome", "Minimal flow")
    assert list(flow.nodes) == ["welcome", "q", "form", "e_ok", "e_no"]
    assert flow.node("form").kind is NodeKind.LEAD_FORM
    assert [f.type for f in flow.node("form").fields] == [
        FieldType.TEXT,
        FieldType.EMAIL,
        FieldType.CONSENT,
    ]


def test_json_file_is_accepted_and_equals_yaml() -> None:
    """A .json flow is parsed as JSON and gives the same flow as its YAML twin."""
    from_json = valid_flow(dump(minimal_doc()), "f.json")
    assert from_json == minimal_flow()
    assert dict(from_json.nodes) == dict(minimal_flow().nodes)


def test_lead_field_defaults() -> None:
    """An omitted field label defaults to the field name and `required` to false."""
    doc = minimal_doc()
    node(doc, "form")["fields"] = [{"name": "email", "type": "email"}]
    flow = valid_flow(dump(doc))
    (email,) = flow.node("form").fields
    assert (email.label, email.required) == ("email", False)


def test_a_cycle_through_a_question_is_allowed() -> None:
    """A loop back to an earlier node is fine while it waits for the visitor and can end."""
    doc = minimal_doc()
    node(doc, "q")["buttons"].append({"id": "again", "label": "Tell me again", "next": "welcome"})
    valid_flow(dump(doc))


# --- unparseable documents ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "filename"),
    [
        ("nodes: [", "f.yaml"),
        ("id: x\n  version: 1\n nodes: 2", "f.yml"),
        ('{"id": }', "f.json"),
        ("id: mini\nversion: 1\n", "f.json"),
    ],
)
def test_unparseable_text_gives_one_clear_error(text: str, filename: str) -> None:
    """Broken YAML/JSON yields exactly one flow-level error, not a crash or an error cascade."""
    flow, errors = validate_text(text, filename)
    assert flow is None
    assert len(errors) == 1
    (error,) = errors
    assert (error.file, error.node, error.field) == (filename, "", "")
    kind = "JSON" if filename.endswith(".json") else "YAML"
    assert error.message.startswith(f"not valid {kind}: ")
    assert "line" in error.message, "the error should say where the syntax breaks"
    assert str(error).startswith(f"{filename}: (flow): not valid {kind}: ")


@pytest.mark.parametrize("text", ["", "[1, 2]", "just a sentence", "42"])
def test_document_that_is_not_a_mapping_is_one_flow_error(text: str) -> None:
    """A YAML document that is not an object is refused at flow level, once."""
    flow, errors = validate_text(text, "f.yaml")
    assert flow is None
    assert len(errors) == 1
    assert (errors[0].node, errors[0].field) == ("", "")
    assert "is not of type 'object'" in errors[0].message


# --- structural errors -------------------------------------------------------


@pytest.mark.parametrize("key", ["id", "version", "start", "nodes"])
def test_missing_top_level_key_is_a_flow_error(key: str) -> None:
    """A missing required top-level key (e.g. `start`) is reported at flow level by name."""
    doc = minimal_doc()
    del doc[key]
    error = only_error(doc)
    assert error.node == ""
    assert f"'{key}' is a required property" in error.message
    assert str(error).startswith("f.yaml: (flow)")


def test_unknown_kind_names_node_and_field() -> None:
    """A misspelt kind is reported on `<node>.kind` with the allowed kinds."""
    doc = minimal_doc()
    node(doc, "welcome")["kind"] = "mesage"
    error = only_error(doc)
    assert (error.node, error.field) == ("welcome", "kind")
    assert "'mesage' is not one of" in error.message


@pytest.mark.parametrize("bad_id", ["Welcome", "-welcome", "w" * 65])
def test_node_id_must_match_the_pattern(bad_id: str) -> None:
    """An uppercase, hyphen-first or 65-character node id is refused on `<node>.id`."""
    doc = minimal_doc()
    node(doc, "e_no")["id"] = bad_id
    node(doc, "q")["buttons"][1]["next"] = bad_id
    errors = errors_of(doc)
    assert (bad_id, "id") in located(errors)


def test_a_node_id_ending_in_a_newline_is_refused() -> None:
    """Python's ``$`` matches before a final newline, so jsonschema alone took
    ``"e_no\\n"`` for an id; the fast validator does not, and the stricter wins,
    worded by the fast validator."""
    doc = minimal_doc()
    node(doc, "e_no")["id"] = "e_no\n"
    node(doc, "q")["buttons"][1]["next"] = "e_no\n"
    errors = errors_of(doc)
    assert ("e_no\n", "id") in located(errors)
    assert any("does not match" in e.message for e in errors), [str(e) for e in errors]


@pytest.mark.parametrize("control", ["\x1c", "\x85", "\x00", "\x7f"])
def test_an_image_address_with_a_control_character_is_refused(control: str) -> None:
    """Control characters (which Python's ``\\s`` partly covers and Rust's does
    not) are named in the pattern, so both validators refuse them."""
    doc = minimal_doc()
    node(doc, "q")["image"] = {"src": f"https://example.com/a{control}b.png", "alt": "A roof"}
    assert ("q", "image.src") in located(errors_of(doc))


def test_node_id_of_64_chars_is_valid() -> None:
    """The id pattern allows exactly 64 characters (the boundary is not off by one)."""
    doc = minimal_doc()
    long_id = "e" + "_" * 62 + "x"
    node(doc, "e_no")["id"] = long_id
    node(doc, "q")["buttons"][1]["next"] = long_id
    assert errors_of(doc) == []


def test_bad_button_id_and_target_name_the_button() -> None:
    """Pattern errors inside a button are located at `buttons[i].<field>` of their node."""
    doc = minimal_doc()
    node(doc, "q")["buttons"][1].update(id="No!", next="E_NO")
    errors = errors_of(doc)
    assert located(errors) == {("q", "buttons[1].id"), ("q", "buttons[1].next")}


def test_question_without_buttons_names_the_node() -> None:
    """A question with no `buttons` is reported on that node, naming the missing property."""
    doc = minimal_doc()
    del node(doc, "q")["buttons"]
    error = only_error(doc)
    assert error.node == "q"
    assert "'buttons' is a required property" in error.message


def test_question_with_empty_buttons_names_the_field() -> None:
    """A question with `buttons: []` is reported on `<node>.buttons`."""
    doc = minimal_doc()
    node(doc, "q")["buttons"] = []
    assert located(errors_of(doc)) == {("q", "buttons")}


@pytest.mark.parametrize(
    ("node_id", "key"),
    [("form", "next"), ("form", "fields"), ("welcome", "next")],
)
def test_missing_required_node_property_names_node(node_id: str, key: str) -> None:
    """A lead form without fields/next or a message without next is reported on its node."""
    doc = minimal_doc()
    del node(doc, node_id)[key]
    error = only_error(doc)
    assert error.node == node_id
    assert f"'{key}'" in str(error)


@pytest.mark.parametrize(
    ("node_id", "extra", "value"),
    [
        ("welcome", "buttons", []),
        ("e_ok", "next", "e_no"),
        ("form", "colour", "red"),
    ],
)
def test_extra_node_property_is_refused(node_id: str, extra: str, value: Any) -> None:
    """A property that does not belong to the node's kind is reported on that node by name."""
    doc = minimal_doc()
    node(doc, node_id)[extra] = value
    error = only_error(doc)
    assert error.node == node_id
    assert "Additional properties are not allowed" in error.message
    assert f"'{extra}'" in error.message


def test_extra_properties_in_flow_button_and_field() -> None:
    """Unknown keys at flow, button and form-field level are each located precisely."""
    doc = minimal_doc()
    doc["author"] = "me"
    node(doc, "q")["buttons"][0]["colour"] = "red"
    node(doc, "form")["fields"][0]["placeholder"] = "Ann"
    errors = errors_of(doc)
    assert located(errors) == {
        ("", "author"),
        ("q", "buttons[0].colour"),
        ("form", "fields[0].placeholder"),
    }
    assert all("Additional properties are not allowed" in e.message for e in errors)


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        (("version",), "1", ("", "version")),
        (("title",), "t" * 201, ("", "title")),
        (("nodes", 0, "text"), 5, ("welcome", "text")),
        (("nodes", 0, "next"), ["q"], ("welcome", "next")),
        (("nodes", 1, "buttons", 0, "label"), 5, ("q", "buttons[0].label")),
        (("nodes", 1, "buttons", 0, "next"), 7, ("q", "buttons[0].next")),
        (("nodes", 1, "buttons", 0, "next"), [f"n{i}" for i in range(9)], ("q", "buttons[0].next")),
        (("nodes", 2, "fields", 1, "type"), "date", ("form", "fields[1].type")),
        (("nodes", 2, "fields", 1, "required"), "yes", ("form", "fields[1].required")),
    ],
)
def test_wrong_type_or_bound_names_node_and_field(
    path: tuple[str | int, ...], value: Any, where: tuple[str, str]
) -> None:
    """A wrong type or out-of-bounds value is reported exactly at the node and field it is in."""
    doc = minimal_doc()
    target: Any = doc
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    errors = errors_of(doc)
    assert located(errors) == {where}


def test_node_that_is_not_a_mapping_is_named_by_index() -> None:
    """A node that is not an object (no id to name it by) is located as `nodes[i]`."""
    doc = minimal_doc()
    doc["nodes"].append("oops")
    assert located(errors_of(doc)) == {("nodes[5]", "")}


def test_node_with_non_string_id_is_named_by_index() -> None:
    """A node whose id is not a string is located as `nodes[i]`, not by a bogus id."""
    doc = minimal_doc()
    node(doc, "e_no")["id"] = 7
    node(doc, "q")["buttons"][1]["next"] = "e_ok"
    assert located(errors_of(doc)) == {("nodes[4]", "id")}


def test_flow_needs_at_least_two_nodes() -> None:
    """A flow with a single node is refused on `nodes`."""
    doc = minimal_doc()
    doc["nodes"] = [{"id": "only", "kind": "end", "text": "Bye"}]
    doc["start"] = "only"
    assert located(errors_of(doc)) == {("", "nodes")}


def test_bare_yes_no_on_off_stay_strings() -> None:
    """Flows use YAML 1.2 booleans: a bare `yes`/`no`/`off` id is text, not a YAML 1.1 boolean."""
    text = MINIMAL_YAML.replace("- id: a\n", "- id: yes\n").replace("- id: b\n", "- id: no\n")
    text = (
        text.replace("next: e_no\n", "next: [e_no, off]\n")
        + "  - {id: off, kind: end, text: Off}\n"
    )
    flow = valid_flow(text)
    assert [b.id for b in flow.node("q").buttons] == ["yes", "no"]
    assert flow.node("q").buttons[1].next == ("e_no", "off")


def test_bare_true_is_still_a_boolean() -> None:
    """`true` is a YAML boolean, so as an id it is a type error located on that id."""
    text = MINIMAL_YAML.replace("- id: a\n", "- id: true\n")
    flow, errors = validate_text(text, "f.yaml")
    assert flow is None
    assert [(e.node, e.field, e.message) for e in errors] == [
        ("q", "buttons[0].id", "True is not of type 'string'")
    ]


def test_structural_errors_are_all_reported_together() -> None:
    """Every schema error in the document is reported, not just the first one."""
    doc = minimal_doc()
    doc["version"] = "one"
    node(doc, "welcome")["kind"] = "note"
    node(doc, "q")["buttons"][1]["label"] = None
    node(doc, "form")["fields"][0]["type"] = "name"
    assert located(errors_of(doc)) == {
        ("", "version"),
        ("welcome", "kind"),
        ("q", "buttons[1].label"),
        ("form", "fields[0].type"),
    }


def test_semantic_checks_wait_for_a_structurally_valid_document() -> None:
    """Graph checks do not run (and cannot crash) on a document that failed the schema."""
    doc = minimal_doc()
    doc["version"] = "one"
    node(doc, "q")["buttons"][1]["next"] = "nowhere"
    assert located(errors_of(doc)) == {("", "version")}


# --- semantic errors ---------------------------------------------------------


@pytest.mark.parametrize(
    ("node_id", "path", "where"),
    [
        ("q", ("buttons", 1, "next"), "buttons.b.next"),
        ("welcome", ("next",), "next"),
        ("form", ("next",), "next"),
    ],
)
def test_unknown_next_node_names_the_edge(
    node_id: str, path: tuple[str | int, ...], where: str
) -> None:
    """An edge to a missing node (button, message or lead form) is reported on that edge."""
    doc = minimal_doc()
    target: Any = node(doc, node_id)
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = "nowhere"
    errors = errors_of(doc)
    assert FlowError("f.yaml", node_id, where, "unknown next node 'nowhere'") in errors


def test_unknown_candidate_in_a_decision_point() -> None:
    """Each candidate of a decision point is checked, not just the default edge."""
    doc = minimal_doc()
    node(doc, "q")["buttons"][0]["next"] = ["form", "e_ok", "nowhere"]
    error = only_error(doc)
    assert str(error) == "f.yaml: q.buttons.a.next: unknown next node 'nowhere'"


def test_unknown_start_node() -> None:
    """A start that names no node is reported on the flow's `start`."""
    doc = minimal_doc()
    doc["start"] = "intro"
    errors = errors_of(doc)
    assert FlowError("f.yaml", "", "start", "unknown start node 'intro'") in errors
    assert "f.yaml: (flow).start: unknown start node 'intro'" in {str(e) for e in errors}


def test_unreachable_node_is_reported() -> None:
    """A node no path from the start reaches is reported by id."""
    doc = minimal_doc()
    doc["nodes"].append({"id": "orphan", "kind": "end", "text": "Never shown"})
    error = only_error(doc)
    assert (error.node, error.field, error.message) == (
        "orphan",
        "",
        "unreachable from the start node",
    )


def test_node_that_cannot_reach_an_end_is_reported() -> None:
    """A reachable question that only loops to itself is a dead end for the visitor."""
    doc = minimal_doc()
    node(doc, "q")["buttons"][1]["next"] = ["e_no", "trap"]
    doc["nodes"].append(
        {
            "id": "trap",
            "kind": "question",
            "text": "Again?",
            "buttons": [{"id": "again", "label": "Again", "next": "trap"}],
        }
    )
    error = only_error(doc)
    assert (error.node, error.message) == ("trap", "no end node is reachable from here")


def test_duplicate_node_ids() -> None:
    """Two nodes with the same id are reported once, on that id."""
    doc = minimal_doc()
    doc["nodes"].append({"id": "e_no", "kind": "end", "text": "Bye again"})
    error = only_error(doc)
    assert (error.node, error.field, error.message) == ("e_no", "id", "duplicate node id 'e_no'")


def test_duplicate_button_ids() -> None:
    """Two buttons with the same id on one node are reported on that button id."""
    doc = minimal_doc()
    node(doc, "q")["buttons"][1]["id"] = "a"
    error = only_error(doc)
    assert (error.node, error.field, error.message) == ("q", "buttons.a", "duplicate button id 'a'")


def test_same_button_id_on_different_nodes_is_fine() -> None:
    """Button ids need only be unique within their node."""
    doc = minimal_doc()
    node(doc, "welcome").update(kind="question", buttons=[{"id": "a", "label": "Go", "next": "q"}])
    del node(doc, "welcome")["next"]
    valid_flow(dump(doc))


def test_duplicate_candidates() -> None:
    """A decision point listing the same candidate twice is refused."""
    doc = minimal_doc()
    node(doc, "q")["buttons"][0]["next"] = ["form", "e_ok", "form"]
    error = only_error(doc)
    assert str(error) == "f.yaml: q.buttons.a.next: candidate 'form' is listed twice"


def test_duplicate_lead_field_names() -> None:
    """Two form fields with the same name are reported on that field."""
    doc = minimal_doc()
    node(doc, "form")["fields"][2]["name"] = "email"
    error = only_error(doc)
    assert (error.node, error.field, error.message) == (
        "form",
        "fields.email",
        "duplicate field 'email'",
    )


@pytest.mark.parametrize(("node_id", "text"), [("welcome", ""), ("e_ok", "   \n\t")])
def test_empty_text(node_id: str, text: str) -> None:
    """Empty or whitespace-only node text is refused on `<node>.text`."""
    doc = minimal_doc()
    node(doc, node_id)["text"] = text
    assert only_error(doc) == FlowError("f.yaml", node_id, "text", "text is empty")


@pytest.mark.parametrize(("length", "ok"), [(MAX_TEXT_CHARS, True), (MAX_TEXT_CHARS + 1, False)])
def test_text_length_limit(length: int, ok: bool) -> None:
    """Text of exactly MAX_TEXT_CHARS passes; one more character is refused."""
    doc = minimal_doc()
    node(doc, "q")["text"] = "x" * length
    errors = errors_of(doc)
    expected = FlowError("f.yaml", "q", "text", f"text is longer than {MAX_TEXT_CHARS} characters")
    assert errors == ([] if ok else [expected])


@pytest.mark.parametrize("label", ["", "  "])
def test_empty_button_label(label: str) -> None:
    """A button with an empty or blank label is refused on `buttons.<id>.label`."""
    doc = minimal_doc()
    node(doc, "q")["buttons"][1]["label"] = label
    assert only_error(doc) == FlowError("f.yaml", "q", "buttons.b.label", "label is empty")


@pytest.mark.parametrize(("length", "ok"), [(MAX_LABEL_CHARS, True), (MAX_LABEL_CHARS + 1, False)])
def test_button_label_length_limit(length: int, ok: bool) -> None:
    """A 40-character label fits a button; 41 characters is refused with both numbers."""
    assert MAX_LABEL_CHARS == 40
    doc = minimal_doc()
    node(doc, "q")["buttons"][0]["label"] = "é" * length
    errors = errors_of(doc)
    expected = FlowError(
        "f.yaml",
        "q",
        "buttons.a.label",
        f"label is {length} characters, at most {MAX_LABEL_CHARS} fit a button",
    )
    assert errors == ([] if ok else [expected])


def test_over_long_lead_field_label() -> None:
    """A form-field label longer than MAX_TEXT_CHARS is refused on that field."""
    doc = minimal_doc()
    node(doc, "form")["fields"][0]["label"] = "x" * (MAX_TEXT_CHARS + 1)
    error = only_error(doc)
    assert (error.node, error.field) == ("form", "fields.name.label")


@pytest.mark.parametrize(
    ("kinds", "ok"),
    [
        (("text", "consent"), False),
        (("email",), True),
        (("phone",), True),
    ],
)
def test_lead_form_needs_email_or_phone(kinds: tuple[str, ...], ok: bool) -> None:
    """A lead form with neither an email nor a phone field cannot reach the lead."""
    doc = minimal_doc()
    node(doc, "form")["fields"] = [{"name": f"f{i}", "type": kind} for i, kind in enumerate(kinds)]
    errors = errors_of(doc)
    expected = FlowError(
        "f.yaml", "form", "fields", "a lead form needs an email or a phone field to reach the lead"
    )
    assert errors == ([] if ok else [expected])


def test_message_only_cycle() -> None:
    """Messages that auto-advance into each other forever are reported on each one's `next`."""
    doc = minimal_doc()
    node(doc, "q")["buttons"][1]["next"] = ["e_no", "m1"]
    doc["nodes"] += [
        {"id": "m1", "kind": "message", "text": "One", "next": "m2"},
        {"id": "m2", "kind": "message", "text": "Two", "next": "m1"},
    ]
    errors = errors_of(doc)
    cycle = {e.node for e in errors if e.message == "message nodes form a cycle that never waits"}
    assert cycle == {"m1", "m2"}
    assert {e.field for e in errors if e.node in cycle and "cycle" in e.message} == {"next"}
    assert {("m1", ""), ("m2", "")} <= located(errors)  # and neither can reach an end


def test_all_semantic_errors_are_reported_at_once() -> None:
    """One pass lists every semantic problem, so an author can fix them all together."""
    text = """\
id: broken
version: 1
start: welcome
nodes:
  - {id: welcome, kind: message, text: "  ", next: q}
  - id: q
    kind: question
    text: Pick one
    buttons:
      - {id: a, label: "", next: [e, e]}
      - {id: a, label: This label is far too long to fit on a button, next: nowhere}
  - {id: form, kind: lead_form, text: Hi, next: e, fields: [{name: n, type: text}]}
  - {id: e, kind: end, text: Bye}
  - {id: e, kind: end, text: Bye again}
"""
    flow, errors = validate_text(text, "broken.yaml")
    assert flow is None
    assert {(e.node, e.field, e.message) for e in errors} == {
        ("e", "id", "duplicate node id 'e'"),
        ("welcome", "text", "text is empty"),
        ("q", "buttons.a", "duplicate button id 'a'"),
        ("q", "buttons.a.label", "label is empty"),
        ("q", "buttons.a.next", "candidate 'e' is listed twice"),
        ("q", "buttons.a.label", "label is 45 characters, at most 40 fit a button"),
        ("q", "buttons.a.next", "unknown next node 'nowhere'"),
        ("form", "fields", "a lead form needs an email or a phone field to reach the lead"),
        ("form", "", "unreachable from the start node"),
    }
    assert all(e.file == "broken.yaml" for e in errors)


# --- error format ------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            FlowError("f.yaml", "q", "buttons.a.label", "label is empty"),
            "f.yaml: q.buttons.a.label: label is empty",
        ),
        (FlowError("f.yaml", "orphan", "", "unreachable"), "f.yaml: orphan: unreachable"),
        (FlowError("f.yaml", "", "start", "unknown"), "f.yaml: (flow).start: unknown"),
        (FlowError("dir/f.json", "", "", "bad"), "dir/f.json: (flow): bad"),
    ],
)
def test_error_string_format(error: FlowError, expected: str) -> None:
    """Errors print as `file: node.field: message`, `(flow)` standing in for no node."""
    assert str(error) == expected


def test_invalid_flow_carries_every_error() -> None:
    """InvalidFlow keeps all errors and prints one per line."""
    errors = [
        FlowError("f.yaml", "q", "text", "text is empty"),
        FlowError("f.yaml", "", "start", "unknown start node 'x'"),
    ]
    exc = InvalidFlow(errors)
    assert exc.errors == tuple(errors)
    assert str(exc) == "f.yaml: q.text: text is empty\nf.yaml: (flow).start: unknown start node 'x'"


def test_errors_name_the_file_given() -> None:
    """Every error carries the filename passed in, for multi-file validation output."""
    doc = minimal_doc()
    doc["start"] = "nope"
    errors = errors_of(doc, "flows/mini.json")
    assert errors
    assert all(str(e).startswith("flows/mini.json: ") for e in errors)


# --- flow types --------------------------------------------------------------


@pytest.mark.parametrize(
    ("targets", "decision"), [(("a",), False), (("a", "b"), True), (("a", "b", "c"), True)]
)
def test_button_is_decision_point(targets: tuple[str, ...], decision: bool) -> None:
    """Only a button with two or more candidates is a decision point."""
    assert Button(id="x", label="X", next=targets).is_decision_point is decision


def test_next_as_string_or_list_parses_to_ordered_tuple() -> None:
    """`next: id` and `next: [id]` both become a 1-tuple; list order (default first) is kept."""
    doc = minimal_doc()
    node(doc, "q")["buttons"][1]["next"] = ["e_no"]
    node(doc, "q")["buttons"][0]["next"] = ["e_ok", "form"]
    flow = valid_flow(dump(doc))
    a, b = flow.node("q").buttons
    assert b.next == ("e_no",)
    assert not b.is_decision_point
    assert a.next == ("e_ok", "form")
    assert a.next[0] == "e_ok"  # the default edge


def test_node_successors() -> None:
    """successors() follows `next`, or every button candidate in authoring order."""
    flow = minimal_flow()
    assert flow.node("welcome").successors() == ("q",)
    assert flow.node("q").successors() == ("form", "e_ok", "e_no")
    assert flow.node("form").successors() == ("e_ok",)
    assert flow.node("e_ok").successors() == ()
    assert Node(id="x", kind=NodeKind.END, text="Bye").successors() == ()


def test_node_button_lookup() -> None:
    """Node.button finds a button by id and returns None for an unknown id."""
    q = minimal_flow().node("q")
    button = q.button("b")
    assert button is not None
    assert button.label == "No"
    assert q.button("zzz") is None


def test_flow_key_and_decision_points() -> None:
    """Flow.key is `id@version`; decision_points lists (node, button) pairs with 2+ candidates."""
    flow = minimal_flow()
    assert flow.key == "mini@3"
    assert flow.decision_points() == [("q", "a")]


# --- shipped examples --------------------------------------------------------


@pytest.mark.parametrize("name", EXAMPLE_FLOWS)
def test_example_decision_points_offer_two_or_three_candidates(name: str) -> None:
    """Example decision points stay small: 2-3 distinct candidates each."""
    flow = example(name)
    for node_id, button_id in flow.decision_points():
        button = flow.node(node_id).button(button_id)
        assert button is not None
        assert 2 <= len(set(button.next)) == len(button.next) <= 3


# --- regressions found in review ---------------------------------------------


def test_node_without_kind_gives_one_error_not_every_kinds_rules() -> None:
    """A node missing `kind` reports just that, not the required keys of every kind."""
    doc = minimal_doc()
    del node(doc, "q")["kind"]
    errors = errors_of(doc)
    assert [(e.node, e.field) for e in errors] == [("q", "kind")]


def test_node_shadowed_by_a_duplicate_id_is_still_checked() -> None:
    """With two nodes of one id, the first one's own errors are reported too."""
    doc = minimal_doc()
    doc["nodes"].insert(0, {"id": "e_no", "kind": "message", "text": "hi", "next": "nowhere"})
    messages = [str(e) for e in errors_of(doc)]
    assert any("duplicate node id 'e_no'" in m for m in messages)
    assert any("unknown next node 'nowhere'" in m for m in messages)


def test_only_nodes_on_a_message_cycle_are_reported() -> None:
    """A message leading into a cycle of messages is not itself called part of the cycle."""
    doc = minimal_doc()
    node(doc, "welcome")["next"] = "m1"
    doc["nodes"] += [
        {"id": "m1", "kind": "message", "text": "a", "next": "m2"},
        {"id": "m2", "kind": "message", "text": "b", "next": "m1"},
    ]
    cycle = {e.node for e in errors_of(doc) if "cycle" in e.message}
    assert cycle == {"m1", "m2"}


def test_empty_candidate_list_is_explained() -> None:
    """`next: []` says the list is empty rather than 'not valid under any schema'."""
    doc = minimal_doc()
    node(doc, "q")["buttons"][0]["next"] = []
    error = only_error(doc)
    assert (error.node, error.field) == ("q", "buttons[0].next")
    assert "any of the given schemas" not in error.message


def test_empty_field_label_is_refused() -> None:
    """A lead form field with an empty label would render as an unlabelled input."""
    doc = minimal_doc()
    node(doc, "form")["fields"][0]["label"] = " "
    error = only_error(doc)
    assert (error.node, error.field, error.message) == (
        "form",
        "fields.name.label",
        "label is empty",
    )


def test_empty_node_id_is_named_by_position() -> None:
    """A node with an empty id is located as nodes[i], not as a flow-level error."""
    doc = minimal_doc()
    doc["nodes"][4]["id"] = ""
    assert any(e.node == "nodes[4]" for e in errors_of(doc))


# --- hostile documents (issue 14): every refusal is one FlowError, never a crash ----


def refusal(text: str, filename: str = "f.yaml") -> FlowError:
    flow, errors = validate_text(text, filename)
    assert flow is None
    assert len(errors) == 1, [str(e) for e in errors]
    assert str(errors[0]).startswith(f"{filename}: (flow)")
    return errors[0]


def alias_bomb(levels: int = 9) -> str:
    """A billion-laughs document: each level is nine aliases of the one before."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


def test_an_alias_expansion_bomb_is_refused_before_it_expands() -> None:
    """Regression: 9 levels of 9 aliases (387 million strings once expanded) grew
    `flows validate` to 3 GB and a MemoryError; anchors are refused at the first one."""
    error = refusal(alias_bomb())
    assert (
        error.message == "YAML anchors and aliases are not supported in flows at line 1, column 5"
    )


@pytest.mark.parametrize(
    "text",
    ["a: &x 1\nb: 2\n", "a: 1\nb: *x\n", "base: &b {id: x}\nnode:\n  <<: *b\n", "a: &x [1]\n"],
)
def test_anchors_aliases_and_merge_keys_are_refused(text: str) -> None:
    assert "not supported in flows" in refusal(text).message


def test_a_merge_key_without_an_alias_is_refused_too() -> None:
    assert refusal("id: x\n<<: {version: 1}\n").message.startswith("YAML merge keys (<<)")


@pytest.mark.parametrize("filename", ["f.yaml", "f.json"])
def test_deep_nesting_is_refused_without_a_recursion_error(filename: str) -> None:
    """Regression: 20,000 nested `[` died with a RecursionError traceback."""
    depth = 20_000 if filename.endswith(".yaml") else 1_000  # orjson refuses past 1024 itself
    error = refusal('{"id": ' + "[" * depth + "]" * depth + "}", filename)
    assert f"nested more than {MAX_FLOW_DEPTH} levels deep" in error.message


@pytest.mark.parametrize("filename", ["f.yaml", "f.json"])
def test_nesting_up_to_the_limit_parses(filename: str) -> None:
    def nested(depth: int) -> str:  # the top-level object is level 1
        return '{"id": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"

    assert parse_document(nested(MAX_FLOW_DEPTH), filename)[1] == []
    assert parse_document(nested(MAX_FLOW_DEPTH + 1), filename)[1] != []


@pytest.mark.parametrize(
    ("text", "filename", "key"),
    [
        (MINIMAL_YAML.replace("version: 3\n", "version: 3\nversion: 4\n"), "f.yaml", "version"),
        (MINIMAL_YAML.replace("    next: q\n", "    next: q\n    next: e_ok\n"), "f.yaml", "next"),
        ('{"id": "a", "version": 1, "id": "b"}', "f.json", "id"),
        ('{"nodes": [{"kind": "end", "kind": "message"}]}', "f.json", "kind"),
    ],
)
def test_duplicate_keys_are_refused(text: str, filename: str, key: str) -> None:
    """Regression: a second `version:` silently replaced the first (and was served)."""
    assert refusal(text, filename).message.startswith(f"duplicate key {key!r}")


def test_duplicate_key_error_says_where() -> None:
    text = MINIMAL_YAML.replace("version: 3\n", "version: 3\nversion: 4\n")
    assert refusal(text).message == "duplicate key 'version' at line 3, column 1"


def test_a_document_over_the_size_limit_is_refused_without_parsing() -> None:
    """Regression: a 5 MB flow did not finish validating within 60 s."""
    text = "id: x\n" + "#" * (MAX_FLOW_BYTES - 5)
    assert len(text.encode()) == MAX_FLOW_BYTES + 1
    error = refusal(text)
    limit = MAX_FLOW_BYTES
    assert (
        error.message == f"the document is {limit + 1} bytes; a flow may have at most {limit} bytes"
    )


def test_the_size_limit_counts_utf8_bytes_not_characters() -> None:
    text = "id: x\n# " + "€" * (MAX_FLOW_BYTES // 3)  # fewer characters than bytes
    assert len(text) < MAX_FLOW_BYTES < len(text.encode())
    assert "bytes; a flow may have at most" in refusal(text).message
    assert validate_bytes(text.encode(), "f.yaml")[1][0].message == refusal(text).message


def test_validate_bytes_refuses_what_is_not_utf8() -> None:
    flow, errors = validate_bytes(b"id: \xff\n", "f.yaml")
    assert flow is None and len(errors) == 1
    assert errors[0].message.startswith("cannot read file: not UTF-8")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: 1" + "0" * 5000, "number longer than 32 characters at line 1, column 10"),
        ("version: 1" + ":1" * 5000, "number longer than 32 characters at line 1, column 10"),
        ("version: !!float abc", "cannot read this value"),
        ("version: !!timestamp 2024-13-45", "YAML tag 'tag:yaml.org,2002:timestamp' is not"),
        ("version: !!timestamp", "YAML tag 'tag:yaml.org,2002:timestamp' is not supported"),
        ("id: !!binary AAAA", "YAML tag 'tag:yaml.org,2002:binary' is not supported"),
        ("id: !!set {a, b}", "YAML tag 'tag:yaml.org,2002:set' is not supported"),
        ("id: !local x", "YAML tag '!local' is not supported in flows"),
        ("1: x", "keys must be strings, not int at line 1, column 1"),
        ("? [a, b]\n: x", "keys must be strings, not list"),
    ],
)
def test_values_python_cannot_hold_safely_are_refused(text: str, message: str) -> None:
    """Regression: a 5000-digit number raised ValueError (a traceback), not a FlowError."""
    assert refusal(text).message.startswith(message)


@pytest.mark.parametrize(
    ("text", "filename"), [('id: "\\ud800"', "f.yaml"), ('{"id": "\\ud800"}', "f.json")]
)
def test_an_unpaired_surrogate_is_refused(text: str, filename: str) -> None:
    """Such a string cannot be encoded as UTF-8, so no event or frame could carry it."""
    refusal(text, filename)


def test_huge_numbers_in_json_are_refused() -> None:
    assert refusal('{"version": 1' + "0" * 40 + "}", "f.json").message.startswith(
        "number longer than"
    )


def test_a_version_beyond_what_events_can_carry_is_refused() -> None:
    doc = minimal_doc()
    doc["version"] = 2**31
    error = only_error(doc)
    assert (error.node, error.field) == ("", "version")


def test_dates_stay_text() -> None:
    """Like yes/no, an unquoted date is text in a flow (YAML 1.1 would make it a date)."""
    flow = valid_flow(MINIMAL_YAML.replace("text: Thanks!", "text: 2025-01-31"))
    assert flow.node("e_ok").text == "2025-01-31"


def test_long_structural_messages_are_clipped() -> None:
    doc = minimal_doc()
    doc["version"] = ["x" * 10_000]
    error = only_error(doc)
    assert len(error.message) <= 300


class CountingNodes(dict[str, Node]):
    """A flow's node mapping that counts lookups, to show a check is linear."""

    lookups = 0

    def get(self, key: str, default: Any = None) -> Any:
        self.lookups += 1
        return super().get(key, default)

    def __getitem__(self, key: str) -> Node:
        self.lookups += 1
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.lookups += 1
        return super().__contains__(key)
