"""The event catalog and the one emitter (DESIGN §6).

Every event has a stable dotted name; it is the structlog event (the log line's ``event`` key)
and the ``reason`` of the Kubernetes Event posted for it. Names are API: CI scripts, alerts and
``canary timeline`` match on them. Add names here; never rename one.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, Final, TextIO

from canary.model import Event, Outcome

if TYPE_CHECKING:
    from canary.ports import EventSink

ROLLOUT_STARTED: Final = "rollout.started"
ROLLOUT_PAUSED: Final = "rollout.paused"
ROLLOUT_RESUMED: Final = "rollout.resumed"
ROLLOUT_PROMOTED: Final = "rollout.promoted"
ROLLOUT_SUCCEEDED: Final = "rollout.succeeded"
ROLLOUT_BYPASSED: Final = "rollout.bypassed"
ROLLOUT_FINALISING: Final = "rollout.finalising"
ROLLOUT_FINALISED: Final = "rollout.finalised"
ROLLOUT_FINALISE_STALLED: Final = "rollout.finalise_stalled"
ROLLOUT_SUPERSEDED: Final = "rollout.superseded"
ROLLOUT_ROLLED_BACK: Final = "rollout.rolled_back"
ROLLOUT_ROLLBACK_FAILED: Final = "rollout.rollback_failed"
ROLLOUT_RECOVERED: Final = "rollout.recovered"
STEP_STARTED: Final = "step.started"
WEIGHT_SET: Final = "weight.set"
WEIGHT_DRIFT: Final = "weight.drift"
CHECK_PASSED: Final = "check.passed"
CHECK_FAILED: Final = "check.failed"
CHECK_INCONCLUSIVE: Final = "check.inconclusive"
CHECK_ERROR: Final = "check.error"
ROLLBACK_STARTED: Final = "rollback.started"
ROLLBACK_TRAFFIC_REVERTED: Final = "rollback.traffic_reverted"
ROLLBACK_HELM_STARTED: Final = "rollback.helm_started"
ROLLBACK_HELM_SUCCEEDED: Final = "rollback.helm_succeeded"
ROLLBACK_HELM_FAILED: Final = "rollback.helm_failed"
ROLLBACK_WAITING: Final = "rollback.waiting"
STABLE_UNAVAILABLE: Final = "stable.unavailable"
BASE_RECORDED: Final = "base.recorded"
BASE_FALLBACK: Final = "base.fallback"
STATE_LOST: Final = "state.lost"
COMMAND_ACCEPTED: Final = "command.accepted"
COMMAND_DROPPED: Final = "command.dropped"
PLAN_INVALID: Final = "plan.invalid"
PLAN_DELETED: Final = "plan.deleted"
ROUTE_INVALID: Final = "route.invalid"
TICK_FAILED: Final = "tick.failed"
CANARY_UNAVAILABLE: Final = "canary.unavailable"
RELEASE_PENDING: Final = "release.pending"
RELEASE_UNREADABLE: Final = "release.unreadable"

#: Events that end a rollout, with the outcome they give it (``plan.deleted`` ends one only if
#: it was still under way). Telemetry and `canary timeline` both read outcomes from events.
ROLLOUT_ENDINGS: Final[Mapping[str, Outcome]] = {
    ROLLOUT_SUCCEEDED: Outcome.SUCCEEDED,
    ROLLOUT_ROLLED_BACK: Outcome.ROLLED_BACK,
    ROLLOUT_ROLLBACK_FAILED: Outcome.ROLLBACK_FAILED,
    ROLLOUT_SUPERSEDED: Outcome.SUPERSEDED,
    ROLLOUT_BYPASSED: Outcome.BYPASSED,
    PLAN_DELETED: Outcome.ABANDONED,
}

#: Every event name canary may emit; a test checks that code only emits these.
CATALOG: Final[frozenset[str]] = frozenset(
    v for k, v in dict(globals()).items() if k.isupper() and isinstance(v, str) and "." in v
)


class _NullStream(io.StringIO):
    """Swallows log lines (``--log-format off``) without keeping them."""

    def write(self, s: str) -> int:
        return len(s)


def configure_logging(fmt: str | None = None, stream: TextIO | None = None) -> None:
    """structlog: JSON lines when not on a TTY (or ``fmt="json"``), colourless console on a TTY,
    nothing with ``fmt="off"``.

    Secrets never reach here: events carry names, numbers and rendered queries only.
    """
    # Imported here, not at the top: the pure core imports this module for the event names
    # and must not pull in structlog (which brings asyncio and subprocess with it).
    import logging  # noqa: PLC0415 (see above)

    import structlog  # noqa: PLC0415 (see above)

    out: TextIO = stream or sys.stderr
    if fmt == "off":
        out = _NullStream()
        fmt = "json"
    elif fmt is None:
        fmt = "console" if out.isatty() else "json"
    renderer: Callable[[Any, str, MutableMapping[str, Any]], Any]
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    # Libraries and our adapters that use stdlib logging (watch retries, urllib3) write through
    # structlog too, so every line on stderr is the same JSON (or console) format.
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not isinstance(h, _StructlogHandler)]
    root.addHandler(_StructlogHandler())
    root.setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


class _StructlogHandler(logging.Handler):
    """A stdlib logging handler that re-emits each record as a structlog event named after
    its logger (``watch``, ``urllib3.connectionpool``...), message in ``message``."""

    def emit(self, record: logging.LogRecord) -> None:
        import structlog  # noqa: PLC0415 (see configure_logging)

        try:
            log = structlog.get_logger(record.name)
            log.log(record.levelno, f"log.{record.name}", message=record.getMessage())
        except Exception:  # logging must never break the caller
            self.handleError(record)


class NullSink:
    """An EventSink that posts nothing (no cluster, e.g. `canary validate`)."""

    def post(self, namespace: str, plan: str, event: Event) -> None:
        return None


#: Receives every emitted event as the flat record its log line carries (the simulator's
#: live timeline listens here).
Listener = Callable[[Mapping[str, Any]], None]


class Emitter:
    """The one way events leave canary: a structured log line and a Kubernetes Event."""

    def __init__(self, sink: EventSink | None = None, listeners: Sequence[Listener] = ()) -> None:
        import structlog  # noqa: PLC0415 (lazy: see configure_logging)

        self._sink: EventSink = sink or NullSink()
        self._listeners = list(listeners)
        self._log = structlog.get_logger("canary")

    def emit(self, namespace: str, plan: str, event: Event, **context: Any) -> None:
        if event.name not in CATALOG:
            raise ValueError(f"event {event.name!r} is not in the catalog (canary/events.py)")
        fields = {"plan": f"{namespace}/{plan}", **context, **event.fields}
        if event.warning:
            self._log.warning(event.name, **fields)
        else:
            self._log.info(event.name, **fields)
        self._sink.post(namespace, plan, event)
        record = {"event": event.name, "level": "warning" if event.warning else "info", **fields}
        for listener in self._listeners:
            listener(record)
