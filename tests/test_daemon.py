"""The daemon's own logic, without processes: tick batching and per-phase cadence."""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

import pytest

from canary.cli import main
from canary.core import exitcodes
from canary.core.model import Decision, Phase
from canary.shell.scheduling import BUSY_INTERVAL, IDLE_INTERVAL, TickBatcher, cadence
from tests.support.builders import PLAN, idle, pending, progressing, rolling_back, succeeded
from tests.support.daemon import write_kubeconfig
from tests.support.fakehelm import FakeHelm
from tests.support.kubeapi import KubeApiServer


def test_cadence_follows_the_phase() -> None:
    assert cadence(PLAN, None) == IDLE_INTERVAL
    assert cadence(PLAN, idle()) == IDLE_INTERVAL
    assert cadence(PLAN, succeeded()) == IDLE_INTERVAL
    assert cadence(PLAN, pending()) == min(BUSY_INTERVAL, PLAN.analysis.interval)
    assert cadence(PLAN, rolling_back()) == BUSY_INTERVAL
    assert cadence(PLAN, progressing(1)) == PLAN.analysis.interval
    assert PLAN.analysis.interval == timedelta(seconds=30)


def test_requests_arriving_together_share_one_tick() -> None:
    """Jobs due at the same moment become one Controller.tick(keys): one Prometheus batch."""
    calls: list[list[str]] = []
    gate = threading.Event()

    def tick(keys: list[str]) -> Mapping[str, Decision]:
        calls.append(keys)
        gate.wait(timeout=5)
        return {k: Decision(state=progressing(0)) for k in keys}

    batcher = TickBatcher(tick, gather=0.2)
    results: dict[str, Mapping[str, Decision]] = {}

    def request(key: str) -> None:
        results[key] = batcher.request(key)

    threads = [threading.Thread(target=request, args=(f"ns/p{i}",)) for i in range(5)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(timeout=10)
    assert calls == [[f"ns/p{i}" for i in range(5)]]
    for key, decisions in results.items():
        assert decisions[key].state.phase is Phase.PROGRESSING


def test_a_request_during_a_running_tick_joins_the_next_one() -> None:
    calls: list[list[str]] = []
    started, release = threading.Event(), threading.Event()

    def tick(keys: list[str]) -> Mapping[str, Decision]:
        calls.append(keys)
        started.set()
        if len(calls) == 1:
            release.wait(timeout=5)
        return {k: Decision(state=idle()) for k in keys}

    batcher = TickBatcher(tick, gather=0.0)
    first = threading.Thread(target=batcher.request, args=("ns/a",))
    first.start()
    assert started.wait(timeout=5)
    got: dict[str, Mapping[str, Decision]] = {}
    second = threading.Thread(target=lambda: got.setdefault("b", batcher.request("ns/b")))
    second.start()
    release.set()
    first.join(timeout=5)
    second.join(timeout=5)
    assert calls == [["ns/a"], ["ns/b"]]
    assert "ns/b" in got["b"]


def test_a_failing_tick_releases_everyone_waiting() -> None:
    def tick(keys: list[str]) -> Mapping[str, Decision]:
        raise RuntimeError("boom")

    batcher = TickBatcher(tick, gather=0.0)
    with pytest.raises(RuntimeError, match="boom"):
        batcher.request("ns/a")
    calls: list[list[str]] = []
    batcher._tick = lambda keys: calls.append(keys) or {}  # type: ignore[assignment,func-returns-value]
    assert batcher.request("ns/b") == {}
    assert calls == [["ns/b"]]


def test_run_without_a_prometheus_url_is_a_usage_error(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = main(["run", "--plans", str(tmp_path)], out=out, err=err)
    assert code == exitcodes.USAGE
    assert "prometheusUrl" in err.getvalue() or "prometheus-url" in err.getvalue()


def test_run_with_its_port_taken_is_a_usage_error_not_a_traceback(
    tmp_path: Path, kubeapi: KubeApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kubeapi.url)
    helm = FakeHelm(tmp_path / "helm.json")
    for name, value in helm.env.items():
        monkeypatch.setenv(name, value)
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        err = io.StringIO()
        code = main(
            ["run", "--plans", str(tmp_path), "--prometheus-url", "http://127.0.0.1:9",
             "--kubeconfig", str(kubeconfig), "--port", str(port), "--log-format", "off",
             "--helm-binary", str(helm.binary)],
            out=io.StringIO(),
            err=err,
        )  # fmt: skip
    assert code == exitcodes.USAGE
    assert f"port {port}" in err.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("binary", ["helm-that-is-not-installed", "/nonexistent/bin/helm"])
def test_run_without_a_helm_binary_refuses_to_start(
    tmp_path: Path, kubeapi: KubeApiServer, binary: str
) -> None:
    """No helm, no rollback: caught at start (exit 2, naming the setting), not at the first
    breach."""
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kubeapi.url)
    err = io.StringIO()
    code = main(
        ["run", "--plans", str(tmp_path), "--prometheus-url", "http://127.0.0.1:9",
         "--kubeconfig", str(kubeconfig), "--port", str(free_port()), "--log-format", "off",
         "--helm-binary", binary],
        out=io.StringIO(),
        err=err,
    )  # fmt: skip
    assert code == exitcodes.USAGE
    assert f"helm binary {binary!r} not found" in err.getvalue()
    assert "--helm-binary" in err.getvalue()


def test_run_with_a_helm_that_cannot_run_refuses_to_start(
    tmp_path: Path, kubeapi: KubeApiServer
) -> None:
    """A helm that is there but fails (wrong architecture, broken plugin dir) is no helm."""
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kubeapi.url)
    broken = tmp_path / "helm"
    broken.write_text("#!/bin/sh\necho 'exec format error' >&2\nexit 1\n")
    broken.chmod(0o755)
    err = io.StringIO()
    code = main(
        ["run", "--plans", str(tmp_path), "--prometheus-url", "http://127.0.0.1:9",
         "--kubeconfig", str(kubeconfig), "--port", str(free_port()), "--log-format", "off",
         "--helm-binary", str(broken)],
        out=io.StringIO(),
        err=err,
    )  # fmt: skip
    assert code == exitcodes.USAGE
    assert f"{broken} version exited 1: exec format error" in err.getvalue()
