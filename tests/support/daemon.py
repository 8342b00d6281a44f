"""``canary run`` as a subprocess against the doubles: its kubeconfig points at the
Kubernetes API double, its ``--helm-binary`` is the fake helm, its Prometheus the session's real
one. Its JSON log lines (stderr) are read back as records for the assertions."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.support.fakehelm import FakeHelm

#: How long a test waits for the daemon to log something before it fails with the log's tail.
WAIT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_kubeconfig(path: Path, server: str) -> Path:
    """A kubeconfig for the API double: plain HTTP, no credentials (as `kubectl proxy`)."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "double", "cluster": {"server": server}}],
        "users": [{"name": "tests", "user": {}}],
        "contexts": [{"name": "double", "context": {"cluster": "double", "user": "tests"}}],
        "current-context": "double",
    }
    path.write_text(yaml.safe_dump(doc))
    return path


class CanaryProcess:
    """One ``canary run`` process; :meth:`records` parses its log so far."""

    def __init__(
        self,
        workdir: Path,
        *,
        kube_url: str,
        prometheus_url: str,
        plans: Path,
        helm: FakeHelm,
        name: str = "canary",
        lease_namespace: str = "canary-system",
        extra: Sequence[str] = (),
        session: bool = False,
    ) -> None:
        self.name = name
        #: lead a process group of its own, so a test can signal the group (as a terminal's
        #: Ctrl-C or an init that signals groups would) with :meth:`signal_group`
        self.session = session
        self.port = free_port()
        self.log_path = workdir / f"{name}.log"
        kubeconfig = write_kubeconfig(workdir / "kubeconfig", kube_url)
        self.argv = [
            sys.executable,
            "-m",
            "canary.cli",
            "--log-format",
            "json",
            "run",
            "--plans",
            str(plans),
            "--prometheus-url",
            prometheus_url,
            "--scrape-interval",
            "1s",
            "--helm-binary",
            str(helm.binary),
            "--kubeconfig",
            str(kubeconfig),
            "--port",
            str(self.port),
            "--lease-namespace",
            lease_namespace,
            "--lease-duration",
            "4s",
            "--lease-renew-deadline",
            "3s",
            "--lease-retry-period",
            "500ms",
            *extra,
        ]
        self.env = {**os.environ, **helm.env, "POD_NAME": name}
        self.process: subprocess.Popen[bytes] | None = None
        self._offset = 0
        self._records: list[dict[str, Any]] = []

    def start(self) -> CanaryProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=self.session,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def records(self) -> list[dict[str, Any]]:
        """Every JSON log line so far (other lines are skipped), oldest first."""
        with open(self.log_path, "rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1
        self._offset += end
        for line in chunk[:end].splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                self._records.append(record)
        return list(self._records)

    def events(self, plan: str | None = None) -> list[str]:
        return [
            r["event"]
            for r in self.records()
            if "event" in r and (plan is None or r.get("plan") == plan)
        ]

    def wait_for(
        self, condition: Callable[[list[dict[str, Any]]], Any], *, limit: float = WAIT
    ) -> Any:
        """Poll the log until ``condition(records)`` is truthy; its value. Fails with the tail
        of the log if the process died or ``limit`` passed."""
        deadline = time.monotonic() + limit
        while True:
            records = self.records()
            found = condition(records)
            if found:
                return found
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.process.returncode}: {self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: condition not met in {limit} s: {self.tail()}")
            time.sleep(0.1)

    def wait_event(
        self, name: str, *, plan: str | None = None, limit: float = WAIT
    ) -> Mapping[str, Any]:
        found: Mapping[str, Any] = self.wait_for(
            lambda rs: next(
                (
                    r
                    for r in rs
                    if r.get("event") == name and (plan is None or r.get("plan") == plan)
                ),
                None,
            ),
            limit=limit,
        )
        return found

    def tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def signal_group(self, sig: int) -> None:
        """``sig`` to the whole process group the daemon leads (``session=True``)."""
        assert self.process is not None and self.session
        os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL: the process ends between two statements, nothing runs after."""
        self.signal(signal.SIGKILL)
        assert self.process is not None
        self.process.wait(timeout=10)

    def stop(self) -> int | None:
        """SIGTERM and wait (SIGKILL after 30 s); the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()
        return self.process.returncode
