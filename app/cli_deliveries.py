"""``leadflow deliveries``: where leads went, and sending them again.

``list``, ``show ID``, ``retry ID`` (a dead letter or a pending delivery, at
once; ``retry --dead --site S`` every dead letter of a site), ``replay --site
S --since T [--destination D]`` (send delivered leads again, e.g. after a CRM
lost them) and ``enable --site S --destination D``
(after a ``410 Gone`` disabled it). The store is the embedded mode's
``deliveries.db`` in ``--data-dir``, or with ``--distributed`` the Redis of
``LEADFLOW_REDIS_URL``/``REDIS_URL`` under ``LEADFLOW_REDIS_PREFIX``. Nothing
printed carries a lead's contact details, a URL or a secret.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import orjson

from app.cli_errors import CliError
from services.delivery.model import STATUSES, Delivery
from services.delivery.payload import iso
from services.delivery.schedule import resent
from services.delivery.store import DeliveryStore
from services.delivery.views import delivery_json
from services.timerange import parse_since

DELIVERIES_DB = "deliveries.db"


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    top = sub.add_parser("deliveries", help="lead deliveries: list, show, retry, replay, enable")
    commands = top.add_subparsers(dest="deliveries_command", required=True)
    listing = commands.add_parser("list", help="deliveries, newest first")
    listing.add_argument("--site", help="only this site's")
    listing.add_argument("--status", choices=STATUSES, help="only those with this status")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (50)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    show = commands.add_parser("show", help="one delivery with its attempts (JSON)")
    show.add_argument("id")
    retry = commands.add_parser("retry", help="try a delivery (or every dead letter) again now")
    retry.add_argument("id", nargs="?", help="the delivery (leadflow deliveries list shows ids)")
    retry.add_argument("--dead", action="store_true", help="every dead letter of --site")
    retry.add_argument("--site", help="with --dead: the site")
    retry.add_argument("--destination", help="with --dead: only this destination")
    replay = commands.add_parser("replay", help="send a site's delivered leads again")
    replay.add_argument("--site", required=True)
    replay.add_argument(
        "--since", required=True, help="an ISO 8601 date or time (UTC), or Unix seconds"
    )
    replay.add_argument("--destination", help="only this destination")
    enable = commands.add_parser("enable", help="enable a destination a 410 Gone disabled")
    enable.add_argument("--site", required=True)
    enable.add_argument("--destination", required=True)
    for command in (listing, show, retry, replay, enable):
        command.add_argument(
            "--data-dir",
            default=os.environ.get("LEADFLOW_DATA_DIR", ".leadflow"),
            help="the embedded mode's data directory (LEADFLOW_DATA_DIR)",
        )
        command.add_argument(
            "--distributed",
            action="store_true",
            help="the distributed mode's store (LEADFLOW_REDIS_URL, LEADFLOW_REDIS_PREFIX)",
        )


@asynccontextmanager
async def open_store(args: argparse.Namespace) -> AsyncIterator[DeliveryStore]:
    store: DeliveryStore
    if args.distributed:
        from services.distributed.redis_client import redis_client
        from services.distributed.redis_deliveries import RedisDeliveryStore
        from services.distributed.settings import redis_url_from_env

        redis = redis_client(redis_url_from_env())
        store = RedisDeliveryStore(redis, os.environ.get("LEADFLOW_REDIS_PREFIX", "leadflow:"))
        try:
            await store.start()
            yield store
        finally:
            await store.close()
            await redis.aclose()
        return
    from services.embedded.sqlite_deliveries import SqliteDeliveryStore

    path = Path(args.data_dir) / DELIVERIES_DB
    if not path.exists():
        raise CliError(
            f"no deliveries in {args.data_dir}; pass --data-dir DIR (LEADFLOW_DATA_DIR) naming"
            " the data directory of leadflow serve, or --distributed"
        )
    store = SqliteDeliveryStore(path)
    await store.start()
    try:
        yield store
    finally:
        await store.close()


def _line(d: Delivery) -> str:
    last = d.attempts[-1] if d.attempts else None
    outcome = "-" if last is None else (f"{last.status_code}" if last.status_code else last.outcome)
    return "  ".join(
        [
            d.id,
            d.site_id,
            d.destination,
            d.kind,
            d.status + (f"({d.reason})" if d.reason else ""),
            f"attempts={len(d.attempts)}",
            f"last={outcome}",
            f"captured={iso(d.lead.captured_at)}",
        ]
    )


async def _run(args: argparse.Namespace) -> int:
    async with open_store(args) as store:
        action = args.deliveries_command
        if action == "list":
            if not 1 <= args.limit <= 10_000:
                raise CliError("--limit must be from 1 to 10000")
            page = await store.page(args.site, args.status, args.limit)
            for d in page.deliveries:
                print(orjson.dumps(delivery_json(d)).decode() if args.json else _line(d))
            disabled = await store.disabled()
            for (site, dest), why in sorted(disabled.items()):
                if args.site in (None, site) and not args.json:
                    print(f"destination {site}/{dest} is DISABLED: {why}")
            return 0
        if action == "enable":
            done = await store.enable(args.site, args.destination)
            print(
                f"enabled {args.site}/{args.destination}"
                if done
                else f"{args.site}/{args.destination} was not disabled"
            )
            return 0
        if action == "replay":
            return await _replay(store, args)
        if action == "retry" and (args.dead or args.id is None):
            return await _retry_dead(store, args)
        delivery = await store.get(args.id)
        if delivery is None:
            raise CliError(f"no delivery {args.id}; `leadflow deliveries list` shows the ids", 1)
        if action == "show":
            print(orjson.dumps(delivery_json(delivery), option=orjson.OPT_INDENT_2).decode())
            return 0
        return await _retry(store, delivery)


async def _retry(store: DeliveryStore, delivery: Delivery) -> int:
    if delivery.status == "erased":
        raise CliError(f"{delivery.id}: the lead was erased; it is never sent", 1)
    await store.save(resent(delivery, time.time()))
    print(f"{delivery.id}: due now ({delivery.status} before)")
    if (delivery.site_id, delivery.destination) in await store.disabled():
        print(
            f"note: {delivery.site_id}/{delivery.destination} is disabled; run `leadflow"
            f" deliveries enable --site {delivery.site_id} --destination"
            f" {delivery.destination}` first, or it becomes a dead letter again"
        )
    return 0


async def _retry_dead(store: DeliveryStore, args: argparse.Namespace) -> int:
    if not (args.dead and args.site) or args.id is not None:
        raise CliError("give a delivery id, or --dead --site SITE [--destination NAME]")
    dead: list[Delivery] = []
    cursor: str | None = None
    while True:
        page = await store.page(args.site, "dead", 500, cursor)
        dead += [d for d in page.deliveries if args.destination in (None, d.destination)]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    now = time.time()
    for delivery in dead:
        await store.save(resent(delivery, now))
    print(f"{len(dead)} dead letters of {args.site} are due again")
    return 0


async def _replay(store: DeliveryStore, args: argparse.Namespace) -> int:
    try:
        since = parse_since(args.since)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        raise CliError(f"--since: {str(exc).removeprefix('--from ')}") from None
    now = time.time()
    again = await store.delivered_since(args.site, since, args.destination)
    for delivery in again:
        await store.save(resent(delivery, now))
    print(f"{len(again)} delivered leads of {args.site} are due again")
    return 0


def main(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
