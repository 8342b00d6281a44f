"""Notifications: a Slack-compatible incoming webhook and a generic JSON webhook.

A :class:`Notifier` is an :data:`canary.core.events.Listener`: the emitter hands it every event's
flat record, and it posts the ones a person wants to hear about (:data:`NOTIFY_EVENTS`:
rollout started, succeeded, paused, rolled back, rollback failed) with the reason and the
numbers. The numbers of the rollout's latest check (values, stable values, bounds, request
counts) ride along with its outcome: the notifier remembers the last ``check.*`` record per
plan and attaches it when its ``rolloutId`` matches.

**A notification never delays a rollback.** ``__call__`` only puts the record on a bounded
queue per webhook and returns; it never blocks and never raises. A daemon thread per webhook
posts, with a short timeout and a small retry budget:

* 2xx → sent;
* 429, 5xx, a timeout or a broken connection → retried with backoff (a 429's ``Retry-After``
  is obeyed up to :data:`MAX_DELAY_SECONDS`), then given up with a ``notify.failed`` warning;
* any other status (400, 403, 404, a redirect) → given up at once: retrying cannot help;
* a full queue (the receiver is slow or down) → the *oldest* pending notification is dropped
  (the newest news matters most), counted, and a ``notify.dropped`` warning logged once per
  episode.

These are process events of the catalog (:mod:`canary.core.events`): log lines, no Kubernetes Event.

**Webhook URLs are secrets**, read from mounted Secret files: Slack's carries its token in the
path, a generic one often in the query. The file is re-read when ``os.stat`` says it changed
(Kubernetes rotates a Secret volume by swapping its ``..data`` symlink, so the file behind the
path is a new inode), never cached beyond that, never logged, never put in an error text: logs
name the webhook (``slack`` / ``webhook``) and the file's path only.

What is said (the payloads, their schema) is :mod:`canary.core.notices`'; this module
delivers it.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import queue
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import IO, Any, Final, Protocol
from urllib.parse import urlsplit

import structlog

from canary.core import events as ev
from canary.core.notices import (
    CHECK_EVENTS,
    NOTIFY_EVENTS,
    Notification,
    compact_check,
    encode,
    slack_payload,
    webhook_payload,
)

log = structlog.get_logger("canary")

#: A webhook answers in well under a second; after 5 s it is in trouble, and the next
#: notification is waiting behind this one.
POST_TIMEOUT_SECONDS: Final = 5.0
#: Two more tries ride out a receiver's restart or a dropped connection; more would hold up
#: the notifications queued behind this one for news that is getting stale.
RETRIES: Final = 2
#: Pause before the first retry, doubled for each further one (1 s, 2 s): one notification
#: costs at most 3 × 5 s + 3 s before the next one gets its turn.
BACKOFF_SECONDS: Final = 1.0
#: The longest pause between tries, even if a 429's Retry-After asks for more: a longer wait
#: would stall every notification behind this one.
MAX_DELAY_SECONDS: Final = 10.0
#: Pending notifications per webhook. A rollout sends a handful (started, maybe paused, one
#: outcome), so 100 pending means the receiver has been down a long while.
QUEUE_SIZE: Final = 100
#: How long ``close()`` waits for pending posts at shutdown: a few posts' worth, well inside
#: the pod's termination grace period (which is sized for a running helm rollback).
CLOSE_TIMEOUT_SECONDS: Final = 10.0
#: Response bytes read before the connection is closed: Slack answers ``ok``; nobody needs more.
MAX_RESPONSE_BYTES: Final = 64 * 1024
#: Plans whose latest check is remembered; beyond this (far more plans than one controller
#: serves) the least recently checked plan is forgotten.
MAX_REMEMBERED_PLANS: Final = 1000
USER_AGENT: Final = "canary-notify/1"


class SecretFile:
    """A value in a mounted Secret file, re-read whenever ``os.stat`` says the file changed.

    ``os.stat`` follows the key's symlink into ``..data/``, so a Kubernetes rotation (a new
    timestamped directory, then an atomic swap of ``..data``) shows as a new inode. The value
    never appears in ``repr`` or in an error; only the path does.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._seen: tuple[int, int, int, int] | None = None
        self._value = ""

    def read(self) -> str:
        """The current value, stripped; raises ``OSError`` if the file cannot be read."""
        st = os.stat(self.path)
        seen = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        if seen != self._seen:
            # stat first, read second: the value read is at least as new as the stat, so a
            # swap in between only costs one more read next time.
            self._value = Path(self.path).read_text(encoding="utf-8").strip()
            self._seen = seen
        return self._value

    def __repr__(self) -> str:
        return f"SecretFile({self.path!r})"


@dataclass(frozen=True)
class Webhook:
    """One destination: a name for logs, the Secret file holding its URL, its payload shape."""

    name: str
    url_file: str
    render: Callable[[Notification], Mapping[str, Any]]


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard to try (defaults: the named constants above, with their reasons)."""

    timeout_seconds: float = POST_TIMEOUT_SECONDS
    retries: int = RETRIES
    backoff_seconds: float = BACKOFF_SECONDS
    max_delay_seconds: float = MAX_DELAY_SECONDS
    queue_size: int = QUEUE_SIZE


@dataclass(frozen=True)
class _Attempt:
    ok: bool
    retry: bool = False
    error: str = ""
    retry_after: float | None = None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A webhook that redirects is misconfigured; following it would re-send the payload (or
    drop it: urllib turns a redirected POST into a GET) somewhere nobody configured."""

    def redirect_request(  # noqa: PLR0917 (urllib's signature)
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


def _describe(exc: BaseException) -> str:
    """An error's kind and the OS's words for it, never its message: urllib and http.client
    put the URL into messages (``unknown url type: 'htps://…'``, ``InvalidURL``)."""
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        return _describe(exc.reason)
    if isinstance(exc, OSError) and isinstance(exc.strerror, str) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return type(exc).__name__


def _retry_after(headers: Message | None) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare for webhooks; our own backoff applies


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _scrub(text: str, url: str) -> str:
    """Belt and braces: whatever we log has the URL (and its host/path) replaced."""
    if not url:
        return text
    parts = urlsplit(url)
    for secret in (url, parts.netloc + parts.path, parts.path, parts.query):
        if len(secret) > 1:
            text = text.replace(secret, "<redacted>")
    return text


class _Channel:
    """One webhook's bounded queue and the daemon thread that posts from it."""

    def __init__(self, hook: Webhook, policy: DeliveryPolicy) -> None:
        self.hook = hook
        self.policy = policy
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._url = SecretFile(hook.url_file)
        self._queue: queue.Queue[Notification | None] = queue.Queue(max(1, policy.queue_size))
        self._lock = threading.Lock()
        self._closed = False
        self._dropping = False
        self._abandon = threading.Event()
        self._stop_queued = False
        self._in_flight = False
        self._opener = urllib.request.build_opener(_NoRedirects())
        self._thread = threading.Thread(
            target=self._run, name=f"canary-notify-{hook.name}", daemon=True
        )
        self._thread.start()

    # -- the caller's side: never blocks ------------------------------------------------------

    def offer(self, note: Notification) -> None:
        with self._lock:
            if self._closed:
                return
            dropped: Notification | None = None
            while True:
                try:
                    self._queue.put_nowait(note)
                    break
                except queue.Full:
                    try:
                        dropped = self._queue.get_nowait()
                    except queue.Empty:
                        continue
                    self.dropped += 1
            if dropped is None:
                self._dropping = False
            elif not self._dropping:
                self._dropping = True  # one warning per episode, not one per event
                log.warning(
                    ev.NOTIFY_DROPPED,
                    target=self.hook.name,
                    notice=dropped.event,
                    plan=dropped.plan,
                    rolloutId=dropped.record.get("rolloutId"),
                    queue_size=self._queue.maxsize,
                    dropped_total=self.dropped,
                    why="the receiver is slow or down; the oldest pending notification goes",
                )

    def stop(self, deadline: float) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._queue.put(None, timeout=max(0.0, deadline - time.monotonic()))
            self._stop_queued = True
        except queue.Full:
            self._abandon.set()

    def join(self, deadline: float) -> None:
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            self._abandon.set()
            log.warning(
                ev.NOTIFY_UNSENT,
                target=self.hook.name,
                unsent=self._queue.qsize() - self._stop_queued + self._in_flight,
                why="shutting down; the receiver did not take the pending notifications in time",
            )

    # -- the worker's side ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            note = self._queue.get()
            if note is None or self._abandon.is_set():
                return
            self._in_flight = True
            try:
                self._deliver(note)
            except Exception as exc:  # the worker must outlive any one notification
                self.failed += 1
                with contextlib.suppress(Exception):
                    self._fail(note, f"unexpected {type(exc).__name__}", attempts=0)
            finally:
                self._in_flight = False

    def _deliver(self, note: Notification) -> None:
        try:
            url = self._url.read()
        except (OSError, UnicodeDecodeError) as exc:
            self.failed += 1
            self._fail(note, f"cannot read the URL file: {_describe(exc)}", attempts=0)
            return
        if not _is_http_url(url):
            self.failed += 1
            self._fail(note, "the URL file does not hold an http(s) URL", attempts=0)
            return
        body = encode(self.hook.render(note))
        delay = self.policy.backoff_seconds
        for attempt in range(1, self.policy.retries + 2):
            if self._abandon.is_set():
                return
            result = self._post(url, body, note)
            if result.ok:
                self.sent += 1
                log.debug(ev.NOTIFY_SENT, target=self.hook.name, notice=note.event, plan=note.plan)
                return
            if not result.retry or attempt > self.policy.retries:
                self.failed += 1
                self._fail(note, _scrub(result.error, url), attempts=attempt)
                return
            pause = min(max(delay, result.retry_after or 0.0), self.policy.max_delay_seconds)
            if self._abandon.wait(pause):
                return
            delay *= 2

    def _post(self, url: str, body: bytes, note: Notification) -> _Attempt:
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "X-Canary-Event": note.event,
            "X-Canary-Delivery": note.id,
        }
        try:
            request = urllib.request.Request(url, data=body, method="POST", headers=headers)
            with self._opener.open(request, timeout=self.policy.timeout_seconds) as response:
                response.read(MAX_RESPONSE_BYTES)
            return _Attempt(ok=True)
        except urllib.error.HTTPError as exc:
            code = exc.code
            wait = _retry_after(exc.headers)
            exc.close()
            retry = code == 429 or code >= 500
            return _Attempt(False, retry=retry, error=f"HTTP {code}", retry_after=wait)
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets
            return _Attempt(False, retry=True, error=_describe(exc))
        except ValueError:  # a malformed URL; its message would quote it
            return _Attempt(False, retry=False, error="the URL is malformed")

    def _fail(self, note: Notification, error: str, attempts: int) -> None:
        log.warning(
            ev.NOTIFY_FAILED,
            target=self.hook.name,
            url_file=self.hook.url_file,
            notice=note.event,
            plan=note.plan,
            rolloutId=note.record.get("rolloutId"),
            attempts=attempts,
            error=error,
        )


# --- the listener -----------------------------------------------------------------------------


class Notifications(Protocol):
    """What the daemon holds: an emitter listener it closes at shutdown."""

    def __call__(self, record: Mapping[str, Any]) -> None: ...

    def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None: ...


class NullNotifier:
    """No webhook configured: listens and posts nothing."""

    sent = failed = dropped = 0

    def __call__(self, record: Mapping[str, Any]) -> None:
        return None

    def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
        return None


class Notifier:
    """Posts :data:`NOTIFY_EVENTS` to each webhook; an :data:`canary.core.events.Listener`."""

    def __init__(self, webhooks: Sequence[Webhook], policy: DeliveryPolicy | None = None) -> None:
        self.policy = policy or DeliveryPolicy()
        self._channels = [_Channel(hook, self.policy) for hook in webhooks]
        self._checks: dict[str, Mapping[str, Any]] = {}
        self._lock = threading.Lock()

    def __call__(self, record: Mapping[str, Any]) -> None:
        """Queue the record if it is news; returns at once and never raises."""
        try:
            name = record.get("event")
            if name in CHECK_EVENTS:
                self._remember(record)
            elif name in NOTIFY_EVENTS:
                note = Notification(dict(record), self._check_for(record), uuid.uuid4().hex)
                for channel in self._channels:
                    channel.offer(note)
        except Exception as exc:  # a notification must never break the tick that emitted it
            with contextlib.suppress(Exception):
                log.warning(ev.NOTIFY_FAILED, error=f"cannot queue: {_describe(exc)}")

    def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
        """Post what is pending (up to ``timeout`` seconds, all webhooks together), then stop.
        Later calls post nothing."""
        deadline = time.monotonic() + max(0.0, timeout)
        for channel in self._channels:
            channel.stop(deadline)
        for channel in self._channels:
            channel.join(deadline)

    @property
    def sent(self) -> int:
        return sum(c.sent for c in self._channels)

    @property
    def failed(self) -> int:
        return sum(c.failed for c in self._channels)

    @property
    def dropped(self) -> int:
        return sum(c.dropped for c in self._channels)

    def __repr__(self) -> str:
        hooks = ", ".join(f"{c.hook.name}={c.hook.url_file!r}" for c in self._channels)
        return f"Notifier({hooks})"

    def _remember(self, record: Mapping[str, Any]) -> None:
        plan = str(record.get("plan", ""))
        entry = {"rolloutId": record.get("rolloutId"), **compact_check(record)}
        with self._lock:
            self._checks.pop(plan, None)
            self._checks[plan] = entry
            while len(self._checks) > MAX_REMEMBERED_PLANS:
                del self._checks[next(iter(self._checks))]

    def _check_for(self, record: Mapping[str, Any]) -> Mapping[str, Any] | None:
        with self._lock:
            entry = self._checks.get(str(record.get("plan", "")))
        rid = record.get("rolloutId")
        if entry is None or rid is None or entry.get("rolloutId") != rid:
            return None
        return {k: v for k, v in entry.items() if k != "rolloutId"}


def notifier_from_files(
    slack_file: str | None,
    webhook_file: str | None,
    policy: DeliveryPolicy | None = None,
) -> Notifications:
    """A notifier for the webhooks whose URL files are given (empty or ``None``: not used);
    a :class:`NullNotifier` when there are none. Files are read when posting, not here: a
    Secret mounted later, or rotated, is picked up."""
    hooks = []
    if slack_file:
        hooks.append(Webhook("slack", slack_file, slack_payload))
    if webhook_file:
        hooks.append(Webhook("webhook", webhook_file, webhook_payload))
    if not hooks:
        return NullNotifier()
    return Notifier(hooks, policy)
