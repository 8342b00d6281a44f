"""Named scenarios for ``canary simulate PLAN --scenario NAME`` (docs/design.md §5) and the tests.

A scenario says how the stable and the canary image behave, how much traffic the service gets,
and which exit code ``canary simulate`` must end with under the default plan settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from canary.core.errors import ConfigError
from canary.core.plan import Plan
from canary.sim.behaviour import Behaviour
from canary.sim.chart import images_for_plan
from canary.sim.mesh import DEFAULT_RPS

#: The stable version: 0.1 % 5xx, p99 115 ms.
STABLE = Behaviour(error_ratio=0.001, latency_ms={0.5: 28.0, 0.9: 65.0, 0.99: 115.0})
#: A healthy canary: a little noisier than stable, well inside the default bounds.
GOOD_CANARY = Behaviour(error_ratio=0.002, latency_ms={0.5: 30.0, 0.9: 70.0, 0.99: 120.0})


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    stable: Behaviour
    canary: Behaviour
    expected_exit: int  # `canary simulate` exit code (docs/design.md §5)
    rps: float = DEFAULT_RPS  # requests/s to the service, both tracks together
    #: The images the tracks run; None (every named scenario): the plan's, after its workloads
    #: (:func:`canary.sim.chart.images_for_plan`), e.g. ``examples-bookinfo-ratings-v2:1.20.1``.
    stable_image: str | None = None
    canary_image: str | None = None

    def images(self, plan: Plan) -> tuple[str, str]:
        """(stable image, canary image) for ``plan``: this scenario's own where it sets them."""
        stable, canary = images_for_plan(plan)
        return self.stable_image or stable, self.canary_image or canary

    def for_plan(self, plan: Plan) -> Scenario:
        """This scenario with both images set, the plan's where it left them to the plan."""
        stable, canary = self.images(plan)
        return replace(self, stable_image=stable, canary_image=canary)


def _scenario(
    name: str, description: str, canary: Behaviour, expected_exit: int, rps: float = DEFAULT_RPS
) -> Scenario:
    return Scenario(
        name=name,
        description=description,
        stable=STABLE,
        canary=canary,
        expected_exit=expected_exit,
        rps=rps,
    )


SCENARIOS: Mapping[str, Scenario] = {
    s.name: s
    for s in (
        _scenario(
            "good",
            "a healthy canary (0.2 % 5xx, p99 120 ms like stable) passes every step",
            GOOD_CANARY,
            0,
        ),
        _scenario(
            "bad-errors",
            "the canary answers 8 % of requests with 5xx: rolled back at the first step",
            replace(GOOD_CANARY, error_ratio=0.08),
            1,
        ),
        _scenario(
            "bad-latency",
            "the canary's p99 is 1.2 s (p50 fine): rolled back at the first step",
            replace(GOOD_CANARY, latency_ms={0.5: 32.0, 0.9: 300.0, 0.99: 1200.0}),
            1,
        ),
        _scenario(
            "crashloop",
            "the canary's pods crash-loop once it takes 50 % of the traffic: rolled back",
            replace(GOOD_CANARY, crash_at_weight=50),
            1,
        ),
        _scenario(
            "slow-canary",
            "the canary's pods never become ready: rolled back at the progress deadline",
            replace(GOOD_CANARY, never_ready=True),
            1,
        ),
        _scenario(
            "low-traffic",
            "0.05 requests/s: far below minRequests, checks stay inconclusive and the rollout "
            "pauses",
            GOOD_CANARY,
            6,
            rps=0.05,
        ),
        _scenario(
            "no-traffic-to-canary",
            "the canary gets no requests although it has weight (misrouted): rolled back",
            replace(GOOD_CANARY, misrouted=True),
            1,
        ),
    )
}


def get_scenario(name: str) -> Scenario:
    """The scenario called ``name``; ConfigError naming the valid ones otherwise."""
    try:
        return SCENARIOS[name]
    except KeyError:
        valid = ", ".join(SCENARIOS)
        raise ConfigError(f"unknown scenario {name!r}; use one of: {valid}") from None
