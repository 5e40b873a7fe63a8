"""What the lead-delivery integration tests share: a short flow that ends in a
lead, the sites file naming destinations, and a visitor that leaves a lead."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import yaml

from tests.support.visitor import Visitor

SECRET = "whsec_" + base64.b64encode(b"leadflow-delivery-tests-key-0123").decode()
FLOW_ID = "lead-quiz"
FLOW_YAML = """\
id: lead-quiz
version: 1
title: Lead quiz
start: size
nodes:
  - id: size
    kind: question
    text: How big is it?
    buttons:
      - {id: small, label: Small, next: contact}
      - {id: big, label: Big, next: contact}
  - id: contact
    kind: lead_form
    text: Where can we reach you?
    fields:
      - {name: name, type: text, label: Your name, required: true}
      - {name: email, type: email, label: Email, required: true}
      - {name: consent, type: consent, label: I agree to be contacted, required: true}
    next: thanks
  - id: thanks
    kind: end
    text: Thanks!
"""
# the receivers listen on 127.0.0.1: the SSRF guard lets tests through, nothing else
TEST_ENV = {
    "LEADFLOW_DELIVERY_ALLOW_HTTP": "true",
    "LEADFLOW_DELIVERY_ALLOW_NETWORKS": "127.0.0.1/32",
    "LEADFLOW_STARTS_PER_MINUTE": "1000",
    "HOOK_SECRETS": SECRET,
}


def api_key(site: str) -> str:
    return f"key-of-{site}-0123456789abcdef"


def webhook(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "webhook", "url": url, "secrets_env": "HOOK_SECRETS", **extra}


def write_config(
    directory: Path, deliveries: Mapping[str, Sequence[Mapping[str, Any]]]
) -> dict[str, str]:
    """The flows directory and sites file (one site per key of ``deliveries``,
    whose read-API key is :func:`api_key` of it); returns the environment
    naming them."""
    flows = directory / "flows"
    flows.mkdir(parents=True, exist_ok=True)
    (flows / f"{FLOW_ID}.yaml").write_text(FLOW_YAML)
    sites = {
        "sites": [
            {
                "id": site,
                "origins": ["http://localhost:*"],
                "api_key_sha256": hashlib.sha256(api_key(site).encode()).hexdigest(),
                "deliveries": list(dests),
            }
            for site, dests in deliveries.items()
        ]
    }
    sites_file = directory / "sites.yaml"
    sites_file.write_text(yaml.safe_dump(sites))
    return {
        **TEST_ENV,
        "LEADFLOW_FLOWS_DIR": str(flows),
        "LEADFLOW_SITES_FILE": str(sites_file),
    }


async def leave_lead(ws_url: str, site: str, n: int, answer: str = "small") -> str:
    """A visitor of ``site`` answers and leaves lead number ``n``; returns the
    conversation id."""
    visitor = await Visitor.connect(ws_url)
    try:
        frames = await visitor.start(FLOW_ID, site=site, utm_source="tests")
        assert frames[0]["type"] == "session", frames
        await visitor.press(answer)
        frames = await visitor.lead(
            {"name": f"Visitor {n}", "email": f"visitor{n}@example.com", "consent": "true"}
        )
        assert frames[-1]["type"] == "message", frames
        return visitor.conversation_id
    finally:
        await visitor.close()


def payloads(bodies: Mapping[str, list[bytes]]) -> dict[str, dict[str, Any]]:
    """webhook-id -> the payload (after checking every body under it is the same)."""
    out = {}
    for msg_id, seen in bodies.items():
        assert len(set(seen)) == 1, f"{msg_id} was delivered with different bodies"
        out[msg_id] = orjson.loads(seen[0])
    return out
