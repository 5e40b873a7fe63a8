"""The ``leadflow`` command: serve, validate flows, read leads, erase personal data.

Every error is one line on stderr saying what is wrong and what to do, with a
non-zero exit status (2 for usage and configuration), never a traceback
(:mod:`app.cli_errors`; the traceback only with ``LEADFLOW_LOG_LEVEL=debug``).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson

from app import (
    cli_deliveries,
    cli_distributed,
    cli_export,
    cli_flows,
    cli_keys,
    cli_policy,
    cli_replay,
    cli_report,
)
from app.cli_errors import (
    CliError,
    OneLineParser,
    check_directory,
    check_file,
    debug,
    explain,
    fail,
    one_line,
    version,
)
from schemas.flow_errors import InvalidFlow
from schemas.flow_structure import flow_json_schema
from schemas.flow_validation import load_flow


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


FLOWS_FIX = "pass --flows DIR (or set LEADFLOW_FLOWS_DIR) naming a directory of flow files"
SITES_FIX = (
    "pass --sites FILE (or set LEADFLOW_SITES_FILE) naming the YAML file of sites,"
    " or neither for the demo site"
)


def check_config_paths(flows: str | None, sites: str | None) -> None:
    """A flow directory or sites file that is set must be there (before anything starts)."""
    if flows:
        check_directory(Path(flows), "flow directory", FLOWS_FIX)
    if sites:
        check_file(Path(sites), "sites file", SITES_FIX)


def invalid_flows(directory: Path, exc: InvalidFlow) -> CliError:
    if len(exc.errors) == 1 and exc.errors[0].message == "no flow files found":
        return CliError(f"no flow files (.yaml, .yml, .json) in {directory}; {FLOWS_FIX}")
    errors = "; ".join(str(e) for e in exc.errors) or str(exc)
    return CliError(
        f"the flow files in {directory} are not valid: {errors}; fix them or {FLOWS_FIX}"
    )


def _bind_problem(where: str, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        why = (
            "the address is already in use (another leadflow serve?); stop what uses it"
            " or pass another --port (LEADFLOW_PORT)"
        )
    elif exc.errno == errno.EACCES:
        why = "permission denied (ports below 1024 need privileges); pass --port 1024 or above"
    elif exc.errno == errno.EADDRNOTAVAIL:
        why = "no such address on this machine; pass --host with one of its addresses"
    else:
        why = f"{exc.strerror or exc}; pass another --host or --port"
    return f"cannot listen on {where}: {why}"


def listen(host: str, port: int) -> list[socket.socket]:
    """Bound sockets for every address of ``host`` (as asyncio's server would
    bind them), before anything else starts: a port in use is one line, not a
    traceback after a claim to be serving."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (socket.gaierror, UnicodeError) as exc:
        raise CliError(
            f"cannot listen on {where}: unknown address ({one_line(str(exc))});"
            " pass --host with an address of this machine (LEADFLOW_HOST)"
        ) from None
    except OverflowError:
        raise CliError(f"cannot listen on {where}: pass --port from 1 to 65535") from None
    sockets: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise CliError(_bind_problem(where, exc)) from None
    return sockets


def _serve(args: argparse.Namespace) -> int:
    import yaml
    from aiohttp import web

    from app.embedded import init_app
    from app.embedded_settings import settings_from_env
    from gateway.shutdown import ShutdownSettings, drain_on_sigterm
    from services.limits import (
        collector_threshold,
        listen_backlog,
        raise_open_files,
        tune_collector,
    )
    from services.logs import configure_logging

    configure_logging(os.environ.get("LEADFLOW_LOG_LEVEL", "info"))
    check_config_paths(
        args.flows or os.environ.get("LEADFLOW_FLOWS_DIR"),
        args.sites or os.environ.get("LEADFLOW_SITES_FILE"),
    )
    try:
        settings = settings_from_env(
            host=args.host,
            port=args.port,
            data_dir=args.data_dir,
            flows_dir=args.flows,
            sites_file=args.sites,
        )
    except ValueError as exc:
        raise CliError(f"cannot start: {exc}") from None
    try:
        gen0 = collector_threshold(os.environ)
        app = init_app(settings)  # starts nothing yet: that is run_app's startup
        shutdown_timeout = drain_on_sigterm(app, ShutdownSettings.from_env())
    except InvalidFlow as exc:
        raise invalid_flows(settings.flows_dir, exc) from None
    except (ValueError, yaml.YAMLError) as exc:
        raise CliError(f"cannot start: {exc}") from None
    sockets = listen(settings.gateway.host, settings.gateway.port)
    raise_open_files("serve")  # once it can start (a refused start says one line): fd per socket
    tune_collector("serve", gen0)  # the composed app is alive for good: frozen
    host = settings.gateway.host
    port = settings.gateway.port
    url = f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    def announce(*_: object) -> None:
        """Called once every socket listens (after startup): only then is it serving."""
        sys.stdout.write(f"Leadflow is serving the demo at {url} (data in {settings.data_dir})\n")
        sys.stdout.flush()

    backlog = listen_backlog("serve", settings.gateway.listen_backlog)
    web.run_app(
        app, sock=sockets, print=announce, shutdown_timeout=shutdown_timeout, backlog=backlog
    )
    return 0


async def _with_stores(data_dir: Path, action: str, arg: str) -> int:
    from app.embedded import EVENTS_DB, KEYS_DB
    from projector.privacy import open_lead, open_leads
    from projector.sqlite_store import SqliteReadModel
    from services.embedded.sqlite_keystore import SqliteKeyStore

    if not (data_dir / EVENTS_DB).exists():
        raise CliError(
            f"no data in {data_dir}; pass --data-dir DIR (or set LEADFLOW_DATA_DIR) naming"
            " the data directory of leadflow serve"
        )
    if action == "leads":
        from app.cli_ids import check_site_of_leads

        check_site_of_leads(data_dir, arg)
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
                raise CliError(f"no conversation {arg} in {data_dir}; check the id", 1)
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


def _port(raw: str) -> str:
    if not (raw.isdigit() and 1 <= int(raw) <= 65535):
        raise argparse.ArgumentTypeError(f"{raw!r} is not a port (1 to 65535)")
    return raw


def _parser() -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = OneLineParser(prog="leadflow", description=__doc__)
    parser.add_argument("--version", action="version", version=f"leadflow {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the embedded bot (gateway + service + SQLite)")
    serve.add_argument("--host", help="listen address (LEADFLOW_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=_port, help="listen port (LEADFLOW_PORT, default 8080)")
    serve.add_argument("--data-dir", help="data directory (LEADFLOW_DATA_DIR, default .leadflow)")
    serve.add_argument("--flows", help="flow directory (LEADFLOW_FLOWS_DIR, default examples)")
    serve.add_argument("--sites", help="sites file (LEADFLOW_SITES_FILE)")
    flows = sub.add_parser("flows", help="work with flow files")
    flows_sub = flows.add_subparsers(dest="flows_command", required=True)
    validate = flows_sub.add_parser("validate", help="validate flow files; exit 1 on any error")
    validate.add_argument("files", nargs="+")
    flows_sub.add_parser("schema", help="print the flow format's JSON Schema")
    cli_flows.add_commands(flows_sub)
    cli_distributed.add_commands(sub)
    cli_replay.add_command(sub)
    cli_export.add_command(sub)
    cli_report.add_command(sub)
    cli_policy.add_command(sub)
    cli_keys.add_command(sub)
    cli_deliveries.add_command(sub)
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
    """Run one command; every failure ends as one line on stderr and an exit status."""
    args = _parser().parse_args(argv)
    words = ["leadflow", args.command]
    words += [
        getattr(args, a, None) or ""
        for a in ("report_command", "policy_command", "keys_command", "deliveries_command")
    ]
    prog = " ".join(w for w in words if w)
    if args.command not in ("serve", "run") and not debug():
        import logging

        # a one-shot command says in its one line what the client libraries log on the way
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        return _run(args)
    except CliError as exc:
        return fail(prog, exc)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last resort: one line, exit 1
        return explain(prog, exc)


def _topics() -> int:
    from services.distributed.topics import TopicMismatch

    try:
        return cli_distributed.main(argparse.Namespace(command="topics"))
    except TopicMismatch as exc:
        raise CliError(
            f"{exc}; a topic's partition count cannot change under a running deployment"
            " (docs/distributed.md)",
            1,
        ) from None


def _run(args: argparse.Namespace) -> int:
    if args.command == "serve":
        return _serve(args)
    if args.command == "topics":
        return _topics()
    if args.command == "run":
        check_config_paths(
            os.environ.get("LEADFLOW_FLOWS_DIR"), os.environ.get("LEADFLOW_SITES_FILE")
        )
        return cli_distributed.main(args)
    if args.command == "replay":
        return cli_replay.main(args)
    if args.command == "export":
        return cli_export.main(args)
    if args.command == "report":
        return cli_report.main(args)
    if args.command == "policy":
        return cli_policy.main(args)
    if args.command == "keys":
        return cli_keys.main(args)
    if args.command == "deliveries":
        return cli_deliveries.main(args)
    if args.command == "flows":
        if args.flows_command == "schema":
            print(orjson.dumps(flow_json_schema(), option=orjson.OPT_INDENT_2).decode())
            return 0
        if args.flows_command == "validate":
            return _validate(args.files)
        return cli_flows.main(args)
    target = args.conversation_id if args.command != "leads" else args.site_id
    return asyncio.run(_with_stores(Path(args.data_dir), args.command, target))


if __name__ == "__main__":
    sys.exit(main())
