"""What the commands around a running controller share: a PLAN argument resolved to its plan,
the cluster over the real adapters, the one-line rendering of a state, and errors said so the
reader knows what to do.

A PLAN is a plan file, or the ``NAMESPACE/NAME`` of a plan the controller serves: looked up in
the ``--plans`` directory when there is one, else known by the state on its VirtualService.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO

from canary.cli.options import config_of
from canary.config.settings import ControllerConfig
from canary.core import exitcodes
from canary.core.errors import ConfigError, ForbiddenError, PlanError
from canary.core.model import (
    ANALYSING_PHASES,
    RolloutState,
    StateError,
    state_from_json,
)
from canary.core.names import NAMESPACE, SUBDOMAIN, is_name
from canary.core.plan import Plan
from canary.plans.directory import PlanSource
from canary.plans.files import load_plan_files

#: How often `wait` and the commands look at the state. The controller ticks a rollout every
#: analysis interval (30 s by default) and a busy one every 2 s: 2 s costs one GET.
POLL = 2.0


@dataclass(frozen=True)
class Target:
    namespace: str
    name: str
    canary_workload: str | None = None  # known from a plan file, or from the state's snapshot
    stable_workload: str | None = None
    #: the plan itself, when it was given as a file or found in the --plans directory
    plan: Plan | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class Cluster:
    """What the commands need of the cluster, over the real adapters (imported lazily: the
    kubernetes client costs ~0.3 s to import and `validate` never needs it)."""

    def __init__(self, config: ControllerConfig) -> None:
        from canary.adapters.istio import IstioRouter  # noqa: PLC0415
        from canary.adapters.kube import KubeWorkloads, connect  # noqa: PLC0415

        self.api = connect(config.kubeconfig, config.context)
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


def _of_plan(plan: Plan) -> Target:
    return Target(plan.namespace, plan.name, plan.workloads.canary, plan.workloads.stable, plan)


def resolve(arg: str, config: ControllerConfig | None = None) -> Target:
    """A plan file (its namespace, name and Deployments) or NAMESPACE/NAME (with its plan, when
    the ``--plans`` directory has it)."""
    if os.path.exists(arg) or arg.endswith((".yaml", ".yml")):
        plans = load_plan_files([arg])
        if len(plans) != 1:
            raise ConfigError(f"{arg}: holds {len(plans)} plans; name one as NAMESPACE/NAME")
        return _of_plan(plans[0])
    namespace, _, name = arg.partition("/")
    if not (is_name(namespace, NAMESPACE) and is_name(name, SUBDOMAIN)):
        raise ConfigError(
            f"{arg!r} is neither a plan file nor NAMESPACE/NAME (e.g. bookinfo/reviews)"
        )
    if config is not None and os.path.isdir(config.plans):
        served = PlanSource(config.plans).load().plans.get(arg)
        if served is not None:
            return _of_plan(served)
    return Target(namespace, name)


def plan_file(paths: Sequence[str], err: TextIO, what: str) -> Plan | None:
    """The one plan of a plan file (simulate, demo); None after saying why there is none."""
    try:
        plans = load_plan_files(paths)
    except PlanError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=err)
        return None
    except OSError as exc:
        print(f"error: {exc}", file=err)
        return None
    if len(plans) != 1:
        names = ", ".join(p.key for p in plans) or "none"
        print(
            f"error: {paths[0]} holds {len(plans)} plans ({names}); {what} takes a file with "
            "exactly one",
            file=err,
        )
        return None
    return plans[0]


Connect = Callable[[argparse.Namespace], Cluster]


def connect(args: argparse.Namespace) -> Cluster:
    return Cluster(config_of(args))


def fail(err: TextIO, exc: Exception) -> int:
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


def state_line(state: RolloutState, now: datetime) -> str:
    phase = state.phase.value + (f" ({state.paused.value})" if state.paused else "")
    w = state.weights
    text = (
        f"{now:%H:%M:%S} {state.rollout_id or '-'} {phase} step {state.step} {w.stable}/{w.canary}"
    )
    if state.phase in ANALYSING_PHASES:
        text += f" passes {state.passes} fails {state.fails}"
    if state.reason:
        text += f" — {state.reason}"
    return text
