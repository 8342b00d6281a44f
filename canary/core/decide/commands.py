"""``canary.dev/command``: applied to the rollout it names, consumed in the same write as its
effect (docs/design.md §4). Which phases each command applies to is :mod:`canary.core.commands`'
rule, shared with the CLI."""

from __future__ import annotations

from dataclasses import replace

from canary.core import commands as rules
from canary.core import events as ev
from canary.core.decide.flow import advance, begin_rollback
from canary.core.decide.rollback import rolling_back
from canary.core.decide.tick import Tick, enter_step, start
from canary.core.model import (
    CommandName,
    PauseKind,
    Phase,
    RollbackProgress,
)


def command(t: Tick) -> bool:
    """Apply ``canary.dev/command``; consumed in the same write. True if the phase changed."""
    obs, s = t.obs, t.s
    if obs.command_error:
        t.consume = True
        t.emit(ev.COMMAND_DROPPED, warning=True, reason=obs.command_error)
        return False
    cmd = obs.command
    if cmd is None:
        return False
    t.consume = True
    if cmd.rollout_id != s.rollout_id:
        current = s.rollout_id or "none"
        t.emit(
            ev.COMMAND_DROPPED,
            warning=True,
            cmd=cmd.cmd.value,
            by=cmd.by,
            reason=f"command for rollout {cmd.rollout_id}, but the current rollout is {current}",
        )
        return False

    def drop(reason: str) -> bool:
        t.emit(ev.COMMAND_DROPPED, warning=True, cmd=cmd.cmd.value, by=cmd.by, reason=reason)
        return False

    def accept() -> None:
        t.emit(ev.COMMAND_ACCEPTED, cmd=cmd.cmd.value, by=cmd.by, phase=s.phase.value)

    name, phase = cmd.cmd, s.phase
    by = cmd.by or "unknown"
    if not rules.applies(name, phase):
        return drop(rules.not_applicable(name, phase))
    if name is CommandName.ABORT:
        if phase is Phase.ROLLBACK_FAILED:
            accept()
            rb = s.rollback or RollbackProgress()
            t.update(
                phase=Phase.ROLLING_BACK,
                rollback=replace(rb, limit=rb.attempts + 1, failed_at=None),
                reason=f"abort by {by}: one more helm rollback attempt",
            )
            t.emit(ev.ROLLBACK_STARTED, warning=True, reason=t.s.reason)
            rolling_back(t)  # the weights are on stable already: helm starts now
            return True
        accept()
        begin_rollback(t, f"aborted by {by}")
        return True
    if name is CommandName.PAUSE:
        accept()
        t.update(phase=Phase.PAUSED, paused=PauseKind.MANUAL, reason=f"paused by {by}")
        t.emit(ev.ROLLOUT_PAUSED, reason=t.s.reason, kind=PauseKind.MANUAL.value)
        return True
    if name is CommandName.RESUME:
        if s.paused is PauseKind.INVALID_PLAN and obs.plan_error:
            return drop(f"the plan is still invalid: {obs.plan_error}")
        if not obs.canary.available:
            return drop("the canary Deployment is not available; traffic stays on stable")
        accept()
        t.emit(ev.ROLLOUT_RESUMED, step=s.step, by=by)
        enter_step(t, s.step, f"resumed by {by}")
        return True
    if name in (CommandName.PROMOTE, CommandName.PROMOTE_FULL):
        if obs.plan_error:
            return drop(f"the plan is invalid: {obs.plan_error}")
        if not obs.canary.available:
            return drop("the canary Deployment is not available")
        accept()
        full = name is CommandName.PROMOTE_FULL
        t.emit(ev.ROLLOUT_PROMOTED, by=by, full=full, step=s.step)
        if full:
            t.update(step=len(t.plan.steps) - 1)
            advance(t, f"promoted to 100 % by {by}")
        else:
            advance(t, f"promoted by {by}")
        return True
    # retry
    if obs.canary.template_hash != s.canary_hash:
        return drop(
            "the rolled-back canary is not deployed; run the helm upgrade with it again, then retry"
        )
    accept()
    start(t, s.attempt + 1, s.base_revision)
    return True
