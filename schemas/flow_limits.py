"""The limits every flow document is held to, wherever it is loaded.

One place for the numbers that docs/flows.md promises authors (its "Limits"
table, and the lengths of texts and labels): the parsers (:mod:`schemas.flow_yaml`,
:mod:`schemas.flow_json`) refuse a hostile document before building anything
large from it, and the graph checks (:mod:`schemas.flow_graph`) bound what a
visitor is shown.
"""

from __future__ import annotations

MAX_LABEL_CHARS = 40
MAX_TEXT_CHARS = 1000
MAX_FLOW_BYTES = 256 * 1024
"""The largest flow document accepted, in bytes of UTF-8 (the examples are about 11 KB)."""
MAX_FLOW_DEPTH = 16
"""How deeply collections may nest (a valid flow needs 6: flow, nodes, node,
buttons, button, next)."""
MAX_FLOW_NODES = 1000
"""The most nodes one flow may have."""
MAX_NUMBER_CHARS = 32
"""The longest number literal accepted (no flow needs more than a few digits)."""
