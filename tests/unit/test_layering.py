"""The rooms of the house and which may import which (docs/architecture.md).

From the ground up: ``schemas`` (contracts), ``services`` (ports, the pure
conversation core, shared concepts, the SQLite/Kafka/Redis adapters), then
``gateway`` and ``policy`` side by side, then ``projector`` (read models and
analytics), and on top ``app`` (the CLI and one composition root per service),
which alone may import every other room. A module may import its own room and
the rooms below it, never one above or beside it. Imports inside functions
count too: a lazy import is still an arrow.

The scan reads import statements with a regular expression rather than
``ast`` (a tenth of the time, for a unit tier that runs in 2 s); a docstring
line that happens to read like an import can only make it stricter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS: tuple[tuple[str, ...], ...] = (
    ("schemas",),
    ("services",),
    ("gateway", "policy"),
    ("projector",),
    ("app",),
)
ROOMS = {room: level for level, rooms in enumerate(LAYERS) for room in rooms}
# The functional core: pure functions over frozen types, no I/O library at all.
CORE = (
    "schemas",
    "services.conversation",
    "services.policy_port",
    "services.log_follower",
    # lead delivery's pure core: what a delivery is, when to retry, the payload, the fold
    "services.delivery.model",
    "services.delivery.schedule",
    "services.delivery.signing",
    "services.delivery.config",
    "services.delivery.payload",
    "services.delivery.intake",
    "services.delivery.breaker",
    "services.delivery.render",
    "services.delivery.ssrf",
    "services.delivery.views",
)
IO_LIBRARIES = {"aiohttp", "aiokafka", "redis", "sqlite3", "socket", "smtplib", "aiosmtplib"}
IMPORT = re.compile(r"^[ \t]*(?:from[ \t]+([\w.]+)[ \t]+import\b|import[ \t]+([\w.]+))", re.M)


def imports(source: str) -> Iterator[str]:
    """The absolute modules a source imports (``from x import y``, ``import x``)."""
    for match in IMPORT.finditer(source):
        yield match.group(1) or match.group(2)


def upward_imports(sources: Mapping[str, str]) -> list[str]:
    """``module -> imported`` for every import of a room that is not below the
    importer's room (its own room is fine); ``sources`` maps module names to code."""
    bad = []
    for module, source in sources.items():
        room = module.split(".")[0]
        for imported in imports(source):
            other = imported.split(".")[0]
            if other == room or other not in ROOMS:
                continue
            if ROOMS[other] >= ROOMS[room]:
                bad.append(f"{module} -> {imported}")
    return bad


def impure_core_imports(sources: Mapping[str, str]) -> list[str]:
    bad = []
    for module, source in sources.items():
        if not module.startswith(CORE):
            continue
        for imported in imports(source):
            if imported.split(".")[0] in IO_LIBRARIES:
                bad.append(f"{module} -> {imported}")
    return bad


def package_sources(rooms: Iterable[str]) -> dict[str, str]:
    out = {}
    for room in rooms:
        for path in (ROOT / room).rglob("*.py"):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[module.removesuffix(".__init__")] = path.read_text()
    return out


@pytest.fixture(scope="module")
def sources() -> dict[str, str]:
    return package_sources(ROOMS)


def test_every_room_is_a_package_of_the_project(sources: dict[str, str]) -> None:
    """A renamed or new top-level package must be placed in a layer here."""
    assert set(ROOMS) == {m.split(".")[0] for m in sources}
    pyproject = (ROOT / "pyproject.toml").read_text()
    for room in ROOMS:
        assert f'"{room}*"' in pyproject, f"{room} is not installed (pyproject.toml)"


def test_no_room_imports_a_room_above_or_beside_it(sources: dict[str, str]) -> None:
    assert upward_imports(sources) == []


def test_the_functional_core_imports_no_io_library(sources: dict[str, str]) -> None:
    assert impure_core_imports(sources) == []


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("services.catalog", "from gateway.connection import GatewayContext\n"),
        ("schemas.flow", "import services.ports\n"),
        ("gateway.ws", "from policy.thompson import ThompsonPolicy\n"),  # beside
        ("policy.rewards", "    from gateway.sites import Site  # lazy\n"),
        ("projector.api", "from app.cli import main\n"),
        ("services.conversation.state", "def f():\n    from projector.views import LeadView\n"),
    ],
)
def test_an_upward_import_is_found(module: str, source: str) -> None:
    assert upward_imports({module: source}) == [f"{module} -> {next(imports(source))}"]


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("app.cli", "from projector.api import create_read_api\nimport policy.thompson\n"),
        ("projector.report.fold", "from services.traffic import traffic_source\n"),
        ("gateway.ws", "from gateway.connection import Connection\nimport aiohttp\n"),
        ("services.ports", "from schemas.events import Event\n"),
    ],
)
def test_a_downward_or_sideways_within_a_room_import_is_fine(module: str, source: str) -> None:
    assert upward_imports({module: source}) == []


def test_an_io_library_in_the_core_is_found() -> None:
    sources = {
        "services.conversation.decider": "import sqlite3\n",
        "schemas.codec": "from aiohttp import web\n",
        "services.embedded.sqlite_eventlog": "import sqlite3\n",  # an adapter: fine
    }
    assert impure_core_imports(sources) == [
        "services.conversation.decider -> sqlite3",
        "schemas.codec -> aiohttp",
    ]
