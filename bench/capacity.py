"""How many gateways, processors, partitions and brokers a load needs: the capacity model.

    python -m bench.capacity                       # the runbook's table (normal day, campaign)
    python -m bench.capacity --sockets 100000 --presses-per-s 4000 --starts-per-s 400
    python -m bench.capacity --json                # the same as JSON

The model is built from measurements, never from guesses:

* **CPU per command** of the gateway, the processor and the broker: a least-squares
  line ``cores = fixed + per_command x commands/s`` through the runs of
  ``bench/results/kafka.json`` (``python -m bench.kafka``: paced and saturated runs,
  each with the cores every process kept busy). The fixed part is what a process
  costs when idle (polling, timers); the slope is the marginal cost of a command,
  which batching makes smaller at higher rates, so the line is conservative at
  the top of the measured range and is not extrapolated below zero.
* **Records per command** written to Kafka: ``topic_records`` of the same run.
* **Memory and CPU per socket** (``--socket-kib``, ``--start-cpu-ms``,
  ``--idle-cores-per-10k``): from ``bench/results/sockets.json`` when it exists
  (``python -m bench.sockets``), else the values measured for issue 17 (22 KiB of
  RSS per open socket at 10k-19.5k sockets; 1.2 ms of gateway CPU per start).

A component is sized so that each instance runs at most ``--utilisation`` (0.6) of
its CPU limit and, for gateways, holds at most ``--sockets-per-gateway`` sockets
(15,000: the Kubernetes gateways' cap at 512 MiB). The campaign spike multiplies
sockets, presses and starts by ``--spike`` (10).

Partitions are chosen, not computed: a topic's partition count is fixed for its
life, because a conversation's partition is ``hash(conversation id) mod
partitions`` and its whole history (commands, events, the processor's state) lives
in that partition; adding partitions would send a running conversation's next
command to a partition that has never seen it. So the count must cover the
largest fleet the topic will ever need: the spike's processors, with room to
double, rounded up to a number with many divisors (so that 2, 3, 4, 6 or 8
processors share the partitions evenly).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
KAFKA_JSON = RESULTS / "kafka.json"
SOCKETS_JSON = RESULTS / "sockets.json"

SOCKET_KIB = 22.0  # RSS per open visitor socket, issue 17 (10k and 19.5k sockets)
START_CPU_MS = 1.2  # gateway CPU per `start`, issue 17
IDLE_CORES_PER_10K = 0.01  # heartbeats of 10k idle sockets (timers only)
PARTITION_CHOICES = (12, 24, 36, 48, 60, 72, 96, 120)  # many divisors each
LEADFLOW_TOPICS = ("commands", "events", "replies", "processor-conversations-changelog")


@dataclass(frozen=True)
class Line:
    """cores = fixed + per_command x commands/s (fitted; both at least 0)."""

    fixed: float
    per_command: float

    def cores(self, commands_per_s: float) -> float:
        return self.fixed + self.per_command * commands_per_s

    def capacity(self, cores: float) -> float:
        """Commands/s one instance sustains within ``cores``."""
        if self.per_command <= 0:
            return math.inf
        return max(0.0, (cores - self.fixed) / self.per_command)


def fit(points: Sequence[tuple[float, float]]) -> Line:
    """Least squares through (commands/s, cores); a lone point is all marginal cost."""
    if not points:
        raise ValueError("no runs to fit")
    if len({x for x, _ in points}) < 2:
        x, y = points[0]
        return Line(0.0, y / x if x else 0.0)
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    if slope <= 0:
        # Batching outran the load in the measured range (the broker: its cost is
        # per request, and requests carry more records as the rate grows). Charge
        # the most any run cost at rest and the least any run cost per command.
        return Line(max(y for _, y in points), min(y / x for x, y in points if x))
    return Line(max(0.0, my - slope * mx), slope)


@dataclass(frozen=True)
class UnitCosts:
    gateway: Line
    processor: Line
    broker: Line
    records_per_command: float
    socket_kib: float
    start_cpu_ms: float
    idle_cores_per_10k: float
    source: str


def unit_costs(kafka: Mapping[str, Any], sockets: Mapping[str, Any] | None) -> UnitCosts:
    runs = kafka.get("leadflow") or []
    per: dict[str, list[tuple[float, float]]] = {"gateway": [], "processor": [], "broker": []}
    for run in runs:
        rate = float(run.get("commands_per_s") or 0)
        cores = run.get("cpu_cores") or {}
        gateway = sum(v for k, v in cores.items() if k.startswith("gateway"))
        if rate > 0:
            per["gateway"].append((rate, gateway))
            per["processor"].append((rate, float(cores.get("processor", 0))))
            per["broker"].append((rate, float(cores.get("broker", 0))))
    records = kafka.get("topic_records") or {}
    commands = float(records.get("commands") or 0)
    written = sum(float(v) for k, v in records.items() if k in LEADFLOW_TOPICS)
    socket = dict(sockets or {}).get("unit_costs", {})
    return UnitCosts(
        gateway=fit(per["gateway"]),
        processor=fit(per["processor"]),
        broker=fit(per["broker"]),
        records_per_command=written / commands if commands else 0.0,
        socket_kib=float(socket.get("socket_kib", SOCKET_KIB)),
        start_cpu_ms=float(socket.get("start_cpu_ms", START_CPU_MS)),
        idle_cores_per_10k=float(socket.get("idle_cores_per_10k", IDLE_CORES_PER_10K)),
        source=f"{KAFKA_JSON.name} of {kafka.get('timestamp', '?')}"
        + (f", {SOCKETS_JSON.name}" if socket else ", issue 17's socket numbers"),
    )


@dataclass(frozen=True)
class Load:
    sockets: int
    presses_per_s: float
    starts_per_s: float

    @property
    def commands_per_s(self) -> float:
        return self.presses_per_s + self.starts_per_s

    def times(self, factor: float) -> Load:
        return Load(
            round(self.sockets * factor), self.presses_per_s * factor, self.starts_per_s * factor
        )


@dataclass(frozen=True)
class Plan:
    load: Load
    gateways: int
    gateways_by_memory: int
    gateways_by_cpu: int
    processors: int
    brokers: int
    kafka_records_per_s: float
    gateway_memory_gib: float


@dataclass(frozen=True)
class Limits:
    utilisation: float = 0.6
    gateway_cpu: float = 1.0
    processor_cpu: float = 1.0  # one core: a worker is one Python process
    broker_cpu: float = 2.0
    sockets_per_gateway: int = 15_000
    replication: int = 3
    min_gateways: int = 2
    min_brokers: int = 3


def _ceil(x: float) -> int:
    """Instances for ``x`` instances' worth of work (3.0000000001 is 3, not 4)."""
    return math.ceil(round(x, 9))


def plan(load: Load, costs: UnitCosts, limits: Limits) -> Plan:
    by_memory = _ceil(load.sockets / limits.sockets_per_gateway)
    gateway_cores = (
        costs.gateway.per_command * load.commands_per_s
        + costs.start_cpu_ms / 1000 * load.starts_per_s
        + costs.idle_cores_per_10k * load.sockets / 10_000
    )
    budget = limits.gateway_cpu * limits.utilisation - costs.gateway.fixed
    by_cpu = _ceil(gateway_cores / budget) if budget > 0 else by_memory
    per_processor = costs.processor.capacity(limits.processor_cpu * limits.utilisation)
    processors = max(1, _ceil(load.commands_per_s / per_processor))
    broker_cores = costs.broker.cores(load.commands_per_s) * limits.replication
    brokers = max(
        limits.min_brokers, _ceil(broker_cores / (limits.broker_cpu * limits.utilisation))
    )
    gateways = max(limits.min_gateways, by_memory, by_cpu)
    return Plan(
        load=load,
        gateways=gateways,
        gateways_by_memory=by_memory,
        gateways_by_cpu=by_cpu,
        processors=processors,
        brokers=brokers,
        kafka_records_per_s=load.commands_per_s * costs.records_per_command,
        gateway_memory_gib=load.sockets * costs.socket_kib / 2**20,
    )


def partitions_for(processors_at_spike: int, choices: Sequence[int] = PARTITION_CHOICES) -> int:
    """The smallest well-divisible count with room for twice the spike's processors."""
    need = 2 * processors_at_spike
    return next((c for c in choices if c >= need), max(need, choices[-1]))


def scenarios(args: argparse.Namespace) -> list[tuple[str, Load]]:
    if args.sockets is not None:
        presses = args.presses_per_s if args.presses_per_s is not None else args.sockets * 0.05
        starts = args.starts_per_s if args.starts_per_s is not None else args.sockets / 300
        return [("given", Load(args.sockets, presses, starts))]
    # A normal day: 10k open sockets; a tenth of them in a conversation at human pace
    # (one press per 2 s), each socket living about 5 minutes (10k/300 starts per s).
    normal = Load(10_000, 10_000 * 0.1 / 2, 10_000 / 300)
    return [("normal day", normal)]


def _line(name: str, line: Line) -> str:
    return f"{name} {line.fixed:.2f} cores + {line.per_command * 1000:.2f} ms/command"


def report(rows: list[tuple[str, Plan]], partitions: int, costs: UnitCosts) -> str:
    out = [
        "| load | sockets | presses/s | starts/s | gateways (memory / CPU) | processors "
        "| brokers | Kafka records/s | gateway RSS for sockets |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, p in rows:
        load = p.load
        cells = [
            name,
            f"{load.sockets:,}",
            f"{load.presses_per_s:,.0f}",
            f"{load.starts_per_s:,.0f}",
            f"{p.gateways} ({p.gateways_by_memory} / {p.gateways_by_cpu})",
            str(p.processors),
            str(p.brokers),
            f"{p.kafka_records_per_s:,.0f}",
            f"{p.gateway_memory_gib:.1f} GiB",
        ]
        out.append("| " + " | ".join(cells) + " |")
    units = "; ".join(
        [
            _line("gateway", costs.gateway),
            _line("processor", costs.processor),
            _line("broker", costs.broker) + " (x replication)",
            f"{costs.records_per_command:.2f} Kafka records/command",
            f"{costs.socket_kib:.0f} KiB/socket",
            f"{costs.start_cpu_ms:.2f} ms/start",
        ]
    )
    out += [
        "",
        f"partitions of `commands` and `events`: **{partitions}**"
        " (twice the spike's processors, well divisible)",
        f"unit costs ({costs.source}): {units}",
    ]
    return "\n".join(out)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench.capacity", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--sockets", type=int, help="concurrent open visitor sockets")
    ap.add_argument("--presses-per-s", type=float, help="default: 5%% of the sockets per second")
    ap.add_argument("--starts-per-s", type=float, help="default: sockets / 300")
    ap.add_argument("--spike", type=float, default=10.0, help="campaign multiplier (default 10)")
    ap.add_argument("--utilisation", type=float, default=0.6, help="CPU share per instance (0.6)")
    ap.add_argument("--sockets-per-gateway", type=int, default=15_000)
    ap.add_argument("--kafka-json", type=Path, default=KAFKA_JSON)
    ap.add_argument("--sockets-json", type=Path, default=SOCKETS_JSON)
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = ap.parse_args(argv)
    if not 0 < args.utilisation <= 1 or args.spike < 1:
        ap.error("--utilisation must be in (0, 1] and --spike at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if not args.kafka_json.exists():
        print(f"no {args.kafka_json}: run python -m bench.kafka first", file=sys.stderr)
        return 2
    kafka = json.loads(args.kafka_json.read_text("utf-8"))
    sockets = (
        json.loads(args.sockets_json.read_text("utf-8")) if args.sockets_json.exists() else None
    )
    costs = unit_costs(kafka, sockets)
    limits = Limits(utilisation=args.utilisation, sockets_per_gateway=args.sockets_per_gateway)
    rows: list[tuple[str, Plan]] = []
    for name, load in scenarios(args):
        rows.append((name, plan(load, costs, limits)))
        if args.spike > 1:
            rows.append((f"{name} x{args.spike:g}", plan(load.times(args.spike), costs, limits)))
    partitions = partitions_for(max(p.processors for _, p in rows))
    if args.json:
        doc = {"unit_costs": asdict(costs), "limits": asdict(limits), "partitions": partitions}
        doc["plans"] = [{"name": n, **asdict(p)} for n, p in rows]
        print(json.dumps(doc, indent=2))
    else:
        print(report(rows, partitions, costs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
