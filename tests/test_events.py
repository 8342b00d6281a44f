"""The one emitter: JSON off a TTY, console on a TTY, a Kubernetes Event per log line."""

from __future__ import annotations

import io
import json

import pytest
import structlog

from canary.core import events as ev
from canary.core.model import Event
from canary.shell.emitter import Emitter, configure_logging
from canary.sim import SCENARIOS, SimEventSink
from canary.sim.run import simulate
from tests.support.builders import plan


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _reset_structlog() -> object:
    yield
    structlog.reset_defaults()


def test_json_lines_off_a_tty() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream)
    sink = SimEventSink()
    Emitter(sink).emit("bookinfo", "reviews", Event(ev.WEIGHT_SET, {"stable": 90, "canary": 10}))
    record = json.loads(stream.getvalue())
    assert record["event"] == "weight.set"
    assert record["plan"] == "bookinfo/reviews"
    assert (record["stable"], record["canary"], record["level"]) == (90, 10, "info")
    assert "ts" in record
    assert [(ns, p, e.name) for ns, p, e in sink.posted] == [("bookinfo", "reviews", "weight.set")]


def test_console_on_a_tty() -> None:
    stream = FakeTTY()
    configure_logging(stream=stream)
    Emitter().emit("bookinfo", "reviews", Event(ev.ROLLBACK_STARTED, {"reason": "x"}, True))
    line = stream.getvalue()
    assert "rollback.started" in line and "warning" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_an_unknown_event_name_is_refused() -> None:
    with pytest.raises(ValueError, match="not in the catalog"):
        Emitter().emit("ns", "p", Event("rollout.exploded"))


def test_listeners_receive_the_flat_record() -> None:
    got: list[dict[str, object]] = []
    Emitter(listeners=[got.append]).emit("ns", "p", Event(ev.CHECK_PASSED, {"verdict": "PASS"}))
    assert got == [{"event": "check.passed", "level": "info", "plan": "ns/p", "verdict": "PASS"}]


def test_check_events_explain_themselves() -> None:
    """DESIGN §6: rendered PromQL, canary and stable values, request counts, bounds, verdict."""
    records: list[dict[str, object]] = []
    simulate(plan(), SCENARIOS["bad-errors"], listener=lambda r: records.append(dict(r)))
    failed = next(r for r in records if r["event"] == "check.failed")
    assert failed["verdict"] == "FAIL"
    assert failed["canary_requests"] and failed["stable_requests"]
    metrics = {m["name"]: m for m in failed["metrics"]}  # type: ignore[attr-defined]
    err = metrics["error-rate"]
    assert (
        "istio_requests_total" in err["query"]
        and 'destination_workload="reviews-v3"' in err["query"]
    )
    assert 'destination_workload="reviews-v1"' in err["stable_query"]
    assert err["value"] == pytest.approx(0.08) and err["stable_value"] == pytest.approx(0.001)
    assert err["bounds"] == {"max": 0.01, "maxAboveStable": 0.005}
    assert err["verdict"] == "FAIL" and "> max 0.01" in err["reason"]
