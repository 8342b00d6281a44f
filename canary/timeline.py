"""Event records → readable timeline lines, for people at 3 a.m.

The records are the flat dicts of the JSON log lines (``event``, ``plan``, ``at``/``ts`` and the
event's fields), so the simulator's live output and ``canary timeline`` (reading
``kubectl logs``) print the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

_ICONS = {
    "rollout.started": "▶",
    "step.started": "→",
    "weight.set": "⇄",
    "weight.drift": "!",
    "check.passed": "✓",
    "check.failed": "✗",
    "check.inconclusive": "?",
    "check.error": "!",
    "rollout.succeeded": "★",
    "rollout.paused": "‖",
    "rollback.started": "↩",
    "rollback.traffic_reverted": "⇄",
    "rollback.helm_started": "⎈",
    "rollback.helm_succeeded": "⎈",
    "rollback.helm_failed": "⎈",
    "rollout.rolled_back": "■",
    "rollout.rollback_failed": "‼",
}


def _num(value: Any) -> str:
    if value is None:
        return "no data"
    if isinstance(value, float):
        if value != 0 and abs(value) < 0.01:
            return f"{value:.4f}"
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _bounds(bounds: Mapping[str, Any]) -> str:
    parts = []
    for key, sym in (("max", "≤"), ("min", "≥")):
        if key in bounds:
            parts.append(f"{sym} {_num(bounds[key])}")
    if "maxAboveStable" in bounds:
        parts.append(f"≤ stable+{_num(bounds['maxAboveStable'])}")
    if "maxRatioToStable" in bounds:
        parts.append(f"≤ {_num(bounds['maxRatioToStable'])}× stable")
    return ", ".join(parts)


def _metric(m: Mapping[str, Any]) -> str:
    text = f"{m.get('name')} {_num(m.get('value'))}"
    if "stable_value" in m:
        text += f" (stable {_num(m.get('stable_value'))})"
    bounds = _bounds(m.get("bounds") or {})
    if bounds:
        text += f" [{bounds}]"
    if m.get("verdict") not in (None, "PASS"):
        text += f" {m.get('verdict')}"
    return text


def describe(record: Mapping[str, Any]) -> str:
    """The human part of one event: what happened, with the numbers that matter."""
    name = str(record.get("event", ""))
    r = record
    if name == "rollout.started":
        return (
            f"canary {str(r.get('canaryHash', ''))[:10]} (revision {r.get('revision')}), "
            f"base revision {r.get('baseRevision')}, steps {r.get('steps')}"
        )
    if name == "step.started":
        return f"step {r.get('step')}: canary {r.get('weight')}% for at least {r.get('hold')}"
    if name == "weight.set":
        return f"weights stable {r.get('stable')} / canary {r.get('canary')} ({r.get('why')})"
    if name == "weight.drift":
        return f"live weights {r.get('live')} differ from ours {r.get('expected')}: rewriting"
    if name.startswith("check."):
        metrics = "; ".join(_metric(m) for m in r.get("metrics") or [])
        reqs = r.get("canary_requests")
        head = f"step {r.get('step')} ({r.get('weight')}%) window {r.get('window')}"
        if reqs is not None:
            head += f", {_num(reqs)} canary req"
        body = metrics or str(r.get("reason", ""))
        tail = f" — {r.get('reason')}" if name != "check.passed" and metrics else ""
        return f"{head}: {body}{tail}"
    if name == "rollback.helm_started":
        return (
            f"helm rollback {r.get('release')} {r.get('revision')} "
            f"(attempt {r.get('attempt')}, timeout {r.get('timeout')})"
        )
    if name == "rollback.helm_succeeded":
        return f"release at revision {r.get('revision')} (rollback to {r.get('baseRevision')})"
    if name == "rollback.helm_failed":
        return f"attempt {r.get('attempt')} failed: {r.get('error')}"
    if name == "rollback.traffic_reverted":
        secs = r.get("secondsSinceFirstFail")
        after = f" {_num(secs)} s after the first failed check" if secs is not None else ""
        return f"all traffic on stable{after}"
    if name == "base.recorded":
        return f"base revision {r.get('baseRevision')}"
    for key in ("reason", "outcome", "error"):
        if r.get(key):
            return str(r[key])
    return ""


def _clock(record: Mapping[str, Any], start: datetime | None) -> str:
    raw = record.get("at") or record.get("ts")
    if not isinstance(raw, str):
        return "        "
    try:
        at = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return raw[:8]
    if start is None:
        return at.strftime("%H:%M:%S")
    secs = int((at - start).total_seconds())
    return f"+{secs // 60:02d}:{secs % 60:02d}"


def format_line(record: Mapping[str, Any], start: datetime | None = None) -> str:
    """``+02:30 ✓ check.passed             step 1 (50%) ...`` — one event, one line."""
    name = str(record.get("event", ""))
    icon = _ICONS.get(name, "·")
    return f"{_clock(record, start)} {icon} {name:<26} {describe(record)}".rstrip()
