"""One measured run, in a process of its own (so its peak RSS is its own):
``python -m bench.report.child {read|report} FLOW DATA_DIR OUT``; prints one
JSON line.

* ``read``: the baseline, reading and decoding the flow's events through
  :func:`projector.export.source.iter_events` (what any report must do);
* ``report``: :func:`projector.report.build.write_funnel_report`, the code
  behind ``leadflow report funnel``: read + fold, then charts + HTML.
"""

from __future__ import annotations

import asyncio
import resource
import sys
import time
from pathlib import Path

import orjson

from bench.procstats import Json


async def _read(flow: str, data_dir: Path) -> Json:
    from projector.export.source import Selection, SqliteOrigin, iter_events

    began = time.perf_counter()
    events = 0
    async for batch in iter_events(SqliteOrigin(data_dir), Selection(flow_id=flow)):
        events += len(batch)
    return {"events": events, "read_fold_s": time.perf_counter() - began, "render_s": 0.0}


async def _report(flow: str, data_dir: Path, out: Path) -> Json:
    from projector.export.source import Selection, SqliteOrigin
    from projector.report.build import write_funnel_report
    from services.catalog import EXAMPLE_FLOWS_DIR, FlowCatalog

    catalog = FlowCatalog.from_directory(EXAMPLE_FLOWS_DIR)
    written = await write_funnel_report(
        SqliteOrigin(data_dir), Selection(flow_id=flow), catalog.get, out
    )
    return {
        "events": written.events,
        "conversations": written.conversations,
        "leads": written.leads,
        "read_fold_s": written.read_fold_seconds,
        "render_s": written.render_seconds,
    }


def main(argv: list[str]) -> int:
    mode, flow, data_dir, out = argv[0], argv[1], Path(argv[2]), Path(argv[3])
    began = time.perf_counter()
    if mode == "read":
        result = asyncio.run(_read(flow, data_dir))
    else:
        result = asyncio.run(_report(flow, data_dir, out))
        result["bytes"] = out.stat().st_size
    result["total_s"] = time.perf_counter() - began
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
