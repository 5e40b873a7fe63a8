"""``leadflow flows publish | list | activate | diff``: the flow registry from the shell.

Against a local data directory (``--data-dir``, the default: the registry table of
its events.db, written in one SQLite transaction that also reads the registry, so
``--if-match`` holds against any concurrent writer; a running ``leadflow serve``
picks the change up within a second) or a remote server's admin API (``--url``,
with the key in ``LEADFLOW_API_KEY``, never on the command line, where ``ps`` shows
it). docs/admin-api.md has the rules: versions, idempotent publishing, activation.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson

from app.cli_errors import CliError
from schemas.flow import Flow
from schemas.flow_errors import InvalidFlow
from schemas.flow_registry import ALL_SITES, RegistryRecord, decode_record
from schemas.flow_validation import load_flow_document, validate_document
from services.registry.core import (
    Conflict,
    Published,
    Registry,
    UnknownVersion,
    fold,
    plan_activate,
    plan_publish,
)
from services.registry.diff import FlowDiff, diff

T = TypeVar("T")


def add_commands(flows_sub: Any) -> None:
    def common(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument("--data-dir", default=os.environ.get("LEADFLOW_DATA_DIR", ".leadflow"))
        cmd.add_argument(
            "--url", help="a server's base URL: use its admin API (key in LEADFLOW_API_KEY)"
        )

    publish = flows_sub.add_parser("publish", help="publish a flow file as a new version")
    publish.add_argument("file")
    publish.add_argument("--site", help="activate it for this site only (default: every site)")
    publish.add_argument("--no-activate", action="store_true", help="publish without activating")
    publish.add_argument("--if-match", type=int, help="refuse unless this is the latest version")
    common(publish)
    listing = flows_sub.add_parser("list", help="list published flows and their active versions")
    common(listing)
    activate = flows_sub.add_parser("activate", help="activate a version (rollback: an older one)")
    activate.add_argument("flow_id")
    activate.add_argument("version", type=int)
    activate.add_argument("--site", help="for this site only (default: every site)")
    common(activate)
    changes = flows_sub.add_parser("diff", help="what changed between two versions")
    changes.add_argument("flow_id")
    changes.add_argument("old", type=int)
    changes.add_argument("new", type=int)
    common(changes)


def main(args: argparse.Namespace) -> int:
    remote = Remote(args.url) if args.url else None
    if args.flows_command == "publish":
        return _publish(args, remote)
    if args.flows_command == "list":
        rows = remote.get("/flows")["flows"] if remote else _local_list(Path(args.data_dir))
        for row in rows:
            versions = ", ".join(str(v) for v in row["versions"])
            print(f"{row['flow_id']}: active v{row['active_version']} (versions {versions})")
        return 0
    if args.flows_command == "activate":
        return _activate(args, remote)
    return _diff(args, remote)


def _who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _publish(args: argparse.Namespace, remote: Remote | None) -> int:
    try:
        document, _ = load_flow_document(Path(args.file))
    except InvalidFlow as exc:
        raise CliError("; ".join(str(e) for e in exc.errors), 1) from None
    site = None if args.no_activate else (args.site or ALL_SITES)
    if remote is not None:
        query = f"?activate={'false' if args.no_activate else 'true'}"
        query += f"&site={args.site}" if args.site else ""
        headers = {} if args.if_match is None else {"If-Match": str(args.if_match)}
        body = remote.send("POST", f"/flows{query}", orjson.dumps(document), headers)
        version, created = body["version"], body["created"]
    else:

        def publish(registry: Registry) -> tuple[Published, list[RegistryRecord]]:
            plan = plan_publish(
                registry, document, by=_who(), at=_now(), activate_for=site, if_match=args.if_match
            )
            if isinstance(plan, Conflict):
                latest = plan.latest or 0
                raise CliError(f"--if-match {args.if_match}: the latest version is {latest}", 1)
            return plan, list(plan.records)

        plan = _local_change(Path(args.data_dir), publish)
        version, created = plan.version, plan.created
    where = "not activated" if site is None else f"active for {site or 'every site'}"
    what = "published" if created else "unchanged: this content already is"
    print(f"{document['id']}: {what} v{version}, {where}")
    return 0


def _activate(args: argparse.Namespace, remote: Remote | None) -> int:
    site = args.site or ALL_SITES
    if remote is not None:
        body: dict[str, Any] = {"version": args.version}
        if args.site:
            body["site"] = args.site
        remote.send("PUT", f"/flows/{args.flow_id}/active", orjson.dumps(body), {})
    else:

        def activate(registry: Registry) -> tuple[None, list[RegistryRecord]]:
            done = plan_activate(registry, args.flow_id, args.version, site, by=_who(), at=_now())
            if isinstance(done, UnknownVersion):
                raise CliError(f"{args.flow_id} has no version {args.version}", 1)
            return None, [done]

        _local_change(Path(args.data_dir), activate)
    print(f"{args.flow_id} v{args.version} is active for {site or 'every site'}")
    return 0


def _diff(args: argparse.Namespace, remote: Remote | None) -> int:
    if remote is not None:
        body = remote.get(f"/flows/{args.flow_id}/diff?from={args.old}&to={args.new}")
        print(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
        return 0
    registry = _local_registry(Path(args.data_dir))
    changes = diff(_flow(registry, args.flow_id, args.old), _flow(registry, args.flow_id, args.new))
    print(diff_text(args.flow_id, args.old, args.new, changes))
    return 0


def diff_text(flow_id: str, old: int, new: int, changes: FlowDiff) -> str:
    lines = [f"{flow_id} v{old} -> v{new}" + (": no changes" if changes.empty else "")]
    for label, nodes in (
        ("+ node", changes.nodes_added),
        ("- node", changes.nodes_removed),
        ("~ node", changes.nodes_changed),
    ):
        lines += [f"  {label} {n}" for n in nodes]
    for label, edges in (("+ edge", changes.edges_added), ("- edge", changes.edges_removed)):
        lines += [f"  {label} {a}{'.' + b if b else ''} -> {c}" for a, b, c in edges]
    if changes.start_changed:
        lines.append("  ~ start")
    if changes.title_changed:
        lines.append("  ~ title")
    return "\n".join(lines)


def _flow(registry: Registry, flow_id: str, version: int) -> Flow:
    record = registry.published.get((flow_id, version))
    if record is None:
        raise CliError(f"{flow_id} has no version {version}", 1)
    flow, errors = validate_document(dict(record.document), f"{flow_id} v{version}")
    if flow is None:
        raise CliError(f"{flow_id} v{version} does not validate here: {errors[0]}", 1)
    return flow


def _now() -> float:
    return time.time()


# -- the local registry (events.db) ----------------------------------------------------


def _connect(data_dir: Path) -> sqlite3.Connection:
    from services.embedded.sqlite_eventlog import SCHEMA

    path = data_dir / "events.db"
    if not path.exists():
        raise CliError(f"no event log at {path}: pass --data-dir (or --url)")
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    conn.executescript(SCHEMA)  # an events.db of an earlier version lacks the table
    return conn


def _records(conn: sqlite3.Connection) -> list[RegistryRecord]:
    rows = conn.execute("SELECT body FROM flow_registry ORDER BY position").fetchall()
    records: list[RegistryRecord] = []
    for (body,) in rows:
        try:
            records.append(decode_record(bytes(body)))
        except ValueError:
            continue  # a newer format: the server logs it; the rest still folds
    return records


def _local_registry(data_dir: Path) -> Registry:
    conn = _connect(data_dir)
    try:
        return fold(_records(conn))
    finally:
        conn.close()


def _local_list(data_dir: Path) -> list[dict[str, Any]]:
    registry = _local_registry(data_dir)
    return [
        {
            "flow_id": f,
            "versions": registry.versions(f),
            "active_version": registry.active_version(f),
        }
        for f in registry.flow_ids()
    ]


def _local_change(data_dir: Path, plan: Callable[[Registry], tuple[T, list[RegistryRecord]]]) -> T:
    """Fold the registry and append the records ``plan(registry)`` decides, in one
    write transaction (nobody appends between the read and the write)."""
    from services.embedded.sqlite_eventlog import append_registry_rows

    conn = _connect(data_dir)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            decided, records = plan(fold(_records(conn)))
            append_registry_rows(conn, records)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return decided
    finally:
        conn.close()


# -- a remote admin API ------------------------------------------------------------------


class Remote:
    def __init__(self, url: str) -> None:
        key = os.environ.get("LEADFLOW_API_KEY", "").strip()
        if not key:
            raise CliError("--url needs the API key in LEADFLOW_API_KEY (admin or site write key)")
        self.base = url.rstrip("/") + "/api/v1"
        self._auth = {"Authorization": f"Bearer {key}"}

    def get(self, path: str) -> Any:
        return self.send("GET", path, None, {})

    def send(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Any:
        sent = {**self._auth, **headers}
        if body is not None:
            sent["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base + path, body, sent, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return orjson.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise CliError(f"{self.base}{path}: {exc.code} {_api_message(exc.read())}", 1) from None
        except (urllib.error.URLError, OSError) as exc:
            raise CliError(f"cannot reach {self.base}: {exc}", 1) from None


def _api_message(body: bytes) -> str:
    try:
        error = orjson.loads(body)["error"]
        details = "; ".join(
            f"{e['node'] or e['file']}: {e['message']}" for e in error.get("errors", [])[:5]
        )
        return f"{error['message']}" + (f" ({details})" if details else "")
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return body[:200].decode("utf-8", "replace")
