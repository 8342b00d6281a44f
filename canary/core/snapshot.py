"""A plan's snapshot: the ``spec`` a rollout keeps in its state, every default filled in, read
back through the same validator as a plan file, and its hash (docs/design.md §3: "the plan is
snapshotted into state when a rollout starts; edits apply to the next rollout")."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from canary.core.durations import format_duration
from canary.core.errors import PlanError
from canary.core.fields import Doc
from canary.core.plan import API_VERSION, KIND, Destination, Metric, MetricType, Plan
from canary.core.spec import plan_from_document


def _destination_spec(destination: Destination) -> dict[str, Any]:
    out: dict[str, Any] = {"host": destination.host}
    if destination.subset is not None:
        out["subset"] = destination.subset
    return out


def _metric_spec(metric: Metric) -> dict[str, Any]:
    out: dict[str, Any] = {"name": metric.name, "type": metric.type.value}
    bounds = (
        ("max", metric.max),
        ("min", metric.min),
        ("maxAboveStable", metric.max_above_stable),
        ("maxRatioToStable", metric.max_ratio_to_stable),
    )
    out.update((key, float(value)) for key, value in bounds if value is not None)
    if metric.type is MetricType.LATENCY and metric.quantile is not None:
        out["quantile"] = float(metric.quantile)
    if metric.type is MetricType.CUSTOM:
        out["query"] = metric.query
    else:
        out["reporter"] = metric.reporter.value
    out["critical"] = metric.critical
    return out


def plan_to_spec(plan: Plan) -> dict[str, Any]:
    """The plan's ``spec`` as a JSON-able dict in the YAML schema, every default filled in.

    This is the snapshot a rollout keeps in its state; :func:`plan_from_spec` reads it back to
    an equal Plan.
    """
    vs = plan.virtual_service
    virtual_service: dict[str, Any] = {
        "name": vs.name,
        "stable": _destination_spec(vs.stable),
        "canary": _destination_spec(vs.canary),
    }
    if vs.route is not None:
        virtual_service["route"] = vs.route
    analysis = plan.analysis
    return {
        "release": {"name": plan.release.name, "namespace": plan.release.namespace},
        "virtualService": virtual_service,
        "workloads": {"stable": plan.workloads.stable, "canary": plan.workloads.canary},
        "steps": [{"weight": s.weight, "hold": format_duration(s.hold)} for s in plan.steps],
        "progressDeadline": format_duration(plan.progress_deadline),
        "finaliseTimeout": format_duration(plan.finalise_timeout),
        "analysis": {
            "interval": format_duration(analysis.interval),
            "window": format_duration(analysis.window),
            "settle": format_duration(analysis.settle),
            "minRequests": analysis.min_requests,
            "requiredPasses": analysis.required_passes,
            "failureLimit": analysis.failure_limit,
            "errorLimit": analysis.error_limit,
            "onError": analysis.on_error.value,
            "inconclusiveTimeout": format_duration(analysis.inconclusive_timeout),
            "onInconclusive": analysis.on_inconclusive.value,
            "metrics": [_metric_spec(m) for m in analysis.metrics],
        },
        "rollback": {
            "timeout": format_duration(plan.rollback.timeout),
            "retries": plan.rollback.retries,
        },
    }


def plan_from_spec(spec: Mapping[str, Any], name: str, namespace: str, *, source: str = "") -> Plan:
    """Parse a ``spec`` (e.g. a state snapshot) through the same validator as a plan file."""
    doc = Doc(source)
    document = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    plan = plan_from_document(doc, document)
    if plan is None:
        raise PlanError(doc.problems)
    return plan


@functools.lru_cache(maxsize=1024)
def plan_hash(plan: Plan) -> str:
    """First 16 hex digits of the sha256 of the plan's canonical spec JSON (sorted keys).
    Cached: every tick compares the running snapshot's hash with the configured plan's."""
    canonical = json.dumps(
        plan_to_spec(plan), sort_keys=True, separators=(",", ":"), allow_nan=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
