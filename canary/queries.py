"""PromQL templates for the metric types of DESIGN §2, as data (what to measure, not how).

The Prometheus adapter only runs a rendered query and returns a number. Rendering substitutes
validated names only: plan validation restricts namespaces and workload names to Kubernetes
names, and :func:`label_value` escapes whatever reaches a label matcher anyway.
"""

from __future__ import annotations

from datetime import timedelta
from string import Template
from typing import Final

from canary.plan import Metric, MetricType

#: Requests served by one workload in the window (for minRequests and the traffic rule).
REQUESTS: Final = Template(
    'sum(increase(istio_requests_total{reporter="$reporter",'
    'destination_workload_namespace="$namespace",destination_workload="$workload"}[$window]))'
)

TEMPLATES: Final[dict[MetricType, Template]] = {
    # 5xx share of requests; `or on() vector(0)` keeps "traffic and no 5xx" a 0, not empty.
    MetricType.ERROR_RATE: Template(
        '(sum(rate(istio_requests_total{reporter="$reporter",'
        'destination_workload_namespace="$namespace",destination_workload="$workload",'
        'response_code=~"5.."}[$window])) or on() vector(0))'
        ' / sum(rate(istio_requests_total{reporter="$reporter",'
        'destination_workload_namespace="$namespace",destination_workload="$workload"}[$window]))'
    ),
    MetricType.LATENCY: Template(
        "histogram_quantile($quantile, sum by (le) (rate("
        'istio_request_duration_milliseconds_bucket{reporter="$reporter",'
        'destination_workload_namespace="$namespace",destination_workload="$workload"}[$window])))'
    ),
}


def label_value(value: str) -> str:
    """Escape a string for use inside a double-quoted PromQL label matcher."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def promql_duration(window: timedelta) -> str:
    """A PromQL range duration in whole seconds, e.g. ``60s``."""
    return f"{int(window.total_seconds())}s"


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
    """The PromQL for ``metric`` measured on ``workload`` over ``window``."""
    values = {
        "namespace": label_value(namespace),
        "workload": label_value(workload),
        "window": promql_duration(window),
        "reporter": metric.reporter.value,
        "quantile": repr(metric.quantile) if metric.quantile is not None else "0.99",
        "service": label_value(service),
        "stable": label_value(stable),
        "canary": label_value(canary or workload),
    }
    if metric.type is MetricType.CUSTOM:
        return Template(metric.query or "").substitute(values)
    return TEMPLATES[metric.type].substitute(values)


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


def render_requests(
    *, namespace: str, workload: str, window: timedelta, reporter: str = "destination"
) -> str:
    return REQUESTS.substitute(
        namespace=label_value(namespace),
        workload=label_value(workload),
        window=promql_duration(window),
        reporter=reporter,
    )
