"""canary.core.analysis: one check → one verdict, and when a check is due over which window
(docs/design.md §3).

Named table rows, one per rule: verdict precedence FAIL > ERROR > INCONCLUSIVE > PASS, the
relative bounds and when they are skipped, the critical flag, and the step-scoped window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import timedelta

import pytest

from canary.core.analysis import check_window, evaluate
from canary.core.model import ALL_STABLE, MetricsSample, MetricValue, Verdict, Weights
from canary.core.plan import Analysis, Metric, MetricType
from tests.support.builders import (
    ERROR_RATE,
    LATENCY,
    MIN,
    SEC,
    T0,
    analysis,
    custom_metric,
    sample,
    values,
    weights,
)

A = Analysis()  # minRequests 20; error-rate max 0.01 / maxAboveStable 0.005; p99 max 500 / ×1.5
AT_10 = weights(90, 10)
AT_100 = weights(0, 100)

#: error-rate with the critical flag: its first FAIL rolls back at once.
CRITICAL = analysis(metrics=(replace(ERROR_RATE, critical=True), LATENCY))
#: p50 latency with a lower bound: a canary that answers in no time is failing fast.
WITH_MIN = analysis(
    metrics=(Metric(name="latency-p50", type=MetricType.LATENCY, quantile=0.5, min=1.0),)
)


def only(
    name: str, value: float | None, *, stable: float | None = None, error: str = ""
) -> tuple[MetricValue, ...]:
    return (MetricValue(name=name, query="q", value=value, stable_value=stable, error=error),)


@dataclass(frozen=True)
class Case:
    sample: MetricsSample
    expected: Verdict
    weights: Weights = AT_10
    canary_available: bool = True
    analysis: Analysis = A
    critical: bool = False
    reason: str = ""  # a fragment the verdict's reason must contain


def case(id: str, sample: MetricsSample, expected: Verdict, **kw: object) -> object:
    return pytest.param(Case(sample, expected, **kw), id=id)  # type: ignore[arg-type]


EVALUATE = [
    # --- PASS --------------------------------------------------------------------------------
    case("pass--all-within-bounds", sample(), Verdict.PASS),
    case("pass--canary-requests-exactly-min", sample(canary_requests=20.0), Verdict.PASS),
    case(
        "pass--within-relative-bounds",
        sample(error_rate=0.004, stable_error_rate=0.001, latency=300.0, stable_latency=250.0),
        Verdict.PASS,
    ),
    case(
        "pass--ratio-both-zero",
        sample(latency=0.0, stable_latency=0.0),
        Verdict.PASS,
    ),
    # --- FAIL: bounds ------------------------------------------------------------------------
    case("fail--max", sample(error_rate=0.05), Verdict.FAIL, reason="> max 0.01"),
    case(
        "fail--min",
        sample(metrics=only("latency-p50", 0.2)),
        Verdict.FAIL,
        analysis=WITH_MIN,
        reason="< min 1",
    ),
    case(
        "fail--max-above-stable",
        sample(error_rate=0.008, stable_error_rate=0.001),
        Verdict.FAIL,
        reason="maxAboveStable",
    ),
    case(
        "fail--max-ratio-to-stable",
        sample(latency=400.0, stable_latency=200.0),
        Verdict.FAIL,
        reason="maxRatioToStable",
    ),
    case(
        "fail--max-ratio-stable-zero",
        sample(latency=50.0, stable_latency=0.0),
        Verdict.FAIL,
        reason="maxRatioToStable",
    ),
    case(
        "fail--absolute-bound-applies-when-relative-skipped",
        sample(error_rate=0.02, stable_error_rate=None, stable_requests=0.0),
        Verdict.FAIL,
        weights=AT_100,
    ),
    case(
        "fail--absolute-breach-although-stable-value-missing",
        sample(error_rate=0.05, stable_error_rate=None),
        Verdict.FAIL,
    ),
    # --- FAIL: canary unavailable / not reached ------------------------------------------------
    case(
        "fail--canary-unavailable",
        sample(),
        Verdict.FAIL,
        canary_available=False,
        reason="not available",
    ),
    case(
        "fail--canary-unavailable-beats-error",
        sample(error="connection refused", metrics=()),
        Verdict.FAIL,
        canary_available=False,
    ),
    case(
        "fail--canary-unavailable-beats-too-short",
        sample(too_short=True, metrics=()),
        Verdict.FAIL,
        canary_available=False,
    ),
    case(
        "fail--traffic-not-reaching-canary",
        sample(canary_requests=0.0, stable_requests=900.0, error_rate=None, latency=None),
        Verdict.FAIL,
        reason="not reaching the canary",
    ),
    case(
        "fail--traffic-not-reaching-canary-no-series",
        sample(canary_requests=None, stable_requests=180.0, error_rate=None, latency=None),
        Verdict.FAIL,
        reason="not reaching the canary",
    ),
    case(
        "fail--traffic-not-reaching-beats-error",
        sample(
            canary_requests=0.0,
            stable_requests=900.0,
            metrics=only("error-rate", None) + only("latency-p99", None, error="timeout"),
        ),
        Verdict.FAIL,
    ),
    case(
        "fail--breach-beats-error",
        sample(metrics=only("error-rate", 0.5) + only("latency-p99", None, error="timeout")),
        Verdict.FAIL,
    ),
    case(
        "fail--breach-beats-inconclusive",
        sample(metrics=only("error-rate", 0.5) + only("latency-p99", math.nan)),
        Verdict.FAIL,
    ),
    # --- critical ----------------------------------------------------------------------------
    case(
        "fail--critical-metric",
        sample(error_rate=0.05),
        Verdict.FAIL,
        analysis=CRITICAL,
        critical=True,
    ),
    case(
        "fail--non-critical-metric-of-a-critical-plan",
        sample(latency=900.0),
        Verdict.FAIL,
        analysis=CRITICAL,
        critical=False,
    ),
    case(
        "fail--unavailable-is-not-critical",
        sample(),
        Verdict.FAIL,
        analysis=CRITICAL,
        canary_available=False,
        critical=False,
    ),
    # --- ERROR -------------------------------------------------------------------------------
    case("error--sample-failed", sample(error="connection refused", metrics=()), Verdict.ERROR),
    case(
        "error--query-failed",
        sample(metrics=values(error="HTTP 503")),
        Verdict.ERROR,
        reason="query failed",
    ),
    case(
        "error--metric-missing-from-answer",
        sample(metrics=only("error-rate", 0.001, stable=0.001)),
        Verdict.ERROR,
        reason="latency-p99",
    ),
    case(
        "error--beats-inconclusive",
        sample(metrics=only("error-rate", None) + only("latency-p99", None, error="timeout")),
        Verdict.ERROR,
    ),
    # --- INCONCLUSIVE ------------------------------------------------------------------------
    case("inconclusive--value-none", sample(error_rate=None), Verdict.INCONCLUSIVE),
    case("inconclusive--value-nan", sample(latency=math.nan), Verdict.INCONCLUSIVE),
    case("inconclusive--value-plus-inf", sample(latency=math.inf), Verdict.INCONCLUSIVE),
    case("inconclusive--value-minus-inf", sample(error_rate=-math.inf), Verdict.INCONCLUSIVE),
    case(
        "inconclusive--below-min-requests",
        sample(canary_requests=19.0, stable_requests=100.0),
        Verdict.INCONCLUSIVE,
        reason="fewer than minRequests",
    ),
    case(
        "inconclusive--breach-below-min-requests-is-noise",
        sample(canary_requests=5.0, stable_requests=100.0, error_rate=0.2),
        Verdict.INCONCLUSIVE,
    ),
    case(
        "inconclusive--canary-requests-nan",
        sample(canary_requests=math.nan, stable_requests=100.0),
        Verdict.INCONCLUSIVE,
    ),
    case(
        "inconclusive--expected-share-below-min-requests",
        # 170 stable requests at 90/10 → the canary's share is ~18.9 < 20: not a FAIL
        sample(canary_requests=0.0, stable_requests=170.0, error_rate=None, latency=None),
        Verdict.INCONCLUSIVE,
    ),
    case(
        "inconclusive--no-traffic-at-100-percent",
        sample(canary_requests=0.0, stable_requests=0.0, error_rate=None, latency=None),
        Verdict.INCONCLUSIVE,
        weights=AT_100,
    ),
    case(
        "inconclusive--no-traffic-anywhere",
        sample(canary_requests=0.0, stable_requests=0.0, error_rate=None, latency=None),
        Verdict.INCONCLUSIVE,
    ),
    case(
        "inconclusive--window-too-short",
        sample(too_short=True, metrics=()),
        Verdict.INCONCLUSIVE,
        reason="two scrape intervals",
    ),
    case(
        "inconclusive--too-short-beats-error",
        sample(too_short=True, error="connection refused", metrics=()),
        Verdict.INCONCLUSIVE,
    ),
    case(
        "inconclusive--stable-has-traffic-but-no-value",
        sample(stable_error_rate=None),
        Verdict.INCONCLUSIVE,
        reason="stable has traffic but no value",
    ),
    case(
        "inconclusive--one-metric-without-data",
        sample(metrics=values()[:1] + only("latency-p99", math.nan)),
        Verdict.INCONCLUSIVE,
    ),
    # --- relative bounds skipped when stable serves fewer than minRequests --------------------
    case(
        "pass--relative-skipped-at-100-percent",
        # 0.009 is 0.009 above stable's 0 (> maxAboveStable 0.005), but stable has no traffic
        sample(error_rate=0.009, stable_error_rate=0.0, stable_requests=0.0),
        Verdict.PASS,
        weights=AT_100,
        reason="all metrics within bounds",
    ),
    case(
        "pass--relative-skipped-stable-below-min-requests",
        sample(latency=400.0, stable_latency=100.0, stable_requests=19.0),
        Verdict.PASS,
    ),
    case(
        "pass--relative-skipped-stable-value-missing-ok",
        sample(stable_error_rate=None, stable_latency=None, stable_requests=5.0),
        Verdict.PASS,
    ),
    # --- custom metrics count their own population ---------------------------------------------
    case(
        "pass--custom-within-bound",
        sample(metrics=only("queue-depth", 1.0)),
        Verdict.PASS,
        analysis=analysis(metrics=(custom_metric(),)),
    ),
    case(
        "fail--custom-above-max",
        sample(metrics=only("queue-depth", 7.0)),
        Verdict.FAIL,
        analysis=analysis(metrics=(custom_metric(),)),
    ),
]


@pytest.mark.parametrize("c", EVALUATE)
def test_evaluate(c: Case) -> None:
    result = evaluate(c.analysis, c.sample, canary_available=c.canary_available, weights=c.weights)
    assert result.verdict is c.expected, result.reason
    assert result.critical is c.critical
    assert c.reason in result.reason


def test_custom_only_plan_without_canary_traffic_is_not_a_pass() -> None:
    """Regression: fewer canary requests than minRequests is INCONCLUSIVE for custom metrics too;
    missing data is never a pass (docs/design.md §2, §3)."""
    only_custom = analysis(metrics=(custom_metric(),))
    idle_canary = sample(canary_requests=0.0, stable_requests=0.0, metrics=only("queue-depth", 0.0))
    result = evaluate(only_custom, idle_canary, canary_available=True, weights=AT_100)
    assert result.verdict is Verdict.INCONCLUSIVE


def test_check_result_carries_what_the_events_need() -> None:
    result = evaluate(A, sample(error_rate=0.05), canary_available=True, weights=AT_10)
    fields = result.to_fields()
    assert fields["verdict"] == "FAIL"
    assert fields["window"] == "1m"  # as a plan writes it (format_duration)
    assert (fields["canary_requests"], fields["stable_requests"]) == (100.0, 900.0)
    by_name = {m["name"]: m for m in fields["metrics"]}
    assert by_name["error-rate"]["bounds"] == {"max": 0.01, "maxAboveStable": 0.005}
    assert by_name["error-rate"]["value"] == 0.05
    assert by_name["error-rate"]["stable_value"] == 0.001
    assert by_name["error-rate"]["query"] == "error_rate_query"
    assert by_name["latency-p99"]["verdict"] == "PASS"


def test_relative_bounds_are_not_reported_when_skipped() -> None:
    result = evaluate(A, sample(stable_requests=0.0), canary_available=True, weights=AT_100)
    bounds = {m.name: m.bounds for m in result.metrics}
    assert bounds == {"error-rate": {"max": 0.01}, "latency-p99": {"max": 500.0}}


def test_traffic_not_reaching_is_judged_against_the_stable_share_of_the_step() -> None:
    # 180 stable requests at 50/50 → ~180 expected on the canary; at 90/10 → ~20: both FAIL.
    silent = sample(canary_requests=0.0, stable_requests=180.0, error_rate=None, latency=None)
    for w in (weights(50, 50), AT_10):
        assert evaluate(A, silent, canary_available=True, weights=w).verdict is Verdict.FAIL
    # with all traffic on stable (a paused rollout) nothing is expected of the canary
    result = evaluate(A, silent, canary_available=True, weights=ALL_STABLE)
    assert result.verdict is Verdict.INCONCLUSIVE


# --- check_window --------------------------------------------------------------------------------

SCRAPE = 15 * SEC


@dataclass(frozen=True)
class Window:
    since_step: timedelta  # now - step_started_at
    last_check_ago: timedelta | None  # now - last_check_at (None: never checked)
    due: bool
    window: timedelta | None = None
    analysis: Analysis = A
    scrape: timedelta = SCRAPE


def window_case(id: str, *args: object, **kw: object) -> object:
    return pytest.param(Window(*args, **kw), id=id)  # type: ignore[arg-type]


WINDOWS = [
    window_case("settling--just-written", 0 * SEC, None, False),
    window_case("settling--one-second-left", 29 * SEC, None, False),
    window_case("settle-over--two-scrapes", 30 * SEC, None, True, 30 * SEC),
    window_case("since-step--three-scrapes", 45 * SEC, None, True, 45 * SEC),
    window_case("since-step--rounded-down-to-scrapes", 59 * SEC, None, True, 45 * SEC),
    window_case("window-caps-the-range", 10 * MIN, None, True, MIN),
    window_case(
        "window--rounded-down-to-scrapes",
        10 * MIN,
        None,
        True,
        45 * SEC,
        analysis=analysis(window=50 * SEC),
    ),
    window_case(
        "window--scrape-30s",
        10 * MIN,
        None,
        True,
        MIN,
        scrape=30 * SEC,
    ),
    window_case("interval--not-elapsed", 3 * MIN, 20 * SEC, False),
    window_case("interval--elapsed", 3 * MIN, 30 * SEC, True, MIN),
    window_case("interval--tolerance-1s-early", 3 * MIN, 29 * SEC, True, MIN),
    window_case("interval--beyond-tolerance", 3 * MIN, 28 * SEC, False),
    window_case(
        "interval--tolerance-is-a-tenth-of-short-intervals",
        3 * MIN,
        timedelta(seconds=4.4),
        False,
        analysis=analysis(interval=5 * SEC),
    ),
    window_case(
        "interval--tenth-of-short-interval-is-tolerated",
        3 * MIN,
        timedelta(seconds=4.5),
        True,
        MIN,
        analysis=analysis(interval=5 * SEC),
    ),
    window_case(
        "interval--last-check-was-an-earlier-step",
        40 * SEC,
        50 * SEC,
        True,
        30 * SEC,
        analysis=analysis(interval=2 * MIN),
    ),
    window_case(
        "too-short--one-scrape",
        20 * SEC,
        None,
        True,
        None,
        analysis=analysis(settle=10 * SEC),
    ),
    window_case(
        "too-short--a-hair-below-two-scrapes",
        29 * SEC,
        None,
        True,
        None,
        analysis=analysis(settle=0 * SEC),
    ),
    window_case(
        "too-short--settle-shorter-than-scrapes",
        30 * SEC,
        None,
        True,
        None,
        analysis=analysis(settle=20 * SEC),
        scrape=20 * SEC,
    ),
]


@pytest.mark.parametrize("w", WINDOWS)
def test_check_window(w: Window) -> None:
    now = T0 + w.since_step
    last = None if w.last_check_ago is None else now - w.last_check_ago
    plan = check_window(w.analysis, T0, last, now, w.scrape)
    assert (plan.due, plan.window) == (w.due, w.window), plan.reason
    if not plan.due or plan.window is None:
        assert plan.reason


def test_effective_window_is_never_longer_than_the_step() -> None:
    for seconds in range(30, 200):
        plan = check_window(A, T0, None, T0 + seconds * SEC, SCRAPE)
        assert plan.window is not None
        assert plan.window <= seconds * SEC
        assert plan.window <= A.window
        assert plan.window.total_seconds() % SCRAPE.total_seconds() == 0
