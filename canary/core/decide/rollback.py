"""RollingBack: traffic to stable first, then one helm rollback to the base revision, confirmed
from the release history (docs/design.md §1, §4, §7).

Each tick first puts all traffic on stable (never onto an unavailable stable: then the weights
are held and nothing else happens). Then :func:`classify` names the one :class:`Situation` the
rollback is in, from the observation and the state alone, and the handler of that situation
acts. The situations, in the order they are tested:

=====================  ===================================================================
situation              what the handler does
=====================  ===================================================================
RELEASE_LOST           the history has not been readable for ``rollback.timeout`` since the
                       rollback (or its last attempt) started, and no helm of ours runs:
                       RollbackFailed, naming the error (traffic stays on stable)
RELEASE_UNREAD         nothing: the history could not be read this tick (``release.unreadable``)
CONFIRMED              our ``Rollback to <base>`` is deployed and the canary equals stable:
                       ``rollback.helm_succeeded``, RolledBack
CANARY_CATCHING_UP     ours is deployed, the canary still differs, within ``rollback.timeout``:
                       wait (``rollback.waiting``)
CANARY_STILL_DIFFERS   the same past ``rollback.timeout``: RollbackFailed (traffic on stable)
MOVED_ON               a newer revision that is not ours: no rollback over it, Superseded;
                       the newer canary starts its own rollout
STUCK_PENDING          our revision is still ``pending-*`` long after any helm of ours could
                       run: RollbackFailed, naming the fix
HELM_BUSY              the release is ``pending-*`` or our helm runs: wait
NO_BASE                no base revision to roll back to: RollbackFailed
HISTORY_LAGS           helm exited 0, the history does not show it yet: wait
AWAITING_TRACE         an attempt of another process shows no trace yet: wait up to
                       :data:`HELM_RECORD_GRACE`
LOST_ATTEMPT           that attempt never reached helm: run it again (not a failure)
ATTEMPT_FAILED         our attempt ended without the rollback: ``rollback.helm_failed``, then
                       RollbackFailed once ``rollback.retries`` attempts failed
BACKING_OFF            the backoff after a failure has not elapsed: wait
START                  start ``helm rollback`` (``rollback.helm_started``)
=====================  ===================================================================
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from canary.core import events as ev
from canary.core.decide.tick import (
    HELM_RECORD_GRACE,
    ROLLBACK_PENDING_GRACE,
    Tick,
    end,
    record_base,
    rollback_backoff,
    start,
    supersede,
)
from canary.core.durations import format_seconds
from canary.core.model import (
    ALL_STABLE,
    Outcome,
    Phase,
    ReleaseInfo,
    Revision,
    RollbackJob,
    RollbackProgress,
    rollback_description,
)
from canary.core.timestamps import iso_or_none


class Situation(enum.Enum):
    """Where a rollback stands on this tick; see the module docstring."""

    RELEASE_LOST = "release lost"
    RELEASE_UNREAD = "release unread"
    CONFIRMED = "confirmed"
    CANARY_CATCHING_UP = "canary catching up"
    CANARY_STILL_DIFFERS = "canary still differs"
    MOVED_ON = "moved on"
    STUCK_PENDING = "stuck pending"
    HELM_BUSY = "helm busy"
    NO_BASE = "no base"
    HISTORY_LAGS = "history lags"
    AWAITING_TRACE = "awaiting trace"
    LOST_ATTEMPT = "lost attempt"
    ATTEMPT_FAILED = "attempt failed"
    BACKING_OFF = "backing off"
    START = "start"


@dataclass(frozen=True)
class View:
    """The facts :func:`classify` read, handed to the handler that acts on them."""

    progress: RollbackProgress
    #: this attempt's helm job, if this process ran it (an earlier attempt's outcome dropped)
    job: RollbackJob | None
    base: int | None
    release: ReleaseInfo | None = None
    deployed: Revision | None = None


def traffic_reverted(t: Tick) -> None:
    """All traffic is on stable again; say how long that took after the first failed check."""
    first = t.s.first_fail_at
    t.emit(
        ev.ROLLBACK_TRAFFIC_REVERTED,
        firstFailAt=iso_or_none(first),
        secondsSinceFirstFail=(t.now - first).total_seconds() if first else None,
    )


def rolling_back(t: Tick) -> None:
    """The RollingBack handler: stable first, then whatever the situation calls for."""
    if t.live != ALL_STABLE:
        if not t.write(ALL_STABLE, "rollback"):
            return  # stable unavailable: hold and alert, no helm
        traffic_reverted(t)
    situation, view = classify(t)
    HANDLERS[situation](t, view)


def classify(t: Tick) -> tuple[Situation, View]:
    """The one situation the rollback is in. Reads the tick, changes nothing."""
    obs, s = t.obs, t.s
    rb = s.rollback or RollbackProgress(limit=t.plan.rollback.retries)
    job = obs.rollback_job
    if job is not None and not job.running and job.attempt and job.attempt != rb.attempts:
        job = None  # an earlier attempt's outcome says nothing about this one
    rel = obs.release
    if rel is None:
        since = max((at for at in (s.step_started_at, rb.started_at) if at), default=None)
        lost = since is not None and t.now - since >= t.plan.rollback.timeout
        if lost and not (job is not None and job.running):
            return Situation.RELEASE_LOST, View(rb, job, s.base_revision)
        return Situation.RELEASE_UNREAD, View(rb, job, s.base_revision)
    base = s.base_revision
    deployed = rel.deployed
    view = View(rb, job, base, rel, deployed)
    running = job is not None and job.running
    # Revisions after the one that brought the canary (after the base, if that is unknown).
    floor = s.revision if s.revision is not None else base
    newer = deployed is not None and floor is not None and deployed.number > floor
    ours = (
        newer
        and deployed is not None
        and base is not None
        and deployed.description == rollback_description(base)
    )
    if ours and not rel.pending and not running:
        if not obs.canary_differs:
            return Situation.CONFIRMED, view
        since = rb.started_at or s.step_started_at or t.now
        # The Deployment gets up to the rollback timeout to equal stable again.
        if t.now - since < t.plan.rollback.timeout:
            return Situation.CANARY_CATCHING_UP, view
        return Situation.CANARY_STILL_DIFFERS, view
    # A newer revision that is not our rollback: CI moved on. Without the canary's revision,
    # a newer canary (neither ours nor stable) is what tells it apart from the canary's own.
    new_canary = obs.canary_differs and obs.canary.template_hash != s.canary_hash
    moved_on = newer and (s.revision is not None or new_canary)
    if moved_on and not ours and not rel.pending and deployed is not None:
        return Situation.MOVED_ON, view
    latest = rel.latest
    if (
        rel.pending
        and not running
        and base is not None
        and latest is not None
        and latest.description == rollback_description(base)
        and rb.started_at is not None
        and t.now - rb.started_at > t.plan.rollback.timeout + ROLLBACK_PENDING_GRACE
    ):
        return Situation.STUCK_PENDING, view
    if rel.pending or running:
        return Situation.HELM_BUSY, view
    if base is None:
        return Situation.NO_BASE, view
    if rb.attempts > rb.failures:  # an attempt is outstanding
        started = rb.started_at or t.now
        if job is not None and job.ok and t.now - started < t.plan.rollback.timeout:
            return Situation.HISTORY_LAGS, view
        if job is None:
            # Not this process's attempt (it restarted, or the lease moved) and the history
            # shows no trace of it. A helm that was just started records its pending revision
            # within seconds: after HELM_RECORD_GRACE that attempt never happened.
            if t.now - started < HELM_RECORD_GRACE:
                return Situation.AWAITING_TRACE, view
            return Situation.LOST_ATTEMPT, view
        return Situation.ATTEMPT_FAILED, view
    if rb.failed_at is None or t.now >= rb.failed_at + rollback_backoff(rb.attempts):
        return Situation.START, view
    return Situation.BACKING_OFF, view


# -- one handler per situation -------------------------------------------------------------------


def _wait(t: Tick, view: View) -> None:
    """Nothing to do on this tick."""


def _release_lost(t: Tick, view: View) -> None:
    """Never RollingBack forever on a history nobody can read (helm's storage is not Secrets,
    RBAC, a release that is gone): say so, with traffic on stable, and let a human decide."""
    name = t.plan.release
    reason = (
        f"the history of helm release {name.namespace}/{name.name} could not be read for "
        f"{format_seconds(t.plan.rollback.timeout)} ({t.obs.release_error or 'no history'}); "
        "traffic is on stable. Fix what the error names, then `canary abort` retries"
    )
    _failed(t, reason)


def _failed(t: Tick, reason: str, **changes: Any) -> None:
    t.update(phase=Phase.ROLLBACK_FAILED, last=end(t, Outcome.ROLLBACK_FAILED, reason), **changes)
    t.emit(ev.ROLLOUT_ROLLBACK_FAILED, warning=True, reason=reason)


def _confirmed(t: Tick, view: View) -> None:
    assert view.deployed is not None
    number, job = view.deployed.number, view.job
    t.emit(
        ev.ROLLBACK_HELM_SUCCEEDED,
        revision=number,
        baseRevision=view.base,
        confirmedFrom="helm exit 0 and history" if job and job.ok else "history",
    )
    reason = t.s.reason
    t.update(
        phase=Phase.ROLLED_BACK,
        rollback_revision=number,
        last=end(t, Outcome.ROLLED_BACK, reason),
    )
    t.emit(ev.ROLLOUT_ROLLED_BACK, reason=reason, revision=number, baseRevision=view.base)


def _canary_catching_up(t: Tick, view: View) -> None:
    assert view.deployed is not None
    t.alert_once(
        ev.ROLLBACK_WAITING,
        f"revision {view.deployed.number} is deployed; waiting for the canary Deployment to "
        "equal stable again",
        key="rollback.canary",
    )


def _canary_still_differs(t: Tick, view: View) -> None:
    """The rollback did not do what it is for (the base's canary is not stable's): a human
    decides; traffic stays on stable."""
    assert view.deployed is not None
    reason = (
        f"helm rolled back to {view.base} (revision {view.deployed.number}) but the canary "
        f"Deployment still differs from stable {format_seconds(t.plan.rollback.timeout)} "
        "later; traffic stays on stable"
    )
    _failed(t, reason, rollback_revision=view.deployed.number)


def _moved_on(t: Tick, view: View) -> None:
    assert view.deployed is not None
    supersede(t, f"release moved on to revision {view.deployed.number}; no rollback over it")
    if t.obs.canary_differs:
        start(t, 1, view.base)
    else:
        t.update(phase=Phase.IDLE, spec=None, reason="")
        record_base(t)


def _stuck_pending(t: Tick, view: View) -> None:
    """Our rollback's revision is still pending long after any helm could be running: helm
    died with its controller, or a hook failed. Helm will not settle it by itself."""
    assert view.release is not None and view.release.latest is not None
    latest, name = view.release.latest, t.plan.release.name
    reason = (
        f"release {name} revision {latest.number} is still {latest.status.value} "
        f"{format_seconds(t.plan.rollback.timeout + ROLLBACK_PENDING_GRACE)} after the rollback "
        f"started; settle it (e.g. helm rollback {name} {view.base}), then `canary abort` retries"
    )
    _failed(t, reason)


def _helm_busy(t: Tick, view: View) -> None:
    rel, job, name = view.release, view.job, t.plan.release.name
    assert rel is not None
    busy = (
        f"release {name} is {rel.latest.status.value if rel.latest else 'busy'}"
        if rel.pending
        else f"helm rollback {name} {job.revision if job else ''} is running"
    )
    t.alert_once(ev.ROLLBACK_WAITING, f"{busy}; waiting for helm to settle")


def _no_base(t: Tick, view: View) -> None:
    t.update(phase=Phase.ROLLBACK_FAILED, last=end(t, Outcome.ROLLBACK_FAILED, "no base"))
    t.emit(ev.ROLLOUT_ROLLBACK_FAILED, warning=True, reason="no base revision to roll back to")


def _history_lags(t: Tick, view: View) -> None:
    """helm exited 0 but the history we read does not show it yet (a cached read): wait for it
    rather than run a second rollback for one breach."""
    assert view.base is not None
    t.alert_once(
        ev.ROLLBACK_WAITING,
        "helm rollback exited 0; waiting for the history to show "
        f"'{rollback_description(view.base)}'",
        key="rollback.history",
    )


def _awaiting_trace(t: Tick, view: View) -> None:
    t.alert_once(
        ev.ROLLBACK_WAITING,
        f"attempt {view.progress.attempts} was started by a previous controller and shows no "
        f"trace in the release history yet; waiting up to {format_seconds(HELM_RECORD_GRACE)} "
        "for helm to record it",
        key="rollback.trace",
    )


def _lost_attempt(t: Tick, view: View) -> None:
    """That attempt never reached helm: it runs again, with no backoff and not counted as a
    failure."""
    rb = view.progress
    _start_helm(t, replace(view, progress=replace(rb, attempts=rb.attempts - 1)), resumed=True)


def _attempt_failed(t: Tick, view: View) -> None:
    job, base = view.job, view.base
    assert job is not None and base is not None
    if not job.ok:
        error = job.error or "helm rollback failed"
    else:
        error = f"no deployed revision described '{rollback_description(base)}' after the attempt"
    rb = replace(view.progress, failures=view.progress.attempts, error=error, failed_at=t.now)
    t.update(rollback=rb)
    t.emit(ev.ROLLBACK_HELM_FAILED, warning=True, attempt=rb.attempts, error=error)
    if rb.failures >= rb.limit:
        _failed(t, f"helm rollback to {base} failed {rb.failures} times: {error}")
    # else: the next attempt waits for its backoff (BACKING_OFF on the following ticks)


def _start(t: Tick, view: View) -> None:
    _start_helm(t, view, resumed=False)


def _start_helm(t: Tick, view: View, *, resumed: bool) -> None:
    rb = replace(view.progress, attempts=view.progress.attempts + 1, started_at=t.now)
    t.update(rollback=rb)
    t.rollback_rev = view.base
    fields: dict[str, Any] = {
        "release": t.plan.release.name,
        "revision": view.base,
        "attempt": rb.attempts,
        "timeout": format_seconds(t.plan.rollback.timeout),
    }
    if resumed:
        fields["resumed"] = (
            "the previous attempt left no trace in the release history (the controller "
            "stopped before helm recorded it)"
        )
    t.emit(ev.ROLLBACK_HELM_STARTED, **fields)


HANDLERS: Final[Mapping[Situation, Callable[[Tick, View], None]]] = {
    Situation.RELEASE_LOST: _release_lost,
    Situation.RELEASE_UNREAD: _wait,
    Situation.CONFIRMED: _confirmed,
    Situation.CANARY_CATCHING_UP: _canary_catching_up,
    Situation.CANARY_STILL_DIFFERS: _canary_still_differs,
    Situation.MOVED_ON: _moved_on,
    Situation.STUCK_PENDING: _stuck_pending,
    Situation.HELM_BUSY: _helm_busy,
    Situation.NO_BASE: _no_base,
    Situation.HISTORY_LAGS: _history_lags,
    Situation.AWAITING_TRACE: _awaiting_trace,
    Situation.LOST_ATTEMPT: _lost_attempt,
    Situation.ATTEMPT_FAILED: _attempt_failed,
    Situation.BACKING_OFF: _wait,
    Situation.START: _start,
}
