"""Plan loading and validation (docs/design.md §2): canary/plan.py."""

from __future__ import annotations

import copy
import json
import math
import os
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canary.core.conflicts import check_conflicts
from canary.core.durations import format_duration, parse_duration
from canary.core.errors import PlanError, Problem
from canary.core.plan import (
    DEFAULT_HOLD,
    DEFAULT_METRICS,
    Analysis,
    Destination,
    Metric,
    MetricType,
    OnTrouble,
    Plan,
    ReleaseRef,
    Reporter,
    RollbackPolicy,
    Step,
    VirtualServiceRef,
    WorkloadRefs,
)
from canary.core.snapshot import plan_from_spec, plan_hash, plan_to_spec
from canary.plans.files import MAX_INPUT_BYTES, load_plan_files, load_plan_text
from canary.plans.yamlload import MAX_DEPTH

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "plans"
BAD = FIXTURES / "bad"
GOOD = FIXTURES / "good"
CONFIG_PLANS = ROOT / "config" / "plans"


def render(problem: Problem) -> str:
    """A problem as the tests spell it: ``path: message (fix)``, without the source."""
    return str(Problem("", problem.path, problem.message, problem.fix))


def problems_of(text: str, source: str = "") -> list[str]:
    with pytest.raises(PlanError) as caught:
        load_plan_text(text, source)
    return [render(p) for p in caught.value.problems]


# --- the good example ------------------------------------------------------------------------


def test_good_fixture_loads_with_exact_values() -> None:
    plans = load_plan_files([GOOD / "shop.yaml"])
    source = str(GOOD / "shop.yaml")
    assert plans == [
        Plan(
            name="frontend",
            namespace="shop",
            release=ReleaseRef(name="shop-frontend", namespace="shop-releases"),
            virtual_service=VirtualServiceRef(
                name="frontend",
                stable=Destination("frontend", "stable"),
                canary=Destination("frontend", "canary"),
                route="primary",
            ),
            workloads=WorkloadRefs(stable="frontend-stable", canary="frontend-canary"),
            steps=(
                Step(5, DEFAULT_HOLD),
                Step(25, timedelta(minutes=5)),
                Step(60, timedelta(seconds=90)),
                Step(100, timedelta(0)),
            ),
            progress_deadline=timedelta(minutes=15),
            finalise_timeout=timedelta(minutes=20),
            analysis=Analysis(
                interval=timedelta(minutes=1),
                window=timedelta(minutes=2),
                settle=timedelta(0),
                min_requests=50,
                required_passes=3,
                failure_limit=1,
                error_limit=10,
                on_error=OnTrouble.ROLLBACK,
                inconclusive_timeout=timedelta(minutes=30),
                on_inconclusive=OnTrouble.ROLLBACK,
                metrics=(
                    Metric(
                        name="error-rate",
                        type=MetricType.ERROR_RATE,
                        max=0.02,
                        max_above_stable=0.01,
                        critical=True,
                    ),
                    Metric(
                        name="latency-p95",
                        type=MetricType.LATENCY,
                        quantile=0.95,
                        max=300.0,
                        min=1.0,
                        max_above_stable=50.0,
                        max_ratio_to_stable=1.2,
                        reporter=Reporter.SOURCE,
                    ),
                    Metric(
                        name="cart-errors",
                        type=MetricType.CUSTOM,
                        query='sum(rate(cart_errors_total{namespace="$namespace", '
                        'workload="$canary"}[$window]))',
                        max=0.5,
                        min=0.0,
                    ),
                ),
            ),
            rollback=RollbackPolicy(timeout=timedelta(minutes=10), retries=5),
            source=source,
        ),
        Plan(
            name="checkout",
            namespace="shop",
            release=ReleaseRef(name="checkout", namespace="shop"),
            virtual_service=VirtualServiceRef(
                name="checkout",
                stable=Destination("checkout-stable.shop.svc.cluster.local"),
                canary=Destination("checkout-canary.shop.svc.cluster.local"),
                route=0,
            ),
            workloads=WorkloadRefs(stable="checkout-stable", canary="checkout-canary"),
            source=source,
        ),
    ]


def test_defaults_are_filled_in() -> None:
    (plan,) = load_plan_files([GOOD / "shop.yaml"])[1:]
    assert [s.weight for s in plan.steps] == [10, 50, 100]
    assert {s.hold for s in plan.steps} == {timedelta(minutes=2)}
    assert plan.progress_deadline == plan.finalise_timeout == timedelta(minutes=10)
    assert plan.analysis == Analysis()
    assert plan.analysis.metrics == DEFAULT_METRICS
    assert plan.analysis.metrics[1].quantile == 0.99
    assert plan.rollback == RollbackPolicy(timeout=timedelta(minutes=5), retries=3)
    assert plan.key == "shop/checkout"


@pytest.mark.parametrize("name", ["reviews.yaml", "ratings.yaml"])
def test_example_plans_in_config_load(name: str) -> None:
    (plan,) = load_plan_files([CONFIG_PLANS / name])
    assert plan.namespace == "bookinfo"
    assert plan.source == str(CONFIG_PLANS / name)


def test_example_plans_load_together_with_exact_values() -> None:
    ratings, reviews = load_plan_files([CONFIG_PLANS])
    assert load_plan_files(str(CONFIG_PLANS)) == [ratings, reviews]  # one path, not a list
    assert reviews.key == "bookinfo/reviews"
    assert reviews.release == ReleaseRef("reviews", "bookinfo")
    assert reviews.virtual_service == VirtualServiceRef(
        name="reviews", stable=Destination("reviews", "v1"), canary=Destination("reviews", "v3")
    )
    assert reviews.workloads == WorkloadRefs("reviews-v1", "reviews-v3")
    assert reviews.steps == tuple(Step(w, timedelta(minutes=2)) for w in (10, 50, 100))
    assert reviews.analysis.metrics == DEFAULT_METRICS
    assert ratings.key == "bookinfo/ratings"
    assert [(s.weight, s.hold) for s in ratings.steps] == [
        (5, timedelta(minutes=5)),
        (25, timedelta(minutes=5)),
        (100, timedelta(minutes=10)),
    ]
    assert [m.reporter for m in ratings.analysis.metrics[:2]] == [Reporter.SOURCE] * 2
    restarts = ratings.analysis.metrics[2]
    assert restarts.type is MetricType.CUSTOM
    assert restarts.critical is True
    assert restarts.max == 0.0
    assert restarts.query is not None
    assert "$canary" in restarts.query


# --- malformed plans, inline -----------------------------------------------------------------


def base_plan() -> dict[str, Any]:
    return {
        "apiVersion": "canary.dev/v1",
        "kind": "RolloutPlan",
        "metadata": {"name": "reviews", "namespace": "bookinfo"},
        "spec": {
            "release": "reviews",
            "virtualService": {
                "name": "reviews",
                "stable": {"host": "reviews", "subset": "v1"},
                "canary": {"host": "reviews", "subset": "v3"},
            },
            "workloads": {"stable": "reviews-v1", "canary": "reviews-v3"},
        },
    }


def with_(changes: dict[str, Any], *, drop: tuple[str, ...] = ()) -> str:
    """The base plan as YAML with dotted-path keys set (and some dropped)."""
    plan = base_plan()
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = plan
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    for dotted in drop:
        *parents, last = dotted.split(".")
        node = plan
        for part in parents:
            node = node[part]
        del node[last]
    return yaml.safe_dump(plan, sort_keys=False)


WEIGHT_FIX = "a weight is the canary's per cent of traffic: a whole number from 1 to 100"
NAME_FIX = 'use lower-case letters, digits, "-" and ".", starting and ending with a letter or digit'
ALIAS = (
    "anchors and aliases (&name, *name) are not allowed (write the values out in full: "
    "aliases can expand a small file into gigabytes)"
)

INLINE_CASES: list[tuple[str, str, list[str]]] = [
    (
        "unknown-key-with-suggestion",
        with_({"spec.analysis": {"failurLimit": 3}}),
        ["spec.analysis.failurLimit: unknown key (did you mean failureLimit?)"],
    ),
    (
        "unknown-key-snake-case",
        with_({"spec.rollback": {"retries": 2, "time_out": "1m"}}),
        ["spec.rollback.time_out: unknown key (did you mean timeout?)"],
    ),
    (
        "unknown-key-without-suggestion",
        with_({"spec.workloads.zzz": 1}),
        ["spec.workloads.zzz: unknown key (known keys here: stable, canary)"],
    ),
    (
        "bad-weight-order",
        with_({"spec.steps": [10, 50, 40, 100]}),
        [
            "spec.steps[2].weight: 40 is not greater than the previous step (50) "
            "(weights must increase from step to step, e.g. [10, 50, 100])"
        ],
    ),
    (
        "equal-weights",
        with_({"spec.steps": [10, {"weight": 10, "hold": "1m"}, 100]}),
        [
            "spec.steps[1].weight: 10 is not greater than the previous step (10) "
            "(weights must increase from step to step, e.g. [10, 50, 100])"
        ],
    ),
    (
        "last-step-not-100",
        with_({"spec.steps": [{"weight": 10}, {"weight": 60}]}),
        [
            "spec.steps[1].weight: the last step is 60, not 100 "
            "(end with a step of 100: the canary carries all traffic before it is promoted)"
        ],
    ),
    (
        "weight-out-of-range",
        with_({"spec.steps": [10, 150]}),
        [f"spec.steps[1].weight: 150 is not between 1 and 100 ({WEIGHT_FIX})"],
    ),
    (
        "weight-with-percent-sign",
        with_({"spec.steps": ["50%", 100]}),
        [
            'spec.steps[0]: expected a weight or a mapping {weight, hold}, got the string "50%" '
            "(write 50, without %)"
        ],
    ),
    (
        "weight-boolean",
        with_({"spec.steps": [{"weight": True}, 100]}),
        [f"spec.steps[0].weight: expected a weight, got the boolean true ({WEIGHT_FIX})"],
    ),
    (
        "empty-steps",
        with_({"spec.steps": []}),
        [
            "spec.steps: empty list (give at least one step, ending at 100, or remove steps for "
            "the default [10, 50, 100])"
        ],
    ),
    (
        "bare-number-duration",
        with_({"spec.progressDeadline": 30}),
        ['spec.progressDeadline: 30 is a bare number, not a duration (write "30s")'],
    ),
    (
        "bare-number-duration-quoted",
        with_({"spec.analysis": {"settle": "0"}}),
        ['spec.analysis.settle: 0 is a bare number, not a duration (write "0s")'],
    ),
    (
        "zero-duration",
        with_({"spec.analysis": {"interval": "0s"}}),
        ['spec.analysis.interval: "0s" must be greater than zero (e.g. "30s", the default)'],
    ),
    (
        "unknown-duration-unit",
        with_({"spec.rollback": {"timeout": "5 minutes"}}),
        [
            'spec.rollback.timeout: "5 minutes" has an unknown unit " minutes" (write a number '
            'and a unit, one of ms, s, m, h: e.g. "30s", "2m" or "1m30s")'
        ],
    ),
    (
        "negative-duration",
        with_({"spec.steps": [{"weight": 100, "hold": "-1m"}]}),
        ['spec.steps[0].hold: "-1m" is negative (durations cannot be negative; write e.g. "30s")'],
    ),
    (
        "window-below-interval",
        with_({"spec.analysis": {"interval": "1m", "window": "45s"}}),
        [
            "spec.analysis.window: 45s is shorter than the interval (1m) "
            '(set window to at least the interval, e.g. window: "1m")'
        ],
    ),
    (
        "default-window-below-interval",
        with_({"spec.analysis": {"interval": "2m"}}),
        [
            "spec.analysis.window: 1m (the default) is shorter than the interval (2m) "
            '(set window to at least the interval, e.g. window: "2m")'
        ],
    ),
    (
        "invalid-k8s-name",
        with_({"spec.workloads.stable": "Reviews_V1"}),
        [
            'spec.workloads.stable: "Reviews_V1" is not a valid Kubernetes name (DNS-1123 '
            f'subdomain) ({NAME_FIX}, e.g. "reviews-v1")'
        ],
    ),
    (
        "namespace-with-dot",
        with_({"metadata.namespace": "book.info"}),
        [
            'metadata.namespace: "book.info" is not a valid DNS-1123 label (use lower-case '
            'letters, digits and "-", starting and ending with a letter or digit, '
            'e.g. "book-info")'
        ],
    ),
    (
        "release-name-too-long",
        with_({"spec.release": "r" * 54}),
        [
            f'spec.release: "{"r" * 54}" is 54 characters long; a Helm release name has at '
            "most 53 (shorten it)"
        ],
    ),
    (
        "name-not-a-string",
        with_({"spec.virtualService.stable.subset": 1}),
        [
            "spec.virtualService.stable.subset: expected a DNS-1123 label, got the number 1 "
            '(quote it: "1")'
        ],
    ),
    (
        "on-error-bad-value",
        with_({"spec.analysis": {"onError": "ignore"}}),
        [
            'spec.analysis.onError: "ignore" is not one of pause, rollback (pause: weights to '
            "stable and a human decides; rollback: weights to stable and helm rollback)"
        ],
    ),
    (
        "integer-as-boolean",
        with_({"spec.analysis": {"errorLimit": True}}),
        [
            "spec.analysis.errorLimit: expected a whole number, got the boolean true "
            "(write a whole number of at least 1, without quotes)"
        ],
    ),
    (
        "custom-without-query",
        with_({"spec.analysis": {"metrics": [{"name": "q", "type": "custom", "max": 3}]}}),
        [
            "spec.analysis.metrics[0].query: a custom metric needs a query (add query: a "
            "PromQL expression that yields one value; it may use $namespace, $canary, $stable, "
            "$window, $service)"
        ],
    ),
    (
        "query-on-istio-metric",
        with_(
            {
                "spec.analysis": {
                    "metrics": [
                        {"name": "e", "type": "istio-error-rate", "max": 0.1, "query": "up"}
                    ]
                }
            }
        ),
        [
            "spec.analysis.metrics[0].query: only custom metrics take a query, not "
            "istio-error-rate (remove query, or set type: custom)"
        ],
    ),
    (
        "quantile-on-error-rate",
        with_(
            {
                "spec.analysis": {
                    "metrics": [
                        {"name": "e", "type": "istio-error-rate", "max": 0.1, "quantile": 0.9}
                    ]
                }
            }
        ),
        [
            "spec.analysis.metrics[0].quantile: only istio-latency metrics take a quantile, "
            "not istio-error-rate (remove quantile)"
        ],
    ),
    (
        "quantile-out-of-range",
        with_(
            {
                "spec.analysis": {
                    "metrics": [{"name": "l", "type": "istio-latency", "max": 9, "quantile": 99}]
                }
            }
        ),
        [
            "spec.analysis.metrics[0].quantile: 99 is not strictly between 0 and 1 "
            "(e.g. 0.99 for the 99th percentile)"
        ],
    ),
    (
        "duplicate-metric-names",
        with_(
            {
                "spec.analysis": {
                    "metrics": [
                        {"name": "m", "type": "istio-error-rate", "max": 0.1},
                        {"name": "m", "type": "istio-latency", "max": 100},
                    ]
                }
            }
        ),
        [
            'spec.analysis.metrics[1].name: "m" is already the name of metrics[0] (give each '
            "metric its own name: logs and events name metrics by it)"
        ],
    ),
    (
        "metric-without-bound",
        with_({"spec.analysis": {"metrics": [{"name": "l", "type": "istio-latency"}]}}),
        [
            "spec.analysis.metrics[0]: has no bound (set at least one of max, min, "
            "maxAboveStable, maxRatioToStable)"
        ],
    ),
    (
        "error-rate-bound-not-a-fraction",
        with_(
            {"spec.analysis": {"metrics": [{"name": "e", "type": "istio-error-rate", "max": 5}]}}
        ),
        [
            "spec.analysis.metrics[0].max: 5 is not between 0 and 1 (an error rate is a "
            "fraction of requests: 1 % is 0.01)"
        ],
    ),
    (
        "min-not-below-max",
        with_(
            {
                "spec.analysis": {
                    "metrics": [{"name": "l", "type": "istio-latency", "min": 9, "max": 9}]
                }
            }
        ),
        [
            "spec.analysis.metrics[0].min: min 9 is not less than max 9 (min is the lowest "
            "acceptable value and max the highest)"
        ],
    ),
    (
        "infinite-bound",
        "apiVersion: canary.dev/v1\nkind: RolloutPlan\n"
        "metadata: {name: reviews, namespace: bookinfo}\n"
        "spec:\n  release: reviews\n  virtualService:\n    name: reviews\n"
        "    stable: {host: reviews, subset: v1}\n    canary: {host: reviews, subset: v3}\n"
        "  workloads: {stable: reviews-v1, canary: reviews-v3}\n"
        "  analysis:\n    metrics: [{name: l, type: istio-latency, max: .inf}]\n",
        ["spec.analysis.metrics[0].max: .inf is not a finite number (use a finite number)"],
    ),
    (
        "ratio-not-positive",
        with_(
            {
                "spec.analysis": {
                    "metrics": [{"name": "l", "type": "istio-latency", "maxRatioToStable": 0}]
                }
            }
        ),
        [
            "spec.analysis.metrics[0].maxRatioToStable: 0 is not greater than 0 (a ratio of "
            "1.5 lets the canary be 50 % above stable)"
        ],
    ),
    (
        "custom-metric-relative-bound-and-reporter",
        with_(
            {
                "spec.analysis": {
                    "metrics": [
                        {
                            "name": "q",
                            "type": "custom",
                            "query": "max(queue_depth)",
                            "maxAboveStable": 3,
                            "reporter": "source",
                        }
                    ]
                }
            }
        ),
        [
            "spec.analysis.metrics[0].maxAboveStable: a custom metric has no stable value to "
            "compare with (a custom query yields one value; use max/min)",
            "spec.analysis.metrics[0].reporter: a custom metric takes no reporter (the query "
            "selects its own series; remove reporter)",
        ],
    ),
    (
        "custom-query-unknown-variable",
        with_(
            {
                "spec.analysis": {
                    "metrics": [
                        {
                            "name": "q",
                            "type": "custom",
                            "query": 'sum(x{pod=~"$pod", ns="$namespace", a="$pod"}[$win])',
                            "max": 1,
                        }
                    ]
                }
            }
        ),
        [
            "spec.analysis.metrics[0].query: unknown variable $pod (the variables are "
            "$namespace, $canary, $stable, $window, $service)",
            "spec.analysis.metrics[0].query: unknown variable $win (the variables are "
            "$namespace, $canary, $stable, $window, $service)",
        ],
    ),
    (
        "custom-query-lone-dollar",
        with_(
            {
                "spec.analysis": {
                    "metrics": [
                        {
                            "name": "q",
                            "type": "custom",
                            "query": 'max(label_replace(up, "a", "$1", "b", "(.*)"))',
                            "max": 1,
                        }
                    ]
                }
            }
        ),
        [
            'spec.analysis.metrics[0].query: a lone $ at character 29 ($1", "b"...) '
            '(write $$ for a literal dollar sign (e.g. "$$1" in label_replace); the variables '
            "are $namespace, $canary, $stable, $window, $service)"
        ],
    ),
    (
        "metric-type-typo",
        with_({"spec.analysis": {"metrics": [{"name": "l", "type": "istio-latancy", "max": 1}]}}),
        [
            'spec.analysis.metrics[0].type: "istio-latancy" is not one of istio-error-rate, '
            "istio-latency, custom (did you mean istio-latency? istio-error-rate and "
            "istio-latency use Istio's metrics; custom runs your query)"
        ],
    ),
    (
        "bad-reporter-and-critical",
        with_(
            {
                "spec.analysis": {
                    "metrics": [
                        {
                            "name": "l",
                            "type": "istio-latency",
                            "max": 1,
                            "reporter": "client",
                            "critical": "yes please",
                        }
                    ]
                }
            }
        ),
        [
            'spec.analysis.metrics[0].reporter: "client" is not one of destination, source '
            "(destination: the canary's own sidecar reports; source: the callers' sidecars)",
            "spec.analysis.metrics[0].critical: expected true or false, got the string "
            '"yes please" (write true or false)',
        ],
    ),
    (
        "empty-metrics",
        with_({"spec.analysis": {"metrics": []}}),
        [
            "spec.analysis.metrics: empty list (list at least one metric, or remove metrics for "
            "the defaults (error-rate, latency-p99))"
        ],
    ),
    (
        "non-mapping-document",
        "- just\n- a list\n",
        [
            "(document 1): expected a RolloutPlan mapping, got a list (each YAML document is "
            "one plan: apiVersion: canary.dev/v1, kind: RolloutPlan, metadata, spec)"
        ],
    ),
    (
        "scalar-document",
        "hello\n",
        [
            '(document 1): expected a RolloutPlan mapping, got the string "hello" (each YAML '
            "document is one plan: apiVersion: canary.dev/v1, kind: RolloutPlan, metadata, spec)"
        ],
    ),
    (
        "aliases-rejected",
        "a: &x {host: reviews}\nb: *x\n",
        [f"line 1, column 4: {ALIAS}"],
    ),
    (
        "merge-key-is-an-unknown-key",
        with_({"spec.workloads": {"<<": {"stable": "a"}, "stable": "a", "canary": "b"}}),
        ["spec.workloads.<<: unknown key (known keys here: stable, canary)"],
    ),
    (
        "wrong-api-version",
        with_({"apiVersion": "canary.dev/v2"}),
        ['apiVersion: "canary.dev/v2" is not canary.dev/v1 (set apiVersion: canary.dev/v1)'],
    ),
    (
        "wrong-kind",
        with_({"kind": "Rollout"}),
        ['kind: "Rollout" is not RolloutPlan (set kind: RolloutPlan)'],
    ),
    (
        "stable-equals-canary-destination",
        with_({"spec.virtualService.canary": {"host": "reviews", "subset": "v1"}}),
        [
            "spec.virtualService.canary: reviews/v1 is the same destination as stable (stable "
            "and canary must be different destinations: give the canary its own subset, "
            "e.g. subset: v3, or its own host)"
        ],
    ),
    (
        "stable-equals-canary-destination-fqdn",
        with_(
            {
                "spec.virtualService.stable": {"host": "reviews"},
                "spec.virtualService.canary": {"host": "reviews.bookinfo.svc.cluster.local"},
            }
        ),
        [
            "spec.virtualService.canary: reviews.bookinfo.svc.cluster.local is the same "
            "destination as stable (stable and canary must be different destinations: give the "
            "canary its own subset, e.g. subset: v3, or its own host)"
        ],
    ),
    (
        "stable-equals-canary-workload",
        with_({"spec.workloads.canary": "reviews-v1"}),
        [
            'spec.workloads.canary: "reviews-v1" is the same Deployment as stable (the canary '
            "track needs its own Deployment, e.g. reviews-v3 beside reviews-v1)"
        ],
    ),
    (
        "bad-route",
        with_({"spec.virtualService.route": 1.5}),
        [
            "spec.virtualService.route: expected an http route name or index, got the number "
            "1.5 (give the route's name (preferred), e.g. route: default, or its index, "
            "e.g. route: 0)"
        ],
    ),
    (
        "missing-required-keys",
        with_({}, drop=("metadata.namespace", "spec.workloads", "spec.virtualService.name")),
        [
            "metadata.namespace: required key is missing (add namespace: where the release, "
            "VirtualService and Deployments live; a plan acts in one namespace and there is no "
            "default)",
            "spec.workloads: required key is missing (add workloads: {stable: <Deployment>, "
            "canary: <Deployment>})",
            "spec.virtualService.name: required key is missing (add name: the VirtualService "
            "that routes this service)",
        ],
    ),
    (
        "wrong-types",
        with_(
            {
                "spec.workloads": "reviews-v1",
                "spec.analysis": ["interval", "30s"],
                "spec.rollback": None,
            }
        ),
        [
            'spec.workloads: expected a mapping, got the string "reviews-v1" '
            "(e.g. workloads: {stable: reviews-v1, canary: reviews-v3})",
            "spec.analysis: expected a mapping, got a list "
            "(give its keys, or remove analysis for the defaults)",
            "spec.rollback: expected a mapping, got null "
            "(e.g. rollback: {timeout: 5m, retries: 3})",
        ],
    ),
    (
        "several-problems-all-reported",
        with_(
            {
                "metadata.name": "Reviews",
                "spec.steps": [10, 5, 90],
                "spec.analysis": {"interval": 30, "onInconclusive": "wait", "extra": 1},
                "spec.rollback": {"retries": 0},
            }
        ),
        [
            'metadata.name: "Reviews" is not a valid Kubernetes name (DNS-1123 subdomain) '
            f'({NAME_FIX}, e.g. "reviews")',
            "spec.steps[1].weight: 5 is not greater than the previous step (10) "
            "(weights must increase from step to step, e.g. [10, 50, 100])",
            "spec.steps[2].weight: the last step is 90, not 100 "
            "(end with a step of 100: the canary carries all traffic before it is promoted)",
            "spec.analysis.extra: unknown key (known keys here: interval, window, settle, "
            "minRequests, requiredPasses, failureLimit, errorLimit, onError, "
            "inconclusiveTimeout, onInconclusive, metrics)",
            'spec.analysis.interval: 30 is a bare number, not a duration (write "30s")',
            'spec.analysis.onInconclusive: "wait" is not one of pause, rollback (pause: weights '
            "to stable and a human decides; rollback: weights to stable and helm rollback)",
            "spec.rollback.retries: 0 is less than 1 (use a whole number of at least 1)",
        ],
    ),
    (
        "duplicate-key",
        "apiVersion: canary.dev/v1\napiVersion: canary.dev/v1\nkind: RolloutPlan\n",
        [
            "apiVersion: duplicate key (YAML keeps only the last value and drops the others; "
            "remove the extra ones)",
            "metadata: required key is missing (add metadata: {name: <plan name>, namespace: "
            "<namespace>})",
            "spec: required key is missing (add spec: with release, virtualService and workloads)",
        ],
    ),
    (
        "yaml-syntax-error",
        "apiVersion: canary.dev/v1\nkind: [RolloutPlan\n",
        [
            "line 3, column 1: invalid YAML: expected ',' or ']', but got '<stream end>' "
            "(while parsing a flow sequence) (check the indentation, quoting and colons here)"
        ],
    ),
    (
        "python-tag",
        "a: !!python/object/apply:os.system [echo]\n",
        [
            "line 1, column 4: invalid YAML: could not determine a constructor for the tag "
            "'tag:yaml.org,2002:python/object/apply:os.system' (remove the tag: plans use "
            "plain YAML values only)"
        ],
    ),
    (
        "key-is-a-list",
        "? [a, b]\n: c\n",
        [
            "line 1, column 3: invalid YAML: a mapping key is a list or a mapping (keys are "
            "plain names such as interval or metrics)"
        ],
    ),
    (
        "tab-indentation",
        "spec:\n\trelease: x\n",
        [
            "line 2, column 1: invalid YAML: found character '\\t' that cannot start any token "
            "(while scanning for the next token) (indent with spaces: YAML does not allow tabs)"
        ],
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [pytest.param(text, expected, id=case) for case, text, expected in INLINE_CASES],
)
def test_malformed_plan_reports_exactly(text: str, expected: list[str]) -> None:
    assert problems_of(text) == expected


def test_inline_cases_are_many_and_uniquely_named() -> None:
    names = [case for case, _, _ in INLINE_CASES]
    assert len(names) == len(set(names))
    assert len(names) >= 14


def test_problems_in_every_document_are_reported_at_once() -> None:
    text = (
        with_({"spec.steps": [50, 10]})
        + "---\n"
        + "[1, 2]\n"
        + "---\n"
        + "---\n"
        + with_({"metadata.name": "ratings", "spec.analysis": {"window": "1x"}})
    )
    assert problems_of(text, "plans.yaml") == [
        "(document 1) spec.steps[1].weight: 10 is not greater than the previous step (50) "
        "(weights must increase from step to step, e.g. [10, 50, 100])",
        "(document 1) spec.steps[1].weight: the last step is 10, not 100 "
        "(end with a step of 100: the canary carries all traffic before it is promoted)",
        "(document 2): expected a RolloutPlan mapping, got a list (each YAML document is one "
        "plan: apiVersion: canary.dev/v1, kind: RolloutPlan, metadata, spec)",
        '(document 4) spec.analysis.window: "1x" has an unknown unit "x" (write a number and a '
        'unit, one of ms, s, m, h: e.g. "30s", "2m" or "1m30s")',
    ]


def test_syntax_error_after_a_good_document_keeps_earlier_problems() -> None:
    text = with_({"kind": "Nope"}) + "---\nkey: [unclosed\n"
    problems = problems_of(text)
    assert problems[0] == '(document 1) kind: "Nope" is not RolloutPlan (set kind: RolloutPlan)'
    assert problems[1].startswith("line ")
    assert "invalid YAML" in problems[1]
    assert len(problems) == 2


def test_empty_and_null_documents_are_skipped() -> None:
    assert load_plan_text("") == []
    assert load_plan_text("# only a comment\n") == []
    assert load_plan_text("---\n---\n~\n---\n") == []
    (plan,) = load_plan_text("---\n" + with_({}) + "---\n")
    assert plan.key == "bookinfo/reviews"


def test_problem_source_and_plan_source() -> None:
    with pytest.raises(PlanError) as caught:
        load_plan_text(with_({"kind": "X"}), "cm/plans.yaml")
    assert [p.source for p in caught.value.problems] == ["cm/plans.yaml"]
    assert (
        str(caught.value) == 'cm/plans.yaml: kind: "X" is not RolloutPlan (set kind: RolloutPlan)'
    )
    (plan,) = load_plan_text(with_({}), "cm/plans.yaml")
    assert plan.source == "cm/plans.yaml"


def test_release_forms() -> None:
    (plan,) = load_plan_text(with_({"spec.release": {"name": "rev", "namespace": "helm"}}))
    assert plan.release == ReleaseRef("rev", "helm")
    (plan,) = load_plan_text(with_({"spec.release": {"name": "rev"}}))
    assert plan.release == ReleaseRef("rev", "bookinfo")
    assert problems_of(with_({"spec.release": 7})) == [
        "spec.release: expected a helm release name or a mapping {name, namespace}, got the "
        "number 7 (e.g. release: reviews)"
    ]


# --- malformed plan files (tests/fixtures/plans/bad, reused by the CLI tests) ----------------

BAD_FILES = sorted(BAD.glob("*.yaml"))


def expectations(path: Path) -> list[str]:
    """The ``# expect: ...`` lines at the top of a fixture file."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("# expect: "):
            break
        out.append(line.removeprefix("# expect: "))
    return out


def test_there_are_enough_bad_fixture_files() -> None:
    assert len(BAD_FILES) >= 12
    for path in BAD_FILES:
        assert expectations(path), f"{path.name} has no '# expect:' line"


@pytest.mark.parametrize("path", BAD_FILES, ids=[p.stem for p in BAD_FILES])
def test_bad_fixture_file(path: Path) -> None:
    with pytest.raises(PlanError) as caught:
        load_plan_files([path])
    problems = caught.value.problems
    assert [render(p) for p in problems] == expectations(path)
    assert {p.source for p in problems} == {str(path)}
    output = str(caught.value)
    for expected in expectations(path):
        assert expected in output


def test_all_bad_fixture_files_at_once_report_exactly_their_expectations() -> None:
    """What ``canary validate tests/fixtures/plans/bad/*.yaml`` sees: nothing more, nothing less."""
    with pytest.raises(PlanError) as caught:
        load_plan_files(BAD_FILES)
    got = [(p.source, render(p)) for p in caught.value.problems]
    # Conflicts come after the problems of all files, hence sorted.
    expected = [(str(path), line) for path in BAD_FILES for line in expectations(path)]
    assert sorted(got) == sorted(expected)


# --- YAML safety -----------------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_billion_laughs_is_rejected_promptly() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefghijklmnopqrstuvwxy", "bcdefghijklmnopqrstuvwxyz", strict=True):
        lines.append(f"{name}: &{name} [{','.join(['*' + prev] * 10)}]")
    started = time.perf_counter()
    problems = problems_of("\n".join(lines) + "\n")
    assert time.perf_counter() - started < 2
    assert problems == [f"line 1, column 4: {ALIAS}"]


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,
        "{a: " * 100_000 + "}" * 100_000,
        "a:\n" + "".join(" " * i + "- \n" for i in range(1, 1000)),
    ],
    ids=["flow-sequences", "flow-mappings", "block-sequences"],
)
def test_deep_nesting_is_rejected_promptly(text: str) -> None:
    started = time.perf_counter()
    problems = problems_of(text)
    assert time.perf_counter() - started < 2
    assert len(problems) == 1
    assert re.fullmatch(
        rf"line \d+, column \d+: nested deeper than {MAX_DEPTH} levels \(a plan nests about "
        r"five levels; this document is not a plan\)",
        problems[0],
    )


def test_input_larger_than_the_limit_is_rejected() -> None:
    text = "# " + "x" * MAX_INPUT_BYTES + "\n"
    assert problems_of(text) == [
        "(input): larger than 1048576 bytes (1 MiB) (a plan is a few KiB: split the file, or "
        "check that this is a plan file)"
    ]


def test_control_characters_are_a_problem() -> None:
    assert problems_of("a: \x00\n") == [
        "character 4: invalid YAML: character #x0000: special characters are not allowed "
        "(remove control characters; save the file as UTF-8 text)"
    ]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_arbitrary_text_never_raises_anything_but_plan_error(text: str) -> None:
    try:
        load_plan_text(text)
    except PlanError as err:
        assert err.problems


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional=dict.fromkeys(
            ("release", "virtualService", "workloads", "steps", "analysis", "rollback"),
            JSON_VALUES,
        ),
    )
)
def test_arbitrary_spec_never_raises_anything_but_plan_error(spec: dict[str, Any]) -> None:
    try:
        plan_from_spec(spec, "reviews", "bookinfo")
    except PlanError as err:
        assert err.problems


def leaf_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return [prefix]
    out = [prefix] if prefix else []
    for key, item in items:
        out.extend(leaf_paths(item, (*prefix, key)))
    return out


FULL_SPEC = plan_to_spec(load_plan_files([GOOD / "shop.yaml"])[0])


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(leaf_paths(FULL_SPEC)), JSON_VALUES)
def test_any_value_anywhere_in_a_valid_spec_is_a_problem_or_a_plan(
    where: tuple[Any, ...], value: Any
) -> None:
    spec = copy.deepcopy(FULL_SPEC)
    node = spec
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    try:
        plan_from_spec(spec, "frontend", "shop")
    except PlanError as err:
        assert err.problems
        assert all(p.path and p.message for p in err.problems)


def test_arbitrary_structure_in_known_places() -> None:
    spec = plan_to_spec(load_plan_text(with_({}))[0])
    for section in ("virtualService", "workloads", "analysis", "rollback"):
        for bad in (None, 1, "x", [], [1], {"x": 1}, True):
            broken = copy.deepcopy(spec)
            broken[section] = bad
            with pytest.raises(PlanError):
                plan_from_spec(broken, "reviews", "bookinfo")


# --- files and directories -------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_directory_reads_yaml_files_sorted_and_skips_the_rest(tmp_path: Path) -> None:
    write(
        tmp_path / "b.yml",
        with_(
            {
                "metadata.name": "b",
                "spec.virtualService.name": "vs-b",
                "spec.workloads": {"stable": "b1", "canary": "b2"},
            }
        ),
    )
    write(tmp_path / "a.yaml", with_({"metadata.name": "a"}))
    write(tmp_path / ".hidden.yaml", "not: a plan\n")
    write(tmp_path / "notes.txt", "not: a plan\n")
    write(tmp_path / "sub" / "c.yaml", "not: a plan\n")
    plans = load_plan_files([tmp_path])
    assert [p.name for p in plans] == ["a", "b"]
    assert plans[0].source == str(tmp_path / "a.yaml")


def test_configmap_mount_layout(tmp_path: Path) -> None:
    """A ConfigMap volume: keys are symlinks into ..data, which links to a timestamped dir."""
    stamp = tmp_path / "..2024_05_01_12_00_00.123456789"
    write(stamp / "reviews.yaml", with_({}))
    write(
        stamp / "ratings.yaml",
        with_(
            {
                "metadata.name": "ratings",
                "spec.virtualService.name": "ratings",
                "spec.workloads": {"stable": "ratings-v1", "canary": "ratings-v2"},
            }
        ),
    )
    os.symlink(stamp.name, tmp_path / "..data")
    for key in ("reviews.yaml", "ratings.yaml"):
        os.symlink(f"..data/{key}", tmp_path / key)
    plans = load_plan_files([str(tmp_path)])
    assert [p.key for p in plans] == ["bookinfo/ratings", "bookinfo/reviews"]
    assert [p.source for p in plans] == [
        os.path.join(str(tmp_path), "ratings.yaml"),
        os.path.join(str(tmp_path), "reviews.yaml"),
    ]


def test_problems_from_all_files_and_conflicts_in_one_error(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", with_({}))
    b = write(tmp_path / "b.yaml", with_({"metadata.name": "reviews-2"}))
    c = write(tmp_path / "c.yaml", with_({"spec.steps": [100, 50]}))
    missing = tmp_path / "missing.yaml"
    with pytest.raises(PlanError) as caught:
        load_plan_files([a, b, c, missing])
    got = [(p.source, render(p)) for p in caught.value.problems]
    assert got == [
        (
            str(c),
            "spec.steps[1].weight: 50 is not greater than the previous step (100) "
            "(weights must increase from step to step, e.g. [10, 50, 100])",
        ),
        (
            str(c),
            "spec.steps[1].weight: the last step is 50, not 100 "
            "(end with a step of 100: the canary carries all traffic before it is promoted)",
        ),
        (
            str(missing),
            "(file): cannot read: No such file or directory (check the path and its permissions)",
        ),
        (
            str(b),
            "spec.virtualService.name: plan bookinfo/reviews-2 manages VirtualService "
            f"bookinfo/reviews, already managed by plan bookinfo/reviews ({a}) (one plan per "
            "VirtualService: a rollout's state lives in one annotation on the VirtualService; "
            "merge the two plans or point this one at another VirtualService)",
        ),
        (
            str(b),
            "spec.workloads.stable: plan bookinfo/reviews-2 names Deployment "
            f"bookinfo/reviews-v1, already the stable workload of plan bookinfo/reviews ({a}) "
            "(a Deployment belongs to one plan: two plans would fight over its traffic and roll "
            "it back twice)",
        ),
        (
            str(b),
            "spec.workloads.canary: plan bookinfo/reviews-2 names Deployment "
            f"bookinfo/reviews-v3, already the canary workload of plan bookinfo/reviews ({a}) "
            "(a Deployment belongs to one plan: two plans would fight over its traffic and roll "
            "it back twice)",
        ),
    ]


def test_unreadable_and_undecodable_files(tmp_path: Path) -> None:
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"name: caf\xe9\n")
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (MAX_INPUT_BYTES + 1))
    with pytest.raises(PlanError) as caught:
        load_plan_files([latin, big])
    assert [(p.source, render(p)) for p in caught.value.problems] == [
        (str(latin), "(file): not UTF-8 text: byte 0xe9 at offset 9 (save the file as UTF-8)"),
        (
            str(big),
            "(file): larger than 1048576 bytes (1 MiB) (a plan is a few KiB: split the file, "
            "or check that this is a plan file)",
        ),
    ]


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + with_({}).encode())
    assert [p.key for p in load_plan_files([path])] == ["bookinfo/reviews"]


def test_empty_directory_has_no_plans(tmp_path: Path) -> None:
    assert load_plan_files([tmp_path]) == []


# --- conflicts -------------------------------------------------------------------------------


def make_plan(
    name: str, vs: str, stable: str, canary: str, *, ns: str = "bookinfo", source: str = ""
) -> Plan:
    return Plan(
        name=name,
        namespace=ns,
        release=ReleaseRef(name, ns),
        virtual_service=VirtualServiceRef(vs, Destination(vs, "a"), Destination(vs, "b")),
        workloads=WorkloadRefs(stable, canary),
        source=source,
    )


def test_check_conflicts() -> None:
    plans = [
        make_plan("a", "vs-a", "a1", "a2", source="one.yaml"),
        make_plan("a", "vs-x", "x1", "x2", source="two.yaml"),  # same key
        make_plan("b", "vs-a", "b1", "b2", source="two.yaml"),  # same VirtualService
        make_plan("c", "vs-c", "c1", "a1", source="two.yaml"),  # a's stable as canary
        make_plan("d", "vs-a", "a1", "a2", ns="other"),  # another namespace: fine
    ]
    assert [render(p) for p in check_conflicts(plans)] == [
        "metadata.name: plan bookinfo/a is defined twice (one.yaml) (give each plan its own "
        "name within its namespace, or remove the copy)",
        "spec.virtualService.name: plan bookinfo/b manages VirtualService bookinfo/vs-a, "
        "already managed by plan bookinfo/a (one.yaml) (one plan per VirtualService: a "
        "rollout's state lives in one annotation on the VirtualService; merge the two plans "
        "or point this one at another VirtualService)",
        "spec.workloads.canary: plan bookinfo/c names Deployment bookinfo/a1, already the "
        "stable workload of plan bookinfo/a (one.yaml) (a Deployment belongs to one plan: two "
        "plans would fight over its traffic and roll it back twice)",
    ]
    assert [p.source for p in check_conflicts(plans)] == ["two.yaml"] * 3
    assert check_conflicts([]) == []


def test_duplicate_plan_in_one_text_is_reported_once() -> None:
    assert problems_of(with_({}) + "---\n" + with_({})) == [
        "metadata.name: plan bookinfo/reviews is defined twice (give each plan its own name "
        "within its namespace, or remove the copy)"
    ]


# --- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("30s", timedelta(seconds=30)),
        ("2m", timedelta(minutes=2)),
        ("1m30s", timedelta(seconds=90)),
        ("1h", timedelta(hours=1)),
        ("1.5h", timedelta(minutes=90)),
        ("1h2m3s", timedelta(hours=1, minutes=2, seconds=3)),
        ("0s", timedelta(0)),
        (".5s", timedelta(milliseconds=500)),
        ("250us", timedelta(microseconds=250)),
        ("250µs", timedelta(microseconds=250)),
        ("2000ns", timedelta(microseconds=2)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("30", 'write "30s"'),
        ("0", 'write "0s"'),
        ("1.5", 'write "1.5s"'),
        ("-30s", "negative"),
        ("30sec", 'unknown unit "sec"'),
        ("1d", 'write e.g. "24h" for a day'),
        ("30S", 'unknown unit "S"'),
        ("", "empty"),
        ("s", "is not a duration"),
        ("1m30", "30 has no unit"),
        ("1ns", "finer than a microsecond"),
        (" 30s", "is not a duration"),
        ("+30s", "is not a duration"),
    ],
)
def test_parse_duration_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_duration(text)


@pytest.mark.parametrize(
    ("td", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=30), "30s"),
        (timedelta(minutes=2), "2m"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(hours=1), "1h"),
        (timedelta(hours=1, seconds=5), "1h5s"),
        (timedelta(days=2), "48h"),
        (timedelta(milliseconds=500), "500ms"),
        (timedelta(microseconds=1500), "1.5ms"),
        (timedelta(microseconds=7), "7µs"),
        (timedelta(seconds=1, milliseconds=250), "1.25s"),
    ],
)
def test_format_duration(td: timedelta, text: str) -> None:
    assert format_duration(td) == text


def test_format_duration_rejects_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        format_duration(timedelta(seconds=-1))


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10_000)))
def test_duration_round_trip(td: timedelta) -> None:
    assert parse_duration(format_duration(td)) == td


# --- spec snapshot, round trip, hash ---------------------------------------------------------

LABELS = st.text("abcz09-", max_size=8).map(lambda s: f"a{s}0" if s else "a")
SUBDOMAINS = st.lists(LABELS, min_size=1, max_size=3).map(".".join)
DURATIONS = st.one_of(
    st.integers(1, 7200).map(lambda s: timedelta(seconds=s)),
    st.integers(1, 10**10).map(lambda us: timedelta(microseconds=us)),
)
FINITE = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)
FRACTIONS = st.floats(min_value=0, max_value=1)
POSITIVE = st.floats(min_value=1e-6, max_value=1e6)


@st.composite
def metrics(draw: st.DrawFn, name: str) -> Metric:
    kind = draw(st.sampled_from(list(MetricType)))
    critical = draw(st.booleans())
    if kind is MetricType.CUSTOM:
        low = draw(st.none() | FINITE)
        high = draw(st.none() | FINITE.filter(lambda x: low is None or x > low))
        if low is None and high is None:
            high = 1.0
        query = draw(
            st.sampled_from(
                [
                    "up",
                    'sum(rate(x{namespace="$namespace",workload="$canary"}[$window]))',
                    'max(y{service="$service", stable="${stable}"}) / 2',
                    'label_replace(up, "a", "$$1", "b", "(.*)")',
                ]
            )
        )
        return Metric(name, kind, max=high, min=low, query=query, critical=critical)
    values = FRACTIONS if kind is MetricType.ERROR_RATE else st.floats(0, 1e6)
    low = draw(st.none() | values)
    high = draw(st.none() | values.filter(lambda x: low is None or x > low))
    above = draw(st.none() | values)
    ratio = draw(st.none() | POSITIVE)
    if low is None and high is None and above is None and ratio is None:
        high = 0.5
    quantile = None
    if kind is MetricType.LATENCY:
        quantile = draw(st.floats(0, 1, exclude_min=True, exclude_max=True))
    return Metric(
        name,
        kind,
        max=high,
        min=low,
        max_above_stable=above,
        max_ratio_to_stable=ratio,
        quantile=quantile,
        critical=critical,
        reporter=draw(st.sampled_from(list(Reporter))),
    )


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    namespace = draw(LABELS)
    weights = [*sorted(draw(st.sets(st.integers(1, 99), max_size=5))), 100]
    interval = draw(DURATIONS)
    names = draw(st.lists(LABELS, min_size=1, max_size=4, unique=True))
    stable_subset = draw(st.none() | LABELS)
    canary_subset = draw((st.none() | LABELS).filter(lambda s: s != stable_subset))
    host = draw(SUBDOMAINS)
    stable_workload = draw(SUBDOMAINS)
    return Plan(
        name=draw(SUBDOMAINS),
        namespace=namespace,
        release=ReleaseRef(draw(SUBDOMAINS.filter(lambda s: len(s) <= 53)), draw(LABELS)),
        virtual_service=VirtualServiceRef(
            name=draw(SUBDOMAINS),
            stable=Destination(host, stable_subset),
            canary=Destination(host, canary_subset),
            route=draw(
                st.none() | st.integers(0, 20) | st.text("ab-_. 0Z/é", min_size=1).filter(str.strip)
            ),
        ),
        workloads=WorkloadRefs(
            stable_workload, draw(SUBDOMAINS.filter(lambda s: s != stable_workload))
        ),
        steps=tuple(Step(w, draw(st.just(timedelta(0)) | DURATIONS)) for w in weights),
        progress_deadline=draw(DURATIONS),
        finalise_timeout=draw(DURATIONS),
        analysis=Analysis(
            interval=interval,
            window=interval + draw(st.just(timedelta(0)) | DURATIONS),
            settle=draw(st.just(timedelta(0)) | DURATIONS),
            min_requests=draw(st.integers(1, 10**6)),
            required_passes=draw(st.integers(1, 10)),
            failure_limit=draw(st.integers(1, 10)),
            error_limit=draw(st.integers(1, 10)),
            on_error=draw(st.sampled_from(list(OnTrouble))),
            inconclusive_timeout=draw(DURATIONS),
            on_inconclusive=draw(st.sampled_from(list(OnTrouble))),
            metrics=tuple(draw(metrics(name)) for name in names),
        ),
        rollback=RollbackPolicy(timeout=draw(DURATIONS), retries=draw(st.integers(1, 10))),
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans())
def test_spec_round_trip_is_exact(plan: Plan) -> None:
    spec = plan_to_spec(plan)
    # The snapshot survives JSON (how state stores it) and comes back equal.
    stored = json.loads(json.dumps(spec, allow_nan=False))
    assert plan_from_spec(stored, plan.name, plan.namespace) == plan
    # The same spec written as a YAML plan file loads to the same plan.
    document = {
        "apiVersion": "canary.dev/v1",
        "kind": "RolloutPlan",
        "metadata": {"name": plan.name, "namespace": plan.namespace},
        "spec": spec,
    }
    assert load_plan_text(yaml.safe_dump(document, allow_unicode=True)) == [plan]
    assert plan_to_spec(plan_from_spec(stored, plan.name, plan.namespace)) == spec
    assert plan_hash(plan_from_spec(stored, plan.name, plan.namespace)) == plan_hash(plan)


def test_spec_is_canonical_json_with_every_default() -> None:
    (plan,) = load_plan_text(with_({}))
    assert plan_to_spec(plan) == {
        "release": {"name": "reviews", "namespace": "bookinfo"},
        "virtualService": {
            "name": "reviews",
            "stable": {"host": "reviews", "subset": "v1"},
            "canary": {"host": "reviews", "subset": "v3"},
        },
        "workloads": {"stable": "reviews-v1", "canary": "reviews-v3"},
        "steps": [
            {"weight": 10, "hold": "2m"},
            {"weight": 50, "hold": "2m"},
            {"weight": 100, "hold": "2m"},
        ],
        "progressDeadline": "10m",
        "finaliseTimeout": "10m",
        "analysis": {
            "interval": "30s",
            "window": "1m",
            "settle": "30s",
            "minRequests": 20,
            "requiredPasses": 2,
            "failureLimit": 2,
            "errorLimit": 5,
            "onError": "pause",
            "inconclusiveTimeout": "10m",
            "onInconclusive": "pause",
            "metrics": [
                {
                    "name": "error-rate",
                    "type": "istio-error-rate",
                    "max": 0.01,
                    "maxAboveStable": 0.005,
                    "reporter": "destination",
                    "critical": False,
                },
                {
                    "name": "latency-p99",
                    "type": "istio-latency",
                    "max": 500.0,
                    "maxRatioToStable": 1.5,
                    "quantile": 0.99,
                    "reporter": "destination",
                    "critical": False,
                },
            ],
        },
        "rollback": {"timeout": "5m", "retries": 3},
    }


def test_plan_hash() -> None:
    (plan,) = load_plan_text(with_({}))
    digest = plan_hash(plan)
    assert re.fullmatch(r"[0-9a-f]{16}", digest)
    # Spelling does not matter, meaning does: defaults written out, 90s vs 1m30s, source.
    (same,) = load_plan_text(
        with_(
            {
                "spec.steps": [{"weight": 10, "hold": "120s"}, 50, 100],
                "spec.analysis": {"window": "60000ms"},
            }
        ),
        "elsewhere.yaml",
    )
    assert plan_hash(same) == digest
    (other,) = load_plan_text(with_({"spec.steps": [20, 50, 100]}))
    assert plan_hash(other) != digest
    # Stable across processes: a pinned value catches an accidental change of the canonical form.
    assert digest == "558122c69dd97bac"


def test_plan_from_spec_validates() -> None:
    (plan,) = load_plan_text(with_({}))
    spec = plan_to_spec(plan)
    spec["steps"][1]["weight"] = 5
    spec["analysis"]["bogus"] = 1
    with pytest.raises(PlanError) as caught:
        plan_from_spec(spec, "reviews", "bookinfo", source="state")
    assert [render(p) for p in caught.value.problems] == [
        "spec.steps[1].weight: 5 is not greater than the previous step (10) "
        "(weights must increase from step to step, e.g. [10, 50, 100])",
        "spec.analysis.bogus: unknown key (known keys here: interval, window, settle, "
        "minRequests, requiredPasses, failureLimit, errorLimit, onError, inconclusiveTimeout, "
        "onInconclusive, metrics)",
    ]
    assert {p.source for p in caught.value.problems} == {"state"}
    with pytest.raises(PlanError, match=r"metadata\.name"):
        plan_from_spec(plan_to_spec(plan), "Bad_Name", "bookinfo")


def test_spec_floats_are_finite_json() -> None:
    (plan,) = load_plan_files([GOOD / "shop.yaml"])[:1]
    text = json.dumps(plan_to_spec(plan), allow_nan=False)
    assert all(math.isfinite(m.max) for m in plan.analysis.metrics if m.max is not None)
    assert '"quantile": 0.95' in text
