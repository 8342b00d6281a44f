"""Leader election on a ``coordination.k8s.io/v1`` Lease, as client-go's leaderelection does it.

Only the leader acts. A candidate takes the Lease when it is free, released, or expired; the
holder renews it every ``retry_period``. Expiry is judged on **our own clock**, from when we
last saw the Lease record change (client-go's ``observedTime``), never by comparing another
machine's ``renewTime`` with ours. The holder stops being leader **at once** when it has not
renewed for ``renew_deadline`` (before anyone else may take the Lease at ``lease_duration``),
so two controllers never act together (docs/design.md §4 "lease lost → stop acting at once").

Defaults are client-go's and the issue's: lease 15 s, renew deadline 10 s, retry every 2 s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client

from canary.adapters.kube import call
from canary.core.errors import CanaryError, ConflictError, NotFoundError

#: How long a Lease is valid without renewal: a crashed leader is replaced after this.
DEFAULT_LEASE_DURATION = timedelta(seconds=15)
#: A leader that could not renew for this long stops acting (< lease duration: no overlap).
DEFAULT_RENEW_DEADLINE = timedelta(seconds=10)
#: Time between attempts to acquire or renew.
DEFAULT_RETRY_PERIOD = timedelta(seconds=2)
#: Lease calls must answer well within renew deadline − retry period (8 s at the defaults).
LEASE_REQUEST_TIMEOUT = (2.0, 4.0)


@dataclass(frozen=True)
class LeaseRecord:
    holder: str
    duration_s: int
    transitions: int
    resource_version: str


class LeaderElector:
    """One candidate for one Lease. Call :meth:`step` every ``retry_period`` (or :meth:`run`
    it on a thread); ask :attr:`is_leader` before every write."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        name: str,
        namespace: str,
        identity: str,
        lease_duration: timedelta = DEFAULT_LEASE_DURATION,
        renew_deadline: timedelta = DEFAULT_RENEW_DEADLINE,
        retry_period: timedelta = DEFAULT_RETRY_PERIOD,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not renew_deadline < lease_duration:
            raise ValueError("renew_deadline must be shorter than lease_duration")
        self._coord = client.CoordinationV1Api(api)
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._clock = clock
        self._wall = wall
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0
        self._renewed_at: float | None = None  # our clock, last successful acquire/renew
        self._lock = threading.Lock()
        self.last_error = ""

    @property
    def _what(self) -> str:
        return f"leases.coordination.k8s.io {self.namespace}/{self.name}"

    @property
    def is_leader(self) -> bool:
        """True only while our last renewal is younger than the renew deadline."""
        with self._lock:
            renewed = self._renewed_at
        return renewed is not None and (
            self._clock() - renewed < self.renew_deadline.total_seconds()
        )

    # -- one attempt -------------------------------------------------------------------------

    def _spec(self, transitions: int, acquired: bool, old: Any = None) -> client.V1LeaseSpec:
        now = self._wall()
        acquire_time = now if acquired or old is None else old.acquire_time
        return client.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=int(self.lease_duration.total_seconds()),
            acquire_time=acquire_time,
            renew_time=now,
            lease_transitions=transitions,
        )

    def step(self) -> bool:
        """Try to acquire or renew once; True if we hold the Lease afterwards. Never raises.

        Leadership is counted from when the request was *sent*: a renewal whose answer came
        late must not stretch our term past what the others see on the Lease."""
        started = self._clock()
        try:
            held = self._step()
            self.last_error = ""  # the API answered: whatever failed before is over
        except CanaryError as exc:
            self.last_error = str(exc)
            held = False
        if held:
            with self._lock:
                self._renewed_at = started
        return held and self.is_leader

    def _step(self) -> bool:
        try:
            lease = call(
                lambda: self._coord.read_namespaced_lease(
                    self.name, self.namespace, _request_timeout=LEASE_REQUEST_TIMEOUT
                ),
                verb="get",
                what=self._what,
            )
        except NotFoundError:
            body = client.V1Lease(
                metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=self._spec(0, acquired=True),
            )
            try:
                call(
                    lambda: self._coord.create_namespaced_lease(
                        self.namespace, body, _request_timeout=LEASE_REQUEST_TIMEOUT
                    ),
                    verb="create",
                    what=self._what,
                )
            except ConflictError:
                return False  # another candidate created it first
            return True
        spec = lease.spec or client.V1LeaseSpec()
        record = LeaseRecord(
            holder=spec.holder_identity or "",
            duration_s=int(spec.lease_duration_seconds or 0),
            transitions=int(spec.lease_transitions or 0),
            resource_version=str(lease.metadata.resource_version if lease.metadata else ""),
        )
        now = self._clock()
        if record != self._observed:
            self._observed, self._observed_at = record, now
        ours = record.holder == self.identity
        expired = now - self._observed_at >= (record.duration_s or 0)
        if not ours and record.holder and not expired:
            with self._lock:
                self._renewed_at = None
            return False
        transitions = record.transitions if ours else record.transitions + 1
        lease.spec = self._spec(transitions, acquired=not ours, old=spec)
        try:
            call(
                lambda: self._coord.replace_namespaced_lease(
                    self.name, self.namespace, lease, _request_timeout=LEASE_REQUEST_TIMEOUT
                ),
                verb="update",
                what=self._what,
            )
        except ConflictError:
            # someone else wrote the Lease between our read and write: stop acting at once
            with self._lock:
                self._renewed_at = None
            return False
        return True

    def release(self) -> None:
        """Give the Lease up on shutdown so a standby takes over at once. Never raises."""
        if not self.is_leader:
            return
        with self._lock:
            self._renewed_at = None
        try:
            lease = call(
                lambda: self._coord.read_namespaced_lease(
                    self.name, self.namespace, _request_timeout=LEASE_REQUEST_TIMEOUT
                ),
                verb="get",
                what=self._what,
            )
            if lease.spec is None or lease.spec.holder_identity != self.identity:
                return
            lease.spec.holder_identity = None
            lease.spec.lease_duration_seconds = 1
            lease.spec.renew_time = self._wall()
            call(
                lambda: self._coord.replace_namespaced_lease(
                    self.name, self.namespace, lease, _request_timeout=LEASE_REQUEST_TIMEOUT
                ),
                verb="update",
                what=self._what,
            )
        except CanaryError as exc:
            self.last_error = str(exc)

    def run(self, stop: threading.Event) -> None:
        """Acquire and renew every ``retry_period`` until ``stop``; then release."""
        while not stop.is_set():
            self.step()
            stop.wait(self.retry_period.total_seconds())
        self.release()
