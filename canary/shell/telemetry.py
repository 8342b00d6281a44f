"""canary's own Prometheus metrics, served on ``/metrics`` by :mod:`canary.adapters.httpserver`.

:class:`Telemetry` owns one :class:`prometheus_client.CollectorRegistry` (never the global one,
so a test or an embedding program can have many). It learns what happened in two ways:

* as an :data:`canary.core.events.Listener` of the one emitter: every emitted event arrives as the
  flat record of its log line (``{"event", "level", "plan": "ns/name", "phase", "at",
  **fields}``); the check, rollback and rollout-outcome events feed the counters and histograms;
* through hooks the daemon calls: :meth:`Telemetry.observe_state` after each tick for each plan,
  :meth:`Telemetry.forget` when a plan is removed, :meth:`Telemetry.helm_call` around each helm
  run, :meth:`Telemetry.tick_completed` at the end of each tick.

Metrics (labels in braces; every label takes a bounded set of values: ``plan`` is a plan the
controller serves, ``metric`` a metric name of that plan, the others are enumerations):

``canary_rollout_phase{plan,phase}`` gauge
    1 for the plan's current phase, 0 for the eight others (Phase values: Idle, Pending, ...).
    ``sum by (phase) (canary_rollout_phase)`` counts rollouts per phase.
``canary_canary_weight{plan}`` gauge
    Per cent of traffic the controller last gave the canary (state ``weights``).
``canary_checks_total{plan,verdict}`` counter
    Checks by verdict (PASS, FAIL, ERROR, INCONCLUSIVE), from the ``check.*`` events.
``canary_rollbacks_total{plan,result}`` counter
    ``started`` per ``rollback.started`` (an ``abort`` of a RollbackFailed rollout starts one
    more), ``succeeded`` per ``rollout.rolled_back``, ``failed`` per ``rollout.rollback_failed``.
``canary_rollout_duration_seconds{outcome}`` histogram
    From ``rollout.started`` to the event that ended the rollout, by Outcome value
    (Succeeded, RolledBack, RollbackFailed, Superseded, Bypassed, Abandoned). Measured between
    the events' ``at`` times, so a rollout that started before this process did is not observed.
``canary_time_to_safe_seconds`` histogram
    From the first failed check of a step to all traffic on stable (``secondsSinceFirstFail``
    of ``rollback.traffic_reverted``); rollbacks with no failed check (abort, canary down,
    progressDeadline) carry none and are not observed.
``canary_metric_value{plan,metric,track}`` gauge
    The last value of each plan metric for ``track`` canary and stable, from the check events;
    NaN when that check had no data. A plan's series are dropped when a new rollout starts.
``canary_helm_duration_seconds{command,result}`` histogram
    Wall time of each helm run (``command`` history | rollback, ``result`` ok | error).
``canary_seconds_since_last_tick`` gauge
    Computed at scrape time from :meth:`Telemetry.tick_completed` (before the first tick: since
    this object was made); a growing value means a wedged tick loop.
``canary_plan_ticks_total`` counter
    Plans decided, one per plan per tick (:meth:`Telemetry.tick_completed`'s ``plans``).
``canary_cache_reads_total{result}`` counter
    Reads of the watch-fed cache (:meth:`Telemetry.watch_cache`): ``hit`` answered from
    memory, ``miss`` sent to the API server (not listed yet, watch failing, after a conflict).
``canary_telemetry_errors_total`` counter
    Records this module failed to digest (a bug of ours: logged once, then only counted).

The ``process_*`` and ``python_*`` metrics of prometheus_client's standard collectors are
registered too unless ``process_metrics=False``.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any, Final, TypeGuard

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from canary.core import events as ev
from canary.core.model import Outcome, Phase, RolloutState, Verdict
from canary.core.plan import ReleaseRef
from canary.core.ports import ReleaseManager
from canary.core.timestamps import parse_iso

log = structlog.get_logger("canary")

#: The default plan (3 steps × 2 m hold after a 30 s settle) succeeds in about 8 minutes, and a
#: breach at the first step rolls back within 1–3 minutes: fine buckets from 1 to 20 minutes.
#: A pause waits for a human, so the tail reaches a day.
ROLLOUT_DURATION_BUCKETS: Final = (
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    900.0,
    1200.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    43200.0,
    86400.0,
)
#: failureLimit 2 at a 30 s interval puts traffic on stable about 30 s (plus one tick) after
#: the first failed check; a critical metric does it on the same tick (0 s). Dense buckets
#: around the 30–60 s where a "safe within a minute" objective sits; the tail to 10 m shows
#: reverts held back because stable was unavailable.
TIME_TO_SAFE_BUCKETS: Final = (
    1.0,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    45.0,
    60.0,
    90.0,
    120.0,
    180.0,
    300.0,
    600.0,
)
#: ``helm history`` reads release Secrets: well under a second, seconds under load.
#: ``helm rollback --wait`` waits for the Deployments up to the plan's rollback.timeout (5 m
#: by default), so the tail reaches past it to show timeouts.
HELM_DURATION_BUCKETS: Final = (
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    180.0,
    300.0,
    600.0,
)

#: The two tracks of ``canary_metric_value``.
CANARY: Final = "canary"
STABLE: Final = "stable"
#: ``result`` of ``canary_rollbacks_total``.
ROLLBACK_STARTED: Final = "started"
ROLLBACK_SUCCEEDED: Final = "succeeded"
ROLLBACK_FAILED: Final = "failed"
ROLLBACK_RESULTS: Final = (ROLLBACK_STARTED, ROLLBACK_SUCCEEDED, ROLLBACK_FAILED)
#: ``result`` of ``canary_helm_duration_seconds``.
HELM_OK: Final = "ok"
HELM_ERROR: Final = "error"

_CHECK_VERDICTS: Final = {
    ev.CHECK_PASSED: Verdict.PASS,
    ev.CHECK_FAILED: Verdict.FAIL,
    ev.CHECK_ERROR: Verdict.ERROR,
    ev.CHECK_INCONCLUSIVE: Verdict.INCONCLUSIVE,
}
#: Events that end a rollout, with its outcome. ``plan.deleted`` ends one only if it was still
#: under way (the start is still tracked); a Succeeded rollout ended at ``rollout.succeeded``.
_ENDINGS: Final = ev.ROLLOUT_ENDINGS


class Telemetry:
    """The controller's metrics: an emitter listener plus the daemon's hooks.

    Thread-safe: events arrive on the tick thread, hooks may come from helm workers, and
    scrapes from the HTTP server's threads.
    """

    def __init__(
        self,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        process_metrics: bool = True,
    ) -> None:
        self.registry = CollectorRegistry()
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._created = monotonic()
        self._last_tick: float | None = None
        self._failed_once = False
        #: plan → (rolloutId, started at) of the rollout under way, for its duration
        self._starts: dict[str, tuple[str, datetime]] = {}
        #: plan → (metric, track) label pairs set in canary_metric_value, to drop them later
        self._metric_labels: dict[str, set[tuple[str, str]]] = {}
        #: plans whose counters were initialised at 0 (so rate() sees their first increment)
        self._known: set[str] = set()

        r = self.registry
        self.rollout_phase = Gauge(
            "canary_rollout_phase",
            "1 for the plan's current phase, 0 for the others.",
            ["plan", "phase"],
            registry=r,
        )
        self.canary_weight = Gauge(
            "canary_canary_weight",
            "Per cent of traffic the controller last gave the canary.",
            ["plan"],
            registry=r,
        )
        self.checks = Counter(
            "canary_checks_total",
            "Checks by verdict.",
            ["plan", "verdict"],
            registry=r,
        )
        self.rollbacks = Counter(
            "canary_rollbacks_total",
            "Rollbacks started, succeeded (rolled back) and failed (a human is needed).",
            ["plan", "result"],
            registry=r,
        )
        self.rollout_duration = Histogram(
            "canary_rollout_duration_seconds",
            "Time from rollout.started to the event that ended the rollout, by outcome.",
            ["outcome"],
            buckets=ROLLOUT_DURATION_BUCKETS,
            registry=r,
        )
        self.time_to_safe = Histogram(
            "canary_time_to_safe_seconds",
            "Time from the first failed check to all traffic on stable.",
            buckets=TIME_TO_SAFE_BUCKETS,
            registry=r,
        )
        self.metric_value = Gauge(
            "canary_metric_value",
            "Last value of each plan metric per track (NaN: no data).",
            ["plan", "metric", "track"],
            registry=r,
        )
        self.helm_duration = Histogram(
            "canary_helm_duration_seconds",
            "Wall time of helm runs by command and result.",
            ["command", "result"],
            buckets=HELM_DURATION_BUCKETS,
            registry=r,
        )
        self.tick_age_gauge = Gauge(
            "canary_seconds_since_last_tick",
            "Seconds since the last completed tick (since start before the first one).",
            registry=r,
        )
        self.tick_age_gauge.set_function(self.tick_age)
        self.plan_ticks = Counter(
            "canary_plan_ticks_total",
            "Plans decided, one per plan per tick.",
            registry=r,
        )
        self.errors = Counter(
            "canary_telemetry_errors_total",
            "Event records telemetry failed to digest (a bug; the first one is logged).",
            registry=r,
        )
        if process_metrics:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)  # registers nothing where gc.get_stats is missing

    # -- the emitter listener ----------------------------------------------------------------

    def __call__(self, record: Mapping[str, Any]) -> None:
        """Digest one emitted event. Never raises: a bug here must not break the emitter (and
        with it the tick); the first failure is logged with its traceback, later ones counted."""
        try:
            self._digest(record)
        except Exception:
            self.errors.inc()
            with self._lock:
                first = not self._failed_once
                self._failed_once = True
            if first:  # further failures are only counted in canary_telemetry_errors_total
                log.error(
                    ev.TELEMETRY_FAILED,
                    record=_event_name(record),
                    error=repr(sys.exc_info()[1]),
                    exc_info=True,
                )

    def _digest(self, record: Mapping[str, Any]) -> None:
        name = record.get("event")
        plan = record.get("plan")
        if not isinstance(name, str) or not isinstance(plan, str) or not plan:
            return
        verdict = _CHECK_VERDICTS.get(name)
        if verdict is not None:
            self._init_plan(plan)
            self.checks.labels(plan, verdict.value).inc()
            self._metric_values(plan, record.get("metrics"))
            return
        if name == ev.ROLLOUT_STARTED:
            self._init_plan(plan)
            self._drop_metric_values(plan)
            at = parse_iso(record.get("at"))
            with self._lock:
                if at is None:
                    self._starts.pop(plan, None)
                else:
                    self._starts[plan] = (str(record.get("rolloutId", "")), at)
            return
        if name == ev.ROLLBACK_STARTED:
            self._init_plan(plan)
            self.rollbacks.labels(plan, ROLLBACK_STARTED).inc()
            return
        if name == ev.ROLLBACK_TRAFFIC_REVERTED:
            seconds = record.get("secondsSinceFirstFail")
            if _is_number(seconds) and seconds >= 0:
                self.time_to_safe.observe(float(seconds))
            return
        outcome = _ENDINGS.get(name)
        if outcome is None:
            return
        if outcome is Outcome.ROLLED_BACK:
            self._init_plan(plan)
            self.rollbacks.labels(plan, ROLLBACK_SUCCEEDED).inc()
        elif outcome is Outcome.ROLLBACK_FAILED:
            self._init_plan(plan)
            self.rollbacks.labels(plan, ROLLBACK_FAILED).inc()
        self._ended(plan, outcome, record)

    def _ended(self, plan: str, outcome: Outcome, record: Mapping[str, Any]) -> None:
        """The rollout under way ended: observe its duration once (the first ending wins, so
        RollbackFailed then RolledBack after an ``abort`` is one rollout, not two)."""
        with self._lock:
            start = self._starts.get(plan)
            rid = record.get("rolloutId")
            if start is None or (isinstance(rid, str) and rid and start[0] and rid != start[0]):
                return
            del self._starts[plan]
        end = parse_iso(record.get("at"))
        if end is not None:
            seconds = (end - start[1]).total_seconds()
            if seconds >= 0:
                self.rollout_ended(plan, outcome, seconds)

    def _metric_values(self, plan: str, metrics: Any) -> None:
        if not isinstance(metrics, list | tuple):
            return
        for m in metrics:
            if not isinstance(m, Mapping) or not isinstance(m.get("name"), str):
                continue
            metric = m["name"]
            self._set_metric(plan, metric, CANARY, m.get("value"))
            if "stable_value" in m or "stable_query" in m:
                self._set_metric(plan, metric, STABLE, m.get("stable_value"))

    def _set_metric(self, plan: str, metric: str, track: str, value: Any) -> None:
        number = float(value) if _is_number(value) else math.nan
        with self._lock:
            self._metric_labels.setdefault(plan, set()).add((metric, track))
        self.metric_value.labels(plan, metric, track).set(number)

    def _drop_metric_values(self, plan: str) -> None:
        with self._lock:
            pairs = self._metric_labels.pop(plan, set())
        for metric, track in pairs:
            self.metric_value.remove(plan, metric, track)

    def _init_plan(self, plan: str) -> None:
        """Counters of a plan start at 0 for every label value: an increase from nothing to 1
        is invisible to ``rate()``/``increase()``, so the first FAIL would otherwise be lost."""
        with self._lock:
            if plan in self._known:
                return
            self._known.add(plan)
        for verdict in Verdict:
            self.checks.labels(plan, verdict.value)
        for result in ROLLBACK_RESULTS:
            self.rollbacks.labels(plan, result)

    # -- hooks the daemon calls --------------------------------------------------------------

    def observe_state(self, plan_key: str, state: RolloutState | None) -> None:
        """After each tick, per plan: its phase and canary weight. No state yet reads as Idle
        with all traffic on stable, which is what decide makes of it."""
        self._init_plan(plan_key)
        phase = state.phase if state is not None else Phase.IDLE
        for p in Phase:
            self.rollout_phase.labels(plan_key, p.value).set(1 if p is phase else 0)
        self.canary_weight.labels(plan_key).set(state.weights.canary if state is not None else 0)

    def forget(self, plan_key: str) -> None:
        """A plan was removed from the controller: its series disappear from ``/metrics``."""
        with self._lock:
            self._known.discard(plan_key)
            self._starts.pop(plan_key, None)
        self._drop_metric_values(plan_key)
        for p in Phase:
            self.rollout_phase.remove(plan_key, p.value)
        self.canary_weight.remove(plan_key)
        for verdict in Verdict:
            self.checks.remove(plan_key, verdict.value)
        for result in ROLLBACK_RESULTS:
            self.rollbacks.remove(plan_key, result)

    def rollout_ended(self, plan: str, outcome: Outcome | str, seconds: float) -> None:
        """A rollout ended after ``seconds``. Called for the ending events this listener sees;
        ``plan`` is kept for the caller's sake, the histogram is by outcome only (cardinality)."""
        del plan  # bounded cardinality: by outcome only
        self.rollout_duration.labels(str(outcome)).observe(seconds)

    def helm_call(self, command: str, seconds: float, ok: bool) -> None:
        """One helm run (``command``: history | rollback) took ``seconds``."""
        self.helm_duration.labels(command, HELM_OK if ok else HELM_ERROR).observe(seconds)

    def tick_completed(self, at_monotonic: float | None = None, plans: int = 0) -> None:
        """A tick of ``plans`` plans ended (``at_monotonic`` from :func:`time.monotonic`;
        default now)."""
        at = self._monotonic() if at_monotonic is None else at_monotonic
        self.plan_ticks.inc(plans)
        with self._lock:
            self._last_tick = at

    def watch_cache(self, reads: Callable[[], tuple[int, int]]) -> None:
        """Export the cache's (hits, misses) as ``canary_cache_reads_total``, read at scrape."""
        self.registry.register(_CacheReads(reads))

    def tick_age(self) -> float:
        """Seconds since the last completed tick (before the first one: since this object was
        made). The daemon's liveness check can compare it with a multiple of the interval."""
        with self._lock:
            since = self._last_tick if self._last_tick is not None else self._created
        return max(self._monotonic() - since, 0.0)

    def plans(self) -> list[str]:
        """Plans with series in the registry (those seen and not forgotten)."""
        with self._lock:
            return sorted(self._known)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _event_name(record: Any) -> str:
    try:
        return str(record.get("event"))
    except Exception:
        return "?"


class TimedReleases:
    """The release port with every helm rollback timed for ``/metrics``."""

    def __init__(self, inner: ReleaseManager, telemetry: Telemetry) -> None:
        self._inner = inner
        self._telemetry = telemetry

    def history(self, release: ReleaseRef) -> Any:
        return self._inner.history(release)

    def rollback(self, release: ReleaseRef, revision: int, timeout: timedelta) -> None:
        started = time.monotonic()
        ok = False
        try:
            self._inner.rollback(release, revision, timeout)
            ok = True
        finally:
            self._telemetry.helm_call("rollback", time.monotonic() - started, ok)


class _CacheReads(Collector):
    """``canary_cache_reads_total{result}`` from the cache's own counters, at scrape time."""

    def __init__(self, reads: Callable[[], tuple[int, int]]) -> None:
        self._reads = reads

    def collect(self) -> Iterator[Metric]:
        hits, misses = self._reads()
        family = CounterMetricFamily(
            "canary_cache_reads",
            "Reads of the watch-fed cache: hit from memory, miss sent to the API server.",
            labels=["result"],
        )
        family.add_metric(["hit"], hits)
        family.add_metric(["miss"], misses)
        yield family
