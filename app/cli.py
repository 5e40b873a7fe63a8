"""The ``leadflow`` command: serve, validate flows, read leads, erase personal data."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson

from app import cli_distributed, cli_export, cli_policy, cli_replay, cli_report
from schemas.flow_validation import InvalidFlow, flow_json_schema, load_flow


def _validate(files: Sequence[str]) -> int:
    failed = 0
    for name in files:
        try:
            flow = load_flow(Path(name))
        except InvalidFlow as exc:
            failed += 1
            for error in exc.errors:
                print(error, file=sys.stderr)
            continue
        print(
            f"ok: {name} ({flow.key}, {len(flow.nodes)} nodes, "
            f"{len(flow.decision_points())} decision points)"
        )
    if failed:
        print(f"{failed} of {len(files)} flow file(s) invalid", file=sys.stderr)
    return 1 if failed else 0


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from app.embedded import init_app
    from app.embedded_settings import settings_from_env
    from gateway.shutdown import ShutdownSettings, drain_on_sigterm
    from services.logs import configure_logging

    configure_logging(os.environ.get("LEADFLOW_LOG_LEVEL", "info"))
    try:
        settings = settings_from_env(
            host=args.host,
            port=args.port,
            data_dir=args.data_dir,
            flows_dir=args.flows,
            sites_file=args.sites,
        )
        app = init_app(settings)
        shutdown_timeout = drain_on_sigterm(app, ShutdownSettings.from_env())
    except (InvalidFlow, ValueError) as exc:
        print(f"leadflow: cannot start: {exc}", file=sys.stderr)
        return 2
    url = f"http://{settings.gateway.host}:{settings.gateway.port}/"
    print(f"Leadflow is serving the demo at {url} (data in {settings.data_dir})", flush=True)
    web.run_app(
        app,
        host=settings.gateway.host,
        port=settings.gateway.port,
        print=None,
        shutdown_timeout=shutdown_timeout,
    )
    return 0


async def _with_stores(data_dir: Path, action: str, arg: str) -> int:
    from app.embedded import EVENTS_DB, KEYS_DB
    from projector.privacy import open_lead, open_leads
    from projector.sqlite_store import SqliteReadModel
    from services.embedded.sqlite_keystore import SqliteKeyStore

    if not (data_dir / EVENTS_DB).exists():
        print(f"leadflow: no data in {data_dir}", file=sys.stderr)
        return 2
    keys = SqliteKeyStore(data_dir / KEYS_DB)
    readmodel = SqliteReadModel(data_dir / EVENTS_DB)
    keys.start()
    readmodel.start()
    try:
        if await readmodel.needs_rebuild():
            print(
                f"leadflow: the read models in {data_dir} are from an earlier version;"
                " start `leadflow serve` once to rebuild them",
                file=sys.stderr,
            )
        if action == "erase":
            deleted = await keys.delete(arg)
            marked = await readmodel.mark_erased(arg)
            print(
                f"erased lead details of {arg}"
                if deleted or marked
                else f"nothing to erase for {arg}"
            )
            return 0
        if action == "conversation":
            view = await readmodel.conversation(arg)
            if view is None:
                print(f"leadflow: no conversation {arg}", file=sys.stderr)
                return 1
            lead = await readmodel.lead(arg)
            out: dict[str, object] = {"conversation": view}
            if lead is not None:
                record = await open_lead(keys, lead)
                out["lead"] = {
                    "status": record.status,
                    "consent": record.consent,
                    "fields_present": lead.fields_present,
                }
            print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
            return 0
        page = await readmodel.leads(arg, None, 100)  # the newest 100
        for record in await open_leads(keys, page.leads):
            print(orjson.dumps(record).decode())
        return 0
    finally:
        readmodel.close()
        keys.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leadflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the embedded bot (gateway + service + SQLite)")
    serve.add_argument("--host", help="listen address (LEADFLOW_HOST, default 127.0.0.1)")
    serve.add_argument("--port", help="listen port (LEADFLOW_PORT, default 8080)")
    serve.add_argument("--data-dir", help="data directory (LEADFLOW_DATA_DIR, default .leadflow)")
    serve.add_argument("--flows", help="flow directory (LEADFLOW_FLOWS_DIR, default examples)")
    serve.add_argument("--sites", help="sites file (LEADFLOW_SITES_FILE)")
    flows = sub.add_parser("flows", help="work with flow files")
    flows_sub = flows.add_subparsers(dest="flows_command", required=True)
    validate = flows_sub.add_parser("validate", help="validate flow files; exit 1 on any error")
    validate.add_argument("files", nargs="+")
    flows_sub.add_parser("schema", help="print the flow format's JSON Schema")
    cli_distributed.add_commands(sub)
    cli_replay.add_command(sub)
    cli_export.add_command(sub)
    cli_report.add_command(sub)
    cli_policy.add_command(sub)
    for name, help_text, arg in (
        ("erase", "erase a conversation's lead details (deletes its key)", "conversation_id"),
        ("conversation", "show a conversation's read model", "conversation_id"),
        ("leads", "list a site's leads, newest first (contact details included)", "site_id"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument(arg)
        cmd.add_argument("--data-dir", default=os.environ.get("LEADFLOW_DATA_DIR", ".leadflow"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command in ("run", "topics"):
        return cli_distributed.main(args)
    if args.command == "replay":
        return cli_replay.main(args)
    if args.command == "export":
        return cli_export.main(args)
    if args.command == "report":
        return cli_report.main(args)
    if args.command == "policy":
        return cli_policy.main(args)
    if args.command == "flows":
        if args.flows_command == "schema":
            print(orjson.dumps(flow_json_schema(), option=orjson.OPT_INDENT_2).decode())
            return 0
        return _validate(args.files)
    target = args.conversation_id if args.command != "leads" else args.site_id
    return asyncio.run(_with_stores(Path(args.data_dir), args.command, target))


if __name__ == "__main__":
    sys.exit(main())
