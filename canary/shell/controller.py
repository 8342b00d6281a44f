"""One tick: load state → observe → decide → act → save → emit.

The controller is the only place where the pure core meets the ports. Each tick re-reads the
persisted state and the live VirtualService (no decision depends on memory of an earlier tick);
it writes only when the decision changed something, in one request guarded by the
resourceVersion; on a conflict it re-reads and decides again. Events are emitted only after
the write that made them true succeeded, so a conflict retry never logs a transition twice.

Metrics for all plans that need a check this tick are asked for in one ``MetricsSource.sample``
call, so the adapter can batch them (docs/design.md §3).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from canary.core import events as ev
from canary.core.analysis import DEFAULT_SCRAPE_INTERVAL, check_window
from canary.core.decide import decide, plan_in_force, wants_check
from canary.core.errors import CanaryError, ConflictError, HelmError, TransientError
from canary.core.model import (
    Command,
    Decision,
    Event,
    MetricsSample,
    Observation,
    Phase,
    RollbackJob,
    RolloutState,
    StateError,
    command_from_json,
    state_from_json,
    state_to_json,
)
from canary.core.plan import Plan
from canary.core.ports import (
    CheckRequest,
    Clock,
    MetricsSource,
    ReleaseManager,
    RouteView,
    TrafficRouter,
    Workloads,
)
from canary.core.timestamps import iso
from canary.shell.emitter import Emitter

#: A conflict means someone else wrote between our read and write; three re-reads in a row
#: losing the race means a hot writer (a GitOps loop) and the next tick will try again.
MAX_CONFLICT_RETRIES = 3
#: Passes per tick: a helm rollback that just returned is confirmed in the same tick.
MAX_PASSES = 3


@dataclass
class Ports:
    router: TrafficRouter
    workloads: Workloads
    metrics: MetricsSource
    releases: ReleaseManager
    clock: Clock


@dataclass
class _Seen:
    """What one plan looks like on this tick, before the metrics are in."""

    plan: Plan  # the plan in force for the rollout under way (its snapshot)
    configured: Plan  # the plan as configured now (the next rollout's)
    view: RouteView
    state: RolloutState | None
    observation: Observation
    request: CheckRequest | None = None
    sample: MetricsSample | None = None


@dataclass
class Controller:
    """Drives ``decide`` for a set of plans over the ports."""

    ports: Ports
    emitter: Emitter
    plans: dict[str, Plan] = field(default_factory=dict)
    #: plan key → validation error of its current definition (the snapshot keeps running paused)
    invalid: dict[str, str] = field(default_factory=dict)
    #: plan keys whose definition was removed; their traffic goes to stable
    deleted: dict[str, Plan] = field(default_factory=dict)
    scrape_interval: timedelta = DEFAULT_SCRAPE_INTERVAL
    #: helm rollbacks run by this process, by plan key (the observation of their outcome)
    jobs: dict[str, RollbackJob] = field(default_factory=dict)
    #: called with every decision after it is persisted (the simulator records them)
    on_decision: Callable[[Plan, Decision], None] | None = None
    #: where helm rollbacks run: None inline (the simulator), else a pool (the daemon)
    runner: Executor | None = None
    #: leader election: asked before every tick and every write; None = always act (one
    #: process, the simulator). Losing the lease stops all acting at once (docs/design.md §4).
    leader: Callable[[], bool] | None = None
    #: called with the plan key when a helm rollback run by ``runner`` ended (the daemon ticks
    #: that plan at once to confirm it, rather than at its next interval)
    on_rollback_done: Callable[[str], None] | None = None
    #: called with the plan and the resourceVersion of every VirtualService write of ours (the
    #: daemon's watch then skips the event our own write causes)
    on_write: Callable[[Plan, str], None] | None = None

    def _may_act(self) -> bool:
        return self.leader is None or self.leader()

    # -- public ------------------------------------------------------------------------------

    def tick(self, keys: Iterable[str] | None = None) -> dict[str, Decision]:
        """One tick over the given plans (default: all), checks batched into one query.

        Plans with no check due this tick are decided (and acted on) before the metrics are
        asked for, so a slow Prometheus never delays a rollback, a move to stable or a step
        that needs no check."""
        if not self._may_act():
            return {}
        wanted = list(keys) if keys is not None else sorted({*self.plans, *self.deleted})
        out: dict[str, Decision] = {}
        todo = wanted
        for _ in range(MAX_PASSES):
            seen = self._observe_all(todo)
            now_ready = {k: s for k, s in seen.items() if s.request is None}
            checked = {k: s for k, s in seen.items() if s.request is not None}
            again = self._act_all(now_ready, out)
            if checked:
                self._sample(checked)
                again += self._act_all(checked, out)
            if not again:
                break
            todo = again
        return out

    def _act_all(self, seen: Mapping[str, _Seen], out: dict[str, Decision]) -> list[str]:
        again: list[str] = []
        for key, s in seen.items():
            try:
                decision = self._decide_and_act(s)
            except Exception as exc:  # one rollout's trouble never stops the others
                self._failed(key, "act", exc)
                continue
            out[key] = decision
            job = self.jobs.get(key)
            if decision.start_rollback is not None and not (job and job.running):
                again.append(key)  # helm ran inline: confirm it in this same tick
        return again

    # -- observe -----------------------------------------------------------------------------

    def _observe_all(self, keys: Iterable[str]) -> dict[str, _Seen]:
        seen: dict[str, _Seen] = {}
        for key in keys:
            try:
                s = self._observe(key)
            except Exception as exc:
                self._failed(key, "observe", exc)
                continue
            if s is not None:
                seen[key] = s
        return seen

    def _sample(self, seen: Mapping[str, _Seen]) -> None:
        """One metrics call for every check due (the adapter batches the queries)."""
        now = self.ports.clock.now()
        requests = [s.request for s in seen.values() if s.request is not None]
        samples: Mapping[str, MetricsSample] = {}
        try:
            samples = self.ports.metrics.sample(requests, now)
        except Exception as exc:  # the whole batch failed: every check is an ERROR
            samples = {
                r.plan: MetricsSample(
                    rollout_id=r.rollout_id, step=r.step, window=r.window, error=str(exc)
                )
                for r in requests
            }
        for key, s in seen.items():
            if s.request is not None:
                sample = samples.get(key) or MetricsSample(
                    rollout_id=s.request.rollout_id,
                    step=s.request.step,
                    window=s.request.window,
                    error="the metrics source returned no answer for this rollout",
                )
                s.observation = _with(s.observation, metrics=sample)

    def _observe(self, key: str) -> _Seen | None:
        configured = self.plans.get(key) or self.deleted.get(key)
        if configured is None:
            return None
        view = self.ports.router.read(configured)
        state: RolloutState | None = None
        lost = ""
        if view.state_raw is not None:
            try:
                state = state_from_json(view.state_raw)
            except StateError as exc:
                lost = str(exc)
        plan = plan_in_force(configured, state) or configured
        command: Command | None = None
        command_error = ""
        if view.command_raw:
            try:
                command = command_from_json(view.command_raw)
            except ValueError as exc:
                command_error = f"canary.dev/command is unreadable: {exc}"
        ns = plan.namespace
        # The history before the Deployments: a revision helm shows as deployed has its objects
        # applied already, so a canary = stable seen after it belongs to that revision (read the
        # other way round, a helm upgrade landing in between would become the base).
        release, release_error = None, ""
        try:
            release = self.ports.releases.history(plan.release)
        except Exception as exc:
            # Never freeze a rollout on it: checks, breaches and the move to stable go on;
            # only what needs the history (the base, helm) waits.
            what = str(exc) if isinstance(exc, CanaryError) else f"{type(exc).__name__}: {exc}"
            release_error = f"helm history of {plan.release.namespace}/{plan.release.name}: {what}"
        obs = Observation(
            stable=self.ports.workloads.status(ns, plan.workloads.stable),
            canary=self.ports.workloads.status(ns, plan.workloads.canary),
            live_weights=view.weights,
            route_error=view.route_error,
            state_lost=lost,
            command=command,
            command_error=command_error,
            release=release,
            release_error=release_error,
            rollback_job=self.jobs.get(key),
            plan_error=self.invalid.get(key, ""),
            plan_deleted=key in self.deleted,
        )
        seen = _Seen(plan=plan, configured=configured, view=view, state=state, observation=obs)
        if wants_check(state) and state is not None and state.step_started_at is not None:
            now = self.ports.clock.now()
            wp = check_window(
                plan.analysis, state.step_started_at, state.last_check_at, now, self.scrape_interval
            )
            if wp.due and wp.window is None:
                seen.observation = _with(
                    obs,
                    metrics=MetricsSample(
                        rollout_id=state.rollout_id,
                        step=state.step,
                        window=min(plan.analysis.window, now - state.step_started_at),
                        too_short=True,
                    ),
                )
            elif wp.due and wp.window is not None:
                seen.request = CheckRequest.for_plan(plan, state.rollout_id, state.step, wp.window)
        return seen

    # -- decide and act ----------------------------------------------------------------------

    def _decide_and_act(self, seen: _Seen) -> Decision:
        plan = seen.plan
        for attempt in range(MAX_CONFLICT_RETRIES):
            now = self.ports.clock.now()
            decision = decide(seen.configured, seen.state, seen.observation, now)
            if not decision.changed:
                break
            if not self._may_act():  # the lease was lost during this tick
                return Decision(state=decision.state)
            try:
                written = self.ports.router.write(
                    plan,
                    seen.view,
                    decision.weights,
                    state_to_json(decision.state),
                    decision.consume_command,
                )
                if self.on_write is not None:
                    self.on_write(plan, written.version)
                break
            except ConflictError:
                fresh = self._observe(plan.key)
                if attempt == MAX_CONFLICT_RETRIES - 1 or fresh is None:
                    return Decision(state=decision.state)  # nothing done; the next tick retries
                # keep the metrics sample: it was taken for this rollout and step
                fresh.observation = _with(fresh.observation, metrics=seen.observation.metrics)
                seen = fresh
        if decision.state.phase is not Phase.ROLLING_BACK:
            self.jobs.pop(plan.key, None)
        if decision.start_rollback is not None and self._may_act():
            # helm first, then the log lines and Events: nothing stands between the weight
            # write and the rollback (with a runner, helm is already running in its worker)
            rb = decision.state.rollback
            self._rollback(plan, decision.start_rollback, rb.attempts if rb else 0)
        self._emit(plan, decision)
        if self.on_decision is not None:
            self.on_decision(plan, decision)
        return decision

    def _failed(self, key: str, stage: str, exc: Exception) -> None:
        """Report a plan's tick that could not complete; the next tick starts afresh. An
        exception that is not a CanaryError is a bug of ours: logged with its traceback."""
        ns, _, name = key.partition("/")
        fields: dict[str, Any] = {"stage": stage, "error": str(exc) or repr(exc)}
        if isinstance(exc, TransientError):
            fields["kind"] = "transient"
        elif isinstance(exc, CanaryError):
            fields["kind"] = type(exc).__name__
        else:
            fields["kind"] = "bug"
            fields["traceback"] = "".join(traceback.format_exception(exc)).strip()
        event = Event(name=ev.TICK_FAILED, fields=fields, warning=True)
        self.emitter.emit(ns, name, event, at=iso(self.ports.clock.now()))

    def _emit(self, plan: Plan, decision: Decision) -> None:
        at = iso(self.ports.clock.now())
        for event in decision.events:
            self.emitter.emit(
                plan.namespace, plan.name, event, at=at, phase=decision.state.phase.value
            )

    def _rollback(self, plan: Plan, revision: int, attempt: int) -> None:
        """Run helm after the weights reached stable (the write above succeeded).

        Without a ``runner`` (the simulator) helm runs inline; with one (the daemon) it runs in
        a worker so other rollouts' ticks never wait for helm, and decide sees the job
        ``running`` until it ends. Either way the outcome is an observation for decide.
        """
        key = plan.key

        def run() -> None:
            try:
                self.ports.releases.rollback(plan.release, revision, plan.rollback.timeout)
                job = RollbackJob(revision=revision, ok=True, attempt=attempt)
            except HelmError as exc:
                job = RollbackJob(revision=revision, error=str(exc), attempt=attempt)
            except Exception as exc:  # a bug in the release port: a failed attempt, said so
                job = RollbackJob(
                    revision=revision, error=f"{type(exc).__name__}: {exc}", attempt=attempt
                )
            self.jobs[key] = job
            if self.runner is not None and self.on_rollback_done is not None:
                self.on_rollback_done(key)

        if self.runner is None:
            run()
            return
        self.jobs[key] = RollbackJob(revision=revision, running=True, attempt=attempt)
        try:
            self.runner.submit(run)
        except Exception as exc:  # pool shut down, no thread to be had: a failed attempt
            self.jobs[key] = RollbackJob(
                revision=revision, error=f"could not start helm: {exc}", attempt=attempt
            )


def _with(obs: Observation, **changes: Any) -> Observation:
    return replace(obs, **changes)
