"""What the watches last saw of the served namespaces: VirtualServices, Deployments and helm's
release Secrets, so that a tick reads memory, not the API server.

:class:`ClusterCache` is fed by the watch streams (:mod:`canary.adapters.watchstream`): a list
replaces a scope's content, each event updates one object. It keeps a projection of each kind,
not the objects: a VirtualService without its ``managedFields`` (writes are JSON Patches built
from it), a Deployment as the :class:`WorkloadStatus` decide reads, a release Secret as its
revision number and status plus the description of the revisions decide reads (the newest and
the deployed one; helm's gzipped release bodies are decoded once, when they arrive, and not
kept).

Reads answer :data:`MISS` whenever memory cannot be trusted, and the caller then asks the API
server (``Cached*`` below, one GET or list):

* the scope (kind, namespace) has not been listed yet, or its watch failed and has not been
  re-established (a stale cache never passes for a current one);
* the object was invalidated after a failed write (a conflict): the next read is a GET,
  and decide runs again on what it returns.

Freshness: an object put by our own write, or by a GET, is replaced only by one with a greater
resourceVersion (compared as integers, which is what every API server backed by etcd hands
out; an opaque one is taken as newer), so a tick never decides on a cached object older than
the write it made itself.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from kubernetes import client

from canary.adapters.helmstore import SecretHistory, _labelled, _revision
from canary.adapters.istio import IstioRouter, view_of
from canary.adapters.kube import KubeWorkloads, workload_status
from canary.core.errors import ConfigError, NotFoundError
from canary.core.model import ReleaseInfo, Revision, RevisionStatus, WorkloadStatus
from canary.core.plan import Plan, ReleaseRef
from canary.core.ports import ReleaseManager, RouteView

DEPLOYMENTS: Final = "deployments"
VIRTUAL_SERVICES: Final = "virtualservices"
SECRETS: Final = "secrets"
#: helm's release Secrets carry this label; the watch selects them by it.
HELM_SECRETS: Final = "owner=helm"

_Key = tuple[str, str]  # (namespace, name)


class _Miss:
    def __repr__(self) -> str:
        return "MISS"


#: A read the cache cannot answer: ask the API server.
MISS: Final = _Miss()


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def key_of(obj: Mapping[str, Any]) -> _Key:
    meta = _meta(obj)
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def version_of(obj: Mapping[str, Any]) -> str:
    return str(_meta(obj).get("resourceVersion") or "")


def newer(candidate: str, current: str) -> bool:
    """Whether resourceVersion ``candidate`` may replace ``current``: greater as integers;
    an empty or opaque (non-numeric) one is taken as newer, as a watch event always was."""
    if candidate.isdigit() and current.isdigit():
        return int(candidate) > int(current)
    return True


def release_of(secret: Mapping[str, Any]) -> str:
    """The release a helm storage Secret belongs to (its ``name`` label)."""
    labels = _meta(secret).get("labels") or {}
    return str(labels.get("name") or "")


@dataclass(frozen=True)
class _Entry:
    """One release Secret: its revision, with the description decoded or not (None)."""

    version: str
    number: int
    status: RevisionStatus
    description: str | None  # None: not decoded (decide never reads it)
    error: str = ""  # the Secret could not be decoded: the history is unreadable


def _entry(secret: Mapping[str, Any], decode: bool) -> _Entry | None:
    labelled = _labelled(secret)
    if labelled is None:
        return None
    number, status = labelled
    if not decode:
        return _Entry(version_of(secret), number, status, None)
    try:
        rev = _revision(secret)
    except ConfigError as exc:
        return _Entry(version_of(secret), number, status, None, error=str(exc))
    return _Entry(version_of(secret), number, status, rev.description if rev else "")


def _wanted(entries: Iterable[_Entry]) -> set[int]:
    """The revisions whose description decide reads: the newest and the newest deployed."""
    listed = list(entries)
    wanted = {max(e.number for e in listed)} if listed else set()
    deployed = [e.number for e in listed if e.status is RevisionStatus.DEPLOYED]
    if deployed:
        wanted.add(max(deployed))
    return wanted


@dataclass
class CacheStats:
    """Counters for metrics and tests (read them, do not write them)."""

    hits: int = 0
    misses: int = 0
    invalidations: int = 0
    decoded: int = 0


@dataclass
class ClusterCache:
    """Projections of the watched objects, by kind and (namespace, name). Thread-safe."""

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _synced: set[tuple[str, str]] = field(default_factory=set)
    _vs: dict[_Key, Mapping[str, Any]] = field(default_factory=dict)
    _deps: dict[_Key, tuple[str, WorkloadStatus]] = field(default_factory=dict)
    _secrets: dict[_Key, dict[str, _Entry]] = field(default_factory=dict)  # release → name → entry
    _dirty: set[tuple[str, _Key]] = field(default_factory=set)
    stats: CacheStats = field(default_factory=CacheStats)

    # --- fed by the watch streams -----------------------------------------------------------

    def listed(self, kind: str, namespace: str, items: Iterable[Mapping[str, Any]]) -> None:
        """A (re-)list of ``kind`` in ``namespace`` ("" = all): it replaces what was held."""
        items = list(items)
        with self._lock:
            store = self._store(kind)
            for key in [k for k in store if not namespace or k[0] == namespace]:
                del store[key]
            if kind == SECRETS:
                self._list_secrets(items)
            else:
                for obj in items:
                    self._put(kind, obj, force=True)
            self._synced.add((kind, namespace))

    def event(self, kind: str, etype: str, obj: Mapping[str, Any]) -> None:
        """One watch event (ADDED, MODIFIED, DELETED)."""
        with self._lock:
            if kind == SECRETS:
                self._secret_event(etype, obj)
            elif etype == "DELETED":
                self._store(kind).pop(key_of(obj), None)
            else:
                self._put(kind, obj)

    def healthy(self, kind: str, namespace: str, ok: bool) -> None:
        """Whether the scope's watch is current (a failed watch makes every read a MISS until a
        list, or a watch that ends normally, shows it is current again)."""
        with self._lock:
            if ok:
                self._synced.add((kind, namespace))
            else:
                self._synced.discard((kind, namespace))

    def drop(self, kind: str, namespace: str) -> None:
        """The scope is no longer watched: forget it."""
        with self._lock:
            self._synced.discard((kind, namespace))
            store = self._store(kind)
            for key in [k for k in store if not namespace or k[0] == namespace]:
                del store[key]

    # --- written by us, or read fresh -------------------------------------------------------

    def put(self, kind: str, obj: Mapping[str, Any]) -> None:
        """An object from our own write or a GET: held unless a newer one is."""
        with self._lock:
            self._put(kind, obj)
            self._dirty.discard((kind, key_of(obj)))

    def invalidate(self, kind: str, namespace: str, name: str) -> None:
        """A write conflicted: the next read of this object goes to the API server."""
        with self._lock:
            self._dirty.add((kind, (namespace, name)))
            self.stats.invalidations += 1

    # --- reads ------------------------------------------------------------------------------

    def virtual_service(self, namespace: str, name: str) -> Mapping[str, Any] | _Miss | None:
        found: Mapping[str, Any] | _Miss | None = self._read(VIRTUAL_SERVICES, (namespace, name))
        return found

    def deployment(self, namespace: str, name: str) -> WorkloadStatus | _Miss | None:
        found = self._read(DEPLOYMENTS, (namespace, name))
        if isinstance(found, tuple):
            status: WorkloadStatus = found[1]
            return status
        return MISS if isinstance(found, _Miss) else None

    def release(self, namespace: str, name: str) -> tuple[_Entry, ...] | _Miss:
        found = self._read(SECRETS, (namespace, name))
        if isinstance(found, _Miss):
            return found
        return tuple(found.values()) if found else ()

    def synced(self, kind: str, namespace: str) -> bool:
        with self._lock:
            return self._is_synced(kind, namespace)

    def size(self) -> dict[str, int]:
        with self._lock:
            return {
                VIRTUAL_SERVICES: len(self._vs),
                DEPLOYMENTS: len(self._deps),
                SECRETS: sum(len(v) for v in self._secrets.values()),
            }

    # --- lock held --------------------------------------------------------------------------

    def _store(self, kind: str) -> dict[_Key, Any]:
        if kind == VIRTUAL_SERVICES:
            return self._vs
        if kind == DEPLOYMENTS:
            return self._deps
        if kind == SECRETS:
            return self._secrets
        raise ValueError(f"not a cached kind: {kind}")

    def _is_synced(self, kind: str, namespace: str) -> bool:
        return (kind, namespace) in self._synced or (kind, "") in self._synced

    def _read(self, kind: str, key: _Key) -> Any:
        with self._lock:
            if not self._is_synced(kind, key[0]) or (kind, key) in self._dirty:
                self.stats.misses += 1
                return MISS
            self.stats.hits += 1
            return self._store(kind).get(key)

    def _put(self, kind: str, obj: Mapping[str, Any], force: bool = False) -> None:
        key, version = key_of(obj), version_of(obj)
        if kind == VIRTUAL_SERVICES:
            held = self._vs.get(key)
            if force or held is None or newer(version, version_of(held)):
                self._vs[key] = _without_managed_fields(obj)
        elif kind == DEPLOYMENTS:
            held_dep = self._deps.get(key)
            if force or held_dep is None or newer(version, held_dep[0]):
                self._deps[key] = (version, workload_status(key[1], obj))
        else:
            raise ValueError(f"not a cached kind: {kind}")

    def _list_secrets(self, items: list[Mapping[str, Any]]) -> None:
        by_release: dict[_Key, list[Mapping[str, Any]]] = {}
        for secret in items:
            by_release.setdefault((key_of(secret)[0], release_of(secret)), []).append(secret)
        for release, secrets in by_release.items():
            plain = [(s, _entry(s, decode=False)) for s in secrets]
            wanted = _wanted(e for _, e in plain if e is not None)
            entries: dict[str, _Entry] = {}
            for secret, bare in plain:
                if bare is None:
                    continue
                kept = bare
                if bare.number in wanted:
                    kept = _entry(secret, decode=True) or bare
                    self.stats.decoded += 1
                entries[key_of(secret)[1]] = kept
            self._secrets[release] = entries

    def _secret_event(self, etype: str, secret: Mapping[str, Any]) -> None:
        ns, name = key_of(secret)
        release = (ns, release_of(secret))
        entries = self._secrets.setdefault(release, {})
        if etype == "DELETED":
            entries.pop(name, None)
            if not entries:
                del self._secrets[release]
            return
        held = entries.get(name)
        if held is not None and not newer(version_of(secret), held.version):
            return
        plain = _entry(secret, decode=False)
        if plain is None:
            entries.pop(name, None)
            return
        newest = max((e.number for e in entries.values()), default=0)
        decode = plain.status is RevisionStatus.DEPLOYED or plain.number >= newest
        if decode:
            self.stats.decoded += 1
        entries[name] = (_entry(secret, decode=True) or plain) if decode else plain


def _without_managed_fields(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = _meta(obj)
    if "managedFields" not in meta:
        return obj
    return {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


# --- the ports, reading the cache ----------------------------------------------------------


class CachedRouter(IstioRouter):
    """IstioRouter reading VirtualServices from the cache; writes are as IstioRouter's (one
    JSON Patch with the resourceVersion test). A write's answer is put in the cache; a
    conflict invalidates the object, so the controller's re-read is a GET."""

    def __init__(self, api: client.ApiClient, cache: ClusterCache, **kwargs: Any) -> None:
        super().__init__(api, **kwargs)
        self.cache = cache

    def read(self, plan: Plan) -> RouteView:
        held = self.cache.virtual_service(plan.namespace, plan.virtual_service.name)
        if isinstance(held, _Miss):
            view = self.fetch(plan)
            assert view.obj is not None
            self.cache.put(VIRTUAL_SERVICES, view.obj)
            return view
        if held is None:
            raise NotFoundError(f"{self._what(plan)} not found")
        return view_of(held, plan)

    def write(
        self,
        plan: Plan,
        view: RouteView,
        weights: Any,
        state_json: str,
        drop_command: bool,
    ) -> RouteView:
        try:
            written = super().write(plan, view, weights, state_json, drop_command)
        except Exception:
            # whatever went wrong (a conflict, a timeout that may have applied it), memory no
            # longer knows this object: the next read is a GET
            self.cache.invalidate(VIRTUAL_SERVICES, plan.namespace, plan.virtual_service.name)
            raise
        if written.obj is not None:
            self.cache.put(VIRTUAL_SERVICES, written.obj)
        return written


class CachedWorkloads(KubeWorkloads):
    """KubeWorkloads answering from the cache (a GET while the scope is not synced)."""

    def __init__(self, api: client.ApiClient, cache: ClusterCache) -> None:
        super().__init__(api)
        self.cache = cache

    def status(self, namespace: str, name: str) -> WorkloadStatus:
        held = self.cache.deployment(namespace, name)
        if isinstance(held, _Miss):
            return super().status(namespace, name)
        return held if held is not None else workload_status(name, None)


class CachedHistory(SecretHistory):
    """SecretHistory answering from the cache; a list call only while the scope is not synced
    or when a revision decide reads was not decoded."""

    def __init__(
        self, api: client.ApiClient, delegate: ReleaseManager, cache: ClusterCache
    ) -> None:
        super().__init__(api, delegate)
        self.cache = cache

    def history(self, release: ReleaseRef) -> ReleaseInfo:
        held = self.cache.release(release.namespace, release.name)
        if isinstance(held, _Miss):
            return super().history(release)
        if not held:
            raise NotFoundError(f"helm release {release.namespace}/{release.name} not found")
        wanted = _wanted(held)
        revisions: list[Revision] = []
        for e in held:
            if e.number in wanted:
                if e.error:
                    raise ConfigError(e.error)
                if e.description is None:  # became wanted after it arrived: read it
                    return super().history(release)
            # as SecretHistory: a description only for the revisions decide reads
            described = e.description if e.number in wanted else ""
            revisions.append(Revision(e.number, e.status, described or ""))
        return ReleaseInfo(tuple(sorted(revisions, key=lambda r: r.number)))


__all__ = [
    "DEPLOYMENTS",
    "HELM_SECRETS",
    "MISS",
    "SECRETS",
    "VIRTUAL_SERVICES",
    "CacheStats",
    "CachedHistory",
    "CachedRouter",
    "CachedWorkloads",
    "ClusterCache",
    "key_of",
    "newer",
    "release_of",
    "version_of",
]
