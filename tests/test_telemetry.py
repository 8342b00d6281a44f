"""canary's own metrics and its health server: the simulator's real event records feed
:class:`Telemetry`, and every value is read back over real HTTP from ``/metrics``."""

from __future__ import annotations

import json
import math
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
import structlog.testing
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from canary.adapters.httpserver import HealthServer
from canary.core import events as ev
from canary.core.model import Phase, RolloutState, Weights
from canary.plans.files import load_plan_files
from canary.shell import telemetry
from canary.shell.telemetry import Telemetry
from canary.sim import SCENARIOS
from canary.sim.run import simulate

PLAN = load_plan_files(["config/plans/reviews.yaml"])[0]
KEY = PLAN.key  # bookinfo/reviews

Labels = frozenset[tuple[str, str]]


def labels(**kv: str) -> Labels:
    return frozenset(kv.items())


@dataclass
class Response:
    status: int
    content_type: str
    body: str


def get(port: int, path: str, method: str = "GET") -> Response:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return Response(resp.status, resp.headers["Content-Type"], resp.read().decode())
    except urllib.error.HTTPError as err:
        with err:
            return Response(err.code, err.headers["Content-Type"], err.read().decode())


def scrape(port: int) -> dict[str, dict[Labels, float]]:
    """``/metrics`` over HTTP, parsed: sample name → labels → value."""
    resp = get(port, "/metrics")
    assert resp.status == 200
    assert resp.content_type == CONTENT_TYPE_LATEST
    out: dict[str, dict[Labels, float]] = {}
    for family in text_string_to_metric_families(resp.body):
        for sample in family.samples:
            out.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return out


@dataclass
class Readiness:
    """A ready() the test flips."""

    ok: bool = True
    checks: dict[str, str] = field(
        default_factory=lambda: {
            "config": "loaded",
            "kubernetes": "ok",
            "prometheus": "ok",
            "role": "leader",
        }
    )

    def __call__(self) -> tuple[bool, Mapping[str, str]]:
        return self.ok, self.checks


@dataclass
class Liveness:
    ok: bool = True

    def __call__(self) -> bool:
        return self.ok


@dataclass
class Served:
    telemetry: Telemetry
    server: HealthServer
    ready: Readiness
    alive: Liveness

    @property
    def port(self) -> int:
        return self.server.port

    def metrics(self) -> dict[str, dict[Labels, float]]:
        return scrape(self.port)


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
def served(clock: FakeMonotonic) -> Iterator[Served]:
    tel = Telemetry(monotonic=clock, process_metrics=False)
    ready, alive = Readiness(), Liveness()
    server = HealthServer("127.0.0.1", 0, tel.registry, ready, alive=alive)
    server.start()
    try:
        yield Served(tel, server, ready, alive)
    finally:
        server.stop()


# --- metrics from the simulator's real events -------------------------------------------------


def test_bad_errors_rollout_counts_failed_checks_and_one_rollback(served: Served) -> None:
    result = simulate(PLAN, SCENARIOS["bad-errors"], listener=served.telemetry)
    served.telemetry.observe_state(KEY, result.state)
    m = served.metrics()

    checks = m["canary_checks_total"]
    assert checks[labels(plan=KEY, verdict="FAIL")] == 2  # failureLimit 2
    assert checks[labels(plan=KEY, verdict="PASS")] == 0  # present at 0 from the start
    assert checks[labels(plan=KEY, verdict="ERROR")] == 0
    rollbacks = m["canary_rollbacks_total"]
    assert rollbacks[labels(plan=KEY, result="started")] == 1
    assert rollbacks[labels(plan=KEY, result="succeeded")] == 1
    assert rollbacks[labels(plan=KEY, result="failed")] == 0

    # the second failed check came 30 s (one interval) after the first; that tick reverted
    assert m["canary_time_to_safe_seconds_count"][labels()] == 1
    assert m["canary_time_to_safe_seconds_sum"][labels()] == 30.0
    assert m["canary_time_to_safe_seconds_bucket"][labels(le="30.0")] == 1
    assert m["canary_time_to_safe_seconds_bucket"][labels(le="20.0")] == 0

    # rollout.started 09:00:00 → rollout.rolled_back 09:01:20
    assert m["canary_rollout_duration_seconds_count"][labels(outcome="RolledBack")] == 1
    assert m["canary_rollout_duration_seconds_sum"][labels(outcome="RolledBack")] == 80.0

    values = m["canary_metric_value"]
    assert values[labels(plan=KEY, metric="error-rate", track="canary")] == 0.08
    assert values[labels(plan=KEY, metric="error-rate", track="stable")] == 0.001
    assert values[labels(plan=KEY, metric="latency-p99", track="canary")] == 120.0
    assert values[labels(plan=KEY, metric="latency-p99", track="stable")] == 115.0

    phases = m["canary_rollout_phase"]
    assert phases[labels(plan=KEY, phase="RolledBack")] == 1
    assert sum(phases.values()) == 1
    assert len(phases) == len(Phase)
    assert m["canary_canary_weight"][labels(plan=KEY)] == 0


def test_good_rollout_passes_every_check_and_observes_its_duration(served: Served) -> None:
    result = simulate(PLAN, SCENARIOS["good"], listener=served.telemetry)
    served.telemetry.observe_state(KEY, result.state)
    m = served.metrics()

    assert m["canary_checks_total"][labels(plan=KEY, verdict="PASS")] == 12  # 4 per step × 3
    assert m["canary_checks_total"][labels(plan=KEY, verdict="FAIL")] == 0
    assert m["canary_rollbacks_total"][labels(plan=KEY, result="started")] == 0
    assert m["canary_rollout_duration_seconds_count"][labels(outcome="Succeeded")] == 1
    assert m["canary_rollout_duration_seconds_sum"][labels(outcome="Succeeded")] == 380.0
    assert m["canary_time_to_safe_seconds_count"][labels()] == 0
    assert m["canary_rollout_phase"][labels(plan=KEY, phase="Succeeded")] == 1
    assert m["canary_canary_weight"][labels(plan=KEY)] == 100


def test_low_traffic_counts_inconclusive_checks_and_ends_no_rollout(served: Served) -> None:
    result = simulate(PLAN, SCENARIOS["low-traffic"], listener=served.telemetry)
    served.telemetry.observe_state(KEY, result.state)
    m = served.metrics()

    assert m["canary_checks_total"][labels(plan=KEY, verdict="INCONCLUSIVE")] >= 20
    assert m["canary_rollout_phase"][labels(plan=KEY, phase="Paused")] == 1
    assert m["canary_canary_weight"][labels(plan=KEY)] == 0  # paused with traffic on stable
    assert not m.get("canary_rollout_duration_seconds_count")  # a pause ends no rollout


# --- hand-made records: the edges ------------------------------------------------------------


def record(event: str, **fields: Any) -> dict[str, Any]:
    return {"event": event, "level": "info", "plan": KEY, "phase": "Progressing", **fields}


def check(verdict: str, event: str, metrics: list[dict[str, Any]]) -> dict[str, Any]:
    return record(event, verdict=verdict, metrics=metrics, at="2025-01-06T09:00:50Z")


def test_a_metric_without_data_reads_nan_and_a_new_rollout_drops_old_values(
    served: Served,
) -> None:
    tel = served.telemetry
    tel(
        check(
            "INCONCLUSIVE",
            "check.inconclusive",
            [
                {"name": "error-rate", "value": None, "stable_value": 0.001, "stable_query": "q"},
                {"name": "custom", "value": 2.5},  # no relative bound: no stable track
            ],
        )
    )
    values = served.metrics()["canary_metric_value"]
    assert math.isnan(values[labels(plan=KEY, metric="error-rate", track="canary")])
    assert values[labels(plan=KEY, metric="error-rate", track="stable")] == 0.001
    assert values[labels(plan=KEY, metric="custom", track="canary")] == 2.5
    assert labels(plan=KEY, metric="custom", track="stable") not in values

    tel(record("rollout.started", rolloutId="b-1", at="2025-01-06T10:00:00Z"))
    assert "canary_metric_value" not in served.metrics()


def test_a_rollout_ends_once_and_only_for_the_rollout_that_started(served: Served) -> None:
    tel = served.telemetry
    # started before this process: no start known, nothing observed
    tel(record("rollout.rolled_back", rolloutId="a-1", at="2025-01-06T09:05:00Z"))
    tel(record("rollout.started", rolloutId="b-1", at="2025-01-06T10:00:00Z"))
    tel(record("rollout.succeeded", rolloutId="other-1", at="2025-01-06T10:01:00Z"))
    tel(record("rollout.rollback_failed", rolloutId="b-1", at="2025-01-06T10:02:00Z"))
    # `abort` → one more helm attempt → rolled back: the same rollout, already ended
    tel(record("rollback.started", rolloutId="b-1", at="2025-01-06T10:03:00Z"))
    tel(record("rollout.rolled_back", rolloutId="b-1", at="2025-01-06T10:04:00Z"))
    m = served.metrics()
    count = m["canary_rollout_duration_seconds_count"]
    assert count == {labels(outcome="RollbackFailed"): 1}
    assert m["canary_rollout_duration_seconds_sum"][labels(outcome="RollbackFailed")] == 120.0
    rollbacks = m["canary_rollbacks_total"]
    assert rollbacks[labels(plan=KEY, result="started")] == 1
    assert rollbacks[labels(plan=KEY, result="failed")] == 1
    assert rollbacks[labels(plan=KEY, result="succeeded")] == 2


def test_a_deleted_plan_abandons_the_rollout_under_way(served: Served) -> None:
    tel = served.telemetry
    tel(record("rollout.started", rolloutId="c-1", at="2025-01-06T10:00:00Z"))
    tel(record("plan.deleted", rolloutId="c-1", at="2025-01-06T10:00:30Z"))
    count = served.metrics()["canary_rollout_duration_seconds_count"]
    assert count[labels(outcome="Abandoned")] == 1


def test_a_revert_without_a_failed_check_is_not_a_time_to_safe(served: Served) -> None:
    """abort, a canary that went down, progressDeadline: no first FAIL to measure from."""
    served.telemetry(record("rollback.traffic_reverted", firstFailAt=None))
    served.telemetry(record("rollback.traffic_reverted", secondsSinceFirstFail=None))
    assert served.metrics()["canary_time_to_safe_seconds_count"][labels()] == 0


@pytest.mark.parametrize(
    "rec",
    [
        {},
        {"event": "check.failed"},  # no plan
        {"event": 42, "plan": KEY},
        {"event": "weight.set", "plan": KEY, "stable": 90, "canary": 10},  # not ours to count
        {"event": "check.failed", "plan": KEY, "metrics": "not a list"},
        {"event": "check.failed", "plan": KEY, "metrics": [None, {"value": 1}, {"name": 3}]},
        {"event": "rollout.started", "plan": KEY, "at": "yesterday"},
        {"event": "rollout.succeeded", "plan": KEY, "at": None},
        {"event": "rollback.traffic_reverted", "plan": KEY, "secondsSinceFirstFail": "30"},
        {"event": "rollback.traffic_reverted", "plan": KEY, "secondsSinceFirstFail": True},
    ],
)
def test_odd_records_are_ignored_without_raising(served: Served, rec: dict[str, Any]) -> None:
    served.telemetry(rec)
    assert served.metrics()["canary_telemetry_errors_total"][labels()] == 0


def test_a_bug_in_telemetry_never_reaches_the_emitter_and_is_logged_once(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(served.telemetry.checks, "labels", broken)
    with structlog.testing.capture_logs() as logged:
        served.telemetry(check("FAIL", "check.failed", []))
        served.telemetry(check("FAIL", "check.failed", []))
    assert served.metrics()["canary_telemetry_errors_total"][labels()] == 2
    assert [e["event"] for e in logged] == [ev.TELEMETRY_FAILED]
    assert logged[0]["record"] == "check.failed"
    assert logged[0]["error"] == "RuntimeError('boom')"
    assert logged[0]["log_level"] == "error" and logged[0]["exc_info"] is True


# --- hooks --------------------------------------------------------------------------------------


def test_observe_state_sets_one_phase_and_the_canary_weight(served: Served) -> None:
    tel = served.telemetry
    tel.observe_state(KEY, RolloutState(plan=KEY, phase=Phase.PROGRESSING, weights=Weights(50, 50)))
    tel.observe_state("shop/cart", None)  # no state yet: Idle, all traffic on stable
    m = served.metrics()
    phases = m["canary_rollout_phase"]
    assert {dict(k)["phase"] for k, v in phases.items() if v == 1 and dict(k)["plan"] == KEY} == {
        "Progressing"
    }
    assert phases[labels(plan="shop/cart", phase="Idle")] == 1
    assert sum(phases.values()) == 2
    assert m["canary_canary_weight"][labels(plan=KEY)] == 50
    assert m["canary_canary_weight"][labels(plan="shop/cart")] == 0
    # a plan's counters exist at 0 from its first sight, so rate() sees the first increment
    assert m["canary_checks_total"][labels(plan="shop/cart", verdict="FAIL")] == 0

    tel.observe_state(KEY, RolloutState(plan=KEY, phase=Phase.ROLLING_BACK))
    phases = served.metrics()["canary_rollout_phase"]
    assert phases[labels(plan=KEY, phase="RollingBack")] == 1
    assert phases[labels(plan=KEY, phase="Progressing")] == 0


def test_a_forgotten_plan_disappears_from_metrics(served: Served) -> None:
    tel = served.telemetry
    simulate(PLAN, SCENARIOS["bad-errors"], listener=tel)
    tel.observe_state(KEY, RolloutState(plan=KEY, phase=Phase.ROLLED_BACK))
    tel.observe_state("shop/cart", None)
    tel.forget(KEY)
    m = served.metrics()
    for name in (
        "canary_rollout_phase",
        "canary_canary_weight",
        "canary_checks_total",
        "canary_rollbacks_total",
        "canary_metric_value",
    ):
        assert all(dict(k)["plan"] != KEY for k in m.get(name, {})), name
    assert m["canary_canary_weight"] == {labels(plan="shop/cart"): 0}
    # histograms are not per plan: the rollout it ran still counts
    assert m["canary_rollout_duration_seconds_count"][labels(outcome="RolledBack")] == 1
    assert tel.plans() == ["shop/cart"]


def test_helm_calls_by_command_and_result(served: Served) -> None:
    tel = served.telemetry
    tel.helm_call("history", 0.3, ok=True)
    tel.helm_call("rollback", 42.0, ok=True)
    tel.helm_call("rollback", 300.5, ok=False)
    m = served.metrics()
    count = m["canary_helm_duration_seconds_count"]
    assert count[labels(command="history", result="ok")] == 1
    assert count[labels(command="rollback", result="ok")] == 1
    assert count[labels(command="rollback", result="error")] == 1
    buckets = m["canary_helm_duration_seconds_bucket"]
    assert buckets[labels(command="history", result="ok", le="0.5")] == 1
    assert buckets[labels(command="history", result="ok", le="0.25")] == 0
    assert buckets[labels(command="rollback", result="error", le="300.0")] == 0
    assert buckets[labels(command="rollback", result="error", le="600.0")] == 1


def test_seconds_since_last_tick_is_computed_at_scrape_time(
    served: Served, clock: FakeMonotonic
) -> None:
    def age() -> float:
        return served.metrics()["canary_seconds_since_last_tick"][labels()]

    clock.now += 12  # no tick yet: counts from start
    assert age() == 12
    served.telemetry.tick_completed()
    assert age() == 0
    clock.now += 7.5
    assert age() == 7.5
    served.telemetry.tick_completed(clock.now - 2)
    assert age() == 2
    assert served.telemetry.tick_age() == 2


def test_buckets_are_increasing_and_cover_their_defaults() -> None:
    for buckets in (
        telemetry.ROLLOUT_DURATION_BUCKETS,
        telemetry.TIME_TO_SAFE_BUCKETS,
        telemetry.HELM_DURATION_BUCKETS,
    ):
        assert list(buckets) == sorted(set(buckets))
    assert 300.0 in telemetry.HELM_DURATION_BUCKETS  # rollback.timeout default 5m
    assert 30.0 in telemetry.TIME_TO_SAFE_BUCKETS  # failureLimit 2 × interval 30s


def test_every_metric_is_documented_in_the_module_docstring() -> None:
    tel = Telemetry(process_metrics=False)
    names = {f.name for f in tel.registry.collect()}
    assert names, "no metrics registered"
    doc = telemetry.__doc__ or ""
    for name in names:
        assert name.startswith("canary_"), name
        shown = name if name in doc else f"{name}_total"  # counters are collected without it
        assert f"``{shown}" in doc, f"{name} is not documented in canary/telemetry.py"


def test_process_metrics_are_registered_by_default() -> None:
    names = {f.name for f in Telemetry().registry.collect()}
    assert "python_info" in names
    assert "canary_checks" in names


def test_each_telemetry_has_its_own_registry() -> None:
    a, b = Telemetry(process_metrics=False), Telemetry(process_metrics=False)
    a.observe_state(KEY, None)
    assert a.registry is not b.registry
    assert b.registry.get_sample_value("canary_canary_weight", {"plan": KEY}) is None
    assert a.registry.get_sample_value("canary_canary_weight", {"plan": KEY}) == 0


# --- the health server ---------------------------------------------------------------------


def test_healthz_says_ok_while_alive_and_503_when_the_loop_is_stuck(served: Served) -> None:
    resp = get(served.port, "/healthz")
    assert (resp.status, resp.body) == (200, "ok\n")
    served.alive.ok = False
    assert get(served.port, "/healthz").status == 503
    served.alive.ok = True
    assert get(served.port, "/healthz").status == 200


def test_healthz_without_an_alive_check_is_ok(clock: FakeMonotonic) -> None:
    tel = Telemetry(monotonic=clock, process_metrics=False)
    with HealthServer("127.0.0.1", 0, tel.registry, Readiness()) as server:
        assert get(server.port, "/healthz").status == 200


def test_readyz_flips_between_200_and_503_with_the_checks(served: Served) -> None:
    resp = get(served.port, "/readyz")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert json.loads(resp.body) == {"ready": True, "checks": served.ready.checks}

    served.ready.ok = False
    served.ready.checks["prometheus"] = "unreachable: connection refused"
    resp = get(served.port, "/readyz")
    assert resp.status == 503
    doc = json.loads(resp.body)
    assert doc["ready"] is False
    assert doc["checks"]["prometheus"] == "unreachable: connection refused"

    served.ready.ok = True
    assert get(served.port, "/readyz").status == 200


def test_a_readiness_check_that_raises_is_not_ready(clock: FakeMonotonic) -> None:
    def broken() -> tuple[bool, Mapping[str, str]]:
        raise RuntimeError("kube client not built")

    tel = Telemetry(monotonic=clock, process_metrics=False)
    with HealthServer("127.0.0.1", 0, tel.registry, broken) as server:
        resp = get(server.port, "/readyz")
    assert resp.status == 503
    assert "kube client not built" in json.loads(resp.body)["checks"]["readiness"]


def test_unknown_paths_are_404_and_query_strings_are_ignored(served: Served) -> None:
    assert get(served.port, "/").status == 404
    assert get(served.port, "/metrics/extra").status == 404
    assert get(served.port, "/healthz?verbose=1").status == 200


def test_head_answers_without_a_body(served: Served) -> None:
    resp = get(served.port, "/healthz", method="HEAD")
    assert (resp.status, resp.body) == (200, "")


def test_requests_are_not_logged_to_stderr(
    served: Served, capfd: pytest.CaptureFixture[str]
) -> None:
    get(served.port, "/healthz")
    get(served.port, "/nope")
    served.metrics()
    assert capfd.readouterr().err == ""


def test_port_zero_picks_a_free_port_and_stop_releases_it(clock: FakeMonotonic) -> None:
    tel = Telemetry(monotonic=clock, process_metrics=False)
    server = HealthServer("127.0.0.1", 0, tel.registry, Readiness())
    assert server.port == 0
    server.start()
    port = server.port
    assert port != 0
    assert get(port, "/healthz").status == 200
    server.stop()
    server.stop()  # twice is fine
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    # the port is free again: a new server may take it
    again = HealthServer("127.0.0.1", port, tel.registry, Readiness())
    again.start()
    try:
        assert get(port, "/healthz").status == 200
    finally:
        again.stop()
