"""``canary wait PLAN [--timeout 30m] [--revision N]``: the CI step after ``helm upgrade``. It
binds to the canary live when it starts (docs/design.md §5), never reports an older rollout's
outcome, and exits 0 succeeded · 1 rolled back · 2 usage · 3 timeout · 4 rollback failed ·
5 superseded · 6 paused."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from canary.cli.cluster import POLL, Connect, connect, fail, resolve, state_line
from canary.cli.options import add_common, config_of, duration_arg
from canary.core import exitcodes
from canary.core.durations import format_duration
from canary.core.errors import CanaryError, NotFoundError, TransientError
from canary.core.model import Phase, RolloutState


class Binding:
    """Which rollout `wait` answers for (docs/design.md §5: the canary live when it starts, or
    ``--revision N``), and the exit code once it has one."""

    def __init__(
        self, canary_hash: str | None, revision: int | None, before: RolloutState | None
    ) -> None:
        self.canary_hash = canary_hash
        self.revision = revision
        self.before_id = before.rollout_id if before else ""
        # At rest, the state still names the rollout that ended last: never ours (docs/design.md §5:
        # wait never reports an older rollout's outcome). A later rollout has a new id.
        self.stale: set[str] = set()
        if before is not None and before.phase is Phase.IDLE:
            self.stale = {before.rollout_id, before.last.rollout_id if before.last else ""}
        self.rollout_id: str | None = None

    def verdict(self, state: RolloutState | None) -> int | None:
        if state is None:
            return None
        if self.rollout_id is None:
            self._bind(state)
        if self.rollout_id is None:
            if self.revision is not None and self._other(state):
                return exitcodes.SUPERSEDED  # a newer revision's canary is the one now
            if state.rollout_id and state.rollout_id != self.before_id and self._other(state):
                return exitcodes.SUPERSEDED  # a newer canary started before ours was seen
            return None
        return exitcodes.verdict_of(state, self.rollout_id)

    def _bind(self, state: RolloutState) -> None:
        if self.revision is not None:
            if state.revision == self.revision and state.rollout_id not in self.stale:
                self.rollout_id = state.rollout_id or None
            return
        if self.canary_hash is not None:
            if state.canary_hash == self.canary_hash and state.rollout_id not in self.stale:
                self.rollout_id = state.rollout_id or None
            elif (
                state.last is not None
                and state.last.canary_hash == self.canary_hash
                and state.last.rollout_id not in self.stale
            ):
                self.rollout_id = state.last.rollout_id
            return
        # neither known (NAMESPACE/NAME of an Idle plan): the next rollout that starts
        if state.rollout_id and state.rollout_id != self.before_id:
            self.rollout_id = state.rollout_id

    def _other(self, state: RolloutState) -> bool:
        if self.revision is not None:
            return state.revision is not None and state.revision > self.revision
        if self.canary_hash is not None:
            return state.canary_hash != self.canary_hash and state.phase is not Phase.IDLE
        return False


def cmd_wait(
    args: argparse.Namespace,
    out: TextIO,
    err: TextIO,
    connect: Connect = connect,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    deadline = clock() + args.timeout.total_seconds()
    try:
        target = resolve(args.plan, config_of(args))
        cluster = connect(args)
        while True:
            try:
                _, state, _ = cluster.state(target)
                canary_hash = None
                canary, stable = target.canary_workload, target.stable_workload
                if canary is None:
                    canary, stable = _snapshot_workloads(state)
                if args.revision is None and canary is not None:
                    live = cluster.workloads.status(target.namespace, canary).template_hash
                    same = stable is not None and (
                        cluster.workloads.status(target.namespace, stable).template_hash == live
                    )
                    # canary = stable: nothing to analyse yet (wait started before the
                    # upgrade, or after a promotion): the verdict is the next rollout's
                    canary_hash = None if same else live
                break
            except TransientError as exc:
                if clock() >= deadline:
                    raise
                print(f"  (retrying: {exc})", file=err)
                sleep(POLL)
    except CanaryError as exc:
        return fail(err, exc)
    binding = Binding(canary_hash, args.revision, state)
    what = (
        f"revision {args.revision}"
        if args.revision is not None
        else f"canary {canary_hash[:10]}"
        if canary_hash
        else "the next rollout"
    )
    print(f"waiting for {target.key}: {what} (timeout {format_duration(args.timeout)})", file=out)
    shown = ""
    while True:
        if state is not None:
            line = state_line(state, datetime.now(UTC))
            if line.split(" ", 1)[1] != shown:
                shown = line.split(" ", 1)[1]
                print(line, file=out, flush=True)
        code = binding.verdict(state)
        if code is not None:
            print(f"{target.key}: {_meaning(code)} (exit {code})", file=out)
            return code
        if clock() >= deadline:
            print(
                f"{target.key}: no verdict for {what} within {format_duration(args.timeout)} "
                f"(phase {state.phase.value if state else 'unknown'}); exit 3",
                file=err,
            )
            return exitcodes.TIMEOUT
        sleep(POLL)
        try:
            _, state, _ = cluster.state(target)
        except TransientError as exc:  # the API server or the network: keep waiting
            print(f"  (retrying: {exc})", file=err)
        except NotFoundError:  # the state annotation was stripped: the controller restores it
            print("  (no canary.dev/state right now; waiting for the controller)", file=err)
            state = None
        except CanaryError as exc:
            return fail(err, exc)


def _snapshot_workloads(state: RolloutState | None) -> tuple[str | None, str | None]:
    spec = state.spec if state is not None else None
    workloads = (spec or {}).get("workloads") or {}
    canary, stable = workloads.get("canary"), workloads.get("stable")
    return (str(canary) if canary else None, str(stable) if stable else None)


def _meaning(code: int) -> str:
    return {
        exitcodes.SUCCEEDED: "succeeded",
        exitcodes.ROLLED_BACK: "rolled back",
        exitcodes.ROLLBACK_FAILED: "rollback failed: a human is needed",
        exitcodes.SUPERSEDED: "superseded by a newer canary",
        exitcodes.PAUSED: "paused: a human decides",
    }.get(code, str(code))


def add_parser(sub: Any) -> None:
    p = sub.add_parser("wait", help="wait for the verdict on the live canary (CI)")
    p.add_argument("plan", metavar="PLAN", help="plan file or NAMESPACE/NAME")
    p.add_argument("--timeout", type=duration_arg, default=timedelta(minutes=30))
    p.add_argument(
        "--revision", type=int, default=None, help="bind to the rollout of this helm revision"
    )
    add_common(p)
    p.set_defaults(func=cmd_wait)
