"""``leadflow report``: analysts' reports from the event log.

``leadflow report funnel --flow ID`` writes one self-contained HTML file (charts
embedded as PNG) with the flow version's funnel: drop-off per node along the
graph, conversion per edge, decision candidate, path and segment with 90%
credible intervals, and the time from start to lead. It reads the embedded
SQLite log (``--data-dir``) or the Kafka ``events`` topic (``--kafka``) without
disturbing either; flow texts come from the flow files (``--flows``).

Exit status: 0 when the file was written (also for an empty range), 2 when the
log cannot be read (none there, or a record this version cannot decode) or
``--flow`` (or ``--site``) names an id that neither the log nor the
configuration knows (the message lists the ones there are).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.catalog import FlowCatalog


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from projector.export.source import add_source_arguments

    report = sub.add_parser("report", help="write analysts' reports (funnel)")
    kinds = report.add_subparsers(dest="report_command", required=True)
    funnel = kinds.add_parser(
        "funnel",
        help="one flow's funnel as a self-contained HTML file",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_source_arguments(funnel, flow_required=True)
    funnel.add_argument(
        "--version",
        type=int,
        dest="flow_version",
        help="the flow version to report (default: the newest version in the range)",
    )
    funnel.add_argument(
        "--flows",
        default=os.environ.get("LEADFLOW_FLOWS_DIR"),
        help="flow files, for texts and the authored graph "
        "(LEADFLOW_FLOWS_DIR, default: the shipped examples)",
    )
    funnel.add_argument("--out", type=Path, help="output file (default: funnel-<flow>.html)")


def _catalog(flows_dir: str | None) -> tuple[FlowCatalog, str | None]:
    """The flow files (every version), or an empty catalog and a warning."""
    from schemas.flow_errors import InvalidFlow
    from services.catalog import EXAMPLE_FLOWS_DIR, FlowCatalog

    directory = Path(flows_dir) if flows_dir else EXAMPLE_FLOWS_DIR
    try:
        return FlowCatalog.from_directory(directory), None
    except (InvalidFlow, OSError) as exc:
        warning = f"flow files in {directory} not loaded ({exc}); the report shows node ids"
        return FlowCatalog(), warning


def _funnel(args: argparse.Namespace) -> int:
    from app.cli_replay import ProgressBar
    from projector.export.source import NoEventLog, UnreadableLog, origin_and_selection
    from projector.report.build import write_funnel_report

    if not args.flow_id:
        print("leadflow report funnel: --flow ID is required", file=sys.stderr)
        return 2
    from app.cli_errors import CliError
    from app.cli_ids import IdCheck

    # a mistyped --flow or --site: an error naming the ids there are, not an empty report
    ids = IdCheck(args.flow_id, args.site_id, flows_dir=args.flows)
    ids.before(None if args.kafka else Path(args.data_dir))
    origin, selection = origin_and_selection(args)
    where = "the Kafka events topic" if args.kafka else f"the SQLite log in {args.data_dir}"
    catalog, warning = _catalog(args.flows)
    if warning:
        print(f"leadflow report: {warning}", file=sys.stderr)
    out = args.out or Path(f"funnel-{args.flow_id}.html")
    progress = ProgressBar(label="report") if sys.stderr.isatty() else None
    try:
        written = asyncio.run(
            write_funnel_report(
                origin,
                selection,
                catalog.get,
                out,
                args.flow_version,
                where,
                progress,
            )
        )
    except (UnreadableLog, NoEventLog) as exc:
        print(f"leadflow report: cannot read {where}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"leadflow report: cannot write {out}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        ids.after(written.events)  # the Kafka topic: known only once it was read
    except CliError:
        out.unlink(missing_ok=True)  # the empty report this run wrote
        raise
    print(
        f"wrote {written.path}: {written.conversations:,} conversations, "
        f"{written.leads:,} leads ({written.seconds:.1f} s)"
    )
    return 0


def main(args: argparse.Namespace) -> int:
    if args.report_command == "funnel":
        return _funnel(args)
    return 2
