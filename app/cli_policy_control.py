"""``leadflow policy promote`` and ``leadflow policy recommend``.

``promote FLOW NODE BUTTON EDGE`` appends a guardrail change (who, when, what)
to the control log: events.db's ``policy_control`` table in ``--data-dir``, or
the ``{prefix}policy-control`` topic with ``--kafka``. The running policy (the
server of ``leadflow serve``, or ``leadflow run policy``) follows that log and
republishes the flow's snapshot with the promotion within a second; one that
is not running folds it at its next start. ``--clear`` ends a promotion. The
point and the edge are checked against the flow files (``--flows``,
``LEADFLOW_FLOWS_DIR``, the examples by default).

``recommend FLOW`` prints, per decision point of the flow's newest snapshot,
each edge's probability of being best and expected loss over the traffic the
point got, the stopping rule's verdict and the lift over the holdout (the log
is folded into the reward ledger, as the policy does; :mod:`policy.optimisation`).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sqlite3
import sys
import time
from pathlib import Path

from app.cli_errors import CliError


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    promote = commands.add_parser(
        "promote",
        help="promote an edge at a decision point (stop exploring there)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    promote.add_argument("flow_id", metavar="FLOW")
    promote.add_argument("node_id", metavar="NODE")
    promote.add_argument("button_id", metavar="BUTTON")
    promote.add_argument("edge", metavar="EDGE", nargs="?", help="the edge (not with --clear)")
    promote.add_argument("--clear", action="store_true", help="end the point's promotion")
    promote.add_argument("--by", help="who makes the change (default: cli:$USER)")
    promote.add_argument("--reason", default="", help="why, for the audit trail")
    promote.add_argument(
        "--flows",
        default=os.environ.get("LEADFLOW_FLOWS_DIR"),
        help="the flow files (default: LEADFLOW_FLOWS_DIR, else the examples)",
    )
    _where(promote)

    recommend = commands.add_parser(
        "recommend",
        help="per decision point: P(best), expected loss, the stopping rule, the lift",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    recommend.add_argument("flow_id", metavar="FLOW")
    recommend.add_argument(
        "--p-best", type=float, default=0.95, help="promote at this P(best) or more (0.95)"
    )
    recommend.add_argument(
        "--max-loss",
        type=float,
        default=0.002,
        help="... and an expected loss at most this, in lead-rate units (0.002)",
    )
    recommend.add_argument("--json", action="store_true", help="print JSON")
    _where(recommend)


def _where(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("LEADFLOW_DATA_DIR", ".leadflow"),
        help="embedded mode: the data directory holding events.db (default: %(default)s)",
    )
    parser.add_argument(
        "--kafka", action="store_true", help="the Kafka topics instead (settings from the env)"
    )


# -- promote ----------------------------------------------------------------------------


def _check_point(args: argparse.Namespace) -> None:
    from services.catalog import EXAMPLE_FLOWS_DIR, FlowCatalog

    directory = Path(args.flows) if args.flows else EXAMPLE_FLOWS_DIR
    catalog = FlowCatalog.from_directory(directory)
    flow = catalog.latest(args.flow_id)
    if flow is None:
        raise CliError(f"no flow {args.flow_id!r} in {directory}")
    node = flow.nodes.get(args.node_id)
    button = node.button(args.button_id) if node is not None else None
    if button is None or len(button.next) < 2:
        raise CliError(
            f"{args.node_id}/{args.button_id} is not a decision point of {args.flow_id}"
            f" version {flow.version}"
        )
    if args.edge is not None and args.edge not in button.next:
        raise CliError(f"EDGE must be one of {', '.join(button.next)}")


def _promote(args: argparse.Namespace) -> int:
    from policy.control import GuardrailChange, PromotionChange, encode_change

    if args.clear == (args.edge is not None):
        raise CliError("give EDGE, or --clear to end the promotion")
    _check_point(args)
    change = GuardrailChange(
        flow_id=args.flow_id,
        at=time.time(),
        by=args.by or f"cli:{getpass.getuser()}",
        promotions=(PromotionChange(args.node_id, args.button_id, args.edge),),
        reason=args.reason,
    )
    body = encode_change(change)
    if args.kafka:
        position, where = asyncio.run(_append_kafka(change.flow_id, change.at, body))
    else:
        position, where = _append_sqlite(Path(args.data_dir), change.flow_id, change.at, body)
    what = f"promoted {args.edge}" if args.edge else "promotion ended"
    print(
        f"{args.flow_id} {args.node_id}/{args.button_id}: {what}"
        f" (change {position} of {where}; the running policy applies it within a second,"
        " a stopped one at its next start)"
    )
    return 0


def _append_sqlite(data_dir: Path, flow_id: str, at: float, body: bytes) -> tuple[int, str]:
    from services.embedded.sqlite_eventlog import SCHEMA, append_control_row

    path = data_dir / "events.db"
    if not path.exists():
        raise CliError(f"no event log at {path}: pass --data-dir (or --kafka)")
    conn = sqlite3.connect(path, timeout=30.0)
    try:
        conn.executescript(SCHEMA)  # an events.db of an earlier version lacks the table
        with conn:
            position = append_control_row(conn, flow_id, at, body)
    finally:
        conn.close()
    return position, f"{path} policy_control"


async def _append_kafka(flow_id: str, at: float, body: bytes) -> tuple[int, str]:
    from policy.control_kafka import ControlPublisher
    from services.distributed.settings import KafkaSettings
    from services.distributed.topics import control_topic, ensure_topics, policy_topic_specs

    settings = KafkaSettings.from_env()
    await ensure_topics(settings, policy_topic_specs(settings))
    publisher = ControlPublisher(settings)
    await publisher.start()
    try:
        position = await publisher.append_control(flow_id, at, body)
    finally:
        await publisher.stop()
    return position, control_topic(settings)


# -- recommend --------------------------------------------------------------------------


def _recommend(args: argparse.Namespace) -> int:
    import orjson

    from app.cli_policy_errors import UsageError
    from app.cli_policy_snapshot import kafka_snapshot, sqlite_snapshot
    from policy.holdout_ledger import HoldoutLedger
    from policy.optimisation import StoppingRule, recommend_flow, render
    from policy.reward_counts import FlowKey
    from policy.settings import PolicySettings
    from policy.snapshot import SnapshotError, decode_snapshot
    from projector.export.source import (
        KafkaOrigin,
        NoEventLog,
        Origin,
        Selection,
        SqliteOrigin,
        UnreadableLog,
        iter_events,
    )
    from services.distributed.settings import KafkaSettings

    try:
        rule = StoppingRule(args.p_best, args.max_loss)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    try:
        if args.kafka:
            body = asyncio.run(kafka_snapshot(KafkaSettings.from_env(), args.flow_id, None))
        else:
            body = sqlite_snapshot(Path(args.data_dir), args.flow_id, None)
        snapshot = decode_snapshot(body)
    except UsageError as exc:
        raise CliError(str(exc)) from None
    except SnapshotError as exc:
        raise CliError(f"the stored snapshot is not usable by this version: {exc}") from None
    settings = PolicySettings.from_env()
    holdout = snapshot.guardrails.holdout
    ledger = HoldoutLedger(
        settings.horizon_seconds, settings.idle_seconds, holdout_of=lambda flow_id: holdout
    )
    origin: Origin = (
        KafkaOrigin(KafkaSettings.from_env()) if args.kafka else SqliteOrigin(Path(args.data_dir))
    )

    async def fold() -> None:
        async for batch in iter_events(origin, Selection(flow_id=args.flow_id)):
            ledger.observe(batch)
        ledger.expire()

    try:
        asyncio.run(fold())
    except (NoEventLog, UnreadableLog) as exc:
        raise CliError(f"cannot read the event log: {exc}") from None
    flow = FlowKey(snapshot.flow_id, snapshot.flow_version)
    held, rest = ledger.split(flow)
    result = recommend_flow(snapshot, ledger.flows.get(flow), rule, held, rest)
    if args.json:
        sys.stdout.write(orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
    else:
        print(render(result))
    return 0


def main(args: argparse.Namespace) -> int | None:
    """The exit status of a command of this module; None for another command."""
    if args.policy_command == "promote":
        return _promote(args)
    if args.policy_command == "recommend":
        return _recommend(args)
    return None
