"""The export's Arrow schema, and tables built from :class:`Columns`."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from projector.export.columns import column_names

_STRINGS = pa.list_(pa.string())
TYPES: dict[str, Any] = {
    "event_id": pa.string(),
    "conversation_id": pa.string(),
    "seq": pa.int64(),
    "command_seq": pa.int64(),
    "type": pa.string(),
    "v": pa.int32(),
    "at": pa.timestamp("us", tz="UTC"),
    "flow_id": pa.string(),
    "flow_version": pa.int64(),
    "site_id": pa.string(),
    "node_id": pa.string(),
    "button_id": pa.string(),
    "kind": pa.string(),
    "candidates": _STRINGS,
    "chosen": pa.string(),
    "propensity": pa.float64(),
    "policy_version": pa.string(),
    "seed": pa.int64(),  # 63 bits: policy.uniform.decision_seed
    "features": _STRINGS,
    "fields_present": _STRINGS,
    "consent": pa.bool_(),
    "lead_captured": pa.bool_(),
    "from_node": pa.string(),
    "withdrawn_seq": pa.int64(),
    "idle_seconds": pa.float64(),  # VisitorNudged, ConversationAbandoned: the declared time
    "command_type": pa.string(),
    "reason": pa.string(),
    "detail": pa.string(),
    "consumed": pa.bool_(),
    "field_errors": pa.string(),  # JSON object: field -> message
    "unknown_fields": pa.int32(),
    "device": pa.string(),
    "referrer": pa.string(),
    "utm_source": pa.string(),
    "utm_medium": pa.string(),
    "utm_campaign": pa.string(),
    "locale": pa.string(),
    "time_zone": pa.string(),
    "lead": pa.string(),  # JSON object of the opened contact details
    "lead_erased": pa.bool_(),
}
_NOT_NULL = frozenset({"event_id", "conversation_id", "seq", "command_seq", "type", "v", "at"})


def schema(include_pii: bool) -> pa.Schema:
    return pa.schema(
        [
            pa.field(name, TYPES[name], nullable=name not in _NOT_NULL)
            for name in column_names(include_pii)
        ]
    )


def to_table(data: dict[str, list[Any]], include_pii: bool) -> pa.Table:
    target = schema(include_pii)
    arrays = [pa.array(data[f.name], type=f.type) for f in target]
    return pa.Table.from_arrays(arrays, schema=target)
