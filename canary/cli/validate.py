"""``canary validate [PLAN...]``: plan files or directories (default: the ``--plans``
directory) checked in full, every problem with its file, field path, bad value and fix; and
warnings about settings no scrape interval can judge. Exit 0 valid, 2 problems or no plans."""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any, TextIO

from canary.cli.options import add_common, config_of
from canary.core import exitcodes
from canary.core.durations import format_duration
from canary.core.errors import PlanError
from canary.core.plan import Plan
from canary.plans.files import load_plan_files


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


def cmd_validate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    paths = args.plans or [config_of(args).plans]
    try:
        plans = load_plan_files(paths)
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
        print(f"error: no plans found in {', '.join(paths)}", file=err)
        return exitcodes.USAGE
    for plan in plans:
        steps = " → ".join(str(s.weight) for s in plan.steps)
        print(f"ok  {plan.key:<30} {plan.source}  steps {steps}", file=out)
        for warning in plan_warnings(plan, config_of(args).scrape_interval):
            print(f"warning: {warning}", file=err)
    print(f"{len(plans)} plan(s) valid", file=out)
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("validate", help="validate plan files; exit 0, or 2 listing every problem")
    p.add_argument(
        "plans",
        nargs="*",
        metavar="PLAN",
        help="plan file or directory (default: the --plans directory)",
    )
    add_common(p)
    p.set_defaults(func=cmd_validate)
