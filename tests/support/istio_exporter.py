"""A fake Istio sidecar fleet: serves ``/metrics`` with Istio's standard HTTP metrics.

Prometheus scrapes this exporter exactly as it would scrape Envoy sidecars, and the controller's
queries (canary/queries.py) run unchanged against the result. What is faithful:

* metric names, types and label names of Istio's standard metrics (istio.io, "Istio Standard
  Metrics"): ``istio_requests_total`` (counter) and ``istio_request_duration_milliseconds``
  (histogram, ``_bucket``/``_sum``/``_count``);
* the histogram bucket boundaries Envoy uses by default for request duration
  (:data:`DURATION_BUCKETS_MS`, Envoy's ``HistogramStatisticsImpl::supportedBuckets``);
* both reporters: ``reporter="destination"`` (the server's proxy, mTLS) and ``reporter="source"``
  (the client's proxy, ``connection_security_policy="unknown"``);
* a series exists only once its first request was counted, as in Envoy: a workload that never
  received traffic has no series (an empty vector), while one whose traffic stopped keeps flat
  counters (rate 0, so rate ratios are NaN).

What is not: traffic is not random. Each workload's counters advance by ``rps × elapsed``
(monotonic clock, computed on every scrape), split exactly by ``error_ratio`` into 200 and 503
and by the latency model into buckets. Counters are floats, so Prometheus' ``rate()`` equals the
configured rps up to scrape-timestamp jitter, and ratios of counters of one workload are exact.

Usage::

    exporter = IstioExporter.start()
    exporter.set("bookinfo", "reviews-v1", rps=20, latency_ms=40)
    exporter.set("bookinfo", "reviews-v3", rps=2, error_ratio=0.1,
                 latency_ms=[(30, 0.9), (600, 0.1)])
    exporter.set("bookinfo", "reviews-v3", rps=0)  # the canary gets no traffic from now on
    exporter.url, exporter.target  # "http://127.0.0.1:PORT/metrics", "127.0.0.1:PORT"
    exporter.stop()
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

#: Envoy's default histogram buckets, which Istio uses for istio_request_duration_milliseconds.
DURATION_BUCKETS_MS: tuple[float, ...] = (
    0.5,
    1,
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1000,
    2500,
    5000,
    10000,
    30000,
    60000,
    300000,
    600000,
    1800000,
    3600000,
)

#: The labels of Istio's standard HTTP metrics (istio.io "Istio Standard Metrics"), every series
#: carries all of them, in this order.
ISTIO_LABELS: tuple[str, ...] = (
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_cluster",
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
    "source_canonical_service",
    "destination_canonical_service",
    "source_canonical_revision",
    "destination_canonical_revision",
)

REPORTERS: tuple[str, ...] = ("destination", "source")
OK_CODE = "200"
#: What an application failure looks like; Envoy sets no response flag for an upstream's 503.
ERROR_CODE = "503"
CLUSTER = "Kubernetes"
TRUST_DOMAIN = "cluster.local"
#: Who calls a workload unless told otherwise: the ingress gateway, labelled as Istio labels it
#: (no ``version`` label: ``unknown``; canonical revision ``latest``).
DEFAULT_SOURCE = ("istio-ingressgateway", "istio-system")
GATEWAY_IDENTITY = (
    "istio-ingressgateway",
    "unknown",
    "latest",
    "istio-ingressgateway-service-account",
)
#: A new workload answers in 10 ms unless told otherwise.
DEFAULT_LATENCY_MS = 10.0

#: One fixed latency in ms, or a mixture: (latency in ms, share of requests), shares summing to 1.
LatencyModel = float | Sequence[tuple[float, float]]


def _mixture(latency_ms: LatencyModel) -> tuple[tuple[float, float], ...]:
    if isinstance(latency_ms, int | float):
        parts: tuple[tuple[float, float], ...] = ((float(latency_ms), 1.0),)
    else:
        parts = tuple((float(ms), float(share)) for ms, share in latency_ms)
    if not parts or any(ms < 0 or share < 0 for ms, share in parts):
        raise ValueError(f"latency model {latency_ms!r}: need non-negative (ms, share) pairs")
    if not math.isclose(sum(share for _, share in parts), 1.0, abs_tol=1e-9):
        raise ValueError(f"latency model {latency_ms!r}: shares must sum to 1")
    return parts


def _split_workload(workload: str) -> tuple[str, str]:
    """``reviews-v3`` → (``reviews``, ``v3``); ``frontend-canary`` → (``frontend``, ``canary``)."""
    service, dash, version = workload.rpartition("-")
    return (service, version) if dash and service else (workload, "unknown")


def _source_identity(workload: str) -> tuple[str, str, str, str]:
    """(app, version, canonical revision, service account) of a calling workload."""
    if workload == DEFAULT_SOURCE[0]:
        return GATEWAY_IDENTITY
    app, version = _split_workload(workload)
    return app, version, version, app


@dataclass
class _Counts:
    """Requests counted so far for one response code: total, sum of latencies, buckets."""

    requests: float = 0.0
    latency_sum: float = 0.0
    buckets: list[float] = field(default_factory=lambda: [0.0] * len(DURATION_BUCKETS_MS))

    def add(self, requests: float, mixture: tuple[tuple[float, float], ...]) -> None:
        self.requests += requests
        self.latency_sum += requests * sum(ms * share for ms, share in mixture)
        for i, le in enumerate(DURATION_BUCKETS_MS):
            self.buckets[i] += requests * sum(share for ms, share in mixture if ms <= le)

    def plus(self, requests: float, mixture: tuple[tuple[float, float], ...]) -> _Counts:
        copy = _Counts(self.requests, self.latency_sum, list(self.buckets))
        copy.add(requests, mixture)
        return copy


@dataclass
class Workload:
    """One Deployment behind one Kubernetes Service, as Istio labels it."""

    namespace: str
    workload: str
    service: str
    version: str
    source_workload: str
    source_namespace: str
    rps: float = 0.0
    error_ratio: float = 0.0
    latency: tuple[tuple[float, float], ...] = ((DEFAULT_LATENCY_MS, 1.0),)
    error_latency: tuple[tuple[float, float], ...] | None = None
    #: Counts up to ``since`` (monotonic seconds); later requests are rps × elapsed.
    counted: dict[str, _Counts] = field(
        default_factory=lambda: {OK_CODE: _Counts(), ERROR_CODE: _Counts()}
    )
    since: float = field(default_factory=time.monotonic)

    def _mixture_for(self, code: str) -> tuple[tuple[float, float], ...]:
        if code == ERROR_CODE and self.error_latency is not None:
            return self.error_latency
        return self.latency

    def _share(self, code: str) -> float:
        return self.error_ratio if code == ERROR_CODE else 1.0 - self.error_ratio

    def counts_at(self, now: float) -> dict[str, _Counts]:
        total = self.rps * max(0.0, now - self.since)
        return {
            code: counts.plus(total * self._share(code), self._mixture_for(code))
            for code, counts in self.counted.items()
        }

    def settle(self, now: float) -> None:
        """Fold the requests served until ``now`` into ``counted`` before a control changes."""
        self.counted = self.counts_at(now)
        self.since = now

    def labels(self, reporter: str, code: str) -> dict[str, str]:
        src, src_ns = self.source_workload, self.source_namespace
        src_app, src_version, src_revision, src_account = _source_identity(src)
        values = {
            "reporter": reporter,
            "source_workload": src,
            "source_workload_namespace": src_ns,
            "source_principal": f"spiffe://{TRUST_DOMAIN}/ns/{src_ns}/sa/{src_account}",
            "source_app": src_app,
            "source_version": src_version,
            "source_cluster": CLUSTER,
            "destination_workload": self.workload,
            "destination_workload_namespace": self.namespace,
            "destination_principal": (
                f"spiffe://{TRUST_DOMAIN}/ns/{self.namespace}/sa/{self.service}"
            ),
            "destination_app": self.service,
            "destination_version": self.version,
            "destination_service": f"{self.service}.{self.namespace}.svc.{TRUST_DOMAIN}",
            "destination_service_name": self.service,
            "destination_service_namespace": self.namespace,
            "destination_cluster": CLUSTER,
            "request_protocol": "http",
            "response_code": code,
            "grpc_response_status": "",
            "response_flags": "-",
            # The server's proxy terminates mTLS; the client's proxy reports "unknown".
            "connection_security_policy": "mutual_tls" if reporter == "destination" else "unknown",
            "source_canonical_service": src_app,
            "destination_canonical_service": self.service,
            "source_canonical_revision": src_revision,
            "destination_canonical_revision": self.version,
        }
        return {name: values[name] for name in ISTIO_LABELS}


def istio_labels(
    namespace: str,
    workload: str,
    *,
    reporter: str = "destination",
    response_code: str = OK_CODE,
    service: str | None = None,
    version: str | None = None,
    source_workload: str = DEFAULT_SOURCE[0],
    source_namespace: str = DEFAULT_SOURCE[1],
) -> dict[str, str]:
    """The full Istio label set of one series, for backfilled data and promtool input series."""
    split_service, split_version = _split_workload(workload)
    return Workload(
        namespace=namespace,
        workload=workload,
        service=service or split_service,
        version=version or split_version,
        source_workload=source_workload,
        source_namespace=source_namespace,
    ).labels(reporter, response_code)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def labels_text(labels: Mapping[str, str]) -> str:
    """``{a="1",b="2"}``: a label set in exposition/PromQL syntax, values escaped."""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class IstioExporter:
    """Thread-safe registry of workloads plus the HTTP server that exposes them."""

    CONTENT_TYPE: ClassVar[str] = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._workloads: dict[tuple[str, str], Workload] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._host = "127.0.0.1"
        self.scrapes = 0

    # --- lifecycle --------------------------------------------------------------------------

    @classmethod
    def start(cls, host: str = "127.0.0.1", port: int = 0) -> IstioExporter:
        """Serve on ``host:port`` (port 0: a free port) from a daemon thread."""
        exporter = cls()
        handler = type("Handler", (_Handler,), {"exporter": exporter})
        server = ThreadingHTTPServer((host, port), handler)
        server.daemon_threads = True
        exporter._server = server
        exporter._host = host
        exporter._thread = threading.Thread(
            target=server.serve_forever, name="istio-exporter", daemon=True
        )
        exporter._thread.start()
        return exporter

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> IstioExporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def target(self) -> str:
        """``host:port`` for a Prometheus static_config."""
        if self._server is None:
            raise RuntimeError("exporter is not running")
        return f"{self._host}:{self._server.server_port}"

    @property
    def url(self) -> str:
        return f"http://{self.target}/metrics"

    # --- controls ---------------------------------------------------------------------------

    def set(
        self,
        namespace: str,
        workload: str,
        *,
        rps: float | None = None,
        error_ratio: float | None = None,
        latency_ms: LatencyModel | None = None,
        error_latency_ms: LatencyModel | None = None,
        service: str | None = None,
        version: str | None = None,
        source_workload: str | None = None,
        source_namespace: str | None = None,
    ) -> float:
        """Register ``workload`` or change its controls from now on; returns the wall-clock time.

        Arguments left ``None`` keep their current value (a new workload: 0 rps, no errors,
        10 ms). ``service``/``version`` default to the workload name split at its last dash;
        ``source_workload`` to the ingress gateway. Counters never go back: a change only bends
        them, so ``rate()`` over a window that starts after the returned time sees the new rps.
        """
        if rps is not None and rps < 0:
            raise ValueError(f"rps {rps} < 0")
        if error_ratio is not None and not 0.0 <= error_ratio <= 1.0:
            raise ValueError(f"error_ratio {error_ratio} outside [0, 1]")
        with self._lock:
            now = time.monotonic()
            key = (namespace, workload)
            current = self._workloads.get(key)
            if current is None:
                split_service, split_version = _split_workload(workload)
                current = Workload(
                    namespace=namespace,
                    workload=workload,
                    service=service or split_service,
                    version=version or split_version,
                    source_workload=source_workload or DEFAULT_SOURCE[0],
                    source_namespace=source_namespace or DEFAULT_SOURCE[1],
                    since=now,
                )
                self._workloads[key] = current
            else:
                current.settle(now)
                current.service = service or current.service
                current.version = version or current.version
                current.source_workload = source_workload or current.source_workload
                current.source_namespace = source_namespace or current.source_namespace
            if rps is not None:
                current.rps = float(rps)
            if error_ratio is not None:
                current.error_ratio = float(error_ratio)
            if latency_ms is not None:
                current.latency = _mixture(latency_ms)
            if error_latency_ms is not None:
                current.error_latency = _mixture(error_latency_ms)
            return time.time()

    def record(self, namespace: str, workload: str, requests: float) -> float:
        """Count ``requests`` at once (a burst) with the workload's current error ratio/latency.

        Gives an idle workload series without a rate: ``set(ns, wl, rps=0)`` then
        ``record(ns, wl, 10)`` is a canary that once answered and now gets no traffic.
        """
        with self._lock:
            now = time.monotonic()
            current = self._workloads.get((namespace, workload))
            if current is None:
                raise KeyError(f"{namespace}/{workload} is not registered; call set() first")
            current.settle(now)
            for code, counts in current.counted.items():
                counts.add(requests * current._share(code), current._mixture_for(code))
            return time.time()

    def remove(self, namespace: str, workload: str) -> None:
        """Stop exposing the workload (its pods are gone: Prometheus marks the series stale)."""
        with self._lock:
            self._workloads.pop((namespace, workload), None)

    def clear(self) -> None:
        with self._lock:
            self._workloads.clear()

    def workloads(self) -> list[Workload]:
        with self._lock:
            return list(self._workloads.values())

    # --- exposition -------------------------------------------------------------------------

    def render(self) -> str:
        """The Prometheus text exposition of every workload, as of now."""
        with self._lock:
            now = time.monotonic()
            snapshot = [(w, w.counts_at(now)) for w in self._workloads.values()]
            self.scrapes += 1
        return "".join(_exposition(snapshot))


def _exposition(snapshot: list[tuple[Workload, dict[str, _Counts]]]) -> Iterator[str]:
    # A series exists once its first request has been counted (Envoy creates stats lazily).
    rows = [
        (workload.labels(reporter, code), counts)
        for workload, by_code in snapshot
        for reporter in REPORTERS
        for code, counts in by_code.items()
        if counts.requests > 0
    ]
    yield "# HELP istio_requests_total Total requests.\n"
    yield "# TYPE istio_requests_total counter\n"
    for labels, counts in rows:
        yield f"istio_requests_total{labels_text(labels)} {_number(counts.requests)}\n"
    name = "istio_request_duration_milliseconds"
    yield f"# HELP {name} Request duration in milliseconds.\n"
    yield f"# TYPE {name} histogram\n"
    for labels, counts in rows:
        for le, count in zip(DURATION_BUCKETS_MS, counts.buckets, strict=True):
            yield f"{name}_bucket{labels_text(labels | {'le': _le(le)})} {_number(count)}\n"
        inf = labels_text(labels | {"le": "+Inf"})
        yield f"{name}_bucket{inf} {_number(counts.requests)}\n"
        yield f"{name}_sum{labels_text(labels)} {_number(counts.latency_sum)}\n"
        yield f"{name}_count{labels_text(labels)} {_number(counts.requests)}\n"


def _le(bound: float) -> str:
    """Bucket bounds as Envoy prints them (``%g``): ``0.5``, ``1``, ``600000``, ``3.6e+06``."""
    return f"{bound:g}"


class _Handler(BaseHTTPRequestHandler):
    exporter: ClassVar[IstioExporter]

    def do_GET(self) -> None:
        if self.path.split("?")[0] != "/metrics":
            self.send_error(404)
            return
        body = self.exporter.render().encode()
        self.send_response(200)
        self.send_header("Content-Type", IstioExporter.CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Scrapes every second would drown pytest's captured output."""
