"""The metrics port against a real Prometheus scraping a fake Istio mesh (README: test doubles).

One module-scoped mesh: every case's workloads are set at once before a single wait for a full
window, so the whole file pays for one window (10 s at 1 s scrapes). Values come from the
exporter's exact rates, so bounds are judged on known numbers.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from canary.adapters.prometheus import PrometheusConfig, PrometheusSource
from canary.cli import main
from canary.core.analysis import CheckResult, evaluate
from canary.core.errors import PlanError
from canary.core.model import MetricsSample, Verdict, Weights
from canary.core.plan import Plan
from canary.core.ports import CheckRequest
from canary.core.queries import render_key, requests_key
from canary.plans.files import load_plan_text
from tests.support.istio_exporter import IstioExporter
from tests.support.prometheus import PrometheusServer, free_port
from tests.support.promtool import T0, OpenMetrics

NS = "adapter"
WINDOW = timedelta(seconds=10)

#: (workload, rps, error ratio, latency ms). Fixed latencies land in one bucket each, so the
#: p99 is that bucket's interpolation: 60 ms → (50, 100] → 99.5; 120 ms → (100, 250] → 248.5;
#: 800 ms → (500, 1000] → 995.
MESH = [
    ("good-v1", 40.0, 0.001, 60.0),
    ("good-v3", 10.0, 0.0, 60.0),
    ("errors-v1", 40.0, 0.0, 60.0),
    ("errors-v3", 10.0, 0.05, 60.0),
    ("slow-v1", 40.0, 0.0, 60.0),
    ("slow-v3", 10.0, 0.0, 800.0),
    ("twice-v1", 40.0, 0.0, 60.0),
    ("twice-v3", 10.0, 0.0, 120.0),
    ("idle-v1", 40.0, 0.0, 60.0),
    ("idle-v3", 0.0, 0.0, 60.0),  # registered, never served: no series at all
    ("missed-v1", 40.0, 0.0, 60.0),
    ("ghost-v1", 40.0, 0.0, 60.0),  # its canary ghost-v3 does not exist anywhere
]

METRICS = """
    metrics:
      - {name: error-rate, type: istio-error-rate, max: 0.01, maxAboveStable: 0.005}
      - {name: latency-p99, type: istio-latency, quantile: 0.99, max: 500, maxRatioToStable: 1.5}
"""


def plan_yaml(app: str, metrics: str = METRICS) -> str:
    return f"""
apiVersion: canary.dev/v1
kind: RolloutPlan
metadata: {{name: {app}, namespace: {NS}}}
spec:
  release: {app}
  virtualService:
    name: {app}
    stable: {{host: {app}, subset: v1}}
    canary: {{host: {app}, subset: v3}}
  workloads: {{stable: {app}-v1, canary: {app}-v3}}
  analysis:
    interval: 5s
    window: 10s
    settle: 0s
    minRequests: 20
{metrics}"""


def plan_for(app: str, metrics: str = METRICS) -> Plan:
    return load_plan_text(plan_yaml(app, metrics), source=f"<{app}>")[0]


def request(plan: Plan, window: timedelta = WINDOW) -> CheckRequest:
    return CheckRequest.for_plan(plan, "r-1", 0, window)


#: A second namespace with the same workload names and other numbers: batched answers must
#: not mix namespaces up.
NS_B = "adapter-b"
MESH_B = [("good-v1", 40.0, 0.0, 60.0), ("good-v3", 10.0, 0.2, 800.0)]


@pytest.fixture(scope="module")
def mesh(istio_exporter: IstioExporter, prometheus: PrometheusServer) -> Iterator[PrometheusServer]:
    # flat-v3 served a burst once and nothing since: its counters exist but stay flat, so rates
    # are 0/0 = NaN (as opposed to idle-v3, which has no series at all)
    istio_exporter.set(NS, "flat-v1", rps=40.0, latency_ms=60.0)
    istio_exporter.set(NS, "flat-v3", rps=0.0)
    istio_exporter.record(NS, "flat-v3", 50)
    since = 0.0
    for workload, rps, errors, latency in MESH:
        since = istio_exporter.set(NS, workload, rps=rps, error_ratio=errors, latency_ms=latency)
    for workload, rps, errors, latency in MESH_B:
        since = istio_exporter.set(NS_B, workload, rps=rps, error_ratio=errors, latency_ms=latency)
    prometheus.wait_for_window(since, WINDOW.total_seconds())
    yield prometheus
    for workload, *_ in [*MESH, ("flat-v1",), ("flat-v3",)]:
        istio_exporter.remove(NS, workload)
    for workload, *_ in MESH_B:
        istio_exporter.remove(NS_B, workload)


@pytest.fixture
def source(mesh: PrometheusServer) -> PrometheusSource:
    return PrometheusSource(PrometheusConfig(url=mesh.url))


def judge(
    source: PrometheusSource, plan: Plan, weights: Weights | None = None
) -> tuple[MetricsSample, CheckResult]:
    sample = source.sample([request(plan)], datetime.now(UTC))[plan.key]
    return sample, evaluate(plan.analysis, sample, canary_available=True, weights=weights)


def by_name(result: CheckResult) -> dict[str, Any]:
    return {m.name: m for m in result.metrics}


# --- verdicts on known numbers ------------------------------------------------------------------


def test_a_healthy_canary_passes(source: PrometheusSource) -> None:
    sample, result = judge(source, plan_for("good"), Weights.canary_at(20))
    assert result.verdict is Verdict.PASS, result.reason
    metrics = by_name(result)
    # traffic and no 5xx: an error rate of 0, not an empty result
    assert metrics["error-rate"].value == 0.0
    assert metrics["error-rate"].stable_value == pytest.approx(0.001, rel=0.05)
    assert metrics["latency-p99"].value == pytest.approx(99.5)
    assert sample.canary_requests == pytest.approx(100, rel=0.1)  # 10 rps × 10 s
    assert sample.stable_requests == pytest.approx(400, rel=0.1)


def test_five_percent_5xx_fails_an_error_rate_max_of_one_percent(source: PrometheusSource) -> None:
    _, result = judge(source, plan_for("errors"))
    assert result.verdict is Verdict.FAIL
    err = by_name(result)["error-rate"]
    assert err.verdict is Verdict.FAIL and err.value == pytest.approx(0.05, rel=0.05)
    assert "> max 0.01" in err.reason


def test_800ms_fails_a_p99_max_of_500ms(source: PrometheusSource) -> None:
    _, result = judge(source, plan_for("slow"))
    latency = by_name(result)["latency-p99"]
    assert result.verdict is Verdict.FAIL and latency.verdict is Verdict.FAIL
    assert latency.value == pytest.approx(995.0)


def test_twice_as_slow_as_stable_fails_the_ratio_within_the_absolute_max(
    source: PrometheusSource,
) -> None:
    _, result = judge(source, plan_for("twice"))
    latency = by_name(result)["latency-p99"]
    assert latency.value == pytest.approx(248.5) and latency.value < 500
    assert latency.stable_value == pytest.approx(99.5)
    assert latency.verdict is Verdict.FAIL and "maxRatioToStable 1.5" in latency.reason
    assert "> max 500" not in latency.reason


@pytest.mark.parametrize(
    "app", ["idle", "ghost", "nobody"], ids=["never-served", "unknown-workload", "unknown-both"]
)
def test_no_canary_data_is_inconclusive(source: PrometheusSource, app: str) -> None:
    sample, result = judge(source, plan_for(app))
    assert result.verdict is Verdict.INCONCLUSIVE
    assert sample.canary_requests is None  # no series at all: an empty vector
    assert all(m.value is None for m in result.metrics)
    # this Prometheus does have Istio series (of other workloads): no hint about scraping, also
    # when neither track has any (nobody-v1, nobody-v3: the requests query is empty)
    assert sample.no_data == "" and "istio_requests_total" not in result.reason


def test_a_prometheus_without_any_istio_series_says_so(
    backfilled_prometheus: Callable[[str], PrometheusServer],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A Prometheus that answers, with series of its own, but none from an Istio sidecar: not
    # the mesh's Prometheus, or one that does not scrape the sidecars.
    unrelated = {"job": "node", "instance": "10.0.0.1:9100", "code": "200"}
    text = (
        OpenMetrics()
        .counter("http_requests_total", unrelated, [(T0 + 15 * i, 10 * i) for i in range(5)])
        .text()
    )
    server = backfilled_prometheus(text)
    at = datetime.fromtimestamp(T0 + 60, UTC)
    assert server.value("count(http_requests_total)", at=T0 + 60) == 1  # it does answer
    plan = plan_for("good")
    sample = PrometheusSource(PrometheusConfig(url=server.url)).sample([request(plan)], at)[
        plan.key
    ]
    hint = (
        f"Prometheus at {server.url} has no istio_requests_total series at all: is it scraping "
        "the Istio sidecars (and is this the mesh's Prometheus)?"
    )
    assert sample.no_data == hint and not sample.error
    result = evaluate(plan.analysis, sample, canary_available=True, weights=None)
    assert result.verdict is Verdict.INCONCLUSIVE  # missing data: never a pass, not an ERROR
    assert result.reason.startswith("canary served 0 requests") and result.reason.endswith(hint)
    # and `canary check` prints it (exit 3, inconclusive)
    path = tmp_path / "good.yaml"
    path.write_text(plan_yaml("good"))
    argv = ["check", str(path), "--prometheus-url", server.url, "--scrape-interval", "1s"]
    assert main(argv) == 3
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"{NS}/good: INCONCLUSIVE") and first.endswith(hint)


def test_a_canary_that_stopped_serving_has_nan_rates_which_are_no_data(
    source: PrometheusSource,
) -> None:
    sample, result = judge(source, plan_for("flat"))
    assert sample.canary_requests == 0.0  # the series exist: increase() is 0, not empty
    assert [m.value for m in sample.metrics] == [None, None]  # NaN → no data
    assert result.verdict is Verdict.INCONCLUSIVE


def test_batches_keep_namespaces_apart(source: PrometheusSource) -> None:
    here = plan_for("good")
    there = load_plan_text(plan_yaml("good").replace(f"namespace: {NS}", f"namespace: {NS_B}"))[0]
    answers = source.sample([request(here), request(there)], datetime.now(UTC))
    mine, theirs = answers[here.key], answers[there.key]
    assert [m.value for m in mine.metrics] == pytest.approx([0.0, 99.5])
    assert [m.value for m in theirs.metrics] == pytest.approx([0.2, 995.0], rel=0.05)
    assert source.queries_sent == 3


def test_canary_silent_while_stable_serves_plenty_is_traffic_not_reaching_it(
    source: PrometheusSource,
) -> None:
    _, result = judge(source, plan_for("missed"), Weights.canary_at(10))
    assert result.verdict is Verdict.FAIL
    assert "traffic is not reaching the canary" in result.reason


def test_a_bad_custom_query_is_a_config_error_naming_the_metric(source: PrometheusSource) -> None:
    plan = plan_for(
        "good",
        """
    metrics:
      - {name: broken, type: custom, query: 'sum(rate(istio_requests_total[$window])', max: 1}
""",
    )
    sample, result = judge(source, plan)
    (value,) = sample.metrics
    assert value.misconfigured and "broken" in value.error and "HTTP 400" in value.error
    assert result.verdict is Verdict.ERROR


def test_a_custom_query_with_several_series_names_their_labels(source: PrometheusSource) -> None:
    plan = plan_for(
        "good",
        """
    metrics:
      - name: per-code
        type: custom
        query: 'sum by (destination_workload) (rate(istio_requests_total{destination_workload_namespace="$namespace"}[$window]))'
        max: 1000
""",  # noqa: E501
    )
    sample, _ = judge(source, plan)
    (value,) = sample.metrics
    assert value.misconfigured and "expected one" in value.error
    assert (
        "returned 13 series" in value.error and '{destination_workload="errors-v1"}' in value.error
    )


def test_a_custom_query_yields_its_value(source: PrometheusSource) -> None:
    plan = plan_for(
        "good",
        """
    metrics:
      - name: canary-rps
        type: custom
        query: 'sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="$namespace",destination_workload="$canary"}[$window]))'
        max: 1000
""",  # noqa: E501
    )
    sample, result = judge(source, plan)
    assert sample.metrics[0].value == pytest.approx(10.0, rel=0.05)
    assert result.verdict is Verdict.PASS


def test_a_custom_range_vector_is_a_config_error_not_a_crash(source: PrometheusSource) -> None:
    plan = plan_for(
        "good",
        """
    metrics:
      - name: ranged
        type: custom
        query: 'sum(rate(istio_requests_total{destination_workload="$canary"}[$window]))[$window:1s]'
        max: 1000
""",  # noqa: E501
    )
    sample, result = judge(source, plan)
    assert sample.metrics[0].misconfigured and "range vector" in sample.metrics[0].error
    assert result.misconfigured and result.verdict is Verdict.ERROR


def test_service_variable_is_the_fqdn_istio_labels_carry(source: PrometheusSource) -> None:
    plan = plan_for(
        "good",
        """
    metrics:
      - name: service-rps
        type: custom
        query: 'sum(rate(istio_requests_total{reporter="destination",destination_service="$service",destination_workload="$canary"}[$window]))'
        max: 1000
""",  # noqa: E501
    )
    sample, _ = judge(source, plan)
    assert "good.adapter.svc.cluster.local" in sample.metrics[0].query
    assert sample.metrics[0].value == pytest.approx(10.0, rel=0.05)


def test_an_injection_attempt_in_a_workload_name_is_rejected_at_validation() -> None:
    text = plan_yaml("good").replace(
        "canary: good-v3}", 'canary: "good-v3\\",destination_workload=~\\".+"}'
    )
    with pytest.raises(PlanError) as info:
        load_plan_text(text, source="<injection>")
    assert "spec.workloads.canary" in str(info.value)


# --- batching -----------------------------------------------------------------------------------


def test_fifty_rollouts_cost_no_more_queries_than_windows_times_metric_types(
    mesh: PrometheusServer,
) -> None:
    source = PrometheusSource(PrometheusConfig(url=mesh.url))
    plans = [plan_for(f"app{i}") for i in range(50)]
    windows = [timedelta(seconds=10), timedelta(seconds=6)]
    requests_ = [request(p, windows[i % 2]) for i, p in enumerate(plans)]
    answers = source.sample(requests_, datetime.now(UTC))
    assert set(answers) == {p.key for p in plans}
    kinds = 3  # error rate, latency, request count
    # + 1: none of these workloads exists, so the request counts come back empty and one
    # count(istio_requests_total) asks whether this Prometheus has Istio series at all
    assert source.queries_sent <= len(windows) * kinds + 1
    # and the batched answer for a workload equals the single-workload query's answer
    good = plan_for("good")
    single = source.sample([request(good)], datetime.now(UTC))[good.key]
    batch = PrometheusSource(PrometheusConfig(url=mesh.url)).sample(
        [request(good), *requests_[:5]], datetime.now(UTC)
    )[good.key]
    assert batch.canary_requests == pytest.approx(single.canary_requests, rel=0.05)
    assert [m.value for m in batch.metrics] == pytest.approx(
        [m.value for m in single.metrics], rel=0.05
    )


# --- failures -----------------------------------------------------------------------------------


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A server that accepts connections and never answers: only our timeout ends a query."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_a_hanging_prometheus_is_an_error_within_our_timeout_budget(blackhole: str) -> None:
    config = PrometheusConfig(url=blackhole, timeout=timedelta(seconds=1), retries=1)
    plan = plan_for("good")
    began = time.monotonic()
    sample = PrometheusSource(config).sample([request(plan)], datetime.now(UTC))[plan.key]
    elapsed = time.monotonic() - began
    port = blackhole.rsplit(":", 1)[1]
    assert sample.error == (
        f"Prometheus at {blackhole} unreachable: no answer from 127.0.0.1:{port} within 1s "
        "(1 retry)"
    )
    # one query (the request counts fail first), two tries of 1 s each, plus the backoff
    assert elapsed < 2 * 1.0 + 1.0
    result = evaluate(plan.analysis, sample, canary_available=True, weights=None)
    assert result.verdict is Verdict.ERROR


def test_connection_refused_names_the_host_and_port() -> None:
    port = free_port()  # nothing listens there
    url = f"http://127.0.0.1:{port}"
    config = PrometheusConfig(url=url, timeout=timedelta(seconds=1), retries=1)
    plan = plan_for("good")
    sample = PrometheusSource(config).sample([request(plan)], datetime.now(UTC))[plan.key]
    assert sample.error == (
        f"Prometheus at {url} unreachable: connection refused by 127.0.0.1:{port} — is "
        "Prometheus running there?"
    )


def test_a_host_that_does_not_resolve_says_so_quickly() -> None:
    # .invalid never resolves (RFC 6761); here (no network) the lookup fails in milliseconds
    config = PrometheusConfig(
        url="http://prometheus.invalid:9090", timeout=timedelta(seconds=1), retries=1
    )
    plan = plan_for("good")
    began = time.monotonic()
    sample = PrometheusSource(config).sample([request(plan)], datetime.now(UTC))[plan.key]
    assert time.monotonic() - began < 5
    assert sample.error == (
        "Prometheus at http://prometheus.invalid:9090 unreachable: cannot resolve host "
        "prometheus.invalid"
    )
    result = evaluate(plan.analysis, sample, canary_available=True, weights=None)
    assert result.verdict is Verdict.ERROR


def test_secrets_stay_out_of_errors_and_repr(tmp_path: Path, blackhole: str) -> None:
    token = tmp_path / "token"
    token.write_text("s3cr3t-token\n")
    config = PrometheusConfig(
        url=blackhole, timeout=timedelta(seconds=1), retries=0, bearer_token_file=str(token)
    )
    plan = plan_for("good")
    sample = PrometheusSource(config).sample([request(plan)], datetime.now(UTC))[plan.key]
    assert "s3cr3t" not in sample.error and "s3cr3t" not in repr(config)


def test_prometheus_stopped_mid_test_gives_error_then_recovers(
    mesh: PrometheusServer, source: PrometheusSource
) -> None:
    plan = plan_for("good")
    with mesh.down():
        sample = source.sample([request(plan)], datetime.now(UTC))[plan.key]
        assert "unreachable" in sample.error
        assert f"connection refused by 127.0.0.1:{mesh.port}" in sample.error
        assert evaluate(plan.analysis, sample, canary_available=True, weights=None).verdict is (
            Verdict.ERROR
        )
    mesh.wait_for_scrape()
    assert not source.sample([request(plan)], datetime.now(UTC))[plan.key].error


# --- canary check -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("app", "code"),
    [("good", 0), ("errors", 1), ("idle", 3)],
    ids=["pass", "fail", "inconclusive"],
)
def test_canary_check_exit_codes(
    mesh: PrometheusServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], app: str, code: int
) -> None:
    path = tmp_path / f"{app}.yaml"
    path.write_text(plan_yaml(app))
    argv = ["check", str(path), "--prometheus-url", mesh.url, "--scrape-interval", "1s"]
    assert main(argv) == code
    out = capsys.readouterr().out
    assert "istio_requests_total" in out and "error-rate" in out and "latency-p99" in out


def test_canary_check_json_and_config_error(
    mesh: PrometheusServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(
        plan_yaml(
            "good",
            """
    metrics:
      - {name: broken, type: custom, query: 'sum(rate(x[$window])', max: 1}
""",
        )
    )
    argv = ["check", str(path), "--prometheus-url", mesh.url, "--scrape-interval", "1s"]
    assert main([*argv, "-o", "json"]) == 2
    doc = __import__("json").loads(capsys.readouterr().out)
    assert doc["exitCode"] == 2 and doc["metrics"][0]["name"] == "broken"


def test_canary_check_unreachable_is_exit_4(
    tmp_path: Path, blackhole: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(plan_yaml("good"))
    argv = ["check", str(path), "--prometheus-url", blackhole, "--timeout", "1s", "--retries", "0"]
    argv += ["--scrape-interval", "1s"]
    assert main(argv) == 4
    port = blackhole.rsplit(":", 1)[1]
    assert f"no answer from 127.0.0.1:{port} within 1s (no retry)" in capsys.readouterr().err


def test_canary_check_warns_when_a_latency_bound_is_between_buckets(
    mesh: PrometheusServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(plan_yaml("good", METRICS.replace("max: 500,", "max: 400,")))
    main(["check", str(path), "--prometheus-url", mesh.url, "--scrape-interval", "1s"])
    err = capsys.readouterr().err
    assert "latency-p99.max 400 ms is not one of Istio's histogram bucket boundaries" in err
    assert "250, 500" in err


def test_requests_reporter_follows_the_plans_istio_metrics() -> None:
    source_only = plan_for(
        "good",
        METRICS.replace(
            "type: istio-error-rate,", "type: istio-error-rate, reporter: source,"
        ).replace("type: istio-latency,", "type: istio-latency, reporter: source,"),
    )
    key = requests_key(source_only.analysis.metrics, WINDOW)
    assert 'reporter="source"' in render_key(key, [(NS, "good-v3")])
    mixed = plan_for("good")
    assert 'reporter="destination"' in render_key(
        requests_key(mixed.analysis.metrics, WINDOW), [(NS, "good-v3")]
    )


#: what the recorder answers (a test sets it; reset to 200 after each test)
STATUS = [200]


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A minimal Prometheus API stand-in that records request headers (for auth tests)."""
    import http.server
    import json as json_

    seen: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(dict(self.headers))
            status = STATUS[0]
            if status == 200:
                doc = {"status": "success", "data": {"resultType": "vector", "result": []}}
            else:
                doc = {"status": "error", "errorType": "x", "error": f"status {status}"}
            body = json_.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    STATUS[0] = 200
    server.shutdown()
    server.server_close()


def test_bearer_token_is_read_from_its_file_on_every_batch(
    tmp_path: Path, recorder: tuple[str, list[dict[str, str]]]
) -> None:
    url, seen = recorder
    token = tmp_path / "token"
    token.write_text("first\n")
    source = PrometheusSource(PrometheusConfig(url=url, bearer_token_file=str(token)))
    plan = plan_for("good")
    source.sample([request(plan)], datetime.now(UTC))
    token.write_text("rotated\n")  # a projected service-account token was renewed
    source.sample([request(plan)], datetime.now(UTC))
    auth = [h.get("Authorization") for h in seen]
    assert auth[0] == "Bearer first" and auth[-1] == "Bearer rotated"


def test_basic_auth_from_env(
    monkeypatch: pytest.MonkeyPatch, recorder: tuple[str, list[dict[str, str]]]
) -> None:
    import base64

    url, seen = recorder
    monkeypatch.setenv("PROM_PASSWORD", "pa55")
    config = PrometheusConfig(url=url, username="canary", password_env="PROM_PASSWORD")
    plan = plan_for("good")
    PrometheusSource(config).sample([request(plan)], datetime.now(UTC))
    expected = "Basic " + base64.b64encode(b"canary:pa55").decode()
    assert seen and all(h.get("Authorization") == expected for h in seen)


@pytest.mark.parametrize(
    ("status", "fragment"),
    [
        (400, "Prometheus rejected the query (HTTP 400)"),
        (422, "Prometheus rejected the query (HTTP 422)"),
        (401, "refused our credentials (HTTP 401)"),
        (403, "refused our credentials (HTTP 403)"),
        (404, "no Prometheus query API"),
        (429, "answered HTTP 429"),
        (500, "answered HTTP 500"),
        (503, "answered HTTP 503"),
    ],
)
def test_http_statuses_map_to_what_to_do_next(
    recorder: tuple[str, list[dict[str, str]]], status: int, fragment: str
) -> None:
    url, seen = recorder
    STATUS[0] = status
    config = PrometheusConfig(url=url, timeout=timedelta(seconds=2), retries=0)
    plan = plan_for("good")
    sample = PrometheusSource(config).sample([request(plan)], datetime.now(UTC))[plan.key]
    result = evaluate(plan.analysis, sample, canary_available=True, weights=None)
    assert result.verdict is Verdict.ERROR  # never a pass
    assert fragment in sample.error
    assert seen  # it did ask


def test_credentials_in_the_url_never_reach_errors_or_repr(blackhole: str) -> None:
    port = blackhole.rsplit(":", 1)[1]
    url = f"http://user:hunter2@127.0.0.1:{port}"
    config = PrometheusConfig(url=url, timeout=timedelta(seconds=1), retries=0)
    plan = plan_for("good")
    sample = PrometheusSource(config).sample([request(plan)], datetime.now(UTC))[plan.key]
    assert sample.error and "hunter2" not in sample.error and "hunter2" not in repr(config)
    assert "user" not in sample.error and f"from 127.0.0.1:{port} within 1s" in sample.error


def test_a_missing_token_file_is_an_error_for_every_check(tmp_path: Path) -> None:
    config = PrometheusConfig(url="http://127.0.0.1:1", bearer_token_file=str(tmp_path / "nope"))
    plan = plan_for("good")
    sample = PrometheusSource(config).sample([request(plan)], datetime.now(UTC))[plan.key]
    assert "cannot read the Prometheus bearer token file" in sample.error
