"""Human text, rendered one way: event records → what a person reads at 3 a.m.

Every surface that shows an event to a person goes through here, so they all say the same thing
with the same numbers: the message of the Kubernetes Event posted for it, the Slack and webhook
notifications, the demo and ``canary simulate``'s live lines, and ``canary timeline``.

The records are the flat dicts of the JSON log lines (``event``, ``plan``, ``at``/``ts`` and the
event's fields). One number format (:func:`number`), one icon table (:data:`ICONS`), one way to
write bounds (:func:`bounds`). Pure: nothing here reads a clock or writes anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from canary.core import events as ev
from canary.core.timestamps import parse_iso

#: One glyph per event a person should spot in a column of lines; the rest get ``·``.
ICONS: Final[Mapping[str, str]] = {
    ev.ROLLOUT_STARTED: "▶",
    ev.STEP_STARTED: "→",
    ev.WEIGHT_SET: "⇄",
    ev.WEIGHT_DRIFT: "!",
    ev.CHECK_PASSED: "✓",
    ev.CHECK_FAILED: "✗",
    ev.CHECK_INCONCLUSIVE: "?",
    ev.CHECK_ERROR: "!",
    ev.ROLLOUT_SUCCEEDED: "★",
    ev.ROLLOUT_PAUSED: "‖",
    ev.ROLLBACK_STARTED: "↩",
    ev.ROLLBACK_TRAFFIC_REVERTED: "⇄",
    ev.ROLLBACK_HELM_STARTED: "⎈",
    ev.ROLLBACK_HELM_SUCCEEDED: "⎈",
    ev.ROLLBACK_HELM_FAILED: "⎈",
    ev.ROLLOUT_ROLLED_BACK: "■",
    ev.ROLLOUT_ROLLBACK_FAILED: "‼",
}
#: The icon of an event not in :data:`ICONS`.
NO_ICON: Final = "·"
#: Width of the event-name column of :func:`format_line` and ``canary timeline``.
NAME_WIDTH: Final = 26


def icon(name: str) -> str:
    return ICONS.get(name, NO_ICON)


def number(value: Any) -> str:
    """The one number format: whole numbers as they are, others to four significant digits
    (``0.01235``, ``512.3``), large ones without decimals, no value as ``no data``."""
    if value is None:
        return "no data"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if abs(value) >= 1000:
        return f"{value:.0f}"
    return f"{value:.4g}"


def text(value: Any) -> str:
    """A field as text, ``?`` when it is missing."""
    return "?" if value is None or value == "" else str(value)


def bounds(limits: Mapping[str, Any]) -> str:
    """``≤ 0.01, ≤ stable+0.005``: a metric's bounds as a person reads them."""
    parts = []
    for key, sym in (("max", "≤"), ("min", "≥")):
        if key in limits:
            parts.append(f"{sym} {number(limits[key])}")
    if "maxAboveStable" in limits:
        parts.append(f"≤ stable+{number(limits['maxAboveStable'])}")
    if "maxRatioToStable" in limits:
        parts.append(f"≤ {number(limits['maxRatioToStable'])}× stable")
    return ", ".join(parts)


def weights(value: Any) -> str:
    """``[stable, canary]`` (how events carry weights) → ``stable 0 % / canary 100 %``."""
    if isinstance(value, list | tuple) and len(value) == 2:
        return f"stable {value[0]} % / canary {value[1]} %"
    return str(value)


def steps(value: Any) -> str:
    if isinstance(value, list) and value:
        return " → ".join(str(v) for v in value)
    return "?"


def metric(m: Mapping[str, Any]) -> str:
    """``error-rate 0.05 (stable 0.001) [≤ 0.01] FAIL``: one metric of a check."""
    out = f"{m.get('name')} {number(m.get('value'))}"
    if "stable_value" in m:
        out += f" (stable {number(m.get('stable_value'))})"
    limits = bounds(m.get("bounds") or {})
    if limits:
        out += f" [{limits}]"
    if m.get("verdict") not in (None, "PASS"):
        out += f" {m.get('verdict')}"
    return out


def describe(record: Mapping[str, Any]) -> str:
    """The human part of one event: what happened, with the numbers that matter. It is the
    message of the Kubernetes Event posted for it."""
    try:
        return _describe(record)
    except (AttributeError, TypeError, ValueError, KeyError, IndexError):
        # canary's own records always render; a hand-edited log line must not stop the rest
        return text(record.get("reason"))


def _describe(r: Mapping[str, Any]) -> str:
    name = str(r.get("event", ""))
    if name == ev.ROLLOUT_STARTED:
        return (
            f"canary {str(r.get('canaryHash', ''))[:10]} (revision {r.get('revision')}), "
            f"base revision {r.get('baseRevision')}, steps {r.get('steps')}"
        )
    if name == ev.STEP_STARTED:
        head = f"step {r.get('step')}: canary {r.get('weight')}% for at least {r.get('hold')}"
        return f"{head} ({r['why']})" if r.get("why") else head
    if name == ev.WEIGHT_SET:
        return f"weights stable {r.get('stable')} / canary {r.get('canary')} ({r.get('why')})"
    if name == ev.WEIGHT_DRIFT:
        return f"live weights {r.get('live')} differ from ours {r.get('expected')}: rewriting"
    if name.startswith("check."):
        metrics = "; ".join(metric(m) for m in r.get("metrics") or [])
        reqs = r.get("canary_requests")
        head = f"step {r.get('step')} ({r.get('weight')}%) window {r.get('window')}"
        if reqs is not None:
            head += f", {number(reqs)} canary req"
        body = metrics or str(r.get("reason", ""))
        tail = f" — {r.get('reason')}" if name != ev.CHECK_PASSED and metrics else ""
        return f"{head}: {body}{tail}"
    if name == ev.ROLLBACK_HELM_STARTED:
        return (
            f"helm rollback {r.get('release')} {r.get('revision')} "
            f"(attempt {r.get('attempt')}, timeout {r.get('timeout')})"
        )
    if name == ev.ROLLBACK_HELM_SUCCEEDED:
        return f"release at revision {r.get('revision')} (rollback to {r.get('baseRevision')})"
    if name == ev.ROLLBACK_HELM_FAILED:
        return f"attempt {r.get('attempt')} failed: {r.get('error')}"
    if name == ev.ROLLBACK_TRAFFIC_REVERTED:
        secs = r.get("secondsSinceFirstFail")
        after = f" {number(secs)} s after the first failed check" if secs is not None else ""
        return f"all traffic on stable{after}"
    if name == ev.BASE_RECORDED:
        return f"base revision {r.get('baseRevision')}"
    if name in (ev.COMMAND_ACCEPTED, ev.COMMAND_DROPPED):
        who = f" by {r.get('by')}" if r.get("by") else ""
        why = f": {r.get('reason')}" if r.get("reason") else ""
        return f"{r.get('cmd') or 'command'}{who}{why}"
    if name == ev.ROLLOUT_PROMOTED:
        to = "to 100 %" if r.get("full") else "to the next step"
        return f"promoted {to} by {text(r.get('by'))} (at step {text(r.get('step'))})"
    if name == ev.ROLLOUT_RESUMED:
        return f"resumed by {text(r.get('by'))} at step {text(r.get('step'))}"
    if name == ev.ROLLOUT_PAUSED and r.get("kind"):
        return f"{r.get('kind')}: {text(r.get('reason'))}"
    if name == ev.TICK_FAILED:
        return f"{text(r.get('stage'))}: {text(r.get('error'))} ({text(r.get('kind'))})"
    if name == ev.STATE_LOST:
        return f"state annotation lost: {text(r.get('reason'))}"
    for key in ("reason", "outcome", "error"):
        if r.get(key):
            return str(r[key])
    return ""


def clock(record: Mapping[str, Any], start: datetime | None) -> str:
    """``HH:MM:SS``, or ``+MM:SS`` since ``start``; eight spaces without a time."""
    raw = record.get("at") or record.get("ts")
    if not isinstance(raw, str):
        return "        "
    at = parse_iso(raw)
    if at is None:
        return raw[:8]
    if start is None:
        return at.strftime("%H:%M:%S")
    secs = int((at - start).total_seconds())
    return f"+{secs // 60:02d}:{secs % 60:02d}"


def format_line(record: Mapping[str, Any], start: datetime | None = None) -> str:
    """``+02:30 ✓ check.passed             step 1 (50%) ...`` — one event, one line."""
    name = str(record.get("event", ""))
    return f"{clock(record, start)} {icon(name)} {name:<{NAME_WIDTH}} {describe(record)}".rstrip()


def summary(record: Mapping[str, Any]) -> str:
    """One line a person can act on, for a notification: which rollout, what happened, why,
    with the numbers."""
    name = record.get("event")
    plan = record.get("plan")
    rid = record.get("rolloutId")
    who = (f"{plan}: " if plan else "") + (f"rollout {rid}" if rid else "rollout")
    reason = record.get("reason")
    why = f": {reason}" if reason else ""
    rev, base = record.get("revision"), record.get("baseRevision")
    if name == ev.ROLLOUT_STARTED:
        parts = []
        if rev is not None:
            parts.append(f"revision {rev}" + (f" over stable revision {base}" if base else ""))
        if record.get("canary"):
            parts.append(f"canary {record['canary']}")
        if isinstance(record.get("steps"), list) and record["steps"]:
            parts.append(f"steps {steps(record['steps'])} %")
        return f"{who} started" + (": " + ", ".join(parts) if parts else "")
    if name == ev.ROLLOUT_SUCCEEDED:
        with_weights = f" with {weights(record['weights'])}" if record.get("weights") else ""
        return f"{who} succeeded{with_weights}{why}"
    if name == ev.ROLLOUT_PAUSED:
        kind = f" ({record['kind']})" if record.get("kind") else ""
        return f"{who} paused{kind}{why}"
    if name == ev.ROLLOUT_ROLLED_BACK:
        to = f" to revision {base}" if base is not None else ""
        now = f" (now revision {rev})" if rev is not None else ""
        return f"{who} rolled back{to}{now}{why}"
    if name == ev.ROLLOUT_ROLLBACK_FAILED:
        return f"{who} rollback FAILED, traffic stays on stable, a human is needed{why}"
    return f"{who}: {name}{why}"


def check_text(check: Mapping[str, Any]) -> str:
    """A check's verdict, requests and one line per metric (value, stable value, bounds)."""
    head = [str(check.get("verdict") or "?")]
    if check.get("step") is not None:
        head.append(f"at step {check['step']} (canary {number(check.get('weight'))} %)")
    requests = (
        f"{number(check.get('canary_requests'))} canary / "
        f"{number(check.get('stable_requests'))} stable requests"
    )
    if check.get("window"):
        requests += f" in {check['window']}"
    lines = [" ".join(head) + ", " + requests]
    for m in check.get("metrics") or []:
        line = f"{m.get('name')} {m.get('verdict')}: canary {number(m.get('value'))}"
        if "stable_value" in m:
            line += f", stable {number(m.get('stable_value'))}"
        limits = m.get("bounds")
        if isinstance(limits, Mapping) and limits:
            line += f" ({bounds(limits)})"
        if m.get("reason"):
            line += f" — {m['reason']}"
        lines.append(line)
    return "\n".join(lines)
