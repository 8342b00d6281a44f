"""The manual commands ``abort | pause | resume | promote [--full] | retry PLAN``: write
``canary.dev/command`` for the current rollout, then wait until the controller consumed it.
Exit 0 done · 1 consumed without effect (dropped) · 2 not applicable in this phase, or RBAC ·
3 the controller did not act in time. Which phases each applies to is
:mod:`canary.core.commands`' rule, the controller's own."""

from __future__ import annotations

import argparse
import getpass
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from canary.cli.cluster import POLL, Connect, connect, fail, resolve, state_line
from canary.cli.options import add_common, config_of, duration_arg
from canary.core import commands as rules
from canary.core import exitcodes
from canary.core.durations import format_duration
from canary.core.errors import CanaryError, TransientError
from canary.core.model import Command, CommandName, command_to_json

#: How long a command waits for the controller to act before it says so.
DEFAULT_COMMAND_TIMEOUT = timedelta(minutes=2)


def cmd_command(
    args: argparse.Namespace,
    out: TextIO,
    err: TextIO,
    connect: Connect = connect,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    name = CommandName(args.command if not getattr(args, "full", False) else "promote-full")
    try:
        target = resolve(args.plan, config_of(args))
        cluster = connect(args)
        vs_name, state, pending = cluster.state(target)
        if state is None:
            print(f"canary: {target.key} has no readable state; nothing to {name}", file=err)
            return exitcodes.USAGE
        if not rules.applies(name, state.phase):
            print(
                f"canary: {target.key} is {state.phase.value}; {name} applies to "
                f"{rules.allowed(name)}",
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
        return fail(err, exc)
    print(f"{name} sent for {target.key} rollout {rollout_id} (by {by})", file=out)
    deadline = clock() + args.timeout.total_seconds()
    while clock() < deadline:
        sleep(POLL)
        try:
            _, after, still = cluster.state(target)
        except TransientError:
            continue
        except CanaryError as exc:
            return fail(err, exc)
        if still is None and after is not None:  # consumed: by its effect, or dropped
            if (after.rollout_id == rollout_id and rules.took_effect(name, state, after)) or (
                name is CommandName.RETRY and after.rollout_id != rollout_id
            ):
                print(f"{target.key}: {state_line(after, datetime.now(UTC))}", file=out)
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


def add_parsers(sub: Any) -> None:
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
        add_common(p)
        p.set_defaults(func=cmd_command)
