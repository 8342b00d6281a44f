"""The PromQL templates, as rendered by canary/queries.py, evaluated by Prometheus's own engine.

`promtool test rules` runs the rendered queries over exact input series; backfilled blocks are
queried through the adapter at a fixed time. Every expected value is computed by hand here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from canary.adapters.prometheus import PrometheusConfig, PrometheusSource
from canary.core.plan import DEFAULT_METRICS, Metric, MetricType, Reporter
from canary.core.ports import CheckRequest
from canary.core.queries import (
    BatchKey,
    label_value,
    metric_key,
    render,
    render_key,
    requests_key,
    selector,
)
from tests.support.istio_exporter import istio_labels
from tests.support.prometheus import PrometheusServer
from tests.support.promtool import T0, OpenMetrics, Promtool, expr_test, series

NS = "shop"
ERROR_RATE, LATENCY = DEFAULT_METRICS
#: 16 s samples and a 64 s window keep every rate exact in binary floating point.
STEP = "16s"
WINDOW = timedelta(seconds=64)


def counter(workload: str, code: str, per_step: int) -> dict[str, str]:
    labels = istio_labels(NS, workload, response_code=code)
    return series("istio_requests_total", labels, f"0+{per_step}x10")


def buckets(workload: str, per_step: dict[str, int]) -> list[dict[str, str]]:
    """Cumulative bucket series growing by ``per_step[le]`` each step."""
    out = []
    for le, n in per_step.items():
        labels = {**istio_labels(NS, workload), "le": le}
        out.append(series("istio_request_duration_milliseconds_bucket", labels, f"0+{n}x10"))
    return out


def group(workload: str) -> dict[str, str]:
    return {"destination_workload_namespace": NS, "destination_workload": workload}


def test_rendered_templates_give_exact_values_in_promtool(promtool: Promtool) -> None:
    # canary shop-v3: per 16 s, 3 × 200 and 1 × 503 → error rate 1/4.
    # stable shop-v1: 200s only → error rate 0 (not an empty result).
    # canary latency: per 16 s, 8 requests ≤ 100 ms and 8 more ≤ 250 ms → cumulative rates
    # 0.5/s and 1/s; p75 is rank 0.75 → 100 + 150 × (0.75 − 0.5) / (1 − 0.5) = 175.
    p75 = Metric(name="latency-p75", type=MetricType.LATENCY, quantile=0.75, max=500)
    series_ = [
        counter("shop-v3", "200", 3),
        counter("shop-v3", "503", 1),
        counter("shop-v1", "200", 4),
        *buckets("shop-v3", {"50": 0, "100": 8, "250": 16, "+Inf": 16}),
    ]
    both = [(NS, "shop-v3"), (NS, "shop-v1")]
    at = "160s"
    result = promtool.test_rules(
        input_series=series_,
        interval=STEP,
        promql_tests=[
            # one workload: the query a human sees in the check event
            expr_test(
                render(ERROR_RATE, namespace=NS, workload="shop-v3", window=WINDOW),
                at,
                [(group("shop-v3"), 0.25)],
            ),
            # the batch: one query, one series per workload
            expr_test(
                render_key(metric_key(ERROR_RATE, WINDOW), both),
                at,
                [(group("shop-v3"), 0.25), (group("shop-v1"), 0.0)],
            ),
            expr_test(
                render(p75, namespace=NS, workload="shop-v3", window=WINDOW),
                at,
                [(group("shop-v3"), 175.0)],
            ),
            # requests in the window: (3 + 1) per 16 s over 64 s
            expr_test(
                render_key(requests_key(DEFAULT_METRICS, WINDOW), both),
                at,
                [(group("shop-v3"), 16.0), (group("shop-v1"), 16.0)],
            ),
            # an unknown workload: an empty result, never a number
            expr_test(render(ERROR_RATE, namespace=NS, workload="nope-v3", window=WINDOW), at),
        ],
    )
    assert result.ok, result.output


def test_zero_traffic_is_nan_not_zero(promtool: Promtool) -> None:
    # requests stopped: the counter is flat, the rate ratio is 0/0 = NaN (no data)
    flat = series("istio_requests_total", istio_labels(NS, "shop-v3"), "5x10")
    query = render(ERROR_RATE, namespace=NS, workload="shop-v3", window=WINDOW)
    result = promtool.test_rules(
        input_series=[flat],
        interval=STEP,
        # NaN != NaN keeps the sample (a 0 would be dropped): count 1 means the ratio is NaN;
        # promtool cannot compare NaN itself
        promql_tests=[expr_test(f"count(({query}) != ({query}))", "160s", [({}, 1.0)])],
    )
    assert result.ok, result.output


def test_a_wrong_expectation_fails_in_promtool(promtool: Promtool) -> None:
    query = render(ERROR_RATE, namespace=NS, workload="shop-v3", window=WINDOW)
    result = promtool.test_rules(
        input_series=[counter("shop-v3", "200", 3), counter("shop-v3", "503", 1)],
        interval=STEP,
        promql_tests=[expr_test(query, "160s", [(group("shop-v3"), 0.2)])],
    )
    assert not result.ok and "FAILED" in result.output


def test_backfilled_blocks_through_the_adapter_give_exact_values(
    backfilled_prometheus: Callable[[str], PrometheusServer],
) -> None:
    # Every 15 s from T0 to T0+60: 150 more requests on stable and canary. The canary answers
    # 15 of each 150 with 503, half its requests at 80 ms (le 100), half at 200 ms (le 250).
    stable = istio_labels(NS, "shop-v1")
    canary_ok = istio_labels(NS, "shop-v3")
    canary_err = istio_labels(NS, "shop-v3", response_code="503")
    points = range(5)
    text = (
        OpenMetrics()
        .counter("istio_requests_total", stable, [(T0 + 15 * i, 150 * i) for i in points])
        .counter("istio_requests_total", canary_ok, [(T0 + 15 * i, 135 * i) for i in points])
        .counter("istio_requests_total", canary_err, [(T0 + 15 * i, 15 * i) for i in points])
        .histogram(
            "istio_request_duration_milliseconds",
            canary_ok,
            [(T0 + 15 * i, {80: 75 * i, 200: 75 * i}) for i in points],
        )
        .histogram(
            "istio_request_duration_milliseconds",
            stable,
            [(T0 + 15 * i, {80: 150 * i}) for i in points],
        )
        .text()
    )
    server = backfilled_prometheus(text)
    p90 = Metric(
        name="latency-p90", type=MetricType.LATENCY, quantile=0.9, max=500, max_ratio_to_stable=3
    )
    request = CheckRequest(
        plan=f"{NS}/shop", rollout_id="r-1", step=0, namespace=NS, stable="shop-v1",
        canary="shop-v3", service="shop", window=timedelta(minutes=1),
        metrics=(ERROR_RATE, p90),
    )  # fmt: skip
    at = datetime.fromtimestamp(T0 + 60, UTC)
    source = PrometheusSource(PrometheusConfig(url=server.url))
    sample = source.sample([request], at)[request.plan]
    assert not sample.error
    # [T0, T0+60] holds both edges (closed in 2.42): increase = 600 exactly
    assert (sample.canary_requests, sample.stable_requests) == (600.0, 600.0)
    err, lat = sample.metrics
    assert err.value == 60 / 600 and err.stable_value == 0.0
    # canary: 600 requests, 300 in (50, 100], 300 in (100, 250]: p90 is rank 540, 240 into the
    # second bucket of 300 → 100 + 150 × 240 / 300 = 220. Stable: all 600 in (50, 100]:
    # rank 540 → 50 + 50 × 540 / 600 = 95.
    assert lat.value == 220.0 and lat.stable_value == 95.0
    assert source.queries_sent == 3  # requests, error rate, latency: one each


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ('a"b', 'a\\"b'),
        ("a\\b", "a\\\\b"),
        ("a\nb", "a\\nb"),
    ],
)
def test_label_values_are_escaped(value: str, escaped: str) -> None:
    assert label_value(value) == escaped


def test_a_selector_cannot_be_widened_by_a_name() -> None:
    hostile = 'x",destination_workload=~".*'
    one = selector(Reporter.DESTINATION, [(NS, hostile)])
    assert one.count('destination_workload="') == 1 and '\\"' in one
    many = selector(Reporter.DESTINATION, [(NS, hostile), (NS, "shop-v1")])
    assert many.count("destination_workload=~") == 1 and '\\"' in many


def test_batches_group_by_type_reporter_quantile_and_window() -> None:
    w = timedelta(seconds=60)
    assert metric_key(ERROR_RATE, w) == BatchKey("istio-error-rate", Reporter.DESTINATION, w)
    assert metric_key(LATENCY, w) == BatchKey("istio-latency", Reporter.DESTINATION, w, 0.99)
    assert metric_key(LATENCY, w) != metric_key(LATENCY, timedelta(seconds=30))
