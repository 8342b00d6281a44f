"""Watches on Deployments, VirtualServices and helm's release Secrets: a new canary, a weight
drift or a helm release change is noticed within a second, with a periodic resync as a safety
net, and (given a :class:`~canary.adapters.cache.ClusterCache`) the objects are kept in memory
for the ticks to read.

:class:`Watcher` runs, per watched resource kind and namespace (or per kind, cluster-wide), a
list+watch loop on a thread of its own (:mod:`canary.adapters.watchstream`: resumed from the
last resourceVersion, re-listed on 410 and every ``relist_interval``, failures retried with
backoff). Nothing raises into the caller.

Events are mapped back to the plans whose objects they concern (:class:`Interest`) and
debounced: every event for a plan within ``debounce`` seconds of the first one yields a single
``on_change(plan_keys, reason)``, called from one dispatcher thread (never two at once). The same
thread calls ``on_change(every plan, "resync")`` every ``resync_interval`` seconds. A
VirtualService event carrying a resourceVersion the caller reported with
:meth:`Watcher.note_own_write` is our own write and is skipped (checked when the debounce window
closes, so a note made just after the write returned still counts).

Deployment status-only updates are *not* filtered: availability lives in the status. A stream's
first list reports nothing (whoever adds a plan reads its objects anyway); a re-list reports
every object that changed or vanished since the last one seen.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import structlog
from kubernetes import client

from canary.adapters.cache import DEPLOYMENTS, SECRETS, VIRTUAL_SERVICES, ClusterCache
from canary.adapters.istio import IstioRouter
from canary.adapters.watchstream import KINDS, Stream
from canary.core import events as ev
from canary.core.plan import Plan

log = structlog.get_logger("canary")

_SINGULAR = {
    DEPLOYMENTS: "deployment",
    VIRTUAL_SERVICES: "virtualservice",
    SECRETS: "helm release",
}

#: Server-side ``timeoutSeconds`` of one watch request; the stream is then resumed.
WATCH_TIMEOUT_S = 60
#: Events for one plan within this window → one callback.
DEBOUNCE_S = 0.1
#: Every plan is called back this often, whatever the watches saw.
RESYNC_INTERVAL_S = 30.0
#: Each stream lists again this often: the long resync under the cache, repairing whatever a
#: watch may have missed (the API server's own watch cache is the usual source of the events).
RELIST_INTERVAL_S = 600.0
#: Retry delays after a failure: first, cap (doubling in between, ±20 % jitter).
BACKOFF_S = (1.0, 30.0)
#: How long :meth:`Watcher.stop` waits for its threads.
STOP_TIMEOUT_S = 2.0
#: Own writes remembered per VirtualService (the newest win).
OWN_WRITES_KEPT = 16
#: Plan keys, and what happened ("deployment bookinfo/reviews-v3 modified", "resync", ...).
OnChange = Callable[[set[str], str], None]

_Key = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class Interest:
    """The objects one plan depends on: a change to any of them calls back with ``plan``."""

    plan: str
    namespace: str
    deployments: frozenset[str] = frozenset()
    virtual_services: frozenset[str] = frozenset()
    #: helm releases as (namespace, name): their storage Secrets (a release may live elsewhere)
    releases: frozenset[tuple[str, str]] = frozenset()

    @classmethod
    def of(cls, plan: Plan) -> Interest:
        """A plan's stable and canary Deployments, its VirtualService and its helm release."""
        return cls(
            plan=plan.key,
            namespace=plan.namespace,
            deployments=frozenset({plan.workloads.stable, plan.workloads.canary}),
            virtual_services=frozenset({plan.virtual_service.name}),
            releases=frozenset({(plan.release.namespace, plan.release.name)}),
        )


def interests_of(plans: Iterable[Plan]) -> list[Interest]:
    return [Interest.of(p) for p in plans]


@dataclass(frozen=True)
class _Change:
    kind: str
    namespace: str
    name: str
    resource_version: str
    reason: str


@dataclass
class WatchStats:
    """Counters, for metrics and tests (read them, do not write them)."""

    lists: int = 0
    relists: int = 0
    watches: int = 0
    events: int = 0
    errors: int = 0
    expired: int = 0
    own_writes_skipped: int = 0
    callbacks: int = 0
    callback_errors: int = 0
    resyncs: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def add(self, counter: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + n)


class Watcher:
    """Calls ``on_change(plan_keys, reason)`` soon after a Deployment or VirtualService that
    some plan depends on changes, and for every plan each ``resync_interval`` seconds.

    ``virtual_service_version``: the ``networking.istio.io`` version to watch; None asks API
    discovery (as :class:`IstioRouter` does, retried with backoff until it answers).
    ``cluster_wide``: one watch per kind over all namespaces (needs a ClusterRole) instead of
    one per kind and namespace of the interests (a Role in each namespace suffices).
    """

    def __init__(
        self,
        api: client.ApiClient,
        on_change: OnChange,
        interests: Iterable[Interest] = (),
        *,
        virtual_service_version: str | None = None,
        cluster_wide: bool = False,
        resync_interval: float = RESYNC_INTERVAL_S,
        debounce: float = DEBOUNCE_S,
        watch_timeout: int = WATCH_TIMEOUT_S,
        backoff: tuple[float, float] = BACKOFF_S,
        stop_timeout: float = STOP_TIMEOUT_S,
        relist_interval: float = RELIST_INTERVAL_S,
        cache: ClusterCache | None = None,
    ) -> None:
        self.api = api
        self.cache = cache
        self.relist_interval = relist_interval
        self.on_change = on_change
        self.cluster_wide = cluster_wide
        self.resync_interval = resync_interval
        self.debounce = debounce
        self.watch_timeout = max(1, int(watch_timeout))
        self.backoff = backoff
        self.stop_timeout = stop_timeout
        self.stats = WatchStats()
        self._vs_version = virtual_service_version
        self._router = IstioRouter(api)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._index: dict[str, dict[_Key, frozenset[str]]] = {k: {} for k in KINDS}
        self._plans: frozenset[str] = frozenset()
        self._scopes: set[tuple[str, str]] = set()
        self._streams: dict[tuple[str, str], Stream] = {}
        self._retired: list[Stream] = []
        self._pending: dict[str, list[_Change]] = {}
        self._due: dict[str, float] = {}
        self._own: dict[_Key, deque[str]] = {}
        self._stopping = threading.Event()
        self._started = False
        self._dispatcher: threading.Thread | None = None
        self.set_interests(interests)

    # --- public API ----------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def plans(self) -> frozenset[str]:
        """The plan keys currently watched for."""
        return self._plans

    @property
    def scopes(self) -> list[tuple[str, str]]:
        """The (kind, namespace) pairs watched; namespace "" is all namespaces."""
        with self._lock:
            return sorted(self._scopes)

    def virtual_service_version(self) -> str:
        """The watched ``networking.istio.io`` version (discovered on first use)."""
        if self._vs_version is None:
            self._vs_version = self._router.version
        return self._vs_version

    def set_interests(self, interests: Iterable[Interest]) -> None:
        """Replace the watched objects (plans added, changed or removed). Watches for
        namespaces no plan uses any more end; new namespaces get theirs."""
        index: dict[str, dict[_Key, set[str]]] = {k: {} for k in KINDS}
        plans: set[str] = set()
        for interest in interests:
            plans.add(interest.plan)
            ns = interest.namespace
            for kind, names in (
                (DEPLOYMENTS, interest.deployments),
                (VIRTUAL_SERVICES, interest.virtual_services),
            ):
                for name in names:
                    index[kind].setdefault((ns, name), set()).add(interest.plan)
            for release in interest.releases:
                index[SECRETS].setdefault(release, set()).add(interest.plan)
        scopes = (
            {(kind, "") for kind in KINDS if kind != SECRETS or index[SECRETS]}
            if self.cluster_wide
            else {(kind, ns) for kind in KINDS for (ns, _) in index[kind]}
        )
        with self._lock:
            self._index = {k: {key: frozenset(v) for key, v in m.items()} for k, m in index.items()}
            self._plans = frozenset(plans)
            self._scopes = scopes
            for plan in list(self._pending):
                if plan not in plans:
                    self._pending.pop(plan)
                    self._due.pop(plan, None)
            if self._started and not self.stopping:
                self._reconcile_streams()

    def note_own_write(self, namespace: str, name: str, resource_version: str) -> None:
        """The caller wrote this VirtualService and got this resourceVersion back: the watch
        event for it is not a change anyone else made, and is skipped."""
        with self._lock:
            kept = self._own.setdefault((namespace, name), deque(maxlen=OWN_WRITES_KEPT))
            kept.append(str(resource_version))

    def start(self) -> None:
        """Start the watch threads and the dispatcher. Returns at once; never raises for what
        the API server does (failures are logged and retried)."""
        with self._lock:
            if self._started:
                return
            self._started = True
            self._stopping.clear()
            self._reconcile_streams()
            self._dispatcher = threading.Thread(
                target=self._dispatch, name="canary-watch:dispatch", daemon=True
            )
            self._dispatcher.start()

    def stop(self) -> None:
        """End every thread; returns within ``stop_timeout`` seconds (open watches are cut,
        not waited for). No callback starts after this returns."""
        with self._lock:
            if not self._started:
                return
            self._started = False
            self._stopping.set()
            self._wake.notify_all()
            streams = [*self._streams.values(), *self._retired]
            self._streams.clear()
            self._retired.clear()
            dispatcher = self._dispatcher
            self._dispatcher = None
        deadline = time.monotonic() + self.stop_timeout
        for stream in streams:
            stream.halt()
        stuck = [s.thread.name for s in streams if not s.join(deadline)]
        if dispatcher is not None and dispatcher is not threading.current_thread():
            dispatcher.join(max(0.0, deadline - time.monotonic()))
            if dispatcher.is_alive():
                stuck.append(dispatcher.name)
        if stuck:
            log.warning(ev.WATCH_STUCK, threads=stuck)

    def __enter__(self) -> Watcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- from the stream threads ---------------------------------------------------------

    def _reconcile_streams(self) -> None:
        """Start the missing streams, halt the ones no longer wanted (lock held)."""
        for scope in sorted(self._scopes - set(self._streams)):
            stream = Stream(self, *scope)
            self._streams[scope] = stream
            stream.start()
        for scope in set(self._streams) - self._scopes:
            stream = self._streams.pop(scope)
            stream.halt()
            self._retired.append(stream)
            if self.cache is not None:  # no longer watched: never served from memory again
                self.cache.drop(*scope)
        self._retired = [s for s in self._retired if s.thread.is_alive()]

    def changed(self, kind: str, key: _Key, resource_version: str, what: str) -> None:
        """An object of ``kind`` changed: queue a callback for the plans that depend on it."""
        with self._lock:
            plans = self._index[kind].get(key)
            if not plans:
                return
            ns, name = key
            change = _Change(
                kind, ns, name, resource_version, f"{_SINGULAR[kind]} {ns}/{name} {what}"
            )
            now = time.monotonic()
            for plan in plans:
                self._pending.setdefault(plan, []).append(change)
                self._due.setdefault(plan, now + self.debounce)
            self._wake.notify_all()

    # --- the dispatcher ------------------------------------------------------------------

    def _own_write(self, change: _Change) -> bool:
        """Lock held. Consumes the note when it matches."""
        if change.kind != VIRTUAL_SERVICES or not change.resource_version:
            return False
        kept = self._own.get((change.namespace, change.name))
        if kept is None or change.resource_version not in kept:
            return False
        kept.remove(change.resource_version)
        return True

    def _take_due(self, now: float) -> dict[str, list[str]]:
        """Lock held: the plans whose debounce window closed → their reasons."""
        out: dict[str, list[str]] = {}
        for plan in [p for p, due in self._due.items() if due <= now]:
            self._due.pop(plan)
            reasons: list[str] = []
            for change in self._pending.pop(plan, []):
                if self._own_write(change):
                    self.stats.add("own_writes_skipped")
                elif change.reason not in reasons:
                    reasons.append(change.reason)
            if reasons and plan in self._plans:
                out[plan] = reasons
        return out

    def _dispatch(self) -> None:
        next_resync = time.monotonic() + self.resync_interval
        while True:
            with self._wake:
                while not self.stopping:
                    now = time.monotonic()
                    wake = min([next_resync, *self._due.values()])
                    if wake <= now:
                        break
                    self._wake.wait(wake - now)
                if self.stopping:
                    return
                now = time.monotonic()
                due = self._take_due(now)
                resync = now >= next_resync
                if resync:
                    next_resync = now + self.resync_interval
                plans = self._plans
            by_reason: dict[str, set[str]] = {}
            for plan, reasons in due.items():
                by_reason.setdefault("; ".join(reasons), set()).add(plan)
            for reason, keys in sorted(by_reason.items()):
                self._call(keys, reason)
            if resync and plans:
                self.stats.add("resyncs")
                self._call(set(plans), "resync")

    def _call(self, keys: set[str], reason: str) -> None:
        if self.stopping:
            return
        self.stats.add("callbacks")
        try:
            self.on_change(keys, reason)
        except Exception:
            self.stats.add("callback_errors")
            log.error(
                ev.WATCH_CALLBACK_FAILED,
                plans=sorted(keys),
                reason=reason,
                error=repr(sys.exc_info()[1]),
                exc_info=True,
            )


__all__ = [
    "BACKOFF_S",
    "DEBOUNCE_S",
    "DEPLOYMENTS",
    "KINDS",
    "RELIST_INTERVAL_S",
    "RESYNC_INTERVAL_S",
    "SECRETS",
    "VIRTUAL_SERVICES",
    "WATCH_TIMEOUT_S",
    "Interest",
    "OnChange",
    "WatchStats",
    "Watcher",
    "interests_of",
]
