"""A RolloutPlan document (already parsed from YAML or JSON) → a validated, frozen :class:`Plan`,
and back: every section of the schema with its field paths and fixes (docs/design.md §2), the
snapshot a rollout keeps in its state (:func:`plan_to_spec`, :func:`plan_from_spec`) and its hash.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta

from canary.core.durations import format_duration
from canary.core.errors import Problem
from canary.core.fields import (
    Doc,
    choice_value,
    duration_value,
    integer_value,
    join,
    known_fields,
    name_value,
    optional_value,
)
from canary.core.metricspec import metrics_value
from canary.core.names import LABEL, RELEASE, SUBDOMAIN, normalise_host
from canary.core.plan import (
    API_VERSION,
    DEFAULT_ERROR_LIMIT,
    DEFAULT_FAILURE_LIMIT,
    DEFAULT_FINALISE_TIMEOUT,
    DEFAULT_HOLD,
    DEFAULT_INCONCLUSIVE_TIMEOUT,
    DEFAULT_INTERVAL,
    DEFAULT_METRICS,
    DEFAULT_MIN_REQUESTS,
    DEFAULT_PROGRESS_DEADLINE,
    DEFAULT_REQUIRED_PASSES,
    DEFAULT_ROLLBACK_RETRIES,
    DEFAULT_ROLLBACK_TIMEOUT,
    DEFAULT_SETTLE,
    DEFAULT_STEPS,
    DEFAULT_WINDOW,
    KIND,
    Analysis,
    Destination,
    Metric,
    OnTrouble,
    Plan,
    ReleaseRef,
    RollbackPolicy,
    Step,
    VirtualServiceRef,
    WorkloadRefs,
)
from canary.core.wording import got, show

_TOP_KEYS = ("apiVersion", "kind", "metadata", "spec")


_METADATA_KEYS = ("name", "namespace")


_SPEC_KEYS = (
    "release",
    "virtualService",
    "workloads",
    "steps",
    "progressDeadline",
    "finaliseTimeout",
    "analysis",
    "rollback",
)


_RELEASE_KEYS = ("name", "namespace")


_VS_KEYS = ("name", "route", "stable", "canary")


_DEST_KEYS = ("host", "subset")


_WORKLOAD_KEYS = ("stable", "canary")


_STEP_KEYS = ("weight", "hold")


_ANALYSIS_KEYS = (
    "interval",
    "window",
    "settle",
    "minRequests",
    "requiredPasses",
    "failureLimit",
    "errorLimit",
    "onError",
    "inconclusiveTimeout",
    "onInconclusive",
    "metrics",
)


_ROLLBACK_KEYS = ("timeout", "retries")


_DEFAULT_PLAN_STEPS: tuple[Step, ...] = tuple(Step(w) for w in DEFAULT_STEPS)


def _release(doc: Doc, value: object, path: str, namespace: str | None) -> ReleaseRef | None:
    if isinstance(value, str):
        name = name_value(doc, value, path, RELEASE)
        if name is None or namespace is None:
            return None
        return ReleaseRef(name=name, namespace=namespace)
    fields = known_fields(
        doc,
        value,
        path,
        _RELEASE_KEYS,
        {"name": "add name: the helm release name"},
        what="a helm release name or a mapping {name, namespace}",
        fix="e.g. release: reviews",
    )
    if fields is None:
        return None
    name = (
        name_value(doc, fields["name"], join(path, "name"), RELEASE) if "name" in fields else None
    )
    release_ns = namespace
    if "namespace" in fields:
        release_ns = name_value(doc, fields["namespace"], join(path, "namespace"), LABEL)
    if name is None or release_ns is None:
        return None
    return ReleaseRef(name=name, namespace=release_ns)


def _destination(doc: Doc, value: object, path: str, track: str) -> Destination | None:
    fields = known_fields(
        doc,
        value,
        path,
        _DEST_KEYS,
        {"host": f"add host: the Service host of the {track} track, e.g. host: reviews"},
        what="a mapping {host, subset}",
        fix=f"e.g. {track}: {{host: reviews, subset: v1}}",
    )
    if fields is None:
        return None
    mark = doc.mark()
    host = (
        name_value(doc, fields["host"], join(path, "host"), SUBDOMAIN) if "host" in fields else None
    )
    subset = None
    if "subset" in fields:
        subset = name_value(doc, fields["subset"], join(path, "subset"), LABEL)
    if host is None or doc.since(mark):
        return None
    return Destination(host=host, subset=subset)


def _route(doc: Doc, value: object, path: str) -> str | int | None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        doc.add(
            path,
            f"expected an http route name or index, got {got(value)}",
            "give the route's name (preferred), e.g. route: default, or its index, e.g. route: 0",
        )
        return None
    if isinstance(value, int):
        if value < 0:
            doc.add(path, f"{value} is negative", "route indexes count the http routes from 0")
            return None
        return value
    if not value.strip():
        doc.add(path, "empty route name", "give the http route's name, or omit route")
        return None
    return value


def _virtual_service(
    doc: Doc, value: object, path: str, namespace: str | None
) -> VirtualServiceRef | None:
    fields = known_fields(
        doc,
        value,
        path,
        _VS_KEYS,
        {
            "name": "add name: the VirtualService that routes this service",
            "stable": "add stable: {host: <service>, subset: <subset>}",
            "canary": "add canary: {host: <service>, subset: <subset>}",
        },
        fix="e.g. virtualService: {name: reviews, stable: {...}, canary: {...}}",
    )
    if fields is None:
        return None
    mark = doc.mark()
    name = (
        name_value(doc, fields["name"], join(path, "name"), SUBDOMAIN) if "name" in fields else None
    )
    route = _route(doc, fields["route"], join(path, "route")) if "route" in fields else None
    stable = canary = None
    if "stable" in fields:
        stable = _destination(doc, fields["stable"], join(path, "stable"), "stable")
    if "canary" in fields:
        canary = _destination(doc, fields["canary"], join(path, "canary"), "canary")
    if stable is not None and canary is not None:
        ns = namespace or ""
        if (
            normalise_host(stable.host, ns) == normalise_host(canary.host, ns)
            and stable.subset == canary.subset
        ):
            doc.add(
                join(path, "canary"),
                f"{canary} is the same destination as stable",
                "stable and canary must be different destinations: give the canary its own "
                "subset, e.g. subset: v3, or its own host",
            )
    if name is None or stable is None or canary is None or doc.since(mark):
        return None
    return VirtualServiceRef(name=name, stable=stable, canary=canary, route=route)


def _workloads(doc: Doc, value: object, path: str) -> WorkloadRefs | None:
    fields = known_fields(
        doc,
        value,
        path,
        _WORKLOAD_KEYS,
        {
            "stable": "add stable: the stable track's Deployment, e.g. stable: reviews-v1",
            "canary": "add canary: the canary track's Deployment, e.g. canary: reviews-v3",
        },
        fix="e.g. workloads: {stable: reviews-v1, canary: reviews-v3}",
    )
    if fields is None:
        return None
    stable = canary = None
    if "stable" in fields:
        stable = name_value(doc, fields["stable"], join(path, "stable"), SUBDOMAIN)
    if "canary" in fields:
        canary = name_value(doc, fields["canary"], join(path, "canary"), SUBDOMAIN)
    if stable is None or canary is None:
        return None
    if stable == canary:
        doc.add(
            join(path, "canary"),
            f"{show(canary)} is the same Deployment as stable",
            "the canary track needs its own Deployment, e.g. reviews-v3 beside reviews-v1",
        )
        return None
    return WorkloadRefs(stable=stable, canary=canary)


_WEIGHT_FIX = "a weight is the canary's per cent of traffic: a whole number from 1 to 100"


def _weight(doc: Doc, value: object, path: str) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        fix = _WEIGHT_FIX
        if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*%\s*", value):
            fix = f"write {value.strip().rstrip('%').strip()}, without %"
        doc.add(path, f"expected a weight, got {got(value)}", fix)
        return None
    if not 1 <= value <= 100:
        doc.add(path, f"{value} is not between 1 and 100", _WEIGHT_FIX)
        return None
    return value


def _steps(doc: Doc, value: object, path: str) -> tuple[Step, ...] | None:
    if not isinstance(value, list | tuple):
        doc.add(
            path,
            f"expected a list of steps, got {got(value)}",
            "e.g. steps: [10, 50, 100] or steps: [{weight: 10, hold: 2m}, ...]",
        )
        return None
    if not value:
        doc.add(
            path,
            "empty list",
            "give at least one step, ending at 100, or remove steps for the default [10, 50, 100]",
        )
        return None
    mark = doc.mark()
    steps: list[Step] = []
    previous: int | None = None
    last: int | None = None
    for index, item in enumerate(value):
        item_path = f"{path}[{index}]"
        weight: int | None = None
        hold: timedelta | None = DEFAULT_HOLD
        if isinstance(item, int) and not isinstance(item, bool):
            weight = _weight(doc, item, f"{item_path}.weight")
        elif isinstance(item, Mapping):
            fields = known_fields(
                doc, item, item_path, _STEP_KEYS, {"weight": f"add weight: {_WEIGHT_FIX}"}
            )
            if fields is not None:
                if "weight" in fields:
                    weight = _weight(doc, fields["weight"], f"{item_path}.weight")
                if "hold" in fields:
                    hold = duration_value(
                        doc, fields["hold"], f"{item_path}.hold", DEFAULT_HOLD, allow_zero=True
                    )
        else:
            fix = "e.g. 10 or {weight: 10, hold: 2m}"
            if isinstance(item, str) and re.fullmatch(r"\s*\d+\s*%\s*", item):
                fix = f"write {item.strip().rstrip('%').strip()}, without %"
            doc.add(
                item_path,
                f"expected a weight or a mapping {{weight, hold}}, got {got(item)}",
                fix,
            )
        last = weight
        if weight is not None:
            if previous is not None and weight <= previous:
                doc.add(
                    f"{item_path}.weight",
                    f"{weight} is not greater than the previous step ({previous})",
                    "weights must increase from step to step, e.g. [10, 50, 100]",
                )
            previous = weight
        if weight is not None and hold is not None:
            steps.append(Step(weight=weight, hold=hold))
    if last is not None and last != 100:
        doc.add(
            f"{path}[{len(value) - 1}].weight",
            f"the last step is {last}, not 100",
            "end with a step of 100: the canary carries all traffic before it is promoted",
        )
    if doc.since(mark):
        return None
    return tuple(steps)


def _analysis(doc: Doc, value: object, path: str) -> Analysis | None:
    fields = known_fields(
        doc, value, path, _ANALYSIS_KEYS, fix="give its keys, or remove analysis for the defaults"
    )
    if fields is None:
        return None
    mark = doc.mark()

    def duration(key: str, default: timedelta, allow_zero: bool = False) -> timedelta | None:
        if key not in fields:
            return default
        return duration_value(doc, fields[key], join(path, key), default, allow_zero=allow_zero)

    def integer(key: str, default: int) -> int | None:
        if key not in fields:
            return default
        return integer_value(doc, fields[key], join(path, key), 1)

    def on_trouble(key: str) -> OnTrouble | None:
        if key not in fields:
            return OnTrouble.PAUSE
        return choice_value(
            doc,
            fields[key],
            join(path, key),
            OnTrouble,
            "pause: weights to stable and a human decides; rollback: weights to stable and "
            "helm rollback",
        )

    interval = duration("interval", DEFAULT_INTERVAL)
    window = duration("window", DEFAULT_WINDOW)
    settle = duration("settle", DEFAULT_SETTLE, allow_zero=True)
    min_requests = integer("minRequests", DEFAULT_MIN_REQUESTS)
    required_passes = integer("requiredPasses", DEFAULT_REQUIRED_PASSES)
    failure_limit = integer("failureLimit", DEFAULT_FAILURE_LIMIT)
    error_limit = integer("errorLimit", DEFAULT_ERROR_LIMIT)
    on_error = on_trouble("onError")
    inconclusive_timeout = duration("inconclusiveTimeout", DEFAULT_INCONCLUSIVE_TIMEOUT)
    on_inconclusive = on_trouble("onInconclusive")
    metrics: tuple[Metric, ...] | None = DEFAULT_METRICS
    if "metrics" in fields:
        metrics = metrics_value(doc, fields["metrics"], join(path, "metrics"))
    if interval is not None and window is not None and window < interval:
        given = "" if "window" in fields else " (the default)"
        doc.add(
            join(path, "window"),
            f"{format_duration(window)}{given} is shorter than the interval "
            f"({format_duration(interval)})",
            f'set window to at least the interval, e.g. window: "{format_duration(interval)}"',
        )
    if (
        interval is None
        or window is None
        or settle is None
        or min_requests is None
        or required_passes is None
        or failure_limit is None
        or error_limit is None
        or on_error is None
        or inconclusive_timeout is None
        or on_inconclusive is None
        or metrics is None
        or doc.since(mark)
    ):
        return None
    return Analysis(
        interval=interval,
        window=window,
        settle=settle,
        min_requests=min_requests,
        required_passes=required_passes,
        failure_limit=failure_limit,
        error_limit=error_limit,
        on_error=on_error,
        inconclusive_timeout=inconclusive_timeout,
        on_inconclusive=on_inconclusive,
        metrics=metrics,
    )


def _rollback(doc: Doc, value: object, path: str) -> RollbackPolicy | None:
    fields = known_fields(
        doc, value, path, _ROLLBACK_KEYS, fix="e.g. rollback: {timeout: 5m, retries: 3}"
    )
    if fields is None:
        return None
    timeout: timedelta | None = DEFAULT_ROLLBACK_TIMEOUT
    if "timeout" in fields:
        timeout = duration_value(
            doc, fields["timeout"], join(path, "timeout"), DEFAULT_ROLLBACK_TIMEOUT
        )
    retries: int | None = DEFAULT_ROLLBACK_RETRIES
    if "retries" in fields:
        retries = integer_value(doc, fields["retries"], join(path, "retries"), 1)
    if timeout is None or retries is None:
        return None
    return RollbackPolicy(timeout=timeout, retries=retries)


def plan_from_document(doc: Doc, data: object, number: int = 1) -> Plan | None:
    """Validate document ``number``; every problem goes to ``doc``; a Plan only if none."""
    if not isinstance(data, Mapping):
        doc.problems.append(
            Problem(
                doc.source,
                f"(document {number})",
                f"expected a RolloutPlan mapping, got {got(data)}",
                f"each YAML document is one plan: apiVersion: {API_VERSION}, kind: {KIND}, "
                "metadata, spec",
            )
        )
        return None
    top = known_fields(
        doc,
        data,
        "",
        _TOP_KEYS,
        {
            "apiVersion": f"add apiVersion: {API_VERSION}",
            "kind": f"add kind: {KIND}",
            "metadata": "add metadata: {name: <plan name>, namespace: <namespace>}",
            "spec": "add spec: with release, virtualService and workloads",
        },
    )
    if top is None:
        return None
    if "apiVersion" in top and top["apiVersion"] != API_VERSION:
        doc.add(
            "apiVersion",
            f"{show(top['apiVersion'])} is not {API_VERSION}",
            f"set apiVersion: {API_VERSION}",
        )
    if "kind" in top and top["kind"] != KIND:
        doc.add("kind", f"{show(top['kind'])} is not {KIND}", f"set kind: {KIND}")
    name = namespace = None
    if "metadata" in top:
        meta = known_fields(
            doc,
            top["metadata"],
            "metadata",
            _METADATA_KEYS,
            {
                "name": "add name: the plan's name, unique within its namespace",
                "namespace": "add namespace: where the release, VirtualService and Deployments "
                "live; a plan acts in one namespace and there is no default",
            },
            fix="e.g. metadata: {name: reviews, namespace: bookinfo}",
        )
        if meta is not None:
            if "name" in meta:
                name = name_value(doc, meta["name"], "metadata.name", SUBDOMAIN)
            if "namespace" in meta:
                namespace = name_value(doc, meta["namespace"], "metadata.namespace", LABEL)
    if "spec" not in top:
        return None
    spec = known_fields(
        doc,
        top["spec"],
        "spec",
        _SPEC_KEYS,
        {
            "release": "add release: the helm release name, e.g. release: reviews",
            "virtualService": "add virtualService: {name, stable, canary}",
            "workloads": "add workloads: {stable: <Deployment>, canary: <Deployment>}",
        },
        fix="the spec holds release, virtualService, workloads, steps, analysis, ...",
    )
    if spec is None:
        return None
    release = virtual_service = workloads = None
    if "release" in spec:
        release = _release(doc, spec["release"], "spec.release", namespace)
    if "virtualService" in spec:
        virtual_service = _virtual_service(
            doc, spec["virtualService"], "spec.virtualService", namespace
        )
    if "workloads" in spec:
        workloads = _workloads(doc, spec["workloads"], "spec.workloads")
    steps = optional_value(doc, spec, "steps", "spec", default=_DEFAULT_PLAN_STEPS, parse=_steps)
    progress_deadline: timedelta | None = DEFAULT_PROGRESS_DEADLINE
    if "progressDeadline" in spec:
        progress_deadline = duration_value(
            doc, spec["progressDeadline"], "spec.progressDeadline", DEFAULT_PROGRESS_DEADLINE
        )
    finalise_timeout: timedelta | None = DEFAULT_FINALISE_TIMEOUT
    if "finaliseTimeout" in spec:
        finalise_timeout = duration_value(
            doc, spec["finaliseTimeout"], "spec.finaliseTimeout", DEFAULT_FINALISE_TIMEOUT
        )
    analysis = optional_value(doc, spec, "analysis", "spec", default=Analysis(), parse=_analysis)
    rollback = optional_value(
        doc, spec, "rollback", "spec", default=RollbackPolicy(), parse=_rollback
    )
    if (
        name is None
        or namespace is None
        or release is None
        or virtual_service is None
        or workloads is None
        or steps is None
        or progress_deadline is None
        or finalise_timeout is None
        or analysis is None
        or rollback is None
        or doc.problems
    ):
        return None
    return Plan(
        name=name,
        namespace=namespace,
        release=release,
        virtual_service=virtual_service,
        workloads=workloads,
        steps=steps,
        progress_deadline=progress_deadline,
        finalise_timeout=finalise_timeout,
        analysis=analysis,
        rollback=rollback,
        source=doc.source,
    )
