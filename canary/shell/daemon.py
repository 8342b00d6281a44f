"""``canary run``: the in-cluster daemon (docs/design.md §3–§8).

It wires the ports to their adapters and keeps the controller ticking:

* **Plans** come from a directory (:class:`canary.plans.directory.PlanSource`), polled every
  :data:`PLAN_POLL` and reconciled into the controller's ``plans`` / ``invalid`` / ``deleted``;
  a bad plan is reported (log line + Kubernetes Event) and every other plan keeps running.
* **Scheduling** (APScheduler 3): one interval job per plan, ``max_instances=1`` and
  ``coalesce=True``, whose interval follows the rollout's phase (:func:`cadence`); a watch on
  the plans' Deployments and VirtualServices, and the end of a helm rollback, run a plan's job
  at once. Jobs due together are gathered by :class:`TickBatcher` into one
  ``Controller.tick(keys)``, so their checks go to Prometheus as one batch (docs/design.md §3).
  Missed and overlapping runs are logged. Helm runs in its own pool, so a slow helm never holds
  a tick; a slow Prometheus costs at most its query timeout per batch.
* **Leadership** (:class:`canary.adapters.lease.LeaderElector` on its own thread): every tick,
  write and helm call asks it first; a standby ticks as a no-op and stays ready.
* **HTTP** on ``--port``: ``/healthz``, ``/readyz``, ``/metrics``
  (:mod:`canary.adapters.httpserver`, :mod:`canary.shell.health`,
  :mod:`canary.shell.telemetry`).
* **SIGTERM / SIGINT**: no new tick starts, the tick in flight finishes, a running helm is
  waited for (never killed, design §7), the lease is released, and the process exits 0. With no
  helm running this takes well under :data:`SHUTDOWN_BUDGET`.

The daemon never writes anything itself: every change to the cluster goes through
``Controller.tick`` (one request per rollout, weights and state together), so stopping at any
point leaves no half-written state.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
    JobSubmissionEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor as JobPool
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

from canary.adapters.cache import CachedHistory, CachedRouter, CachedWorkloads, ClusterCache
from canary.adapters.helm import DEFAULT_ROLLBACK_GRACE, HelmReleases
from canary.adapters.httpserver import HealthServer
from canary.adapters.kube import BackgroundEventSink, KubeEventSink, connect
from canary.adapters.lease import LeaderElector
from canary.adapters.notify import Notifications, notifier_from_files
from canary.adapters.prometheus import PrometheusConfig, PrometheusSource
from canary.adapters.watch import Interest, Watcher
from canary.config.settings import ControllerConfig
from canary.core import events as ev
from canary.core.errors import ConfigError, NotFoundError
from canary.core.model import (
    Decision,
    Event,
    Phase,
    StateError,
    state_from_json,
)
from canary.core.plan import Plan
from canary.core.ports import Clock, SystemClock
from canary.core.snapshot import plan_from_spec
from canary.plans.directory import PlanSource
from canary.plans.planset import NO_PLANS, Update, reconcile
from canary.shell.controller import Controller, Ports
from canary.shell.emitter import Emitter
from canary.shell.health import Health
from canary.shell.scheduling import (
    IDLE_INTERVAL,
    MISFIRE_GRACE,
    OVERLAP_LOG_EVERY,
    TICK_WORKERS,
    TickBatcher,
    cadence,
)
from canary.shell.telemetry import Telemetry, TimedReleases

log = structlog.get_logger("canary")

#: How often the plans directory is checked for a change (a few stat calls). The kubelet
#: refreshes a mounted ConfigMap within about a minute; 2 s adds nothing noticeable to that.
PLAN_POLL = timedelta(seconds=2)
#: Concurrent helm rollbacks. Each is a process waiting on `--wait`; a breach of many rollouts
#: at once should not queue one release's rollback behind another's.
HELM_WORKERS = 4
#: SIGTERM with no helm running: done well within this (the tick in flight is bounded by the
#: API and Prometheus timeouts).
SHUTDOWN_BUDGET = 10.0
#: On SIGTERM, how long the ticks in flight get to finish (a tick waiting on a hung Prometheus
#: takes up to its query timeout and retry, ~10 s): after this the lease is released anyway
#: and the unfinished tick can no longer write (it asks the lease first), so exit stays < 10 s.
TICK_DRAIN = 6.0
#: Time the notifier gets to flush on shutdown (it never delays a rollback, nor an exit much).
NOTIFY_FLUSH = 2.0
#: The seconds a SIGTERM may take beyond the longest helm rollback ``--timeout``: the tick in
#: flight, helm's own grace past its timeout, the lease release, then the notifier's and the
#: Event sink's flush. A pod's terminationGracePeriodSeconds must exceed timeout + this (80 s);
#: the chart's ``canary.shutdownMarginSeconds`` is this number (tests/test_deploy.py checks).
SHUTDOWN_MARGIN = int(
    TICK_DRAIN + DEFAULT_ROLLBACK_GRACE.total_seconds() + SHUTDOWN_BUDGET + 2 * NOTIFY_FLUSH
)


def identity() -> str:
    """This replica's name in the Lease: the pod name (the Downward API's ``POD_NAME``, else
    the hostname, which is the pod name in Kubernetes) plus a random suffix, so a restarted
    container never mistakes the previous one's lease for its own."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:6]}"


class Daemon:
    """One replica of the controller. :meth:`run` blocks until SIGTERM/SIGINT or :meth:`stop`."""

    def __init__(
        self,
        config: ControllerConfig,
        *,
        clock: Clock | None = None,
        host: str = "0.0.0.0",  # a pod serves its probes on its own IP
        name: str | None = None,
    ) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.identity = name or identity()
        self._stop = threading.Event()
        self._stopping = False
        self._was_leader = False
        self._overlaps: dict[str, tuple[float, int]] = {}
        self._inflight: set[str] = set()  # plans whose job is running now
        self._again: set[str] = set()  # plans asked for while their job ran: run once more
        self._jobs_lock = threading.Condition()
        self._sync_lock = threading.RLock()
        self._registered: set[str] = set()
        self._lease_error = ""
        self.unfinished = False
        self._loaded = False
        self.update: Update = NO_PLANS
        self.telemetry = Telemetry()
        self.notifier: Notifications = notifier_from_files(
            config.notifications.slack_webhook_file, config.notifications.webhook_file
        )
        # Four clients, so that nothing routine queues in front of a rollback's write
        # (docs/running.md §10): the ticks' (rate-limited by kubeApi.qps/burst), the watches'
        # and the Lease's (not limited), and the Events' (below, limited per plan).
        self.api = connect(
            config.kubeconfig, config.context, qps=config.kube_api.qps, burst=config.kube_api.burst
        )
        self.watch_api = connect(config.kubeconfig, config.context, qps=0)
        self.lease_api = connect(config.kubeconfig, config.context, qps=0)
        # Ticks read the objects from memory, fed by the watches (a GET only while a namespace
        # is not listed yet, its watch is failing, or after a write conflict)
        self.cache = ClusterCache()
        self.router = CachedRouter(self.api, self.cache)
        # Events have a client (and rate limit) of their own and post from their own thread
        self.sink = BackgroundEventSink(KubeEventSink(connect(config.kubeconfig, config.context)))
        self.prometheus = PrometheusSource(
            PrometheusConfig(
                url=config.prometheus_url,
                bearer_token_file=config.prometheus_auth.bearer_token_file,
                username=config.prometheus_auth.username,
                password_file=config.prometheus_auth.password_file,
                ca_file=config.prometheus_auth.ca_file,
            )
        )
        self.helm = helm = HelmReleases(
            config.helm_binary, kube_context=config.context, kubeconfig=config.kubeconfig
        )
        releases = TimedReleases(CachedHistory(self.api, helm, self.cache), self.telemetry)
        self.elector = LeaderElector(
            self.lease_api,
            name=config.lease.name,
            namespace=config.lease.namespace,
            identity=self.identity,
            lease_duration=config.lease.duration,
            renew_deadline=config.lease.renew_deadline,
            retry_period=config.lease.retry_period,
        )
        self.helm_pool = ThreadPoolExecutor(HELM_WORKERS, thread_name_prefix="canary-helm")
        self.controller = Controller(
            ports=Ports(
                router=self.router,
                workloads=CachedWorkloads(self.api, self.cache),
                metrics=self.prometheus,
                releases=releases,
                clock=self.clock,
            ),
            emitter=Emitter(self.sink, listeners=[self.telemetry, self.notifier]),
            scrape_interval=config.scrape_interval,
            runner=self.helm_pool,
            leader=lambda: self.elector.is_leader,
            on_rollback_done=self.trigger,
            on_write=lambda plan, version: self.watcher.note_own_write(
                plan.namespace, plan.virtual_service.name, version
            ),
        )
        self.batcher = TickBatcher(self._tick_batch)
        self.plans = PlanSource(config.plans)
        self.watcher = Watcher(self.watch_api, self._on_change, cache=self.cache)
        self.telemetry.watch_cache(lambda: (self.cache.stats.hits, self.cache.stats.misses))
        self.scheduler = BackgroundScheduler(
            executors={"default": JobPool(TICK_WORKERS)},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": MISFIRE_GRACE,
            },
            timezone=UTC,
        )
        self.scheduler.add_listener(
            self._on_job_trouble, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_ERROR
        )
        self.probes = Health(
            plans_dir=config.plans,
            loaded=lambda: self._loaded,
            serving=lambda: bool(self._served()),
            telemetry=self.telemetry,
            lease=self.elector,
            prometheus=self.prometheus,
            helm=helm,
            clock=self.clock,
        )
        self.health = HealthServer(
            host,
            config.port,
            self.telemetry.registry,
            ready=self.probes.ready,
            alive=self.probes.alive,
        )
        # The lease has its own stop: it is released last, after helm and the tick in flight,
        # so no standby acts while this replica's helm still runs.
        self._lease_stop = threading.Event()
        self._elector_thread = threading.Thread(
            target=self.elector.run, args=(self._lease_stop,), name="canary-lease", daemon=True
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        helm = self.helm.version()  # no helm, no rollback: refuse to start (exit 2)
        log.info(
            ev.DAEMON_STARTED, identity=self.identity, config=self.config.describe(), helm=helm
        )
        try:
            self.health.start()
        except OSError as exc:  # the port is taken: nothing else has started yet
            raise ConfigError(
                f"cannot serve /healthz, /readyz and /metrics on port {self.config.port}: {exc}"
            ) from None
        self.reload_plans()
        self._elector_thread.start()
        self.watcher.start()
        self.scheduler.add_job(
            self.reload_plans,
            "interval",
            seconds=PLAN_POLL.total_seconds(),
            id="plans",
            name="reload plans",
        )
        self.scheduler.start()

    def run(self) -> int:
        """Start, serve until told to stop, shut down cleanly. The process's exit code."""
        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, self._on_signal)
            # `kill -USR1` dumps every thread's stack to stderr: what a wedged daemon is doing
            faulthandler.register(signal.SIGUSR1, all_threads=True)
        # APScheduler logs skipped runs itself; we log them as events instead
        logging.getLogger("apscheduler").setLevel(logging.ERROR)
        try:
            self.start()
            while not self._stop.wait(0.5):
                self._watch_leadership()
            self.shutdown()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return 0

    def stop(self) -> None:
        self._stop.set()

    def _on_signal(self, signum: int, _frame: Any) -> None:
        log.info(ev.DAEMON_STOPPING, signal=signal.Signals(signum).name)
        self._stop.set()

    def shutdown(self) -> None:
        """Start no new work, finish the tick in flight, wait for helm, release the lease."""
        self._stopping = True
        self._stop.set()
        started = time.monotonic()
        # Stop scheduling without waiting inside APScheduler (it would hold its job-store lock,
        # which a finishing tick needs), then wait for the ticks in flight ourselves.
        with contextlib.suppress(Exception):
            self.scheduler.shutdown(wait=False)
        deadline = time.monotonic() + TICK_DRAIN
        with self._jobs_lock:
            while self._inflight and time.monotonic() < deadline:
                self._jobs_lock.wait(timeout=max(0.0, deadline - time.monotonic()))
            unfinished = sorted(self._inflight)
        if unfinished:
            log.warning(ev.DAEMON_TICK_UNFINISHED, plans=unfinished)
        #: a tick thread still waits on I/O: the process must not wait for it at exit
        self.unfinished = bool(unfinished)
        self.watcher.stop()
        running = [k for k, job in self.controller.jobs.items() if job.running]
        if running:
            log.info(ev.DAEMON_WAITING_FOR_HELM, plans=running)
        # A running helm is never killed (docs/design.md §7); one still queued behind the workers is
        # not started now (the grace period is sized for one helm): the next leader runs it
        # once HELM_RECORD_GRACE shows it left no trace.
        self.helm_pool.shutdown(wait=True, cancel_futures=True)
        self._lease_stop.set()
        self._elector_thread.join(timeout=SHUTDOWN_BUDGET)  # releases the lease on its way out
        self.notifier.close(NOTIFY_FLUSH)
        self.sink.close(NOTIFY_FLUSH)
        self.health.stop()
        log.info(ev.DAEMON_STOPPED, seconds=round(time.monotonic() - started, 3))

    def _watch_leadership(self) -> None:
        error = self.elector.last_error
        if error != self._lease_error:
            self._lease_error = error
            if error:
                log.warning(ev.LEASE_ERROR, error=error)
            else:
                log.info(ev.LEASE_RECOVERED)
        leader = self.elector.is_leader
        if leader != self._was_leader:
            self._was_leader = leader
            log.info(
                ev.LEADER_ACQUIRED if leader else ev.LEADER_LOST,
                identity=self.identity,
                lease=f"{self.config.lease.namespace}/{self.config.lease.name}",
            )
            if leader:
                self._adopt_orphans()
                self._report_invalid(list(self.update.invalid) + list(self.update.rejected))
                self.trigger(*self.controller.plans, *self.controller.deleted)
            else:
                for key in self.telemetry.plans():  # the new leader reports them now
                    self.telemetry.forget(key)

    # -- plans -------------------------------------------------------------------------------

    def reload_plans(self) -> None:
        """Poll the plans directory; apply a change to the controller, the watch and the jobs."""
        loaded = self.plans.poll()
        if loaded is None:
            return
        update = reconcile(self.update, loaded)
        update.apply(self.controller)
        self.update = update
        self._loaded = True
        if update.has_changes:
            changes = update.changes()
            log.info(
                ev.PLANS_LOADED,
                directory=self.config.plans,
                added=changes["added"],
                changed=changes["changed"],
                removed=changes["removed"],
                invalid=changes["invalid"],
                fixed=changes["fixed"],
                problems=changes["problems"],
            )
        for key in update.added:
            if not self._in_scope_ns(key.partition("/")[0]):  # never served: say so, once
                log.warning(
                    ev.PLAN_OUT_OF_SCOPE,
                    plan=key,
                    namespaces=list(self.config.namespaces),
                    fix="add its namespace to --namespace (and to the chart's rbac.namespaces)",
                )
        if self.elector.is_leader:  # (a new leader reports what is invalid when it takes over)
            self._report_invalid(update.invalidated)
        self._sync_plans()

    def _report_invalid(self, keys: Iterable[str]) -> None:
        """One log line and Kubernetes Event per invalid plan, from the leader."""
        for key in keys:
            ns, _, name = key.partition("/")
            if not self._in_scope_ns(ns):
                continue
            error = self.update.invalid.get(key) or self.update.rejected.get(key, "")
            self.controller.emitter.emit(
                ns, name, Event(ev.PLAN_INVALID, fields={"error": error}, warning=True)
            )

    def _adopt_orphans(self) -> None:
        """Rollouts whose plan was deleted while no controller ran: their state (with the plan
        snapshot) is still on the VirtualService. Serve them as deleted plans, so their traffic
        goes to stable (docs/design.md §3) — memory of the directory is not needed for that."""
        try:
            states = self.router.states(list(self.config.namespaces) or None)
        except Exception as exc:
            log.warning(ev.PLANS_ORPHANS_UNKNOWN, error=str(exc))
            return
        # Only in namespaces this controller serves plans in (or was told to watch): another
        # controller's rollouts elsewhere are not ours to send to stable.
        ours = set(self.config.namespaces) or {p.namespace for p in self._served().values()}
        for key, raw in states.items():
            if key in self.controller.plans or key in self.controller.deleted:
                continue
            if key.partition("/")[0] not in ours:
                continue
            try:
                state = state_from_json(raw)
            except StateError:
                continue
            if state.phase is Phase.IDLE or not state.spec:
                continue
            ns, _, name = key.partition("/")
            try:
                plan = plan_from_spec(state.spec, name, ns, source="canary.dev/state")
            except Exception as exc:
                log.warning(ev.PLANS_ORPHAN_UNREADABLE, plan=key, error=str(exc))
                continue
            self.controller.deleted[key] = plan
            log.warning(ev.PLANS_ORPHAN, plan=key, phase=state.phase.value)
        self._sync_plans()

    def _served(self) -> dict[str, Plan]:
        return {**self.controller.deleted, **self.controller.plans}

    def _sync_plans(self) -> None:
        with self._sync_lock:  # from the plans job and from tick threads
            self._sync_plans_locked()

    def _register(self, plan: Plan) -> None:
        """Which VirtualService the plan's Events are about (needs API discovery: retried on
        every tick until it worked)."""
        if plan.key in self._registered:
            return
        with contextlib.suppress(Exception):
            self.sink.register(
                plan.namespace, plan.name, plan.virtual_service.name, self.router.version
            )
            self._registered.add(plan.key)

    def _sync_plans_locked(self) -> None:
        served = self._served()
        watched = [p for p in served.values() if self._in_scope(p)]
        for plan in watched:
            self._register(plan)
        self.watcher.set_interests([Interest.of(p) for p in watched])
        for plan in watched:
            job_id = f"tick:{plan.key}"
            if self.scheduler.get_job(job_id) is None:
                self.scheduler.add_job(
                    self._tick_job,
                    "interval",
                    args=[plan.key],
                    seconds=IDLE_INTERVAL.total_seconds(),
                    id=job_id,
                    name=f"tick {plan.key}",
                    next_run_time=datetime.now(UTC),
                )
        keys = {p.key for p in watched}
        for job in self.scheduler.get_jobs():
            if job.id.startswith("tick:") and job.id.removeprefix("tick:") not in keys:
                job.remove()
                self.telemetry.forget(job.id.removeprefix("tick:"))

    def _in_scope(self, plan: Plan) -> bool:
        return self._in_scope_ns(plan.namespace)

    def _in_scope_ns(self, namespace: str) -> bool:
        return not self.config.namespaces or namespace in self.config.namespaces

    # -- ticks -------------------------------------------------------------------------------

    def trigger(self, *keys: str) -> None:
        """Run these plans' jobs now (a watch event, a helm rollback that ended)."""
        if self._stopping:
            return
        now = datetime.now(UTC)
        for key in keys:
            with self._jobs_lock:
                if key in self._inflight:  # APScheduler would skip it: run it after this one
                    self._again.add(key)
                    continue
            with contextlib.suppress(JobLookupError, RuntimeError):
                self.scheduler.modify_job(f"tick:{key}", next_run_time=now)

    def _on_change(self, keys: Iterable[str], reason: str) -> None:
        self.trigger(*keys)

    def _tick_job(self, key: str) -> None:
        with self._jobs_lock:
            if self._stopping:
                return
            self._inflight.add(key)
        try:
            plan = self._served().get(key)
            if plan is not None:
                self._register(plan)
            decisions = self.batcher.request(key)
            decision = decisions.get(key)
            if decision is not None:
                self._after_tick(key, decision)
            elif key in self.controller.deleted:
                self._release_if_gone(key)
        finally:
            with self._jobs_lock:
                self._inflight.discard(key)
                again = key in self._again
                self._again.discard(key)
                self._jobs_lock.notify_all()
            if again:
                self.trigger(key)

    def _release_if_gone(self, key: str) -> None:
        """A deleted plan whose VirtualService is gone too has nothing left to send to stable."""
        plan = self.controller.deleted.get(key)
        if plan is None:
            return
        try:
            self.router.read(plan)
        except NotFoundError:
            self.controller.deleted.pop(key, None)
            log.info(ev.PLAN_RELEASED, plan=key, why="its VirtualService is gone")
            self._sync_plans()
        except Exception:  # the API is down: try again next tick
            return

    def _tick_batch(self, keys: list[str]) -> Mapping[str, Decision]:
        if self._stopping:
            return {}
        try:
            return self.controller.tick(keys)
        finally:
            self.telemetry.tick_completed(plans=len(keys))

    def _after_tick(self, key: str, decision: Decision) -> None:
        state = decision.state
        self.telemetry.observe_state(key, state)
        if key in self.controller.deleted and state.phase is Phase.IDLE and not decision.changed:
            # a deleted plan's traffic is on stable and its state at rest: stop serving it
            self.controller.deleted.pop(key, None)
            log.info(ev.PLAN_RELEASED, plan=key)
            self._sync_plans()
            return
        plan = self._served().get(key)
        if plan is None or self._stopping:
            return
        with contextlib.suppress(JobLookupError, RuntimeError):  # removed, or shutting down
            job = self.scheduler.get_job(f"tick:{key}")
            wanted = cadence(plan, state).total_seconds()
            if job is not None and job.trigger.interval != timedelta(seconds=wanted):
                self.scheduler.reschedule_job(job.id, trigger="interval", seconds=wanted)

    def _on_job_trouble(self, event: JobExecutionEvent | JobSubmissionEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            log.warning(ev.TICK_MISSED, job=event.job_id, due=str(event.scheduled_run_time))
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            # a watch event or helm's end asked for a run while one was going: routine when it
            # happens now and then; logged once per job per OVERLAP_LOG_EVERY with a count
            now = time.monotonic()
            last, count = self._overlaps.get(event.job_id, (0.0, 0))
            if now - last >= OVERLAP_LOG_EVERY:
                log.info(ev.TICK_OVERLAP, job=event.job_id, skipped=count + 1)
                self._overlaps[event.job_id] = (now, 0)
            else:
                self._overlaps[event.job_id] = (last, count + 1)
        elif isinstance(event, JobExecutionEvent) and event.exception is not None:
            log.error(ev.TICK_CRASHED, job=event.job_id, error=repr(event.exception))
