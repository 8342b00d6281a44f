"""``canary timeline``'s story: JSON log lines of one or many replicas → one story per rollout.

:func:`scan_log` keeps the rollout records and merges replicas by time, :func:`group_rollouts`
groups them by (plan, rolloutId), :func:`render_rollout` prints header, events and footer. All
pure: the command (:mod:`canary.cli.timeline`) reads the files. Event text comes from
:mod:`canary.core.render`, so a line here reads like the demo's and the Kubernetes Event's.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from canary.core import events as ev
from canary.core.durations import format_duration
from canary.core.model import Outcome
from canary.core.render import NAME_WIDTH, bounds, describe, icon, number, steps, text
from canary.core.timestamps import parse_iso

#: Check rows and footers start under the event-name column: ``HH:MM:SS +MM:SS ✗ ``.
_INDENT: Final = " " * 18

#: Events that end a rollout, and the outcome they give it (as canary.shell.telemetry counts them).
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


def _time(record: Mapping[str, Any]) -> datetime | None:
    """When a record happened: ``at`` (the controller's clock), else ``ts`` (the log line's)."""
    return parse_iso(record.get("at")) or parse_iso(record.get("ts"))


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
        for index, line in enumerate(lines):
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
                name in ev.ROLLOUT_EVENTS or (isinstance(rollout_id, str) and bool(rollout_id))
            )
            if not about_rollout:
                scan.daemon[name] += 1
                continue
            ts = parse_iso(record.get("ts"))
            at = parse_iso(record.get("at")) or ts or last
            last = at
            keyed.append((at, ts or at, source, index, record))
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


def _check_lines(record: Mapping[str, Any], queries: bool) -> tuple[str, list[str]]:
    """The head of a check line and one row per metric: value, stable value, bounds, verdict."""
    r = record
    verdict = _CHECK_VERDICTS.get(str(r.get("event")), text(r.get("verdict")))
    head = f"{verdict} at step {text(r.get('step'))} ({text(r.get('weight'))}%)"
    if r.get("window"):
        head += f", window {r.get('window')}"
    if "canary_requests" in r or "stable_requests" in r:
        head += (
            f", requests canary {number(r.get('canary_requests'))} / "
            f"stable {number(r.get('stable_requests'))}"
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
        head += f" — {text(r.get('reason'))}"
    table: list[tuple[str, str, str, str, str]] = []
    for m in metrics:
        stable = f"stable {number(m.get('stable_value'))}" if "stable_value" in m else ""
        given = m.get("bounds")
        limits = bounds(given) if isinstance(given, Mapping) else ""
        mv = text(m.get("verdict"))
        tail = mv if mv == "PASS" else f"{mv}  {text(m.get('reason'))}"
        name = text(m.get("name")) + (" (critical)" if m.get("critical") else "")
        table.append((name, number(m.get("value")), stable, limits or "no bounds", tail))
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
    prefix = f"{_hms(at)} {_relative(at, start)} {icon(name)} {name:<{NAME_WIDTH}}"
    if name in _CHECK_VERDICTS:
        head, rows = _check_lines(record, queries)
        return [f"{prefix} {head}".rstrip(), *rows]
    return [f"{prefix} {describe(record)}".rstrip()]


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
                f"helm rollback {text(r.get('release'))} {text(r.get('revision'))} "
                f"(timeout {text(r.get('timeout'))})"
            )
            resumed = " (resumed by a new leader)" if r.get("resumed") else ""
            attempts[text(current)] = f"attempt {text(current)}{resumed}: no result in the log"
        elif name == ev.ROLLBACK_HELM_FAILED:
            number = text(r.get("attempt", current))
            attempts[number] = f"attempt {number} failed: {text(r.get('error'))}"
        elif name == ev.ROLLBACK_HELM_SUCCEEDED:
            number = text(current)
            attempts[number] = (
                f"attempt {number} succeeded → revision {text(r.get('revision'))} "
                f"(confirmed by {text(r.get('confirmedFrom'))})"
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
            first = parse_iso(reverted.get("firstFailAt"))
            return (
                f"{number(float(secs))} s (first failed check {_hms(first)} → all traffic on "
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
        canary = f"canary {text(started.get('canary'))} {str(started.get('canaryHash', ''))[:10]}"
        lines.append(
            f"   revision {text(started.get('revision'))} ({canary.rstrip()}) · base revision "
            f"{text(base)} · steps {steps(started.get('steps'))}"
        )
        lines.append(
            f"   started {rollout.started:%Y-%m-%d %H:%M:%S} UTC"
            if rollout.started
            else "   started ?"
        )
    else:
        lines.append(f"   revision ? · base revision {text(base)} · steps ?")
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
        footer.append(("breach", text(rollback.get("reason"))))
        footer.append(("time to safe", _time_to_safe(rollout)))
    elif rollout.first(ev.ROLLBACK_TRAFFIC_REVERTED) is not None:
        footer.append(("time to safe", _time_to_safe(rollout)))
    helm_lines = _helm_attempts(rollout)
    if helm_lines:
        footer.append(("helm", "\n".join(helm_lines)))
    if rollout.outcome == _PAUSED:
        paused = rollout.all(ev.ROLLOUT_PAUSED)[-1]
        footer.append(("paused", text(paused.get("reason"))))
    footer.append(("outcome", _outcome_text(rollout)))
    for key, value in footer:
        head, *more = value.split("\n")
        lines.append(f"{_INDENT}{key:<13} {head}")
        lines.extend(f"{_INDENT}{'':<13}   {line}" for line in more)
    return lines


def skipped(scan: LogScan, outside: Counter[str], hidden: int, why: str) -> str:
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
