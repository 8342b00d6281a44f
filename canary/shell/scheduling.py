"""When each plan's tick runs in ``canary run``: an interval that follows the phase
(:func:`cadence`), and ticks due together gathered into one ``Controller.tick(keys)``
(:class:`TickBatcher`), so their checks go to Prometheus as one batch (docs/design.md §3)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import timedelta

from canary.core.model import AT_REST_PHASES, WAITING_PHASES, Decision, RolloutState
from canary.core.plan import Plan

#: A plan at rest (Idle, RolledBack, RollbackFailed, Succeeded) is still looked at this often:
#: the watch brings changes within a second, this catches whatever a watch can miss.
IDLE_INTERVAL = timedelta(seconds=30)

#: Pending, Finalising and RollingBack wait on the cluster (pods, helm) rather than on metrics:
#: look every 2 s, the lease's retry period, whatever the analysis interval.
BUSY_INTERVAL = timedelta(seconds=2)
#: Threads running ticks. Ticks of one batch run in one thread; more threads let a second batch
#: (another plan's interval) proceed while one waits on a slow API or Prometheus.
TICK_WORKERS = 4

#: Jobs that fall due within this long of each other share one tick (one Prometheus batch).
GATHER = 0.05

#: A job that could not run within this long of its time is skipped (and logged), not run late:
#: the next one comes soon enough, and coalescing runs only one anyway.
MISFIRE_GRACE = 30

#: A job asked to run while its previous run is still going is skipped (coalesced); that is
#: logged at most this often per job, with the number skipped.
OVERLAP_LOG_EVERY = 60.0


def cadence(plan: Plan, state: RolloutState | None) -> timedelta:
    """How often a plan's job runs, by phase: the analysis interval while checks are due,
    :data:`BUSY_INTERVAL` while waiting on the cluster, :data:`IDLE_INTERVAL` at rest."""
    if state is None or state.phase in AT_REST_PHASES:
        return IDLE_INTERVAL
    if state.phase in WAITING_PHASES:
        return min(BUSY_INTERVAL, plan.analysis.interval)
    return plan.analysis.interval


class TickBatcher:
    """Gathers tick requests that arrive together into one ``tick(keys)``.

    :meth:`request` blocks until a tick that included the key has completed and returns that
    tick's decisions. Requests arriving within :data:`GATHER` of each other share a batch;
    batches run concurrently (one per tick thread), so a batch waiting on a slow Prometheus
    never holds up the next one.
    """

    def __init__(
        self, tick: Callable[[list[str]], Mapping[str, Decision]], gather: float = GATHER
    ) -> None:
        self._tick = tick
        self._gather = gather
        self._cond = threading.Condition()
        self._pending: set[str] = set()
        self._gathering = False
        self._next = 1  # the batch being gathered
        self._results: dict[int, Mapping[str, Decision]] = {}
        self._waiting: dict[int, int] = {}  # batch → requests waiting for its result

    def request(self, key: str) -> Mapping[str, Decision]:
        with self._cond:
            self._pending.add(key)
            mine = self._next
            if self._gathering:  # join the batch being gathered; its runner ticks it
                self._waiting[mine] = self._waiting.get(mine, 0) + 1
                while mine not in self._results:
                    self._cond.wait()
                result = self._results[mine]
                self._waiting[mine] -= 1
                if not self._waiting[mine]:
                    del self._waiting[mine], self._results[mine]
                return result
            self._gathering = True
        time.sleep(self._gather)  # let the other jobs due now join this batch
        with self._cond:
            keys = sorted(self._pending)
            self._pending.clear()
            batch = self._next
            self._next += 1
            self._gathering = False
        decisions: Mapping[str, Decision] = {}
        try:
            decisions = self._tick(keys)
        finally:
            with self._cond:
                if self._waiting.get(batch):
                    self._results[batch] = decisions
                self._cond.notify_all()
        return decisions
