"""One check: a :class:`~canary.core.model.MetricsSample` in, one verdict out (docs/design.md §3).

Verdict precedence: **FAIL** if any metric breaches a bound, the canary Deployment is not fully
available, or traffic is not reaching the canary; else **ERROR** if any query failed; else
**INCONCLUSIVE** if any metric has no data (empty, NaN, ±Inf, fewer than ``minRequests``);
else **PASS**. Missing data is never a pass.

Also here: when a check is due and over which window (:func:`check_window`), because the window
is scoped to the current step: no check during ``settle``, and never a window that reaches back
before the step's weights were written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from canary.core.durations import format_duration
from canary.core.model import MetricsSample, MetricValue, Verdict, Weights
from canary.core.plan import Analysis, Metric
from canary.core.render import number

#: Istio's Prometheus scrapes every 15 s by default (docs/design.md §5 --scrape-interval).
DEFAULT_SCRAPE_INTERVAL = timedelta(seconds=15)
#: A tick that fires a hair early (scheduler jitter) must not skip a whole interval.
INTERVAL_TOLERANCE = timedelta(seconds=1)
#: rate() needs two samples per series: a window must span at least two scrapes.
MIN_SCRAPES_PER_WINDOW = 2


@dataclass(frozen=True)
class WindowPlan:
    """Whether a check is due now, and over which window."""

    due: bool
    window: timedelta | None = None  # None while due: the window is too short (INCONCLUSIVE)
    reason: str = ""


def not_due(
    analysis: Analysis, step_started_at: datetime, last_check_at: datetime | None, now: datetime
) -> str:
    """Why no check may judge the step now ("" when one may): settling after the weight write,
    or the interval since the last check has not passed."""
    since_step = now - step_started_at
    if since_step < analysis.settle:
        left = math.ceil((analysis.settle - since_step).total_seconds())
        return f"settling for {format_duration(timedelta(seconds=left))} more"
    if (
        last_check_at is not None
        and last_check_at >= step_started_at
        and now - last_check_at
        < analysis.interval - min(INTERVAL_TOLERANCE, analysis.interval / 10)
    ):
        return "not yet due"
    return ""


def inadmissible(
    analysis: Analysis,
    window: timedelta,
    step_started_at: datetime,
    last_check_at: datetime | None,
    now: datetime,
) -> str:
    """Why a sample over ``window`` may not judge the current step ("" when it may): it is not
    due, or its window reaches back before the step's weights were written (docs/design.md §3)."""
    why = not_due(analysis, step_started_at, last_check_at, now)
    if why:
        return why
    if window > now - step_started_at:
        return "the window reaches back before this step's weights were written"
    return ""


def check_window(
    analysis: Analysis,
    step_started_at: datetime,
    last_check_at: datetime | None,
    now: datetime,
    scrape_interval: timedelta,
) -> WindowPlan:
    """When to check and over which window (docs/design.md §3: "a check judges only the
    current step")."""
    why = not_due(analysis, step_started_at, last_check_at, now)
    if why:
        return WindowPlan(due=False, reason=why)
    effective = min(analysis.window, now - step_started_at)
    scrape = scrape_interval.total_seconds()
    if scrape > 0:
        effective = timedelta(seconds=(effective.total_seconds() // scrape) * scrape)
    if effective < scrape_interval * MIN_SCRAPES_PER_WINDOW:
        return WindowPlan(
            due=True,
            reason=(
                f"window {format_duration(effective)} is shorter than two scrape intervals "
                f"({format_duration(scrape_interval)} each)"
            ),
        )
    return WindowPlan(due=True, window=effective)


@dataclass(frozen=True)
class MetricResult:
    """One metric judged: the numbers and the bounds that decided its verdict."""

    name: str
    verdict: Verdict
    reason: str
    query: str = ""
    value: float | None = None
    stable_query: str = ""
    stable_value: float | None = None
    bounds: dict[str, float] = field(default_factory=dict)
    critical: bool = False

    def to_fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "verdict": self.verdict.value,
            "value": self.value,
            "bounds": self.bounds,
            "reason": self.reason,
            "query": self.query,
        }
        if self.stable_query:
            out["stable_value"] = self.stable_value
            out["stable_query"] = self.stable_query
        if self.critical:
            out["critical"] = True
        return out


@dataclass(frozen=True)
class CheckResult:
    verdict: Verdict
    reason: str
    metrics: tuple[MetricResult, ...] = ()
    canary_requests: float | None = None
    stable_requests: float | None = None
    window: timedelta | None = None
    critical: bool = False  # a critical metric FAILed: roll back at once
    #: a query the plan got wrong (HTTP 4xx, several series, a range vector): a config error,
    #: never counted toward errorLimit (docs/design.md §3: an invalid plan pauses on stable)
    misconfigured: str = ""

    def to_fields(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "reason": self.reason,
            "window": format_duration(self.window) if self.window else None,
            "canary_requests": self.canary_requests,
            "stable_requests": self.stable_requests,
            "metrics": [m.to_fields() for m in self.metrics],
        }


def usable(value: float | None) -> bool:
    """A number Prometheus really answered: not missing, NaN or ±Inf."""
    return value is not None and math.isfinite(value)


def _bounds(metric: Metric, relative: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    if metric.max is not None:
        out["max"] = metric.max
    if metric.min is not None:
        out["min"] = metric.min
    if relative and metric.max_above_stable is not None:
        out["maxAboveStable"] = metric.max_above_stable
    if relative and metric.max_ratio_to_stable is not None:
        out["maxRatioToStable"] = metric.max_ratio_to_stable
    return out


def _fmt(value: float) -> str:
    """Numbers in verdict reasons read like every other number canary shows."""
    return number(value)


def judge_metric(
    metric: Metric,
    value: MetricValue | None,
    *,
    enough_canary: bool,
    enough_stable: bool,
) -> MetricResult:
    """One metric's verdict. ``enough_*``: that track served at least ``minRequests``."""
    relative = metric.relative and enough_stable
    bounds = _bounds(metric, relative)
    base: dict[str, Any] = {"name": metric.name, "bounds": bounds, "critical": metric.critical}
    if value is None:
        return MetricResult(verdict=Verdict.ERROR, reason="no answer for this metric", **base)
    base |= {"query": value.query, "value": value.value}
    if metric.relative:
        base |= {"stable_query": value.stable_query, "stable_value": value.stable_value}
    if value.error:
        return MetricResult(verdict=Verdict.ERROR, reason=f"query failed: {value.error}", **base)
    # Fewer canary requests than minRequests: no metric, custom ones included, has data.
    if not enough_canary:
        return MetricResult(
            verdict=Verdict.INCONCLUSIVE, reason="fewer canary requests than minRequests", **base
        )
    if not usable(value.value):
        return MetricResult(
            verdict=Verdict.INCONCLUSIVE, reason=f"no data (value {value.value})", **base
        )
    v = float(value.value)  # type: ignore[arg-type]
    breaches: list[str] = []
    if metric.max is not None and v > metric.max:
        breaches.append(f"{_fmt(v)} > max {_fmt(metric.max)}")
    if metric.min is not None and v < metric.min:
        breaches.append(f"{_fmt(v)} < min {_fmt(metric.min)}")
    if relative:
        if not usable(value.stable_value):
            if not breaches:
                return MetricResult(
                    verdict=Verdict.INCONCLUSIVE,
                    reason=f"stable has traffic but no value ({value.stable_value})",
                    **base,
                )
        else:
            s = float(value.stable_value)  # type: ignore[arg-type]
            if metric.max_above_stable is not None and v - s > metric.max_above_stable:
                breaches.append(
                    f"{_fmt(v)} exceeds stable {_fmt(s)} by {_fmt(v - s)} "
                    f"> maxAboveStable {_fmt(metric.max_above_stable)}"
                )
            if metric.max_ratio_to_stable is not None:
                ratio = v / s if s > 0 else (math.inf if v > 0 else 1.0)
                if ratio > metric.max_ratio_to_stable:
                    breaches.append(
                        f"{_fmt(v)} is {_fmt(ratio)}× stable {_fmt(s)} "
                        f"> maxRatioToStable {_fmt(metric.max_ratio_to_stable)}"
                    )
    if breaches:
        return MetricResult(verdict=Verdict.FAIL, reason="; ".join(breaches), **base)
    skipped = (
        " (relative bounds skipped: stable below minRequests)"
        if metric.relative and not relative
        else ""
    )
    return MetricResult(verdict=Verdict.PASS, reason=f"within bounds{skipped}", **base)


def evaluate(
    analysis: Analysis,
    sample: MetricsSample,
    *,
    canary_available: bool,
    canary_unavailable_reason: str = "",
    weights: Weights | None,
) -> CheckResult:
    """Judge one check of the current step; see the module docstring for the precedence."""
    common: dict[str, Any] = {
        "canary_requests": sample.canary_requests,
        "stable_requests": sample.stable_requests,
        "window": sample.window,
    }
    if not canary_available:
        why = canary_unavailable_reason or "not all replicas are available"
        return CheckResult(Verdict.FAIL, f"canary Deployment not available: {why}", **common)
    if sample.too_short:
        return CheckResult(
            Verdict.INCONCLUSIVE, "window shorter than two scrape intervals", **common
        )
    if sample.error:
        return CheckResult(Verdict.ERROR, f"metrics unavailable: {sample.error}", **common)

    minimum = analysis.min_requests
    canary_n = sample.canary_requests if usable(sample.canary_requests) else None
    stable_n = sample.stable_requests if usable(sample.stable_requests) else None
    enough_canary = canary_n is not None and canary_n >= minimum
    enough_stable = stable_n is not None and stable_n >= minimum

    by_name = {m.name: m for m in sample.metrics}
    results = tuple(
        judge_metric(
            m, by_name.get(m.name), enough_canary=enough_canary, enough_stable=enough_stable
        )
        for m in analysis.metrics
    )
    common["metrics"] = results

    failed = [r for r in results if r.verdict is Verdict.FAIL]
    if failed:
        critical = any(r.critical for r in failed)
        reason = "; ".join(f"{r.name}: {r.reason}" for r in failed)
        return CheckResult(Verdict.FAIL, reason, critical=critical, **common)

    # Traffic not reaching the canary: stable's traffic says the canary's share should have
    # reached minRequests, yet the canary shows none (misrouting, a broken sidecar, ...).
    # (``weights`` None: not known, e.g. `canary check` without a cluster; the rule is skipped.)
    if (
        weights is not None
        and weights.canary > 0
        and weights.stable > 0
        and stable_n is not None
        and not canary_n
    ):
        expected = stable_n * weights.canary / weights.stable
        if expected >= minimum:
            return CheckResult(
                Verdict.FAIL,
                f"traffic is not reaching the canary: stable served {number(round(stable_n))} "
                f"requests, so the canary's {weights.canary}% share should be "
                f"~{number(round(expected))}, but it "
                "served none",
                **common,
            )

    wrong = [v for v in sample.metrics if v.misconfigured]
    if wrong:
        reason = "; ".join(f"{v.name}: {v.error}" for v in wrong)
        return CheckResult(Verdict.ERROR, reason, misconfigured=reason, **common)
    errored = [r for r in results if r.verdict is Verdict.ERROR]
    if errored:
        return CheckResult(
            Verdict.ERROR, "; ".join(f"{r.name}: {r.reason}" for r in errored), **common
        )
    inconclusive = [r for r in results if r.verdict is Verdict.INCONCLUSIVE]
    if inconclusive:
        reason = "; ".join(f"{r.name}: {r.reason}" for r in inconclusive)
        if not enough_canary:
            reason = (
                f"canary served {number(canary_n or 0)} requests in the window, fewer than "
                f"minRequests ({minimum})"
            )
        if sample.no_data:  # the source knows why nobody has data: say so, not only "no data"
            reason = f"{reason} — {sample.no_data}"
        return CheckResult(Verdict.INCONCLUSIVE, reason, **common)
    return CheckResult(Verdict.PASS, "all metrics within bounds", **common)
