"""The policy service's fit diagnostics and published versions as metrics (no Kafka:
the runtime is built, never started)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from app.policy import PolicyRuntime, fit_diagnostics
from policy.flow_fit import FlowFit
from policy.settings import PolicySettings
from policy.snapshot import PolicySnapshot
from services.distributed.settings import KafkaSettings
from tests.support.examples import example_catalog


def test_only_numeric_known_diagnostics_are_exported() -> None:
    diagnostics: dict[str, Any] = {
        "rhat_max": 1.004,
        "rhat_max_at": "beta",
        "ess_bulk_min": 812.0,
        "divergences": 0,
        "fit_seconds": 3.2,
    }
    assert fit_diagnostics(diagnostics) == {
        "rhat_max": 1.004,
        "ess_bulk_min": 812.0,
        "divergences": 0.0,
    }
    assert fit_diagnostics({"rhat_max": "nan?", "divergences": True}) == {}


def test_a_tick_exports_the_last_fit_and_the_published_version() -> None:
    runtime = PolicyRuntime(
        PolicySettings.from_env({}),
        KafkaSettings(),
        example_catalog(),
    )
    flow = FlowFit()
    flow.fits, flow.failures = 2, 1
    flow.last_fit_seconds = 41.5
    flow.last_diagnostics = {"rhat_max": 1.02, "ess_bulk_min": 95.0, "divergences": 3}
    flow.published = cast(PolicySnapshot, SimpleNamespace(version="solar-v3"))
    runtime.scheduler.flows["solar-quote"] = flow
    runtime._before_tick()
    registry = runtime.metrics.registry

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    diag = "leadflow_policy_last_fit_diagnostic"
    assert value(diag, flow="solar-quote", diagnostic="rhat_max") == 1.02
    assert value(diag, flow="solar-quote", diagnostic="ess_bulk_min") == 95.0
    assert value(diag, flow="solar-quote", diagnostic="divergences") == 3
    assert value("leadflow_policy_fits", flow="solar-quote", outcome="failed") == 1
    assert value("leadflow_policy_last_fit_seconds", flow="solar-quote") == 41.5
    version = "leadflow_policy_version"
    assert value(version, flow="solar-quote", version="solar-v3") == 1
    flow.published = cast(PolicySnapshot, SimpleNamespace(version="solar-v4"))
    runtime._before_tick()
    assert value(version, flow="solar-quote", version="solar-v3") is None
    assert value(version, flow="solar-quote", version="solar-v4") == 1
