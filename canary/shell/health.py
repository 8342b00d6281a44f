"""What ``/healthz`` and ``/readyz`` answer for one replica of ``canary run``.

Alive: ticks complete (a wedged loop is restarted by the kubelet). Ready: the plans are loaded,
the API server answers (the Lease renews), Prometheus answers a trivial query, and the helm
binary can be run: a replica that could not roll back is not ready, whichever role it has.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Protocol

from canary.core.errors import ConfigError
from canary.core.ports import Clock
from canary.shell.telemetry import Telemetry

#: /healthz reports the loop wedged when no tick completed for this long (several idle
#: intervals: a healthy daemon completes one every few seconds).
WEDGED_AFTER = timedelta(minutes=3)

#: How long /readyz trusts the last Prometheus probe (one trivial query).
PROBE_TTL = 10.0


class _Lease(Protocol):
    @property
    def is_leader(self) -> bool: ...
    @property
    def last_error(self) -> str: ...


class _Prometheus(Protocol):
    def ping(self, at: datetime) -> str: ...


class _Helm(Protocol):
    def locate(self) -> str: ...


class Health:
    """The answers of one replica's probes, from what the daemon holds."""

    def __init__(
        self,
        *,
        plans_dir: str,
        loaded: Callable[[], bool],
        serving: Callable[[], bool],
        telemetry: Telemetry,
        lease: _Lease,
        prometheus: _Prometheus,
        helm: _Helm,
        clock: Clock,
    ) -> None:
        self._plans_dir = plans_dir
        self._loaded = loaded
        self._serving = serving
        self._telemetry = telemetry
        self._lease = lease
        self._prometheus = prometheus
        self._helm = helm
        self._clock = clock
        self._probe: tuple[float, str] = (0.0, "not probed yet")
        self._probe_lock = threading.Lock()

    def alive(self) -> bool:
        """Ticks complete (a replica serving no plan has none to complete and is alive)."""
        if not self._serving():
            return True
        return self._telemetry.tick_age() < WEDGED_AFTER.total_seconds()

    def ready(self) -> tuple[bool, Mapping[str, str]]:
        loaded = self._loaded()
        lease_error = self._lease.last_error
        checks = {
            "config": (
                "plans not loaded yet"
                if not loaded
                else f"plans directory {self._plans_dir} is missing or unreadable"
                if not os.path.isdir(self._plans_dir)
                else "loaded"
            ),
            "kubernetes": lease_error or "ok",
            "prometheus": self._prometheus_probe() or "ok",
            "helm": self._helm_check(),
            "role": "leader" if self._lease.is_leader else "standby",
        }
        ok = (
            loaded
            and checks["config"] == "loaded"
            and not lease_error
            and checks["prometheus"] == "ok"
            and checks["helm"] == "ok"
        )
        return ok, checks

    def _helm_check(self) -> str:
        try:
            self._helm.locate()
        except ConfigError as exc:
            return str(exc)
        return "ok"

    def _prometheus_probe(self) -> str:
        with self._probe_lock:
            at, error = self._probe
            if time.monotonic() - at < PROBE_TTL:
                return error
            error = self._prometheus.ping(self._clock.now())
            self._probe = (time.monotonic(), error)
            return error
