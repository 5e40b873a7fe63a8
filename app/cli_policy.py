"""``leadflow policy``: evaluate candidate policies offline, fetch snapshots,
recommend and promote edges (``promote``, ``recommend``: :mod:`app.cli_policy_control`).

``leadflow policy evaluate --candidate SNAPSHOT.json|uniform|default`` estimates
the lead rate a candidate policy would have had on the logged conversations
(IPS, self-normalised IPS, doubly robust; intervals, effective sample size),
from the embedded SQLite log (``--data-dir``) or the Kafka ``events`` topic
(``--kafka``), beside the logging policy's own rate. See docs/analytics.md.

``leadflow policy snapshot --flow ID --out FILE`` writes the flow's current
snapshot (or ``--version V``) as a file ``evaluate`` accepts: from the
``policy_snapshots`` archive in events.db (embedded) or the
``policy-snapshots`` topics (``--kafka``).

Exit status of ``evaluate``: 0 with an estimate, 1 when there is none to show
(no logged decisions in the range, or an effective sample size below
``--min-ess``: the reason is printed), 2 when the input cannot be used (no log, a record this
version cannot decode, a bad snapshot file, a logged propensity of 0).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from app import cli_policy_archive, cli_policy_control, cli_policy_evaluate, cli_policy_snapshot
from app.cli_policy_errors import UsageError


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from projector.export.source import add_source_arguments

    policy = sub.add_parser(
        "policy",
        help="evaluate candidate policies offline; fetch snapshots; recommend, promote",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = policy.add_subparsers(dest="policy_command", required=True)
    evaluate = commands.add_parser(
        "evaluate",
        help="off-policy estimates of a candidate policy's lead rate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument(
        "--candidate",
        required=True,
        help="a snapshot file (leadflow policy snapshot), 'uniform' or 'default'",
    )
    evaluate.add_argument(
        "--edge",
        action="append",
        default=[],
        metavar="NODE:BUTTON=EDGE",
        help="with --candidate default: take EDGE at that decision point (repeatable)",
    )
    add_source_arguments(evaluate)
    evaluate.add_argument("--level", type=float, default=0.95, help="interval level (0.95)")
    evaluate.add_argument(
        "--folds", type=int, default=5, help="cross-fitting folds of the DR model (5)"
    )
    evaluate.add_argument(
        "--horizon-seconds",
        type=float,
        default=None,
        help="a conversation without a lead this long after its start is a failure"
        " (LEADFLOW_POLICY_HORIZON_SECONDS, default 86400)",
    )
    evaluate.add_argument(
        "--min-ess",
        type=float,
        default=50.0,
        help="show no estimate below this effective sample size, say why and exit 1 (50)",
    )
    evaluate.add_argument(
        "--dr-clip",
        type=float,
        default=100.0,
        help="DR clips every cumulative importance weight at this value (100; inf: none)",
    )
    evaluate.add_argument("--json", action="store_true", help="print JSON")

    snapshot = commands.add_parser("snapshot", help="write a flow's policy snapshot to a file")
    snapshot.add_argument("--flow", required=True, dest="flow_id")
    snapshot.add_argument("--out", required=True, type=Path)
    snapshot.add_argument("--version", help="this snapshot version (default: the newest)")
    snapshot.add_argument(
        "--data-dir",
        default=os.environ.get("LEADFLOW_DATA_DIR", ".leadflow"),
        help="embedded mode: the data directory holding events.db (default: %(default)s)",
    )
    snapshot.add_argument(
        "--kafka", action="store_true", help="read the Kafka snapshot topics instead"
    )
    cli_policy_control.add_commands(commands)  # promote, recommend
    cli_policy_archive.add_commands(commands)  # archive stats, archive prune


def main(args: argparse.Namespace) -> int:
    try:
        if args.policy_command == "evaluate":
            return cli_policy_evaluate.run_evaluate(args)
        if args.policy_command == "snapshot":
            return cli_policy_snapshot.run_snapshot(args)
        status = cli_policy_archive.main(args)
        if status is not None:
            return status
        status = cli_policy_control.main(args)
        if status is not None:
            return status
    except (UsageError, cli_policy_archive.ArchiveUsageError) as exc:
        print(f"leadflow policy {args.policy_command}: {exc}", file=sys.stderr)
        return 2
    return 2
