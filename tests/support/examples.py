"""The shipped example flows, read and validated once per process.

Parsing the three YAML files and validating them against the JSON Schema costs
a few tens of milliseconds each time; simulated traffic, the verifier's tests
and the gateway's tests all play these flows, so they share one parse. Each
call gives a new :class:`FlowCatalog` (a test may add versions to its own);
the :class:`Flow` values themselves are frozen and shared.
"""

from __future__ import annotations

from functools import cache

from schemas.flow import Flow
from schemas.flow_validation import load_flow
from services.catalog import EXAMPLE_FLOWS_DIR, FLOW_SUFFIXES, FlowCatalog


@cache
def example_flows() -> tuple[Flow, ...]:
    """Every example flow file, in file-name order (as ``FlowCatalog.from_directory``)."""
    files = sorted(p for p in EXAMPLE_FLOWS_DIR.iterdir() if p.suffix in FLOW_SUFFIXES)
    return tuple(load_flow(path) for path in files)


def example_catalog() -> FlowCatalog:
    """A fresh catalog of the example flows (parsed once per process)."""
    return FlowCatalog(example_flows())
