"""The Prometheus test support works: fake Istio exporter, real Prometheus, promtool, backfill.

Expected values are computed by hand in each test. The scraping tests share the session
Prometheus and one wait for a full 10 s window (module fixture ``mesh``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.support.istio_exporter import (
    DURATION_BUCKETS_MS,
    ISTIO_LABELS,
    IstioExporter,
    istio_labels,
)
from tests.support.prometheus import PrometheusServer
from tests.support.promtool import T0, OpenMetrics, Promtool, expr_test, series

NS = "support-test"
WINDOW_S = 10

BIMODAL = [(30.0, 0.9), (600.0, 0.1)]


def selector(workload: str, reporter: str = "destination", extra: str = "") -> str:
    return (
        f'{{reporter="{reporter}",destination_workload_namespace="{NS}",'
        f'destination_workload="{workload}"{extra}}}'
    )


def requests_rate(workload: str, window: int = WINDOW_S, **kw: str) -> str:
    return f"sum(rate(istio_requests_total{selector(workload, **kw)}[{window}s]))"


def error_ratio(workload: str) -> str:
    """An error-ratio query of the single-workload shape (the support test keeps its own copy)."""
    errors = "istio_requests_total" + selector(workload, extra=',response_code=~"5.."')
    return f"(sum(rate({errors}[{WINDOW_S}s])) or on() vector(0)) / {requests_rate(workload)}"


def latency(workload: str, quantile: float) -> str:
    buckets = f"istio_request_duration_milliseconds_bucket{selector(workload)}"
    return f"histogram_quantile({quantile}, sum by (le) (rate({buckets}[{WINDOW_S}s])))"


@pytest.fixture(scope="module")
def mesh(
    istio_exporter: IstioExporter, request: pytest.FixtureRequest
) -> Iterator[tuple[PrometheusServer, IstioExporter]]:
    """Traffic set before the session Prometheus starts, so its start-up overlaps the wait.

    Bookinfo-like: stable reviews-v1 healthy; canary reviews-v3 answers 10 % 503, all in 120 ms;
    reviews-v2 answered once and gets no traffic since; ratings has a two-mode latency.
    """
    since = istio_exporter.set(NS, "reviews-v1", rps=20, latency_ms=40)
    istio_exporter.set(NS, "reviews-v3", rps=10, error_ratio=0.1, latency_ms=120)
    istio_exporter.set(NS, "reviews-v2", rps=0)
    istio_exporter.record(NS, "reviews-v2", 50)
    istio_exporter.set(NS, "ratings-v1", rps=5, latency_ms=BIMODAL)
    istio_exporter.set(NS, "details-v1", rps=30)
    prometheus: PrometheusServer = request.getfixturevalue("prometheus")
    prometheus.wait_for_window(since, WINDOW_S)
    yield prometheus, istio_exporter
    for workload in istio_exporter.workloads():
        if workload.namespace == NS:
            istio_exporter.remove(NS, workload.workload)


# --- the exporter alone ------------------------------------------------------------------------


def test_exposition_uses_istio_names_labels_and_buckets() -> None:
    exporter = IstioExporter()  # not serving: render() is what /metrics returns
    exporter.set("bookinfo", "reviews-v3", rps=0)
    assert "reviews-v3" not in exporter.render(), "no request yet, so no series (as Envoy)"

    exporter.record("bookinfo", "reviews-v3", 10)
    text = exporter.render()
    assert "# TYPE istio_requests_total counter" in text
    assert "# TYPE istio_request_duration_milliseconds histogram" in text
    counters = [line for line in text.splitlines() if line.startswith("istio_requests_total{")]
    assert len(counters) == 2, "one series per reporter; no 503 series without errors"
    labels = dict(re.findall(r'(\w+)="([^"]*)"', counters[0]))
    assert tuple(labels) == ISTIO_LABELS
    assert labels["destination_service"] == "reviews.bookinfo.svc.cluster.local"
    assert (labels["destination_app"], labels["destination_version"]) == ("reviews", "v3")
    assert labels["destination_canonical_revision"] == "v3"
    bounds = re.findall(r'istio_request_duration_milliseconds_bucket\{[^}]*le="([^"]+)"', text)
    assert bounds[:20] == [f"{b:g}" for b in DURATION_BUCKETS_MS] + ["+Inf"]
    assert bounds[18] == "3.6e+06"


def test_counters_advance_exactly_with_time_and_never_go_back() -> None:
    exporter = IstioExporter()
    exporter.set("ns", "api-v1", rps=0)
    exporter.record("ns", "api-v1", 40)  # no errors, 10 ms: the defaults
    exporter.set("ns", "api-v1", error_ratio=0.5, latency_ms=[(3, 0.5), (700, 0.5)])
    exporter.record("ns", "api-v1", 10)  # 5 of each code; of the 5 OK, 2.5 at 3 ms
    exporter.set("ns", "api-v1", rps=0.0)
    (workload,) = exporter.workloads()
    counts = workload.counts_at(workload.since + 3600)  # no rps: an hour changes nothing
    assert counts["200"].requests == 45.0
    assert counts["503"].requests == 5.0
    le_5, le_10 = DURATION_BUCKETS_MS.index(5), DURATION_BUCKETS_MS.index(10)
    assert counts["200"].buckets[le_5] == 2.5
    assert counts["200"].buckets[le_10] == 40 + 2.5
    assert counts["503"].buckets[le_5] == 2.5
    assert counts["200"].latency_sum == 40 * 10 + 2.5 * 3 + 2.5 * 700


# --- the session Prometheus scraping the exporter ----------------------------------------------


def test_rate_equals_the_configured_rps(mesh: tuple[PrometheusServer, IstioExporter]) -> None:
    prometheus, _ = mesh
    assert prometheus.value(requests_rate("reviews-v3")) == pytest.approx(10.0, rel=0.02)
    assert prometheus.value(requests_rate("reviews-v1")) == pytest.approx(20.0, rel=0.02)


def test_error_ratio_equals_the_configured_share(
    mesh: tuple[PrometheusServer, IstioExporter],
) -> None:
    prometheus, _ = mesh
    # Both codes' counters come from one clock reading per scrape: the ratio is exact.
    assert prometheus.value(error_ratio("reviews-v3")) == pytest.approx(0.1, rel=1e-9)
    # No 5xx series at all: `or on() vector(0)` turns "traffic, no errors" into 0, not empty.
    assert prometheus.value(error_ratio("reviews-v1")) == 0.0


def test_latency_quantiles_interpolate_within_istio_buckets(
    mesh: tuple[PrometheusServer, IstioExporter],
) -> None:
    prometheus, _ = mesh
    # Every request takes 120 ms, so all are in (100, 250]: p99 = 100 + 150 × 0.99.
    p99 = prometheus.value(latency("reviews-v3", 0.99))
    assert p99 is not None
    assert 100 < p99 <= 250
    assert p99 == pytest.approx(248.5, rel=1e-9)
    # 90 % at 30 ms (bucket (25, 50]), 10 % at 600 ms (bucket (500, 1000]).
    assert prometheus.value(latency("ratings-v1", 0.99)) == pytest.approx(
        500 + 500 * (0.99 - 0.9) / 0.1, rel=1e-9
    )
    assert prometheus.value(latency("ratings-v1", 0.5)) == pytest.approx(
        25 + 25 * 0.5 / 0.9, rel=1e-9
    )


def test_both_reporters_with_istio_labels(mesh: tuple[PrometheusServer, IstioExporter]) -> None:
    prometheus, _ = mesh
    by_reporter = {
        s.labels["reporter"]: s.value
        for s in prometheus.vector(
            f"sum by (reporter) (rate(istio_requests_total{{destination_workload_namespace="
            f'"{NS}",destination_workload="reviews-v3"}}[{WINDOW_S}s]))'
        )
    }
    assert set(by_reporter) == {"destination", "source"}
    assert by_reporter["source"] == pytest.approx(by_reporter["destination"], rel=1e-9)

    (sample, *_) = prometheus.vector(f"istio_requests_total{selector('reviews-v3')}")
    # Prometheus drops the empty grpc_response_status and adds the target's labels.
    expected = (set(ISTIO_LABELS) - {"grpc_response_status"}) | {"__name__", "job", "instance"}
    assert set(sample.labels) == expected
    assert sample.labels["connection_security_policy"] == "mutual_tls"


def test_no_traffic_gives_nan_and_an_unknown_workload_nothing(
    mesh: tuple[PrometheusServer, IstioExporter],
) -> None:
    prometheus, _ = mesh
    # reviews-v2 answered 50 requests before the window and none since: 0 / 0.
    ratio = prometheus.value(error_ratio("reviews-v2"))
    assert ratio is not None
    assert math.isnan(ratio)
    assert (
        prometheus.value(f"sum(increase(istio_requests_total{selector('reviews-v2')}[10s]))") == 0
    )
    assert prometheus.value(error_ratio("reviews-v9")) is None
    assert prometheus.value(latency("reviews-v9", 0.99)) is None


def test_a_change_shows_in_the_next_window(mesh: tuple[PrometheusServer, IstioExporter]) -> None:
    prometheus, exporter = mesh
    assert prometheus.value(requests_rate("details-v1")) == pytest.approx(30, rel=0.02)
    since = exporter.set(NS, "details-v1", rps=6)
    prometheus.wait_for_window(since, 3)
    assert prometheus.value(requests_rate("details-v1", window=3)) == pytest.approx(6, rel=0.05)
    resets = f"sum(resets(istio_requests_total{selector('details-v1')}[1m]))"
    assert prometheus.value(resets) == 0


def test_down_refuses_connections_then_comes_back(tmp_path: Path) -> None:
    # Its own Prometheus: stopping the session one would leave the next tests ~5 s of no scrapes.
    with PrometheusServer(tmp_path) as prometheus:
        assert prometheus.value("vector(1)") == 1
        with prometheus.down() as url:
            assert not prometheus.running
            with pytest.raises(requests.ConnectionError):
                requests.get(f"{url}/api/v1/query", params={"query": "1"}, timeout=2)
        assert prometheus.value("vector(2)") == 2


# --- promtool: exact values ---------------------------------------------------------------------


def _canary_series(ok_per_minute: int, errors_per_minute: int) -> list[dict[str, str]]:
    return [
        series(
            "istio_requests_total",
            istio_labels(NS, "reviews-v3", response_code="200"),
            f"0+{ok_per_minute}x10",
        ),
        series(
            "istio_requests_total",
            istio_labels(NS, "reviews-v3", response_code="503"),
            f"0+{errors_per_minute}x10",
        ),
    ]


def test_promtool_rule_test_checks_exact_values(promtool: Promtool) -> None:
    # 54 + 6 requests a minute, sampled each minute: over [5m] at 10m, 300 requests, 30 errors.
    ratio = error_ratio("reviews-v3").replace(f"[{WINDOW_S}s]", "[5m]")
    count = f"sum(increase(istio_requests_total{selector('reviews-v3')}[5m]))"
    rules = [{"name": "canary", "rules": [{"record": "canary:error_ratio", "expr": ratio}]}]
    passing = promtool.test_rules(
        input_series=_canary_series(54, 6),
        rule_groups=rules,
        promql_tests=[
            expr_test(ratio, "10m", [({}, 30 / 300)]),
            expr_test(count, "10m", [({}, 300.0)]),
            expr_test("canary:error_ratio", "10m", [({"__name__": "canary:error_ratio"}, 0.1)]),
            expr_test(error_ratio("reviews-v9").replace(f"[{WINDOW_S}s]", "[5m]"), "10m"),
        ],
    )
    assert passing.ok, passing.output

    failing = promtool.test_rules(
        input_series=_canary_series(54, 6),
        promql_tests=[expr_test(ratio, "10m", [({}, 0.11)])],
        name="wrong",
    )
    assert not failing.ok
    assert "FAILED" in failing.output
    assert "exp: {} 1.1E-01" in failing.output


def test_backfilled_blocks_give_exact_values_at_a_fixed_time(
    backfilled_prometheus: Callable[[str], PrometheusServer],
) -> None:
    # Every 15 s from T0 to T0+60: 150 more requests, half at 80 ms (le 100), half at 200 ms
    # (le 250), so the counter reads 0, 150, 300, 450, 600.
    labels = istio_labels(NS, "reviews-v3")
    text = (
        OpenMetrics()
        .counter("istio_requests_total", labels, [(T0 + 15 * i, 150 * i) for i in range(5)])
        .histogram(
            "istio_request_duration_milliseconds",
            labels,
            [(T0 + 15 * i, {80: 75 * i, 200: 75 * i}) for i in range(5)],
        )
        .text()
    )
    prometheus = backfilled_prometheus(text)
    at = T0 + 60

    def increase(window: str) -> str:
        return f"sum(increase(istio_requests_total{selector('reviews-v3')}[{window}]))"

    # Samples on both window edges ([t-1m, t] is closed in 2.42): 600 - 0, no extrapolation.
    assert prometheus.value(increase("1m"), at=at) == 600
    # [20s] holds T0+45 and T0+60: 150 in 15 s, extrapolated over the 5 s to the window's start
    # (less than 1.1 × the 15 s interval): 150 × 20 / 15.
    assert prometheus.value(increase("20s"), at=at) == 200
    buckets = f"istio_request_duration_milliseconds_bucket{selector('reviews-v3')}"

    def quantile(q: float) -> str:
        return f"histogram_quantile({q}, sum by (le) (increase({buckets}[1m])))"

    # 600 requests: 300 in (50, 100], 300 in (100, 250]. p90: rank 540, 240 into the second
    # bucket of 300: 100 + 150 × 240 / 300. p75: rank 450: 100 + 150 × 150 / 300.
    assert prometheus.value(quantile(0.9), at=at) == 100 + 150 * 240 / 300
    assert prometheus.value(quantile(0.75), at=at) == 175
    mean = (
        f"sum(increase(istio_request_duration_milliseconds_sum{selector('reviews-v3')}[1m]))"
        f" / sum(increase(istio_request_duration_milliseconds_count{selector('reviews-v3')}[1m]))"
    )
    assert prometheus.value(mean, at=at) == (300 * 80 + 300 * 200) / 600
    # Five minutes after the last sample the series is gone (lookback delta): empty, not 0.
    assert prometheus.value(f"istio_requests_total{selector('reviews-v3')}", at=at + 301) is None
