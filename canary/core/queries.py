"""PromQL templates for the metric types of docs/design.md §2, as data (what to measure, not how).

One template per metric type serves two selectors:

* a **single** workload (``destination_workload="reviews-v3"``): the query shown in check
  events and by ``canary check``, which a human can paste into Prometheus;
* a **batch** of workloads (``destination_workload=~"reviews-v1|reviews-v3|..."``), grouped
  ``by (destination_workload_namespace, destination_workload)``: one query per (metric type,
  reporter, quantile, effective window) answers every active rollout (docs/design.md §3). Both give
  the same number for a workload.

The Prometheus adapter only runs a rendered query and reads numbers out of it. Names reach
PromQL validated (plan validation allows Kubernetes names only) and escaped anyway: a plan
cannot widen or break a selector.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from string import Template
from typing import Final

from canary.core.names import normalise_host
from canary.core.plan import Metric, MetricType, Reporter

#: The labels a batch is grouped by: one series per workload.
GROUP_BY: Final = "destination_workload_namespace, destination_workload"

#: Requests served by each workload in the window (for minRequests and the traffic rule).
REQUESTS: Final = Template("sum by ($by) (increase(istio_requests_total{$selector}[$window]))")

TEMPLATES: Final[dict[MetricType, Template]] = {
    # 5xx share of requests. The `or (0 * total)` arm makes "traffic and no 5xx" a 0, not an
    # empty result; zero traffic stays 0/0 = NaN (no data), an unknown workload stays absent.
    MetricType.ERROR_RATE: Template(
        '(sum by ($by) (rate(istio_requests_total{$selector,response_code=~"5.."}[$window]))'
        " or (0 * sum by ($by) (rate(istio_requests_total{$selector}[$window]))))"
        " / sum by ($by) (rate(istio_requests_total{$selector}[$window]))"
    ),
    MetricType.LATENCY: Template(
        "histogram_quantile($quantile, sum by ($by, le) (rate("
        "istio_request_duration_milliseconds_bucket{$selector}[$window])))"
    ),
}

#: Istio's default bucket boundaries (ms) for istio_request_duration_milliseconds: a latency
#: quantile is interpolated linearly inside a bucket, so a bound between two boundaries is
#: judged on an estimate.
ISTIO_LATENCY_BUCKETS: Final = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000,
    600000, 1800000, 3600000,
)  # fmt: skip


def label_value(value: str) -> str:
    """Escape a string for use inside a double-quoted PromQL label matcher."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def promql_duration(window: timedelta) -> str:
    """A PromQL range duration in whole seconds, e.g. ``60s``."""
    return f"{int(window.total_seconds())}s"


def selector(reporter: Reporter | str, workloads: Iterable[tuple[str, str]]) -> str:
    """Label matchers for (namespace, workload) pairs: exact for one, a regex for several.

    A regex over namespaces × workloads may also match pairs nobody asked for; results are
    read by (namespace, workload), so those are ignored.
    """
    pairs = sorted(set(workloads))
    rep = Reporter(reporter).value
    if len(pairs) == 1:
        ns, wl = pairs[0]
        return (
            f'reporter="{rep}",destination_workload_namespace="{label_value(ns)}",'
            f'destination_workload="{label_value(wl)}"'
        )
    namespaces = "|".join(re.escape(n) for n in sorted({ns for ns, _ in pairs}))
    names = "|".join(re.escape(w) for w in sorted({wl for _, wl in pairs}))
    return (
        f'reporter="{rep}",destination_workload_namespace=~"{label_value(namespaces)}",'
        f'destination_workload=~"{label_value(names)}"'
    )


@dataclass(frozen=True)
class BatchKey:
    """What one batched query measures. ``kind`` is a MetricType value or ``"requests"``."""

    kind: str
    reporter: Reporter
    window: timedelta
    quantile: float | None = None


REQUESTS_KIND: Final = "requests"


def metric_key(metric: Metric, window: timedelta) -> BatchKey:
    quantile = metric.quantile if metric.type is MetricType.LATENCY else None
    return BatchKey(metric.type.value, metric.reporter, window, quantile)


def requests_key(metrics: Sequence[Metric], window: timedelta) -> BatchKey:
    """Requests are counted by the reporter the plan's Istio metrics use (destination unless
    every one of them says source)."""
    istio = [m for m in metrics if m.type is not MetricType.CUSTOM]
    source = bool(istio) and all(m.reporter is Reporter.SOURCE for m in istio)
    return BatchKey(REQUESTS_KIND, Reporter.SOURCE if source else Reporter.DESTINATION, window)


def render_key(key: BatchKey, workloads: Iterable[tuple[str, str]]) -> str:
    """The PromQL for ``key`` over ``workloads`` (one or many)."""
    template = REQUESTS if key.kind == REQUESTS_KIND else TEMPLATES[MetricType(key.kind)]
    return template.substitute(
        by=GROUP_BY,
        selector=selector(key.reporter, workloads),
        window=promql_duration(key.window),
        quantile=repr(key.quantile if key.quantile is not None else 0.99),
    )


def render(
    metric: Metric,
    *,
    namespace: str,
    workload: str,
    window: timedelta,
    service: str = "",
    stable: str = "",
    canary: str = "",
) -> str:
    """The PromQL for ``metric`` measured on one ``workload`` over ``window``."""
    if metric.type is MetricType.CUSTOM:
        return render_custom(
            metric,
            namespace=namespace,
            stable=stable,
            canary=canary or workload,
            window=window,
            service=service,
        )
    return render_key(metric_key(metric, window), [(namespace, workload)])


def render_custom(
    metric: Metric, *, namespace: str, stable: str, canary: str, window: timedelta, service: str
) -> str:
    """A custom query with its variables filled in (escaped as label values). ``$service`` is
    the canary host's fully qualified name, as Istio's ``destination_service`` label has it."""
    values = {
        "namespace": label_value(namespace),
        "canary": label_value(canary),
        "stable": label_value(stable),
        "window": promql_duration(window),
        "service": label_value(normalise_host(service, namespace) if service else ""),
    }
    return Template(metric.query or "").substitute(values)


def render_tracks(
    metric: Metric,
    *,
    namespace: str,
    stable: str,
    canary: str,
    window: timedelta,
    service: str = "",
) -> tuple[str, str]:
    """(canary query, stable query); the stable one only where a relative bound needs it."""
    canary_query = render(
        metric,
        namespace=namespace,
        workload=canary,
        window=window,
        service=service,
        stable=stable,
        canary=canary,
    )
    if not metric.relative:
        return canary_query, ""
    stable_query = render(
        metric, namespace=namespace, workload=stable, window=window, service=service, stable=stable
    )
    return canary_query, stable_query


def on_bucket_boundary(bound_ms: float) -> bool:
    """Whether a latency bound sits on one of Istio's histogram bucket boundaries."""
    return any(abs(bound_ms - b) < 1e-9 for b in ISTIO_LATENCY_BUCKETS)
