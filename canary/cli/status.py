"""``canary status [PLAN] [-o table|json|yaml]``: phase, step, weights, rollout, revision, age,
last outcome and reason of one served plan (with its last Kubernetes Event and check) or of
every plan in ``--namespace`` (default all)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from canary.cli.cluster import Connect, connect, fail, resolve
from canary.cli.options import add_common, config_of
from canary.core.durations import format_duration
from canary.core.errors import CanaryError
from canary.core.model import RolloutState
from canary.core.timestamps import iso_or_none


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
        "updatedAt": iso_or_none(state.updated_at),
        "reason": state.reason,
        "rollback": _rollback(state),
        "last": (
            {
                "rolloutId": last.rollout_id,
                "outcome": last.outcome.value,
                "reason": last.reason,
                "endedAt": iso_or_none(last.ended_at),
            }
            if last
            else None
        ),
    }


def _rollback(state: RolloutState) -> dict[str, Any] | None:
    """The helm rollback of this rollout (RollingBack, RollbackFailed): how many attempts, of
    how many allowed, and the stderr tail of the last failure."""
    progress = state.rollback
    if progress is None:
        return None
    return {
        "toRevision": state.base_revision,
        "attempts": progress.attempts,
        "failures": progress.failures,
        "limit": progress.limit,
        "startedAt": iso_or_none(progress.started_at),
        "error": progress.error or None,
    }


def rollback_line(rollback: Mapping[str, Any]) -> str:
    """``rollback: to revision 1, attempt 2 of 3 (1 failed); last error: …``"""
    line = (
        f"rollback: to revision {rollback['toRevision']}, attempt {rollback['attempts']} of "
        f"{rollback['limit']} ({rollback['failures']} failed)"
    )
    return line + (f"; last error: {rollback['error']}" if rollback.get("error") else "")


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


def cmd_status(
    args: argparse.Namespace, out: TextIO, err: TextIO, connect: Connect = connect
) -> int:
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    try:
        cluster = connect(args)
        if args.plan:
            target = resolve(args.plan, config_of(args))
            vs_name, state, _ = cluster.state(target)
            rows = [summary(target.key, state, now)]
            try:
                rows[0]["lastEvent"], rows[0]["lastCheck"] = cluster.last_events(
                    target.namespace, vs_name
                )
            except CanaryError:  # Events are a nicety: no RBAC for them is no failure
                rows[0]["lastEvent"] = rows[0]["lastCheck"] = ""
        else:
            failures: list[CanaryError] = []
            for scope in config_of(args).namespaces or [
                None
            ]:  # one list per namespace: partial RBAC
                try:
                    found = cluster.states([scope] if scope else [])
                except CanaryError as problem:
                    failures.append(problem)
                    continue
                rows += [summary(k, s, now) for k, s in found.items()]
            for failure in failures:
                print(f"canary: {failure}", file=err)
            if failures and not rows:
                return fail(err, failures[0])
    except CanaryError as exc:
        return fail(err, exc)
    if args.output == "table":
        _table(rows, out)
        for r in rows:
            if args.plan and r.get("rollback"):
                print(rollback_line(r["rollback"]), file=out)
            for label, field in (("last event", "lastEvent"), ("last check", "lastCheck")):
                if r.get(field):
                    print(f"{label}: {r[field]}", file=out)
    else:
        _emit(rows if not args.plan else rows[0], args.output, out)
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("status", help="phase, step, weights and outcome of served plans")
    p.add_argument("plan", nargs="?", metavar="PLAN", help="plan file or NAMESPACE/NAME")
    p.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    add_common(p)
    p.set_defaults(func=cmd_status)
