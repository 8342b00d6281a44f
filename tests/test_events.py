"""The one emitter: JSON off a TTY, console on a TTY, a Kubernetes Event per log line."""

from __future__ import annotations

import ast
import io
import json
import logging
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

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
    with pytest.raises(ValueError, match="not a rollout event of the catalog"):
        Emitter().emit("ns", "p", Event("rollout.exploded"))
    with pytest.raises(ValueError, match="not a rollout event of the catalog"):
        Emitter().emit("ns", "p", Event(ev.LEADER_ACQUIRED))  # a process event


def test_strict_refuses_a_field_or_level_the_catalog_does_not_list() -> None:
    strict = Emitter(strict=True)
    with pytest.raises(ValueError, match=r"carries \['colour'\]"):
        strict.emit("ns", "p", Event(ev.WEIGHT_SET, {"stable": 90, "canary": 10, "colour": 1}))
    with pytest.raises(ValueError, match="logged at warning; the catalog says info"):
        strict.emit("ns", "p", Event(ev.WEIGHT_SET, {"stable": 90}, warning=True))
    # rollout.paused is a warning, info only when a human paused it
    strict.emit("ns", "p", Event(ev.ROLLOUT_PAUSED, {"kind": "manual", "reason": "x"}))


def test_not_strict_an_uncatalogued_field_is_logged_anyway() -> None:
    """In production the catalog never stops a rollout: the line goes out as it is."""
    got: list[dict[str, object]] = []
    loose = Emitter(listeners=[got.append], strict=False)
    loose.emit("ns", "p", Event(ev.WEIGHT_SET, {"stable": 90, "canary": 10, "colour": 1}))
    assert got[0]["colour"] == 1


def test_listeners_receive_the_flat_record() -> None:
    got: list[dict[str, object]] = []
    Emitter(listeners=[got.append]).emit("ns", "p", Event(ev.CHECK_PASSED, {"verdict": "PASS"}))
    assert got == [{"event": "check.passed", "level": "info", "plan": "ns/p", "verdict": "PASS"}]


def test_check_events_explain_themselves() -> None:
    """design §6: rendered PromQL, canary and stable values, request counts, bounds, verdict."""
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


# --- the catalog is the code's and the docs' ---------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
LEVELS = ("debug", "info", "warning", "error")


def _log_calls() -> list[tuple[str, int, str, ast.Call]]:
    """Every structlog call of the package: (file, line, level, call)."""
    found = []
    for path in sorted((ROOT / "canary").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in (*LEVELS, "exception", "msg", "log")
                and ast.unparse(node.func.value) in ("log", "self._log", "logger")
            ):
                rel = str(path.relative_to(ROOT))
                found.append((rel, node.lineno, node.func.attr, node))
    return found


def test_every_log_line_is_a_catalog_event_at_its_level_with_its_fields() -> None:
    """No printf text, no name outside the catalog, no field it does not list."""
    calls = _log_calls()
    assert len(calls) > 30
    for rel, line, level, call in calls:
        where = f"{rel}:{line}"
        if rel == "canary/shell/emitter.py":
            continue  # the emitter itself logs the rollout events it is handed (checked there)
        assert level in LEVELS, f"{where}: log.{level}: use one of {LEVELS}"
        first = call.args[0]
        names = [first.body, first.orelse] if isinstance(first, ast.IfExp) else [first]
        for name in names:
            assert isinstance(name, ast.Attribute) and ast.unparse(name.value) == "ev", (
                f"{where}: the event is {ast.unparse(name)}, not a catalog constant ev.NAME"
            )
            spec = ev.SPECS[getattr(ev, name.attr)]
            fields = {k.arg for k in call.keywords if k.arg not in (None, "exc_info")}
            assert spec.kind is ev.Kind.PROCESS, f"{where}: {spec.name} goes through Emitter"
            assert not ev.problem(spec.name, level, tuple(fields)), (
                where,
                ev.problem(spec.name, level, tuple(fields)),
            )
        assert not [k for k in call.keywords if k.arg is None], f"{where}: **fields hide names"


def test_library_records_become_the_library_log_event() -> None:
    stream = io.StringIO()
    configure_logging("json", stream=stream)
    logging.getLogger("urllib3.connectionpool").warning("Retrying after %s", "a reset")
    record = json.loads(stream.getvalue())
    assert record["event"] == ev.LIBRARY_LOG
    assert record["logger"] == "urllib3.connectionpool"
    assert record["message"] == "Retrying after a reset"
    assert record["level"] == "warning"


def test_every_scenario_emits_only_what_the_catalog_lists() -> None:
    """Each simulator scenario through a strict emitter: levels and fields as catalogued."""
    for name, scenario in SCENARIOS.items():
        records: list[Mapping[str, object]] = []
        simulate(plan(), scenario, listener=records.append)
        assert records, name
        for record in records:
            fields = {k: v for k, v in record.items() if k not in ("event", "level")}
            assert not ev.problem(str(record["event"]), str(record["level"]), fields), record


def test_names_are_used_as_catalogued_and_keep_their_form() -> None:
    used: set[str] = set()
    for path in (ROOT / "canary").rglob("*.py"):
        used.update(re.findall(r"\bev\.([A-Z][A-Z_]+)\b", path.read_text()))
    missing = sorted(n for n in used if not hasattr(ev, n))
    assert not missing, missing
    for name in ev.CATALOG:
        assert re.fullmatch(r"[a-z]+\.[a-z_]+", name), name
    design = {
        "rollout.started", "step.started", "weight.set", "weight.drift", "check.passed",
        "check.failed", "check.inconclusive", "check.error", "rollout.paused",
        "rollout.succeeded", "rollout.bypassed", "rollback.started",
        "rollback.traffic_reverted", "rollback.helm_started", "rollback.helm_succeeded",
        "rollback.helm_failed", "rollout.rolled_back", "state.lost", "rollout.finalise_stalled",
    }  # fmt: skip
    assert design <= ev.ROLLOUT_EVENTS


def test_the_docs_event_tables_are_generated_from_the_catalog() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "events.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    text = (ROOT / "docs" / "events.md").read_text()
    for name in ev.CATALOG:
        assert f"| `{name}` |" in text
