"""``leadflow policy evaluate``: a candidate policy's lead rate, estimated offline.

``leadflow policy evaluate --candidate SNAPSHOT.json|uniform|default`` estimates
the lead rate a candidate policy would have had on the logged conversations
(IPS, self-normalised IPS, doubly robust; intervals, effective sample size),
from the embedded SQLite log (``--data-dir``) or the Kafka ``events`` topic
(``--kafka``), beside the logging policy's own rate. See docs/analytics.md.

The candidate is a snapshot file (``leadflow policy snapshot``), ``uniform``, or
``default`` with the ``--edge NODE:BUTTON=EDGE`` choices (:func:`candidate_from`,
:func:`parse_edges`); the holdout share of each snapshot version the logged
decisions name comes from the snapshot archive (:func:`archived_holdouts`).

Exit status: 0 with an estimate, 1 when there is none to show (no logged
decisions in the range, or an effective sample size below ``--min-ess``: the
reason is printed), 2 when the input cannot be used (no log, a record this
version cannot decode, a bad snapshot file, a logged propensity of 0). The log's
failures are printed here; arguments and files it cannot use are raised as
:class:`~app.cli_policy_errors.UsageError`, which :func:`app.cli_policy.main`
prints as one line.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli_policy_errors import UsageError

if TYPE_CHECKING:
    from policy.evaluation.candidates import Candidate
    from policy.evaluation.trajectories import Fold
    from policy.snapshot import PolicySnapshot
    from projector.export.source import Origin, Selection


def parse_edges(specs: list[str]) -> dict[tuple[str, str], str]:
    edges: dict[tuple[str, str], str] = {}
    for spec in specs:
        point, eq, edge = spec.partition("=")
        node, colon, button = point.partition(":")
        if not (eq and colon and node and button and edge):
            raise UsageError(f"--edge {spec!r}: expected NODE:BUTTON=EDGE")
        edges[(node, button)] = edge
    return edges


def candidate_from(
    spec: str, edges: dict[tuple[str, str], str]
) -> tuple[Candidate, PolicySnapshot | None]:
    from policy.evaluation.candidates import FixedCandidate, SnapshotCandidate, UniformCandidate
    from policy.snapshot import SnapshotError, decode_snapshot

    if edges and spec != "default":
        raise UsageError("--edge goes with --candidate default")
    if spec == "uniform":
        return UniformCandidate(), None
    if spec == "default":
        name = "default" + "".join(f" {n}:{b}={e}" for (n, b), e in edges.items())
        return FixedCandidate(edges, name=name), None
    try:
        snapshot = decode_snapshot(Path(spec).read_bytes())
    except OSError as exc:
        raise UsageError(f"cannot read the candidate snapshot {spec}: {exc.strerror}") from exc
    except SnapshotError as exc:
        raise UsageError(f"{spec} is not a usable policy snapshot: {exc}") from exc
    return SnapshotCandidate(snapshot), snapshot


async def _fold(origin: Origin, selection: Selection, horizon: float) -> tuple[Fold, float]:
    """The trajectories whose reward window closed by the time the log was read."""
    from policy.evaluation.trajectories import TrajectoryFold
    from projector.export.source import iter_events

    folder = TrajectoryFold(horizon)
    async for batch in iter_events(origin, selection):
        folder.observe(batch)
    as_of = max(time.time(), folder.latest_event_at)
    return folder.result(as_of=as_of), as_of


def archived_holdouts(args: argparse.Namespace, versions: set[str]) -> dict[str, float]:
    """The holdout share of each snapshot version the decisions name, from the
    archive (events.db's ``policy_snapshots``, or the Kafka archive topics, as
    ``leadflow replay --verify`` reads them); versions it lacks are left out."""
    from policy.archive import expand
    from policy.snapshot import SnapshotError, decode_snapshot

    if not versions:
        return {}
    bodies: dict[str, bytes] = {}
    if args.kafka:
        from aiokafka.errors import KafkaError

        from app.verify.kafka_source import read_archive
        from services.distributed.settings import KafkaSettings

        settings = KafkaSettings.from_env()
        try:
            bodies = asyncio.run(read_archive(settings))
        except KafkaError as exc:
            raise UsageError(f"cannot read the snapshot archive: {exc}") from exc
    else:
        path = Path(args.data_dir) / "events.db"
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            for version in versions:
                row = conn.execute(
                    "SELECT body FROM policy_snapshots WHERE version = ?", (version,)
                ).fetchone()
                if row is not None:
                    bodies[version] = bytes(row[0])
        except sqlite3.OperationalError:
            pass  # no archive: every version is unknown, and the report says so
        finally:
            conn.close()
    out: dict[str, float] = {}
    for version in versions:
        body = bodies.get(version)
        if body is None:
            continue
        try:
            out[version] = decode_snapshot(expand(body)).guardrails.holdout
        except SnapshotError:
            continue
    return out


def run_evaluate(args: argparse.Namespace) -> int:
    import orjson

    from app.cli_ids import IdCheck
    from policy.evaluation.estimators import NoDecisions
    from policy.evaluation.propensities import snapshot_versions, with_holdouts
    from policy.evaluation.report import Scope, render, render_refusal, to_dict
    from policy.evaluation.summary import evaluate, refusal
    from policy.evaluation.trajectories import LogError
    from policy.settings import PolicySettings
    from projector.export.source import NoEventLog, UnreadableLog, origin_and_selection

    edges = parse_edges(args.edge)
    candidate, snapshot = candidate_from(args.candidate, edges)
    IdCheck(args.flow_id, args.site_id).before(None if args.kafka else Path(args.data_dir))
    origin, selection = origin_and_selection(args)
    if snapshot is not None:
        if selection.flow_id not in (None, snapshot.flow_id):
            raise UsageError(
                f"the snapshot is for flow {snapshot.flow_id!r}, not {selection.flow_id!r}"
            )
        selection = replace(selection, flow_id=snapshot.flow_id)
    horizon = args.horizon_seconds or PolicySettings.from_env().horizon_seconds
    where = "the Kafka events topic" if args.kafka else f"the SQLite log in {args.data_dir}"
    try:
        folded, as_of = asyncio.run(_fold(origin, selection, horizon))
    except (NoEventLog, UnreadableLog) as exc:
        print(f"leadflow policy evaluate: cannot read {where}: {exc}", file=sys.stderr)
        return 2
    except LogError as exc:
        print(f"leadflow policy evaluate: {exc}", file=sys.stderr)
        return 2
    flows = sorted({t.flow_id for t in folded.trajectories})
    if len(flows) > 1:
        raise UsageError(f"the range holds flows {', '.join(flows)}: choose one with --flow")
    covered = [t for t in folded.trajectories if candidate.covers(t)]
    try:
        holdouts = with_holdouts(covered, archived_holdouts(args, snapshot_versions(covered)))
    except LogError as exc:
        print(f"leadflow policy evaluate: {exc}", file=sys.stderr)
        return 2
    covered = list(holdouts.trajectories)
    scope = Scope(
        flow_id=flows[0] if flows else (selection.flow_id or "-"),
        flow_versions=tuple(sorted({t.flow_version for t in covered})),
        events=folded.events,
        open=folded.open,
        other_version=len(folded.trajectories) - len(covered),
        without_start=folded.without_start,
        late_decisions=folded.late_decisions,
        open_with_lead=folded.open_with_lead,
        horizon=horizon,
        as_of=as_of,
        held_out=holdouts.held_out,
        holdout_decisions=holdouts.decisions,
        unknown_versions=holdouts.unknown_versions,
        unknown_decisions=holdouts.unknown_decisions,
    )
    try:
        result = evaluate(covered, candidate, args.level, args.folds, clip=args.dr_clip)
    except NoDecisions:
        left = f" ({scope.other_version:,} of another flow version)" if scope.other_version else ""
        print(
            f"leadflow policy evaluate: no logged decisions in this range in {where}:"
            f" {len(covered):,} conversations{left}, {folded.events:,} events read",
            file=sys.stderr,
        )
        return 1
    reason = refusal(result, args.min_ess)
    if args.json:
        data = to_dict(result, scope)
        data["refused"] = reason
        if reason is not None:  # the logged rates only
            data["estimates"] = data["estimates"][:1]
            data["estimates_with_decisions"] = data["estimates_with_decisions"][:1]
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
    else:
        print(render(result, scope) if reason is None else render_refusal(result, scope, reason))
    return 0 if reason is None else 1
