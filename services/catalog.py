"""The flows a deployment serves, by id and version."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from schemas.flow import Flow
from schemas.flow_errors import FlowError, InvalidFlow
from schemas.flow_validation import load_flow

FLOW_SUFFIXES = (".yaml", ".yml", ".json")
EXAMPLE_FLOWS_DIR = Path(__file__).resolve().parent.parent / "examples" / "flows"


class FlowCatalog:
    """Every loaded version stays available, so conversations that started on
    an older version of a flow finish on it.

    New conversations start on the flow's active version: the one activated for
    their site, else the one activated for every site, else the highest. The flow
    registry (services/registry) adds versions and activations while processes
    run; without it the highest version of each flow is active, as flow files
    were before the registry.

    Drafts (what a preview plays) are kept under their reserved negative numbers
    (:func:`schemas.flow_registry.draft_version`): :meth:`get` finds them, nothing
    else does (they are never the latest, never active)."""

    def __init__(self, flows: Iterable[Flow] = ()) -> None:
        self._flows: dict[tuple[str, int], Flow] = {}
        self._latest: dict[str, Flow] = {}
        self._active: dict[tuple[str, str], int] = {}  # (site or "", flow id) -> version
        for flow in flows:
            self.add(flow)

    def add(self, flow: Flow) -> None:
        self._flows[(flow.id, flow.version)] = flow
        latest = self._latest.get(flow.id)
        if latest is None or flow.version >= latest.version:
            self._latest[flow.id] = flow

    def add_draft(self, flow: Flow) -> None:
        """A draft, numbered below 1: playable by :meth:`get`, never started otherwise."""
        if flow.version >= 1:
            raise ValueError(f"a draft's number must be negative, not {flow.version}")
        self._flows[(flow.id, flow.version)] = flow

    def activate(self, flow_id: str, version: int, site_id: str = "") -> None:
        """Make a loaded ``version`` the active one for ``site_id`` ("": every site)."""
        if version >= 1 and (flow_id, version) in self._flows:
            self._active[(site_id, flow_id)] = version

    def latest(self, flow_id: str) -> Flow | None:
        """The version new conversations start on when their site has none of its own."""
        return self.for_site(flow_id, "")

    def highest(self, flow_id: str) -> Flow | None:
        return self._latest.get(flow_id)

    def for_site(self, flow_id: str, site_id: str) -> Flow | None:
        """The version a new conversation of ``site_id`` starts on."""
        for key in ((site_id, flow_id), ("", flow_id)):
            version = self._active.get(key)
            if version is not None:
                return self._flows[(flow_id, version)]
        return self._latest.get(flow_id)

    def get(self, flow_id: str, version: int) -> Flow | None:
        return self._flows.get((flow_id, version))

    def ids(self) -> list[str]:
        return sorted(self._latest)

    def versions(self) -> list[Flow]:
        """Every loaded version (drafts included)."""
        return list(self._flows.values())

    @classmethod
    def from_directory(cls, directory: Path) -> FlowCatalog:
        """Load every flow file of ``directory``; raises InvalidFlow listing all errors."""
        files = sorted(p for p in directory.iterdir() if p.suffix in FLOW_SUFFIXES)
        if not files:
            raise InvalidFlow([FlowError(str(directory), "", "", "no flow files found")])
        flows: list[Flow] = []
        errors: list[FlowError] = []
        for path in files:
            try:
                flows.append(load_flow(path))
            except InvalidFlow as exc:
                errors.extend(exc.errors)
        if errors:
            raise InvalidFlow(errors)
        return cls(flows)
