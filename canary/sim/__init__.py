"""In-memory implementations of every port, a fake clock and named scenarios.

The simulator powers ``canary demo``, ``canary simulate PLAN --scenario NAME`` and the scenario
tests. It is deterministic (time comes only from :class:`~canary.sim.clock.FakeClock`, noise
only from a seeded generator) and imports none of kubernetes, prometheus_api_client,
subprocess, threading or time.

Start with :meth:`canary.sim.world.SimWorld.create`, which wires everything for one plan.
"""

from canary.sim.behaviour import Behaviour
from canary.sim.clock import FakeClock
from canary.sim.cluster import SimCluster
from canary.sim.helm import HelmCall
from canary.sim.mesh import SimMesh
from canary.sim.ports import SimEventSink, SimReleases, SimRouter, SimStateStore, SimWorkloads
from canary.sim.scenarios import SCENARIOS, Scenario, get_scenario
from canary.sim.world import SimWorld, demo_plan

__all__ = [
    "SCENARIOS",
    "Behaviour",
    "FakeClock",
    "HelmCall",
    "Scenario",
    "SimCluster",
    "SimEventSink",
    "SimMesh",
    "SimReleases",
    "SimRouter",
    "SimStateStore",
    "SimWorkloads",
    "SimWorld",
    "demo_plan",
    "get_scenario",
]
