"""The one emitter (docs/design.md §6): every rollout event leaves canary here, as a structured
log line and a Kubernetes Event; and the logging set-up that renders every line the process
writes, events and library log records alike, as JSON (or console text on a TTY).
"""

from __future__ import annotations

import io
import logging
import os
import sys
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any, TextIO

import structlog

from canary.core import events as ev
from canary.core.model import Event
from canary.core.ports import EventSink


class _NullStream(io.StringIO):
    """Swallows log lines (``--log-format off``) without keeping them."""

    def write(self, s: str) -> int:
        return len(s)


def configure_logging(fmt: str | None = None, stream: TextIO | None = None) -> None:
    """structlog: JSON lines when not on a TTY (or ``fmt="json"``), colourless console on a TTY,
    nothing with ``fmt="off"``.

    Secrets never reach here: events carry names, numbers and rendered queries only.
    """
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
    """A stdlib logging handler that re-emits each record of a library (urllib3, the kubernetes
    client, APScheduler) as the catalog event ``library.log``, at the record's level, naming
    its ``logger``, text in ``message``."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            log = structlog.get_logger("canary")
            log.log(record.levelno, ev.LIBRARY_LOG, logger=record.name, message=record.getMessage())
        except Exception:  # logging must never break the caller
            self.handleError(record)


class NullSink:
    """An EventSink that posts nothing (no cluster, e.g. `canary validate`)."""

    def post(self, namespace: str, plan: str, event: Event) -> None:
        return None


#: Receives every emitted event as the flat record its log line carries (the simulator's
#: live timeline listens here).
Listener = Callable[[Mapping[str, Any]], None]


#: Set to ``1`` (the test suite does), an event whose level or fields differ from its catalog
#: entry raises instead of being logged as it is: the catalog, and the docs generated from it,
#: can never drift from what the code emits. Off in production: a rollout never stops for it.
STRICT_ENV = "CANARY_STRICT_EVENTS"


class Emitter:
    """The one way rollout events leave canary: a structured log line and a Kubernetes Event."""

    def __init__(
        self,
        sink: EventSink | None = None,
        listeners: Sequence[Listener] = (),
        *,
        strict: bool | None = None,
    ) -> None:
        self._sink: EventSink = sink or NullSink()
        self._listeners = list(listeners)
        self._log = structlog.get_logger("canary")
        self._strict = os.environ.get(STRICT_ENV) == "1" if strict is None else strict

    def emit(self, namespace: str, plan: str, event: Event, **context: Any) -> None:
        if event.name not in ev.ROLLOUT_EVENTS:
            raise ValueError(
                f"event {event.name!r} is not a rollout event of the catalog "
                "(canary/core/events.py)"
            )
        fields = {"plan": f"{namespace}/{plan}", **context, **event.fields}
        if self._strict:
            wrong = ev.problem(event.name, "warning" if event.warning else "info", fields)
            if wrong:
                raise ValueError(wrong)
        if event.warning:
            self._log.warning(event.name, **fields)
        else:
            self._log.info(event.name, **fields)
        self._sink.post(namespace, plan, event)
        record = {"event": event.name, "level": "warning" if event.warning else "info", **fields}
        for listener in self._listeners:
            listener(record)
