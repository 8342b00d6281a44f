"""The Kubernetes API, through the official ``kubernetes`` client: connection, errors, workloads.

* :func:`connect`: a kubeconfig and context when given, else in-cluster config; every request
  passes a client-side rate limiter (the Python client has none, unlike client-go's QPS/burst).
* :func:`translate`: ``ApiException`` and transport errors → our typed errors (errors.py), each
  naming what it was about: 404 the missing object, 401/403 the missing RBAC verb and
  resource, 409 a conflict, 422 an invalid object, 429/5xx/timeouts transient.
* :class:`KubeWorkloads`: the Workloads port — a Deployment's availability and the normalised
  pod-template hash that decides whether canary differs from stable (docs/design.md §1).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from canary.adapters import network
from canary.adapters.network import Failure, failure, timed_out
from canary.core import render
from canary.core.durations import format_duration
from canary.core.errors import (
    CanaryError,
    ConfigError,
    ConflictError,
    ForbiddenError,
    InvalidError,
    NotFoundError,
    UnavailableError,
)
from canary.core.model import Event, WorkloadStatus
from canary.core.templates import template_hash
from canary.core.timestamps import iso

#: Sustained requests/s and burst of the control path. Each tick of a plan reads its
#: VirtualService, two Deployments and helm's Secrets and may write once (~5 requests): 50
#: rollouts ticking every 30 s need ~8/s, and a burst of breaches must not queue behind checks.
#: client-go's 5/10 is sized for informer-based controllers; kubectl uses 50/100. A bug that
#: loops on the API server is still slowed, not amplified. Kubernetes Events use their own client
#: (:class:`BackgroundEventSink`) so they never take from this budget.
DEFAULT_QPS = 20.0
DEFAULT_BURST = 40
#: Per-request timeout (connect, read): a hung API server must not stall a tick.
DEFAULT_REQUEST_TIMEOUT = (5.0, 15.0)
#: urllib3 retries only a failed connect, once: a read timeout is not retried (urllib3's default
#: Retry(3) would turn one 15 s timeout into a minute-long stall).
DEFAULT_RETRIES = urllib3.Retry(total=1, connect=1, read=0, status=0, redirect=0)

T = TypeVar("T")

#: The attribute :class:`RateLimitedApiClient` sets on a transport error: its API server URL.
_API_SERVER = "_canary_api_server"


class RateLimitedApiClient(client.ApiClient):
    """An ApiClient whose requests wait for a token bucket (``qps`` sustained, ``burst``)."""

    def __init__(
        self,
        configuration: client.Configuration,
        qps: float = DEFAULT_QPS,
        burst: int = DEFAULT_BURST,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(configuration)
        self._qps = qps
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._stamp = clock()
        self._lock = threading.Lock()

    def _take(self) -> None:
        if self._qps <= 0:
            return
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._qps)
                self._stamp = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                wait = (1 - self._tokens) / self._qps
            self._sleep(wait)

    def call_api(self, *args: Any, **kwargs: Any) -> Any:
        self._take()
        try:
            return super().call_api(*args, **kwargs)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            # a transport error names no API server: :func:`translate` says which one it was
            setattr(exc, _API_SERVER, str(self.configuration.host or ""))
            raise


def connect(
    kubeconfig: str | None = None,
    context: str | None = None,
    *,
    qps: float = DEFAULT_QPS,
    burst: int = DEFAULT_BURST,
    host: str | None = None,
) -> client.ApiClient:
    """An API client, found the way kubectl and helm find theirs: ``host`` (tests), else an
    explicit ``kubeconfig``/``context`` or ``$KUBECONFIG``, else in-cluster, else
    ``~/.kube/config``. (On a pod-based CI runner this keeps canary and helm one identity.)"""
    configuration = client.Configuration()
    configuration.retries = DEFAULT_RETRIES
    explicit = kubeconfig is not None or context is not None or os.environ.get("KUBECONFIG")
    if host is not None:
        configuration.host = host
    elif not explicit and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        try:
            # $KUBECONFIG read now, not when the client was imported (a path list works too)
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig or os.environ.get("KUBECONFIG") or None,
                context=context,
                client_configuration=configuration,
            )
        except (config.ConfigException, OSError) as exc:
            raise ConfigError(
                f"cannot load kubeconfig {_kubeconfig_source(kubeconfig)}"
                f"{f' context {context}' if context else ''}: {exc}"
            ) from None
    return RateLimitedApiClient(configuration, qps=qps, burst=burst)


def _kubeconfig_source(kubeconfig: str | None) -> str:
    """Which file the client tried, as the user would name it."""
    if kubeconfig is not None:
        return kubeconfig
    env = os.environ.get("KUBECONFIG")
    return f"{env} (from $KUBECONFIG)" if env else "~/.kube/config"


def _status(exc: ApiException) -> dict[str, Any]:
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def translate(exc: Exception, *, verb: str, what: str) -> CanaryError:
    """Our typed error for a failed API call. ``verb`` (get/list/patch/...) and ``what``
    (``virtualservices.networking.istio.io bookinfo/reviews``) say what was attempted."""
    if isinstance(exc, ApiException):
        status = _status(exc)
        message = str(status.get("message") or exc.reason or "")
        code = exc.status or 0
        if code == 404:
            return NotFoundError(f"{what} not found ({verb}): {message}")
        if code == 401:
            return ForbiddenError(
                f"unauthorised: cannot {verb} {what}: {message}. The API server did not accept "
                "the controller's credentials (an expired or missing token?)"
            )
        if code == 403:
            return ForbiddenError(
                f"forbidden: cannot {verb} {what}: {message}. Grant the controller's "
                f"ServiceAccount the '{verb}' verb on that resource (see the chart's RBAC)"
            )
        if code == 409:
            return ConflictError(f"{what} changed under us ({verb}): {message}")
        if code == 422:
            return InvalidError(f"{what} rejected as invalid ({verb}): {message}")
        if code == 429 or code >= 500 or code == 0:
            return UnavailableError(f"API server answered {code} to {verb} {what}: {message}")
        return InvalidError(f"API server answered {code} to {verb} {what}: {message}")
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError | TimeoutError):
        return UnavailableError(_transport_error(exc, verb=verb, what=what))
    raise exc


def _api_server(chain: list[BaseException]) -> str:
    """The API server a transport error was about: the ApiClient configuration's host (set by
    :class:`RateLimitedApiClient`), else the urllib3 connection pool's; user info dropped."""
    for e in chain:
        host = getattr(e, _API_SERVER, "")
        if isinstance(host, str) and host:
            parts = urlsplit(host)
            if "@" in parts.netloc:
                host = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
            return host.rstrip("/")
    for e in chain:
        pool = getattr(e, "pool", None)
        if pool is not None and getattr(pool, "host", None):
            scheme = getattr(pool, "scheme", "") or "http"
            return f"{scheme}://{pool.host}" + (f":{pool.port}" if pool.port else "")
    return ""


_TIMEOUT_TEXT = re.compile(r"timeout=([0-9.]+)")


def _transport_error(exc: BaseException, *, verb: str, what: str) -> str:
    """Which API server, which kind of failure, and what was attempted."""
    chain = network.chain(exc)
    server = _api_server(chain)
    name = f"API server {server}" if server else "API server"
    attempt = f"({verb} {what})"
    kind = failure(exc)
    if kind is Failure.DNS:
        host = urlsplit(server).hostname or "?"
        return f"{name} unreachable: cannot resolve host {host} {attempt}"
    if kind is Failure.REFUSED:
        return f"{name} refused the connection {attempt}: is it running, and is that its port?"
    if kind is Failure.TIMEOUT:
        found = next(
            (m for e in chain if timed_out(e) and (m := _TIMEOUT_TEXT.search(str(e)))), None
        )
        # (a single-number timeout is a total: urllib3 reports the read part left, 0.4995)
        waited = timedelta(seconds=round(float(found.group(1)), 2)) if found else None
        within = f" within {format_duration(waited)}" if waited is not None else " in time"
        return f"{name} did not answer{within} {attempt}"
    if kind is Failure.TLS:
        return f"{name}: the TLS handshake failed {attempt}: check its CA and certificate"
    if kind is Failure.DROPPED:
        return f"{name} dropped the connection {attempt}"
    return f"{name} unreachable {attempt}: {type(exc).__name__}"


def call(fn: Callable[[], T], *, verb: str, what: str) -> T:
    """Run one API call, translating its failure (see :func:`translate`)."""
    try:
        return fn()
    except (ApiException, urllib3.exceptions.HTTPError, OSError, TimeoutError) as exc:
        raise translate(exc, verb=verb, what=what) from exc


def _available(dep: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether a Deployment is fully rolled out and available, and if not, why — the rules of
    ``kubectl rollout status``, plus the progress-deadline condition."""
    meta = dep.get("metadata") or {}
    spec = dep.get("spec") or {}
    status = dep.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return False, f"progress deadline exceeded: {cond.get('message', '')}".strip()
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        return False, "Waiting for the Deployment spec update to be observed"
    replicas = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    if replicas == 0:
        return False, "scaled to zero replicas"
    if updated < replicas:
        return False, f"Waiting for rollout to finish: {updated} of {replicas} updated replicas"
    if total > updated:
        return False, f"Waiting for rollout to finish: {total - updated} old replicas pending"
    if available < updated:
        return False, (
            f"Waiting for rollout to finish: {available} of {updated} updated replicas are "
            "available"
        )
    return True, ""


def workload_status(name: str, dep: Mapping[str, Any] | None) -> WorkloadStatus:
    """A Deployment (as a JSON dict) → what decide needs to know about it."""
    if dep is None:
        return WorkloadStatus(name=name, exists=False, available=False, reason="not found")
    available, reason = _available(dep)
    template = (dep.get("spec") or {}).get("template") or {}
    return WorkloadStatus(
        name=name, available=available, template_hash=template_hash(template), reason=reason
    )


class KubeWorkloads:
    """The Workloads port over apps/v1 Deployments."""

    def __init__(self, api: client.ApiClient) -> None:
        self._api = api
        self._apps = client.AppsV1Api(api)

    def status(self, namespace: str, name: str) -> WorkloadStatus:
        what = f"deployments.apps {namespace}/{name}"
        try:
            dep = call(
                lambda: self._apps.read_namespaced_deployment(
                    name, namespace, _request_timeout=DEFAULT_REQUEST_TIMEOUT
                ),
                verb="get",
                what=what,
            )
        except NotFoundError:
            return workload_status(name, None)
        return workload_status(name, self._api.sanitize_for_serialization(dep))  # type: ignore[no-untyped-call]


MERGE_PATCH = "application/merge-patch+json"
#: Events with the same reason and message for one plan within this window are folded into one
#: Event whose count goes up (as client-go's EventRecorder does), not posted anew.
EVENT_AGGREGATE_WINDOW = 600.0
#: Per plan: a flapping rollout may post 10 Events at once and one every 6 s after that; the
#: rest are dropped (the log line is still written) so it cannot flood the API server.
EVENT_BURST = 10
EVENT_REFILL_PER_SECOND = 1 / 6
#: Folds kept before stale ones are pruned.
EVENT_PRUNE_AT = 1000
#: Kubernetes truncates longer Event messages anyway.
EVENT_MESSAGE_MAX = 1024


class KubeEventSink:
    """The EventSink port: a core/v1 Event per emitted event, reason = event name, message the
    event's text (:func:`canary.core.render.describe`), on the plan's VirtualService;
    aggregated and rate-limited per plan. Never raises."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        component: str = "canary",
        instance: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._core = client.CoreV1Api(api)
        self._component = component
        self._instance = instance or os.environ.get("HOSTNAME", "")
        self._clock = clock
        self._objects: dict[str, tuple[str, str]] = {}  # plan key → (apiVersion, VS name)
        self._recent: dict[tuple[str, str, str, str], tuple[str, int, float]] = {}
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self.posted = 0
        self.aggregated = 0
        self.dropped = 0
        self.failed = 0

    def register(self, namespace: str, plan: str, vs_name: str, api_version: str) -> None:
        """Which VirtualService a plan's Events are about (default: one named like the plan)."""
        self._objects[f"{namespace}/{plan}"] = (api_version, vs_name)

    def _prune(self, now: float) -> None:
        """Forget folds older than the aggregation window (memory stays bounded)."""
        if len(self._recent) > EVENT_PRUNE_AT:
            stale = [k for k, v in self._recent.items() if now - v[2] >= EVENT_AGGREGATE_WINDOW]
            for k in stale:
                del self._recent[k]

    def _allow(self, key: str, now: float) -> bool:
        tokens, stamp = self._buckets.get(key, (float(EVENT_BURST), now))
        tokens = min(float(EVENT_BURST), tokens + (now - stamp) * EVENT_REFILL_PER_SECOND)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1, now)
        return True

    def _message(self, event: Event) -> str:
        record = {"event": event.name, **event.fields}
        text = render.describe(record)
        return (text or str(event.fields.get("reason") or event.name))[:EVENT_MESSAGE_MAX]

    def post(self, namespace: str, plan: str, event: Event) -> None:
        try:
            self._post(namespace, plan, event)
        except Exception:  # an Event is never worth failing a tick for
            self.failed += 1

    def _post(self, namespace: str, plan: str, event: Event) -> None:
        key = f"{namespace}/{plan}"
        message = self._message(event)
        now = self._clock()
        stamp = datetime.now(UTC)
        fold = (namespace, plan, event.name, message)
        with self._lock:
            self._prune(now)
            recent = self._recent.get(fold)
            # Every API write of the sink, a new Event or a count bump, takes a token: a repeat
            # that finds none is only counted here and goes out with the next bump.
            if recent is not None and now - recent[2] < EVENT_AGGREGATE_WINDOW:
                name, count, _ = recent
                self._recent[fold] = (name, count + 1, now)
                self.aggregated += 1
                if not self._allow(key, now):
                    self.dropped += 1
                    return
                patch = {"count": count + 1, "lastTimestamp": iso(stamp)}
            else:
                if not self._allow(key, now):
                    self.dropped += 1
                    return
                name, patch = "", {}
        if patch:
            call(
                lambda: self._core.patch_namespaced_event(
                    name,
                    namespace,
                    patch,
                    _content_type=MERGE_PATCH,
                    _request_timeout=DEFAULT_REQUEST_TIMEOUT,
                ),
                verb="patch",
                what=f"events {namespace}/{name}",
            )
            return
        api_version, vs_name = self._objects.get(key, ("networking.istio.io/v1", plan))
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{plan}.", namespace=namespace),
            involved_object=client.V1ObjectReference(
                api_version=api_version, kind="VirtualService", name=vs_name, namespace=namespace
            ),
            reason=event.name,
            message=message,
            type="Warning" if event.warning else "Normal",
            count=1,
            first_timestamp=stamp,
            last_timestamp=stamp,
            source=client.V1EventSource(component=self._component),
            reporting_component=self._component,
            reporting_instance=self._instance or None,
        )
        created = call(
            lambda: self._core.create_namespaced_event(
                namespace, body, _request_timeout=DEFAULT_REQUEST_TIMEOUT
            ),
            verb="create",
            what=f"events in {namespace}",
        )
        with self._lock:
            self._recent[fold] = (str(created.metadata.name), 1, now)
            self.posted += 1


#: Events waiting to be posted; beyond this the oldest are dropped (the log line has them all).
EVENT_QUEUE_SIZE = 1000


class BackgroundEventSink:
    """An EventSink that posts from its own thread: a tick never waits for an Event (on the way
    to a rollback, the helm call must not queue behind Event posts). ``close`` posts what is
    queued, within a deadline. Never raises, never blocks."""

    def __init__(self, inner: KubeEventSink, queue_size: int = EVENT_QUEUE_SIZE) -> None:
        self.inner = inner
        self._queue: deque[tuple[str, str, Event]] = deque(maxlen=queue_size)
        self._wake = threading.Condition()
        self._closing = False
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="canary-events", daemon=True)
        self._thread.start()

    def register(self, namespace: str, plan: str, vs_name: str, api_version: str) -> None:
        self.inner.register(namespace, plan, vs_name, api_version)

    def post(self, namespace: str, plan: str, event: Event) -> None:
        with self._wake:
            if self._closing:
                return
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1
            self._queue.append((namespace, plan, event))
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closing:
                    self._wake.wait()
                if not self._queue:
                    return
                item = self._queue.popleft()
            self.inner.post(*item)

    def close(self, timeout: float) -> None:
        """Post what is queued (up to ``timeout`` seconds), then stop."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout)


def recent_events(
    api: client.ApiClient, namespace: str, involved: str
) -> list[tuple[str, str, datetime | None]]:
    """(reason, message, last seen) of the Events about one object, oldest first (`canary
    status` shows the last one and the last check)."""
    found = call(
        lambda: client.CoreV1Api(api).list_namespaced_event(
            namespace,
            field_selector=f"involvedObject.name={involved}",
            _request_timeout=DEFAULT_REQUEST_TIMEOUT,
        ),
        verb="list",
        what=f"events in {namespace}",
    )
    rows = [
        (str(e.reason or ""), str(e.message or ""), e.last_timestamp or e.event_time)
        for e in found.items or []
    ]
    return sorted(rows, key=lambda r: r[2] or datetime.min.replace(tzinfo=UTC))
