"""Flow validation on large and shipped inputs: the example flows (read from files),
the message-run and node-count limits at their size, linear time in the number of
nodes, and a file over the size limit read no further. The rules on small documents
are in tests/unit/test_flow_validation.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.flow import FieldType, Flow, Node, NodeKind
from schemas.flow_errors import InvalidFlow
from schemas.flow_graph import semantic_errors
from schemas.flow_limits import MAX_FLOW_NODES
from schemas.flow_validation import load_flow
from tests.unit.test_flow_validation import (
    EXAMPLE_FLOWS,
    CountingNodes,
    errors_of,
    example,
    minimal_doc,
    node,
    only_error,
)


@pytest.mark.parametrize("name", EXAMPLE_FLOWS)
def test_example_flow_is_valid_and_realistic(name: str) -> None:
    """Each example loads, has 15-40 nodes, >= 3 decision points, ends, and a proper lead form."""
    flow = example(name)
    assert flow.id == name.removesuffix(".yaml")
    assert flow.version == 1
    assert flow.title
    assert 15 <= len(flow.nodes) <= 40
    assert len(flow.decision_points()) >= 3
    kinds = {n.kind for n in flow.nodes.values()}
    assert kinds >= set(NodeKind) - {NodeKind.INPUT}  # free-text inputs are optional (v2)
    forms = [n for n in flow.nodes.values() if n.kind is NodeKind.LEAD_FORM]
    assert any(
        {(f.name, f.type, f.required) for f in form.fields}
        >= {
            ("name", FieldType.TEXT, True),
            ("email", FieldType.EMAIL, True),
            ("phone", FieldType.PHONE, False),
            ("consent", FieldType.CONSENT, True),
        }
        for form in forms
    )


def test_too_many_messages_in_a_row_are_refused_by_validation() -> None:
    """A run of messages longer than the runtime's auto-advance limit fails validation,
    instead of passing and then failing when a visitor enters it."""
    doc = minimal_doc()
    chain = [
        {"id": f"m{i}", "kind": "message", "text": "hi", "next": f"m{i + 1}"} for i in range(70)
    ]
    chain[-1]["next"] = "q"
    node(doc, "welcome")["next"] = "m0"
    doc["nodes"].extend(chain)
    errors = errors_of(doc)
    assert errors and all("message nodes in a row" in e.message for e in errors)


def test_semantic_validation_is_linear_in_the_number_of_nodes() -> None:
    """Regression: each message node walked its whole run of messages, so 12,000
    messages in a row took 24 s (quadratic). Now each node is looked up a bounded
    number of times, and the errors are the same as before."""
    n = 1000
    chain = [Node(f"m{i}", NodeKind.MESSAGE, "hi", next=f"m{i + 1}") for i in range(n)]
    chain.append(Node(f"m{n}", NodeKind.END, "bye"))
    nodes = CountingNodes((node.id, node) for node in chain)
    flow = Flow("chain", 1, "m0", nodes)
    errors = semantic_errors(flow, chain, "f.yaml")
    assert nodes.lookups <= 10 * len(chain)
    too_long = [e.node for e in errors if "message nodes in a row" in e.message]
    assert too_long == [f"m{i}" for i in range(n - 63)]  # the last 63 are short enough
    assert len(errors) == len(too_long)


def test_too_many_nodes_is_one_error() -> None:
    doc = minimal_doc()
    doc["nodes"] += [{} for _ in range(MAX_FLOW_NODES)]
    error = only_error(doc)
    assert (error.node, error.field) == ("", "nodes")
    assert error.message == f"{MAX_FLOW_NODES + 5} nodes; a flow may have at most {MAX_FLOW_NODES}"


def test_load_flow_reads_no_more_than_the_limit(tmp_path: Path) -> None:
    """A 5 GB (sparse) file in the flows directory is refused at once, not read."""
    path = tmp_path / "huge.yaml"
    with path.open("wb") as file:
        file.truncate(5 * 1024**3)
    with pytest.raises(InvalidFlow) as refused:
        load_flow(path)
    (error,) = refused.value.errors
    assert error.message.startswith(f"the document is {5 * 1024**3} bytes")
