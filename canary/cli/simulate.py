"""``canary simulate PLAN --scenario NAME`` and ``canary demo``: the real controller against
the in-process simulator (no cluster, no Prometheus), printed as a live timeline. Before it
runs, a warning for every setting of the plan that the simulated scrape interval cannot judge.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from canary.cli.cluster import plan_file
from canary.cli.options import add_common, config_of, duration_arg
from canary.cli.validate import plan_warnings
from canary.core import exitcodes
from canary.core.plan import Plan
from canary.core.render import format_line
from canary.core.timestamps import parse_iso
from canary.sim.run import SCENARIOS, demo, simulate
from canary.sim.world import demo_plan

#: The bookinfo example plan of a checkout; an installed package falls back to the same plan
#: built in code (canary.sim.world.demo_plan).
DEMO_PLAN = Path(__file__).resolve().parents[2] / "config" / "plans" / "reviews.yaml"


class _Printer:
    """Prints events as timeline lines, optionally paced so the demo reads like a live run."""

    def __init__(self, out: TextIO, pace: float = 0.0) -> None:
        self.out = out
        self.pace = pace
        self.start: datetime | None = None

    def __call__(self, record: Mapping[str, Any]) -> None:
        if self.start is None:
            self.start = parse_iso(record.get("at"))
        print(format_line(record, self.start), file=self.out, flush=True)
        if self.pace:
            time.sleep(self.pace)


def _warn(plan: Plan, args: argparse.Namespace, err: TextIO) -> timedelta:
    """Say up front what the simulated scrape interval cannot judge; return that interval."""
    scrape = config_of(args).scrape_interval
    for warning in plan_warnings(plan, scrape):
        print(f"warning: {warning}", file=err)
    return scrape


def cmd_simulate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    plan = plan_file([args.plan], err, "simulate")
    if plan is None:
        return exitcodes.USAGE
    scrape = _warn(plan, args, err)
    scenario = SCENARIOS.get(args.scenario)
    if scenario is None:
        print(
            f"error: unknown scenario {args.scenario!r}; choose one of {', '.join(SCENARIOS)}",
            file=err,
        )
        return exitcodes.USAGE
    printer = _Printer(out)
    print(f"simulating {plan.key} with scenario {scenario.name}: {scenario.description}", file=out)
    result = simulate(
        plan,
        scenario,
        listener=printer,
        limit=args.max_time,
        tick=args.tick,
        scrape_interval=scrape,
    )
    print(f"outcome: {result.summary} (exit {result.exit_code})", file=out)
    return result.exit_code


def cmd_demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.plan is None and not DEMO_PLAN.exists():
        plan: Plan | None = demo_plan()
    else:
        plan = plan_file([str(args.plan or DEMO_PLAN)], err, "demo")
    if plan is None:
        return exitcodes.USAGE
    scrape = _warn(plan, args, err)
    printer = _Printer(out, pace=0.0 if args.fast else args.pace)
    return demo(plan, printer, out, scrape_interval=scrape)


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("simulate", help="run a plan against a simulated release and mesh")
    p.add_argument("plan", metavar="PLAN", help="plan file (one plan)")
    p.add_argument("--scenario", required=True, help=", ".join(SCENARIOS))
    p.add_argument(
        "--max-time",
        type=duration_arg,
        default=timedelta(hours=2),
        help="simulated time limit (exit 3 when reached)",
    )
    p.add_argument(
        "--tick",
        type=duration_arg,
        default=timedelta(seconds=5),
        help="simulated time between controller ticks",
    )
    add_common(p)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("demo", help="a good and a bad release on the simulator, no cluster")
    p.add_argument("--plan", default=None, help="plan file (default: config/plans/reviews.yaml)")
    p.add_argument("--fast", action="store_true", help="no pacing between lines")
    p.add_argument("--pace", type=float, default=0.12, help="seconds between lines")
    add_common(p)
    p.set_defaults(func=cmd_demo)
