"""canary.core.routes: find the managed route, read and set its two weights (design §1, §2, §9).

Layers, as in the rest of the suite: named table rows for every function and every error
message; YAML fixture transforms (input + weights → only those weights changed); a hypothesis
property tying get_weights, set_weights and weight_patch together and checking every written
VirtualService against Istio's own CRD schema.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from canary.core.errors import ConfigError, RouteError
from canary.core.model import ALL_STABLE, Weights
from canary.core.names import normalise_host
from canary.core.plan import Destination, VirtualServiceRef
from canary.core.routes import (
    find_route,
    get_weights,
    managed_destinations,
    set_weights,
    weight_patch,
)
from tests.support.istio_schema import spec_validator as istio_spec_validator

FIXTURES = Path(__file__).parent / "fixtures" / "virtualservices"

V1 = Destination("reviews", "v1")
V2 = Destination("reviews", "v2")
V3 = Destination("reviews", "v3")
#: The bookinfo plan: reviews v1 is stable, v3 the canary.
REF = VirtualServiceRef(name="reviews", stable=V1, canary=V3)
TWO_SERVICES = replace(
    REF, stable=Destination("reviews-stable"), canary=Destination("reviews-canary")
)


def load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((FIXTURES / f"{name}.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def ref(route: str | int | None = None, **changes: Any) -> VirtualServiceRef:
    return replace(REF, route=route, **changes)


def vs_of(*http: Any, namespace: str | None = "bookinfo", **spec: Any) -> dict[str, Any]:
    """A minimal VirtualService named reviews with the given http routes."""
    meta: dict[str, Any] = {"name": "reviews"}
    if namespace is not None:
        meta["namespace"] = namespace
    body: dict[str, Any] = {"hosts": ["reviews"], **spec}
    if http:
        body["http"] = list(http)
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": meta,
        "spec": body,
    }


def dest(host: str, subset: str | None = None, weight: int | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"host": host}
    if subset is not None:
        d["subset"] = subset
    entry: dict[str, Any] = {"destination": d}
    if weight is not None:
        entry["weight"] = weight
    return entry


def split(stable: int | None = 100, canary: int | None = 0, **route: Any) -> dict[str, Any]:
    """An http route reviews/v1 (stable) + reviews/v3 (canary)."""
    return {**route, "route": [dest("reviews", "v1", stable), dest("reviews", "v3", canary)]}


# --- the schema ---------------------------------------------------------------------------


def spec_validator() -> jsonschema.protocols.Validator:
    """Validator for ``VirtualService.spec`` from Istio's CRD."""
    return istio_spec_validator("virtualservice_v1.json")


def assert_valid_istio(vs: Mapping[str, Any]) -> None:
    assert vs["apiVersion"] == "networking.istio.io/v1"
    assert vs["kind"] == "VirtualService"
    errors = sorted(spec_validator().iter_errors(vs["spec"]), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]
    # format int32, which JSON Schema does not check
    for http in vs["spec"].get("http", []):
        for entry in http.get("route", []):
            if "weight" in entry:
                assert 0 <= entry["weight"] < 2**31


def test_schema_rejects_what_istio_rejects() -> None:
    """The validator is not vacuous: a misspelt field and a string weight fail."""
    bad_field = vs_of(split(), timout="5s")
    bad_weight = vs_of(split(stable="100"))  # type: ignore[arg-type]
    assert list(spec_validator().iter_errors(bad_field["spec"]))
    assert list(spec_validator().iter_errors(bad_weight["spec"]))


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_fixture_is_a_valid_istio_virtualservice(path: Path) -> None:
    """Even the "bad" fixtures are valid Istio objects: they are wrong only for the plan."""
    assert_valid_istio(load(path.stem))


# --- host normalisation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "namespace", "expected"),
    [
        pytest.param("reviews", "bookinfo", "reviews.bookinfo.svc.cluster.local", id="short"),
        pytest.param("reviews.bookinfo", "bookinfo", "reviews.bookinfo.svc.cluster.local", id="ns"),
        pytest.param("reviews.other", "bookinfo", "reviews.other.svc.cluster.local", id="other-ns"),
        pytest.param(
            "reviews.bookinfo.svc", "bookinfo", "reviews.bookinfo.svc.cluster.local", id="svc"
        ),
        pytest.param(
            "reviews.bookinfo.svc.cluster.local",
            "other",
            "reviews.bookinfo.svc.cluster.local",
            id="fqdn-kept",
        ),
        pytest.param(
            "Reviews.Bookinfo.svc.cluster.local.",
            "bookinfo",
            "reviews.bookinfo.svc.cluster.local",
            id="case-and-trailing-dot",
        ),
        pytest.param("reviews", None, "reviews", id="short-without-namespace"),
        pytest.param("*", "bookinfo", "*", id="wildcard"),
        pytest.param("10.0.0.7", "bookinfo", "10.0.0.7", id="ipv4"),
        pytest.param("api.example.com", "bookinfo", "api.example.com", id="external"),
    ],
)
def test_normalise_host(host: str, namespace: str | None, expected: str) -> None:
    assert normalise_host(host, namespace) == expected


# --- finding the managed route ------------------------------------------------------------

VALID = [
    pytest.param("reviews-50-v3", REF, (0, 0, 1), id="50-v3-only-route"),
    pytest.param("reviews-50-v3", ref(0), (0, 0, 1), id="50-v3-index-0"),
    pytest.param("reviews-jason-header", ref("default"), (1, 0, 1), id="jason-by-name"),
    pytest.param("reviews-jason-header", ref(1), (1, 0, 1), id="jason-by-index"),
    pytest.param("reviews-jason-header-reordered", ref("default"), (0, 0, 1), id="reordered-name"),
    pytest.param("reviews-jason-header-reordered", ref(0), (0, 0, 1), id="reordered-index"),
    pytest.param("reviews-chart", ref("primary"), (0, 0, 1), id="chart-by-name"),
    pytest.param("reviews-chart", REF, (0, 0, 1), id="chart-only-route"),
    pytest.param("reviews-fqdn", REF, (0, 0, 1), id="fqdn-hosts-match-short"),
    pytest.param(
        "reviews-fqdn",
        ref(canary=Destination("reviews.bookinfo.svc.cluster.local", "v3")),
        (0, 0, 1),
        id="fqdn-plan-host",
    ),
    pytest.param("reviews-two-services", TWO_SERVICES, (0, 0, 1), id="no-subsets"),
    pytest.param("reviews-50-v3", ref(stable=V3, canary=V1), (0, 1, 0), id="canary-listed-first"),
    pytest.param("reviews-unnamed-routes", ref(1), (1, 0, 1), id="unnamed-by-index"),
    pytest.param("reviews-weights-not-100", REF, (0, 0, 1), id="bad-weights-still-found"),
]


@pytest.mark.parametrize(("fixture", "plan_ref", "expected"), VALID)
def test_managed_destinations(
    fixture: str, plan_ref: VirtualServiceRef, expected: tuple[int, int, int]
) -> None:
    assert managed_destinations(load(fixture), plan_ref) == expected


@pytest.mark.parametrize(("fixture", "plan_ref", "expected"), VALID)
def test_find_route(
    fixture: str, plan_ref: VirtualServiceRef, expected: tuple[int, int, int]
) -> None:
    assert find_route(load(fixture), plan_ref) == expected[0]


def test_subset_none_does_not_match_a_destination_with_subset() -> None:
    vs = vs_of({"route": [dest("reviews", "v1", 100), dest("reviews-canary", None, 0)]})
    canary = Destination("reviews-canary")
    assert managed_destinations(vs, ref(canary=canary)) == (0, 0, 1)
    with pytest.raises(RouteError, match="has no stable destination reviews "):
        managed_destinations(vs, ref(stable=Destination("reviews"), canary=canary))


def test_empty_subset_counts_as_no_subset() -> None:
    vs = vs_of(
        {
            "route": [
                {"destination": {"host": "reviews-stable", "subset": ""}, "weight": 100},
                dest("reviews-canary", None, 0),
            ]
        }
    )
    assert managed_destinations(vs, TWO_SERVICES) == (0, 0, 1)


def test_other_routes_and_destination_ports_do_not_matter() -> None:
    """Only the selected route is checked; ports are not part of the match."""
    vs = vs_of(
        {"name": "broken", "route": [dest("reviews", "v2")]},
        {
            "name": "main",
            "route": [
                {"destination": {"host": "reviews", "subset": "v1", "port": {"number": 9080}}},
                {"destination": {"host": "reviews", "subset": "v3", "port": {"number": 9080}}},
            ],
        },
    )
    assert managed_destinations(vs, ref("main")) == (1, 0, 1)


# --- every error message ------------------------------------------------------------------

ERR_VS = "VirtualService bookinfo/reviews"
EXPECTS = "the plan expects exactly two destinations, stable reviews/v1 and canary reviews/v3"

ERRORS = [
    pytest.param(
        load("reviews-tcp-only"),
        REF,
        f"{ERR_VS} has no spec.http routes; the plan needs an http route whose destinations are "
        "stable reviews/v1 and canary reviews/v3",
        id="no-spec-http",
    ),
    pytest.param(
        {"metadata": {"name": "reviews", "namespace": "bookinfo"}},
        REF,
        f"{ERR_VS} has no spec.http routes; the plan needs an http route whose destinations are "
        "stable reviews/v1 and canary reviews/v3",
        id="no-spec",
    ),
    pytest.param(
        vs_of(http=[]),
        REF,
        f"{ERR_VS} has no spec.http routes; the plan needs an http route whose destinations are "
        "stable reviews/v1 and canary reviews/v3",
        id="empty-spec-http",
    ),
    pytest.param(
        load("reviews-jason-header"),
        REF,
        f'{ERR_VS} has 2 http routes (http[0] "jason", http[1] "default"); set '
        "spec.virtualService.route in the plan to the name (preferred) or index of the route "
        "with stable reviews/v1 and canary reviews/v3; the plan's destinations are in "
        'http[1] "default": set spec.virtualService.route to "default"',
        id="several-routes-none-given",
    ),
    pytest.param(
        load("reviews-unnamed-routes"),
        REF,
        f"{ERR_VS} has 2 http routes (http[0], http[1]); set spec.virtualService.route in the "
        "plan to the name (preferred) or index of the route with stable reviews/v1 and canary "
        "reviews/v3; the plan's destinations are in http[1]: set spec.virtualService.route to 1",
        id="several-unnamed-routes-none-given",
    ),
    pytest.param(
        vs_of(split(name="a"), split(name="b")),
        REF,
        f'{ERR_VS} has 2 http routes (http[0] "a", http[1] "b"); set spec.virtualService.route '
        "in the plan to the name (preferred) or index of the route with stable reviews/v1 and "
        'canary reviews/v3; the plan\'s destinations are in http[0] "a", http[1] "b": set '
        "spec.virtualService.route to one of them",
        id="several-candidates",
    ),
    pytest.param(
        vs_of({"name": "jason", "route": [dest("reviews", "v2")]}, {"route": [dest("x")]}),
        REF,
        f'{ERR_VS} has 2 http routes (http[0] "jason", http[1]); set spec.virtualService.route '
        "in the plan to the name (preferred) or index of the route with stable reviews/v1 and "
        "canary reviews/v3",
        id="several-routes-no-candidate",
    ),
    pytest.param(
        load("reviews-jason-header"),
        ref("canary"),
        f'{ERR_VS} has no http route named "canary"; its route names are: "jason", "default"; '
        "fix spec.virtualService.route in the plan or the route name in the chart; the plan's "
        'destinations are in http[1] "default": set spec.virtualService.route to "default"',
        id="name-not-found",
    ),
    pytest.param(
        load("reviews-50-v3"),
        ref("primary"),
        f'{ERR_VS} has no http route named "primary"; its route names are: none (no http route '
        "has a name); fix spec.virtualService.route in the plan or the route name in the chart; "
        "the plan's destinations are in http[0]: set spec.virtualService.route to 0",
        id="name-not-found-unnamed",
    ),
    pytest.param(
        vs_of(split(name="primary"), split(name="primary")),
        ref("primary"),
        f'{ERR_VS} has 2 http routes named "primary" (http[0] "primary", http[1] "primary"); '
        "rename them so the managed route's name is unique",
        id="name-ambiguous",
    ),
    pytest.param(
        load("reviews-jason-header"),
        ref(2),
        f"{ERR_VS}: spec.virtualService.route is index 2, out of range: the VirtualService has "
        '2 http routes (http[0] "jason", http[1] "default"); set it to the name (preferred) or '
        "index of the route with stable reviews/v1 and canary reviews/v3; the plan's "
        'destinations are in http[1] "default": set spec.virtualService.route to "default"',
        id="index-out-of-range",
    ),
    pytest.param(
        load("reviews-chart"),
        ref(-1),
        f"{ERR_VS}: spec.virtualService.route is index -1, out of range: the VirtualService has "
        '1 http route (http[0] "primary"); set it to the name (preferred) or index of the route '
        "with stable reviews/v1 and canary reviews/v3; the plan's destinations are in "
        'http[0] "primary": set spec.virtualService.route to "primary"',
        id="index-negative",
    ),
    pytest.param(
        load("reviews-chart"),
        ref(True),
        "spec.virtualService.route must be a route name or an index, got True",
        id="index-bool",
    ),
    pytest.param(
        load("reviews-jason-header"),
        ref(0),
        f'{ERR_VS}: spec.virtualService.route is index 0, which selects http[0] "jason", and '
        f"that route has 1 destination (reviews/v2); {EXPECTS} (were the routes reordered?); "
        'the plan\'s destinations are in http[1] "default": set spec.virtualService.route to '
        '"default"',
        id="index-points-to-header-route",
    ),
    pytest.param(
        load("reviews-jason-header-reordered"),
        ref(1),
        f'{ERR_VS}: spec.virtualService.route is index 1, which selects http[1] "jason", and '
        f"that route has 1 destination (reviews/v2); {EXPECTS} (were the routes reordered?); "
        'the plan\'s destinations are in http[0] "default": set spec.virtualService.route to '
        '"default"',
        id="index-after-reorder",
    ),
    pytest.param(
        load("reviews-wrong-subset"),
        ref(0),
        f'{ERR_VS}: spec.virtualService.route is index 0, which selects http[0] "primary", and '
        "that route has no canary destination reviews/v3 (found reviews/v1, reviews/v2); "
        f"{EXPECTS} (were the routes reordered?)",
        id="index-wrong-destinations",
    ),
    pytest.param(
        load("reviews-jason-header-reordered"),
        ref("jason"),
        f'{ERR_VS}: http[1] "jason" has 1 destination (reviews/v2); {EXPECTS}; the plan\'s '
        'destinations are in http[0] "default": set spec.virtualService.route to "default"',
        id="named-route-wrong-destinations",
    ),
    pytest.param(
        load("reviews-three-destinations"),
        REF,
        f'{ERR_VS}: http[0] "primary" has 3 destinations (reviews/v1, reviews/v2, reviews/v3); '
        f"{EXPECTS}",
        id="three-destinations",
    ),
    pytest.param(
        load("reviews-wrong-subset"),
        REF,
        f'{ERR_VS}: http[0] "primary" has no canary destination reviews/v3 (found reviews/v1, '
        f"reviews/v2); {EXPECTS}",
        id="missing-canary",
    ),
    pytest.param(
        load("reviews-wrong-subset"),
        ref(stable=V3, canary=V2),
        f'{ERR_VS}: http[0] "primary" has no stable destination reviews/v3 (found reviews/v1, '
        "reviews/v2); the plan expects exactly two destinations, stable reviews/v3 and canary "
        "reviews/v2",
        id="missing-stable",
    ),
    pytest.param(
        load("reviews-other-namespace-host"),
        REF,
        f'{ERR_VS}: http[0] "primary" has neither the stable nor the canary destination (found '
        f"reviews.other.svc.cluster.local/v1, reviews.other/v3); {EXPECTS}",
        id="missing-both-other-namespace",
    ),
    pytest.param(
        vs_of({"name": "primary", "route": [dest("reviews", "v1"), dest("reviews", "v1")]}),
        REF,
        f'{ERR_VS}: http[0] "primary" has no canary destination reviews/v3 (found reviews/v1, '
        f"reviews/v1); {EXPECTS}",
        id="stable-twice",
    ),
    pytest.param(
        load("reviews-redirect"),
        REF,
        f'{ERR_VS}: http[0] "primary" has no destinations (it is a redirect); {EXPECTS}',
        id="redirect",
    ),
    pytest.param(
        vs_of({"name": "primary"}),
        REF,
        f'{ERR_VS}: http[0] "primary" has no destinations (no route list); {EXPECTS}',
        id="no-route-list",
    ),
    pytest.param(
        vs_of({"name": "primary", "route": "reviews"}),
        REF,
        f'{ERR_VS}: http[0] "primary".route is not a list',
        id="route-not-a-list",
    ),
    pytest.param(
        vs_of({"route": [dest("reviews", "v1"), {"weight": 0}]}),
        REF,
        f"{ERR_VS}: http[0].route[1] has no destination.host",
        id="destination-without-host",
    ),
    pytest.param(
        vs_of("reviews"),
        REF,
        f"{ERR_VS}: spec.http[0] is not an object",
        id="http-entry-not-an-object",
    ),
    pytest.param(
        load("reviews-50-v3"),
        ref(canary=Destination("reviews.bookinfo.svc.cluster.local", "v1")),
        "the plan's stable (reviews/v1) and canary (reviews.bookinfo.svc.cluster.local/v1) are "
        f"the same destination in {ERR_VS}; give them different subsets (or hosts)",
        id="stable-equals-canary",
    ),
    pytest.param(
        vs_of({"route": [dest("reviews", "v1"), dest("reviews.bookinfo", "v3")]}, namespace=None),
        REF,
        "VirtualService reviews: http[0] has no canary destination reviews/v3 (found "
        f"reviews/v1, reviews.bookinfo/v3); {EXPECTS}",
        id="no-namespace-short-names-stay-short",
    ),
]


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(find_route, id="find_route"),
        pytest.param(managed_destinations, id="managed_destinations"),
        pytest.param(get_weights, id="get_weights"),
        pytest.param(lambda vs, r: set_weights(vs, r, ALL_STABLE), id="set_weights"),
        pytest.param(lambda vs, r: weight_patch(vs, r, ALL_STABLE), id="weight_patch"),
    ],
)
@pytest.mark.parametrize(("vs", "plan_ref", "message"), ERRORS)
def test_route_errors(
    call: Callable[[Mapping[str, Any], VirtualServiceRef], object],
    vs: dict[str, Any],
    plan_ref: VirtualServiceRef,
    message: str,
) -> None:
    before = copy.deepcopy(vs)
    with pytest.raises(RouteError) as caught:
        call(vs, plan_ref)
    assert str(caught.value) == message
    assert isinstance(caught.value, ConfigError)  # a human fixes it; not retried
    assert vs == before


# --- reading weights ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vs", "plan_ref", "expected"),
    [
        pytest.param(load("reviews-50-v3"), REF, Weights(50, 50), id="50-v3"),
        pytest.param(load("reviews-jason-header"), ref("default"), ALL_STABLE, id="jason"),
        pytest.param(load("reviews-chart"), ref("primary"), ALL_STABLE, id="chart"),
        pytest.param(load("reviews-fqdn"), REF, Weights(90, 10), id="fqdn"),
        pytest.param(
            load("reviews-two-services"), TWO_SERVICES, ALL_STABLE, id="missing-canary-weight"
        ),
        pytest.param(
            load("reviews-50-v3"), ref(stable=V3, canary=V1), Weights(50, 50), id="swapped"
        ),
        pytest.param(vs_of(split(None, 100)), REF, Weights(0, 100), id="missing-stable-weight"),
        pytest.param(
            vs_of({"route": [dest("reviews", "v3", 25), dest("reviews", "v1", 75)]}),
            REF,
            Weights(75, 25),
            id="canary-first",
        ),
    ],
)
def test_get_weights(vs: dict[str, Any], plan_ref: VirtualServiceRef, expected: Weights) -> None:
    assert get_weights(vs, plan_ref) == expected


WEIGHT_ERRORS = [
    pytest.param(
        load("reviews-weights-not-100"),
        f'{ERR_VS}: http[0] "primary" weights sum to 90, not 100 (stable reviews/v1: 60, '
        "canary reviews/v3: 30; a missing weight counts as 0); make them sum to 100 (the chart "
        "renders stable 100 / canary 0)",
        id="sum-90",
    ),
    pytest.param(
        vs_of(split(None, None)),
        f"{ERR_VS}: http[0] weights sum to 0, not 100 (stable reviews/v1: 0, canary reviews/v3: "
        "0; a missing weight counts as 0); make them sum to 100 (the chart renders stable 100 / "
        "canary 0)",
        id="both-missing",
    ),
    pytest.param(
        vs_of(split(100, 100)),
        f"{ERR_VS}: http[0] weights sum to 200, not 100 (stable reviews/v1: 100, canary "
        "reviews/v3: 100; a missing weight counts as 0); make them sum to 100 (the chart renders "
        "stable 100 / canary 0)",
        id="sum-200",
    ),
    pytest.param(
        vs_of(split(110, -10)),
        f"{ERR_VS}: spec.http[0].route[1].weight is -10; it must be a non-negative integer",
        id="negative",
    ),
    pytest.param(
        vs_of(split("50", 50)),  # type: ignore[arg-type]
        f"{ERR_VS}: spec.http[0].route[0].weight is '50'; it must be a non-negative integer",
        id="string",
    ),
    pytest.param(
        vs_of(split(50.0, 50)),  # type: ignore[arg-type]
        f"{ERR_VS}: spec.http[0].route[0].weight is 50.0; it must be a non-negative integer",
        id="float",
    ),
    pytest.param(
        vs_of(split(True, 99)),
        f"{ERR_VS}: spec.http[0].route[0].weight is True; it must be a non-negative integer",
        id="bool",
    ),
]


@pytest.mark.parametrize(("vs", "message"), WEIGHT_ERRORS)
def test_get_weights_errors(vs: dict[str, Any], message: str) -> None:
    with pytest.raises(RouteError) as caught:
        get_weights(vs, REF)
    assert str(caught.value) == message


@pytest.mark.parametrize(("vs", "message"), WEIGHT_ERRORS)
def test_broken_live_weights_can_still_be_overwritten(vs: dict[str, Any], message: str) -> None:
    """Writing does not read the old weights: the controller can always send traffic home."""
    out = set_weights(vs, REF, ALL_STABLE)
    assert get_weights(out, REF) == ALL_STABLE
    assert apply_patch(vs, weight_patch(vs, REF, ALL_STABLE)) == out


# --- YAML fixture transforms --------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "plan_ref", "weights", "expected"),
    [
        pytest.param("reviews-50-v3", REF, ALL_STABLE, [100, 0], id="50-v3-to-stable"),
        pytest.param("reviews-50-v3", REF, Weights(90, 10), [90, 10], id="50-v3-to-10"),
        pytest.param(
            "reviews-50-v3", ref(stable=V3, canary=V1), Weights(90, 10), [10, 90], id="swapped"
        ),
        pytest.param("reviews-chart", ref("primary"), Weights(90, 10), [90, 10], id="chart-10"),
        pytest.param("reviews-chart", ref("primary"), Weights(0, 100), [0, 100], id="chart-100"),
        pytest.param("reviews-chart", ref("primary"), ALL_STABLE, [100, 0], id="chart-unchanged"),
        pytest.param(
            "reviews-jason-header", ref("default"), Weights(50, 50), [50, 50], id="jason-name"
        ),
        pytest.param("reviews-jason-header", ref(1), Weights(0, 100), [0, 100], id="jason-index"),
        pytest.param("reviews-fqdn", REF, Weights(50, 50), [50, 50], id="fqdn"),
        pytest.param(
            "reviews-two-services", TWO_SERVICES, Weights(90, 10), [90, 10], id="add-weight"
        ),
        pytest.param("reviews-unnamed-routes", ref(1), Weights(90, 10), [90, 10], id="unnamed"),
        pytest.param("reviews-weights-not-100", REF, ALL_STABLE, [100, 0], id="repair"),
    ],
)
def test_set_weights_fixture(
    fixture: str, plan_ref: VirtualServiceRef, weights: Weights, expected: list[int]
) -> None:
    vs = load(fixture)
    out = set_weights(vs, plan_ref, weights)

    index = find_route(vs, plan_ref)
    want = load(fixture)
    for entry, weight in zip(want["spec"]["http"][index]["route"], expected, strict=True):
        entry["weight"] = weight
    assert out == want  # the two weights changed, nothing else
    assert vs == load(fixture)  # input untouched
    assert [type(e["weight"]) for e in out["spec"]["http"][index]["route"]] == [int, int]
    assert get_weights(out, plan_ref) == weights
    assert_valid_istio(out)


def test_set_weights_is_a_deep_copy() -> None:
    vs = load("reviews-chart")
    out = set_weights(vs, ref("primary"), Weights(90, 10))
    out["spec"]["http"][0]["retries"]["attempts"] = 9
    out["metadata"]["labels"]["x"] = "y"
    assert vs == load("reviews-chart")


def test_set_weights_writes_zero_explicitly() -> None:
    vs = vs_of({"route": [dest("reviews", "v1"), dest("reviews", "v3", 100)]})
    out = set_weights(vs, REF, ALL_STABLE)
    assert out["spec"]["http"][0]["route"] == [
        dest("reviews", "v1", 100),
        dest("reviews", "v3", 0),
    ]


def test_set_weights_accepts_any_mapping() -> None:
    from types import MappingProxyType

    vs = load("reviews-50-v3")
    out = set_weights(MappingProxyType(vs), REF, ALL_STABLE)
    assert isinstance(out, dict)
    assert get_weights(out, REF) == ALL_STABLE


# --- JSON Patch ---------------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    assert path.startswith("/")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def apply_patch(doc: Mapping[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """A tiny RFC 6902 applier (add, replace, remove, test), strict where the RFC is."""
    out: Any = copy.deepcopy(dict(doc))
    for op in ops:
        *parents, last = _pointer(op["path"])
        target = out
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            index = len(target) if last == "-" else int(last)
            if op["op"] == "add":
                assert 0 <= index <= len(target)
                target.insert(index, op["value"])
                continue
            assert 0 <= index < len(target), f"{op['path']}: no such element"
            key: int | str = index
        else:
            key = last
        holder: Any = target
        if op["op"] == "add":
            holder[key] = op["value"]
        elif op["op"] == "replace":
            assert not isinstance(target, dict) or key in target, f"{op['path']}: no such member"
            holder[key] = op["value"]
        elif op["op"] == "remove":
            del holder[key]
        elif op["op"] == "test":
            assert holder[key] == op["value"], f"{op['path']}: test failed"
        else:
            raise AssertionError(f"unsupported op {op['op']}")
    assert isinstance(out, dict)
    return out


def test_apply_patch_is_strict() -> None:
    with pytest.raises(AssertionError, match="no such member"):
        apply_patch({"a": {}}, [{"op": "replace", "path": "/a/b", "value": 1}])
    with pytest.raises(AssertionError, match="test failed"):
        apply_patch({"a": 1}, [{"op": "test", "path": "/a", "value": 2}])
    assert apply_patch({"a/b": [1]}, [{"op": "add", "path": "/a~1b/0", "value": 0}]) == {
        "a/b": [0, 1]
    }


@pytest.mark.parametrize(
    ("vs", "plan_ref", "weights", "expected"),
    [
        pytest.param(
            load("reviews-50-v3"),
            REF,
            Weights(90, 10),
            [
                {"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 90},
                {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 10},
            ],
            id="replace-both",
        ),
        pytest.param(
            load("reviews-jason-header"),
            ref("default"),
            ALL_STABLE,
            [
                {"op": "replace", "path": "/spec/http/1/route/0/weight", "value": 100},
                {"op": "replace", "path": "/spec/http/1/route/1/weight", "value": 0},
            ],
            id="second-route-unchanged-values",
        ),
        pytest.param(
            load("reviews-two-services"),
            TWO_SERVICES,
            Weights(50, 50),
            [
                {"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 50},
                {"op": "add", "path": "/spec/http/0/route/1/weight", "value": 50},
            ],
            id="add-missing-weight",
        ),
        pytest.param(
            load("reviews-50-v3"),
            ref(stable=V3, canary=V1),
            Weights(90, 10),
            [
                {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 90},
                {"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 10},
            ],
            id="stable-first",
        ),
        pytest.param(
            vs_of(split(None, None)),
            REF,
            Weights(0, 100),
            [
                {"op": "add", "path": "/spec/http/0/route/0/weight", "value": 0},
                {"op": "add", "path": "/spec/http/0/route/1/weight", "value": 100},
            ],
            id="add-both",
        ),
    ],
)
def test_weight_patch(
    vs: dict[str, Any],
    plan_ref: VirtualServiceRef,
    weights: Weights,
    expected: list[dict[str, Any]],
) -> None:
    ops = weight_patch(vs, plan_ref, weights)
    assert ops == expected
    assert apply_patch(vs, ops) == set_weights(vs, plan_ref, weights)
    json.dumps(ops)  # serialisable as the request body


def test_weight_patch_with_resource_version_precondition() -> None:
    """How the Kubernetes adapter will use it: a test op first, then the weights."""
    vs = load("reviews-chart")
    vs["metadata"]["resourceVersion"] = "4711"
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "4711"},
        *weight_patch(vs, ref("primary"), Weights(90, 10)),
    ]
    assert apply_patch(vs, ops) == set_weights(vs, ref("primary"), Weights(90, 10))


# --- properties ---------------------------------------------------------------------------

#: Every (fixture, plan) pair whose managed route is usable for writing.
WRITABLE = [
    ("reviews-50-v3", REF),
    ("reviews-50-v3", ref(stable=V3, canary=V1)),
    ("reviews-jason-header", ref("default")),
    ("reviews-jason-header", ref(1)),
    ("reviews-jason-header-reordered", ref("default")),
    ("reviews-chart", ref("primary")),
    ("reviews-fqdn", REF),
    ("reviews-two-services", TWO_SERVICES),
    ("reviews-unnamed-routes", ref(1)),
    ("reviews-weights-not-100", REF),
]

weights_strategy = st.integers(min_value=0, max_value=100).map(Weights.canary_at)


@settings(max_examples=300, deadline=None)
@given(case=st.sampled_from(WRITABLE), weights=weights_strategy, then=weights_strategy)
def test_weights_round_trip(
    case: tuple[str, VirtualServiceRef], weights: Weights, then: Weights
) -> None:
    fixture, plan_ref = case
    vs = load(fixture)
    out = set_weights(vs, plan_ref, weights)

    assert get_weights(out, plan_ref) == weights
    assert apply_patch(vs, weight_patch(vs, plan_ref, weights)) == out
    assert vs == load(fixture)
    assert_valid_istio(out)
    index, s, c = managed_destinations(out, plan_ref)
    managed = out["spec"]["http"][index]["route"]
    assert managed[s]["weight"] + managed[c]["weight"] == 100

    # a second write only touches the same two fields and is idempotent
    again = set_weights(out, plan_ref, then)
    assert apply_patch(out, weight_patch(out, plan_ref, then)) == again
    assert set_weights(again, plan_ref, then) == again
    assert set_weights(again, plan_ref, weights) == out
