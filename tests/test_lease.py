"""Leader election on a coordination.k8s.io/v1 Lease, through the real client over HTTP.

Time is a fake monotonic clock shared by the candidates, so expiry is exact and nothing sleeps.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from canary.adapters.lease import LeaderElector
from canary.shell.controller import Controller, Ports
from canary.shell.emitter import Emitter
from tests.support.kubeapi import KubeApiServer


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def elector(kubeapi: KubeApiServer, identity: str, clock: Clock) -> LeaderElector:
    return LeaderElector(
        kubeapi.client(),
        name="canary-leader",
        namespace="canary-system",
        identity=identity,
        clock=clock,
        wall=lambda: datetime(2026, 3, 1, tzinfo=UTC) + timedelta(seconds=clock.t),
    )


def lease(kubeapi: KubeApiServer) -> dict[str, object]:
    found = kubeapi.get_object("coordination.k8s.io", "v1", "leases", "canary-system",
                               "canary-leader")  # fmt: skip
    assert found is not None
    return found


def test_the_first_candidate_creates_and_holds_the_lease(kubeapi: KubeApiServer) -> None:
    clock = Clock()
    a = elector(kubeapi, "a", clock)
    assert a.step() and a.is_leader
    spec = lease(kubeapi)["spec"]
    assert spec["holderIdentity"] == "a" and spec["leaseDurationSeconds"] == 15  # type: ignore[index]
    created = kubeapi.requests.last(method="POST", resource="leases")
    assert created.path == "/apis/coordination.k8s.io/v1/namespaces/canary-system/leases"


def test_only_one_leader_and_the_standby_takes_over_within_the_lease_time(
    kubeapi: KubeApiServer,
) -> None:
    clock = Clock()
    a, b = elector(kubeapi, "a", clock), elector(kubeapi, "b", clock)
    assert a.step()
    assert not b.step() and not b.is_leader
    for _ in range(5):  # a renews every 2 s; b never gets it
        clock.advance(2)
        assert a.step() and not b.step()
    # a dies (stops renewing). b must wait a full lease duration from when it last saw a change
    clock.advance(2)
    assert not b.step()
    clock.advance(12)
    assert not b.step()  # 14 s since the record last changed: not yet
    clock.advance(2)
    assert b.step() and b.is_leader  # ≥ 15 s: taken over
    spec = lease(kubeapi)["spec"]
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1  # type: ignore[index]


def test_a_leader_that_cannot_renew_stops_acting_at_the_renew_deadline(
    kubeapi: KubeApiServer,
) -> None:
    clock = Clock()
    a = elector(kubeapi, "a", clock)
    assert a.step()
    kubeapi.fail(503, times=None, resource="leases")
    clock.advance(9)
    assert not a.step()
    assert a.is_leader  # still within the 10 s renew deadline
    clock.advance(1)
    assert not a.is_leader  # at once, before anyone else may take it (15 s)
    assert "503" in a.last_error


def test_losing_a_race_is_not_leadership(kubeapi: KubeApiServer) -> None:
    clock = Clock()
    a = elector(kubeapi, "a", clock)
    assert a.step()
    kubeapi.fail(409, times=1, method="PUT", resource="leases")
    clock.advance(2)
    assert not a.step()
    assert not a.is_leader  # someone else wrote the Lease: stop acting at once


def test_a_renewal_puts_the_lease_back_with_our_identity_and_a_fresh_time(
    kubeapi: KubeApiServer,
) -> None:
    clock = Clock()
    a = elector(kubeapi, "a", clock)
    assert a.step()
    first = lease(kubeapi)["spec"]["renewTime"]  # type: ignore[index]
    clock.advance(2)
    assert a.step()
    put = kubeapi.requests.last(method="PUT", resource="leases")
    assert put.path == "/apis/coordination.k8s.io/v1/namespaces/canary-system/leases/canary-leader"
    assert put.body["spec"]["holderIdentity"] == "a"
    assert put.body["metadata"]["resourceVersion"]  # guarded by the version we read
    assert put.body["spec"]["renewTime"] != first and put.body["spec"]["leaseTransitions"] == 0


def test_leadership_counts_from_when_the_renewal_was_sent(kubeapi: KubeApiServer) -> None:
    clock = Clock()
    a = elector(kubeapi, "a", clock)
    assert a.step()
    clock.advance(2)
    real = a._step

    def slow() -> bool:  # the renewal's answer arrives 9 s after it was sent
        held = real()
        clock.advance(9)
        return held

    a._step = slow  # type: ignore[method-assign]
    assert a.step()
    clock.advance(1.5)
    assert not a.is_leader  # 10.5 s after sending: past the renew deadline


def test_release_lets_the_standby_take_over_at_once(kubeapi: KubeApiServer) -> None:
    clock = Clock()
    a, b = elector(kubeapi, "a", clock), elector(kubeapi, "b", clock)
    assert a.step() and not b.step()
    a.release()
    assert not a.is_leader
    clock.advance(2)
    assert b.step()


def test_a_controller_that_is_not_leader_writes_nothing(kubeapi: KubeApiServer) -> None:
    class Boom:
        def __getattr__(self, name: str) -> object:
            raise AssertionError(f"a follower must not touch {name}")

    ctrl = Controller(
        ports=Ports(router=Boom(), workloads=Boom(), metrics=Boom(), releases=Boom(),  # type: ignore[arg-type]
                    clock=Boom()),  # type: ignore[arg-type]
        emitter=Emitter(),
        leader=lambda: False,
    )  # fmt: skip
    assert ctrl.tick(["bookinfo/reviews"]) == {}


def test_renew_deadline_must_be_shorter_than_the_lease(kubeapi: KubeApiServer) -> None:
    with pytest.raises(ValueError, match="renew_deadline"):
        LeaderElector(kubeapi.client(), name="x", namespace="y", identity="z",
                      renew_deadline=timedelta(seconds=20))  # fmt: skip
