"""What a notification says (a pure function of the event's record): the payloads of a
Slack-compatible incoming webhook and of the generic JSON webhook, with the numbers of the
rollout's latest check. Delivery is :mod:`canary.adapters.notify`'s.

Payloads (``Content-Type: application/json``)::


    # Slack (and Mattermost, Rocket.Chat, … incoming webhooks)
    {"text": "■ bookinfo/reviews: rollout f012e7925a-1 rolled back to revision 1 …",
     "attachments": [{"color": "#a30200", "fallback": <text>, "footer": "canary",
                      "ts": <epoch seconds of "at">,
                      "fields": [{"title": "Plan", "value": "bookinfo/reviews", "short": true},
                                 {"title": "Reason", "value": …, "short": false},
                                 {"title": "Last check", "value": <verdict, requests, one line
                                  per metric: value, stable value, bounds>, "short": false},
                                 …]}]}

    # generic JSON webhook, schema version 1
    {"version": 1,
     "id": "<hex; the same on every retry of one notification, to deduplicate>",
     "event": "rollout.rolled_back",     # one of NOTIFY_EVENTS
     "level": "info" | "warning",
     "plan": "bookinfo/reviews", "namespace": "bookinfo", "name": "reviews",
     "rolloutId": "f012e7925a-1" | null,
     "phase": "RolledBack" | null,       # the phase after the event
     "reason": "…" | null,
     "at": "2025-01-06T09:04:20Z" | null,
     "summary": "<the one-line text, without Slack markup>",
     "check": null | {"verdict", "reason", "step", "weight", "window", "canary_requests",
                      "stable_requests", "at",
                      "metrics": [{"name", "verdict", "value", "stable_value", "bounds",
                                   "reason", "critical"?}]},
     "fields": {<the event's whole flat record, as in the JSON log line>}}

Non-finite numbers become ``null`` and values JSON cannot carry become strings.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from canary.core import events as ev
from canary.core import render
from canary.core.timestamps import parse_iso

#: The events a person is told about: a rollout's start and every way it can end or stop.
NOTIFY_EVENTS: Final[frozenset[str]] = frozenset(
    {
        ev.ROLLOUT_STARTED,
        ev.ROLLOUT_SUCCEEDED,
        ev.ROLLOUT_PAUSED,
        ev.ROLLOUT_ROLLED_BACK,
        ev.ROLLOUT_ROLLBACK_FAILED,
    }
)
#: Check events are not posted; the latest one per plan supplies the numbers of an outcome.
CHECK_EVENTS: Final[frozenset[str]] = frozenset(
    {ev.CHECK_PASSED, ev.CHECK_FAILED, ev.CHECK_INCONCLUSIVE, ev.CHECK_ERROR}
)

#: Version of the generic webhook's payload schema (module docstring); bumped on a breaking change.
SCHEMA_VERSION: Final = 1
#: Slack attachment colours: blue for news, green for good, amber for "look", red for bad.
_COLOURS: Final = {
    ev.ROLLOUT_STARTED: "#439fe0",
    ev.ROLLOUT_SUCCEEDED: "#2eb886",
    ev.ROLLOUT_PAUSED: "#daa038",
    ev.ROLLOUT_ROLLED_BACK: "#a30200",
    ev.ROLLOUT_ROLLBACK_FAILED: "#a30200",
}


# --- what is posted ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    """One event to post: its flat record and the compact latest check of its rollout."""

    record: Mapping[str, Any]
    check: Mapping[str, Any] | None = None
    #: The same on every retry, so a receiver can drop a duplicate (a post that timed out
    #: after the receiver had taken it); the notifier gives each notification a random one.
    id: str = ""

    @property
    def event(self) -> str:
        return str(self.record.get("event", ""))

    @property
    def plan(self) -> str:
        return str(self.record.get("plan", ""))

    @property
    def namespace(self) -> str:
        return self.plan.partition("/")[0] if "/" in self.plan else ""

    @property
    def name(self) -> str:
        return self.plan.partition("/")[2] if "/" in self.plan else self.plan

    @property
    def summary(self) -> str:
        return render.summary(self.record)


def compact_check(record: Mapping[str, Any]) -> dict[str, Any]:
    """A check record's numbers without its PromQL (the log line has that): what a person
    reads in a notification."""
    metrics = record.get("metrics")
    out: dict[str, Any] = {
        key: record.get(key)
        for key in (
            "verdict",
            "reason",
            "step",
            "weight",
            "window",
            "canary_requests",
            "stable_requests",
            "at",
        )
    }
    out["metrics"] = [
        {
            key: m[key]
            for key in ("name", "verdict", "value", "stable_value", "bounds", "reason", "critical")
            if key in m
        }
        for m in (metrics if isinstance(metrics, list) else [])
        if isinstance(m, Mapping)
    ]
    return out


def _slack_escape(text: str) -> str:
    """Slack reads ``<…>`` as links and ``&`` as an entity; reasons contain ``> max 0.01``."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _epoch(at: Any) -> int | None:
    parsed = parse_iso(at)
    return int(parsed.timestamp()) if parsed is not None else None


def slack_payload(note: Notification) -> dict[str, Any]:
    """A Slack-compatible incoming-webhook message: ``text`` (always) plus one attachment."""
    r = note.record
    text = _slack_escape(f"{render.icon(note.event)} {note.summary}")
    fields: list[dict[str, Any]] = [{"title": "Plan", "value": note.plan, "short": True}]

    def add(title: str, value: Any, short: bool = True) -> None:
        if value is not None and value != "":
            fields.append({"title": title, "value": _slack_escape(str(value)), "short": short})

    add("Rollout", r.get("rolloutId"))
    add("Phase", r.get("phase"))
    add("Revision", r.get("revision"))
    add("Base revision", r.get("baseRevision"))
    if isinstance(r.get("steps"), list):
        add("Steps", " → ".join(str(s) for s in r["steps"]) + " %")
    if r.get("weights") is not None:
        add("Weights", render.weights(r["weights"]))
    add("Pause", r.get("kind"))
    add("Reason", r.get("reason"), short=False)
    if note.check is not None:
        add("Last check", render.check_text(note.check), short=False)
    attachment: dict[str, Any] = {
        "color": _COLOURS.get(note.event, "#439fe0"),
        "fallback": text,
        "footer": "canary",
        "fields": fields,
    }
    ts = _epoch(r.get("at"))
    if ts is not None:
        attachment["ts"] = ts
    return {"text": text, "attachments": [attachment]}


def webhook_payload(note: Notification) -> dict[str, Any]:
    """The generic JSON webhook's payload (schema in the module docstring)."""
    r = note.record
    return {
        "version": SCHEMA_VERSION,
        "id": note.id,
        "event": note.event,
        "level": r.get("level"),
        "plan": note.plan,
        "namespace": note.namespace,
        "name": note.name,
        "rolloutId": r.get("rolloutId"),
        "phase": r.get("phase"),
        "reason": r.get("reason"),
        "at": r.get("at"),
        "summary": note.summary,
        "check": dict(note.check) if note.check is not None else None,
        "fields": dict(r),
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return str(value)


def encode(payload: Mapping[str, Any]) -> bytes:
    """Strict JSON (no NaN): what a receiver's parser accepts."""
    return json.dumps(_jsonable(payload), allow_nan=False, ensure_ascii=False).encode("utf-8")


# --- where it goes ----------------------------------------------------------------------------
