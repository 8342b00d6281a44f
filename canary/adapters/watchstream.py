"""One list+watch loop: one kind in one namespace (or all), on a thread of its own.

A stream lists once, then watches from the list's resourceVersion, each watch request bounded
by the server-side ``timeoutSeconds`` and resumed from the last resourceVersion seen (bookmarks
included). A 410 Expired re-lists and reports what changed meanwhile; so does the periodic
re-list (``relist_interval``), the safety net under a watch that silently lost an event. Any
other failure is logged and retried after a capped, jittered backoff. Nothing raises out of the
thread.

With a :class:`~canary.adapters.cache.ClusterCache`, every list and event is fed to it *before*
the owner is told of the change, so the tick a change triggers reads the change. A failed
request marks the scope not current in the cache (reads go to the API server) until a list
succeeds or a watch request ends normally.

``kubernetes.watch.Watch`` facts this module relies on (client 37): with ``timeout_seconds`` set,
``stream()`` makes one request and does not retry a 410 itself (it raises
``ApiException(status=410)``); ``stop()`` from another thread shuts the socket down, and the
blocked generator then raises urllib3's ``ProtocolError`` (not a clean end); ``stream()``
clears the stop flag when it (re)starts, so a ``stop()`` issued just before is lost — hence
:meth:`Stream.join` repeats it; ``timeout_seconds`` must be an ``int`` (pydantic-validated).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import structlog
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from canary.adapters.cache import (
    DEPLOYMENTS,
    HELM_SECRETS,
    SECRETS,
    VIRTUAL_SERVICES,
    key_of,
    release_of,
    version_of,
)
from canary.adapters.istio import GROUP
from canary.adapters.kube import DEFAULT_REQUEST_TIMEOUT, translate
from canary.core import events as ev

if TYPE_CHECKING:
    from canary.adapters.watch import Watcher

log = structlog.get_logger("canary")

#: The watched kinds (plural resource names), and how each names itself in messages.
KINDS = (DEPLOYMENTS, VIRTUAL_SERVICES, SECRETS)
RESOURCES = {
    DEPLOYMENTS: "deployments.apps",
    VIRTUAL_SERVICES: f"{VIRTUAL_SERVICES}.{GROUP}",
    SECRETS: f"secrets ({HELM_SECRETS})",
}

_Key = tuple[str, str]  # (namespace, name)


def index_key(kind: str, obj: Mapping[str, Any]) -> _Key:
    """What a plan's interest names: the object, or for a helm Secret its release."""
    ns, name = key_of(obj)
    return (ns, release_of(obj)) if kind == SECRETS else (ns, name)


class Backoff:
    def __init__(self, first: float, cap: float) -> None:
        self._first = first
        self._cap = cap
        self._next = first

    def reset(self) -> None:
        self._next = self._first

    def delay(self) -> float:
        delay = self._next * random.uniform(0.8, 1.2)
        self._next = min(self._cap, self._next * 2)
        return min(self._cap, delay)


def describe(exc: BaseException, verb: str, what: str) -> str:
    if isinstance(exc, Exception):
        try:
            return str(translate(exc, verb=verb, what=what))
        except Exception:
            pass
    return f"{verb} {what}: {type(exc).__name__}: {exc}"


class Stream:
    """One list+watch loop (one kind, one namespace or all) on a thread of its own."""

    def __init__(self, owner: Watcher, kind: str, namespace: str) -> None:
        self.owner = owner
        self.kind = kind
        self.namespace = namespace
        self.halted = threading.Event()
        self._watch: Any = None
        self._known: dict[_Key, tuple[str, _Key]] = {}  # object → (resourceVersion, index key)
        self._listed = False
        self._listed_at = 0.0
        self._rv = ""
        self._received = 0  # watch events, bookmarks included
        self._backoff = Backoff(*owner.backoff)
        scope = namespace or "*"
        self.thread = threading.Thread(
            target=self._run, name=f"canary-watch:{kind}:{scope}", daemon=True
        )

    @property
    def what(self) -> str:
        return f"{RESOURCES[self.kind]} in {self.namespace or 'all namespaces'}"

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def halt(self) -> None:
        """Ask the loop to end and cut its open watch (safe to call repeatedly: ``Watch.stream``
        resets its own stop flag when it (re)opens, so a single early call could be lost)."""
        self.halted.set()
        current = self._watch
        if current is not None:
            current.stop()

    def join(self, deadline: float) -> bool:
        while self.thread.is_alive() and time.monotonic() < deadline:
            self.halt()
            self.thread.join(min(0.05, max(0.0, deadline - time.monotonic())))
        return not self.thread.is_alive()

    # --- the loop -------------------------------------------------------------------------

    def _functions(self) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]:
        """The list function, its positional and keyword arguments (the watch uses the same)."""
        api = self.owner.api
        if self.kind == DEPLOYMENTS:
            apps = client.AppsV1Api(api)
            if self.namespace:
                return apps.list_namespaced_deployment, (self.namespace,), {}
            return apps.list_deployment_for_all_namespaces, (), {}
        if self.kind == SECRETS:
            core = client.CoreV1Api(api)
            selector = {"label_selector": HELM_SECRETS}
            if self.namespace:
                return core.list_namespaced_secret, (self.namespace,), selector
            return core.list_secret_for_all_namespaces, (), selector
        custom = client.CustomObjectsApi(api)
        version = self.owner.virtual_service_version()
        if self.namespace:
            return (
                custom.list_namespaced_custom_object,
                (GROUP, version, self.namespace, VIRTUAL_SERVICES),
                {},
            )
        return custom.list_cluster_custom_object, (GROUP, version, VIRTUAL_SERVICES), {}

    def _healthy(self, ok: bool) -> None:
        cache = self.owner.cache
        if cache is not None:
            cache.healthy(self.kind, self.namespace, ok)

    def _run(self) -> None:
        self._watch = watch.Watch(return_type="object")  # type: ignore[no-untyped-call]
        need_list = True
        expired_at = -1  # events received when the last 410 came
        while not self.halted.is_set() and not self.owner.stopping:
            verb = "list" if need_list else "watch"
            try:
                fn, args, kwargs = self._functions()
                if need_list:
                    self._list(fn, args, kwargs)
                    need_list = False
                began, seen = time.monotonic(), self._received
                self._watch_once(fn, args, kwargs)
                if self.halted.is_set():
                    break
                self._healthy(True)  # a watch that ended normally was current
                if time.monotonic() - began < 1.0 and self._received == seen:
                    # ended at once with nothing to say (a proxy cutting streams?): no hot loop
                    self.halted.wait(self._backoff.delay())
                else:
                    self._backoff.reset()
                if time.monotonic() - self._listed_at >= self.owner.relist_interval:
                    need_list = True  # the long resync: whatever a watch may have missed
            except ApiException as exc:
                if self.halted.is_set():
                    break
                self._healthy(False)
                if exc.status == 410:  # Expired: our resourceVersion is too old
                    self.owner.stats.add("expired")
                    log.info(ev.WATCH_EXPIRED, what=self.what, reason=str(exc.reason))
                    if self._received == expired_at:  # again, with nothing seen since: no spin
                        self.halted.wait(self._backoff.delay())
                    expired_at = self._received
                    need_list = True
                    continue
                self._failed(exc, verb)
            except Exception as exc:  # never raise out of the thread
                if self.halted.is_set():
                    break
                self._healthy(False)
                self._failed(exc, verb)

    def _failed(self, exc: Exception, verb: str) -> None:
        delay = self._backoff.delay()
        log.warning(
            ev.WATCH_RETRYING,
            what=self.what,
            error=describe(exc, verb, self.what),
            delay=round(delay, 1),
        )
        self.owner.stats.add("errors")
        self.halted.wait(delay)

    def _list(self, fn: Callable[..., Any], args: tuple[Any, ...], kw: dict[str, Any]) -> None:
        resp: Any = fn(
            *args, **kw, _preload_content=False, _request_timeout=DEFAULT_REQUEST_TIMEOUT
        )
        try:
            body = json.loads(resp.data)
        finally:
            resp.release_conn()
        if not isinstance(body, Mapping):
            raise ValueError(f"list {self.what}: unexpected answer {str(body)[:200]}")
        items = [i for i in body.get("items") or [] if isinstance(i, Mapping)]
        current = {key_of(i): (version_of(i), index_key(self.kind, i)) for i in items}
        self._rv = str((body.get("metadata") or {}).get("resourceVersion") or "")
        self._listed_at = time.monotonic()
        if self.owner.cache is not None:
            self.owner.cache.listed(self.kind, self.namespace, items)
        stats = self.owner.stats
        stats.add("lists")
        if self._listed:  # a re-list: report what changed while we were not watching
            stats.add("relists")
            known = self._known
            for key in sorted(set(known) | set(current)):
                if known.get(key) != current.get(key):
                    rv, index = current.get(key) or ("", known[key][1])
                    what = "changed" if key in current else "deleted"
                    self.owner.changed(self.kind, index, rv, f"{what} (re-list)")
        self._known = current
        self._listed = True

    def _watch_once(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kw: dict[str, Any]
    ) -> None:
        owner = self.owner
        owner.stats.add("watches")
        kwargs: dict[str, Any] = {
            **kw,
            "timeout_seconds": int(owner.watch_timeout),
            "allow_watch_bookmarks": True,
            # the read timeout only catches a connection that died silently
            "_request_timeout": (DEFAULT_REQUEST_TIMEOUT[0], owner.watch_timeout + 15.0),
        }
        if self._rv:
            kwargs["resource_version"] = self._rv
        for event in self._watch.stream(fn, *args, **kwargs):
            if self.halted.is_set():
                break
            self._event(str(event.get("type")), event.get("raw_object"))

    def _event(self, etype: str, obj: Any) -> None:
        if not isinstance(obj, Mapping):
            return
        self._received += 1
        rv = version_of(obj)
        if rv:
            self._rv = rv
        if etype == "BOOKMARK":
            return
        self.owner.stats.add("events")
        key, index = key_of(obj), index_key(self.kind, obj)
        if etype == "DELETED":
            self._known.pop(key, None)
        else:
            held = self._known.get(key)
            if held is not None and held[0] == rv:  # already seen (a replay after a resume)
                return
            self._known[key] = (rv, index)
        if self.owner.cache is not None:
            self.owner.cache.event(self.kind, etype, obj)
        self.owner.changed(self.kind, index, rv, etype.lower())
