"""Shared fixtures. Real-I/O fixtures for Prometheus (README: test doubles) live at the bottom."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# Every event the code emits, in this process and in the `canary` processes the tests start,
# must match its catalog entry (level and fields) or the emit raises: the catalog and
# docs/events.md cannot drift from the code (canary/shell/emitter.py, STRICT_ENV).
os.environ["CANARY_STRICT_EVENTS"] = "1"
# Scripts the tests run (the fake helm: ``#!/usr/bin/env python3``) run on this interpreter,
# the one with the test extra installed, also when it was started as .venv/bin/python from a
# shell whose PATH does not have the virtual environment on it (the README's command).
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])

from tests.support.istio_exporter import IstioExporter
from tests.support.prometheus import PrometheusServer, require_binary
from tests.support.promtool import Promtool

# --- Prometheus: the fake Istio mesh, one real Prometheus per session, promtool ----------------


@pytest.fixture(scope="session")
def istio_exporter() -> Iterator[IstioExporter]:
    """The fake Istio sidecars on a free loopback port, shared by the whole session.

    Tests register their own workloads (a namespace of their own keeps them apart), or use
    :func:`istio_mesh` to have them removed afterwards.
    """
    exporter = IstioExporter.start()
    yield exporter
    exporter.stop()


@pytest.fixture
def istio_mesh(istio_exporter: IstioExporter) -> Iterator[IstioExporter]:
    """The session exporter; workloads the test registers are removed when it ends."""
    before = {(w.namespace, w.workload) for w in istio_exporter.workloads()}
    yield istio_exporter
    for w in istio_exporter.workloads():
        if (w.namespace, w.workload) not in before:
            istio_exporter.remove(w.namespace, w.workload)


@pytest.fixture(scope="session")
def prometheus(
    istio_exporter: IstioExporter, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    """Debian's ``prometheus`` on 127.0.0.1, scraping :func:`istio_exporter` every second.

    Returned after its first scrape (~5 s: Prometheus hands out targets every 5 s). Missing
    binary: fails under ``CI=true``, skips elsewhere.
    """
    server = PrometheusServer(
        tmp_path_factory.mktemp("prometheus"), scrape_targets=[istio_exporter.target]
    )
    server.start()
    try:
        server.wait_for_scrape()
        yield server
    finally:
        server.stop()


@pytest.fixture
def promtool(tmp_path: Path) -> Promtool:
    """``promtool`` working in a fresh directory (fails under ``CI=true`` when missing)."""
    return Promtool(tmp_path / "promtool", require_binary("promtool"))


@pytest.fixture
def backfilled_prometheus(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[str], PrometheusServer]]:
    """Factory: OpenMetrics text → a started Prometheus serving it as backfilled blocks.

    Query it with an explicit ``at=`` (the data's own time); nothing is scraped.
    """
    servers: list[PrometheusServer] = []

    def start(openmetrics: str) -> PrometheusServer:
        workdir = tmp_path_factory.mktemp("backfilled")
        Promtool(workdir / "promtool", require_binary("promtool")).create_blocks(
            openmetrics, workdir / "data"
        )
        server = PrometheusServer(workdir, data_dir=workdir / "data")
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


# --- Kubernetes: the API server double the real client talks to (design §8) -----------------------

from tests.support.kubeapi import KubeApiServer  # noqa: E402 - this section is appended as a unit


@pytest.fixture
def kubeapi() -> Iterator[KubeApiServer]:
    """A fresh in-process Kubernetes API server double on a free loopback port (started in a
    few milliseconds); ``kubeapi.client()`` is a ``kubernetes.client.ApiClient`` for it."""
    with KubeApiServer() as server:
        yield server
