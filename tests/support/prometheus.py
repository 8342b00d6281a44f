"""A real Prometheus (Debian's ``prometheus`` package) run by the tests on 127.0.0.1 (design §8).

:class:`PrometheusServer` writes its own config and data directory, starts the binary in the
foreground as a child process on a free loopback port, and stops it by PID. It never touches a
system Prometheus. Two uses:

* scraping: ``PrometheusServer(tmp, scrape_targets=[exporter.target])`` scrapes the fake Istio
  exporter every second (:mod:`tests.support.istio_exporter`);
* backfilled: ``PrometheusServer(tmp, data_dir=blocks)`` serves blocks written by
  ``promtool tsdb create-blocks-from openmetrics`` (:mod:`tests.support.promtool`), queried at an
  explicit evaluation time.

Timing facts of Prometheus 2.42 that shape the helpers:

* The scrape manager applies target updates from service discovery at most every 5 s (a fixed
  ticker, no flag), so the first scrape lands ~5 s after start even with static targets; a
  session fixture pays this once. :meth:`wait_for_scrape` polls for it.
* ``rate()`` extrapolates at most ~1.1 scrape intervals before a series' first sample, so a
  window not yet full of samples under-reports the rate: after a change at ``t``,
  :meth:`wait_for_window` (``t``, window) before asserting on ``rate(x[window])``.
* Retention is relative to the newest block, but set very long anyway so backfilled blocks from
  2024 are never candidates for deletion.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

INSTALL_HINT = "apt-get install -y --no-install-recommends prometheus"
SCRAPE_INTERVAL_S = 1
JOB = "istio-mesh"
#: Polls give up after this; the first scrape normally lands within ~6 s of start.
DEFAULT_DEADLINE_S = 30.0
POLL_S = 0.05
STOP_GRACE_S = 10.0


def require_binary(name: str) -> str:
    """Path of ``name``; if missing: fail under ``CI=true`` (CI installs it), else skip."""
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"`{name}` not found on PATH; install it with: {INSTALL_HINT}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the child binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrometheusError(RuntimeError):
    """The test Prometheus did not start, answer or stop as expected."""


@dataclass(frozen=True)
class Sample:
    """One element of an instant vector: its labels and value (NaN and ±Inf included)."""

    labels: dict[str, str]
    value: float


class PrometheusServer:
    """One ``prometheus`` child process with its own config, data dir and loopback port."""

    def __init__(
        self,
        workdir: Path,
        *,
        scrape_targets: Sequence[str] = (),
        data_dir: Path | None = None,
        binary: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.binary = binary or require_binary("prometheus")
        self.scrape_targets = tuple(scrape_targets)
        self.data_dir = Path(data_dir) if data_dir is not None else self.workdir / "data"
        self.config_file = self.workdir / "prometheus.yml"
        self.log_file = self.workdir / "prometheus.log"
        self.extra_args = tuple(extra_args)
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.startup_seconds = 0.0
        self._session = requests.Session()
        self._write_config()

    # --- lifecycle --------------------------------------------------------------------------

    def _write_config(self) -> None:
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": f"{SCRAPE_INTERVAL_S}s",
                "scrape_timeout": f"{SCRAPE_INTERVAL_S}s",
                "evaluation_interval": f"{SCRAPE_INTERVAL_S}s",
            },
            "scrape_configs": [],
        }
        if self.scrape_targets:
            config["scrape_configs"].append(
                {
                    "job_name": JOB,
                    "metrics_path": "/metrics",
                    "static_configs": [{"targets": list(self.scrape_targets)}],
                }
            )
        self.config_file.write_text(yaml.safe_dump(config, sort_keys=False))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, *, deadline_s: float = DEFAULT_DEADLINE_S) -> PrometheusServer:
        """Start and wait until ``/-/ready``; keeps the port of an earlier start (a restart).

        A fresh port is picked per attempt: another process may take a "free" port between
        :func:`free_port` and the child's bind, so a bind failure is retried (twice).
        """
        if self.running:
            return self
        attempts = 1 if self.port else 3
        for attempt in range(1, attempts + 1):
            if attempts > 1:
                self.port = free_port()
            log_offset = self._spawn()
            try:
                self._wait_ready(deadline_s)
            except PrometheusError:
                self.stop()
                lost_port = "address already in use" in self.log()[log_offset:]
                if lost_port and attempt < attempts:
                    continue
                raise
            self.startup_seconds = time.monotonic() - self.started_at
            return self
        raise AssertionError("unreachable")

    def _spawn(self) -> int:
        """Start the child; returns where its output begins in :attr:`log_file`."""
        args = [
            self.binary,
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.data_dir}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=100y",
            "--log.level=info",
            *self.extra_args,
        ]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        offset = len(self.log())
        self.started_at = time.monotonic()
        with self.log_file.open("ab") as log:
            log.write(f"\n--- start: {' '.join(args)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        return offset

    def _wait_ready(self, deadline_s: float) -> None:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise PrometheusError(f"prometheus exited at start; log:\n{self.log()}")
            with contextlib.suppress(requests.RequestException):
                if self._session.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            time.sleep(POLL_S)
        raise PrometheusError(f"prometheus not ready after {deadline_s}s; log:\n{self.log()}")

    def stop(self) -> None:
        """SIGTERM our child by PID, wait, SIGKILL if it does not exit in time."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_GRACE_S)

    def restart(self) -> PrometheusServer:
        """Stop and start on the same port and data dir (samples written so far survive)."""
        self.stop()
        return self.start()

    @contextlib.contextmanager
    def down(self) -> Iterator[str]:
        """Prometheus is unreachable inside the block (connection refused at :attr:`url`).

        Restarts it on the same port afterwards and waits for readiness (not for a scrape).
        """
        self.stop()
        try:
            yield self.url
        finally:
            self.start()

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- queries ----------------------------------------------------------------------------

    def api(self, path: str, **params: Any) -> Any:
        """GET ``/api/v1/<path>``; the ``data`` of a success, else :class:`PrometheusError`."""
        response = self._session.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, promql: str, at: float | None = None) -> Any:
        """An instant query (at ``at``, Unix seconds, if given): the raw ``data`` object."""
        params = {"query": promql} | ({"time": repr(float(at))} if at is not None else {})
        return self.api("query", **params)

    def vector(self, promql: str, at: float | None = None) -> list[Sample]:
        data = self.query(promql, at)
        if data["resultType"] == "scalar":
            return [Sample({}, float(data["result"][1]))]
        if data["resultType"] != "vector":
            raise PrometheusError(f"{promql}: expected a vector, got {data['resultType']}")
        return [Sample(item["metric"], float(item["value"][1])) for item in data["result"]]

    def value(self, promql: str, at: float | None = None) -> float | None:
        """The single value of ``promql``; ``None`` for an empty vector (NaN stays NaN)."""
        samples = self.vector(promql, at)
        if len(samples) > 1:
            raise PrometheusError(f"{promql}: {len(samples)} series, expected at most one")
        return samples[0].value if samples else None

    def last_scrape(self, job: str = JOB) -> float | None:
        """Wall-clock time of the latest scrape of ``job``, if any."""
        return self.value(f'max(timestamp(up{{job="{job}"}}))')

    def wait_for(
        self,
        promql: str,
        predicate: Any = None,
        *,
        deadline_s: float = DEFAULT_DEADLINE_S,
    ) -> list[Sample]:
        """Poll ``promql`` until it returns a non-empty vector that satisfies ``predicate``."""
        deadline = time.monotonic() + deadline_s
        last: list[Sample] = []
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                last = self.vector(promql)
                if last and (predicate is None or predicate(last)):
                    return last
            time.sleep(POLL_S)
        raise PrometheusError(f"{promql}: condition not met within {deadline_s}s; last {last}")

    def wait_for_scrape(
        self, after: float | None = None, *, job: str = JOB, deadline_s: float = DEFAULT_DEADLINE_S
    ) -> float:
        """Poll until ``job`` has been scraped at or after ``after`` (default: now).

        To assert on ``rate(x[W])`` after ``exporter.set(...)`` returned ``t``, wait for
        ``after=t + W`` so the whole window holds samples of the new setting.
        """
        now = time.time()
        target = now if after is None else after

        def scraped(samples: list[Sample]) -> bool:
            return not math.isnan(samples[0].value) and samples[0].value >= target

        # timestamp() of a bare selector is the sample's (scrape) time; of any other expression
        # it would be the evaluation time, so no `== 1` filter inside.
        samples = self.wait_for(
            f'max(timestamp(up{{job="{job}"}}))',
            scraped,
            deadline_s=max(0.0, target - now) + deadline_s,
        )
        return samples[0].value

    def wait_for_window(
        self,
        since: float,
        window_s: float,
        *,
        job: str = JOB,
        deadline_s: float = DEFAULT_DEADLINE_S,
    ) -> float:
        """Poll until ``rate(x[window_s])`` sees only samples taken after ``since``, window full.

        Two conditions: a scrape at or after ``since + window_s`` (nothing older than ``since``
        is in the window), and at least ``window_s / interval`` scrapes inside the window (the
        series did not start mid-window, e.g. right after Prometheus started; ``rate()`` would
        then extrapolate only up to its first sample and under-report).
        """
        last = self.wait_for_scrape(since + window_s, job=job, deadline_s=deadline_s)
        needed = math.floor(window_s / SCRAPE_INTERVAL_S)
        self.wait_for(
            f'count_over_time(up{{job="{job}"}}[{promql_seconds(window_s)}]) >= {needed}',
            deadline_s=window_s + deadline_s,
        )
        return last


def promql_seconds(seconds: float) -> str:
    """A PromQL duration: ``10s``, or ``1500ms`` for fractions."""
    return f"{int(seconds)}s" if float(seconds).is_integer() else f"{round(seconds * 1000)}ms"
