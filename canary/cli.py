"""``canary ...``: the command line (DESIGN §5).

Exit codes are API (CI scripts branch on them): see :mod:`canary.exitcodes` and DESIGN §5.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from canary import __version__, exitcodes
from canary.errors import PlanError
from canary.events import configure_logging
from canary.plan import Plan, format_duration, load_plan_files, parse_duration
from canary.sim.run import SCENARIOS, demo, simulate
from canary.sim.world import demo_plan
from canary.timeline import format_line

#: The bookinfo example plan of a checkout; an installed package falls back to the same plan
#: built in code (canary.sim.world.demo_plan).
DEMO_PLAN = Path(__file__).resolve().parent.parent / "config" / "plans" / "reviews.yaml"


def plan_warnings(plan: Plan, scrape_interval: timedelta) -> list[str]:
    """Valid but unwise: settings that can never give a verdict with this scrape interval."""
    a = plan.analysis
    out = []
    if a.window < 2 * scrape_interval:
        out.append(
            f"{plan.source}: {plan.key}: spec.analysis.window {format_duration(a.window)} is "
            f"shorter than two scrape intervals ({format_duration(2 * scrape_interval)}): every "
            "check will be INCONCLUSIVE (raise window, or pass the real --scrape-interval)"
        )
    if a.settle < scrape_interval:
        out.append(
            f"{plan.source}: {plan.key}: spec.analysis.settle {format_duration(a.settle)} is "
            f"shorter than one scrape interval ({format_duration(scrape_interval)}): the first "
            "check may see traffic from before the weight change"
        )
    return out


# -- validate ---------------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        plans = load_plan_files(args.plans)
    except PlanError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=err)
        files = len({p.source for p in exc.problems})
        print(f"{len(exc.problems)} problem(s) in {files} file(s); nothing was loaded", file=err)
        return exitcodes.USAGE
    except OSError as exc:
        print(f"error: {exc}", file=err)
        return exitcodes.USAGE
    if not plans:
        print(f"error: no plans found in {', '.join(args.plans)}", file=err)
        return exitcodes.USAGE
    for plan in plans:
        steps = " → ".join(str(s.weight) for s in plan.steps)
        print(f"ok  {plan.key:<30} {plan.source}  steps {steps}", file=out)
        for warning in plan_warnings(plan, args.scrape_interval):
            print(f"warning: {warning}", file=err)
    print(f"{len(plans)} plan(s) valid", file=out)
    return 0


# -- simulate / demo --------------------------------------------------------------------------


def _single_plan(paths: Sequence[str], err: TextIO) -> Plan | None:
    try:
        plans = load_plan_files(paths)
    except PlanError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=err)
        return None
    except OSError as exc:
        print(f"error: {exc}", file=err)
        return None
    if len(plans) != 1:
        names = ", ".join(p.key for p in plans) or "none"
        print(
            f"error: {paths[0]} holds {len(plans)} plans ({names}); simulate takes a file with "
            "exactly one",
            file=err,
        )
        return None
    return plans[0]


class _Printer:
    """Prints events as timeline lines, optionally paced so the demo reads like a live run."""

    def __init__(self, out: TextIO, pace: float = 0.0) -> None:
        self.out = out
        self.pace = pace
        self.start: Any = None
        self.names: list[str] = []

    def __call__(self, record: Mapping[str, Any]) -> None:
        self.names.append(str(record.get("event")))
        if self.start is None and isinstance(record.get("at"), str):
            self.start = datetime.fromisoformat(str(record["at"]).replace("Z", "+00:00"))
        print(format_line(record, self.start), file=self.out, flush=True)
        if self.pace:
            time.sleep(self.pace)


def cmd_simulate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    plan = _single_plan([args.plan], err)
    if plan is None:
        return exitcodes.USAGE
    scenario = SCENARIOS.get(args.scenario)
    if scenario is None:
        print(
            f"error: unknown scenario {args.scenario!r}; choose one of {', '.join(SCENARIOS)}",
            file=err,
        )
        return exitcodes.USAGE
    printer = _Printer(out)
    print(f"simulating {plan.key} with scenario {scenario.name}: {scenario.description}", file=out)
    result = simulate(plan, scenario, listener=printer, limit=args.max_time, tick=args.tick)
    print(f"outcome: {result.summary} (exit {result.exit_code})", file=out)
    return result.exit_code


def cmd_demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.plan is None and not DEMO_PLAN.exists():
        plan: Plan | None = demo_plan()
    else:
        plan = _single_plan([str(args.plan or DEMO_PLAN)], err)
    if plan is None:
        return exitcodes.USAGE
    printer = _Printer(out, pace=0.0 if args.fast else args.pace)
    return demo(plan, printer, out)


# -- parser -----------------------------------------------------------------------------------


def _duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="canary",
        description="Progressive delivery for Helm releases on Istio.",
    )
    parser.add_argument("--version", action="version", version=f"canary {__version__}")
    parser.add_argument(
        "--log-format",
        choices=["json", "console", "off"],
        default=None,
        help="structured log output on stderr (default: console on a TTY, else json; "
        "simulate and demo default to off)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="validate plan files; exit 0, or 2 listing every problem")
    p.add_argument("plans", nargs="+", metavar="PLAN", help="plan file or directory")
    p.add_argument(
        "--scrape-interval",
        type=_duration,
        default=os.environ.get("CANARY_SCRAPE_INTERVAL", "15s"),
        help="Prometheus's scrape interval, for warnings about windows (env "
        "CANARY_SCRAPE_INTERVAL; default 15s)",
    )
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("simulate", help="run a plan against a simulated release and mesh")
    p.add_argument("plan", metavar="PLAN", help="plan file (one plan)")
    p.add_argument("--scenario", required=True, help="good, bad-errors, bad-latency, ...")
    p.add_argument(
        "--max-time",
        type=_duration,
        default=timedelta(hours=2),
        help="simulated time limit (exit 3 when reached)",
    )
    p.add_argument(
        "--tick",
        type=_duration,
        default=timedelta(seconds=5),
        help="simulated time between controller ticks",
    )
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("demo", help="a good and a bad release on the simulator, no cluster")
    p.add_argument("--plan", default=None, help="plan file (default: config/plans/reviews.yaml)")
    p.add_argument("--fast", action="store_true", help="no pacing between lines")
    p.add_argument("--pace", type=float, default=0.12, help="seconds between lines")
    p.set_defaults(func=cmd_demo)
    return parser


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, as DESIGN §5 wants
        return int(exc.code or 0)
    fmt = args.log_format
    if fmt is None and args.command in ("simulate", "demo", "validate"):
        fmt = "off"
    configure_logging(fmt, stream=err)
    func: Callable[[argparse.Namespace, TextIO, TextIO], int] = args.func
    return func(args, out, err)


if __name__ == "__main__":
    sys.exit(main())
