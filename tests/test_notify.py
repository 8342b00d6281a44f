"""Notifications over real HTTP: a stdlib webhook receiver on a free loopback port.

No test sleeps: each waits on a condition (a request arrived, ``close()`` joined the posting
thread) with a timeout as a backstop.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from canary.adapters.notify import (
    NOTIFY_EVENTS,
    DeliveryPolicy,
    Notifier,
    NullNotifier,
    SecretFile,
    Webhook,
    notifier_from_files,
    slack_payload,
    webhook_payload,
)
from canary.sim import SCENARIOS
from canary.sim.run import simulate
from tests.support.builders import plan

#: Fast retries, so a retried post costs milliseconds; the timeout only matters for a
#: receiver that hangs, and those tests release it before it runs out.
FAST = DeliveryPolicy(
    timeout_seconds=5, retries=2, backoff_seconds=0.01, max_delay_seconds=0.05, queue_size=8
)
#: Backstop for waits that succeed in milliseconds.
WAIT = 5.0
#: What a Slack URL's path looks like; it must never reach a log line.
TOKEN = "T0000000/B0000000/XXXXsecretXXXX"

AT = "2025-01-06T09:04:20Z"
BASE = {"level": "info", "plan": "bookinfo/reviews", "at": AT, "rolloutId": "f012e7925a-1"}
RECORDS: dict[str, dict[str, Any]] = {
    "rollout.started": {
        **BASE,
        "event": "rollout.started",
        "phase": "Pending",
        "canaryHash": "f012e7925ae527f1",
        "revision": 2,
        "baseRevision": 1,
        "steps": [10, 50, 100],
        "canary": "reviews-v3",
    },
    "rollout.succeeded": {
        **BASE,
        "event": "rollout.succeeded",
        "phase": "Succeeded",
        "reason": "step 2 passed 4 checks",
        "weights": [0, 100],
    },
    "rollout.paused": {
        **BASE,
        "event": "rollout.paused",
        "level": "warning",
        "phase": "Paused",
        "reason": "inconclusive for 10m: canary served 0.3 requests in the window",
        "kind": "inconclusive",
    },
    "rollout.rolled_back": {
        **BASE,
        "event": "rollout.rolled_back",
        "phase": "RolledBack",
        "reason": "2 consecutive failed checks: error-rate: 0.08 > max 0.01",
        "revision": 3,
        "baseRevision": 1,
    },
    "rollout.rollback_failed": {
        **BASE,
        "event": "rollout.rollback_failed",
        "level": "warning",
        "phase": "RollbackFailed",
        "reason": "helm rollback to 1 failed 3 times: exit 1",
    },
}
CHECK_FAILED = {
    **BASE,
    "event": "check.failed",
    "level": "warning",
    "phase": "Progressing",
    "step": 0,
    "weight": 10,
    "verdict": "FAIL",
    "reason": "error-rate: 0.08 > max 0.01",
    "window": "30s",
    "canary_requests": 150.0,
    "stable_requests": 1350.0,
    "metrics": [
        {
            "name": "error-rate",
            "verdict": "FAIL",
            "value": 0.08,
            "stable_value": 0.001,
            "bounds": {"max": 0.01, "maxAboveStable": 0.005},
            "reason": "0.08 > max 0.01",
            "query": "sum(rate(istio_requests_total[30s]))",
            "stable_query": "sum(rate(istio_requests_total[30s]))",
        }
    ],
}
GENERIC_KEYS = {
    "version",
    "id",
    "event",
    "level",
    "plan",
    "namespace",
    "name",
    "rolloutId",
    "phase",
    "reason",
    "at",
    "summary",
    "check",
    "fields",
}


# --- a webhook receiver -----------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    path: str
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """Records every POST; answers are scripted per path (default 200). While ``hanging`` is
    set, a request is recorded and then held until ``release`` is set."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.answers: dict[str, list[int]] = {}
        self.hanging = threading.Event()
        self.arrived = threading.Event()
        self.release = threading.Event()
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._changed:
                    receiver.received.append(Received(self.path, dict(self.headers), body))
                    script = receiver.answers.get(self.path, [])
                    status = script.pop(0) if script else 200
                    receiver._changed.notify_all()
                if receiver.hanging.is_set():
                    receiver.arrived.set()
                    receiver.release.wait(WAIT * 2)
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def wait_for(self, count: int) -> list[Received]:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.received) >= count, WAIT)
            return list(self.received)

    def paths(self) -> list[str]:
        with self._changed:
            return [r.path for r in self.received]

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """urllib honours *_proxy variables; the receiver is on loopback."""
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    yield
    structlog.reset_defaults()


class WatchedLogs(list[dict[str, Any]]):
    """Log entries, appended from any thread, with a way to wait for one."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = threading.Condition()

    def __call__(self, logger: Any, method: str, event_dict: Any) -> Any:
        with self.changed:
            self.append({**event_dict, "log_level": method})
            self.changed.notify_all()
        raise structlog.DropEvent

    def wait_for(self, event: str) -> list[dict[str, Any]]:
        with self.changed:
            assert self.changed.wait_for(lambda: any(e["event"] == event for e in self), WAIT)
            return [e for e in self if e["event"] == event]


@contextlib.contextmanager
def watch_logs() -> Iterator[WatchedLogs]:
    """Like ``structlog.testing.capture_logs``, but a test can wait for an entry logged by
    the posting thread (capture_logs only gained processors in structlog 25.5)."""
    logs = WatchedLogs()
    processors = structlog.get_config()["processors"]
    saved = list(processors)
    processors[:] = [logs]  # in place, as capture_logs does: bound loggers keep the list
    try:
        yield logs
    finally:
        processors[:] = saved


def secret(directory: Path, value: str) -> str:
    """A file holding ``value`` the way a Secret volume holds a key (see ``rotate``)."""
    rotate(directory, value, "..2026_01_01_00_00_00.000000001")
    os.symlink("..data/url", directory / "url")
    return str(directory / "url")


def rotate(directory: Path, value: str, stamp: str) -> None:
    """What the kubelet does on a Secret update: write a new timestamped directory, then
    swap the ``..data`` symlink to it in one rename, then delete the old directory."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / stamp).mkdir()
    (directory / stamp / "url").write_text(value + "\n")
    old = os.readlink(directory / "..data") if (directory / "..data").is_symlink() else None
    os.symlink(stamp, directory / "..data_tmp")
    os.replace(directory / "..data_tmp", directory / "..data")
    if old is not None:
        (directory / old / "url").unlink()
        (directory / old).rmdir()


def notifier(tmp_path: Path, receiver: Receiver, policy: DeliveryPolicy = FAST) -> Notifier:
    slack = secret(tmp_path / "slack", receiver.url(f"/services/{TOKEN}"))
    hook = secret(tmp_path / "hook", receiver.url("/hook?token=secret"))
    made = notifier_from_files(slack, hook, policy)
    assert isinstance(made, Notifier)
    return made


def one_hook(tmp_path: Path, url: str, policy: DeliveryPolicy = FAST) -> Notifier:
    return Notifier([Webhook("webhook", secret(tmp_path / "hook", url), webhook_payload)], policy)


# --- what is posted ---------------------------------------------------------------------------


@pytest.mark.parametrize("event", sorted(RECORDS))
def test_each_notified_event_posts_once_to_each_webhook(
    tmp_path: Path, receiver: Receiver, event: str
) -> None:
    n = notifier(tmp_path, receiver)
    n(RECORDS[event])
    n.close(WAIT)
    got = {r.path.split("?")[0]: r for r in receiver.received}
    assert len(receiver.received) == 2 and set(got) == {f"/services/{TOKEN}", "/hook"}
    assert (n.sent, n.failed, n.dropped) == (2, 0, 0)
    for r in got.values():
        assert r.headers["Content-Type"] == "application/json; charset=utf-8"
        assert r.headers["X-Canary-Event"] == event

    slack = got[f"/services/{TOKEN}"].json()
    assert set(slack) == {"text", "attachments"}
    assert "bookinfo/reviews" in slack["text"] and "f012e7925a-1" in slack["text"]
    [attachment] = slack["attachments"]
    titles = {f["title"]: f["value"] for f in attachment["fields"]}
    assert titles["Plan"] == "bookinfo/reviews" and titles["Rollout"] == "f012e7925a-1"
    assert attachment["ts"] == int(datetime(2025, 1, 6, 9, 4, 20, tzinfo=UTC).timestamp())

    generic = got["/hook"].json()
    record = RECORDS[event]
    assert set(generic) == GENERIC_KEYS
    assert generic["version"] == 1
    assert (generic["event"], generic["plan"], generic["namespace"], generic["name"]) == (
        event,
        "bookinfo/reviews",
        "bookinfo",
        "reviews",
    )
    assert (generic["rolloutId"], generic["phase"], generic["at"], generic["level"]) == (
        "f012e7925a-1",
        record["phase"],
        AT,
        record["level"],
    )
    assert generic["reason"] == record.get("reason")
    assert generic["fields"] == record
    assert generic["check"] is None
    assert generic["id"] == got["/hook"].headers["X-Canary-Delivery"]


def test_the_text_says_what_happened_with_the_numbers() -> None:
    from canary.adapters.notify import Notification

    texts = {e: slack_payload(Notification(r))["text"] for e, r in RECORDS.items()}
    assert texts["rollout.started"] == (
        "▶ bookinfo/reviews: rollout f012e7925a-1 started: revision 2 over stable revision 1, "
        "canary reviews-v3, steps 10 → 50 → 100 %"
    )
    assert texts["rollout.succeeded"] == (
        "★ bookinfo/reviews: rollout f012e7925a-1 succeeded with stable 0 % / canary 100 %: "
        "step 2 passed 4 checks"
    )
    assert texts["rollout.paused"].startswith(
        "‖ bookinfo/reviews: rollout f012e7925a-1 paused (inconclusive): inconclusive for 10m"
    )
    # Slack markup: ``>`` in a reason is escaped, or Slack would read it as part of a link.
    assert texts["rollout.rolled_back"] == (
        "■ bookinfo/reviews: rollout f012e7925a-1 rolled back to revision 1 (now revision 3): "
        "2 consecutive failed checks: error-rate: 0.08 &gt; max 0.01"
    )
    assert "rollback FAILED" in texts["rollout.rollback_failed"]
    assert "helm rollback to 1 failed 3 times" in texts["rollout.rollback_failed"]
    assert set(texts) == NOTIFY_EVENTS


def test_other_events_post_nothing(tmp_path: Path, receiver: Receiver) -> None:
    n = notifier(tmp_path, receiver)
    for name in ("check.passed", "check.failed", "step.started", "weight.set", "rollback.started"):
        n({**BASE, "event": name, "reason": "x"})
    n(RECORDS["rollout.succeeded"])  # the marker: everything before it was already handled
    n.close(WAIT)
    assert [r.json().get("event") for r in receiver.received if r.path == "/hook?token=secret"] == [
        "rollout.succeeded"
    ]
    assert len(receiver.received) == 2


def test_the_latest_check_of_the_same_rollout_rides_along(
    tmp_path: Path, receiver: Receiver
) -> None:
    n = notifier(tmp_path, receiver)
    n(CHECK_FAILED)
    n(RECORDS["rollout.rolled_back"])
    n({**RECORDS["rollout.started"], "rolloutId": "0123456789-1"})  # another rollout: no check
    n.close(WAIT)
    generic = [r.json() for r in receiver.received if r.path.startswith("/hook")]
    check = generic[0]["check"]
    assert check["verdict"] == "FAIL" and check["step"] == 0 and check["weight"] == 10
    assert (check["canary_requests"], check["stable_requests"], check["window"]) == (
        150.0,
        1350.0,
        "30s",
    )
    [metric] = check["metrics"]
    assert metric == {
        "name": "error-rate",
        "verdict": "FAIL",
        "value": 0.08,
        "stable_value": 0.001,
        "bounds": {"max": 0.01, "maxAboveStable": 0.005},
        "reason": "0.08 > max 0.01",
    }
    assert generic[1]["check"] is None
    slack = next(r.json() for r in receiver.received if r.path.startswith("/services"))
    fields = {f["title"]: f["value"] for f in slack["attachments"][0]["fields"]}
    assert fields["Last check"] == (
        "FAIL at step 0 (canary 10 %), 150 canary / 1350 stable requests in 30s\n"
        "error-rate FAIL: canary 0.08, stable 0.001 (≤ 0.01, ≤ stable+0.005)"
        " — 0.08 &gt; max 0.01"
    )


@pytest.mark.parametrize(
    ("scenario", "events"),
    [
        ("good", ["rollout.started", "rollout.succeeded"]),
        ("bad-errors", ["rollout.started", "rollout.rolled_back"]),
        ("low-traffic", ["rollout.started", "rollout.paused"]),
    ],
)
def test_a_simulated_rollout_posts_its_start_and_its_outcome(
    tmp_path: Path, receiver: Receiver, scenario: str, events: list[str]
) -> None:
    """The notifier as the emitter's listener, fed by the real controller and decide()."""
    n = one_hook(tmp_path, receiver.url("/hook"))
    simulate(plan(), SCENARIOS[scenario], listener=n)
    n.close(WAIT)
    posted = [r.json() for r in receiver.received]
    assert [p["event"] for p in posted] == events
    outcome = posted[-1]
    assert outcome["rolloutId"] == posted[0]["rolloutId"] and outcome["reason"]
    assert outcome["check"] is not None and outcome["check"]["metrics"]
    assert all("query" not in m for m in outcome["check"]["metrics"])


def test_odd_records_never_raise(tmp_path: Path, receiver: Receiver) -> None:
    n = one_hook(tmp_path, receiver.url("/hook"))
    n({"event": "rollout.paused"})  # nothing but the name
    n({**RECORDS["rollout.paused"], "extra": object(), "nan": float("nan")})
    n(None)  # type: ignore[arg-type]
    n.close(WAIT)
    bare, odd = (r.json() for r in receiver.received)
    assert bare["plan"] == "" and bare["summary"] == "rollout paused"
    assert odd["fields"]["nan"] is None and odd["fields"]["extra"].startswith("<object")


# --- how it is posted -------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_busy_receiver_is_retried(tmp_path: Path, receiver: Receiver, status: int) -> None:
    receiver.answers["/hook"] = [status, 200]
    n = one_hook(tmp_path, receiver.url("/hook"))
    n(RECORDS["rollout.rolled_back"])
    n.close(WAIT)
    assert len(receiver.received) == 2
    assert receiver.received[0].body == receiver.received[1].body  # same id: deduplicable
    assert (n.sent, n.failed) == (1, 0)


def test_retries_are_bounded(tmp_path: Path, receiver: Receiver) -> None:
    receiver.answers["/hook"] = [500] * 10
    n = one_hook(tmp_path, receiver.url("/hook"))
    with capture_logs() as logs:
        n(RECORDS["rollout.rolled_back"])
        n.close(WAIT)
    assert len(receiver.received) == 1 + FAST.retries
    assert (n.sent, n.failed) == (0, 1)
    [failed] = [e for e in logs if e["event"] == "notify.failed"]
    assert failed["error"] == "HTTP 500" and failed["attempts"] == 3
    assert failed["log_level"] == "warning"


@pytest.mark.parametrize("status", [400, 403, 404, 302])
def test_a_refusal_is_not_retried(tmp_path: Path, receiver: Receiver, status: int) -> None:
    receiver.answers["/hook"] = [status, 200]
    n = one_hook(tmp_path, receiver.url("/hook"))
    with capture_logs() as logs:
        n(RECORDS["rollout.rolled_back"])
        n.close(WAIT)
    assert len(receiver.received) == 1
    assert (n.sent, n.failed) == (0, 1)
    [failed] = [e for e in logs if e["event"] == "notify.failed"]
    assert (failed["error"], failed["attempts"], failed["target"]) == (
        f"HTTP {status}",
        1,
        "webhook",
    )
    assert failed["event"] == "notify.failed" and failed["plan"] == "bookinfo/reviews"


def test_a_hanging_receiver_never_blocks_the_caller(tmp_path: Path, receiver: Receiver) -> None:
    """The caller only queues: with the one post in flight held by the receiver, 1000 more
    calls return at once; the queue keeps the newest ``queue_size`` and drops the rest."""
    receiver.hanging.set()
    n = one_hook(tmp_path, receiver.url("/hook"))
    n({**RECORDS["rollout.started"], "rolloutId": "first"})
    assert receiver.arrived.wait(WAIT)  # the worker is stuck in that post now
    with capture_logs() as logs:
        for i in range(1000):
            n({**RECORDS["rollout.started"], "rolloutId": f"r-{i}"})
    assert n.dropped == 1000 - FAST.queue_size
    assert [e["event"] for e in logs] == ["notify.dropped"]  # once per episode, not per drop
    assert logs[0]["dropped_total"] == 1 and logs[0]["queue_size"] == FAST.queue_size

    receiver.hanging.clear()
    receiver.release.set()
    n.close(WAIT)
    posted = [r.json()["rolloutId"] for r in receiver.received]
    assert posted == ["first"] + [f"r-{i}" for i in range(1000 - FAST.queue_size, 1000)]


def test_close_gives_up_on_a_hanging_receiver(tmp_path: Path, receiver: Receiver) -> None:
    receiver.hanging.set()
    n = one_hook(tmp_path, receiver.url("/hook"))
    n(RECORDS["rollout.started"])
    n(RECORDS["rollout.rolled_back"])
    assert receiver.arrived.wait(WAIT)
    with capture_logs() as logs:
        n.close(0.05)  # returns although the post is still held
        n(RECORDS["rollout.succeeded"])  # after close: ignored, no error
    [unsent] = [e for e in logs if e["event"] == "notify.unsent"]
    assert unsent["unsent"] == 2 and unsent["target"] == "webhook"  # one held, one queued


def test_close_flushes_pending_posts(tmp_path: Path, receiver: Receiver) -> None:
    receiver.hanging.set()
    n = notifier(tmp_path, receiver, DeliveryPolicy(backoff_seconds=0.01, queue_size=20))
    for i in range(10):
        n({**RECORDS["rollout.succeeded"], "rolloutId": f"r-{i}"})
    assert receiver.arrived.wait(WAIT)  # one post held, the rest pending in the queues
    receiver.hanging.clear()
    receiver.release.set()
    n.close(WAIT)
    assert len(receiver.received) == 20
    assert (n.sent, n.failed, n.dropped) == (20, 0, 0)


def test_an_unreachable_receiver_fails_without_raising(tmp_path: Path) -> None:
    closed = Receiver()
    url = closed.url("/hook")
    closed.stop()  # nothing listens on that port now
    n = one_hook(tmp_path, url)
    with capture_logs() as logs:
        n(RECORDS["rollout.rolled_back"])
        n.close(WAIT)
    [failed] = [e for e in logs if e["event"] == "notify.failed"]
    assert failed["attempts"] == 3 and "ConnectionRefusedError" in failed["error"]


# --- the URL: a Secret file -------------------------------------------------------------------


def test_the_url_follows_a_secret_rotation(tmp_path: Path, receiver: Receiver) -> None:
    path = secret(tmp_path / "hook", receiver.url("/old"))
    n = Notifier([Webhook("webhook", path, webhook_payload)], FAST)
    n(RECORDS["rollout.started"])
    receiver.wait_for(1)
    rotate(tmp_path / "hook", receiver.url("/new"), "..2026_02_01_00_00_00.000000002")
    n(RECORDS["rollout.succeeded"])
    n.close(WAIT)
    assert receiver.paths() == ["/old", "/new"]


def test_a_secret_file_is_read_again_only_when_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[Path] = []
    read_text = Path.read_text

    def counting(self: Path, *args: Any, **kwargs: Any) -> str:
        reads.append(self)
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counting)
    path = tmp_path / "url"
    path.write_text("http://a.example/1\n")
    file = SecretFile(str(path))
    assert [file.read(), file.read()] == ["http://a.example/1"] * 2
    assert len(reads) == 1  # the second read was a stat only
    path.write_text("http://a.example/22\n")
    assert file.read() == "http://a.example/22" and len(reads) == 2
    assert "example" not in repr(file)


def test_a_missing_url_file_is_reported_then_picked_up(tmp_path: Path, receiver: Receiver) -> None:
    """A Secret mounted late (``optional: true``) or not yet synced: the notifier says so and
    posts once the file is there."""
    path = tmp_path / "hook" / "url"
    n = Notifier([Webhook("webhook", str(path), webhook_payload)], FAST)
    with watch_logs() as logs:
        n(RECORDS["rollout.started"])
        [failed] = logs.wait_for("notify.failed")
        path.parent.mkdir()
        path.write_text(receiver.url("/hook"))
        n(RECORDS["rollout.succeeded"])
        n.close(WAIT)
    assert failed["url_file"] == str(path) and failed["target"] == "webhook"
    assert (
        failed["error"] == "cannot read the URL file: FileNotFoundError: No such file or directory"
    )
    assert [r.json()["event"] for r in receiver.received] == ["rollout.succeeded"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/services/" + TOKEN,  # nothing listens: connection refused
        "htps://hooks.example/services/" + TOKEN,  # urllib quotes the URL in its error
        "http://hooks.example:notaport/services/" + TOKEN,  # so does http.client
        "not a url " + TOKEN,
    ],
)
def test_the_url_never_reaches_the_logs(tmp_path: Path, url: str) -> None:
    n = notifier_from_files(secret(tmp_path / "slack", url), None, FAST)
    with capture_logs() as logs:
        n(RECORDS["rollout.rolled_back"])
        n.close(WAIT)
    assert [e["event"] for e in logs] == ["notify.failed"]
    text = repr(logs) + repr(n)
    assert "secret" not in text and "hooks.example" not in text


def test_the_url_never_reaches_the_logs_of_a_failing_receiver(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.answers[f"/services/{TOKEN}"] = [500, 500, 500]
    receiver.answers["/hook?token=secret"] = [403]
    n = notifier(tmp_path, receiver)
    with capture_logs() as logs:
        n(RECORDS["rollout.rolled_back"])
        n.close(WAIT)
    assert [e["event"] for e in logs] == ["notify.failed", "notify.failed"]
    text = repr(logs) + repr(n)
    assert "secret" not in text and str(receiver.server.server_address[1]) not in text


# --- nothing configured -----------------------------------------------------------------------


def test_no_webhook_means_a_null_notifier() -> None:
    n = notifier_from_files(None, "")
    assert isinstance(n, NullNotifier)
    n(RECORDS["rollout.rolled_back"])
    n.close()
