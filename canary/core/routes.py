"""Read and set the stable/canary weights of one Istio VirtualService http route (pure).

The VirtualService is a plain dict, as the Kubernetes API returns it (or as YAML parses it).
Every function first locates the **managed route** (docs/design.md §1): the http route the plan
names (by name, by index, or the only one), and in it exactly two destinations, the plan's
stable and canary. Anything else is a :class:`~canary.core.errors.RouteError` whose message says
what was found, what the plan expects and what to change, because a human has to fix it: the
controller raises ``route.invalid`` and writes nothing for the plan until it is fixed, rather
than guess which destination is which.

Nothing here mutates its input: :func:`set_weights` returns a deep copy and
:func:`weight_patch` returns the JSON Patch (RFC 6902) that makes the same change on the API
server, conditional on the resourceVersion the adapter adds.

Hosts are compared the way Istio resolves them: a short name is relative to the
VirtualService's namespace, so ``reviews`` in ``bookinfo`` is ``reviews.bookinfo``, which is
``reviews.bookinfo.svc.cluster.local``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from canary.core.errors import RouteError
from canary.core.model import Weights
from canary.core.names import normalise_host
from canary.core.plan import Destination, VirtualServiceRef

#: Fields of an http route that replace forwarding: such a route has no destinations to weigh.
_NON_FORWARDING = ("redirect", "directResponse", "delegate")

_PLAN_ROUTE_FIELD = "spec.virtualService.route"


# --- host and destination matching --------------------------------------------------------


def _same(a: Destination, b: Destination, namespace: str | None) -> bool:
    return normalise_host(a.host, namespace) == normalise_host(b.host, namespace) and (
        (a.subset or None) == (b.subset or None)
    )


# --- reading the dict defensively ---------------------------------------------------------


def _where(vs: Mapping[str, Any], ref: VirtualServiceRef) -> str:
    meta = vs.get("metadata")
    name = ref.name
    namespace = None
    if isinstance(meta, Mapping):
        name = str(meta.get("name") or ref.name)
        namespace = meta.get("namespace")
    return f"VirtualService {namespace}/{name}" if namespace else f"VirtualService {name}"


def _namespace(vs: Mapping[str, Any]) -> str | None:
    meta = vs.get("metadata")
    if isinstance(meta, Mapping):
        namespace = meta.get("namespace")
        if isinstance(namespace, str) and namespace:
            return namespace
    return None


def _expects(ref: VirtualServiceRef) -> str:
    return f"stable {ref.stable} and canary {ref.canary}"


def _label(index: int, route: Mapping[str, Any]) -> str:
    name = route.get("name")
    return f'http[{index}] "{name}"' if isinstance(name, str) and name else f"http[{index}]"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _http(vs: Mapping[str, Any], ref: VirtualServiceRef) -> list[Mapping[str, Any]]:
    spec = vs.get("spec")
    http = spec.get("http") if isinstance(spec, Mapping) else None
    if not isinstance(http, Sequence) or isinstance(http, str) or not http:
        raise RouteError(
            f"{_where(vs, ref)} has no spec.http routes; the plan needs an http route whose "
            f"destinations are {_expects(ref)}"
        )
    routes: list[Mapping[str, Any]] = []
    for i, route in enumerate(http):
        if not isinstance(route, Mapping):
            raise RouteError(f"{_where(vs, ref)}: spec.http[{i}] is not an object")
        routes.append(route)
    return routes


def _listing(http: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(_label(i, r) for i, r in enumerate(http))


def _found_destinations(
    vs: Mapping[str, Any], ref: VirtualServiceRef, index: int, route: Mapping[str, Any]
) -> list[Destination]:
    """The destinations of one http route, in order; [] when it does not forward."""
    dests = route.get("route")
    if dests is None:
        return []
    if not isinstance(dests, Sequence) or isinstance(dests, str):
        raise RouteError(f"{_where(vs, ref)}: {_label(index, route)}.route is not a list")
    found: list[Destination] = []
    for j, entry in enumerate(dests):
        dest = entry.get("destination") if isinstance(entry, Mapping) else None
        if not isinstance(dest, Mapping) or not isinstance(dest.get("host"), str):
            raise RouteError(
                f"{_where(vs, ref)}: {_label(index, route)}.route[{j}] has no destination.host"
            )
        subset = dest.get("subset")
        found.append(Destination(host=dest["host"], subset=str(subset) if subset else None))
    return found


def _match(
    found: Sequence[Destination], ref: VirtualServiceRef, namespace: str | None
) -> tuple[list[int], list[int]]:
    stable = [j for j, d in enumerate(found) if _same(d, ref.stable, namespace)]
    canary = [j for j, d in enumerate(found) if _same(d, ref.canary, namespace)]
    return stable, canary


def _is_managed(
    found: Sequence[Destination], ref: VirtualServiceRef, namespace: str | None
) -> bool:
    stable, canary = _match(found, ref, namespace)
    return len(found) == 2 and len(stable) == 1 and len(canary) == 1


def _route_setting(index: int, route: Mapping[str, Any]) -> str:
    """What to write into spec.virtualService.route to select this route (name preferred)."""
    name = route.get("name")
    return f'"{name}"' if isinstance(name, str) and name else str(index)


def _candidates_hint(
    vs: Mapping[str, Any],
    ref: VirtualServiceRef,
    http: Sequence[Mapping[str, Any]],
    exclude: int | None = None,
) -> str:
    """Where the plan's two destinations are, if some other route has exactly them."""
    namespace = _namespace(vs)
    hits: list[int] = []
    for i, route in enumerate(http):
        if i == exclude:
            continue
        try:
            found = _found_destinations(vs, ref, i, route)
        except RouteError:
            continue
        if _is_managed(found, ref, namespace):
            hits.append(i)
    if len(hits) == 1:
        i = hits[0]
        return (
            f"; the plan's destinations are in {_label(i, http[i])}: "
            f"set {_PLAN_ROUTE_FIELD} to {_route_setting(i, http[i])}"
        )
    if hits:
        where = ", ".join(_label(i, http[i]) for i in hits)
        return f"; the plan's destinations are in {where}: set {_PLAN_ROUTE_FIELD} to one of them"
    return ""


# --- the public API -----------------------------------------------------------------------


def find_route(vs: Mapping[str, Any], ref: VirtualServiceRef) -> int:
    """Index in ``spec.http`` of the managed route; its destinations are checked too.

    Raises :class:`RouteError` when the route cannot be found unambiguously or is not a route
    with exactly two destinations, the plan's stable and canary.
    """
    return managed_destinations(vs, ref)[0]


def managed_destinations(vs: Mapping[str, Any], ref: VirtualServiceRef) -> tuple[int, int, int]:
    """(route index, stable destination index, canary destination index) of the managed route.

    The indices address ``spec.http[route].route[stable]`` and ``...route[canary]``.
    """
    where = _where(vs, ref)
    namespace = _namespace(vs)
    if _same(ref.stable, ref.canary, namespace):
        raise RouteError(
            f"the plan's stable ({ref.stable}) and canary ({ref.canary}) are the same destination "
            f"in {where}; give them different subsets (or hosts)"
        )
    http = _http(vs, ref)
    index = _select_route(vs, ref, http)
    route = http[index]
    found = _found_destinations(vs, ref, index, route)
    stable, canary = _match(found, ref, namespace)
    if len(found) == 2 and len(stable) == 1 and len(canary) == 1:
        return index, stable[0], canary[0]
    problem = _destination_problem(route, found, stable, canary, ref)
    hint = _candidates_hint(vs, ref, http, exclude=index)
    if isinstance(ref.route, int):
        raise RouteError(
            f"{where}: {_PLAN_ROUTE_FIELD} is index {ref.route}, which selects "
            f"{_label(index, route)}, and that route {problem}; the plan expects exactly two "
            f"destinations, {_expects(ref)} (were the routes reordered?){hint}"
        )
    raise RouteError(
        f"{where}: {_label(index, route)} {problem}; the plan expects exactly two destinations, "
        f"{_expects(ref)}{hint}"
    )


def _select_route(
    vs: Mapping[str, Any], ref: VirtualServiceRef, http: Sequence[Mapping[str, Any]]
) -> int:
    where = _where(vs, ref)
    selector = ref.route
    if selector is None:
        if len(http) == 1:
            return 0
        raise RouteError(
            f"{where} has {len(http)} http routes ({_listing(http)}); set {_PLAN_ROUTE_FIELD} "
            f"in the plan to the name (preferred) or index of the route with {_expects(ref)}"
            f"{_candidates_hint(vs, ref, http)}"
        )
    if isinstance(selector, str):
        hits = [i for i, r in enumerate(http) if r.get("name") == selector]
        if not hits:
            names = [f'"{r["name"]}"' for r in http if isinstance(r.get("name"), str)]
            existing = ", ".join(names) if names else "none (no http route has a name)"
            raise RouteError(
                f'{where} has no http route named "{selector}"; its route names are: '
                f"{existing}; fix {_PLAN_ROUTE_FIELD} in the plan or the route name in the chart"
                f"{_candidates_hint(vs, ref, http)}"
            )
        if len(hits) > 1:
            labels = ", ".join(_label(i, http[i]) for i in hits)
            raise RouteError(
                f'{where} has {len(hits)} http routes named "{selector}" ({labels}); '
                f"rename them so the managed route's name is unique"
            )
        return hits[0]
    if isinstance(selector, bool) or not isinstance(selector, int):
        raise RouteError(f"{_PLAN_ROUTE_FIELD} must be a route name or an index, got {selector!r}")
    if not 0 <= selector < len(http):
        raise RouteError(
            f"{where}: {_PLAN_ROUTE_FIELD} is index {selector}, out of range: the "
            f"VirtualService has {_count(len(http), 'http route')} ({_listing(http)}); "
            f"set it to the name (preferred) or index of the route with {_expects(ref)}"
            f"{_candidates_hint(vs, ref, http)}"
        )
    return selector


def _destination_problem(
    route: Mapping[str, Any],
    found: Sequence[Destination],
    stable: Sequence[int],
    canary: Sequence[int],
    ref: VirtualServiceRef,
) -> str:
    if not found:
        kinds = [k for k in _NON_FORWARDING if k in route]
        return f"has no destinations ({f'it is a {kinds[0]}' if kinds else 'no route list'})"
    listed = ", ".join(str(d) for d in found)
    if len(found) != 2:
        return f"has {_count(len(found), 'destination')} ({listed})"
    if not stable and not canary:
        return f"has neither the stable nor the canary destination (found {listed})"
    role, dest = ("stable", ref.stable) if not stable else ("canary", ref.canary)
    return f"has no {role} destination {dest} (found {listed})"


def _weight(
    vs: Mapping[str, Any], ref: VirtualServiceRef, index: int, j: int, entry: Mapping[str, Any]
) -> int:
    value = entry.get("weight")
    if value is None:
        return 0  # unset: the chart may omit the canary's 0; counted, and written back explicitly
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RouteError(
            f"{_where(vs, ref)}: spec.http[{index}].route[{j}].weight is {value!r}; "
            f"it must be a non-negative integer"
        )
    return value


def _route_entries(vs: Mapping[str, Any], index: int) -> Sequence[Mapping[str, Any]]:
    entries: Sequence[Mapping[str, Any]] = vs["spec"]["http"][index]["route"]
    return entries


def get_weights(vs: Mapping[str, Any], ref: VirtualServiceRef) -> Weights:
    """The live weights of the managed route's stable and canary destinations.

    A missing ``weight`` counts as 0. Weights that do not sum to 100 are a RouteError: the
    controller cannot tell what share the canary really gets.
    """
    index, s, c = managed_destinations(vs, ref)
    entries = _route_entries(vs, index)
    stable = _weight(vs, ref, index, s, entries[s])
    canary = _weight(vs, ref, index, c, entries[c])
    if stable + canary != 100:
        label = _label(index, vs["spec"]["http"][index])
        raise RouteError(
            f"{_where(vs, ref)}: {label} weights sum to {stable + canary}, not 100 (stable "
            f"{ref.stable}: {stable}, canary {ref.canary}: {canary}; a missing weight counts as "
            f"0); make them sum to 100 (the chart renders stable 100 / canary 0)"
        )
    return Weights(stable=stable, canary=canary)


def set_weights(vs: Mapping[str, Any], ref: VirtualServiceRef, weights: Weights) -> dict[str, Any]:
    """A deep copy of ``vs`` with the managed destinations' weights set; nothing else changes.

    Both weights are written explicitly, 0 included, as integers.
    """
    index, s, c = managed_destinations(vs, ref)
    out = copy.deepcopy(dict(vs))
    entries = out["spec"]["http"][index]["route"]
    entries[s]["weight"] = int(weights.stable)
    entries[c]["weight"] = int(weights.canary)
    return out


def weight_patch(
    vs: Mapping[str, Any], ref: VirtualServiceRef, weights: Weights
) -> list[dict[str, Any]]:
    """JSON Patch (RFC 6902) operations that turn ``vs`` into ``set_weights(vs, ref, weights)``.

    One operation per destination, stable first: ``replace`` where the destination has a
    ``weight`` key, ``add`` where it has none (``replace`` of a missing member is an error).
    The caller adds a ``test`` of ``/metadata/resourceVersion`` so the patch applies only to
    the object these indices were computed from.
    """
    index, s, c = managed_destinations(vs, ref)
    entries = _route_entries(vs, index)
    ops: list[dict[str, Any]] = []
    for j, value in ((s, weights.stable), (c, weights.canary)):
        ops.append(
            {
                "op": "replace" if "weight" in entries[j] else "add",
                "path": f"/spec/http/{index}/route/{j}/weight",
                "value": int(value),
            }
        )
    return ops
