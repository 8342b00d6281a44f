"""An in-process Kubernetes API server double; the real ``kubernetes`` client talks to it over HTTP.

design §8: the controller acts on the cluster only through the official ``kubernetes`` Python
client, so the tests put that client, unchanged, in front of this server on 127.0.0.1 and assert
both what it sent (:attr:`KubeApiServer.requests`) and what the cluster now holds.

Why our own server and not kmock
--------------------------------
kmock 0.8 (PyPI ``kmock``) was evaluated first. Its ``KubernetesEmulator`` stores objects as
plain dicts and "patches" every PATCH body as a recursive dict merge whatever the Content-Type
(a JSON Patch list is not applied at all), has no PUT/replace, no resourceVersion, no
``metadata.generation``, no watch ``resourceVersion``/``timeoutSeconds`` (its watch streams the
whole bus until cancelled) and maps every unexpected error to 500. Being faithful would mean
replacing its create/update/delete interceptor, its list/watch/fetch handlers and its error
rendering, i.e. all of its Kubernetes layer, by overriding private ``kmock._internal`` classes,
and it would still bring aiohttp, attrs, yarl, jsonpatch and pytest-asyncio (its fixture is
async, and the sync client deadlocks inside it, so it would need an event loop on a thread of
its own anyway). A small server on the stdlib's :class:`http.server.ThreadingHTTPServer`, with
the API machinery written after kube-apiserver's own code, is shorter than that layer and has
no dependency at all (PyYAML, already a runtime dependency of canary, only for YAML bodies).

What is faithful (to kube-apiserver 1.3x; the Go functions named are the models)
---------------------------------------------------------------------------------
* Paths: ``/api/v1/...`` and ``/apis/{group}/{version}/...``, namespaced and cluster-wide
  (list/watch across namespaces), ``/status`` subresources; a group/version that is not served
  answers 404 "the server could not find the requested resource", as the real server does.
* Resource versions: one global counter; every *effective* write bumps it and stamps it on the
  object. A write that changes nothing (same object after defaulting) is a no-op, as in etcd3's
  ``GuaranteedUpdate``: no new resourceVersion, no watch event.
* ``metadata.generation``: 1 on create; Deployments bump it when ``spec`` or the annotations
  change (``deploymentStrategy.PrepareForUpdate``); custom resources when anything but
  ``metadata`` and ``status`` changes. Leases and Events have none.
* Status subresource (Deployments, VirtualServices, DestinationRules): writes to the main
  resource keep the old ``status``; writes to ``/status`` change only ``status``; create clears it.
* Optimistic concurrency: PUT and PATCH whose resulting ``metadata.resourceVersion`` differs
  from the stored one → 409 Conflict ("Operation cannot be fulfilled on ..."). PUT without a
  resourceVersion is allowed for built-in types and 422 for custom resources
  (``AllowUnconditionalUpdate``). PUT of a missing object → 404 (Events: created).
* PATCH content types (``handlers/patch.go``): ``application/json-patch+json`` (RFC 6902 with
  the messages of gopkg.in/evanphx/json-patch.v4, including its quirk that ``replace`` of a
  missing *object key* adds it), ``application/merge-patch+json`` (RFC 7386),
  ``application/strategic-merge-patch+json`` for built-in types only (merge patch plus merging of
  the usual keyed lists -- containers, env, ports, volumes, ... -- and ``$patch`` directives; a
  custom resource answers 415 as the real server does). Any other type → 415 listing the
  accepted ones. A JSON Patch that fails to apply (failed ``test``, missing path) → 422 Invalid
  with the real, uninformative body "the server rejected our request due to an error in our
  request" and empty details (``NewGenericServerResponse``): the evanphx message is *not* sent,
  it is kept in the request log's ``detail``.
* Status bodies: kind/apiVersion/metadata/status/message/reason/details/code as
  ``k8s.io/apimachinery/pkg/api/errors`` builds them (NotFound, AlreadyExists, Conflict,
  Invalid, Forbidden, UnsupportedMediaType, BadRequest, MethodNotAllowed, Expired, ...).
* RBAC denials (:meth:`KubeApiServer.deny`) with ``forbiddenMessage``'s exact wording.
* Watch: ``?watch=true&resourceVersion=N&timeoutSeconds=S``, chunked newline-delimited events
  after N (ADDED for every existing object when N is unset or "0"), objects that stop/start
  matching a label selector come as DELETED/ADDED, 410 Expired as an ERROR event for a
  resourceVersion older than :meth:`KubeApiServer.compact`, the stream ends after S seconds
  (a BOOKMARK first when ``allowWatchBookmarks=true``).
* Discovery: ``/api``, ``/api/v1``, ``/apis``, ``/apis/{g}``, ``/apis/{g}/{v}``, ``/version``,
  reflecting the served versions in Kubernetes' version priority order.
* Create: uid, creationTimestamp, ``generateName``, namespace from the URL (a different one in
  the body → 400), AlreadyExists, missing name → 422; Deployment defaulting (replicas, strategy,
  revisionHistoryLimit, progressDeadlineSeconds, pod and container defaults) and the basic
  Deployment validation (selector required and matching the template labels, containers).
  Timestamps are normalised as Go renders ``metav1.Time`` (seconds, ``Z``) and
  ``metav1.MicroTime`` (microseconds, ``Z``); ``null`` fields are dropped.
* Lists: ``{Kind}List`` with the current resourceVersion; items of built-in types carry no
  kind/apiVersion (custom resources do), as on the wire.
* Bodies: POST/PUT without a Content-Type are read as JSON (``NegotiateInputSerializer``) --
  kubernetes 37 sends none there; other types than JSON/YAML → 415; ``?dryRun=All`` persists
  nothing.
* DELETE: preconditions (409), finalizers (deletionTimestamp, then removal once the last
  finalizer is gone), Status "Success" for built-in types and the deleted object for custom
  resources (``ReturnDeletedObject``).

What is not: authentication (every request is the user :data:`DEFAULT_USER`), namespaces as
objects (every namespace exists), admission webhooks, managedFields and server-side apply
(``application/apply-patch+yaml`` answers 500 "not implemented by the double" so a test cannot
mistake it for real behaviour), schema validation of custom resources, pagination
(``limit``/``continue`` are ignored), garbage collection (``propagationPolicy`` is ignored),
aggregated discovery (the legacy documents are served whatever the Accept header), and the
sharing of storage between core/v1 and events.k8s.io/v1 Events (two separate stores here).

Usage::

    with KubeApiServer(served={"networking.istio.io": ["v1beta1"]}) as kube:
        kube.put_object(virtual_service)            # seed, no HTTP
        api = kube.client()                          # kubernetes.client.ApiClient
        client.CustomObjectsApi(api).patch_namespaced_custom_object(...)
        kube.requests.last(verb="patch").body       # what the client sent
        kube.get_object("networking.istio.io", "v1beta1", "virtualservices", "bookinfo", "reviews")
        kube.deny("patch", "networking.istio.io", "virtualservices", namespace="bookinfo")
        kube.fail(503, times=2, verb="get")          # the next two GETs answer 503
"""

from __future__ import annotations

import bisect
import contextlib
import copy
import json
import random
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import yaml

#: The identity every request is made as (the controller's ServiceAccount in the design).
DEFAULT_USER = "system:serviceaccount:canary:canary"

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH_YAML = "application/apply-patch+yaml"
#: What kube-apiserver accepts for PATCH of built-in types and of custom resources, in its order.
BUILTIN_PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH_YAML)
CUSTOM_PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, APPLY_PATCH_YAML)
#: What it accepts as a body for POST and PUT.
BODY_TYPES = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

#: A watch without ``timeoutSeconds`` ends after this (kube-apiserver: 30-60 min at random).
DEFAULT_WATCH_TIMEOUT_S = 1800.0
OPTIMISTIC_LOCK_MSG = (
    "the object has been modified; please apply your changes to the latest version and try again"
)
NOT_FOUND_MSG = "the server could not find the requested resource"

VERSION_INFO = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.1",
    "gitCommit": "8adc0f041b8e7ad1d30e29cc59c6ae7a15e19828",
    "gitTreeState": "clean",
    "buildDate": "2025-05-15T08:19:08Z",
    "goVersion": "go1.24.2",
    "compiler": "gc",
    "platform": "linux/amd64",
}

CUSTOM_VERBS = ("delete", "deletecollection", "get", "list", "patch", "create", "update", "watch")
STATUS_VERBS = ("get", "patch", "update")

_TIME_S = "s"  # metav1.Time: RFC 3339, whole seconds
_TIME_US = "us"  # metav1.MicroTime: RFC 3339 with 6 fractional digits


# --- resource types ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceType:
    """One API resource as the server serves it.

    ``versions`` are all the versions it can be served at, the first being the storage version.
    ``generation``: "none", "spec+annotations" (Deployments) or "non-metadata" (custom
    resources: anything outside metadata and status). ``time_fields``: dotted paths (``[]``
    for "every item of a list") of ``metav1.Time`` / ``MicroTime`` fields to normalise.
    """

    group: str
    versions: tuple[str, ...]
    plural: str
    kind: str
    singular: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status_subresource: bool = False
    generation: str = "none"
    custom: bool = False
    create_on_update: bool = False
    deployment_defaults: bool = False
    time_fields: tuple[tuple[str, str], ...] = ()
    field_selectors: tuple[str, ...] = ()

    @property
    def storage_version(self) -> str:
        return self.versions[0]

    @property
    def qualified(self) -> str:
        """``schema.GroupResource.String()``: ``virtualservices.networking.istio.io``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        """``schema.GroupKind.String()``: ``Deployment.apps``."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    def group_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version

    @property
    def patch_types(self) -> tuple[str, ...]:
        return CUSTOM_PATCH_TYPES if self.custom else BUILTIN_PATCH_TYPES


_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)
_ISTIO_VERSIONS = ("v1", "v1beta1", "v1alpha3")
_ISTIO_CATEGORIES = ("istio-io", "networking-istio-io")

VIRTUAL_SERVICES = ResourceType(
    group="networking.istio.io",
    versions=_ISTIO_VERSIONS,
    plural="virtualservices",
    kind="VirtualService",
    singular="virtualservice",
    short_names=("vs",),
    categories=_ISTIO_CATEGORIES,
    status_subresource=True,
    generation="non-metadata",
    custom=True,
)
DESTINATION_RULES = ResourceType(
    group="networking.istio.io",
    versions=_ISTIO_VERSIONS,
    plural="destinationrules",
    kind="DestinationRule",
    singular="destinationrule",
    short_names=("dr",),
    categories=_ISTIO_CATEGORIES,
    status_subresource=True,
    generation="non-metadata",
    custom=True,
)
DEPLOYMENTS = ResourceType(
    group="apps",
    versions=("v1",),
    plural="deployments",
    kind="Deployment",
    singular="deployment",
    short_names=("deploy",),
    categories=("all",),
    status_subresource=True,
    generation="spec+annotations",
    deployment_defaults=True,
    time_fields=(
        ("status.conditions.[].lastUpdateTime", _TIME_S),
        ("status.conditions.[].lastTransitionTime", _TIME_S),
    ),
)
LEASES = ResourceType(
    group="coordination.k8s.io",
    versions=("v1",),
    plural="leases",
    kind="Lease",
    singular="lease",
    time_fields=(("spec.acquireTime", _TIME_US), ("spec.renewTime", _TIME_US)),
)
CORE_EVENTS = ResourceType(
    group="",
    versions=("v1",),
    plural="events",
    kind="Event",
    singular="event",
    short_names=("ev",),
    create_on_update=True,
    time_fields=(
        ("firstTimestamp", _TIME_S),
        ("lastTimestamp", _TIME_S),
        ("eventTime", _TIME_US),
        ("series.lastObservedTime", _TIME_US),
    ),
    field_selectors=_EVENT_FIELDS,
)
EVENTS_V1 = ResourceType(
    group="events.k8s.io",
    versions=("v1",),
    plural="events",
    kind="Event",
    singular="event",
    short_names=("ev",),
    create_on_update=True,
    time_fields=(
        ("eventTime", _TIME_US),
        ("deprecatedFirstTimestamp", _TIME_S),
        ("deprecatedLastTimestamp", _TIME_S),
        ("series.lastObservedTime", _TIME_US),
    ),
    field_selectors=_EVENT_FIELDS,
)
#: Helm's release storage (driver "secret"): read by canary.adapters.helmstore.
SECRETS = ResourceType(
    group="",
    versions=("v1",),
    plural="secrets",
    kind="Secret",
    singular="secret",
)

DEFAULT_RESOURCES: tuple[ResourceType, ...] = (
    VIRTUAL_SERVICES,
    DESTINATION_RULES,
    DEPLOYMENTS,
    LEASES,
    CORE_EVENTS,
    EVENTS_V1,
    SECRETS,
)


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Kubernetes' version order: GA before beta before alpha, higher numbers first."""
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if m is None:
        return (3, 0, 0, version)
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    return (stage, -int(m.group(1)), -int(m.group(3) or 0), "")


# --- errors --------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answer: HTTP ``code`` and a ``metav1.Status`` body."""

    def __init__(self, code: int, body: dict[str, Any], detail: str = "") -> None:
        super().__init__(body.get("message", ""))
        self.code = code
        self.body = body
        self.detail = detail


def status_body(
    code: int, reason: str, message: str, details: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A failure ``metav1.Status`` in the key order the API server writes it."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details is not None:
        body["details"] = {k: v for k, v in details.items() if v not in ("", None, [], 0)}
    body["code"] = code
    return body


def _details(rt: ResourceType, name: str) -> dict[str, Any]:
    return {"name": name, "group": rt.group, "kind": rt.plural}


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        404, status_body(404, "NotFound", f'{rt.qualified} "{name}" not found', _details(rt, name))
    )


def not_served() -> ApiError:
    return ApiError(404, status_body(404, "NotFound", NOT_FOUND_MSG, {}))


def already_exists(rt: ResourceType, name: str) -> ApiError:
    message = f'{rt.qualified} "{name}" already exists'
    return ApiError(409, status_body(409, "AlreadyExists", message, _details(rt, name)))


def conflict(rt: ResourceType, name: str, why: str = OPTIMISTIC_LOCK_MSG) -> ApiError:
    message = f'Operation cannot be fulfilled on {rt.qualified} "{name}": {why}'
    return ApiError(409, status_body(409, "Conflict", message, _details(rt, name)))


@dataclass(frozen=True)
class FieldError:
    """One ``field.Error``: ``spec.selector: Required value``."""

    field: str
    type: str  # FieldValueRequired, FieldValueInvalid, ...
    detail: str
    value: Any = None

    def body(self) -> str:
        """``field.Error.ErrorBody()``."""
        if self.type == "FieldValueRequired":
            text = "Required value"
        else:
            text = f"Invalid value: {_go_value(self.value)}"
        return f"{text}: {self.detail}" if self.detail else text


def _go_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def invalid(kind: str, name: str, errors: Sequence[FieldError]) -> ApiError:
    """``errors.NewInvalid``: ``Deployment.apps "x" is invalid: spec.selector: Required value``."""
    parts = [f"{e.field}: {e.body()}" for e in errors]
    aggregate = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    kind_only, _, group = kind.partition(".")  # GroupKind.String() is "Kind.group"
    causes = [{"reason": e.type, "message": e.body(), "field": e.field} for e in errors]
    message = f'{kind} "{name}" is invalid: {aggregate}'
    details = {"name": name, "group": group, "kind": kind_only, "causes": causes}
    return ApiError(422, status_body(422, "Invalid", message, details))


def unprocessable(detail: str) -> ApiError:
    """``NewGenericServerResponse(422, ...)`` as patch.go returns it for a JSON Patch that does
    not apply: the evanphx message is *not* in the body (only in the request log)."""
    message = "the server rejected our request due to an error in our request"
    return ApiError(422, status_body(422, "Invalid", message, {}), detail=detail)


def bad_request(message: str) -> ApiError:
    return ApiError(400, status_body(400, "BadRequest", message))


def unsupported_media_type(accepted: Sequence[str]) -> ApiError:
    message = (
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(accepted)
    )
    return ApiError(415, status_body(415, "UnsupportedMediaType", message))


def method_not_allowed() -> ApiError:
    message = "the server does not allow this method on the requested resource"
    return ApiError(405, status_body(405, "MethodNotAllowed", message, {}))


def forbidden(
    *, user: str, verb: str, rt_group: str, resource: str, subresource: str, ns: str, name: str
) -> ApiError:
    """``responsewriters.ForbiddenStatusError`` with ``forbiddenMessage``'s wording."""
    full = f"{resource}/{subresource}" if subresource else resource
    where = f'in the namespace "{ns}"' if ns else "at the cluster scope"
    why = f'User "{user}" cannot {verb} resource "{full}" in API group "{rt_group}" {where}'
    qualified = f"{resource}.{rt_group}" if rt_group else resource
    message = (
        f'{qualified} "{name}" is forbidden: {why}' if name else f"{qualified} is forbidden: {why}"
    )
    details = {"name": name, "group": rt_group, "kind": resource}
    return ApiError(403, status_body(403, "Forbidden", message, details))


#: What kube-apiserver (or the API Priority and Fairness filter) answers for injected statuses.
_INJECTED: dict[int, tuple[str, str]] = {
    429: ("TooManyRequests", "Too many requests, please try again later."),
    500: ("InternalError", "Internal error occurred: injected by the test"),
    503: ("ServiceUnavailable", "service unavailable"),
    504: (
        "Timeout",
        "Timeout: request did not complete within requested timeout - context deadline exceeded",
    ),
}


def injected_error(code: int, retry_after: int | None = None) -> ApiError:
    reason, message = _INJECTED.get(code, ("InternalError", f"injected status {code}"))
    details: dict[str, Any] | None = None
    if code == 500:
        details = {"causes": [{"message": "injected by the test"}]}
    if retry_after:
        details = {**(details or {}), "retryAfterSeconds": retry_after}
    return ApiError(code, status_body(code, reason, message, details))


# --- requests and the request log ----------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One HTTP request as the server understood it.

    ``verb`` is the Kubernetes (RBAC) verb: get, list, watch, create, update, patch, delete,
    deletecollection; "" for discovery and unknown paths. ``body`` is the parsed JSON (or YAML)
    body, the raw text if it does not parse, None if empty.
    """

    method: str
    path: str
    query: dict[str, str]
    content_type: str | None
    body: Any
    verb: str = ""
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    @property
    def is_write(self) -> bool:
        return self.method in WRITE_METHODS


@dataclass(frozen=True)
class RecordedRequest(Request):
    """A :class:`Request` with its answer: ``status`` (0 = connection dropped by a fault),
    the parsed ``response`` body (None for a watch stream) and an internal ``detail`` the
    real server does not send (e.g. why a JSON Patch did not apply)."""

    status: int = 0
    response: Any = None
    detail: str = ""
    #: wall-clock time (``time.time()``) the answer was sent: comparable with the fake helm's
    #: own records, to order what the API server acknowledged against what helm did
    at: float = field(default_factory=time.time)


class RequestLog:
    """Every request, in the order the answers were sent (a watch: when its stream started)."""

    def __init__(self) -> None:
        self._items: list[RecordedRequest] = []
        self._lock = threading.Lock()

    def append(self, item: RecordedRequest) -> None:
        with self._lock:
            self._items.append(item)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def all(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._items)

    def __iter__(self) -> Iterator[RecordedRequest]:
        return iter(self.all())

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __getitem__(self, index: int) -> RecordedRequest:
        with self._lock:
            return self._items[index]

    def filter(
        self,
        *,
        method: str | None = None,
        verb: str | None = None,
        path: str | None = None,
        group: str | None = None,
        resource: str | None = None,
        subresource: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        status: int | None = None,
        content_type: str | None = None,
        writes: bool | None = None,
    ) -> list[RecordedRequest]:
        """The requests matching every criterion given (``path``: exact)."""
        wanted = {
            "method": method,
            "verb": verb,
            "path": path,
            "group": group,
            "resource": resource,
            "subresource": subresource,
            "namespace": namespace,
            "name": name,
            "status": status,
            "content_type": content_type,
        }
        out = []
        for r in self.all():
            if any(v is not None and getattr(r, k) != v for k, v in wanted.items()):
                continue
            if writes is not None and r.is_write != writes:
                continue
            out.append(r)
        return out

    def writes(self, **criteria: Any) -> list[RecordedRequest]:
        """POST, PUT, PATCH and DELETE requests (matching ``criteria`` as in :meth:`filter`)."""
        return self.filter(writes=True, **criteria)

    def last(self, **criteria: Any) -> RecordedRequest:
        """The newest request matching ``criteria``; AssertionError if there is none."""
        found = self.filter(**criteria)
        if not found:
            raise AssertionError(f"no request matches {criteria}; log: {self.summary()}")
        return found[-1]

    def summary(self) -> list[str]:
        """``["PATCH /apis/... 200", ...]``: handy in assertion messages."""
        return [f"{r.method} {r.path} {r.status}" for r in self.all()]


# --- faults and RBAC -----------------------------------------------------------------------------


@dataclass
class Fault:
    """The next ``times`` requests matching are answered with ``status`` (after ``delay``
    seconds), or only delayed and then served normally (``status`` None), or the connection is
    closed without an answer (``drop``). ``times`` None: every matching request."""

    match: Callable[[Request], bool]
    times: int | None = 1
    status: int | None = None
    delay: float = 0.0
    drop: bool = False
    retry_after: int | None = None
    hits: int = 0

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times


@dataclass(frozen=True)
class Denial:
    """RBAC says no to ``verb`` on ``resource`` (``plural`` or ``plural/subresource``)."""

    verb: str
    group: str
    resource: str
    namespace: str | None = None
    name: str | None = None

    def matches(self, req: Request) -> bool:
        full = f"{req.resource}/{req.subresource}" if req.subresource else req.resource
        return (
            self.verb in ("*", req.verb)
            and self.group in ("*", req.group)
            and self.resource in ("*", full)
            and (self.namespace is None or self.namespace == req.namespace)
            and (self.name is None or self.name == req.name)
        )


def _matcher(
    *,
    method: str | None = None,
    verb: str | None = None,
    resource: str | None = None,
    name: str | None = None,
    namespace: str | None = None,
    path: str | None = None,
    when: Callable[[Request], bool] | None = None,
) -> Callable[[Request], bool]:
    def match(req: Request) -> bool:
        return (
            (method is None or req.method == method.upper())
            and (verb is None or req.verb == verb)
            and (resource is None or req.resource == resource)
            and (name is None or req.name == name)
            and (namespace is None or req.namespace == namespace)
            and (path is None or req.path.startswith(path))
            and (when is None or when(req))
        )

    return match


# --- JSON documents: patches, selectors, time ----------------------------------------------------


class PatchError(Exception):
    """A JSON Patch that does not apply (evanphx/json-patch.v4 wording)."""


def _json_equal(a: Any, b: Any) -> bool:
    """Structural JSON equality that keeps true/1 and 1/1.0 apart, as a byte comparison would."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _find_container(doc: Any, path: str) -> tuple[Any, str] | None:
    """evanphx ``findObject``: the container of the last token and that token, or None."""
    parts = path.split("/")
    if len(parts) < 2:
        return None
    node = doc
    for raw in parts[1:-1]:
        part = _unescape(raw)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list):
            try:
                idx = int(part)
            except ValueError:
                return None
            if not 0 <= idx < len(node):
                return None
            node = node[idx]
        else:
            return None
        if not isinstance(node, dict | list):
            return None
    return node, _unescape(parts[-1])


def _index(container: list[Any], key: str, *, for_add: bool = False) -> int:
    try:
        idx = int(key)
    except ValueError:
        raise PatchError(f'strconv.Atoi: parsing "{key}": invalid syntax') from None
    size = len(container) + (1 if for_add else 0)
    if idx >= size or idx < -size:
        raise PatchError(f"Unable to access invalid index: {idx}: invalid index referenced")
    return idx + size if idx < 0 else idx


def _get(container: Any, key: str) -> Any:
    if isinstance(container, dict):
        return container.get(key)
    return container[_index(container, key)]


def _add(container: Any, key: str, value: Any) -> None:
    if isinstance(container, dict):
        container[key] = value
    elif key == "-":
        container.append(value)
    else:
        container.insert(_index(container, key, for_add=True), value)


def _remove(container: Any, key: str) -> Any:
    if isinstance(container, dict):
        if key not in container:
            raise PatchError(f"Unable to remove nonexistent key: {key}: missing value")
        return container.pop(key)
    return container.pop(_index(container, key))


def apply_json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 as kube-apiserver applies it (gopkg.in/evanphx/json-patch.v4), on a copy."""
    if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
        got = "object" if isinstance(ops, dict) else type(ops).__name__
        raise bad_request(f"json: cannot unmarshal {got} into Go value of type jsonpatch.Patch")
    doc = copy.deepcopy(doc)
    for op in ops:
        kind = op.get("op") if isinstance(op.get("op"), str) else "unknown"
        path = op.get("path")
        if kind not in ("add", "remove", "replace", "move", "copy", "test"):
            raise PatchError(f"Unexpected kind: {kind}")
        if not isinstance(path, str):
            raise PatchError(f"{kind} operation failed to decode path: missing value")
        if kind == "add":
            found = _find_container(doc, path)
            if found is None:
                raise PatchError(
                    f'add operation does not apply: doc is missing path: "{path}": missing value'
                )
            try:
                _add(*found, copy.deepcopy(op.get("value")))
            except PatchError as exc:
                raise PatchError(f"error in add for path: '{path}': {exc}") from None
        elif kind == "remove":
            found = _find_container(doc, path)
            if found is None:
                raise PatchError(
                    f'remove operation does not apply: doc is missing path: "{path}": missing value'
                )
            try:
                _remove(*found)
            except PatchError as exc:
                raise PatchError(f"error in remove for path: '{path}': {exc}") from None
        elif kind == "replace":
            found = _find_container(doc, path)
            if found is None:
                raise PatchError(
                    f"replace operation does not apply: doc is missing path: {path}: missing value"
                )
            container, key = found
            try:
                _get(container, key)  # an object's missing key is fine in json-patch.v4
            except PatchError:
                raise PatchError(
                    f"replace operation does not apply: doc is missing key: {path}: missing value"
                ) from None
            if isinstance(container, dict):
                container[key] = copy.deepcopy(op.get("value"))
            else:
                container[_index(container, key)] = copy.deepcopy(op.get("value"))
        elif kind == "test":
            found = _find_container(doc, path)
            if found is None:
                raise PatchError(
                    f"test operation does not apply: is missing path: {path}: missing value"
                )
            try:
                current = _get(*found)
            except PatchError as exc:
                raise PatchError(f"error in test for path: '{path}': {exc}") from None
            expected = op.get("value")
            if current is None and expected is None:
                continue
            if "value" not in op or not _json_equal(current, expected):
                raise PatchError(f"testing value {path} failed: test failed")
        else:  # move, copy
            src = op.get("from")
            if not isinstance(src, str):
                raise PatchError(f"{kind} operation failed to decode from: missing value")
            found = _find_container(doc, src)
            if found is None:
                raise PatchError(
                    f"{kind} operation does not apply: doc is missing from path: {src}: "
                    "missing value"
                )
            try:
                value = _remove(*found) if kind == "move" else copy.deepcopy(_get(*found))
            except PatchError as exc:
                raise PatchError(f"error in {kind} for path: '{src}': {exc}") from None
            dest = _find_container(doc, path)
            if dest is None:
                raise PatchError(
                    f"{kind} operation does not apply: doc is missing destination path: {path}: "
                    "missing value"
                )
            try:
                _add(*dest, value)
            except PatchError as exc:
                raise PatchError(f"error in {kind} for path: '{path}': {exc}") from None
    return doc


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON Merge Patch (returns a new document)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


#: Merge keys of the keyed lists in the built-in types we serve (k8s.io/api patchMergeKey tags).
SMP_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "ports": "containerPort",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "volumes": "name",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "conditions": "type",
    "ownerReferences": "uid",
    "resourceClaims": "name",
}
#: Lists of scalars with patchStrategy "merge" (union).
SMP_MERGE_SCALAR_LISTS = frozenset({"finalizers"})


def apply_strategic_merge_patch(target: Any, patch: Any) -> Any:
    """A strategic merge patch for the built-in types served here: merge patch, plus keyed lists
    merged by their merge key, ``$patch: replace|delete`` and ``$deleteFromPrimitiveList``.
    ``$setElementOrder`` and ``$retainKeys`` are accepted and ignored."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key in {"$patch", "$retainKeys"} or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            if isinstance(result.get(name), list) and isinstance(value, list):
                result[name] = [x for x in result[name] if x not in value]
            continue
        current = result.get(key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            if value.get("$patch") == "delete":
                result.pop(key, None)
            else:
                result[key] = apply_strategic_merge_patch(current, value)
        elif isinstance(value, list) and key in SMP_MERGE_KEYS and isinstance(current, list):
            result[key] = _merge_keyed_list(current, value, SMP_MERGE_KEYS[key])
        elif (
            isinstance(value, list) and key in SMP_MERGE_SCALAR_LISTS and isinstance(current, list)
        ):
            result[key] = current + [x for x in value if x not in current]
        else:
            result[key] = _strip_directives(value)
    return result


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value if not (isinstance(v, dict) and "$patch" in v)]
    return copy.deepcopy(value)


def _merge_keyed_list(current: list[Any], patch: list[Any], key: str) -> list[Any]:
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [_strip_directives(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    out = copy.deepcopy(current)
    for item in patch:
        if not isinstance(item, dict):
            out.append(copy.deepcopy(item))
            continue
        idx = next(
            (
                i
                for i, old in enumerate(out)
                if isinstance(old, dict) and old.get(key) == item.get(key)
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if idx is not None:
                del out[idx]
        elif idx is None:
            out.append(_strip_directives(item))
        else:
            out[idx] = apply_strategic_merge_patch(out[idx], item)
    return out


_SELECTOR_TERM = re.compile(
    r"""^\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9][-A-Za-z0-9_./]*)\s*
    (?:(?P<op>==|=|!=)\s*(?P<value>[-A-Za-z0-9_.]*)
      |\s(?P<setop>in|notin)\s*\((?P<values>[^)]*)\)
    )?\s*$""",
    re.VERBOSE,
)


def _split_selector(text: str) -> list[str]:
    terms, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append(cur)
            cur = ""
        else:
            cur += ch
    terms.append(cur)
    return [t for t in terms if t.strip()]


@dataclass(frozen=True)
class _Requirement:
    """One label selector requirement (``labels.Requirement``)."""

    key: str
    op: str  # exists, !, =, !=, in, notin
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        return {
            "exists": self.key in labels,
            "!": self.key not in labels,
            "=": value in self.values,
            "in": value in self.values,
            "!=": value not in self.values,
            "notin": value not in self.values,
        }[self.op]


def parse_label_selector(text: str) -> Callable[[Mapping[str, str]], bool]:
    """A label selector (equality- and set-based) → a predicate on labels; 400 if invalid."""
    requirements: list[_Requirement] = []
    for term in _split_selector(text):
        m = _SELECTOR_TERM.match(term)
        if m is None or (m.group("neg") and (m.group("op") or m.group("setop"))):
            raise bad_request(f"unable to parse requirement: {term.strip()!r}")
        key = m.group("key")
        if m.group("neg"):
            requirements.append(_Requirement(key, "!"))
        elif m.group("op"):
            op = "!=" if m.group("op") == "!=" else "="
            requirements.append(_Requirement(key, op, frozenset({m.group("value")})))
        elif m.group("setop"):
            values = frozenset(v.strip() for v in m.group("values").split(",") if v.strip())
            requirements.append(_Requirement(key, m.group("setop"), values))
        else:
            requirements.append(_Requirement(key, "exists"))
    return lambda labels: all(r.matches(labels) for r in requirements)


def _dotted(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def parse_field_selector(rt: ResourceType, text: str) -> Callable[[Mapping[str, Any]], bool]:
    """``metadata.name=x,metadata.namespace!=y`` (and the type's own fields) → a predicate."""
    allowed = ("metadata.name", "metadata.namespace", *rt.field_selectors)
    checks: list[Callable[[Mapping[str, Any]], bool]] = []
    for term in _split_selector(text):
        m = re.fullmatch(r"\s*([A-Za-z0-9.]+)\s*(==|=|!=)\s*(.*?)\s*", term)
        if m is None:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
        path, op, value = m.groups()
        if path not in allowed:
            raise bad_request(
                f'"{path}" is not a known field selector: only "{allowed[0]}", "{allowed[1]}"'
            )
        if path == "source":
            path = "source.component"

        def check(obj: Mapping[str, Any], p: str = path, o: str = op, v: str = value) -> bool:
            got = _dotted(obj, p)
            text_value = "" if got is None else str(got)
            return (text_value == v) if o in ("=", "==") else (text_value != v)

        checks.append(check)
    return lambda obj: all(check(obj) for check in checks)


def _parse_time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError(value)
    parsed = datetime.fromisoformat(value.replace("z", "Z"))
    if parsed.tzinfo is None:
        raise ValueError(value)
    return parsed.astimezone(UTC)


def format_time(moment: datetime, precision: str = _TIME_S) -> str:
    """How Go renders ``metav1.Time`` (``s``) and ``metav1.MicroTime`` (``us``)."""
    moment = moment.astimezone(UTC)
    if precision == _TIME_US:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _normalise_times(rt: ResourceType, version: str, obj: dict[str, Any]) -> None:
    fields = (
        ("metadata.creationTimestamp", _TIME_S),
        ("metadata.deletionTimestamp", _TIME_S),
        *rt.time_fields,
    )
    for path, precision in fields:
        for holder, key in _walk_path(obj, path.split(".")):
            value = holder.get(key)
            if value is None:
                continue
            try:
                holder[key] = format_time(_parse_time(value), precision)
            except ValueError:
                raise bad_request(
                    f'{rt.kind} in version "{version}" cannot be handled as a {rt.kind}: '
                    f'parsing time "{value}" as "2006-01-02T15:04:05Z07:00": cannot parse '
                    f'"{value}" as "2006"'
                ) from None


def _walk_path(node: Any, parts: list[str]) -> Iterator[tuple[dict[str, Any], str]]:
    if not isinstance(node, dict):
        return
    head, rest = parts[0], parts[1:]
    if not rest:
        yield node, head
        return
    child = node.get(head)
    if rest[0] == "[]":
        for item in child if isinstance(child, list) else []:
            yield from _walk_path(item, rest[1:])
    else:
        yield from _walk_path(child, rest)


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


# --- Deployment defaulting and validation --------------------------------------------------------


def _default_probe(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    for key, value in (
        ("timeoutSeconds", 1),
        ("periodSeconds", 10),
        ("successThreshold", 1),
        ("failureThreshold", 3),
    ):
        probe.setdefault(key, value)
    if isinstance(probe.get("httpGet"), dict):
        probe["httpGet"].setdefault("scheme", "HTTP")


def _default_container(container: Any) -> None:
    if not isinstance(container, dict):
        return
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("resources", {})
    image = str(container.get("image", ""))
    if "imagePullPolicy" not in container:
        tagged = "@" in image or ":" in image.rsplit("/", 1)[-1]
        latest = image.rsplit("/", 1)[-1].endswith(":latest")
        container["imagePullPolicy"] = "IfNotPresent" if tagged and not latest else "Always"
    for port in container.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        _default_probe(container.get(probe))


def default_deployment(obj: dict[str, Any]) -> None:
    """apps/v1 ``SetDefaults_Deployment`` and the core/v1 pod defaults it pulls in."""
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("replicas", 1)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    template = spec.get("template")
    pod = template.get("spec") if isinstance(template, dict) else None
    if not isinstance(pod, dict):
        return
    pod.setdefault("restartPolicy", "Always")
    pod.setdefault("terminationGracePeriodSeconds", 30)
    pod.setdefault("dnsPolicy", "ClusterFirst")
    pod.setdefault("securityContext", {})
    pod.setdefault("schedulerName", "default-scheduler")
    for key in ("containers", "initContainers"):
        for container in pod.get(key) or []:
            _default_container(container)


def validate_deployment(obj: Mapping[str, Any]) -> list[FieldError]:
    """The parts of ``ValidateDeployment`` a test is likely to trip over."""
    errors: list[FieldError] = []
    spec = obj.get("spec") or {}
    selector = spec.get("selector")
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not selector:
        errors.append(FieldError("spec.selector", "FieldValueRequired", ""))
    else:
        match_labels = selector.get("matchLabels") or {}
        if not match_labels and not selector.get("matchExpressions"):
            errors.append(
                FieldError(
                    "spec.selector",
                    "FieldValueInvalid",
                    "empty selector is invalid for deployment",
                    selector,
                )
            )
        elif any(labels.get(k) != v for k, v in match_labels.items()):
            errors.append(
                FieldError(
                    "spec.template.metadata.labels",
                    "FieldValueInvalid",
                    "`selector` does not match template `labels`",
                    labels,
                )
            )
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers")
    if not containers:
        errors.append(FieldError("spec.template.spec.containers", "FieldValueRequired", ""))
    else:
        for i, c in enumerate(containers):
            if not (isinstance(c, dict) and c.get("name")):
                errors.append(
                    FieldError(f"spec.template.spec.containers[{i}].name", "FieldValueRequired", "")
                )
            if not (isinstance(c, dict) and c.get("image")):
                errors.append(
                    FieldError(
                        f"spec.template.spec.containers[{i}].image", "FieldValueRequired", ""
                    )
                )
    if isinstance(spec.get("replicas"), int) and spec["replicas"] < 0:
        errors.append(
            FieldError(
                "spec.replicas",
                "FieldValueInvalid",
                "must be greater than or equal to 0",
                spec["replicas"],
            )
        )
    return errors


# --- the store -----------------------------------------------------------------------------------


Key = tuple[str, str, str, str]  # group, plural, namespace ("" if cluster-scoped), name


@dataclass(frozen=True)
class Change:
    """One committed write, as the watch cache keeps it."""

    rv: int
    key: Key
    type: str  # ADDED, MODIFIED, DELETED
    obj: dict[str, Any]
    prev: dict[str, Any] | None


_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand


def _now() -> str:
    return format_time(datetime.now(UTC))


def _meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    labels = _meta(obj).get("labels")
    return labels if isinstance(labels, dict) else {}


_WATCH = object()  # the answer "stream a watch"


class KubeApiServer:
    """The API server double. Use as a context manager, or :meth:`start` / :meth:`stop`.

    ``served``: per group, the versions to serve (default: every version each resource type
    has); a test can serve only ``networking.istio.io/v1beta1``. ``user``: who every request
    is made as (shows in 403 messages).
    """

    def __init__(
        self,
        *,
        served: Mapping[str, Sequence[str]] | None = None,
        resources: Sequence[ResourceType] = DEFAULT_RESOURCES,
        user: str = DEFAULT_USER,
        host: str = "127.0.0.1",
    ) -> None:
        self.user = user
        self.requests = RequestLog()
        self._types = {(rt.group, rt.plural): rt for rt in resources}
        self._served: dict[str, tuple[str, ...]] = {}
        for rt in resources:
            known = self._served.get(rt.group, ())
            self._served[rt.group] = tuple(
                sorted(set(known) | set(rt.versions), key=version_priority)
            )
        for group, versions in (served or {}).items():
            self.serve(group, *versions)
        self._host = host
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._objects: dict[Key, dict[str, Any]] = {}
        self._history: list[Change] = []
        self._history_rvs: list[int] = []
        self._rv = 0
        self._compacted = 0
        self._faults: list[Fault] = []
        self._denials: list[Denial] = []
        self._clients: list[Any] = []
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> KubeApiServer:
        """Listen on a free port of ``host`` and serve from a thread of its own."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _HTTPServer((self._host, 0), _Handler)
        httpd.kube = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"kubeapi:{self.port}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """End watches, close the clients made by :meth:`client` and the listening socket."""
        httpd = self._httpd
        if httpd is None:
            return
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        for api in self._clients:
            with contextlib.suppress(Exception):  # closing is best effort
                api.close()
        self._clients.clear()
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> KubeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the API server double is not running")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (the client's ``host``)."""
        return f"http://{self._host}:{self.port}"

    def configuration(self, **attributes: Any) -> Any:
        """A ``kubernetes.client.Configuration`` for this server: no auth, no proxy (the client
        would otherwise take ``HTTP_PROXY`` from the environment), plus ``attributes``."""
        from kubernetes import client

        config = client.Configuration(host=self.url)
        config.proxy = None
        for name, value in attributes.items():
            setattr(config, name, value)
        return config

    def client(self, **attributes: Any) -> Any:
        """A ``kubernetes.client.ApiClient`` talking to this server (closed by :meth:`stop`).

        ``attributes`` are set on its Configuration, e.g. ``retries=False`` to switch off
        urllib3's default retries of dropped connections and read timeouts.
        """
        from kubernetes import client

        api = client.ApiClient(self.configuration(**attributes))
        self._clients.append(api)
        return api

    # --- configuration -----------------------------------------------------------------------

    def serve(self, group: str, *versions: str) -> None:
        """Serve exactly ``versions`` of ``group`` from now on (none: the group disappears)."""
        known = {v for rt in self._types.values() if rt.group == group for v in rt.versions}
        unknown = set(versions) - known
        if unknown:
            raise ValueError(f"{group} has no version(s) {sorted(unknown)}; known: {sorted(known)}")
        self._served[group] = tuple(sorted(set(versions), key=version_priority))

    def served_versions(self, group: str) -> tuple[str, ...]:
        return self._served.get(group, ())

    def deny(
        self,
        verb: str,
        group: str,
        resource: str,
        namespace: str | None = None,
        name: str | None = None,
    ) -> Denial:
        """RBAC refuses ``verb`` (or ``*``) on ``resource`` (``plural`` or ``plural/status``) of
        ``group`` (``""`` = core), in ``namespace`` / for ``name`` if given: 403 Forbidden."""
        denial = Denial(verb, group, resource, namespace, name)
        with self._lock:
            self._denials.append(denial)
        return denial

    def allow(self, denial: Denial | None = None) -> None:
        """Lift one denial, or all of them."""
        with self._lock:
            if denial is None:
                self._denials.clear()
            else:
                self._denials.remove(denial)

    def inject(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def fail(
        self,
        status: int = 500,
        *,
        times: int | None = 1,
        delay: float = 0.0,
        retry_after: int | None = None,
        **where: Any,
    ) -> Fault:
        """The next ``times`` (None: all) requests matching ``where`` answer ``status``
        (429/500/503/504 with the real reason and message; ``Retry-After`` if
        ``retry_after``), after ``delay`` seconds.

        ``where``: ``method``, ``verb``, ``resource``, ``name``, ``namespace``, ``path``
        (prefix) and ``when`` (a predicate on the :class:`Request`); all must hold.
        """
        fault = Fault(_matcher(**where), times, status, delay, retry_after=retry_after)
        return self.inject(fault)

    def hang(
        self, seconds: float, *, times: int | None = 1, status: int | None = None, **where: Any
    ) -> Fault:
        """The next ``times`` requests matching ``where`` (as in :meth:`fail`) are answered
        only after ``seconds`` -- normally, or with ``status`` -- so a client with a shorter
        ``_request_timeout`` times out."""
        return self.inject(Fault(_matcher(**where), times, status, seconds))

    def drop(self, *, times: int | None = 1, **where: Any) -> Fault:
        """The next ``times`` requests matching ``where`` (as in :meth:`fail`) get no answer:
        the server closes the connection."""
        return self.inject(Fault(_matcher(**where), times, drop=True))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def compact(self) -> int:
        """Forget history up to now: a watch from an older resourceVersion gets 410 Expired."""
        with self._lock:
            self._compacted = self._rv
            return self._rv

    # --- direct object access (no HTTP, no RBAC, no faults) ----------------------------------

    @property
    def resource_version(self) -> int:
        """The newest resourceVersion handed out."""
        with self._lock:
            return self._rv

    def resource_type(self, group: str, plural: str) -> ResourceType:
        try:
            return self._types[(group, plural)]
        except KeyError:
            raise KeyError(f"no resource {plural}.{group} in the double") from None

    def _type_of(self, obj: Mapping[str, Any]) -> ResourceType:
        api_version = str(obj.get("apiVersion", ""))
        group = api_version.rpartition("/")[0]
        for rt in self._types.values():
            if rt.group == group and rt.kind == obj.get("kind"):
                return rt
        raise KeyError(f"no resource of kind {obj.get('kind')!r} in {api_version!r}")

    def put_object(self, obj: Mapping[str, Any], *, defaults: bool = True) -> dict[str, Any]:
        """Create or replace ``obj`` (its ``apiVersion`` and ``kind`` say where) as if it had
        always been in the cluster: resourceVersion set; uid, creationTimestamp and generation
        set unless given; Deployment defaults applied (unless ``defaults=False``); ``status``
        kept as given. Replacing keeps uid/creationTimestamp and bumps generation as a write.
        Watchers see ADDED or MODIFIED. Returns the stored object."""
        rt = self._type_of(obj)
        new = _drop_nulls(copy.deepcopy(dict(obj)))
        meta = new.setdefault("metadata", {})
        name = meta.get("name")
        if not name:
            raise ValueError("put_object needs metadata.name")
        ns = str(meta.get("namespace") or "") if rt.namespaced else ""
        if rt.namespaced and not ns:
            raise ValueError(f"put_object needs metadata.namespace for {rt.qualified}")
        version = str(new["apiVersion"]).rpartition("/")[2]
        with self._lock:
            old = self._objects.get((rt.group, rt.plural, ns, name))
            meta.pop("resourceVersion", None)
            if old is None:
                given = {k: meta[k] for k in ("uid", "creationTimestamp") if meta.get(k)}
                generation = meta.get("generation")
                self._admit_create(rt, version, new, keep_status=True, defaults=defaults)
                meta.update(given)
                if generation is not None and rt.generation != "none":
                    meta["generation"] = int(generation)
                _normalise_times(rt, version, new)
                return self._view(rt, version, self._commit(rt, new, "ADDED", None))
            self._carry_system_fields(_meta(old), meta)
            if defaults and rt.deployment_defaults:
                default_deployment(new)
            _normalise_times(rt, version, new)
            self._bump_generation(rt, old, new)
            return self._view(rt, version, self._commit(rt, new, "MODIFIED", old))

    def get_object(
        self, group: str, version: str, plural: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        """A copy of the object as served at ``version``, or None."""
        rt = self.resource_type(group, plural)
        with self._lock:
            obj = self._objects.get((group, plural, namespace or "" if rt.namespaced else "", name))
            return None if obj is None else self._view(rt, version, obj)

    def objects(
        self, group: str, plural: str, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        """Copies of every stored object of a resource (in one namespace if given)."""
        rt = self.resource_type(group, plural)
        with self._lock:
            return [
                self._view(rt, rt.storage_version, obj)
                for key, obj in sorted(self._objects.items())
                if key[:2] == (group, plural) and (namespace is None or key[2] == namespace)
            ]

    def edit(  # noqa: PLR0917 - the same positional key as get_object, then the change
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None,
        name: str,
        change: Callable[[dict[str, Any]], Any] | Mapping[str, Any],
    ) -> dict[str, Any]:
        """Change a stored object as "someone else" would: ``change`` is a merge patch (a
        mapping) or a function that mutates the object it is given (status included). Bumps
        resourceVersion (and generation on a spec change) and notifies watchers, unless nothing
        changed. KeyError if there is no such object. Returns the stored object."""
        rt = self.resource_type(group, plural)
        key = (group, plural, namespace or "" if rt.namespaced else "", name)
        with self._lock:
            old = self._objects.get(key)
            if old is None:
                raise KeyError(f"{rt.qualified} {namespace}/{name} does not exist")
            current = self._view(rt, version, old)
            if callable(change):
                returned = change(current)
                new = returned if isinstance(returned, dict) else current
            else:
                new = apply_merge_patch(current, dict(change))
            new = _drop_nulls(new)
            meta = new.setdefault("metadata", {})
            self._carry_system_fields(_meta(old), meta)
            meta["resourceVersion"] = _meta(old).get("resourceVersion")
            new["apiVersion"] = rt.group_version(rt.storage_version)
            _normalise_times(rt, version, new)
            self._bump_generation(rt, old, new)
            if _json_equal(new, old):
                return self._view(rt, version, old)
            return self._view(rt, version, self._commit(rt, new, "MODIFIED", old))

    def delete_object(
        self, group: str, version: str, plural: str, namespace: str | None, name: str
    ) -> bool:
        """Remove an object at once (finalizers ignored); watchers see DELETED."""
        rt = self.resource_type(group, plural)
        key = (group, plural, namespace or "" if rt.namespaced else "", name)
        with self._lock:
            old = self._objects.get(key)
            if old is None:
                return False
            self._commit(rt, old, "DELETED", old)
            return True

    # --- the store's write path --------------------------------------------------------------

    def _view(self, rt: ResourceType, version: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(dict(obj))
        out["apiVersion"] = rt.group_version(version)
        out["kind"] = rt.kind
        # keep apiVersion/kind first, as the server writes them
        return {"apiVersion": out.pop("apiVersion"), "kind": out.pop("kind"), **out}

    def _commit(
        self, rt: ResourceType, obj: dict[str, Any], kind: str, prev: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Store (or delete) ``obj`` with a new resourceVersion; wake the watchers."""
        self._rv += 1
        stored = copy.deepcopy(obj)
        stored["apiVersion"] = rt.group_version(rt.storage_version)
        stored["kind"] = rt.kind
        meta = stored.setdefault("metadata", {})
        meta["resourceVersion"] = str(self._rv)
        key = (
            rt.group,
            rt.plural,
            meta.get("namespace", "") if rt.namespaced else "",
            meta["name"],
        )
        if kind == "DELETED":
            self._objects.pop(key, None)
        else:
            self._objects[key] = stored
        change = Change(self._rv, key, kind, copy.deepcopy(stored), copy.deepcopy(prev))
        self._history.append(change)
        self._history_rvs.append(self._rv)
        self._changed.notify_all()
        return stored

    def _admit_create(
        self,
        rt: ResourceType,
        version: str,
        obj: dict[str, Any],
        *,
        keep_status: bool = False,
        defaults: bool = True,
    ) -> None:
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            suffix = "".join(random.choice(_NAME_CHARS) for _ in range(5))
            meta["name"] = f"{meta['generateName']}{suffix}"
        for system in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(system, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        if rt.generation != "none":
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        if rt.status_subresource and not keep_status:
            if rt.custom:
                obj.pop("status", None)
            else:
                obj["status"] = {}
        if defaults and rt.deployment_defaults:
            default_deployment(obj)
        _normalise_times(rt, version, obj)

    @staticmethod
    def _carry_system_fields(old_meta: Mapping[str, Any], new_meta: dict[str, Any]) -> None:
        for key in (
            "uid",
            "creationTimestamp",
            "generation",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ):
            if key in old_meta:
                new_meta[key] = old_meta[key]
            else:
                new_meta.pop(key, None)

    @staticmethod
    def _bump_generation(rt: ResourceType, old: Mapping[str, Any], new: dict[str, Any]) -> None:
        if rt.generation == "none":
            return
        meta = new.setdefault("metadata", {})
        generation = int(_meta(old).get("generation") or 1)
        if rt.generation == "spec+annotations":
            changed = not _json_equal(old.get("spec"), new.get("spec")) or not _json_equal(
                _meta(old).get("annotations"), meta.get("annotations")
            )
        else:
            ignore = ("apiVersion", "kind", "metadata", "status")
            changed = not _json_equal(
                {k: v for k, v in old.items() if k not in ignore},
                {k: v for k, v in new.items() if k not in ignore},
            )
        meta["generation"] = generation + 1 if changed else generation

    # --- HTTP: classification, authorization, faults -----------------------------------------

    def _classify(self, method: str, path: str, query: Mapping[str, str]) -> dict[str, str]:
        """Kubernetes' RequestInfo for a path: verb, group, version, resource, ... ."""
        parts = [unquote(p) for p in path.strip("/").split("/")] if path.strip("/") else []
        info = {
            "verb": "",
            "group": "",
            "version": "",
            "resource": "",
            "subresource": "",
            "namespace": "",
            "name": "",
        }
        if parts[:1] == ["api"] and len(parts) >= 3:
            info["version"], rest = parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 4:
            info["group"], info["version"], rest = parts[1], parts[2], parts[3:]
        else:
            return info
        if len(rest) >= 3 and rest[0] == "namespaces":
            info["namespace"], rest = rest[1], rest[2:]
        elif len(rest) == 2 and rest[0] == "namespaces":
            info["resource"], info["name"] = "namespaces", rest[1]
            rest = []
        if rest:
            info["resource"] = rest[0]
            info["name"] = rest[1] if len(rest) > 1 else ""
            info["subresource"] = "/".join(rest[2:])
        named = bool(info["name"])
        watching = query.get("watch", "").lower() in ("true", "1")
        info["verb"] = {
            "GET": ("get" if named else ("watch" if watching else "list")),
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if named else "deletecollection",
        }.get(method, method.lower())
        return info

    def _take_fault(self, req: Request) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if not fault.exhausted and fault.match(req):
                    fault.hits += 1
                    return fault
        return None

    def _authorize(self, req: Request) -> None:
        if not req.resource:
            return
        with self._lock:
            denied = any(d.matches(req) for d in self._denials)
        if denied:
            raise forbidden(
                user=self.user,
                verb=req.verb,
                rt_group=req.group,
                resource=req.resource,
                subresource=req.subresource,
                ns=req.namespace,
                name=req.name,
            )

    def _wait(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    # --- HTTP: the API -----------------------------------------------------------------------

    def _handle(self, req: Request) -> tuple[int, Any]:
        """The answer to one request: (status, JSON body) or (200, _WATCH)."""
        self._authorize(req)
        parts = [p for p in req.path.strip("/").split("/") if p]
        if req.method == "GET":
            discovery = self._discovery(parts)
            if discovery is not None:
                return 200, discovery
        if not req.resource:
            raise not_served()
        rt = self._types.get((req.group, req.resource))
        if rt is None or req.version not in self._served.get(req.group, ()):
            raise not_served()
        if req.subresource and not (req.subresource == "status" and rt.status_subresource):
            raise not_served()
        if req.namespace and not rt.namespaced:
            raise not_served()
        if rt.namespaced and not req.namespace and (req.name or req.method == "POST"):
            raise not_served() if req.name else method_not_allowed()
        if req.subresource and req.verb not in ("get", "update", "patch"):
            raise method_not_allowed()
        if req.verb == "get":
            return 200, self._get(rt, req)
        if req.verb == "list":
            return 200, self._list(rt, req)
        if req.verb == "watch":
            self._watch_selectors(rt, req)  # 400 before the stream starts
            if req.query.get("resourceVersion") not in (None, "", "0"):
                try:
                    int(req.query["resourceVersion"])
                except ValueError:
                    raise bad_request(
                        f"invalid resource version: strconv.ParseUint: parsing "
                        f'"{req.query["resourceVersion"]}": invalid syntax'
                    ) from None
            return 200, _WATCH
        if req.verb == "create":
            return 201, self._create(rt, req)
        if req.verb == "update":
            return self._replace(rt, req)
        if req.verb == "patch":
            return 200, self._patch(rt, req)
        if req.verb == "delete":
            return self._delete(rt, req)
        if req.verb == "deletecollection":
            return 200, self._delete_collection(rt, req)
        raise method_not_allowed()

    def _get(self, rt: ResourceType, req: Request) -> dict[str, Any]:
        with self._lock:
            obj = self._objects.get((rt.group, rt.plural, req.namespace, req.name))
            if obj is None:
                raise not_found(rt, req.name)
            return self._view(rt, req.version, obj)

    def _selected(self, rt: ResourceType, req: Request) -> Callable[[Mapping[str, Any]], bool]:
        labels = parse_label_selector(req.query.get("labelSelector", ""))
        fields = parse_field_selector(rt, req.query.get("fieldSelector", ""))
        namespace = req.namespace

        def match(obj: Mapping[str, Any]) -> bool:
            if namespace and _meta(obj).get("namespace") != namespace:
                return False
            return labels(_labels(obj)) and fields(obj)

        return match

    _watch_selectors = _selected

    def _item(self, rt: ResourceType, version: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        item = self._view(rt, version, obj)
        if not rt.custom:  # built-in list items carry no kind/apiVersion on the wire
            item.pop("apiVersion")
            item.pop("kind")
        return item

    def _list(self, rt: ResourceType, req: Request) -> dict[str, Any]:
        match = self._selected(rt, req)
        with self._lock:
            items = [
                self._item(rt, req.version, obj)
                for key, obj in sorted(self._objects.items())
                if key[:2] == (rt.group, rt.plural) and match(obj)
            ]
            rv = self._rv
        return {
            "kind": f"{rt.kind}List",
            "apiVersion": rt.group_version(req.version),
            "metadata": {"resourceVersion": str(rv)},
            "items": items,
        }

    def _body_object(self, rt: ResourceType, req: Request) -> dict[str, Any]:
        # No Content-Type means the server's first media type, JSON (NegotiateInputSerializer):
        # kubernetes 37 sends none with POST and PUT.
        ctype = (req.content_type or "application/json").split(";")[0].strip().lower()
        if ctype not in ("application/json", "application/yaml"):
            raise unsupported_media_type(BODY_TYPES)
        body = req.body
        if not isinstance(body, dict):
            got = "array" if isinstance(body, list) else "string" if body is not None else "null"
            raise bad_request(
                f"json: cannot unmarshal {got} into Go value of type map[string]interface {{}}"
                if body is not None
                else f"Object 'Kind' is missing in '{json.dumps(body)}'"
            )
        obj: dict[str, Any] = _drop_nulls(copy.deepcopy(body))
        gv = rt.group_version(req.version)
        if rt.custom and (not obj.get("apiVersion") or not obj.get("kind")):
            missing = "Kind" if not obj.get("kind") else "apiVersion"
            raise bad_request(f"Object '{missing}' is missing in '{json.dumps(body)}'")
        if obj.get("apiVersion", gv) != gv or obj.get("kind", rt.kind) != rt.kind:
            raise bad_request(
                f"the API version in the data ({obj.get('apiVersion')}) does not match the "
                f"expected API version ({gv})"
                if obj.get("apiVersion", gv) != gv
                else f"the kind in the data ({obj.get('kind')}) does not match the expected "
                f"kind ({rt.kind})"
            )
        obj["apiVersion"], obj["kind"] = gv, rt.kind
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != req.namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request"
                )
            meta["namespace"] = req.namespace
        return obj

    def _validate(self, rt: ResourceType, obj: Mapping[str, Any]) -> None:
        name = str(_meta(obj).get("name") or "")
        errors: list[FieldError] = []
        if rt.deployment_defaults:
            errors = validate_deployment(obj)
        if errors:
            raise invalid(rt.qualified_kind, name, errors)

    def _create(
        self, rt: ResourceType, req: Request, obj: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        obj = self._body_object(rt, req) if obj is None else obj
        meta = obj["metadata"]
        if not meta.get("name") and not meta.get("generateName"):
            raise invalid(
                rt.qualified_kind,
                "",
                [
                    FieldError(
                        "metadata.name", "FieldValueRequired", "name or generateName is required"
                    )
                ],
            )
        with self._lock:
            self._admit_create(rt, req.version, obj)
            self._validate(rt, obj)
            key = (rt.group, rt.plural, req.namespace, meta["name"])
            if key in self._objects:
                raise already_exists(rt, meta["name"])
            if req.query.get("dryRun") == "All":
                return self._view(rt, req.version, obj)
            return self._view(rt, req.version, self._commit(rt, obj, "ADDED", None))

    def _update(
        self,
        rt: ResourceType,
        req: Request,
        old: dict[str, Any],
        new: dict[str, Any],
        *,
        unconditional_ok: bool,
    ) -> dict[str, Any]:
        """The shared tail of PUT and PATCH (``store.Update``)."""
        name = req.name
        meta = new.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if meta.get("name", name) != name:
            raise bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the "
                f"URL ({name})"
            )
        meta["name"] = name
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != req.namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request"
                )
            meta["namespace"] = req.namespace
        sent_rv = meta.get("resourceVersion")
        current_rv = _meta(old).get("resourceVersion")
        if sent_rv in (None, ""):
            if not unconditional_ok and rt.custom:
                raise invalid(
                    rt.qualified_kind,
                    name,
                    [
                        FieldError(
                            "metadata.resourceVersion",
                            "FieldValueInvalid",
                            "must be specified for an update",
                            _GoZero(),
                        )
                    ],
                )
        elif str(sent_rv) != current_rv:
            raise conflict(rt, name)
        meta["resourceVersion"] = current_rv
        self._carry_system_fields(_meta(old), meta)
        if rt.status_subresource:
            if req.subresource == "status":
                status = new.get("status")
                new = copy.deepcopy(old)
                if status is None:
                    new.pop("status", None)
                else:
                    new["status"] = status
            elif "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        if rt.deployment_defaults:
            default_deployment(new)
        _normalise_times(rt, req.version, new)
        new["apiVersion"] = rt.group_version(rt.storage_version)
        new["kind"] = rt.kind
        self._validate(rt, new)
        self._bump_generation(rt, old, new)
        if req.query.get("dryRun") == "All":
            return self._view(rt, req.version, new)
        if _json_equal(new, old):  # a no-op: no new resourceVersion, no event (etcd3 store)
            return self._view(rt, req.version, old)
        if _meta(old).get("deletionTimestamp") and not _meta(new).get("finalizers"):
            self._commit(rt, new, "DELETED", old)  # the last finalizer is gone
            return self._view(rt, req.version, self._history[-1].obj)
        return self._view(rt, req.version, self._commit(rt, new, "MODIFIED", old))

    def _replace(self, rt: ResourceType, req: Request) -> tuple[int, dict[str, Any]]:
        obj = self._body_object(rt, req)
        with self._lock:
            old = self._objects.get((rt.group, rt.plural, req.namespace, req.name))
            if old is None:
                if not rt.create_on_update or req.subresource:
                    raise not_found(rt, req.name)
                obj["metadata"].setdefault("name", req.name)
                if obj["metadata"]["name"] != req.name:
                    raise bad_request(
                        f"the name of the object ({obj['metadata']['name']}) does not match the "
                        f"name on the URL ({req.name})"
                    )
                return 201, self._create(rt, req, obj)
            return 200, self._update(rt, req, old, obj, unconditional_ok=False)

    def _patch(self, rt: ResourceType, req: Request) -> dict[str, Any]:
        ctype = (req.content_type or "").split(";")[0].strip()
        if ctype not in rt.patch_types:
            raise unsupported_media_type(rt.patch_types)
        if ctype == APPLY_PATCH_YAML:
            raise ApiError(
                500,
                status_body(
                    500,
                    "InternalError",
                    "Internal error occurred: server-side apply is not implemented by "
                    "the kubeapi test double",
                    {},
                ),
            )
        with self._lock:
            old = self._objects.get((rt.group, rt.plural, req.namespace, req.name))
            if old is None:
                raise not_found(rt, req.name)
            current = self._view(rt, req.version, old)
            body = req.body
            if isinstance(body, str):
                raise bad_request(
                    f"invalid character {body.strip()[:1]!r} looking for beginning of value"
                )
            if ctype == JSON_PATCH:
                try:
                    patched = apply_json_patch(current, body)
                except PatchError as exc:
                    raise unprocessable(str(exc)) from None
            elif ctype == MERGE_PATCH:
                if isinstance(body, str) or body is None:
                    raise bad_request("Invalid JSON Patch")
                patched = apply_merge_patch(current, body)
            else:
                if not isinstance(body, dict):
                    got = "array" if isinstance(body, list) else "string"
                    raise bad_request(
                        f"json: cannot unmarshal {got} into Go value of type "
                        "map[string]interface {}"
                    )
                patched = apply_strategic_merge_patch(current, body)
            if not isinstance(patched, dict):
                got = "array" if isinstance(patched, list) else type(patched).__name__
                raise invalid(
                    "",
                    "",
                    [
                        FieldError(
                            "patch",
                            "FieldValueInvalid",
                            f"json: cannot unmarshal {got} into Go value of type "
                            "map[string]interface {}",
                            json.dumps(patched),
                        )
                    ],
                )
            patched = _drop_nulls(patched)
            return self._update(rt, req, old, patched, unconditional_ok=True)

    def _delete(self, rt: ResourceType, req: Request) -> tuple[int, dict[str, Any]]:
        options = req.body if isinstance(req.body, dict) else {}
        pre = options.get("preconditions") or {}
        with self._lock:
            old = self._objects.get((rt.group, rt.plural, req.namespace, req.name))
            if old is None:
                raise not_found(rt, req.name)
            meta = _meta(old)
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
                raise conflict(
                    rt,
                    req.name,
                    f"the ResourceVersion in the precondition ({pre['resourceVersion']}) does not "
                    f"match the ResourceVersion in record ({meta.get('resourceVersion')}). The "
                    "object might have been modified",
                )
            if pre.get("uid") and pre["uid"] != meta.get("uid"):
                raise conflict(
                    rt,
                    req.name,
                    f"the UID in the precondition ({pre['uid']}) does not match the UID in record "
                    f"({meta.get('uid')}). The object might have been deleted and then recreated",
                )
            if req.query.get("dryRun") == "All" or options.get("dryRun") == ["All"]:
                return 200, self._view(rt, req.version, old)
            if meta.get("finalizers"):
                if meta.get("deletionTimestamp"):
                    return 202, self._view(rt, req.version, old)
                new = copy.deepcopy(old)
                new["metadata"]["deletionTimestamp"] = _now()
                new["metadata"]["deletionGracePeriodSeconds"] = 0
                return 202, self._view(rt, req.version, self._commit(rt, new, "MODIFIED", old))
            self._commit(rt, old, "DELETED", old)
            gone = self._history[-1].obj
        if rt.custom:
            return 200, self._view(rt, req.version, gone)
        success = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {
                k: v
                for k, v in {
                    "name": req.name,
                    "group": rt.group,
                    "kind": rt.plural,
                    "uid": meta.get("uid"),
                }.items()
                if v
            },
        }
        return 200, success

    def _delete_collection(self, rt: ResourceType, req: Request) -> dict[str, Any]:
        match = self._selected(rt, req)
        with self._lock:
            doomed = [
                obj
                for key, obj in sorted(self._objects.items())
                if key[:2] == (rt.group, rt.plural) and match(obj)
            ]
            items = []
            for obj in doomed:
                self._commit(rt, obj, "DELETED", obj)
                items.append(self._item(rt, req.version, self._history[-1].obj))
            return {
                "kind": f"{rt.kind}List",
                "apiVersion": rt.group_version(req.version),
                "metadata": {"resourceVersion": str(self._rv)},
                "items": items,
            }

    # --- discovery ---------------------------------------------------------------------------

    def _groups(self) -> list[str]:
        groups = []
        for rt in self._types.values():
            if rt.group and rt.group not in groups and self._served.get(rt.group):
                groups.append(rt.group)
        return groups

    def _api_group(self, group: str) -> dict[str, Any]:
        versions = self._served[group]
        return {
            "name": group,
            "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
            "preferredVersion": {"groupVersion": f"{group}/{versions[0]}", "version": versions[0]},
        }

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        resources = []
        for rt in self._types.values():
            if rt.group != group or version not in rt.versions:
                continue
            entry: dict[str, Any] = {
                "name": rt.plural,
                "singularName": rt.singular,
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": list(CUSTOM_VERBS),
            }
            if rt.short_names:
                entry["shortNames"] = list(rt.short_names)
            if rt.categories:
                entry["categories"] = list(rt.categories)
            resources.append(entry)
            if rt.status_subresource:
                resources.append(
                    {
                        "name": f"{rt.plural}/status",
                        "singularName": "",
                        "namespaced": rt.namespaced,
                        "kind": rt.kind,
                        "verbs": list(STATUS_VERBS),
                    }
                )
        body: dict[str, Any] = {"kind": "APIResourceList"}
        if group:
            body["apiVersion"] = "v1"
        body["groupVersion"] = f"{group}/{version}" if group else version
        body["resources"] = resources
        return body

    def _discovery(self, parts: list[str]) -> dict[str, Any] | None:
        if parts == ["version"]:
            return dict(VERSION_INFO)
        if parts == ["api"]:
            return {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{self._host}:{self.port}"}
                ],
            }
        if parts == ["api", "v1"]:
            return self._resource_list("", "v1")
        if parts == ["apis"]:
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [self._api_group(g) for g in self._groups()],
            }
        if len(parts) == 2 and parts[0] == "apis":
            if parts[1] not in self._groups():
                raise not_served()
            return {"kind": "APIGroup", "apiVersion": "v1", **self._api_group(parts[1])}
        if len(parts) == 3 and parts[0] == "apis":
            if parts[2] not in self._served.get(parts[1], ()):
                raise not_served()
            return self._resource_list(parts[1], parts[2])
        if not parts or parts[0] not in ("api", "apis"):
            raise not_served()
        return None

    # --- watch -------------------------------------------------------------------------------

    def _watch_event(
        self, rt: ResourceType, version: str, change: Change, match: Callable[[Any], bool]
    ) -> dict[str, Any] | None:
        if change.key[:2] != (rt.group, rt.plural):
            return None
        now = match(change.obj)
        before = change.prev is not None and match(change.prev)
        kind = change.type
        if kind == "MODIFIED":
            if now and not before:
                kind = "ADDED"
            elif before and not now:
                kind = "DELETED"
            elif not now:
                return None
        elif not now:
            return None
        obj = copy.deepcopy(change.obj)
        obj["metadata"]["resourceVersion"] = str(change.rv)
        return {"type": kind, "object": self._view(rt, version, obj)}

    def _stream_watch(self, req: Request, write: Callable[[dict[str, Any]], None]) -> None:
        """Write the events of one watch until ``timeoutSeconds``, the client leaves or stop."""
        rt = self._types[(req.group, req.resource)]
        match = self._selected(rt, req)
        try:
            timeout = float(req.query.get("timeoutSeconds") or 0)
        except ValueError:
            timeout = 0
        timeout = timeout if timeout > 0 else DEFAULT_WATCH_TIMEOUT_S  # 0: the server's default
        deadline = time.monotonic() + timeout
        since = req.query.get("resourceVersion") or "0"
        with self._lock:
            if since == "0":
                events = [
                    {"type": "ADDED", "object": self._view(rt, req.version, obj)}
                    for key, obj in sorted(self._objects.items())
                    if key[:2] == (rt.group, rt.plural) and match(obj)
                ]
                cursor = len(self._history)
            else:
                start = int(since)
                if start < self._compacted:
                    message = f"too old resource version: {start} ({self._compacted})"
                    write({"type": "ERROR", "object": status_body(410, "Expired", message)})
                    return
                events = []
                cursor = bisect.bisect_right(self._history_rvs, start)
        for event in events:
            write(event)
        while True:
            with self._changed:
                while (
                    cursor == len(self._history)
                    and not self._stopping.is_set()
                    and time.monotonic() < deadline
                ):
                    self._changed.wait(max(0.0, deadline - time.monotonic()))
                batch = self._history[cursor:]
                cursor = len(self._history)
                rv = self._rv
            for change in batch:
                changed = self._watch_event(rt, req.version, change, match)
                if changed is not None:
                    write(changed)
            if self._stopping.is_set():
                return
            if time.monotonic() >= deadline:
                if req.query.get("allowWatchBookmarks", "").lower() == "true":
                    write(
                        {
                            "type": "BOOKMARK",
                            "object": {
                                "kind": rt.kind,
                                "apiVersion": rt.group_version(req.version),
                                "metadata": {"resourceVersion": str(rv)},
                            },
                        }
                    )
                return


class _GoZero:
    """Renders as Go prints the zero resourceVersion (``0x0``) in that famous 422."""

    def __str__(self) -> str:
        return "0x0"


# --- the HTTP layer ------------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    kube: KubeApiServer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def track(self, conn: socket.socket, alive: bool) -> None:
        with self._conns_lock:
            (self._conns.add if alive else self._conns.discard)(conn)

    def close_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    server_version = "kubeapi-double"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        # headers and body go out in two writes: without this, Nagle + delayed ACK add ~40 ms
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _read_body(self) -> tuple[bytes, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        if not raw:
            return raw, None
        text = raw.decode("utf-8", errors="replace")
        ctype = (self.headers.get("Content-Type") or "").lower()
        try:
            return raw, json.loads(text)
        except ValueError:
            pass
        if "yaml" in ctype:
            try:
                return raw, yaml.safe_load(text)
            except yaml.YAMLError:
                pass
        return raw, text

    def _dispatch(self) -> None:
        kube = self.server.kube
        split = urlsplit(self.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        _, body = self._read_body()
        info = kube._classify(self.command, split.path, query)
        req = Request(
            self.command, split.path, query, self.headers.get("Content-Type"), body, **info
        )
        fault = kube._take_fault(req)
        if fault is not None:
            if fault.delay:
                kube._wait(fault.delay)
            if fault.drop:
                self.close_connection = True
                kube.requests.append(RecordedRequest(**vars(req), status=0, detail="dropped"))
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault.status is not None:
                injected = injected_error(fault.status, fault.retry_after)
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
                self._send(req, injected.code, injected.body, detail="injected", headers=headers)
                return
        try:
            status, answer = kube._handle(req)
        except ApiError as err:
            self._send(req, err.code, err.body, detail=err.detail)
            return
        except Exception as exc:  # a bug in the double: answer like the API server would
            bug = ApiError(
                500,
                status_body(
                    500,
                    "InternalError",
                    f"Internal error occurred: {exc!r}",
                    {"causes": [{"message": repr(exc)}]},
                ),
            )
            self._send(req, bug.code, bug.body, detail=repr(exc))
            return
        if answer is _WATCH:
            self._watch(req)
            return
        self._send(req, status, answer)

    def _send(
        self,
        req: Request,
        status: int,
        body: Any,
        *,
        detail: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        data = json.dumps(body, separators=(",", ":")).encode() + b"\n"
        self.server.kube.requests.append(
            RecordedRequest(**vars(req), status=status, response=body, detail=detail)
        )
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-cache, private")
            self.send_header("Audit-Id", str(uuid.uuid4()))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _watch(self, req: Request) -> None:
        kube = self.server.kube
        kube.requests.append(RecordedRequest(**vars(req), status=200))
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache, private")
            self.send_header("Audit-Id", str(uuid.uuid4()))
            self.end_headers()
            self.wfile.flush()

            def write(event: dict[str, Any]) -> None:
                data = json.dumps(event, separators=(",", ":")).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            kube._stream_watch(req, write)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:  # the client went away
            self.close_connection = True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (for tests that need a dead endpoint)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


__all__ = [
    "CORE_EVENTS",
    "DEFAULT_RESOURCES",
    "DEFAULT_USER",
    "DEPLOYMENTS",
    "DESTINATION_RULES",
    "EVENTS_V1",
    "JSON_PATCH",
    "LEASES",
    "MERGE_PATCH",
    "STRATEGIC_MERGE_PATCH",
    "VIRTUAL_SERVICES",
    "ApiError",
    "Change",
    "Denial",
    "Fault",
    "KubeApiServer",
    "RecordedRequest",
    "Request",
    "RequestLog",
    "ResourceType",
    "apply_json_patch",
    "apply_merge_patch",
    "apply_strategic_merge_patch",
    "free_port",
]
