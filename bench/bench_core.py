"""Benchmarks of the pure core and the simulator (run: python3 bench/bench_core.py).

Reports absolute figures and ratios; nothing here is asserted in the unit tests.
- decide(): ticks per second for a Progressing rollout with a check (the hot path of a tick)
- state JSON round trip per second (every tick parses the annotation, every change writes it)
- a whole simulated rollout (good scenario, ~7 simulated minutes) in wall-clock ms
- peak memory of 1000 rollout states held at once (what the daemon would keep per tick)
"""

from __future__ import annotations

import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

from canary.core.decide import decide
from canary.core.model import (
    MetricsSample,
    MetricValue,
    Observation,
    Phase,
    RolloutState,
    Weights,
    WorkloadStatus,
    state_from_json,
    state_to_json,
)
from canary.core.snapshot import plan_hash, plan_to_spec
from canary.plans.files import load_plan_files
from canary.shell.emitter import configure_logging
from canary.sim import SCENARIOS
from canary.sim.run import simulate

PLAN = load_plan_files([Path(__file__).resolve().parents[1] / "config/plans/reviews.yaml"])[0]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def per_second(fn: object, seconds: float = 1.0) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()  # type: ignore[operator]
        n += 1
    return n / (time.perf_counter() - start)


def main() -> None:
    configure_logging("off")
    state = RolloutState(
        plan=PLAN.key,
        phase=Phase.PROGRESSING,
        rollout_id="c" * 10 + "-1",
        canary_hash="c" * 64,
        stable_hash="s" * 64,
        revision=2,
        base_revision=1,
        step=0,
        weights=Weights(stable=90, canary=10),
        step_started_at=T0,
        spec=plan_to_spec(PLAN),
        plan_hash=plan_hash(PLAN),
    )
    sample = MetricsSample(
        rollout_id=state.rollout_id,
        step=0,
        window=timedelta(seconds=60),
        canary_requests=300.0,
        stable_requests=2700.0,
        metrics=(
            MetricValue("error-rate", value=0.002, stable_value=0.001),
            MetricValue("latency-p99", value=120.0, stable_value=115.0),
        ),
    )
    obs = Observation(
        stable=WorkloadStatus("reviews-v1", template_hash="s" * 64),
        canary=WorkloadStatus("reviews-v3", template_hash="c" * 64),
        live_weights=Weights(stable=90, canary=10),
        metrics=sample,
    )
    now = T0 + timedelta(seconds=60)
    decide_rate = per_second(lambda: decide(PLAN, state, obs, now))
    raw = state_to_json(state)
    json_rate = per_second(lambda: state_from_json(state_to_json(state)))

    start = time.perf_counter()
    result = simulate(PLAN, SCENARIOS["good"])
    sim_ms = (time.perf_counter() - start) * 1000
    assert result.exit_code == 0

    tracemalloc.start()
    states = [state_from_json(raw) for _ in range(1000)]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del states

    print(
        f"decide() with a check:       {decide_rate:10,.0f} /s  ({1e6 / decide_rate:.1f} µs each)"
    )
    print(f"state JSON round trip:       {json_rate:10,.0f} /s  ({len(raw)} bytes annotation)")
    print(f"simulated good rollout:      {sim_ms:10,.1f} ms wall clock")
    print(f"1000 parsed states, peak:    {peak / 1024:10,.0f} KiB ({peak / 1000:.0f} B each)")
    interval = PLAN.analysis.interval.total_seconds()
    print(f"ratio: decide cost per check interval = {1 / decide_rate / interval:.2e} of one core")


if __name__ == "__main__":
    main()
