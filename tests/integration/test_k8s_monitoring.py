"""The monitoring component (deploy/k8s/components/monitoring), checked offline.

The PodMonitor must scrape a port that serves /metrics on every Leadflow workload, and
each alert must parse as PromQL (``promql-parser``, the Rust parser's bindings) and name
only series the services really export: a renamed metric fails here, not silently in
Prometheus, where an alert on a series that no longer exists just never fires.
"""

from __future__ import annotations

import re
from typing import Any

import promql_parser
import pytest

from tests.integration.test_k8s_manifests import (
    WORKLOADS,
    _containers,
    _crd_errors,
    _resources,
    _served_paths,
    _service,
)

SERVICES = ("gateway", "processor", "projector", "policy", "delivery")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
}
# series that Prometheus itself adds to every target, and kube-state-metrics' that the
# alerts read (a pod's restarts by container name, a Deployment's ready replicas by name)
BUILTIN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
KUBE_STATE_METRICS = {
    "kube_pod_container_status_restarts_total",
    "kube_deployment_status_replicas_ready",
}


def _exported_series() -> set[str]:
    """Every series name the five services' registries can expose."""
    names: set[str] = set()
    for metrics in _registries():
        for family in metrics.registry.collect():
            names.update(family.name + s for s in SUFFIXES.get(family.type, ("",)))
    return names


def _registries() -> tuple[Any, ...]:
    """Each service's metrics object (each has its own registry)."""
    from gateway.metrics import GatewayMetrics
    from policy.metrics import PolicyMetrics
    from projector.metrics import ProjectorMetrics
    from services.delivery.metrics import DeliveryMetrics
    from services.processor.metrics import ProcessorMetrics

    return (
        GatewayMetrics(),
        ProcessorMetrics(),
        ProjectorMetrics(),
        PolicyMetrics(),
        DeliveryMetrics(),
    )


def _alerts() -> list[dict[str, Any]]:
    rules = _resources("prod", "PrometheusRule")
    assert len(rules) == 1, rules
    return [rule for group in rules[0]["spec"]["groups"] for rule in group["rules"]]


def _selectors(expr: str) -> list[str]:
    names: list[str] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.append(node.name)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def test_the_monitoring_resources_pass_their_crd_schemas() -> None:
    monitors = _resources("prod", "PodMonitor", "PrometheusRule")
    assert sorted(r["kind"] for r in monitors) == ["PodMonitor", "PrometheusRule"]
    for resource in monitors:
        assert not _crd_errors(resource), (resource["kind"], _crd_errors(resource))
    assert not _resources("dev", "PodMonitor", "PrometheusRule")  # dev needs no operator


def _labels_match(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for term in selector.get("matchExpressions", []):
        assert term["operator"] == "In", term
        if labels.get(term["key"]) not in term["values"]:
            return False
    return True


def test_the_pod_monitor_scrapes_metrics_on_every_leadflow_service() -> None:
    (monitor,) = _resources("prod", "PodMonitor")
    endpoints = monitor["spec"]["podMetricsEndpoints"]
    scraped: set[str] = set()
    for workload in _resources("prod", *WORKLOADS):
        labels = workload["spec"].get("template", {}).get("metadata", {}).get("labels", {})
        if workload["kind"] == "CronJob" or not _labels_match(monitor["spec"]["selector"], labels):
            continue
        for container in _containers(workload):
            service = _service(container)
            ports = {p["name"] for p in container.get("ports", [])}
            for endpoint in endpoints:
                if service and endpoint["port"] in ports and not _dropped(endpoint, service):
                    served = _served_paths(service, endpoint["port"])
                    assert endpoint["path"] in served, (service, endpoint)
                    scraped.add(service)
    assert scraped == set(SERVICES)


def _dropped(endpoint: dict[str, Any], service: str) -> bool:
    """Whether the endpoint's relabelings drop the targets of ``service``'s pods."""
    return any(
        r.get("action") == "drop"
        and r.get("sourceLabels") == ["__meta_kubernetes_pod_label_app_kubernetes_io_name"]
        and re.fullmatch(r["regex"], service)
        for r in endpoint.get("relabelings", [])
    )


def test_the_gateways_public_port_serves_no_metrics_and_prod_no_demo_page() -> None:
    """The Ingress routes / of the public host to the gateways' "http" port: no /metrics
    there (it is on "metrics", which no Service routes), and the prod overlay turns the
    demo page off."""
    assert "/metrics" not in _served_paths("gateway", "http")
    assert "/" not in _served_paths("gateway", "http")  # the distributed default: off
    assert _served_paths("gateway", "metrics") == {"/metrics"}
    for service in _resources("prod", "Service"):
        for port in service["spec"].get("ports", []):
            assert port.get("targetPort") != "metrics", service["metadata"]["name"]
    (config,) = [
        c
        for c in _resources("prod", "ConfigMap")
        if c["metadata"]["name"].startswith("leadflow-config")
    ]
    assert config["data"]["LEADFLOW_DEMO_PAGE"] == "off"


def test_every_alert_parses_and_names_only_exported_series() -> None:
    exported = _exported_series() | BUILTIN | KUBE_STATE_METRICS
    alerts = _alerts()
    assert len(alerts) >= 8
    for alert in alerts:
        names = _selectors(alert["expr"])
        assert names, alert["alert"]
        unknown = [n for n in names if n not in exported]
        assert not unknown, f"{alert['alert']}: no service exports {unknown}"
        assert re.fullmatch(r"Leadflow[A-Za-z]+", alert["alert"])
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}
        assert alert["annotations"]["summary"]


def test_every_leadflow_series_an_alert_relies_on_carries_its_labels() -> None:
    """``by (le)``, ``{type=...}``, ``{reason=...}``, ``{outcome=...}``: the labels an
    alert filters or groups by exist on the series it reads."""
    from prometheus_client.metrics import MetricWrapperBase

    labels: dict[str, set[str]] = {}
    for metrics in _registries():
        for metric in vars(metrics).values():
            if not isinstance(metric, MetricWrapperBase):
                continue
            names = set(metric._labelnames)  # no public accessor in prometheus_client
            for family in metric.describe():
                for suffix in SUFFIXES.get(family.type, ("",)):
                    labels[family.name + suffix] = names | (
                        {"le"} if suffix == "_bucket" else set()
                    )
    for alert in _alerts():
        expr = promql_parser.parse(alert["expr"])
        seen: list[tuple[str, set[str]]] = []

        def visit(node: Any, seen: list[tuple[str, set[str]]] = seen) -> bool:
            if isinstance(node, promql_parser.VectorSelector) and node.name in labels:
                used = {m.name for m in node.matchers.matchers}
                seen.append((node.name, used))
            return True

        promql_parser.walk(expr, visit)
        for name, used in seen:
            assert used <= labels[name], f"{alert['alert']}: {name} has no {used - labels[name]}"


# the delivery alerts of issue 15 and docs/delivery.md: name -> the series it reads
DELIVERY_ALERTS = {
    "LeadflowDeliveryBacklog": "leadflow_delivery_oldest_pending_seconds",
    "LeadflowDeliveryDeadLetters": "leadflow_delivery_dead_lettered_total",
    "LeadflowDeliveryDestinationDisabled": "leadflow_delivery_destination_disabled",
    "LeadflowDeliveryDown": "kube_deployment_status_replicas_ready",
}


def test_the_delivery_alerts_watch_backlog_dead_letters_disabled_and_down() -> None:
    """A lead pending over 15 minutes, new dead letters, a destination a 410 disabled
    (per site and destination), and no delivery pod ready: each has its alert, which
    names the runbook or the command to run."""
    alerts = {a["alert"]: a for a in _alerts()}
    for name, series in DELIVERY_ALERTS.items():
        assert name in alerts, f"no alert {name}"
        assert series in _selectors(alerts[name]["expr"]), (name, alerts[name]["expr"])
    backlog = alerts["LeadflowDeliveryBacklog"]
    assert "max(" in backlog["expr"] and "> 900" in backlog["expr"], "the store is shared"
    assert backlog["for"] == "5m"
    assert "increase(" in alerts["LeadflowDeliveryDeadLetters"]["expr"]
    disabled = alerts["LeadflowDeliveryDestinationDisabled"]["expr"]
    assert "by (site, destination)" in disabled
    assert 'deployment="delivery"' in alerts["LeadflowDeliveryDown"]["expr"]
    assert alerts["LeadflowDeliveryDown"]["labels"]["severity"] == "critical"


@pytest.mark.parametrize(
    "broken",
    [
        "sum(rate(leadflow_gateway_rejected_total[5m]) > 1",  # unbalanced
        "leadflow_gateway_rejected_totl > 1",  # misspelt series
    ],
)
def test_a_broken_alert_is_caught(broken: str) -> None:
    exported = _exported_series()
    try:
        names = _selectors(broken)
    except ValueError:
        return
    assert any(n not in exported for n in names)


def test_go_inline_flags_in_crd_patterns_become_python_ones() -> None:
    """The PrometheusRule CRD has ``^(?i)(abort|warn)?$``, which Python's re refuses."""
    import importlib.util

    from tests.integration.test_k8s_manifests import SCHEMAS

    spec = importlib.util.spec_from_file_location("crd2js", SCHEMAS / "crd_to_jsonschema.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pattern = module.python_pattern("^(?i)(abort|warn)?$")
    assert pattern == "(?i)^(abort|warn)?$"
    assert all(re.match(pattern, s) for s in ("ABORT", "warn", ""))
    assert not re.match(pattern, "retry")
    assert module.python_pattern("^[a-z]+$") == "^[a-z]+$"
