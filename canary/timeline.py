"""Event records → readable timeline lines, for people at 3 a.m.

The records are the flat dicts of the JSON log lines (``event``, ``plan``, ``at``/``ts`` and the
event's fields), so the simulator's live output and ``canary timeline`` (reading
``kubectl logs``) print the same thing.

``canary timeline [--rollout ID] [--plan NS/NAME] [--queries] [FILE ...]`` reads those logs
(stdin by default) and tells one story per rollout: :func:`scan_log` keeps the rollout records
and merges replicas by time, :func:`group_rollouts` groups them by (plan, rolloutId),
:func:`render_rollout` prints header, events and footer. All three are pure; only
:func:`cmd_timeline` reads files. Exit codes: 0 printed something · 2 usage error (unreadable
FILE, stdin a terminal) · 3 no rollout in the input matches.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TextIO

from canary import events as ev
from canary.exitcodes import USAGE
from canary.model import Outcome
from canary.plan import format_duration

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


# -- `canary timeline`: JSON logs → one story per rollout -------------------------------------

#: Exit code when the input holds no rollout that matches (none at all, or not the one asked
#: for): "not in these logs" differs from a usage error (2), and 0 always means output.
NOT_FOUND: Final = 3
#: Width of the event-name column (the same as :func:`format_line`'s).
_NAME_WIDTH: Final = 26
#: Check rows and footers start under the event-name column: ``HH:MM:SS +MM:SS ✗ ``.
_INDENT: Final = " " * 18
#: At most this many rollouts are listed when the one asked for is not in the input.
_LIST_AT_MOST: Final = 20

#: Events that end a rollout, and the outcome they give it (as canary.telemetry counts them).
_ENDINGS: Final = ev.ROLLOUT_ENDINGS
#: After one of these a rollout is under way again (a resume, or `abort` in RollbackFailed).
_RESTARTS: Final = frozenset(
    {ev.ROLLOUT_RESUMED, ev.ROLLOUT_PROMOTED, ev.STEP_STARTED, ev.ROLLBACK_STARTED}
)
#: Outcomes after which a plan's events without a rolloutId belong to no rollout (a
#: RollbackFailed one still waits for a human, so a tick.failed then is part of its story).
_CLOSED: Final = frozenset(
    {Outcome.ROLLED_BACK, Outcome.SUPERSEDED, Outcome.BYPASSED, Outcome.ABANDONED}
)
_PAUSED: Final = "Paused"
#: What `kubectl logs --prefix --timestamps` writes before a line: ``[pod/NAME/CONTAINER] ``
#: and an RFC 3339 time.
_KUBECTL_PREFIX: Final = re.compile(r"(?:\[[^\]]*\]\s+)?(?:\d{4}-\d\d-\d\dT\S+\s+)?")
_CHECK_VERDICTS: Final[Mapping[str, str]] = {
    ev.CHECK_PASSED: "PASS",
    ev.CHECK_FAILED: "FAIL",
    ev.CHECK_ERROR: "ERROR",
    ev.CHECK_INCONCLUSIVE: "INCONCLUSIVE",
}


def _when(value: Any) -> datetime | None:
    """An ISO 8601 ``at``/``ts`` as an aware datetime (naive ones are UTC); None if it is not."""
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return at.astimezone(UTC) if at.tzinfo is not None else at.replace(tzinfo=UTC)
    except (ValueError, OverflowError):  # not a time, or one at the very edge of the calendar
        return None


def _time(record: Mapping[str, Any]) -> datetime | None:
    """When a record happened: ``at`` (the controller's clock), else ``ts`` (the log line's)."""
    return _when(record.get("at")) or _when(record.get("ts"))


def _json_object(line: str) -> tuple[dict[str, Any], str] | None:
    """The log record a line carries and its JSON text, or None. Tolerates what kubectl puts
    in front (``--prefix``, ``--timestamps``) and a carriage return at the end; JSON anywhere
    else in a line (an exception message quoting a record) is not a log line."""
    match = _KUBECTL_PREFIX.match(line)
    text = line[match.end() :].rstrip() if match else ""
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("event"), str):
        return None
    return value, text


@dataclass
class LogScan:
    """What a log held: the rollout records (sorted by time) and what was set aside."""

    records: list[dict[str, Any]] = field(default_factory=list)
    lines: int = 0
    not_json: int = 0
    duplicates: int = 0
    #: JSON lines that are about the process, not a rollout (daemon.*, leader.*, log.*, ...)
    daemon: Counter[str] = field(default_factory=Counter)


def scan_log(sources: Iterable[Iterable[str]]) -> LogScan:
    """Read the lines of one or more logs (one per replica, or one stream with all of them)
    and keep the records of rollout events, merged by time.

    A record is about a rollout when it names a ``plan`` and its event is in the catalog or it
    carries a ``rolloutId``. Time is ``at`` (the controller's clock when it decided), else
    ``ts`` (when the line was written); ties keep the order of the input. A line without a
    usable time keeps the time of the line before it in its own log.
    """
    scan = LogScan()
    seen: set[str] = set()
    keyed: list[tuple[datetime, datetime, int, int, dict[str, Any]]] = []
    floor = datetime.min.replace(tzinfo=UTC)
    for source, lines in enumerate(sources):
        last = floor
        for number, line in enumerate(lines):
            scan.lines += 1
            parsed = _json_object(line)
            if parsed is None:
                if line.strip():
                    scan.not_json += 1
                continue
            record, text = parsed
            if text in seen:  # the same line twice: overlapping `kubectl logs` calls
                scan.duplicates += 1
                continue
            seen.add(text)
            name = record["event"]
            rollout_id = record.get("rolloutId")
            about_rollout = isinstance(record.get("plan"), str) and (
                name in ev.CATALOG or (isinstance(rollout_id, str) and bool(rollout_id))
            )
            if not about_rollout:
                scan.daemon[name] += 1
                continue
            ts = _when(record.get("ts"))
            at = _when(record.get("at")) or ts or last
            last = at
            keyed.append((at, ts or at, source, number, record))
    keyed.sort(key=lambda k: (k[0], k[1], k[2], k[3]))
    scan.records = [k[4] for k in keyed]
    return scan


@dataclass
class Rollout:
    """One rollout's records, in time order, and what they add up to."""

    plan: str
    rollout_id: str
    records: list[dict[str, Any]] = field(default_factory=list)
    #: Outcome name, "Paused", or None while under way.
    outcome: str | None = None
    ended: datetime | None = None
    closed: bool = False

    def add(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        name = record["event"]
        ending = _ENDINGS.get(name)
        if name == ev.PLAN_DELETED and self.outcome not in (None, _PAUSED):
            ending = None  # a plan deleted after its rollout ended takes nothing from it
        if ending is not None:
            self.outcome = ending.value
            self.ended = _time(record)
            self.closed = ending in _CLOSED
        elif name == ev.ROLLOUT_PAUSED:
            self.outcome = _PAUSED
            self.ended = None
        elif name in _RESTARTS and self.outcome in (_PAUSED, Outcome.ROLLBACK_FAILED.value):
            self.outcome = None
            self.ended = None
        elif name == ev.ROLLOUT_FINALISED:
            self.closed = True
            if self.outcome is None and isinstance(record.get("outcome"), str):
                self.outcome = record["outcome"]

    def first(self, name: str) -> dict[str, Any] | None:
        return next((r for r in self.records if r["event"] == name), None)

    def all(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["event"] == name]

    @property
    def started(self) -> datetime | None:
        """When ``rollout.started`` was logged; None if the log begins after it."""
        record = self.first(ev.ROLLOUT_STARTED)
        return _time(record) if record else None

    @property
    def begin(self) -> datetime | None:
        """The start, or the first time this log shows the rollout."""
        return self.started or next((t for t in map(_time, self.records) if t), None)

    @property
    def last_seen(self) -> datetime | None:
        times = [t for t in map(_time, self.records) if t]
        return times[-1] if times else None

    def matches(self, rollout: str | None, plan: str | None) -> bool:
        """``rollout``: a rolloutId, or a canary-hash prefix (every attempt of that canary);
        ``plan``: NAMESPACE/NAME, or NAME alone."""
        if rollout is not None and not (
            self.rollout_id == rollout
            or ("-" not in rollout and self.rollout_id.startswith(rollout))
        ):
            return False
        return (
            plan is None
            or self.plan == plan
            or ("/" not in plan and self.plan.endswith("/" + plan))
        )


def group_rollouts(records: Iterable[dict[str, Any]]) -> tuple[list[Rollout], Counter[str]]:
    """Records → rollouts, keyed by (plan, rolloutId), in order of first appearance.

    A record without a rolloutId (``tick.failed``, ``plan.invalid`` while Idle...) joins the
    plan's latest rollout while that one is still open; the others are counted by event name.
    """
    rollouts: dict[tuple[str, str], Rollout] = {}
    latest: dict[str, Rollout] = {}
    outside: Counter[str] = Counter()
    for record in records:
        plan = str(record["plan"])
        rid = record.get("rolloutId")
        if isinstance(rid, str) and rid:
            rollout = rollouts.get((plan, rid))
            if rollout is None:
                rollout = rollouts[plan, rid] = Rollout(plan, rid)
            latest[plan] = rollout
            rollout.add(record)
            continue
        current = latest.get(plan)
        if current is not None and not current.closed:
            current.add(record)
        else:
            outside[record["event"]] += 1
    return list(rollouts.values()), outside


# -- rendering ----------------------------------------------------------------------------------


def _hms(at: datetime | None) -> str:
    return at.strftime("%H:%M:%S") if at else "??:??:??"


def _relative(at: datetime | None, start: datetime | None) -> str:
    if at is None or start is None:
        return "      "
    secs = int((at - start).total_seconds())
    sign = "-" if secs < 0 else "+"
    secs = abs(secs)
    hours, rest = divmod(secs, 3600)
    if hours:
        return f"{sign}{hours}:{rest // 60:02d}:{rest % 60:02d}"
    return f"{sign}{rest // 60:02d}:{rest % 60:02d}"


def _span(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None or end < start:
        return "?"
    return format_duration(timedelta(seconds=round((end - start).total_seconds())))


def _steps(value: Any) -> str:
    if isinstance(value, list) and value:
        return " → ".join(str(v) for v in value)
    return "?"


def _text(value: Any) -> str:
    return "?" if value is None or value == "" else str(value)


def _story(record: Mapping[str, Any]) -> str:
    """describe(), plus the events it leaves bare (commands, pauses, failed ticks)."""
    name = record.get("event")
    r = record
    if name in (ev.COMMAND_ACCEPTED, ev.COMMAND_DROPPED):
        who = f" by {r.get('by')}" if r.get("by") else ""
        why = f": {r.get('reason')}" if r.get("reason") else ""
        return f"{r.get('cmd') or 'command'}{who}{why}"
    if name == ev.ROLLOUT_PROMOTED:
        to = "to 100 %" if r.get("full") else "to the next step"
        return f"promoted {to} by {_text(r.get('by'))} (at step {_text(r.get('step'))})"
    if name == ev.ROLLOUT_RESUMED:
        return f"resumed by {_text(r.get('by'))} at step {_text(r.get('step'))}"
    if name == ev.ROLLOUT_PAUSED and r.get("kind"):
        return f"{r.get('kind')}: {_text(r.get('reason'))}"
    if name == ev.TICK_FAILED:
        return f"{_text(r.get('stage'))}: {_text(r.get('error'))} ({_text(r.get('kind'))})"
    if name == ev.STEP_STARTED and r.get("why"):
        return f"{describe(record)} ({r.get('why')})"
    if name == ev.STATE_LOST:
        return f"state annotation lost: {_text(r.get('reason'))}"
    try:
        return describe(record)
    except (AttributeError, TypeError, ValueError, KeyError, IndexError):
        # describe() trusts canary's own records; a hand-edited line must not stop the rest
        return _text(r.get("reason"))


def _check_lines(record: Mapping[str, Any], queries: bool) -> tuple[str, list[str]]:
    """The head of a check line and one row per metric: value, stable value, bounds, verdict."""
    r = record
    verdict = _CHECK_VERDICTS.get(str(r.get("event")), _text(r.get("verdict")))
    head = f"{verdict} at step {_text(r.get('step'))} ({_text(r.get('weight'))}%)"
    if r.get("window"):
        head += f", window {r.get('window')}"
    if "canary_requests" in r or "stable_requests" in r:
        head += (
            f", requests canary {_num(r.get('canary_requests'))} / "
            f"stable {_num(r.get('stable_requests'))}"
        )
    counter = {"PASS": "passes", "FAIL": "fails", "ERROR": "errors"}.get(verdict)
    if counter and isinstance(r.get(counter), int):
        head += f"; {counter} {r[counter]} in a row"
    metrics = (
        [m for m in r.get("metrics") or [] if isinstance(m, Mapping)]
        if isinstance(r.get("metrics"), list)
        else []
    )
    if verdict != "PASS" and not any(m.get("verdict") not in (None, "PASS") for m in metrics):
        head += f" — {_text(r.get('reason'))}"
    table: list[tuple[str, str, str, str, str]] = []
    for m in metrics:
        stable = f"stable {_num(m.get('stable_value'))}" if "stable_value" in m else ""
        bounds = m.get("bounds")
        limits = _bounds(bounds) if isinstance(bounds, Mapping) else ""
        mv = _text(m.get("verdict"))
        tail = mv if mv == "PASS" else f"{mv}  {_text(m.get('reason'))}"
        name = _text(m.get("name")) + (" (critical)" if m.get("critical") else "")
        table.append((name, _num(m.get("value")), stable, limits or "no bounds", tail))
    widths = [max((len(row[i]) for row in table), default=0) for i in range(4)]
    rows: list[str] = []
    for row, m in zip(table, metrics, strict=True):
        cells = [c.ljust(w) for c, w in zip(row[:4], widths, strict=True)]
        rows.append(f"{_INDENT}{'  '.join(cells)}  {row[4]}".rstrip())
        if queries:
            for track in ("query", "stable_query"):
                if m.get(track):
                    label = "canary" if track == "query" else "stable"
                    rows.append(f"{_INDENT}    {label}: {m[track]}")
    return head, rows


def _event_lines(record: Mapping[str, Any], start: datetime | None, queries: bool) -> list[str]:
    name = str(record.get("event"))
    at = _time(record)
    prefix = f"{_hms(at)} {_relative(at, start)} {_ICONS.get(name, '·')} {name:<{_NAME_WIDTH}}"
    if name in _CHECK_VERDICTS:
        head, rows = _check_lines(record, queries)
        return [f"{prefix} {head}".rstrip(), *rows]
    return [f"{prefix} {_story(record)}".rstrip()]


def _helm_attempts(rollout: Rollout) -> list[str]:
    """``helm rollback reviews 1 (timeout 5m)`` and one line per attempt with how it ended."""
    target = ""
    attempts: dict[str, str] = {}  # attempt number → how it ended, in order of first start
    current: Any = None
    for r in rollout.records:
        name = r["event"]
        if name == ev.ROLLBACK_HELM_STARTED:
            current = r.get("attempt")
            target = (
                f"helm rollback {_text(r.get('release'))} {_text(r.get('revision'))} "
                f"(timeout {_text(r.get('timeout'))})"
            )
            resumed = " (resumed by a new leader)" if r.get("resumed") else ""
            attempts[_text(current)] = f"attempt {_text(current)}{resumed}: no result in the log"
        elif name == ev.ROLLBACK_HELM_FAILED:
            number = _text(r.get("attempt", current))
            attempts[number] = f"attempt {number} failed: {_text(r.get('error'))}"
        elif name == ev.ROLLBACK_HELM_SUCCEEDED:
            number = _text(current)
            attempts[number] = (
                f"attempt {number} succeeded → revision {_text(r.get('revision'))} "
                f"(confirmed by {_text(r.get('confirmedFrom'))})"
            )
    if not attempts:
        return []
    return [target or "helm rollback", *attempts.values()]


def _time_to_safe(rollout: Rollout) -> str:
    reverted = rollout.first(ev.ROLLBACK_TRAFFIC_REVERTED)
    rollback = rollout.first(ev.ROLLBACK_STARTED)
    if reverted is not None:
        at = _time(reverted)
        secs = reverted.get("secondsSinceFirstFail")
        if isinstance(secs, int | float) and not isinstance(secs, bool):
            first = _when(reverted.get("firstFailAt"))
            return (
                f"{_num(float(secs))} s (first failed check {_hms(first)} → all traffic on "
                f"stable {_hms(at)})"
            )
        return f"all traffic on stable at {_hms(at)} (no failed check before the rollback)"
    if rollback is None:
        return ""
    after = rollout.records[rollout.records.index(rollback) :]
    if any(r["event"] == ev.STABLE_UNAVAILABLE for r in after):
        return "not reached: stable is not available, traffic was held (see stable.unavailable)"
    return "0 s: all traffic was already on stable when the rollback started"


def _outcome_text(rollout: Rollout) -> str:
    begin = rollout.begin
    at_least = "" if rollout.started else "at least "
    last_seen = rollout.last_seen
    if rollout.outcome == _PAUSED:
        return (
            f"Paused after {at_least}{_span(begin, last_seen)} (a human decides; "
            f"last line {_hms(last_seen)})"
        )
    if rollout.outcome is None:
        phase = rollout.records[-1].get("phase")
        where = f" ({phase})" if isinstance(phase, str) and phase else ""
        return (
            f"under way{where} for {at_least}{_span(begin, last_seen)} so far "
            f"(last line {_hms(last_seen)})"
        )
    return f"{rollout.outcome} after {at_least}{_span(begin, rollout.ended or rollout.last_seen)}"


def render_rollout(rollout: Rollout, queries: bool = False) -> list[str]:
    """A header (plan, rollout, revisions, start, outcome, duration), a line per event, and a
    footer with the breach, time to safe and the helm attempts."""
    started = rollout.first(ev.ROLLOUT_STARTED)
    rollback = rollout.first(ev.ROLLBACK_STARTED)
    helm = rollout.first(ev.ROLLBACK_HELM_STARTED)
    base = (started or {}).get("baseRevision") or (rollback or {}).get("baseRevision")
    if base is None and helm is not None:
        base = helm.get("revision")
    title = f"══ {rollout.plan} · rollout {rollout.rollout_id} "
    lines = [title.ljust(90, "═")]
    if started is not None:
        canary = f"canary {_text(started.get('canary'))} {str(started.get('canaryHash', ''))[:10]}"
        lines.append(
            f"   revision {_text(started.get('revision'))} ({canary.rstrip()}) · base revision "
            f"{_text(base)} · steps {_steps(started.get('steps'))}"
        )
        lines.append(
            f"   started {rollout.started:%Y-%m-%d %H:%M:%S} UTC"
            if rollout.started
            else "   started ?"
        )
    else:
        lines.append(f"   revision ? · base revision {_text(base)} · steps ?")
        first = rollout.begin
        when = f"{first:%Y-%m-%d %H:%M:%S} UTC" if first else "?"
        lines.append(f"   started before this log begins (first line {when})")
    lines[-1] += f" · {_outcome_text(rollout)}"
    lines.append("")
    start = rollout.begin
    for record in rollout.records:
        lines.extend(_event_lines(record, start, queries))
    lines.append("")
    footer: list[tuple[str, str]] = []
    if rollback is not None:
        footer.append(("breach", _text(rollback.get("reason"))))
        footer.append(("time to safe", _time_to_safe(rollout)))
    elif rollout.first(ev.ROLLBACK_TRAFFIC_REVERTED) is not None:
        footer.append(("time to safe", _time_to_safe(rollout)))
    helm_lines = _helm_attempts(rollout)
    if helm_lines:
        footer.append(("helm", "\n".join(helm_lines)))
    if rollout.outcome == _PAUSED:
        paused = rollout.all(ev.ROLLOUT_PAUSED)[-1]
        footer.append(("paused", _text(paused.get("reason"))))
    footer.append(("outcome", _outcome_text(rollout)))
    for key, value in footer:
        head, *more = value.split("\n")
        lines.append(f"{_INDENT}{key:<13} {head}")
        lines.extend(f"{_INDENT}{'':<13}   {line}" for line in more)
    return lines


def _skipped(scan: LogScan, outside: Counter[str], hidden: int, why: str) -> str:
    def names(counter: Counter[str]) -> str:
        return ", ".join(f"{n} ×{c}" if c > 1 else n for n, c in counter.most_common())

    parts = []
    if hidden:
        parts.append(f"{hidden} other rollout(s) not shown ({why})")
    if scan.not_json:
        parts.append(f"{scan.not_json} line(s) that are not JSON (tracebacks, console output)")
    if scan.daemon:
        parts.append(f"{sum(scan.daemon.values())} daemon line(s): {names(scan.daemon)}")
    if scan.duplicates:
        parts.append(f"{scan.duplicates} duplicate line(s)")
    if outside:
        parts.append(f"{sum(outside.values())} plan event(s) outside any rollout: {names(outside)}")
    return "── skipped: " + "; ".join(parts) if parts else ""


# -- the command --------------------------------------------------------------------------------

TIMELINE_DESCRIPTION: Final = """\
Read canary's JSON logs (stdin, or FILEs) and print what each rollout did: every step, every
check with its values, bounds and verdict, the breach, the time to safe (first failed check →
all traffic on stable), the helm rollback attempts and the outcome. Lines from several replicas
are merged by time; lines that are not JSON and daemon-level lines are skipped and counted.

  kubectl logs deploy/canary | canary timeline           # one pod of the Deployment
  kubectl logs -l LABEL=VALUE --tail=-1 | canary timeline  # every replica (with -l,
                                                         # kubectl keeps 10 lines unless --tail)
  canary timeline --rollout f012e7925a-1 replica-a.log replica-b.log
"""
TIMELINE_EPILOG: Final = """\
exit codes: 0 printed at least one rollout · 2 usage error (unreadable FILE, stdin is a
terminal) · 3 no rollout in the input matches (none at all, or not the --rollout/--plan asked for)
"""


def add_timeline_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``canary timeline [--rollout ID] [--plan NS/NAME] [--queries] [FILE ...]``."""
    p = subparsers.add_parser(
        "timeline",
        help="JSON logs → a readable timeline per rollout",
        description=TIMELINE_DESCRIPTION,
        epilog=TIMELINE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="log file(s), merged by time (default, or '-': stdin)",
    )
    p.add_argument(
        "--rollout",
        metavar="ID",
        default=None,
        help="only this rollout: a rolloutId (f012e7925a-1), or a canary-hash prefix for "
        "every attempt of that canary",
    )
    p.add_argument(
        "--plan",
        metavar="NS/NAME",
        default=None,
        help="only this plan's rollouts (NAME alone matches it in any namespace)",
    )
    p.add_argument("--queries", action="store_true", help="also print each check's PromQL")
    p.set_defaults(func=cmd_timeline)


def _read(name: str, err: TextIO) -> list[str] | None:
    """A log's lines; None after printing why it cannot be read. Bytes that are not UTF-8
    become U+FFFD: a log with junk in it is still a log."""
    if name == "-":
        stdin = sys.stdin
        if stdin is None or stdin.isatty():
            print(
                "canary timeline: stdin is a terminal: pipe the logs in "
                "(kubectl logs deploy/canary | canary timeline) or pass a FILE",
                file=err,
            )
            return None
        raw = getattr(stdin, "buffer", None)
        text = raw.read().decode("utf-8", "replace") if raw is not None else stdin.read()
        return text.splitlines()
    try:
        return Path(name).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        print(f"canary timeline: cannot read {name}: {exc.strerror or exc}", file=err)
        return None


def cmd_timeline(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Print the timeline of every rollout in the logs that matches ``--rollout``/``--plan``.

    Exit 0 if at least one rollout was printed, 2 on a usage error, 3 (:data:`NOT_FOUND`) if
    no rollout in the input matches.
    """
    sources: list[list[str]] = []
    for name in args.files or ["-"]:
        lines = _read(name, err)
        if lines is None:
            return USAGE
        sources.append(lines)
    scan = scan_log(sources)
    rollouts, outside = group_rollouts(scan.records)
    wanted = [r for r in rollouts if r.matches(args.rollout, args.plan)]
    if not wanted:
        _explain_nothing(args, scan, rollouts, err)
        return NOT_FOUND
    filters = " ".join(
        f"--{k} {v}" for k, v in (("rollout", args.rollout), ("plan", args.plan)) if v
    )
    skipped = _skipped(scan, outside, len(rollouts) - len(wanted), filters)
    try:
        for index, rollout in enumerate(wanted):
            if index:
                print(file=out)
            print("\n".join(render_rollout(rollout, queries=args.queries)), file=out)
        if skipped:
            print(f"\n{skipped}", file=out)
        out.flush()
    except BrokenPipeError:  # `canary timeline | head`: the reader has seen enough
        _silence(out)
    return 0


def _silence(out: TextIO) -> None:
    """Point a closed stdout at /dev/null so the interpreter's final flush stays quiet."""
    try:
        fd = out.fileno()
    except (OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _explain_nothing(
    args: argparse.Namespace, scan: LogScan, rollouts: Sequence[Rollout], err: TextIO
) -> None:
    if not rollouts:
        print(
            f"canary timeline: no rollout events in the input ({scan.lines} line(s): "
            f"{scan.not_json} not JSON, {sum(scan.daemon.values())} daemon-level). It reads "
            "canary's JSON logs (--log-format json, the default off a terminal); console "
            "lines cannot be read",
            file=err,
        )
        return
    asked = " ".join(f"--{k} {v}" for k, v in (("rollout", args.rollout), ("plan", args.plan)) if v)
    print(f"canary timeline: no rollout in the input matches {asked}; it has:", file=err)
    for rollout in rollouts[:_LIST_AT_MOST]:
        begin = rollout.begin
        when = f"{begin:%Y-%m-%d %H:%M:%S} UTC" if begin else "?"
        print(
            f"  {rollout.plan}  {rollout.rollout_id}  {when}  {rollout.outcome or 'under way'}",
            file=err,
        )
    if len(rollouts) > _LIST_AT_MOST:
        print(f"  … and {len(rollouts) - _LIST_AT_MOST} more", file=err)
