"""The event catalog: every name canary logs, with its level, its fields and what it means.

Names are API: CI scripts, alerts, ``canary timeline`` and the on-call runbook match on them.
Add names here; never rename one. Two kinds:

* **rollout events** leave through the one emitter (:class:`canary.shell.emitter.Emitter`): a
  structured log line and a Kubernetes Event whose ``reason`` is the name, on the plan's
  VirtualService. They carry :data:`ROLLOUT_FIELDS` besides their own.
* **process events** are the log lines of the daemon and its adapters (leadership, plans,
  scheduling, watches, notifications, probes); a log line only.

The event tables of ``docs/events.md`` are generated from this catalog
(``python3 docs/events.py``) and a test keeps them in step; another checks that every log call
in the code names a catalog event, at its level, with its fields.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from canary.core.model import Outcome


class Level(enum.StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class Kind(enum.StrEnum):
    ROLLOUT = "rollout"
    PROCESS = "process"


@dataclass(frozen=True)
class Spec:
    """One catalog entry."""

    name: str
    kind: Kind
    level: Level
    #: the event's own fields (rollout events also carry :data:`ROLLOUT_FIELDS`)
    fields: tuple[str, ...]
    #: what it means, for a person reading the log
    meaning: str
    #: what to do about it ("" when nothing)
    action: str = ""
    #: when a warning event is logged at info level instead ("" when never)
    info_when: str = ""


#: Every rollout event carries these: ``plan`` (``namespace/name``), ``at`` (the controller's
#: clock when it decided), ``phase`` (after the event), and ``rolloutId`` while a rollout is
#: under way.
ROLLOUT_FIELDS: Final = ("plan", "at", "phase", "rolloutId")

_SPECS: dict[str, Spec] = {}

INFO, WARNING, ERROR, DEBUG = Level.INFO, Level.WARNING, Level.ERROR, Level.DEBUG


def _add(kind: Kind, name: str, level: Level, fields: tuple[str, ...], meaning: str, *,
         action: str, info_when: str) -> str:  # fmt: skip
    if name in _SPECS:
        raise ValueError(f"event {name} is in the catalog twice")
    _SPECS[name] = Spec(name, kind, level, fields, meaning, action, info_when)
    return name


def _rollout(name: str, level: Level, fields: tuple[str, ...], meaning: str,
             action: str = "", *, info_when: str = "") -> str:  # fmt: skip
    return _add(Kind.ROLLOUT, name, level, fields, meaning, action=action, info_when=info_when)


def _process(name: str, level: Level, fields: tuple[str, ...], meaning: str,
             action: str = "") -> str:  # fmt: skip
    return _add(Kind.PROCESS, name, level, fields, meaning, action=action, info_when="")


# --- rollout events ---------------------------------------------------------------------------

#: The fields of every check event: the step, its counters, the verdict and the numbers.
CHECK_FIELDS: Final = (
    "step", "weight", "passes", "fails", "errors", "verdict", "reason", "window",
    "canary_requests", "stable_requests", "metrics",
)  # fmt: skip

ROLLOUT_STARTED: Final = _rollout(
    "rollout.started", INFO, ("canaryHash", "revision", "baseRevision", "steps", "canary"),
    "a new canary (its template differs from stable's); Pending with all traffic on stable",
)  # fmt: skip
STEP_STARTED: Final = _rollout(
    "step.started", INFO, ("step", "weight", "hold", "why"),
    "step i begins: the canary gets its weight for at least the hold",
)  # fmt: skip
WEIGHT_SET: Final = _rollout(
    "weight.set", INFO, ("stable", "canary", "previous", "why"),
    "the controller wrote the weights (`why`)",
)  # fmt: skip
WEIGHT_DRIFT: Final = _rollout(
    "weight.drift", WARNING, ("live", "expected", "reason"),
    "the live weights differ from what the controller wrote: written again, the step's window "
    "and hold restart, `fails` kept; the third drift in a step pauses (`weight-drift`)",
    "find the writer (GitOps self-heal, Helm 4 server-side apply) and exclude the weights",
)  # fmt: skip
CHECK_PASSED: Final = _rollout(
    "check.passed", INFO, CHECK_FIELDS, "a check passed: every metric within its bounds",
)  # fmt: skip
CHECK_FAILED: Final = _rollout(
    "check.failed", WARNING, CHECK_FIELDS,
    "a metric breached a bound, the canary Deployment was not available, or traffic was not "
    "reaching the canary; carries the PromQL, values, requests and bounds",
    "none: `failureLimit` failures in a row (or one of a `critical` metric) roll back",
)  # fmt: skip
CHECK_INCONCLUSIVE: Final = _rollout(
    "check.inconclusive", WARNING, CHECK_FIELDS,
    "not enough data: fewer than `minRequests` canary requests, no series, NaN, a window "
    "shorter than two scrapes, a missing stable value",
    "if it persists: is there traffic? does the plan's window fit the scrape interval?",
)  # fmt: skip
CHECK_ERROR: Final = _rollout(
    "check.error", WARNING, CHECK_FIELDS,
    "a query failed (Prometheus refused, timed out, answered 5xx, 401/403/404)",
    "check Prometheus and the controller's credentials for it",
)  # fmt: skip
ROLLOUT_PAUSED: Final = _rollout(
    "rollout.paused", WARNING, ("kind", "reason"),
    "Paused: `kind` says why (manual, errors, inconclusive, invalid-plan, weight-drift); every "
    "pause but a manual one has traffic on stable",
    "read `reason`; fix the cause, then `canary resume` (or `abort`)",
    info_when="a human paused it (`kind` manual)",
)  # fmt: skip
ROLLOUT_RESUMED: Final = _rollout(
    "rollout.resumed", INFO, ("step", "by"), "`resume` accepted: same step, the hold restarts",
)  # fmt: skip
ROLLOUT_PROMOTED: Final = _rollout(
    "rollout.promoted", INFO, ("by", "full", "step"),
    "`promote` accepted (`full`: straight to 100 %)",
)  # fmt: skip
ROLLOUT_SUCCEEDED: Final = _rollout(
    "rollout.succeeded", INFO, ("reason", "weights"),
    "every step passed; all traffic on the canary until CI promotes it",
    "CI promotes (a helm upgrade giving stable the canary's template)",
)  # fmt: skip
ROLLOUT_BYPASSED: Final = _rollout(
    "rollout.bypassed", WARNING, ("reason",),
    "the canary became equal to stable before the analysis said Succeeded (reverted, or "
    "promoted early); outcome Bypassed, `wait` exits 6",
    "confirm it was meant",
)  # fmt: skip
ROLLOUT_FINALISING: Final = _rollout(
    "rollout.finalising", INFO, ("outcome",),
    "canary equals stable again; waiting for stable to be available before moving traffic",
)  # fmt: skip
ROLLOUT_FINALISED: Final = _rollout(
    "rollout.finalised", INFO, ("outcome",), "all traffic on stable again; Idle",
)  # fmt: skip
ROLLOUT_FINALISE_STALLED: Final = _rollout(
    "rollout.finalise_stalled", WARNING, ("reason",),
    "stable is not available `finaliseTimeout` after the promotion",
    "fix the stable Deployment",
)  # fmt: skip
ROLLOUT_SUPERSEDED: Final = _rollout(
    "rollout.superseded", INFO, ("reason",),
    "a newer canary (or a newer helm revision during a rollback) replaced this rollout",
)  # fmt: skip
ROLLOUT_ROLLED_BACK: Final = _rollout(
    "rollout.rolled_back", INFO, ("reason", "revision", "baseRevision"),
    "RolledBack: the release is at `revision`, a rollback to `baseRevision`",
    "investigate the canary",
)  # fmt: skip
ROLLOUT_ROLLBACK_FAILED: Final = _rollout(
    "rollout.rollback_failed", WARNING, ("reason",),
    "RollbackFailed: traffic stays on stable, the release is not at its base",
    "page a human: the runbook's RollbackFailed section",
)  # fmt: skip
ROLLOUT_RECOVERED: Final = _rollout(
    "rollout.recovered", INFO, ("reason",),
    "RollbackFailed → Idle: a human fixed the release (canary equals stable)",
)  # fmt: skip
ROLLBACK_STARTED: Final = _rollout(
    "rollback.started", WARNING, ("reason", "baseRevision"),
    "RollingBack: a breach, an abort, the progress deadline or an `on…: rollback` policy",
)  # fmt: skip
ROLLBACK_TRAFFIC_REVERTED: Final = _rollout(
    "rollback.traffic_reverted", INFO, ("firstFailAt", "secondsSinceFirstFail"),
    "all traffic on stable; `secondsSinceFirstFail` is the time to safe",
)  # fmt: skip
ROLLBACK_HELM_STARTED: Final = _rollout(
    "rollback.helm_started", INFO, ("release", "revision", "attempt", "timeout", "resumed"),
    "`helm rollback REL BASE` started (attempt n); `resumed`: an attempt of a previous "
    "controller left no trace and runs again",
)  # fmt: skip
ROLLBACK_HELM_SUCCEEDED: Final = _rollout(
    "rollback.helm_succeeded", INFO, ("revision", "baseRevision", "confirmedFrom"),
    "the history shows the deployed `Rollback to BASE` and the canary equals stable",
)  # fmt: skip
ROLLBACK_HELM_FAILED: Final = _rollout(
    "rollback.helm_failed", WARNING, ("attempt", "error"),
    "one helm attempt failed (`error`: helm's stderr tail); retried with backoff",
    "read the error: RBAC, a hook, a timeout",
)  # fmt: skip
ROLLBACK_WAITING: Final = _rollout(
    "rollback.waiting", WARNING, ("reason",),
    "waiting for helm: it runs, the release is `pending-*`, the history lags, or the canary "
    "does not equal stable yet",
    "if it lasts past `rollback.timeout`: the runbook's stuck-pending section",
)  # fmt: skip
STABLE_UNAVAILABLE: Final = _rollout(
    "stable.unavailable", WARNING, ("reason", "wanted", "expected"),
    "traffic should go to stable but stable is not available: the weights are held, no helm",
    "fix stable first; the controller then proceeds by itself",
)  # fmt: skip
CANARY_UNAVAILABLE: Final = _rollout(
    "canary.unavailable", WARNING, ("reason",),
    "Succeeded, but the canary went unavailable: traffic on stable until it recovers",
    "check the canary's pods",
)  # fmt: skip
BASE_RECORDED: Final = _rollout(
    "base.recorded", INFO, ("baseRevision",), "the rollback target was recorded while Idle",
)  # fmt: skip
BASE_FALLBACK: Final = _rollout(
    "base.fallback", WARNING, ("baseRevision", "reason"),
    "the base revision was unknown (state lost, controller installed mid-rollout): the newest "
    "earlier revision that is not failed is used",
    "check it is a good target: `helm history`",
)  # fmt: skip
STATE_LOST: Final = _rollout(
    "state.lost", WARNING, ("reason",),
    "`canary.dev/state` missing, corrupt or impossible: traffic to stable, the rollout starts "
    "over from Pending",
    "the runbook's lost-state section",
)  # fmt: skip
COMMAND_ACCEPTED: Final = _rollout(
    "command.accepted", INFO, ("cmd", "by", "phase"), "a manual command took effect",
)  # fmt: skip
COMMAND_DROPPED: Final = _rollout(
    "command.dropped", WARNING, ("cmd", "by", "reason"),
    "a command was not applied: another rolloutId, the wrong phase, the canary unavailable, "
    "the plan invalid, unreadable JSON (`reason`)",
    "read the reason; issue it again for the current rollout",
)  # fmt: skip
PLAN_INVALID: Final = _rollout(
    "plan.invalid", WARNING, ("error", "reason"),
    "the plan fails validation, or a query of it was rejected: its rollout pauses with "
    "traffic on stable (`invalid-plan`)",
    "fix the plan (`canary validate`), then `canary resume`",
)  # fmt: skip
PLAN_DELETED: Final = _rollout(
    "plan.deleted", WARNING, ("phase", "reason"),
    "the plan was removed: traffic to stable, outcome Abandoned (a rollback under way "
    "finishes first)",
)  # fmt: skip
ROUTE_INVALID: Final = _rollout(
    "route.invalid", WARNING, ("reason",),
    "the managed route cannot be used (missing, ambiguous, not exactly the plan's two "
    "destinations): nothing is written for this plan until it is fixed",
    "fix the VirtualService or `spec.virtualService.route`",
)  # fmt: skip
TICK_FAILED: Final = _rollout(
    "tick.failed", WARNING, ("stage", "error", "kind", "traceback"),
    "one tick for this plan could not complete; `kind`: transient (retried next tick), an "
    "error class such as ForbiddenError or NotFoundError, or bug (with `traceback`)",
    "repeated non-transient: fix RBAC or the missing object; bug: report it",
)  # fmt: skip
RELEASE_PENDING: Final = _rollout(
    "release.pending", WARNING, ("reason",),
    "the release is `pending-*`: the new rollout waits in Pending for helm to finish",
    "if nobody's helm runs: the runbook's stuck-pending section",
)  # fmt: skip
RELEASE_UNREADABLE: Final = _rollout(
    "release.unreadable", WARNING, ("reason",),
    "helm's history (its storage Secrets) cannot be read: checks and moves to stable go on, "
    "recording the base and `helm rollback` wait",
    "grant `list` on Secrets in the release namespace; `HELM_DRIVER` unset or `secret`",
)  # fmt: skip

# --- process events -----------------------------------------------------------------------------

DAEMON_STARTED: Final = _process(
    "daemon.started", INFO, ("identity", "config", "helm"),
    "`canary run` started: its Lease identity, the merged settings and helm's version",
)  # fmt: skip
DAEMON_STOPPING: Final = _process(
    "daemon.stopping", INFO, ("signal",), "SIGTERM or SIGINT: no new tick starts",
)  # fmt: skip
DAEMON_TICK_UNFINISHED: Final = _process(
    "daemon.tick_unfinished", WARNING, ("plans",),
    "ticks still waiting on a hung server at shutdown: left behind (they can no longer write)",
)  # fmt: skip
DAEMON_WAITING_FOR_HELM: Final = _process(
    "daemon.waiting_for_helm", INFO, ("plans",),
    "shutdown waits for the helm rollbacks still running (never killed)",
)  # fmt: skip
DAEMON_STOPPED: Final = _process(
    "daemon.stopped", INFO, ("seconds",), "the lease is released; the process exits 0",
)  # fmt: skip
LEADER_ACQUIRED: Final = _process(
    "leader.acquired", INFO, ("identity", "lease"), "this replica leads: it acts from now on",
)  # fmt: skip
LEADER_LOST: Final = _process(
    "leader.lost", INFO, ("identity", "lease"), "this replica stopped leading: it stops acting",
)  # fmt: skip
LEASE_ERROR: Final = _process(
    "lease.error", WARNING, ("error",),
    "the Lease cannot be read or renewed (once per change; `/readyz` shows it)",
    "check the API server and the controller's RBAC on leases",
)  # fmt: skip
LEASE_RECOVERED: Final = _process(
    "lease.recovered", INFO, (), "the Lease answers again",
)  # fmt: skip
PLANS_LOADED: Final = _process(
    "plans.loaded", INFO,
    ("directory", "added", "changed", "removed", "invalid", "fixed", "problems"),
    "the plans directory changed (one line per change, not per poll); `invalid` maps each "
    "plan to its problems with field paths and fixes",
)  # fmt: skip
PLAN_OUT_OF_SCOPE: Final = _process(
    "plan.out_of_scope", WARNING, ("plan", "namespaces", "fix"),
    "a plan in a namespace this controller does not serve (`--namespace`): never acted on",
    "add its namespace to --namespace and to the chart's rbac.namespaces",
)  # fmt: skip
PLANS_ORPHAN: Final = _process(
    "plans.orphan", WARNING, ("plan", "phase"),
    "a rollout whose plan was deleted while no controller ran: served as deleted (traffic to "
    "stable)",
)  # fmt: skip
PLANS_ORPHAN_UNREADABLE: Final = _process(
    "plans.orphan_unreadable", WARNING, ("plan", "error"),
    "such a rollout's snapshot is not a valid plan: left alone",
)  # fmt: skip
PLANS_ORPHANS_UNKNOWN: Final = _process(
    "plans.orphans_unknown", WARNING, ("error",),
    "the VirtualServices could not be listed to look for such rollouts",
)  # fmt: skip
PLAN_RELEASED: Final = _process(
    "plan.released", INFO, ("plan", "why"),
    "a deleted plan rests Idle on stable: no longer served (its job and series go)",
)  # fmt: skip
TICK_OVERLAP: Final = _process(
    "tick.overlap", INFO, ("job", "skipped"),
    "a run asked for while the previous run still went was coalesced; routine, at most once "
    "per job per minute",
)  # fmt: skip
TICK_MISSED: Final = _process(
    "tick.missed", WARNING, ("job", "due"),
    "a run could not start within 30 s of its time (every tick thread busy)",
    "look for a hung API server or Prometheus",
)  # fmt: skip
TICK_CRASHED: Final = _process(
    "tick.crashed", ERROR, ("job", "error"),
    "an exception escaped a job: a bug (a plan's own failure is `tick.failed`)",
    "report it with the log",
)  # fmt: skip
WATCH_EXPIRED: Final = _process(
    "watch.expired", INFO, ("what", "reason"),
    "a watch's resourceVersion is too old (410): re-listing",
)  # fmt: skip
WATCH_RETRYING: Final = _process(
    "watch.retrying", WARNING, ("what", "error", "delay"),
    "a watch or list failed (`error` names the verb, resource and status): retried after "
    "`delay` seconds; the 30 s resync covers the gap",
    "repeated: check the API server and RBAC (list, watch)",
)  # fmt: skip
WATCH_STUCK: Final = _process(
    "watch.stuck", WARNING, ("threads",),
    "watch threads still running after stop (a hung connection)",
)  # fmt: skip
WATCH_CALLBACK_FAILED: Final = _process(
    "watch.callback_failed", ERROR, ("plans", "reason", "error"),
    "the daemon's reaction to a change raised: a bug",
    "report it with the log",
)  # fmt: skip
NOTIFY_SENT: Final = _process(
    "notify.sent", DEBUG, ("target", "notice", "plan"), "a notification was delivered",
)  # fmt: skip
NOTIFY_FAILED: Final = _process(
    "notify.failed", WARNING,
    ("target", "url_file", "notice", "plan", "rolloutId", "attempts", "error"),
    "a notification was given up (never the URL: `url_file` names its Secret file)",
    "check the webhook and its Secret",
)  # fmt: skip
NOTIFY_DROPPED: Final = _process(
    "notify.dropped", WARNING,
    ("target", "notice", "plan", "rolloutId", "queue_size", "dropped_total", "why"),
    "the webhook's queue was full: the oldest notification was dropped (once per episode)",
)  # fmt: skip
NOTIFY_UNSENT: Final = _process(
    "notify.unsent", WARNING, ("target", "unsent", "why"),
    "notifications still queued at shutdown were not sent",
)  # fmt: skip
HTTP_REQUEST_FAILED: Final = _process(
    "http.request_failed", DEBUG, ("client", "error"),
    "a request to /healthz, /readyz or /metrics broke off (the client went away)",
)  # fmt: skip
HTTP_PROBE_FAILED: Final = _process(
    "http.probe_failed", ERROR, ("probe", "error"),
    "answering /healthz, /readyz or /metrics raised: a bug; the probe answers 500",
    "report it with the log",
)  # fmt: skip
TELEMETRY_FAILED: Final = _process(
    "telemetry.failed", ERROR, ("record", "error"),
    "/metrics could not digest an event (once; then only counted in "
    "canary_telemetry_errors_total); the rollout is not affected",
    "report it with the log",
)  # fmt: skip
LIBRARY_LOG: Final = _process(
    "library.log", WARNING, ("logger", "message"),
    "a warning or error of a library (urllib3, the kubernetes client, APScheduler), at the "
    "library's own level",
)  # fmt: skip

# --- the catalog -----------------------------------------------------------------------------

#: Every event by name.
SPECS: Final[Mapping[str, Spec]] = dict(_SPECS)
#: Every event name canary may log.
CATALOG: Final[frozenset[str]] = frozenset(SPECS)
#: The events of rollouts (log line + Kubernetes Event), as opposed to the process's own lines.
ROLLOUT_EVENTS: Final[frozenset[str]] = frozenset(
    name for name, spec in SPECS.items() if spec.kind is Kind.ROLLOUT
)

#: Events that end a rollout, with the outcome they give it (``plan.deleted`` ends one only if
#: it was still under way). Telemetry and `canary timeline` both read outcomes from events.
ROLLOUT_ENDINGS: Final[Mapping[str, Outcome]] = {
    ROLLOUT_SUCCEEDED: Outcome.SUCCEEDED,
    ROLLOUT_ROLLED_BACK: Outcome.ROLLED_BACK,
    ROLLOUT_ROLLBACK_FAILED: Outcome.ROLLBACK_FAILED,
    ROLLOUT_SUPERSEDED: Outcome.SUPERSEDED,
    ROLLOUT_BYPASSED: Outcome.BYPASSED,
    PLAN_DELETED: Outcome.ABANDONED,
}


def problem(name: str, level: str, fields: Mapping[str, object] | tuple[str, ...]) -> str:
    """What is wrong with logging ``name`` at ``level`` with ``fields`` ("" if nothing)."""
    spec = SPECS.get(name)
    if spec is None:
        return f"event {name!r} is not in the catalog (canary/core/events.py)"
    allowed = {spec.level.value} | ({Level.INFO.value} if spec.info_when else set())
    if spec.kind is Kind.PROCESS and spec.name == LIBRARY_LOG:
        allowed = {Level.WARNING.value, Level.ERROR.value, "critical"}
    if level not in allowed:
        return f"event {name} is logged at {level}; the catalog says {spec.level.value}"
    known = set(spec.fields) | (set(ROLLOUT_FIELDS) if spec.kind is Kind.ROLLOUT else set())
    extra = sorted(set(fields) - known)
    if extra:
        return f"event {name} carries {extra}, not in its catalog fields {sorted(known)}"
    return ""
