"""Rollout plans: load and validate RolloutPlan YAML into frozen dataclasses (DESIGN §2).

A plan is loaded from YAML, validated in full, and frozen. Everything downstream (analysis,
decide, the adapters) receives these dataclasses and never the raw YAML, so a field that reaches
a PromQL selector or a helm argv has already been checked here. Every default is a named
constant with the reason for its value.
"""

from __future__ import annotations

import difflib
import enum
import functools
import hashlib
import json
import math
import os
import re
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from fractions import Fraction
from typing import Any, TypeVar

import yaml
from yaml.events import AliasEvent, MappingStartEvent, SequenceStartEvent
from yaml.nodes import MappingNode, Node, ScalarNode

from canary.errors import PlanError, Problem

API_VERSION = "canary.dev/v1"
KIND = "RolloutPlan"

# --- defaults (DESIGN §2: "defaults are the values shown") -------------------------------------

#: 10 % catches a bad canary while exposing few users; 50 % gives both tracks equal traffic to
#: compare; 100 % proves the canary alone carries the load before it is promoted.
DEFAULT_STEPS: tuple[int, ...] = (10, 50, 100)
#: Long enough for two 30 s checks to pass with room for one inconclusive check in between.
DEFAULT_HOLD = timedelta(minutes=2)
#: Typical time for new pods to pull an image and pass readiness; longer means something is wrong.
DEFAULT_PROGRESS_DEADLINE = timedelta(minutes=10)
#: Same reasoning as the progress deadline, applied to stable after CI promoted it.
DEFAULT_FINALISE_TIMEOUT = timedelta(minutes=10)
#: Two Prometheus scrapes at Istio's usual 15 s: each check sees fresh samples.
DEFAULT_INTERVAL = timedelta(seconds=30)
#: rate() needs at least two samples per series; a minute holds four at 15 s scrapes.
DEFAULT_WINDOW = timedelta(minutes=1)
#: Two scrapes after a weight write, so the first check sees traffic under the new weights.
DEFAULT_SETTLE = timedelta(seconds=30)
#: Below ~20 requests one error moves the error rate by 5 %: too noisy to judge.
DEFAULT_MIN_REQUESTS = 20
#: One good check can be luck; two in a row are a trend.
DEFAULT_REQUIRED_PASSES = 2
#: One bad check can be a blip (a cold cache); two in a row are a regression.
DEFAULT_FAILURE_LIMIT = 2
#: Five checks (2.5 min at the default interval) survives a Prometheus restart, not an outage.
DEFAULT_ERROR_LIMIT = 5
#: Ten minutes without enough traffic means the plan cannot judge this service at this hour.
DEFAULT_INCONCLUSIVE_TIMEOUT = timedelta(minutes=10)
#: Helm's own default --timeout for rollback is 5m0s.
DEFAULT_ROLLBACK_TIMEOUT = timedelta(minutes=5)
#: Three helm attempts ride out an API-server blip; more would hide a real failure.
DEFAULT_ROLLBACK_RETRIES = 3
#: Istio's sidecar on the canary itself sees every request that reached it.
DEFAULT_REPORTER = "destination"
#: The tail users feel; p50 hides regressions that hit one request in a hundred.
DEFAULT_LATENCY_QUANTILE = 0.99


class MetricType(enum.StrEnum):
    ERROR_RATE = "istio-error-rate"
    LATENCY = "istio-latency"
    CUSTOM = "custom"


class Reporter(enum.StrEnum):
    DESTINATION = "destination"
    SOURCE = "source"


class OnTrouble(enum.StrEnum):
    """What to do when checks cannot judge (errorLimit / inconclusiveTimeout reached)."""

    PAUSE = "pause"  # weights to stable, no helm: a human decides
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class Destination:
    host: str
    subset: str | None = None

    def __str__(self) -> str:
        return f"{self.host}/{self.subset}" if self.subset else self.host


@dataclass(frozen=True)
class VirtualServiceRef:
    name: str
    stable: Destination
    canary: Destination
    #: http route by name (str) or index (int); None: the VirtualService must have one http route.
    route: str | int | None = None


@dataclass(frozen=True)
class WorkloadRefs:
    stable: str
    canary: str


@dataclass(frozen=True)
class ReleaseRef:
    name: str
    namespace: str


@dataclass(frozen=True)
class Step:
    weight: int
    hold: timedelta = DEFAULT_HOLD


@dataclass(frozen=True)
class Metric:
    name: str
    type: MetricType
    max: float | None = None
    min: float | None = None
    max_above_stable: float | None = None
    max_ratio_to_stable: float | None = None
    quantile: float | None = None  # istio-latency only
    query: str | None = None  # custom only
    critical: bool = False
    reporter: Reporter = Reporter.DESTINATION

    @property
    def relative(self) -> bool:
        return self.max_above_stable is not None or self.max_ratio_to_stable is not None


DEFAULT_METRICS: tuple[Metric, ...] = (
    Metric(name="error-rate", type=MetricType.ERROR_RATE, max=0.01, max_above_stable=0.005),
    Metric(
        name="latency-p99",
        type=MetricType.LATENCY,
        quantile=DEFAULT_LATENCY_QUANTILE,
        max=500.0,
        max_ratio_to_stable=1.5,
    ),
)


@dataclass(frozen=True)
class Analysis:
    interval: timedelta = DEFAULT_INTERVAL
    window: timedelta = DEFAULT_WINDOW
    settle: timedelta = DEFAULT_SETTLE
    min_requests: int = DEFAULT_MIN_REQUESTS
    required_passes: int = DEFAULT_REQUIRED_PASSES
    failure_limit: int = DEFAULT_FAILURE_LIMIT
    error_limit: int = DEFAULT_ERROR_LIMIT
    on_error: OnTrouble = OnTrouble.PAUSE
    inconclusive_timeout: timedelta = DEFAULT_INCONCLUSIVE_TIMEOUT
    on_inconclusive: OnTrouble = OnTrouble.PAUSE
    metrics: tuple[Metric, ...] = DEFAULT_METRICS


@dataclass(frozen=True)
class RollbackPolicy:
    timeout: timedelta = DEFAULT_ROLLBACK_TIMEOUT
    retries: int = DEFAULT_ROLLBACK_RETRIES


@dataclass(frozen=True)
class Plan:
    name: str
    namespace: str
    release: ReleaseRef
    virtual_service: VirtualServiceRef
    workloads: WorkloadRefs
    steps: tuple[Step, ...] = tuple(Step(w) for w in DEFAULT_STEPS)
    progress_deadline: timedelta = DEFAULT_PROGRESS_DEADLINE
    finalise_timeout: timedelta = DEFAULT_FINALISE_TIMEOUT
    analysis: Analysis = field(default_factory=Analysis)
    rollback: RollbackPolicy = field(default_factory=RollbackPolicy)
    #: Where the plan came from (file path or ConfigMap key), for error messages.
    source: str = ""

    @property
    def key(self) -> str:
        """``namespace/name``: how CLI arguments, state and logs name a plan."""
        return f"{self.namespace}/{self.name}"


# =============================================================================================
# Loading and validation
# =============================================================================================

#: A plan is a few KiB. A MiB of YAML is a mistake or an attack, and PyYAML's pure-Python parser
#: needs about a second per MiB: refuse anything larger before parsing it.
MAX_INPUT_BYTES = 1024 * 1024
#: The schema nests five levels (spec.analysis.metrics[i].max). Fifty leaves ample room and stops
#: a "[[[[..." bomb long before the recursive composer reaches Python's recursion limit.
MAX_DEPTH = 50

#: Variables a custom query may use; the analysis substitutes them before querying.
QUERY_VARIABLES: tuple[str, ...] = ("namespace", "canary", "stable", "window", "service")

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
_BOUND_KEYS = ("max", "min", "maxAboveStable", "maxRatioToStable")
_RELATIVE_KEYS = ("maxAboveStable", "maxRatioToStable")
_METRIC_KEYS = ("name", "type", *_BOUND_KEYS, "quantile", "query", "critical", "reporter")
_ROLLBACK_KEYS = ("timeout", "retries")


_T = TypeVar("_T")
_Mark = Any  # yaml.error.Mark or its C twin; both have .line and .column
_E = TypeVar("_E", bound=enum.StrEnum)
_DEFAULT_PLAN_STEPS: tuple[Step, ...] = tuple(Step(w) for w in DEFAULT_STEPS)


# --- durations -------------------------------------------------------------------------------

#: Microseconds per unit; Go's units (time.ParseDuration). A timedelta holds microseconds.
_UNIT_US: dict[str, Fraction] = {
    "ns": Fraction(1, 1000),
    "us": Fraction(1),
    "µs": Fraction(1),  # U+00B5 MICRO SIGN, as Go prints it
    "μs": Fraction(1),  # U+03BC GREEK SMALL LETTER MU
    "ms": Fraction(1000),
    "s": Fraction(1_000_000),
    "m": Fraction(60_000_000),
    "h": Fraction(3_600_000_000),
}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_BARE_NUMBER = re.compile(_NUMBER)
_COMPONENT = re.compile(rf"({_NUMBER})([^\d.]*)")
_DURATION_FIX = 'write a number and a unit, one of ms, s, m, h: e.g. "30s", "2m" or "1m30s"'


class _DurationError(ValueError):
    def __init__(self, message: str, fix: str = _DURATION_FIX) -> None:
        self.message = message
        self.fix = fix
        super().__init__(f"{message} ({fix})")


def parse_duration(text: str) -> timedelta:
    """Parse a Go-style duration (``500ms``, ``30s``, ``2m``, ``1m30s``, ``1.5h``).

    Bare numbers, negative values, unknown units and values finer than a microsecond raise
    :class:`ValueError` whose text says how to write the value instead.
    """
    if not isinstance(text, str):
        raise _DurationError(f'expected a duration such as "30s", got {_got(text)}')
    if text == "":
        raise _DurationError("empty duration")
    if text.startswith("-"):
        raise _DurationError(
            f"{_show(text)} is negative", 'durations cannot be negative; write e.g. "30s"'
        )
    if _BARE_NUMBER.fullmatch(text):
        raise _DurationError(f"{text} is a bare number, not a duration", f'write "{text}s"')
    total = Fraction(0)
    pos = 0
    while pos < len(text):
        match = _COMPONENT.match(text, pos)
        if match is None:
            raise _DurationError(f"{_show(text)} is not a duration")
        number, unit = match.groups()
        if unit == "":
            raise _DurationError(f"{_show(text)} is not a duration: {number} has no unit")
        if unit not in _UNIT_US:
            fix = _DURATION_FIX
            if unit == "d":
                fix = 'the largest unit is h: write e.g. "24h" for a day'
            raise _DurationError(f"{_show(text)} has an unknown unit {_show(unit)}", fix)
        total += Fraction(number) * _UNIT_US[unit]
        pos = match.end()
    if total.denominator != 1:
        raise _DurationError(
            f"{_show(text)} is finer than a microsecond", "round it to whole microseconds"
        )
    try:
        return timedelta(microseconds=int(total))
    except OverflowError:
        raise _DurationError(f"{_show(text)} is too large", 'write e.g. "10m"') from None


def _fraction_text(value: int, unit: int) -> str:
    whole, part = divmod(value, unit)
    if part == 0:
        return str(whole)
    digits = str(part).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


def format_duration(td: timedelta) -> str:
    """Format a duration the way Go writes it, minus zero components: ``30s``, ``2m``, ``1m30s``.

    ``parse_duration(format_duration(td)) == td`` for every non-negative timedelta.
    """
    us = td // timedelta(microseconds=1)
    if us < 0:
        raise ValueError(f"negative duration {td!r} has no plan representation")
    if us == 0:
        return "0s"
    if us < 1000:
        return f"{us}µs"
    if us < 1_000_000:
        return f"{_fraction_text(us, 1000)}ms"
    hours, rest = divmod(us, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    out = ""
    if hours:
        out += f"{hours}h"
    if minutes:
        out += f"{minutes}m"
    if rest:
        out += f"{_fraction_text(rest, 1_000_000)}s"
    return out


# --- value display ---------------------------------------------------------------------------


def _show(value: object) -> str:
    """A value as the message quotes it: strings in double quotes, YAML spelling for the rest."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        shown = value if len(value) <= 80 else value[:77] + "..."
        return json.dumps(shown, ensure_ascii=False)
    return _got(value)


def _got(value: object) -> str:
    """What a wrong value is, for ``expected X, got Y`` messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {_show(value)}"
    if isinstance(value, int | float):
        return f"the number {_show(value)}"
    if isinstance(value, str):
        return f"the string {_show(value)}"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return f"a {type(value).__name__}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --- names -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _NameRule:
    pattern: re.Pattern[str]
    max_len: int
    what: str
    chars: str
    dots: bool


_LABEL_RE = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN_RE = rf"{_LABEL_RE}(\.{_LABEL_RE})*"
_SUBDOMAIN = _NameRule(
    re.compile(_SUBDOMAIN_RE),
    253,
    "Kubernetes name (DNS-1123 subdomain)",
    'lower-case letters, digits, "-" and "."',
    dots=True,
)
_LABEL = _NameRule(
    re.compile(_LABEL_RE), 63, "DNS-1123 label", 'lower-case letters, digits and "-"', dots=False
)
#: Helm's own rule (pkg/chartutil ValidateReleaseName): a DNS-1123 subdomain of at most 53
#: characters, so that generated resource names stay within Kubernetes' limits.
_RELEASE = _NameRule(
    re.compile(_SUBDOMAIN_RE),
    53,
    "Helm release name",
    'lower-case letters, digits, "-" and "."',
    dots=True,
)


def _suggest_name(text: str, rule: _NameRule) -> str | None:
    allowed = r"[^a-z0-9.-]" if rule.dots else r"[^a-z0-9-]"
    candidate = re.sub(allowed, "-", text.lower())
    candidate = re.sub(r"-{2,}", "-", candidate).strip("-.")[: rule.max_len].strip("-.")
    if candidate and candidate != text and rule.pattern.fullmatch(candidate):
        return candidate
    return None


# --- one document's problems -----------------------------------------------------------------


class _Doc:
    """Collects the problems of one document; ``prefix`` tells documents of a stream apart."""

    def __init__(self, source: str, prefix: str = "") -> None:
        self.source = source
        self.prefix = prefix
        self.problems: list[Problem] = []

    def add(self, path: str, message: str, fix: str = "") -> None:
        self.problems.append(Problem(self.source, self.prefix + path, message, fix))

    def mark(self) -> int:
        return len(self.problems)

    def since(self, mark: int) -> bool:
        """Whether a problem was added after ``mark``."""
        return len(self.problems) > mark


def _suggest_key(key: str, known: Sequence[str]) -> str:
    def norm(s: str) -> str:
        return s.replace("_", "").replace("-", "").lower()

    by_norm = {norm(k): k for k in known}
    if norm(key) in by_norm:
        return f"did you mean {by_norm[norm(key)]}?"
    close = difflib.get_close_matches(norm(key), list(by_norm), n=1, cutoff=0.6)
    if close:
        return f"did you mean {by_norm[close[0]]}?"
    return f"known keys here: {', '.join(known)}"


def _fields(
    doc: _Doc,
    value: object,
    path: str,
    known: Sequence[str],
    required: Mapping[str, str] | None = None,
    *,
    what: str = "a mapping",
    fix: str = "",
) -> dict[str, object] | None:
    """The known keys of a mapping; reports a non-mapping, unknown, duplicate and missing keys."""
    if not isinstance(value, Mapping):
        doc.add(path, f"expected {what}, got {_got(value)}", fix)
        return None
    duplicates = {_key_text(k) for k in getattr(value, "duplicates", ())}
    out: dict[str, object] = {}
    for key, item in value.items():
        text = _key_text(key)
        if not isinstance(key, str) or key not in known:
            doc.add(_join(path, text), "unknown key", _suggest_key(text, known))
            continue
        if text in duplicates:
            doc.add(
                _join(path, text),
                "duplicate key",
                "YAML keeps only the last value and drops the others; remove the extra ones",
            )
        out[key] = item
    for key, key_fix in (required or {}).items():
        if key not in value:
            doc.add(_join(path, key), "required key is missing", key_fix)
    return out


def _key_text(key: object) -> str:
    return key if isinstance(key, str) else _show(key)


def _string(doc: _Doc, value: object, path: str, what: str = "a string") -> str | None:
    if not isinstance(value, str):
        fix = f'quote it: "{_show(value)}"' if isinstance(value, int | float) else ""
        doc.add(path, f"expected {what}, got {_got(value)}", fix)
        return None
    if not value.strip():
        doc.add(path, "empty string", f"give {what}")
        return None
    return value


def _name(doc: _Doc, value: object, path: str, rule: _NameRule) -> str | None:
    text = _string(doc, value, path, f"a {rule.what}")
    if text is None:
        return None
    if len(text) > rule.max_len:
        doc.add(
            path,
            f"{_show(text)} is {len(text)} characters long; a {rule.what} has at most "
            f"{rule.max_len}",
            "shorten it",
        )
        return None
    if not rule.pattern.fullmatch(text):
        suggestion = _suggest_name(text, rule)
        example = f', e.g. "{suggestion}"' if suggestion else ""
        doc.add(
            path,
            f"{_show(text)} is not a valid {rule.what}",
            f"use {rule.chars}, starting and ending with a letter or digit{example}",
        )
        return None
    return text


def _integer(doc: _Doc, value: object, path: str, minimum: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        doc.add(
            path,
            f"expected a whole number, got {_got(value)}",
            f"write a whole number of at least {minimum}, without quotes",
        )
        return None
    if value < minimum:
        doc.add(
            path, f"{value} is less than {minimum}", f"use a whole number of at least {minimum}"
        )
        return None
    return value


def _number(doc: _Doc, value: object, path: str) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        doc.add(path, f"expected a number, got {_got(value)}", "write a plain number, e.g. 0.01")
        return None
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        doc.add(path, f"{_show(value)} is not a finite number", "use a finite number")
        return None
    return number


def _boolean(doc: _Doc, value: object, path: str) -> bool | None:
    if not isinstance(value, bool):
        doc.add(path, f"expected true or false, got {_got(value)}", "write true or false")
        return None
    return value


def _choice(doc: _Doc, value: object, path: str, choices: type[_E], meaning: str) -> _E | None:
    names = [c.value for c in choices]
    if not isinstance(value, str):
        doc.add(path, f"expected one of {', '.join(names)}, got {_got(value)}", meaning)
        return None
    try:
        return choices(value)
    except ValueError:
        close = difflib.get_close_matches(value.lower(), names, n=1, cutoff=0.6)
        fix = f"did you mean {close[0]}? " if close else ""
        doc.add(path, f"{_show(value)} is not one of {', '.join(names)}", fix + meaning)
        return None


def _duration(
    doc: _Doc, value: object, path: str, default: timedelta, *, allow_zero: bool = False
) -> timedelta | None:
    example = f'e.g. "{format_duration(default)}", the default' if default else 'e.g. "30s"'
    if isinstance(value, int | float) and not isinstance(value, bool):
        shown = _show(value)
        if value < 0:
            doc.add(path, f"{shown} is negative", f"durations cannot be negative; {example}")
        else:
            doc.add(path, f"{shown} is a bare number, not a duration", f'write "{shown}s"')
        return None
    if not isinstance(value, str):
        doc.add(path, f'expected a duration such as "30s", got {_got(value)}', _DURATION_FIX)
        return None
    try:
        td = parse_duration(value)
    except _DurationError as err:
        doc.add(path, err.message, err.fix)
        return None
    if td <= timedelta(0) and not allow_zero:
        doc.add(path, f"{_show(value)} must be greater than zero", example)
        return None
    return td


def _optional(
    doc: _Doc,
    fields: Mapping[str, object],
    key: str,
    path: str,
    *,
    default: _T,
    parse: Callable[[_Doc, object, str], _T | None],
) -> _T | None:
    """``parse(doc, value, path)`` when ``key`` is given, else ``default``."""
    if key not in fields:
        return default
    return parse(doc, fields[key], _join(path, key))


# --- sections --------------------------------------------------------------------------------


def _release(doc: _Doc, value: object, path: str, namespace: str | None) -> ReleaseRef | None:
    if isinstance(value, str):
        name = _name(doc, value, path, _RELEASE)
        if name is None or namespace is None:
            return None
        return ReleaseRef(name=name, namespace=namespace)
    fields = _fields(
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
    name = _name(doc, fields["name"], _join(path, "name"), _RELEASE) if "name" in fields else None
    release_ns = namespace
    if "namespace" in fields:
        release_ns = _name(doc, fields["namespace"], _join(path, "namespace"), _LABEL)
    if name is None or release_ns is None:
        return None
    return ReleaseRef(name=name, namespace=release_ns)


def _destination(doc: _Doc, value: object, path: str, track: str) -> Destination | None:
    fields = _fields(
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
    host = _name(doc, fields["host"], _join(path, "host"), _SUBDOMAIN) if "host" in fields else None
    subset = None
    if "subset" in fields:
        subset = _name(doc, fields["subset"], _join(path, "subset"), _LABEL)
    if host is None or doc.since(mark):
        return None
    return Destination(host=host, subset=subset)


def _fqdn(host: str, namespace: str) -> str:
    """Istio reads a short host name relative to the VirtualService's namespace."""
    return host if "." in host else f"{host}.{namespace}.svc.cluster.local"


def _route(doc: _Doc, value: object, path: str) -> str | int | None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        doc.add(
            path,
            f"expected an http route name or index, got {_got(value)}",
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
    doc: _Doc, value: object, path: str, namespace: str | None
) -> VirtualServiceRef | None:
    fields = _fields(
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
    name = _name(doc, fields["name"], _join(path, "name"), _SUBDOMAIN) if "name" in fields else None
    route = _route(doc, fields["route"], _join(path, "route")) if "route" in fields else None
    stable = canary = None
    if "stable" in fields:
        stable = _destination(doc, fields["stable"], _join(path, "stable"), "stable")
    if "canary" in fields:
        canary = _destination(doc, fields["canary"], _join(path, "canary"), "canary")
    if stable is not None and canary is not None:
        ns = namespace or ""
        if _fqdn(stable.host, ns) == _fqdn(canary.host, ns) and stable.subset == canary.subset:
            doc.add(
                _join(path, "canary"),
                f"{canary} is the same destination as stable",
                "stable and canary must be different destinations: give the canary its own "
                "subset, e.g. subset: v3, or its own host",
            )
    if name is None or stable is None or canary is None or doc.since(mark):
        return None
    return VirtualServiceRef(name=name, stable=stable, canary=canary, route=route)


def _workloads(doc: _Doc, value: object, path: str) -> WorkloadRefs | None:
    fields = _fields(
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
        stable = _name(doc, fields["stable"], _join(path, "stable"), _SUBDOMAIN)
    if "canary" in fields:
        canary = _name(doc, fields["canary"], _join(path, "canary"), _SUBDOMAIN)
    if stable is None or canary is None:
        return None
    if stable == canary:
        doc.add(
            _join(path, "canary"),
            f"{_show(canary)} is the same Deployment as stable",
            "the canary track needs its own Deployment, e.g. reviews-v3 beside reviews-v1",
        )
        return None
    return WorkloadRefs(stable=stable, canary=canary)


_WEIGHT_FIX = "a weight is the canary's per cent of traffic: a whole number from 1 to 100"


def _weight(doc: _Doc, value: object, path: str) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        fix = _WEIGHT_FIX
        if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*%\s*", value):
            fix = f"write {value.strip().rstrip('%').strip()}, without %"
        doc.add(path, f"expected a weight, got {_got(value)}", fix)
        return None
    if not 1 <= value <= 100:
        doc.add(path, f"{value} is not between 1 and 100", _WEIGHT_FIX)
        return None
    return value


def _steps(doc: _Doc, value: object, path: str) -> tuple[Step, ...] | None:
    if not isinstance(value, list | tuple):
        doc.add(
            path,
            f"expected a list of steps, got {_got(value)}",
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
            fields = _fields(
                doc, item, item_path, _STEP_KEYS, {"weight": f"add weight: {_WEIGHT_FIX}"}
            )
            if fields is not None:
                if "weight" in fields:
                    weight = _weight(doc, fields["weight"], f"{item_path}.weight")
                if "hold" in fields:
                    hold = _duration(
                        doc, fields["hold"], f"{item_path}.hold", DEFAULT_HOLD, allow_zero=True
                    )
        else:
            fix = "e.g. 10 or {weight: 10, hold: 2m}"
            if isinstance(item, str) and re.fullmatch(r"\s*\d+\s*%\s*", item):
                fix = f"write {item.strip().rstrip('%').strip()}, without %"
            doc.add(
                item_path,
                f"expected a weight or a mapping {{weight, hold}}, got {_got(item)}",
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


def _check_query(doc: _Doc, query: str, path: str) -> None:
    """The query is rendered with ``string.Template``: only known ``$name``/``${name}``, and
    ``$$`` for a literal dollar sign (a lone ``$``, e.g. ``"$1"`` in label_replace, would fail
    at render time)."""
    known = ", ".join(f"${v}" for v in QUERY_VARIABLES)
    reported: set[str] = set()
    for match in string.Template.pattern.finditer(query):
        name = match.group("named") or match.group("braced")
        if name is not None and name not in QUERY_VARIABLES and name not in reported:
            reported.add(name)
            doc.add(path, f"unknown variable ${name}", f"the variables are {known}")
        elif match.group("invalid") is not None:
            offset = match.start()
            doc.add(
                path,
                f"a lone $ at character {offset + 1} ({query[offset : offset + 8]}...)",
                f'write $$ for a literal dollar sign (e.g. "$$1" in label_replace); the '
                f"variables are {known}",
            )


def _metric(doc: _Doc, value: object, path: str) -> Metric | None:
    fields = _fields(
        doc,
        value,
        path,
        _METRIC_KEYS,
        {
            "name": "add name: a short DNS-1123 label, e.g. name: error-rate",
            "type": "add type: istio-error-rate, istio-latency or custom",
        },
        fix="e.g. {name: error-rate, type: istio-error-rate, max: 0.01}",
    )
    if fields is None:
        return None
    mark = doc.mark()
    name = _name(doc, fields["name"], _join(path, "name"), _LABEL) if "name" in fields else None
    mtype = None
    if "type" in fields:
        mtype = _choice(
            doc,
            fields["type"],
            _join(path, "type"),
            MetricType,
            "istio-error-rate and istio-latency use Istio's metrics; custom runs your query",
        )
    bounds: dict[str, float | None] = {}
    for key in _BOUND_KEYS:
        if key in fields:
            bounds[key] = _number(doc, fields[key], _join(path, key))
    if not bounds:
        doc.add(path, "has no bound", f"set at least one of {', '.join(_BOUND_KEYS)}")
    low, high = bounds.get("min"), bounds.get("max")
    if low is not None and high is not None and low >= high:
        doc.add(
            _join(path, "min"),
            f"min {_show(low)} is not less than max {_show(high)}",
            "min is the lowest acceptable value and max the highest",
        )
    ratio = bounds.get("maxRatioToStable")
    if ratio is not None and ratio <= 0 and mtype is not MetricType.CUSTOM:
        doc.add(
            _join(path, "maxRatioToStable"),
            f"{_show(ratio)} is not greater than 0",
            "a ratio of 1.5 lets the canary be 50 % above stable",
        )
    if mtype is MetricType.ERROR_RATE:
        for key in ("max", "min", "maxAboveStable"):
            bound = bounds.get(key)
            if bound is not None and not 0 <= bound <= 1:
                doc.add(
                    _join(path, key),
                    f"{_show(bound)} is not between 0 and 1",
                    "an error rate is a fraction of requests: 1 % is 0.01",
                )
    if mtype is MetricType.LATENCY:
        for key in ("max", "min", "maxAboveStable"):
            bound = bounds.get(key)
            if bound is not None and bound < 0:
                doc.add(
                    _join(path, key),
                    f"{_show(bound)} is negative",
                    "latency is in milliseconds and cannot be negative",
                )
    if mtype is MetricType.CUSTOM:
        for key in _RELATIVE_KEYS:
            if key in fields:
                doc.add(
                    _join(path, key),
                    "a custom metric has no stable value to compare with",
                    "a custom query yields one value; use max/min",
                )
    quantile: float | None = None
    if mtype is MetricType.LATENCY:
        quantile = DEFAULT_LATENCY_QUANTILE
    if "quantile" in fields and mtype is not None:
        q_path = _join(path, "quantile")
        if mtype is not MetricType.LATENCY:
            doc.add(
                q_path,
                f"only istio-latency metrics take a quantile, not {mtype.value}",
                "remove quantile",
            )
        else:
            quantile = _number(doc, fields["quantile"], q_path)
            if quantile is not None and not 0 < quantile < 1:
                doc.add(
                    q_path,
                    f"{_show(quantile)} is not strictly between 0 and 1",
                    "e.g. 0.99 for the 99th percentile",
                )
    query: str | None = None
    q_path = _join(path, "query")
    if mtype is MetricType.CUSTOM:
        if "query" not in fields:
            doc.add(
                q_path,
                "a custom metric needs a query",
                "add query: a PromQL expression that yields one value; it may use "
                + ", ".join(f"${v}" for v in QUERY_VARIABLES),
            )
        else:
            query = _string(doc, fields["query"], q_path, "a PromQL query")
            if query is not None:
                _check_query(doc, query, q_path)
    elif "query" in fields and mtype is not None:
        doc.add(
            q_path,
            f"only custom metrics take a query, not {mtype.value}",
            "remove query, or set type: custom",
        )
    reporter = Reporter(DEFAULT_REPORTER)
    if "reporter" in fields and mtype is not None:
        r_path = _join(path, "reporter")
        if mtype is MetricType.CUSTOM:
            doc.add(
                r_path,
                "a custom metric takes no reporter",
                "the query selects its own series; remove reporter",
            )
        else:
            parsed = _choice(
                doc,
                fields["reporter"],
                r_path,
                Reporter,
                "destination: the canary's own sidecar reports; source: the callers' sidecars",
            )
            reporter = parsed or reporter
    critical = _optional(doc, fields, "critical", path, default=False, parse=_boolean)
    if name is None or mtype is None or critical is None or doc.since(mark):
        return None
    return Metric(
        name=name,
        type=mtype,
        max=bounds.get("max"),
        min=bounds.get("min"),
        max_above_stable=bounds.get("maxAboveStable"),
        max_ratio_to_stable=bounds.get("maxRatioToStable"),
        quantile=quantile,
        query=query,
        critical=critical,
        reporter=reporter,
    )


def _metrics(doc: _Doc, value: object, path: str) -> tuple[Metric, ...] | None:
    if not isinstance(value, list | tuple):
        doc.add(
            path,
            f"expected a list of metrics, got {_got(value)}",
            "e.g. metrics: [{name: error-rate, type: istio-error-rate, max: 0.01}]",
        )
        return None
    if not value:
        doc.add(
            path,
            "empty list",
            "list at least one metric, or remove metrics for the defaults "
            "(error-rate, latency-p99)",
        )
        return None
    mark = doc.mark()
    metrics: list[Metric] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(value):
        item_path = f"{path}[{index}]"
        metric = _metric(doc, item, item_path)
        if isinstance(item, Mapping) and isinstance(item.get("name"), str):
            name = item["name"]
            if name in seen:
                doc.add(
                    f"{item_path}.name",
                    f"{_show(name)} is already the name of metrics[{seen[name]}]",
                    "give each metric its own name: logs and events name metrics by it",
                )
            else:
                seen[name] = index
        if metric is not None:
            metrics.append(metric)
    if doc.since(mark):
        return None
    return tuple(metrics)


def _analysis(doc: _Doc, value: object, path: str) -> Analysis | None:
    fields = _fields(
        doc, value, path, _ANALYSIS_KEYS, fix="give its keys, or remove analysis for the defaults"
    )
    if fields is None:
        return None
    mark = doc.mark()

    def duration(key: str, default: timedelta, allow_zero: bool = False) -> timedelta | None:
        if key not in fields:
            return default
        return _duration(doc, fields[key], _join(path, key), default, allow_zero=allow_zero)

    def integer(key: str, default: int) -> int | None:
        if key not in fields:
            return default
        return _integer(doc, fields[key], _join(path, key), 1)

    def on_trouble(key: str) -> OnTrouble | None:
        if key not in fields:
            return OnTrouble.PAUSE
        return _choice(
            doc,
            fields[key],
            _join(path, key),
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
        metrics = _metrics(doc, fields["metrics"], _join(path, "metrics"))
    if interval is not None and window is not None and window < interval:
        given = "" if "window" in fields else " (the default)"
        doc.add(
            _join(path, "window"),
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


def _rollback(doc: _Doc, value: object, path: str) -> RollbackPolicy | None:
    fields = _fields(
        doc, value, path, _ROLLBACK_KEYS, fix="e.g. rollback: {timeout: 5m, retries: 3}"
    )
    if fields is None:
        return None
    timeout: timedelta | None = DEFAULT_ROLLBACK_TIMEOUT
    if "timeout" in fields:
        timeout = _duration(
            doc, fields["timeout"], _join(path, "timeout"), DEFAULT_ROLLBACK_TIMEOUT
        )
    retries: int | None = DEFAULT_ROLLBACK_RETRIES
    if "retries" in fields:
        retries = _integer(doc, fields["retries"], _join(path, "retries"), 1)
    if timeout is None or retries is None:
        return None
    return RollbackPolicy(timeout=timeout, retries=retries)


def _plan(doc: _Doc, data: object, number: int = 1) -> Plan | None:
    """Validate document ``number``; every problem goes to ``doc``; a Plan only if none."""
    if not isinstance(data, Mapping):
        doc.problems.append(
            Problem(
                doc.source,
                f"(document {number})",
                f"expected a RolloutPlan mapping, got {_got(data)}",
                f"each YAML document is one plan: apiVersion: {API_VERSION}, kind: {KIND}, "
                "metadata, spec",
            )
        )
        return None
    top = _fields(
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
            f"{_show(top['apiVersion'])} is not {API_VERSION}",
            f"set apiVersion: {API_VERSION}",
        )
    if "kind" in top and top["kind"] != KIND:
        doc.add("kind", f"{_show(top['kind'])} is not {KIND}", f"set kind: {KIND}")
    name = namespace = None
    if "metadata" in top:
        meta = _fields(
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
                name = _name(doc, meta["name"], "metadata.name", _SUBDOMAIN)
            if "namespace" in meta:
                namespace = _name(doc, meta["namespace"], "metadata.namespace", _LABEL)
    if "spec" not in top:
        return None
    spec = _fields(
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
    steps = _optional(doc, spec, "steps", "spec", default=_DEFAULT_PLAN_STEPS, parse=_steps)
    progress_deadline: timedelta | None = DEFAULT_PROGRESS_DEADLINE
    if "progressDeadline" in spec:
        progress_deadline = _duration(
            doc, spec["progressDeadline"], "spec.progressDeadline", DEFAULT_PROGRESS_DEADLINE
        )
    finalise_timeout: timedelta | None = DEFAULT_FINALISE_TIMEOUT
    if "finaliseTimeout" in spec:
        finalise_timeout = _duration(
            doc, spec["finaliseTimeout"], "spec.finaliseTimeout", DEFAULT_FINALISE_TIMEOUT
        )
    analysis = _optional(doc, spec, "analysis", "spec", default=Analysis(), parse=_analysis)
    rollback = _optional(doc, spec, "rollback", "spec", default=RollbackPolicy(), parse=_rollback)
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


# --- YAML ------------------------------------------------------------------------------------

_MERGE_TAG = "tag:yaml.org,2002:merge"
_ALIAS_FIX = "write the values out in full: aliases can expand a small file into gigabytes"


class _LimitError(Exception):
    """Input the loader refuses to go on reading (too deep); stops the stream."""

    def __init__(self, mark: _Mark | None, message: str, fix: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message
        self.fix = fix


class _YamlMap(dict[Any, Any]):
    """A mapping that remembers the keys YAML gave more than once (a plain dict keeps the last)."""

    def __init__(self) -> None:
        super().__init__()
        self.duplicates: list[object] = []


class _PlanLoader(yaml.SafeLoader):
    """SafeLoader without aliases, anchors or merge keys, and with a nesting limit.

    Aliases are how a "billion laughs" document expands a few hundred bytes into gigabytes; a
    plan never needs them. Instead of expanding one, the composer records where it was and
    returns null, so the rest of the stream still parses and its problems are reported too.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0
        self.alias_mark: _Mark | None = None

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(AliasEvent):
            event = self.get_event()  # type: ignore[no-untyped-call]
            self.alias_mark = self.alias_mark or event.start_mark
            return ScalarNode("tag:yaml.org,2002:null", "", event.start_mark, event.end_mark)
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if getattr(event, "anchor", None) is not None:
            self.alias_mark = self.alias_mark or event.start_mark
            event.anchor = None  # never registered, so never expanded
        if not isinstance(event, SequenceStartEvent | MappingStartEvent):
            return super().compose_node(parent, index)
        if self.depth >= MAX_DEPTH:
            raise _LimitError(
                event.start_mark,
                f"nested deeper than {MAX_DEPTH} levels",
                "a plan nests about five levels; this document is not a plan",
            )
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _construct_map(loader: _PlanLoader, node: MappingNode) -> _YamlMap:
    result = _YamlMap()
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key is a list or a mapping", key_node.start_mark
            ) from None
        if key in result and key not in result.duplicates:
            result.duplicates.append(key)
        result[key] = loader.construct_object(value_node, deep=True)
    return result


_PlanLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
# "<<" is an ordinary (unknown) key here, not a merge: without aliases a merge is pointless.
_PlanLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _MERGE_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _at(mark: _Mark | None) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "(input)"


def _yaml_problem(source: str, err: yaml.YAMLError) -> Problem:
    if isinstance(err, yaml.MarkedYAMLError):
        what = err.problem or "syntax error"
        message = f"invalid YAML: {what}" + (f" ({err.context})" if err.context else "")
        fix = "check the indentation, quoting and colons here"
        if "'\\t'" in what:
            fix = "indent with spaces: YAML does not allow tabs"
        elif "could not determine a constructor" in what:
            fix = "remove the tag: plans use plain YAML values only"
        elif "mapping key is" in what:
            fix = "keys are plain names such as interval or metrics"
        return Problem(source, _at(err.problem_mark or err.context_mark), message, fix)
    if isinstance(err, yaml.reader.ReaderError):
        character = err.character if isinstance(err.character, int) else ord(err.character[:1])
        return Problem(
            source,
            f"character {err.position + 1}",
            f"invalid YAML: character #x{character:04x}: {err.reason}",
            "remove control characters; save the file as UTF-8 text",
        )
    return Problem(source, "(input)", f"invalid YAML: {err}", "fix the YAML syntax")


def _parse_stream(text: str, source: str) -> tuple[list[tuple[int, object] | Problem], bool]:
    """In stream order: each non-null document as (number, data), or a problem in its place.

    The flag says whether the stream holds more than one document.
    """
    out: list[tuple[int, object] | Problem] = []
    count = 0
    aborted = False
    loader: _PlanLoader | None = None
    try:
        loader = _PlanLoader(text)  # checks for unprintable characters at once
        while loader.check_node():
            count += 1
            loader.depth = 0
            loader.alias_mark = None
            node = loader.get_node()
            if loader.alias_mark is not None:
                out.append(
                    Problem(
                        source,
                        _at(loader.alias_mark),
                        "anchors and aliases (&name, *name) are not allowed",
                        _ALIAS_FIX,
                    )
                )
                continue
            try:
                data = loader.construct_document(node)
            except yaml.MarkedYAMLError as err:
                loader.constructed_objects = {}
                loader.recursive_objects = {}
                loader.state_generators = []
                loader.deep_construct = False
                out.append(_yaml_problem(source, err))
                continue
            if data is not None:
                out.append((count, data))
    except _LimitError as err:
        aborted = True
        out.append(Problem(source, _at(err.mark), err.message, err.fix))
    except yaml.YAMLError as err:
        aborted = True
        out.append(_yaml_problem(source, err))
    finally:
        if loader is not None:
            loader.dispose()
    return out, count > 1 or aborted


def _load_text(text: str, source: str) -> tuple[list[Plan], list[Problem]]:
    """Plans and problems of one YAML stream, in document order; no cross-plan checks."""
    if len(text) > MAX_INPUT_BYTES or len(text.encode("utf-8")) > MAX_INPUT_BYTES:
        return [], [_too_large(source, "(input)")]
    entries, multi = _parse_stream(text, source)
    plans: list[Plan] = []
    problems: list[Problem] = []
    for entry in entries:
        if isinstance(entry, Problem):
            problems.append(entry)
            continue
        number, data = entry
        doc = _Doc(source, f"(document {number}) " if multi else "")
        plan = _plan(doc, data, number)
        problems.extend(doc.problems)
        if plan is not None:
            plans.append(plan)
    return plans, problems


def _too_large(source: str, path: str) -> Problem:
    return Problem(
        source,
        path,
        f"larger than {MAX_INPUT_BYTES} bytes (1 MiB)",
        "a plan is a few KiB: split the file, or check that this is a plan file",
    )


# --- public API ------------------------------------------------------------------------------


def load_plan_text(text: str, source: str = "") -> list[Plan]:
    """Load every RolloutPlan in a multi-document YAML text; empty documents are skipped.

    Raises :class:`PlanError` listing every problem of every document (and conflicts between
    the plans of this text) at once.
    """
    plans, problems = _load_text(text, source)
    problems.extend(check_conflicts(plans))
    if problems:
        raise PlanError(problems)
    return plans


def _plan_paths(paths: Sequence[str | os.PathLike[str]], problems: list[Problem]) -> list[str]:
    """Files to read: each file as given, each directory's ``*.yaml``/``*.yml`` sorted.

    Hidden names are skipped, which also skips a ConfigMap mount's ``..data`` and
    ``..<timestamp>`` entries; the visible ``*.yaml`` symlinks into them are read once each.
    """
    out: list[str] = []
    for given in paths:
        path = os.fspath(given)
        if not os.path.isdir(path):
            out.append(path)
            continue
        try:
            names = sorted(os.listdir(path))
        except OSError as err:
            problems.append(
                Problem(
                    path,
                    "(directory)",
                    f"cannot list: {err.strerror or err}",
                    "check the path and its permissions",
                )
            )
            continue
        for name in names:
            child = os.path.join(path, name)
            if name.startswith(".") or not name.endswith((".yaml", ".yml")):
                continue
            if os.path.isfile(child):
                out.append(child)
    return out


def _read_text(path: str, problems: list[Problem]) -> str | None:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_INPUT_BYTES + 1)
    except OSError as err:
        problems.append(
            Problem(
                path,
                "(file)",
                f"cannot read: {err.strerror or err}",
                "check the path and its permissions",
            )
        )
        return None
    if len(raw) > MAX_INPUT_BYTES:
        problems.append(_too_large(path, "(file)"))
        return None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        problems.append(
            Problem(
                path,
                "(file)",
                f"not UTF-8 text: byte 0x{raw[err.start]:02x} at offset {err.start}",
                "save the file as UTF-8",
            )
        )
        return None


def load_plan_files(paths: Sequence[str | os.PathLike[str]]) -> list[Plan]:
    """Load plans from files and directories (``*.yaml``/``*.yml`` in each, not recursive).

    Problems of every file, then conflicts between all plans, are raised as one
    :class:`PlanError`; each problem's ``source`` is its file's path.
    """
    if isinstance(paths, str | os.PathLike):  # one path, not a sequence of characters
        paths = [paths]
    problems: list[Problem] = []
    plans: list[Plan] = []
    for path in _plan_paths(paths, problems):
        text = _read_text(path, problems)
        if text is None:
            continue
        file_plans, file_problems = _load_text(text, path)
        plans.extend(file_plans)
        problems.extend(file_problems)
    problems.extend(check_conflicts(plans))
    if problems:
        raise PlanError(problems)
    return plans


def _where(owner: Plan, plan: Plan) -> str:
    """Where ``owner`` (a plan that came first) is, as seen from ``plan``."""
    if not owner.source:
        return ""
    if owner.source == plan.source:
        return " (earlier in this file)"
    return f" ({owner.source})"


def check_conflicts(plans: Iterable[Plan]) -> list[Problem]:
    """Problems between plans: a plan defined twice, a VirtualService or Deployment in two plans.

    Each conflict is reported once, on the later plan.
    """
    problems: list[Problem] = []
    by_key: dict[str, Plan] = {}
    by_virtual_service: dict[tuple[str, str], Plan] = {}
    by_deployment: dict[tuple[str, str], tuple[Plan, str]] = {}
    for plan in plans:
        first = by_key.get(plan.key)
        if first is not None:
            problems.append(
                Problem(
                    plan.source,
                    "metadata.name",
                    f"plan {plan.key} is defined twice{_where(first, plan)}",
                    "give each plan its own name within its namespace, or remove the copy",
                )
            )
            continue
        by_key[plan.key] = plan
        vs_key = (plan.namespace, plan.virtual_service.name)
        owner = by_virtual_service.get(vs_key)
        if owner is not None:
            problems.append(
                Problem(
                    plan.source,
                    "spec.virtualService.name",
                    f"plan {plan.key} manages VirtualService {'/'.join(vs_key)}, already managed "
                    f"by plan {owner.key}{_where(owner, plan)}",
                    "one plan per VirtualService: a rollout's state lives in one annotation on "
                    "the VirtualService; merge the two plans or point this one at another "
                    "VirtualService",
                )
            )
        else:
            by_virtual_service[vs_key] = plan
        roles = (("stable", plan.workloads.stable), ("canary", plan.workloads.canary))
        for role, deployment in roles:
            taken = by_deployment.get((plan.namespace, deployment))
            if taken is not None:
                other, other_role = taken
                problems.append(
                    Problem(
                        plan.source,
                        f"spec.workloads.{role}",
                        f"plan {plan.key} names Deployment {plan.namespace}/{deployment}, already "
                        f"the {other_role} workload of plan {other.key}{_where(other, plan)}",
                        "a Deployment belongs to one plan: two plans would fight over its "
                        "traffic and roll it back twice",
                    )
                )
        for role, deployment in roles:
            by_deployment.setdefault((plan.namespace, deployment), (plan, role))
    return problems


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
    doc = _Doc(source)
    document = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    plan = _plan(doc, document)
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
