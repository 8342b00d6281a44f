"""``/readyz`` and ``/healthz`` answers of one replica (shell/health.Health), over a real
HelmReleases and a helm binary on disk: a replica that cannot run helm cannot roll back and is not
ready, whichever role it holds."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from canary.adapters.helm import HelmReleases
from canary.shell.health import Health
from canary.shell.telemetry import Telemetry


class Lease:
    is_leader = True
    last_error = ""


class Prometheus:
    def __init__(self) -> None:
        self.error = ""

    def ping(self, at: datetime) -> str:
        return self.error


class Clock:
    def now(self) -> datetime:
        return datetime(2026, 12, 3, tzinfo=UTC)


def helm_script(path: Path) -> Path:
    path.write_text("#!/bin/sh\necho v3.16.2+g13654a5\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def health(tmp_path: Path, helm: HelmReleases, prometheus: Prometheus | None = None) -> Health:
    return Health(
        plans_dir=str(tmp_path),
        loaded=lambda: True,
        serving=lambda: True,
        telemetry=Telemetry(process_metrics=False),
        lease=Lease(),
        prometheus=prometheus or Prometheus(),
        helm=helm,
        clock=Clock(),
    )


def test_ready_when_plans_api_prometheus_and_helm_all_answer(tmp_path: Path) -> None:
    binary = helm_script(tmp_path / "helm")
    ok, checks = health(tmp_path, HelmReleases(str(binary))).ready()
    assert ok
    assert checks == {
        "config": "loaded",
        "kubernetes": "ok",
        "prometheus": "ok",
        "helm": "ok",
        "role": "leader",
    }


def test_a_helm_binary_that_disappears_makes_the_replica_not_ready(tmp_path: Path) -> None:
    binary = helm_script(tmp_path / "helm")
    probes = health(tmp_path, HelmReleases(str(binary)))
    assert probes.ready()[0]
    binary.unlink()  # e.g. an image rebuilt without it, a volume unmounted
    ok, checks = probes.ready()
    assert not ok
    assert f"helm binary {str(binary)!r} not found" in checks["helm"]
    assert "--helm-binary" in checks["helm"]
    helm_script(binary)
    assert probes.ready()[0]


def test_a_helm_not_on_path_is_named_with_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    ok, checks = health(tmp_path, HelmReleases("helm", env=dict(os.environ))).ready()
    assert not ok
    assert checks["helm"].startswith("helm binary 'helm' not found on PATH")


def test_prometheus_down_alone_is_enough_to_be_not_ready(tmp_path: Path) -> None:
    prometheus = Prometheus()
    prometheus.error = "unreachable: connection refused"
    ok, checks = health(
        tmp_path, HelmReleases(str(helm_script(tmp_path / "helm"))), prometheus
    ).ready()
    assert not ok
    assert checks["prometheus"] == "unreachable: connection refused"
    assert checks["helm"] == "ok"
