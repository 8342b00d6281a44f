"""Validation of ``spec.analysis.metrics``: each metric's type, bounds, quantile, query and
reporter, with the field path and the fix for every problem."""

from __future__ import annotations

import string
from collections.abc import Mapping

from canary.core.fields import (
    Doc,
    boolean_value,
    choice_value,
    join,
    known_fields,
    name_value,
    number_value,
    optional_value,
    text_value,
)
from canary.core.names import LABEL
from canary.core.plan import (
    DEFAULT_LATENCY_QUANTILE,
    DEFAULT_REPORTER,
    QUERY_VARIABLES,
    Metric,
    MetricType,
    Reporter,
)
from canary.core.wording import got, show

BOUND_KEYS = ("max", "min", "maxAboveStable", "maxRatioToStable")


RELATIVE_KEYS = ("maxAboveStable", "maxRatioToStable")


METRIC_KEYS = ("name", "type", *BOUND_KEYS, "quantile", "query", "critical", "reporter")


def check_query(doc: Doc, query: str, path: str) -> None:
    """The query is rendered with ``string.Template``: only known ``$name``/``${name}``, and
    ``$$`` for a literal dollar sign (a lone ``$``, e.g. ``"$1"`` in label_replace, would fail
    at render time)."""
    known = ", ".join(f"${v}" for v in QUERY_VARIABLES)
    reported: set[str] = set()
    for match in string.Template.pattern.finditer(query):
        name = match.group("named") or match.group("braced")
        if name is not None and name not in QUERY_VARIABLES and name not in reported:
            reported.add(name)
            doc.add(path, f"unknown variable ${name}", f"the variables are {known}")
        elif match.group("invalid") is not None:
            offset = match.start()
            doc.add(
                path,
                f"a lone $ at character {offset + 1} ({query[offset : offset + 8]}...)",
                f'write $$ for a literal dollar sign (e.g. "$$1" in label_replace); the '
                f"variables are {known}",
            )


def metric_value(doc: Doc, value: object, path: str) -> Metric | None:
    fields = known_fields(
        doc,
        value,
        path,
        METRIC_KEYS,
        {
            "name": "add name: a short DNS-1123 label, e.g. name: error-rate",
            "type": "add type: istio-error-rate, istio-latency or custom",
        },
        fix="e.g. {name: error-rate, type: istio-error-rate, max: 0.01}",
    )
    if fields is None:
        return None
    mark = doc.mark()
    name = name_value(doc, fields["name"], join(path, "name"), LABEL) if "name" in fields else None
    mtype = None
    if "type" in fields:
        mtype = choice_value(
            doc,
            fields["type"],
            join(path, "type"),
            MetricType,
            "istio-error-rate and istio-latency use Istio's metrics; custom runs your query",
        )
    bounds: dict[str, float | None] = {}
    for key in BOUND_KEYS:
        if key in fields:
            bounds[key] = number_value(doc, fields[key], join(path, key))
    if not bounds:
        doc.add(path, "has no bound", f"set at least one of {', '.join(BOUND_KEYS)}")
    low, high = bounds.get("min"), bounds.get("max")
    if low is not None and high is not None and low >= high:
        doc.add(
            join(path, "min"),
            f"min {show(low)} is not less than max {show(high)}",
            "min is the lowest acceptable value and max the highest",
        )
    ratio = bounds.get("maxRatioToStable")
    if ratio is not None and ratio <= 0 and mtype is not MetricType.CUSTOM:
        doc.add(
            join(path, "maxRatioToStable"),
            f"{show(ratio)} is not greater than 0",
            "a ratio of 1.5 lets the canary be 50 % above stable",
        )
    if mtype is MetricType.ERROR_RATE:
        for key in ("max", "min", "maxAboveStable"):
            bound = bounds.get(key)
            if bound is not None and not 0 <= bound <= 1:
                doc.add(
                    join(path, key),
                    f"{show(bound)} is not between 0 and 1",
                    "an error rate is a fraction of requests: 1 % is 0.01",
                )
    if mtype is MetricType.LATENCY:
        for key in ("max", "min", "maxAboveStable"):
            bound = bounds.get(key)
            if bound is not None and bound < 0:
                doc.add(
                    join(path, key),
                    f"{show(bound)} is negative",
                    "latency is in milliseconds and cannot be negative",
                )
    if mtype is MetricType.CUSTOM:
        for key in RELATIVE_KEYS:
            if key in fields:
                doc.add(
                    join(path, key),
                    "a custom metric has no stable value to compare with",
                    "a custom query yields one value; use max/min",
                )
    quantile: float | None = None
    if mtype is MetricType.LATENCY:
        quantile = DEFAULT_LATENCY_QUANTILE
    if "quantile" in fields and mtype is not None:
        q_path = join(path, "quantile")
        if mtype is not MetricType.LATENCY:
            doc.add(
                q_path,
                f"only istio-latency metrics take a quantile, not {mtype.value}",
                "remove quantile",
            )
        else:
            quantile = number_value(doc, fields["quantile"], q_path)
            if quantile is not None and not 0 < quantile < 1:
                doc.add(
                    q_path,
                    f"{show(quantile)} is not strictly between 0 and 1",
                    "e.g. 0.99 for the 99th percentile",
                )
    query: str | None = None
    q_path = join(path, "query")
    if mtype is MetricType.CUSTOM:
        if "query" not in fields:
            doc.add(
                q_path,
                "a custom metric needs a query",
                "add query: a PromQL expression that yields one value; it may use "
                + ", ".join(f"${v}" for v in QUERY_VARIABLES),
            )
        else:
            query = text_value(doc, fields["query"], q_path, "a PromQL query")
            if query is not None:
                check_query(doc, query, q_path)
    elif "query" in fields and mtype is not None:
        doc.add(
            q_path,
            f"only custom metrics take a query, not {mtype.value}",
            "remove query, or set type: custom",
        )
    reporter = Reporter(DEFAULT_REPORTER)
    if "reporter" in fields and mtype is not None:
        r_path = join(path, "reporter")
        if mtype is MetricType.CUSTOM:
            doc.add(
                r_path,
                "a custom metric takes no reporter",
                "the query selects its own series; remove reporter",
            )
        else:
            parsed = choice_value(
                doc,
                fields["reporter"],
                r_path,
                Reporter,
                "destination: the canary's own sidecar reports; source: the callers' sidecars",
            )
            reporter = parsed or reporter
    critical = optional_value(doc, fields, "critical", path, default=False, parse=boolean_value)
    if name is None or mtype is None or critical is None or doc.since(mark):
        return None
    return Metric(
        name=name,
        type=mtype,
        max=bounds.get("max"),
        min=bounds.get("min"),
        max_above_stable=bounds.get("maxAboveStable"),
        max_ratio_to_stable=bounds.get("maxRatioToStable"),
        quantile=quantile,
        query=query,
        critical=critical,
        reporter=reporter,
    )


def metrics_value(doc: Doc, value: object, path: str) -> tuple[Metric, ...] | None:
    if not isinstance(value, list | tuple):
        doc.add(
            path,
            f"expected a list of metrics, got {got(value)}",
            "e.g. metrics: [{name: error-rate, type: istio-error-rate, max: 0.01}]",
        )
        return None
    if not value:
        doc.add(
            path,
            "empty list",
            "list at least one metric, or remove metrics for the defaults "
            "(error-rate, latency-p99)",
        )
        return None
    mark = doc.mark()
    metrics: list[Metric] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(value):
        item_path = f"{path}[{index}]"
        metric = metric_value(doc, item, item_path)
        if isinstance(item, Mapping) and isinstance(item.get("name"), str):
            name = item["name"]
            if name in seen:
                doc.add(
                    f"{item_path}.name",
                    f"{show(name)} is already the name of metrics[{seen[name]}]",
                    "give each metric its own name: logs and events name metrics by it",
                )
            else:
                seen[name] = index
        if metric is not None:
            metrics.append(metric)
    if doc.since(mark):
        return None
    return tuple(metrics)
