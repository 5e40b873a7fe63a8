"""``load_events``: the export as a pandas DataFrame, for notebooks."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from projector.export.arrow import schema
from projector.export.export import export_events
from projector.export.leads import LeadKeys, RedisLeadKeys, SqliteLeadKeys
from projector.export.sinks import MemorySink
from projector.export.source import KafkaOrigin, Origin, Selection, SqliteOrigin
from services.distributed.settings import KafkaSettings, redis_url_from_env

if TYPE_CHECKING:
    import pandas as pd

T = TypeVar("T")
When = float | str | dt.datetime | None


def _seconds(when: When) -> float | None:
    if when is None or isinstance(when, float | int):
        return when
    if isinstance(when, dt.datetime):
        return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()
    from services.timerange import parse_since

    return parse_since(when)


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion, also where an event loop already runs
    (Jupyter): then in a worker thread with a loop of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="load_events") as pool:
        return pool.submit(asyncio.run, coro).result()


def lead_keys(origin: Origin) -> LeadKeys:
    """The key store of the origin's deployment, read-only."""
    if isinstance(origin, SqliteOrigin):
        return SqliteLeadKeys(origin.data_dir)
    return RedisLeadKeys(redis_url_from_env(), os.environ.get("LEADFLOW_REDIS_PREFIX", "leadflow:"))


async def collect_table(origin: Origin, selection: Selection, include_pii: bool) -> Any:
    """The export of ``selection`` as one Arrow table."""
    sink = MemorySink(schema(include_pii))
    keys = lead_keys(origin) if include_pii else None
    try:
        await export_events(origin, selection, sink, keys=keys)
    finally:
        if keys is not None:
            await keys.close()
    return sink.table()


def load_events(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    kafka: bool | KafkaSettings = False,
    since: When = None,
    until: When = None,
    flow_id: str | None = None,
    site_id: str | None = None,
    include_pii: bool = False,
) -> pd.DataFrame:
    """The selected events as a DataFrame with the columns of ``leadflow export``
    (docs/analytics.md). ``data_dir`` defaults to ``LEADFLOW_DATA_DIR`` or
    ``.leadflow``; ``kafka=True`` (settings from the environment) or a
    :class:`KafkaSettings` reads the ``events`` topic instead. Times are unix
    seconds, ISO 8601 strings or datetimes (naive ones are UTC)."""
    origin: Origin
    if kafka is not False:
        origin = KafkaOrigin(KafkaSettings.from_env() if kafka is True else kafka)
    else:
        origin = SqliteOrigin(Path(data_dir or os.environ.get("LEADFLOW_DATA_DIR", ".leadflow")))
    selection = Selection(_seconds(since), _seconds(until), flow_id, site_id)
    table = run_sync(collect_table(origin, selection, include_pii))
    frame: pd.DataFrame = table.to_pandas()
    return frame
