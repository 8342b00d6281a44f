"""``canary ...``: the command line (DESIGN §5).

Exit codes are API (CI scripts branch on them): see :mod:`canary.core.exitcodes` and DESIGN §5.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from canary import __version__
from canary.adapters.prometheus import PrometheusConfig, PrometheusSource
from canary.cli import control
from canary.cli.timeline import add_timeline_parser
from canary.config.load import load_config
from canary.config.settings import add_common_flags
from canary.core import exitcodes
from canary.core.analysis import CheckResult, evaluate
from canary.core.durations import format_duration
from canary.core.errors import ConfigError, PlanError
from canary.core.model import MetricsSample, Verdict, Weights
from canary.core.plan import MetricType, Plan
from canary.core.ports import CheckRequest
from canary.core.queries import ISTIO_LATENCY_BUCKETS, on_bucket_boundary, render_key, requests_key
from canary.core.render import format_line
from canary.plans.files import load_plan_files
from canary.shell.emitter import configure_logging
from canary.sim.run import SCENARIOS, demo, simulate
from canary.sim.world import demo_plan

#: The bookinfo example plan of a checkout; an installed package falls back to the same plan
#: built in code (canary.sim.world.demo_plan).
DEMO_PLAN = Path(__file__).resolve().parents[2] / "config" / "plans" / "reviews.yaml"


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


# -- check ------------------------------------------------------------------------------------


def check_exit_code(sample: MetricsSample, result: CheckResult) -> int:
    """DESIGN §5 exit codes of `check`: 0 pass · 1 fail · 2 config · 3 inconclusive · 4 down."""
    if sample.error:
        return exitcodes.CHECK_UNREACHABLE
    if any(m.misconfigured for m in sample.metrics):
        return exitcodes.USAGE
    return {
        Verdict.PASS: exitcodes.CHECK_PASS,
        Verdict.FAIL: exitcodes.CHECK_FAIL,
        Verdict.ERROR: exitcodes.CHECK_UNREACHABLE,
        Verdict.INCONCLUSIVE: exitcodes.CHECK_INCONCLUSIVE,
    }[result.verdict]


def check_warnings(plan: Plan) -> list[str]:
    out = []
    for m in plan.analysis.metrics:
        if m.type is not MetricType.LATENCY:
            continue
        for name, bound in (("max", m.max), ("min", m.min)):
            if bound is not None and not on_bucket_boundary(bound):
                out.append(
                    f"{m.name}.{name} {bound:g} ms is not one of Istio's histogram bucket "
                    "boundaries: the quantile is interpolated inside a bucket, so values near "
                    "the bound are estimates (boundaries near it: "
                    f"{_neighbours(bound)})"
                )
    return out


def _neighbours(bound: float) -> str:
    below = [b for b in ISTIO_LATENCY_BUCKETS if b < bound]
    above = [b for b in ISTIO_LATENCY_BUCKETS if b > bound]
    return ", ".join(f"{b:g}" for b in ([below[-1]] if below else []) + above[:1])


def _print_check(plan: Plan, sample: MetricsSample, result: CheckResult, out: TextIO) -> None:
    window = format_duration(sample.window)
    print(f"{plan.key}: {result.verdict.value} — {result.reason}", file=out)
    print(
        f"window {window}; requests canary {_fmt(sample.canary_requests)}, stable "
        f"{_fmt(sample.stable_requests)} (minRequests {plan.analysis.min_requests})",
        file=out,
    )
    key = requests_key(plan.analysis.metrics, sample.window)
    print(f"  requests: {render_key(key, [(plan.namespace, plan.workloads.canary)])}", file=out)
    if not result.metrics:
        return
    rows = [("METRIC", "CANARY", "STABLE", "BOUNDS", "VERDICT")]
    for m in result.metrics:
        bounds = ", ".join(f"{k} {v:g}" for k, v in m.bounds.items())
        stable = _fmt(m.stable_value) if m.stable_query else "-"
        rows.append((m.name, _fmt(m.value), stable, bounds, m.verdict.value))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip(), file=out)
    for m in result.metrics:
        print(f"\n{m.name}: {m.reason}", file=out)
        print(f"  canary: {m.query}", file=out)
        if m.stable_query:
            print(f"  stable: {m.stable_query}", file=out)


def _fmt(value: float | None) -> str:
    return "no data" if value is None else f"{value:.6g}"


def cmd_check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    url = args.prometheus_url
    if not url:
        print(
            "error: no Prometheus URL: pass --prometheus-url or set CANARY_PROMETHEUS_URL", file=err
        )
        return exitcodes.USAGE
    if "/" in args.plan and not Path(args.plan).exists() and args.plan.count("/") == 1:
        print(
            f"error: {args.plan} is not a file; checking a plan the controller serves "
            "(NAMESPACE/NAME) needs the cluster adapters, not built yet: pass the plan file",
            file=err,
        )
        return exitcodes.USAGE
    plan = _single_plan([args.plan], err, what="check")
    if plan is None:
        return exitcodes.USAGE
    for warning in check_warnings(plan):
        print(f"warning: {warning}", file=err)
    scrape = args.scrape_interval.total_seconds()
    if scrape <= 0:
        print("error: --scrape-interval must be positive", file=err)
        return exitcodes.USAGE
    window = timedelta(seconds=(plan.analysis.window.total_seconds() // scrape) * scrape)
    if window < 2 * args.scrape_interval:
        print(
            f"error: spec.analysis.window {format_duration(plan.analysis.window)} holds fewer "
            f"than two scrapes of {format_duration(args.scrape_interval)}: no check can judge "
            "it (raise the window)",
            file=err,
        )
        return exitcodes.USAGE
    request = CheckRequest.for_plan(plan, "check", 0, window)
    source = PrometheusSource(
        PrometheusConfig(
            url=url,
            timeout=args.timeout,
            retries=args.retries,
            bearer_token_file=args.prometheus_bearer_token_file,
            username=args.prometheus_username,
            password_file=args.prometheus_password_file,
            ca_file=args.prometheus_ca_file,
        )
    )
    print(
        "note: `check` assumes the canary Deployment is available"
        + (
            ""
            if args.canary_weight is not None
            else "; pass --canary-weight to apply the traffic-not-reaching-canary rule"
        ),
        file=err,
    )
    sample = source.sample([request], datetime.now(UTC))[plan.key]
    weights = Weights.canary_at(args.canary_weight) if args.canary_weight is not None else None
    result = evaluate(plan.analysis, sample, canary_available=True, weights=weights)
    code = check_exit_code(sample, result)
    if args.output == "json":
        doc = {"plan": plan.key, "exitCode": code, **result.to_fields()}
        print(json.dumps(doc, indent=2, default=str), file=out)
    else:
        _print_check(plan, sample, result, out)
    if sample.error:
        print(f"error: {sample.error}", file=err)
    return code


# -- simulate / demo --------------------------------------------------------------------------


def _single_plan(paths: Sequence[str], err: TextIO, what: str = "simulate") -> Plan | None:
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
            f"error: {paths[0]} holds {len(plans)} plans ({names}); {what} takes a file with "
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
        self.start: datetime | None = None

    def __call__(self, record: Mapping[str, Any]) -> None:
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


def cmd_run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`canary run`: build the daemon from flags, environment and config file; serve until
    SIGTERM. Exit 2 on a configuration error (every problem listed), else 0 after a clean stop."""
    off = args.log_format == "off"
    if off:
        args.log_format = None  # "off" is the CLI's, not a controller setting
    try:
        config = load_config(args, os.environ, require=["prometheusUrl"])
    except ConfigError as exc:
        print(f"canary run: invalid configuration:\n{exc}", file=err)
        return exitcodes.USAGE
    configure_logging("off" if off else config.log_format, stream=err)
    from canary.shell.daemon import Daemon  # noqa: PLC0415 - the kubernetes client loads only here

    try:
        daemon = Daemon(config)
    except ConfigError as exc:  # e.g. no kubeconfig and not in a cluster
        print(f"canary run: {exc}", file=err)
        return exitcodes.USAGE
    try:
        code = daemon.run()
    except ConfigError as exc:  # found while starting (the port is taken)
        print(f"canary run: {exc}", file=err)
        return exitcodes.USAGE
    if daemon.unfinished:
        # A tick still blocked on a hung server: its thread would hold the interpreter's exit
        # until its timeout. Everything is persisted and the lease is released: leave now.
        out.flush()
        err.flush()
        os._exit(code)
    return code


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
        type=control.duration_arg,
        default=os.environ.get("CANARY_SCRAPE_INTERVAL", "15s"),
        help="Prometheus's scrape interval, for warnings about windows (env "
        "CANARY_SCRAPE_INTERVAL; default 15s)",
    )
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("check", help="run a plan's checks once against a live Prometheus")
    p.add_argument("plan", metavar="PLAN", help="plan file (one plan)")
    p.add_argument(
        "--prometheus-url",
        default=os.environ.get("CANARY_PROMETHEUS_URL", ""),
        help="Prometheus base URL (env CANARY_PROMETHEUS_URL)",
    )
    p.add_argument(
        "--scrape-interval",
        type=control.duration_arg,
        default=os.environ.get("CANARY_SCRAPE_INTERVAL", "15s"),
        help="Prometheus's scrape interval; the window is rounded down to a multiple of it",
    )
    for flag, env, what in (
        ("--prometheus-bearer-token-file", "CANARY_PROMETHEUS_BEARER_TOKEN_FILE", "bearer token"),
        ("--prometheus-username", "CANARY_PROMETHEUS_USERNAME", "basic-auth user"),
        ("--prometheus-password-file", "CANARY_PROMETHEUS_PASSWORD_FILE", "basic-auth password"),
        ("--prometheus-ca-file", "CANARY_PROMETHEUS_CA_FILE", "CA bundle for https"),
    ):
        p.add_argument(
            flag,
            default=os.environ.get(env, ""),
            help=f"{what}{' (a file, never logged)' if 'file' in flag else ''} (env {env})",
        )
    p.add_argument("--timeout", type=control.duration_arg, default="5s", help="per-query timeout")
    p.add_argument("--retries", type=int, default=1, help="retries per query")
    p.add_argument(
        "--canary-weight",
        type=int,
        choices=range(0, 101),
        metavar="0-100",
        default=None,
        help="the canary's current weight, to apply the traffic-not-reaching-canary rule",
    )
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("simulate", help="run a plan against a simulated release and mesh")
    p.add_argument("plan", metavar="PLAN", help="plan file (one plan)")
    p.add_argument("--scenario", required=True, help="good, bad-errors, bad-latency, ...")
    p.add_argument(
        "--max-time",
        type=control.duration_arg,
        default=timedelta(hours=2),
        help="simulated time limit (exit 3 when reached)",
    )
    p.add_argument(
        "--tick",
        type=control.duration_arg,
        default=timedelta(seconds=5),
        help="simulated time between controller ticks",
    )
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser(
        "run",
        help="the controller daemon (in-cluster Deployment)",
        description="Run the controller: serve the plans in --plans, step traffic, judge it in "
        "Prometheus, roll back with helm. Every flag is also CANARY_<FLAG> and a key of "
        "--config; precedence: flag > environment > config file > default.",
    )
    add_common_flags(p, exclude=["--log-format"], daemon=True)
    p.add_argument(  # also accepted after `run` (DESIGN §5 lists it among the common flags)
        "--log-format",
        choices=["json", "console", "off"],
        default=argparse.SUPPRESS,
        help="log output on stderr (env CANARY_LOG_FORMAT, config logFormat)",
    )
    p.set_defaults(func=cmd_run)

    control.add_parsers(sub)
    add_timeline_parser(sub)

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
    if fmt is None and args.command not in ("run",):
        fmt = "off"
    configure_logging(fmt, stream=err)
    func: Callable[[argparse.Namespace, TextIO, TextIO], int] = args.func
    return func(args, out, err)


if __name__ == "__main__":
    sys.exit(main())
