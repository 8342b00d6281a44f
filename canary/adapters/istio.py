"""The traffic port (and the state's read side) over Istio VirtualServices.

Reads the VirtualService in the newest ``networking.istio.io`` version the API server serves
(``v1``, else ``v1beta1``, else ``v1alpha3``). Writes the weights, the ``canary.dev/state``
annotation and the removal of a consumed ``canary.dev/command`` in **one** JSON Patch whose
first operation tests ``/metadata/resourceVersion``: if anyone wrote in between, the API server
refuses the whole patch (422 for the failed test, 409 for a stale version) and we raise
:class:`ConflictError` so the controller re-reads and decides again (docs/design.md §4). Every other
route and field is untouched: the patch names only the two weights and our two annotations.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from canary.adapters.kube import DEFAULT_REQUEST_TIMEOUT, call
from canary.core import routes
from canary.core.errors import ConflictError, InvalidError, NotFoundError, RouteError
from canary.core.model import COMMAND_ANNOTATION, STATE_ANNOTATION, Weights
from canary.core.plan import Plan
from canary.core.ports import RouteView

GROUP = "networking.istio.io"
PLURAL = "virtualservices"
#: Newest first: v1 is GA since Istio 1.22; older meshes serve only v1beta1 or v1alpha3.
VERSIONS = ("v1", "v1beta1", "v1alpha3")
JSON_PATCH = "application/json-patch+json"
#: Who owns the fields we write (managedFields): shown by `kubectl get -o yaml` and named in a
#: Helm 4 server-side apply conflict, instead of the client's generic "OpenAPI-Generator".
FIELD_MANAGER = "canary"


def _pointer(key: str) -> str:
    """RFC 6901 escaping of one path segment (``canary.dev/state`` → ``canary.dev~1state``)."""
    return key.replace("~", "~0").replace("/", "~1")


def build_patch(
    vs: Mapping[str, Any],
    plan: Plan,
    *,
    version: str,
    weights: Weights | None,
    state_json: str,
    drop_command: bool,
) -> list[dict[str, Any]]:
    """The JSON Patch for one write: test the resourceVersion, then weights and annotations."""
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": version}
    ]
    annotations = (vs.get("metadata") or {}).get("annotations")
    if annotations is None:
        ops.append(
            {"op": "add", "path": "/metadata/annotations", "value": {STATE_ANNOTATION: state_json}}
        )
    else:
        op = "replace" if STATE_ANNOTATION in annotations else "add"
        path = f"/metadata/annotations/{_pointer(STATE_ANNOTATION)}"
        ops.append({"op": op, "path": path, "value": state_json})
        if drop_command and COMMAND_ANNOTATION in annotations:
            ops.append(
                {"op": "remove", "path": f"/metadata/annotations/{_pointer(COMMAND_ANNOTATION)}"}
            )
    if weights is not None:
        ops.extend(routes.weight_patch(vs, plan.virtual_service, weights))
    return ops


def view_of(vs: Mapping[str, Any], plan: Plan) -> RouteView:
    meta = vs.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    try:
        weights: Weights | None = routes.get_weights(vs, plan.virtual_service)
        error = ""
    except RouteError as exc:
        weights, error = None, str(exc)
    return RouteView(
        version=str(meta.get("resourceVersion", "")),
        weights=weights,
        route_error=error,
        state_raw=annotations.get(STATE_ANNOTATION),
        command_raw=annotations.get(COMMAND_ANNOTATION),
        obj=vs,
    )


def _owner(vs: Mapping[str, Any]) -> tuple[str, str] | None:
    """(plan key, raw state) of a VirtualService carrying ``canary.dev/state``: the key is the
    state's ``plan`` field, else (unreadable state) the VirtualService's namespace/name."""
    meta = vs.get("metadata") or {}
    raw = (meta.get("annotations") or {}).get(STATE_ANNOTATION)
    if raw is None:
        return None
    try:
        key = str(json.loads(raw).get("plan") or "")
    except (ValueError, AttributeError):
        key = ""
    return key or f"{meta.get('namespace')}/{meta.get('name')}", raw


class IstioRouter:
    """TrafficRouter and StateStore over ``networking.istio.io`` VirtualServices."""

    def __init__(self, api: client.ApiClient, versions: Sequence[str] = VERSIONS) -> None:
        self._api = api
        self._custom = client.CustomObjectsApi(api)
        self._preference = tuple(versions)
        self._version: str | None = None

    @property
    def version(self) -> str:
        """The newest served version (asked once, from API discovery)."""
        if self._version is None:
            groups = call(
                lambda: client.ApisApi(self._api).get_api_versions(
                    _request_timeout=DEFAULT_REQUEST_TIMEOUT
                ),
                verb="get",
                what="API discovery (/apis)",
            )
            served = {
                v.version for g in groups.groups or [] if g.name == GROUP for v in g.versions or []
            }
            chosen = next((v for v in self._preference if v in served), None)
            if chosen is None:
                raise InvalidError(
                    f"the API server serves no {GROUP} version canary knows "
                    f"({', '.join(self._preference)}); is Istio installed?"
                )
            self._version = chosen
        return self._version

    def _what(self, plan: Plan) -> str:
        return f"{PLURAL}.{GROUP} {plan.namespace}/{plan.virtual_service.name}"

    def read(self, plan: Plan) -> RouteView:
        return self.fetch(plan)

    def fetch(self, plan: Plan) -> RouteView:
        """The VirtualService as the API server has it now (a GET)."""
        vs = call(
            lambda: self._custom.get_namespaced_custom_object(
                GROUP,
                self.version,
                plan.namespace,
                PLURAL,
                plan.virtual_service.name,
                _request_timeout=DEFAULT_REQUEST_TIMEOUT,
            ),
            verb="get",
            what=self._what(plan),
        )
        if not isinstance(vs, Mapping):
            raise InvalidError(f"{self._what(plan)}: unexpected answer {str(vs)[:200]}")
        return view_of(vs, plan)

    def write(
        self,
        plan: Plan,
        view: RouteView,
        weights: Weights | None,
        state_json: str,
        drop_command: bool,
    ) -> RouteView:
        vs = view.obj if view.obj is not None else self.fetch(plan).obj
        assert vs is not None
        ops = build_patch(
            vs,
            plan,
            version=view.version,
            weights=weights,
            state_json=state_json,
            drop_command=drop_command,
        )
        try:
            updated = call(
                lambda: self._custom.patch_namespaced_custom_object(
                    GROUP,
                    self.version,
                    plan.namespace,
                    PLURAL,
                    plan.virtual_service.name,
                    ops,
                    _content_type=JSON_PATCH,
                    field_manager=FIELD_MANAGER,
                    _request_timeout=DEFAULT_REQUEST_TIMEOUT,
                ),
                verb="patch",
                what=self._what(plan),
            )
        except InvalidError as exc:
            # A failed `test` op is a 422 whose body says nothing about the test ("the server
            # rejected our request due to an error in our request"): re-read to tell a write
            # in between (a conflict: decide again) from a patch that is really invalid.
            if self.fetch(plan).version != view.version:
                raise ConflictError(f"{self._what(plan)} changed since it was read") from exc
            raise
        if not isinstance(updated, Mapping):
            raise InvalidError(f"{self._what(plan)}: unexpected answer {str(updated)[:200]}")
        return view_of(updated, plan)

    def _list(self, namespace: str) -> Any:
        if namespace:
            return self._custom.list_namespaced_custom_object(
                GROUP, self.version, namespace, PLURAL, _request_timeout=DEFAULT_REQUEST_TIMEOUT
            )
        return self._custom.list_cluster_custom_object(
            GROUP, self.version, PLURAL, _request_timeout=DEFAULT_REQUEST_TIMEOUT
        )

    def _listed(self, namespace: str) -> list[Mapping[str, Any]]:
        """The VirtualServices of a namespace ("" = all namespaces)."""
        found = call(
            functools.partial(self._list, namespace),
            verb="list",
            what=f"{PLURAL}.{GROUP} in {namespace or 'all namespaces'}",
        )
        return list(found.get("items") or []) if isinstance(found, Mapping) else []

    def states(self, namespaces: Sequence[str] | None = None) -> Mapping[str, str]:
        """Every ``canary.dev/state`` by plan key (the ``plan`` field of the state)."""
        out: dict[str, str] = {}
        for ns in namespaces or [""]:
            for vs in self._listed(ns):
                owned = _owner(vs)
                if owned is not None:
                    out[owned[0]] = owned[1]
        return out

    # -- the CLI's view (status, wait, commands): a plan found by its key, no plan file needed --

    def locate(self, namespace: str, plan_name: str) -> Located:
        """The VirtualService carrying plan ``namespace/plan_name``'s state (the ``plan`` field of
        ``canary.dev/state``); NotFoundError naming what was looked for if none does."""
        key = f"{namespace}/{plan_name}"
        for vs in self._listed(namespace):
            owned = _owner(vs)
            if owned is not None and owned[0] == key:
                meta = vs.get("metadata") or {}
                return Located(
                    namespace=namespace,
                    name=str(meta.get("name")),
                    state_raw=owned[1],
                    command_raw=(meta.get("annotations") or {}).get(COMMAND_ANNOTATION),
                )
        raise NotFoundError(
            f"no VirtualService in {namespace} carries the state of plan {key} (is the plan "
            "served by a running controller, and the name right?)"
        )

    def write_command(self, namespace: str, vs_name: str, command_json: str) -> None:
        """Set ``canary.dev/command`` (a merge patch of one annotation; the controller consumes
        it in the same write as its effect)."""
        patch = {"metadata": {"annotations": {COMMAND_ANNOTATION: command_json}}}
        call(
            lambda: self._custom.patch_namespaced_custom_object(
                GROUP,
                self.version,
                namespace,
                PLURAL,
                vs_name,
                patch,
                _content_type="application/merge-patch+json",
                field_manager=FIELD_MANAGER,
                _request_timeout=DEFAULT_REQUEST_TIMEOUT,
            ),
            verb="patch",
            what=f"{PLURAL}.{GROUP} {namespace}/{vs_name}",
        )


@dataclass(frozen=True)
class Located:
    """Where a plan's state lives, as the CLI found it."""

    namespace: str
    name: str  # the VirtualService
    state_raw: str | None
    command_raw: str | None
