"""Per-command cost of the trace context through Kafka headers (services/tracing.py).

``python -m bench.tracing.overhead`` (about 20 s) measures, in one run:

* **processor**: ``BatchDecider.decide`` of a batch of one ``StartConversation``
  record (a fresh conversation each time: decode, decide, encode the events batch, the
  state and the reply; no Kafka, an in-memory key store) traced as with an exporter
  configured (the SDK tracer provider, here exporting nowhere, the record carrying a
  ``traceparent``), against the same code with OpenTelemetry's no-op tracer and no
  incoming header: the baseline, which is also what runs when no exporter is
  configured (``configure_tracing`` then installs nothing). The transaction that
  commits a batch is not part of it (tracing adds nothing there).
* **gateway**: the tracing work of ``KafkaCommandBus.send`` alone (start the command's
  span, inject the headers, extract the reply's, start and end the reply span, end the
  command's span) with the SDK (``traced``), and without an exporter (``no exporter``:
  ``tracing_active()`` says no and no span work is done), against an empty loop.

Repeats alternate the traced and baseline runs. Per-command times are nearest-rank
percentiles of ``perf_counter_ns`` around each command, median over the repeats.
Writes ``bench/results/tracing.json`` (``--out``) and the markdown beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NoOpTracer, SpanKind

import services.processor.batch as batch_module
from policy.uniform import UniformPolicy
from schemas.codec import encode
from schemas.commands import StartConversation
from services.catalog import EXAMPLE_FLOWS_DIR, FlowCatalog
from services.fakes import InMemoryKeyStore
from services.log_follower import LogRecord
from services.processor.batch import BatchDecider
from services.tracing import configure_tracing, extract_headers, inject_headers, tracer

RESULTS = Path(__file__).resolve().parents[1] / "results"


def percentile(sorted_ns: list[int], q: float) -> float:
    index = max(0, min(len(sorted_ns) - 1, round(q * len(sorted_ns)) - 1))
    return sorted_ns[index] / 1000.0


def summary(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    return {
        "p50_us": percentile(ordered, 0.50),
        "p90_us": percentile(ordered, 0.90),
        "p99_us": percentile(ordered, 0.99),
        "mean_us": sum(ordered) / len(ordered) / 1000.0,
    }


async def processor_run(commands: int, traced: bool) -> list[int]:
    shipped = batch_module.tracer  # type: ignore[attr-defined]
    if not traced:
        batch_module.tracer = lambda: NoOpTracer()  # type: ignore[assignment,attr-defined]
    decider = BatchDecider(
        catalog=FlowCatalog.from_directory(EXAMPLE_FLOWS_DIR),
        policy=UniformPolicy(),
        keys=InMemoryKeyStore(),
    )
    with tracer().start_as_current_span("gateway"):
        incoming = tuple(inject_headers()) if traced else ()
    records = []
    for offset in range(commands):
        command = StartConversation(
            conversation_id=str(uuid.uuid4()),
            seq=1,
            at=1.0,
            flow_id="solar-quote",
            site_id="demo",
            reply_to="0",
        )
        key = command.conversation_id.encode()
        records.append(LogRecord(0, offset, encode(command), key, headers=incoming))
    samples: list[int] = []
    try:
        for record in records:
            started = time.perf_counter_ns()
            output = await decider.decide(0, [record], {})
            samples.append(time.perf_counter_ns() - started)
            assert output.decided == 1 and output.replies, output.blocked
    finally:
        batch_module.tracer = shipped  # type: ignore[attr-defined]
    return samples


def gateway_run(commands: int, traced: bool, noop: bool = False) -> list[int]:
    """``noop``: a gateway without an exporter and without an incoming trace: it asks
    ``tracing_active()`` (is a provider installed? is a span context current?) and does
    no span work; its predicate is repeated here, since this process has a provider."""
    with tracer().start_as_current_span("processor"):
        reply_headers = inject_headers()
    proxy = trace.ProxyTracerProvider()
    samples: list[int] = []
    for _ in range(commands):
        started = time.perf_counter_ns()
        if noop:
            if isinstance(proxy, trace.ProxyTracerProvider):
                trace.get_current_span().get_span_context().is_valid  # noqa: B018
        elif traced:
            with tracer().start_as_current_span(
                "leadflow.gateway.command",
                kind=SpanKind.PRODUCER,
                attributes={"leadflow.command": "PressButton"},
            ):
                inject_headers()
                tracer().start_span(
                    "leadflow.gateway.reply",
                    context=extract_headers(reply_headers),
                    kind=SpanKind.CONSUMER,
                    attributes={"leadflow.command": "PressButton"},
                ).end()
        samples.append(time.perf_counter_ns() - started)
    return samples


def table(results: dict[str, Any]) -> str:
    lines = [
        "# Trace context overhead per command",
        "",
        f"{results['at']}, {results['cores']} cores, Python {results['python']}; "
        f"{results['commands']:,} commands x {results['repeats']} repeats per variant.",
        "",
        "| side | variant | p50 us | p90 us | p99 us | mean us |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for side in ("processor", "gateway"):
        for variant in ("traced", "no exporter", "baseline"):
            if variant not in results[side]:
                continue
            s = results[side][variant]
            lines.append(
                f"| {side} | {variant} | {s['p50_us']:.1f} | {s['p90_us']:.1f} | "
                f"{s['p99_us']:.1f} | {s['mean_us']:.1f} |"
            )
    p, g = results["processor"], results["gateway"]
    lines += [
        "",
        f"Added per command: processor {p['added_p50_us']:.1f} us at p50 "
        f"({p['added_p50_ratio']:.0%} of its baseline), gateway {g['added_p50_us']:.1f} us at "
        "p50, with an exporter configured; with none, the gateway's check adds "
        f"{g['no_exporter_added_p50_us']:.1f} us and the processor runs its baseline.",
        "",
        "traced: the SDK tracer provider (as with an exporter configured); processor "
        "baseline: the same batch decider with OpenTelemetry's no-op tracer and no incoming "
        "traceparent, which is what runs without an exporter; gateway no exporter: "
        "tracing_active() and no span work; gateway baseline: an empty loop. Medians over "
        "the repeats.",
    ]
    return "\n".join(lines) + "\n"


def median_summary(runs: list[list[int]]) -> dict[str, float]:
    parts = [summary(r) for r in runs]
    return {k: statistics.median(p[k] for p in parts) for k in parts[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--commands", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "tracing.json")
    args = parser.parse_args(argv)
    if not configure_tracing("leadflow-bench"):  # no exporter configured: made here
        trace.set_tracer_provider(TracerProvider())
    assert not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    runs: dict[str, dict[str, list[list[int]]]] = {
        side: {"traced": [], "baseline": []} for side in ("processor", "gateway")
    }
    runs["gateway"]["no exporter"] = []
    asyncio.run(processor_run(500, True))  # warm up imports and caches
    for repeat in range(args.repeats):
        order = (True, False) if repeat % 2 == 0 else (False, True)
        for traced in order:
            variant = "traced" if traced else "baseline"
            gc.collect()
            runs["processor"][variant].append(asyncio.run(processor_run(args.commands, traced)))
            runs["gateway"][variant].append(gateway_run(args.commands, traced))
        runs["gateway"]["no exporter"].append(gateway_run(args.commands, True, noop=True))
    results: dict[str, Any] = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "commands": args.commands,
        "repeats": args.repeats,
        "command": "python -m bench.tracing.overhead",
    }
    for side, variants in runs.items():
        traced_s = median_summary(variants["traced"])
        baseline_s = median_summary(variants["baseline"])
        results[side] = {
            "traced": traced_s,
            "baseline": baseline_s,
            "added_p50_us": traced_s["p50_us"] - baseline_s["p50_us"],
            "added_p50_ratio": (traced_s["p50_us"] - baseline_s["p50_us"])
            / max(baseline_s["p50_us"], 1e-9),
        }
        if "no exporter" in variants:
            noop_s = median_summary(variants["no exporter"])
            results[side]["no exporter"] = noop_s
            results[side]["no_exporter_added_p50_us"] = noop_s["p50_us"] - baseline_s["p50_us"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", "utf-8")
    markdown = table(results)
    args.out.with_suffix(".md").write_text(markdown, "utf-8")
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
