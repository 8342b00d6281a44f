"""Phases, rollout state, observations and decisions: the vocabulary of the pure core.

Everything here is a frozen value. ``decide`` (decide.py) takes a :class:`RolloutState` and an
:class:`Observation` and returns a :class:`Decision`; the controller persists the decision's
state in the VirtualService annotation ``canary.dev/state`` (docs/design.md §4) in the same
request as the weights. State (de)serialisation lives here so the persisted schema has exactly
one owner.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from canary.core.timestamps import iso_or_none, parse_iso_strict

STATE_ANNOTATION = "canary.dev/state"
COMMAND_ANNOTATION = "canary.dev/command"
#: Version of the persisted state schema; a reader that sees another version treats it as lost.
STATE_VERSION = 1


class Phase(enum.StrEnum):
    IDLE = "Idle"
    PENDING = "Pending"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    SUCCEEDED = "Succeeded"
    FINALISING = "Finalising"
    ROLLING_BACK = "RollingBack"
    ROLLED_BACK = "RolledBack"
    ROLLBACK_FAILED = "RollbackFailed"


# The phase sets, each named once; decide, the daemon, `wait` and the commands all use these.

#: Phases in which a rollout of a particular canary is under way (docs/design.md §4 "any
#: active").
ACTIVE_PHASES = frozenset(
    {Phase.PENDING, Phase.PROGRESSING, Phase.PAUSED, Phase.SUCCEEDED, Phase.ROLLING_BACK}
)
#: Active phases whose rollout a newer canary supersedes at once: a rollback under way
#: finishes first, so the release ends consistent.
SUPERSEDABLE_PHASES = ACTIVE_PHASES - {Phase.ROLLING_BACK}
#: Phases in which checks are judged (the state's step is being analysed).
ANALYSING_PHASES = frozenset({Phase.PROGRESSING, Phase.PAUSED})
#: Phases at rest: no check is due and nothing is being waited for.
AT_REST_PHASES = frozenset({Phase.IDLE, Phase.ROLLED_BACK, Phase.ROLLBACK_FAILED, Phase.SUCCEEDED})
#: Phases that wait on the cluster (pods becoming available, helm), not on metrics.
WAITING_PHASES = frozenset({Phase.PENDING, Phase.FINALISING, Phase.ROLLING_BACK})
#: Phases after the analysis of the state's rollout ended; ``last`` holds its outcome.
ENDED_PHASES = frozenset({Phase.ROLLED_BACK, Phase.ROLLBACK_FAILED, Phase.FINALISING, Phase.IDLE})


class Verdict(enum.StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    ERROR = "ERROR"
    INCONCLUSIVE = "INCONCLUSIVE"


class Outcome(enum.StrEnum):
    """How a rollout ended; ``last.outcome`` in the state, and ``canary wait``'s exit code."""

    SUCCEEDED = "Succeeded"
    ROLLED_BACK = "RolledBack"
    ROLLBACK_FAILED = "RollbackFailed"
    SUPERSEDED = "Superseded"
    BYPASSED = "Bypassed"  # promoted (canary = stable) before the analysis said Succeeded
    ABANDONED = "Abandoned"  # the plan was deleted mid-rollout; traffic went to stable


class CommandName(enum.StrEnum):
    ABORT = "abort"
    PAUSE = "pause"
    RESUME = "resume"
    PROMOTE = "promote"
    PROMOTE_FULL = "promote-full"
    RETRY = "retry"


class PauseKind(enum.StrEnum):
    """Why a rollout is Paused; decides where its traffic is and whether checks go on."""

    MANUAL = "manual"  # `pause` command: weights held, checks go on, a breach still rolls back
    ERRORS = "errors"  # errorLimit reached: weights on stable, a human decides
    INCONCLUSIVE = "inconclusive"  # inconclusiveTimeout reached: weights on stable
    INVALID_PLAN = "invalid-plan"  # plan failed validation: weights on stable until fixed
    WEIGHT_DRIFT = "weight-drift"  # someone keeps rewriting the weights: weights to stable


@dataclass(frozen=True)
class Weights:
    stable: int
    canary: int

    def __post_init__(self) -> None:
        if self.stable < 0 or self.canary < 0 or self.stable + self.canary != 100:
            raise ValueError(f"weights must be non-negative and sum to 100, got {self}")

    @classmethod
    def canary_at(cls, weight: int) -> Weights:
        return cls(stable=100 - weight, canary=weight)

    def to_json(self) -> list[int]:
        return [self.stable, self.canary]

    def __str__(self) -> str:
        return f"stable {self.stable} / canary {self.canary}"


ALL_STABLE = Weights(stable=100, canary=0)


@dataclass(frozen=True)
class LastOutcome:
    rollout_id: str
    canary_hash: str
    outcome: Outcome
    reason: str
    ended_at: datetime


@dataclass(frozen=True)
class RollbackProgress:
    """Bookkeeping of the helm rollback of the current rollout (RollingBack/RollbackFailed)."""

    attempts: int = 0  # helm rollback calls started for this rollout
    failures: int = 0  # attempts known to have failed
    limit: int = 0  # attempts allowed (plan's rollback.retries; `abort` in RollbackFailed adds one)
    started_at: datetime | None = None  # when the last attempt was started
    failed_at: datetime | None = None  # when the last failure was seen (backoff starts here)
    error: str = ""  # stderr tail of the last failed attempt


@dataclass(frozen=True)
class RolloutState:
    """The persisted state of one plan (docs/design.md §4), plus the few fields decide needs on top.

    Fields beyond the design's list (``paused``, ``rollback``, ``lastCheckAt``, ``firstFailAt``,
    ``rollbackRevision``, ``attempt``, ``notices``, ``spec``) exist because no decision may
    depend on the memory of an earlier tick: whatever decide needs next time must be here.
    """

    plan: str
    phase: Phase = Phase.IDLE
    rollout_id: str = ""
    canary_hash: str = ""
    stable_hash: str = ""
    revision: int | None = None  # helm revision that brought this canary
    base_revision: int | None = None  # rollback target, recorded while Idle
    step: int = 0
    weights: Weights = ALL_STABLE  # what we last wrote
    step_started_at: datetime | None = None  # when this step's weights (or phase) began
    passes: int = 0
    fails: int = 0
    errors: int = 0
    drifts: int = 0  # weight drifts rewritten in this step
    inconclusive_since: datetime | None = None
    reason: str = ""
    plan_hash: str = ""
    last: LastOutcome | None = None
    updated_at: datetime | None = None
    # -- beyond the design's list, see the docstring --
    paused: PauseKind | None = None
    last_check_at: datetime | None = None
    first_fail_at: datetime | None = None
    rollback: RollbackProgress | None = None
    rollback_revision: int | None = None  # revision our own rollback created
    attempt: int = 0  # the <attempt> of rollout_id
    #: warnings whose condition still holds (raised once when they start, not every tick)
    notices: tuple[str, ...] = ()
    spec: Mapping[str, Any] | None = None  # plan snapshot taken when the rollout started

    def evolve(self, **changes: Any) -> RolloutState:
        return replace(self, **changes)


def rollout_id(canary_hash: str, attempt: int) -> str:
    return f"{canary_hash[:10]}-{attempt}"


# --- observations --------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkloadStatus:
    """One Deployment as the controller sees it this tick."""

    name: str
    exists: bool = True
    available: bool = True  # observedGeneration current, all replicas updated and available
    template_hash: str = ""  # normalised pod-template hash (docs/design.md §1), no track keys
    reason: str = ""  # why not available, for the events


class RevisionStatus(enum.StrEnum):
    """Helm's release statuses (helm/pkg/release/status.go)."""

    UNKNOWN = "unknown"
    DEPLOYED = "deployed"
    UNINSTALLED = "uninstalled"
    SUPERSEDED = "superseded"
    FAILED = "failed"
    UNINSTALLING = "uninstalling"
    PENDING_INSTALL = "pending-install"
    PENDING_UPGRADE = "pending-upgrade"
    PENDING_ROLLBACK = "pending-rollback"

    @property
    def pending(self) -> bool:
        return self.value.startswith("pending-")


@dataclass(frozen=True)
class Revision:
    number: int
    status: RevisionStatus
    description: str = ""


def rollback_description(revision: int) -> str:
    """What helm writes as the description of a revision made by ``helm rollback REL N``."""
    return f"Rollback to {revision}"


@dataclass(frozen=True)
class ReleaseInfo:
    """The helm release history, oldest first."""

    revisions: tuple[Revision, ...]

    @property
    def deployed(self) -> Revision | None:
        for rev in reversed(self.revisions):
            if rev.status == RevisionStatus.DEPLOYED:
                return rev
        return None

    @property
    def latest(self) -> Revision | None:
        return self.revisions[-1] if self.revisions else None

    @property
    def pending(self) -> bool:
        return self.latest is not None and self.latest.status.pending

    def fallback_base(self, before: int) -> int | None:
        """The newest revision earlier than ``before`` that is not failed (docs/design.md §1)."""
        for rev in reversed(self.revisions):
            if rev.number < before and rev.status != RevisionStatus.FAILED:
                return rev.number
        return None


@dataclass(frozen=True)
class Command:
    cmd: CommandName
    rollout_id: str
    by: str = ""
    at: datetime | None = None


@dataclass(frozen=True)
class MetricValue:
    """One metric of one check: what was asked and what came back."""

    name: str
    query: str = ""
    value: float | None = None  # None: no data (empty, NaN, ±Inf)
    stable_query: str = ""
    stable_value: float | None = None
    error: str = ""  # the query failed (Prometheus unreachable, 5xx, timeout)
    misconfigured: bool = False  # the error is the plan's (HTTP 4xx: a bad custom query, ...)


@dataclass(frozen=True)
class MetricsSample:
    """The answer of the metrics port for one rollout and one check.

    ``rollout_id`` and ``step`` say what the sample was taken for: a sample for another rollout
    or step is ignored, so errors of an earlier canary or step never decide this one.
    """

    rollout_id: str
    step: int
    window: timedelta
    canary_requests: float | None = None
    stable_requests: float | None = None
    metrics: tuple[MetricValue, ...] = ()
    error: str = ""  # the whole sample failed (e.g. Prometheus unreachable)
    too_short: bool = False  # the step-scoped window is shorter than two scrapes: not queried
    #: why the source has no data for anyone (e.g. Prometheus holds no Istio series at all):
    #: added to an INCONCLUSIVE reason; "" when it has data or does not know
    no_data: str = ""


@dataclass(frozen=True)
class RollbackJob:
    """A helm rollback the controller ran (or is running) for this plan."""

    revision: int
    running: bool = False
    ok: bool = False
    error: str = ""
    #: which rollback attempt (RollbackProgress.attempts) this job is: an older attempt's
    #: outcome is never taken for the current one's
    attempt: int = 0


@dataclass(frozen=True)
class Observation:
    """Everything decide may look at for one plan on one tick."""

    stable: WorkloadStatus
    canary: WorkloadStatus
    live_weights: Weights | None  # None: the managed route could not be read
    route_error: str = ""  # why the managed route is unusable (index points elsewhere, ...)
    state_lost: str = ""  # the annotation was missing/corrupt although we had written one
    command: Command | None = None
    command_error: str = ""  # canary.dev/command was set but unreadable: drop it, say why
    release: ReleaseInfo | None = None
    release_error: str = ""  # why the release history could not be read (release is None)
    metrics: MetricsSample | None = None
    rollback_job: RollbackJob | None = None
    plan_error: str = ""  # the plan is invalid: pause with traffic on stable
    plan_deleted: bool = False  # the plan is gone: traffic to stable

    @property
    def canary_differs(self) -> bool:
        return self.canary.template_hash != self.stable.template_hash


# --- decisions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """A named event (docs/design.md §6); the emitter turns it into a log line and a
    Kubernetes Event."""

    name: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    warning: bool = False


@dataclass(frozen=True)
class Decision:
    """What one tick decided. The controller writes ``state`` and ``weights`` in one request
    (only if ``changed``), then, if the write succeeded, starts ``start_rollback``."""

    state: RolloutState
    weights: Weights | None = None  # weights to write; None: leave the live ones alone
    events: tuple[Event, ...] = ()
    consume_command: bool = False
    start_rollback: int | None = None  # run `helm rollback <release> <this revision>`
    changed: bool = False


# --- state (de)serialisation ---------------------------------------------------------------


def _opt_int(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def _int(value: Any, default: int = 0) -> int:
    """A counter: absent → ``default``; negative or not an integer → ValueError."""
    out = _opt_int(value)
    if out is not None and out < 0:
        raise ValueError(f"expected a non-negative integer, got {value!r}")
    return default if out is None else out


def _strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of strings, got {value!r}")
    return tuple(value)


def state_to_json(state: RolloutState) -> str:
    """Compact JSON for the ``canary.dev/state`` annotation (docs/design.md §4)."""
    doc: dict[str, Any] = {
        "v": STATE_VERSION,
        "plan": state.plan,
        "phase": state.phase.value,
        "rolloutId": state.rollout_id,
        "canaryHash": state.canary_hash,
        "stableHash": state.stable_hash,
        "revision": state.revision,
        "baseRevision": state.base_revision,
        "step": state.step,
        "weights": state.weights.to_json(),
        "stepStartedAt": iso_or_none(state.step_started_at),
        "passes": state.passes,
        "fails": state.fails,
        "errors": state.errors,
        "drifts": state.drifts,
        "inconclusiveSince": iso_or_none(state.inconclusive_since),
        "reason": state.reason,
        "planHash": state.plan_hash,
        "last": None,
        "updatedAt": iso_or_none(state.updated_at),
    }
    if state.last is not None:
        doc["last"] = {
            "rolloutId": state.last.rollout_id,
            "canaryHash": state.last.canary_hash,
            "outcome": state.last.outcome.value,
            "reason": state.last.reason,
            "endedAt": iso_or_none(state.last.ended_at),
        }
    if state.paused is not None:
        doc["paused"] = state.paused.value
    if state.last_check_at is not None:
        doc["lastCheckAt"] = iso_or_none(state.last_check_at)
    if state.first_fail_at is not None:
        doc["firstFailAt"] = iso_or_none(state.first_fail_at)
    if state.rollback is not None:
        doc["rollback"] = {
            "attempts": state.rollback.attempts,
            "failures": state.rollback.failures,
            "limit": state.rollback.limit,
            "startedAt": iso_or_none(state.rollback.started_at),
            "failedAt": iso_or_none(state.rollback.failed_at),
            "error": state.rollback.error,
        }
    if state.rollback_revision is not None:
        doc["rollbackRevision"] = state.rollback_revision
    if state.attempt:
        doc["attempt"] = state.attempt
    if state.notices:
        doc["notices"] = list(state.notices)
    if state.spec is not None:
        doc["spec"] = state.spec
    return json.dumps(doc, separators=(",", ":"), sort_keys=False)


class StateError(ValueError):
    """The persisted state cannot be read: treat it as lost (docs/design.md §4)."""


def state_from_json(raw: str) -> RolloutState:
    """Parse the annotation; any defect raises :class:`StateError` (never a crash loop)."""
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise ValueError("state is not a JSON object")
        if doc.get("v") != STATE_VERSION:
            raise ValueError(f"unknown state version {doc.get('v')!r}")
        weights_raw = doc.get("weights", [100, 0])
        if (
            not isinstance(weights_raw, list)
            or len(weights_raw) != 2
            or not all(isinstance(w, int) and not isinstance(w, bool) for w in weights_raw)
        ):
            raise ValueError(f"weights must be [stable, canary], got {weights_raw!r}")
        last = None
        if doc.get("last") is not None:
            lr = doc["last"]
            if not isinstance(lr, dict):
                raise ValueError("last must be an object")
            ended = parse_iso_strict(lr.get("endedAt"))
            if ended is None:
                raise ValueError("last.endedAt is missing")
            last = LastOutcome(
                rollout_id=str(lr.get("rolloutId", "")),
                canary_hash=str(lr.get("canaryHash", "")),
                outcome=Outcome(str(lr.get("outcome"))),
                reason=str(lr.get("reason", "")),
                ended_at=ended,
            )
        rollback = None
        if doc.get("rollback") is not None:
            rb = doc["rollback"]
            if not isinstance(rb, dict):
                raise ValueError("rollback must be an object")
            rollback = RollbackProgress(
                attempts=_int(rb.get("attempts")),
                failures=_int(rb.get("failures")),
                limit=_int(rb.get("limit")),
                started_at=parse_iso_strict(rb.get("startedAt")),
                failed_at=parse_iso_strict(rb.get("failedAt")),
                error=str(rb.get("error", "")),
            )
        spec = doc.get("spec")
        if spec is not None and not isinstance(spec, dict):
            raise ValueError("spec must be an object")
        paused = doc.get("paused")
        return RolloutState(
            plan=str(doc["plan"]),
            phase=Phase(doc["phase"]),
            rollout_id=str(doc.get("rolloutId", "")),
            canary_hash=str(doc.get("canaryHash", "")),
            stable_hash=str(doc.get("stableHash", "")),
            revision=_opt_int(doc.get("revision")),
            base_revision=_opt_int(doc.get("baseRevision")),
            step=_int(doc.get("step")),
            weights=Weights(stable=weights_raw[0], canary=weights_raw[1]),
            step_started_at=parse_iso_strict(doc.get("stepStartedAt")),
            passes=_int(doc.get("passes")),
            fails=_int(doc.get("fails")),
            errors=_int(doc.get("errors")),
            drifts=_int(doc.get("drifts")),
            inconclusive_since=parse_iso_strict(doc.get("inconclusiveSince")),
            reason=str(doc.get("reason", "")),
            plan_hash=str(doc.get("planHash", "")),
            last=last,
            updated_at=parse_iso_strict(doc.get("updatedAt")),
            paused=PauseKind(paused) if paused is not None else None,
            last_check_at=parse_iso_strict(doc.get("lastCheckAt")),
            first_fail_at=parse_iso_strict(doc.get("firstFailAt")),
            rollback=rollback,
            rollback_revision=_opt_int(doc.get("rollbackRevision")),
            attempt=_int(doc.get("attempt")),
            notices=_strings(doc.get("notices")),
            spec=spec,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise StateError(f"{STATE_ANNOTATION} is corrupt: {exc}") from exc


def command_from_json(raw: str) -> Command:
    """Parse ``canary.dev/command``; raises ValueError with what is wrong."""
    doc = json.loads(raw)
    if not isinstance(doc, dict):
        raise ValueError("command is not a JSON object")
    cmd = doc.get("cmd")
    try:
        name = CommandName(str(cmd))
    except ValueError:
        allowed = ", ".join(c.value for c in CommandName)
        raise ValueError(f"unknown cmd {cmd!r}; use one of {allowed}") from None
    rid = doc.get("rolloutId")
    if not isinstance(rid, str) or not rid:
        raise ValueError("rolloutId is missing; `canary status` shows the current one")
    return Command(
        cmd=name, rollout_id=rid, by=str(doc.get("by", "")), at=parse_iso_strict(doc.get("at"))
    )


def command_to_json(command: Command) -> str:
    return json.dumps(
        {
            "cmd": command.cmd.value,
            "rolloutId": command.rollout_id,
            "by": command.by,
            "at": iso_or_none(command.at),
        },
        separators=(",", ":"),
    )
