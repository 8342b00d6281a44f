"""The commands around a running controller (DESIGN §4–§5; issue 7): ``status``, ``wait`` and
the manual commands ``abort | pause | resume | promote [--full] | retry``.

They read and write only what the controller reads and writes: the ``canary.dev/state``
annotation on the plan's VirtualService (state is never kept anywhere else, so they survive
controller restarts and leader changes) and the ``canary.dev/command`` annotation, which the
controller consumes in the same write as its effect. A PLAN is a plan file or the
``NAMESPACE/NAME`` of a plan the controller serves.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from canary.core import exitcodes
from canary.core.durations import format_duration, parse_duration
from canary.core.errors import (
    CanaryError,
    ConfigError,
    ForbiddenError,
    NotFoundError,
    TransientError,
)
from canary.core.model import (
    Command,
    CommandName,
    Phase,
    RolloutState,
    StateError,
    command_to_json,
    state_from_json,
)
from canary.plans.files import load_plan_files

#: How often `wait` and the commands look at the state. The controller ticks a rollout every
#: analysis interval (30 s by default) and a busy one every 2 s: 2 s costs one GET.
POLL = 2.0
#: How long a command waits for the controller to act before it says so.
DEFAULT_COMMAND_TIMEOUT = timedelta(minutes=2)
_KEY = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class Target:
    namespace: str
    name: str
    canary_workload: str | None = None  # known from a plan file, or from the state's snapshot
    stable_workload: str | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class Cluster:
    """What the commands need of the cluster, over the real adapters (imported lazily: the
    kubernetes client costs ~0.3 s to import and `validate` never needs it)."""

    def __init__(self, kubeconfig: str | None, context: str | None) -> None:
        from canary.adapters.istio import IstioRouter  # noqa: PLC0415
        from canary.adapters.kube import KubeWorkloads, connect  # noqa: PLC0415

        self.api = connect(kubeconfig, context)
        self.router = IstioRouter(self.api)
        self.workloads = KubeWorkloads(self.api)

    def state(self, target: Target) -> tuple[str, RolloutState | None, str | None]:
        """(VirtualService name, state, raw command) of the plan."""
        located = self.router.locate(target.namespace, target.name)
        state = None
        if located.state_raw:
            try:
                state = state_from_json(located.state_raw)
            except StateError:
                state = None
        return located.name, state, located.command_raw

    def states(self, namespaces: Sequence[str]) -> dict[str, RolloutState | None]:
        out: dict[str, RolloutState | None] = {}
        for key, raw in sorted(self.router.states(list(namespaces) or None).items()):
            try:
                out[key] = state_from_json(raw)
            except StateError:
                out[key] = None
        return out

    def last_events(self, namespace: str, vs_name: str) -> tuple[str, str]:
        """The last Kubernetes Event canary posted on the VirtualService, and the last check."""
        from canary.adapters.kube import recent_events  # noqa: PLC0415

        rows = recent_events(self.api, namespace, vs_name)
        last = f"{rows[-1][0]}: {rows[-1][1]}" if rows else ""
        check = next((f"{r}: {m}" for r, m, _ in reversed(rows) if r.startswith("check.")), "")
        return last, check


# --- PLAN ---------------------------------------------------------------------------------


def resolve(arg: str) -> Target:
    """A plan file (its namespace, name and canary Deployment) or NAMESPACE/NAME."""
    if os.path.exists(arg) or arg.endswith((".yaml", ".yml")):
        plans = load_plan_files([arg])
        if len(plans) != 1:
            raise ConfigError(f"{arg}: holds {len(plans)} plans; name one as NAMESPACE/NAME")
        plan = plans[0]
        return Target(plan.namespace, plan.name, plan.workloads.canary, plan.workloads.stable)
    if not _KEY.match(arg):
        raise ConfigError(
            f"{arg!r} is neither a plan file nor NAMESPACE/NAME (e.g. bookinfo/reviews)"
        )
    namespace, name = arg.split("/", 1)
    return Target(namespace, name)


def _age(since: datetime | None, now: datetime) -> str:
    if since is None:
        return "-"
    return format_duration(timedelta(seconds=max(0, int((now - since).total_seconds()))))


def summary(key: str, state: RolloutState | None, now: datetime) -> dict[str, Any]:
    """One plan's status as plain data (the json/yaml output; the table shows a subset)."""
    if state is None:
        return {"plan": key, "phase": "Unknown", "reason": "canary.dev/state unreadable"}
    last = state.last
    return {
        "plan": key,
        "phase": state.phase.value,
        "paused": state.paused.value if state.paused else None,
        "rolloutId": state.rollout_id or None,
        "step": state.step if state.rollout_id else None,
        "weights": {"stable": state.weights.stable, "canary": state.weights.canary},
        "passes": state.passes,
        "fails": state.fails,
        "revision": state.revision,
        "baseRevision": state.base_revision,
        "age": _age(state.step_started_at, now),
        "updatedAt": state.updated_at.isoformat() if state.updated_at else None,
        "reason": state.reason,
        "last": (
            {
                "rolloutId": last.rollout_id,
                "outcome": last.outcome.value,
                "reason": last.reason,
                "endedAt": last.ended_at.isoformat() if last.ended_at else None,
            }
            if last
            else None
        ),
    }


def _table(rows: Sequence[Mapping[str, Any]], out: TextIO) -> None:
    header = ["PLAN", "PHASE", "STEP", "WEIGHTS", "ROLLOUT", "REV", "AGE", "LAST", "REASON"]
    lines = [header]
    for r in rows:
        weights = r.get("weights") or {}
        last = r.get("last") or {}
        phase = r["phase"] + (f" ({r['paused']})" if r.get("paused") else "")
        lines.append(
            [
                r["plan"],
                phase,
                "-" if r.get("step") is None else str(r["step"]),
                f"{weights.get('stable', '-')}/{weights.get('canary', '-')}",
                r.get("rolloutId") or "-",
                "-" if r.get("revision") is None else str(r["revision"]),
                r.get("age") or "-",
                last.get("outcome", "-"),
                (r.get("reason") or "")[:80],
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip(),
            file=out,
        )


def _emit(data: Any, fmt: str, out: TextIO) -> None:
    if fmt == "json":
        print(json.dumps(data, indent=2), file=out)
    else:
        import yaml  # noqa: PLC0415

        print(yaml.safe_dump(data, sort_keys=False).rstrip(), file=out)


# --- commands -----------------------------------------------------------------------------

Connect = Callable[[argparse.Namespace], Cluster]


def _connect(args: argparse.Namespace) -> Cluster:
    return Cluster(
        args.kubeconfig or os.environ.get("CANARY_KUBECONFIG") or None,
        args.context or os.environ.get("CANARY_CONTEXT") or None,
    )


def _fail(err: TextIO, exc: Exception) -> int:
    """Errors of the cluster, said so that the reader knows what to do."""
    if isinstance(exc, ForbiddenError):
        print(f"canary: permission denied: {exc}", file=err)
        print(
            "  ask for that verb on that resource in the plan's namespace (RBAC), or use a "
            "kubeconfig/context that has it (--kubeconfig, --context)",
            file=err,
        )
    else:
        print(f"canary: {exc}", file=err)
    return exitcodes.USAGE


def cmd_status(
    args: argparse.Namespace, out: TextIO, err: TextIO, connect: Connect = _connect
) -> int:
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    try:
        cluster = connect(args)
        if args.plan:
            target = resolve(args.plan)
            vs_name, state, _ = cluster.state(target)
            rows = [summary(target.key, state, now)]
            try:
                rows[0]["lastEvent"], rows[0]["lastCheck"] = cluster.last_events(
                    target.namespace, vs_name
                )
            except Exception:  # Events are a nicety: no RBAC for them is no failure
                rows[0]["lastEvent"] = rows[0]["lastCheck"] = ""
        else:
            failures: list[CanaryError] = []
            for scope in args.namespace or [None]:  # one list per namespace: partial RBAC
                try:
                    found = cluster.states([scope] if scope else [])
                except CanaryError as problem:
                    failures.append(problem)
                    continue
                rows += [summary(k, s, now) for k, s in found.items()]
            for failure in failures:
                print(f"canary: {failure}", file=err)
            if failures and not rows:
                return _fail(err, failures[0])
    except CanaryError as exc:
        return _fail(err, exc)
    if args.output == "table":
        _table(rows, out)
        for r in rows:
            for label, field in (("last event", "lastEvent"), ("last check", "lastCheck")):
                if r.get(field):
                    print(f"{label}: {r[field]}", file=out)
    else:
        _emit(rows if not args.plan else rows[0], args.output, out)
    return 0


def _line(state: RolloutState, now: datetime) -> str:
    phase = state.phase.value + (f" ({state.paused.value})" if state.paused else "")
    w = state.weights
    text = (
        f"{now:%H:%M:%S} {state.rollout_id or '-'} {phase} step {state.step} {w.stable}/{w.canary}"
    )
    if state.phase in (Phase.PROGRESSING, Phase.PAUSED):
        text += f" passes {state.passes} fails {state.fails}"
    if state.reason:
        text += f" — {state.reason}"
    return text


class Binding:
    """Which rollout `wait` answers for (DESIGN §5: the canary live when it starts, or
    ``--revision N``), and the exit code once it has one."""

    def __init__(
        self, canary_hash: str | None, revision: int | None, before: RolloutState | None
    ) -> None:
        self.canary_hash = canary_hash
        self.revision = revision
        self.before_id = before.rollout_id if before else ""
        # At rest, the state still names the rollout that ended last: never ours (DESIGN §5:
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
    connect: Connect = _connect,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    deadline = clock() + args.timeout.total_seconds()
    try:
        target = resolve(args.plan)
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
        return _fail(err, exc)
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
            line = _line(state, datetime.now(UTC))
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
            return _fail(err, exc)


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


def _attempts(state: RolloutState) -> int:
    return state.rollback.attempts if state.rollback else 0


#: What each command needs of the rollout, and how to tell it took effect.
_NEEDS: dict[CommandName, tuple[frozenset[Phase], Callable[[RolloutState, RolloutState], bool]]] = {
    CommandName.ABORT: (
        frozenset(
            {
                Phase.PENDING,
                Phase.PROGRESSING,
                Phase.PAUSED,
                Phase.SUCCEEDED,
                Phase.ROLLBACK_FAILED,
            }
        ),
        lambda before, after: (
            after.phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK)
            or _attempts(after) > _attempts(before)  # RollbackFailed: one more helm attempt
        ),
    ),
    CommandName.PAUSE: (
        frozenset({Phase.PROGRESSING}),
        lambda before, after: after.phase is Phase.PAUSED,
    ),
    CommandName.RESUME: (
        frozenset({Phase.PAUSED}),
        lambda before, after: after.phase is Phase.PROGRESSING,
    ),
    CommandName.PROMOTE: (
        frozenset({Phase.PROGRESSING, Phase.PAUSED}),
        lambda before, after: after.step > before.step or after.phase is Phase.SUCCEEDED,
    ),
    CommandName.PROMOTE_FULL: (
        frozenset({Phase.PROGRESSING, Phase.PAUSED}),
        lambda before, after: after.phase is Phase.SUCCEEDED,
    ),
    CommandName.RETRY: (
        frozenset({Phase.ROLLED_BACK}),
        lambda before, after: after.phase is not Phase.ROLLED_BACK,
    ),
}


def cmd_command(
    args: argparse.Namespace,
    out: TextIO,
    err: TextIO,
    connect: Connect = _connect,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    name = CommandName(args.command if not getattr(args, "full", False) else "promote-full")
    phases, took_effect = _NEEDS[name]
    try:
        target = resolve(args.plan)
        cluster = connect(args)
        vs_name, state, pending = cluster.state(target)
        if state is None:
            print(f"canary: {target.key} has no readable state; nothing to {name}", file=err)
            return exitcodes.USAGE
        if state.phase not in phases:
            allowed = ", ".join(sorted(p.value for p in phases))
            print(
                f"canary: {target.key} is {state.phase.value}; {name} applies to {allowed}",
                file=err,
            )
            return exitcodes.USAGE
        if pending:
            print(f"canary: note: replacing an unconsumed command {pending}", file=err)
        rollout_id = state.rollout_id
        by = os.environ.get("CANARY_USER") or getpass.getuser()
        command = Command(cmd=name, rollout_id=rollout_id, by=by, at=datetime.now(UTC))
        from canary.adapters.istio import IstioRouter  # noqa: PLC0415  (typed use below)

        router: IstioRouter = cluster.router
        router.write_command(target.namespace, vs_name, command_to_json(command))
    except CanaryError as exc:
        return _fail(err, exc)
    print(f"{name} sent for {target.key} rollout {rollout_id} (by {by})", file=out)
    deadline = clock() + args.timeout.total_seconds()
    while clock() < deadline:
        sleep(POLL)
        try:
            _, after, still = cluster.state(target)
        except TransientError:
            continue
        except CanaryError as exc:
            return _fail(err, exc)
        if still is None and after is not None:  # consumed: by its effect, or dropped
            if (after.rollout_id == rollout_id and took_effect(state, after)) or (
                name is CommandName.RETRY and after.rollout_id != rollout_id
            ):
                print(f"{target.key}: {_line(after, datetime.now(UTC))}", file=out)
                return 0
            print(
                f"canary: the controller consumed {name} without acting on it (phase now "
                f"{after.phase.value}; see `kubectl get events` for command.dropped)",
                file=err,
            )
            return 1
    print(
        f"canary: the controller did not act on {name} for {target.key} within "
        f"{format_duration(args.timeout)}; is it running and leading? "
        "(kubectl logs deploy/canary; canary status)\n"
        f"  the command is still pending and will be applied when a controller acts; to "
        f"withdraw it: kubectl -n {target.namespace} annotate virtualservice {vs_name} "
        "canary.dev/command-",
        file=err,
    )
    return exitcodes.TIMEOUT


# --- parsers ------------------------------------------------------------------------------


def duration_arg(text: str) -> timedelta:
    """argparse ``type`` for a plan-style duration (``30s``, ``5m``): the CLI's one parser."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _kube_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", default=None, help="kubeconfig file (env CANARY_KUBECONFIG)")
    p.add_argument("--context", default=None, help="kubeconfig context (env CANARY_CONTEXT)")


def add_parsers(sub: Any) -> None:
    """`status`, `wait` and the manual commands on the CLI's subparsers."""
    p = sub.add_parser("status", help="phase, step, weights and outcome of served plans")
    p.add_argument("plan", nargs="?", metavar="PLAN", help="plan file or NAMESPACE/NAME")
    p.add_argument("--namespace", action="append", help="only these namespaces (repeatable)")
    p.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    _kube_flags(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("wait", help="wait for the verdict on the live canary (CI)")
    p.add_argument("plan", metavar="PLAN", help="plan file or NAMESPACE/NAME")
    p.add_argument("--timeout", type=duration_arg, default=timedelta(minutes=30))
    p.add_argument(
        "--revision", type=int, default=None, help="bind to the rollout of this helm revision"
    )
    _kube_flags(p)
    p.set_defaults(func=cmd_wait)

    for name, text in (
        ("abort", "roll the rollout back now (or retry a failed rollback once more)"),
        ("pause", "hold the weights; checks go on and a breach still rolls back"),
        ("resume", "continue a paused rollout at its step"),
        ("promote", "go to the next step now (--full: to 100 %%, Succeeded)"),
        ("retry", "start again a canary that was rolled back"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("plan", metavar="PLAN", help="plan file or NAMESPACE/NAME")
        if name == "promote":
            p.add_argument("--full", action="store_true", help="straight to 100 %%")
        p.add_argument("--timeout", type=duration_arg, default=DEFAULT_COMMAND_TIMEOUT)
        _kube_flags(p)
        p.set_defaults(func=cmd_command)
