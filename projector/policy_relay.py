"""The policy relay's rules, pure part (the relay itself: :mod:`projector.policy_proxy`):
the policy service's URL, the one URL a summary is asked at, the key read from a
request, and which answers are passed on."""

from __future__ import annotations

from urllib.parse import quote

from projector.studio_config import parse_base_url

POLICY_URL_ENV = "LEADFLOW_POLICY_API_URL"


def policy_base_url(raw: str) -> str:
    """``LEADFLOW_POLICY_API_URL`` validated (http/https, no credentials, query or
    fragment); a ValueError says what is wrong."""
    return parse_base_url(raw, POLICY_URL_ENV)[0]


def summary_url(base_url: str, flow_id: str) -> str:
    """The policy service's URL of ``flow_id``'s summary (the id is one path segment)."""
    return f"{base_url}/flows/{quote(flow_id, safe='')}/summary"


def bearer(header: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, else None."""
    if header is None or not header.lower().startswith("bearer "):
        return None
    return header[7:].strip() or None


def relayed(status: int, content_type: str) -> bool:
    """The policy service's answer is passed on as it is (else a 502)."""
    return (status == 200 or 400 <= status < 500) and content_type == "application/json"
