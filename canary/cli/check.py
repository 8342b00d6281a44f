"""``canary check PLAN``: the plan's checks run once against a live Prometheus, with each
metric's query, canary and stable values, request counts, bounds and verdict. Exit 0 all pass ·
1 a check failed · 2 usage or config error · 3 inconclusive · 4 Prometheus unreachable."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from canary.cli.cluster import Cluster, fail, resolve
from canary.cli.options import add_common, config_of, duration_arg
from canary.config.settings import ControllerConfig
from canary.core import exitcodes, render
from canary.core.analysis import CheckResult, evaluate
from canary.core.durations import format_duration
from canary.core.errors import CanaryError, PlanError
from canary.core.model import MetricsSample, Verdict, Weights
from canary.core.plan import MetricType, Plan
from canary.core.ports import CheckRequest
from canary.core.queries import ISTIO_LATENCY_BUCKETS, on_bucket_boundary, render_key, requests_key
from canary.core.render import number
from canary.core.snapshot import plan_from_spec


def check_exit_code(sample: MetricsSample, result: CheckResult) -> int:
    """The exit codes of `check` (docs/design.md §5): 0 pass · 1 fail · 2 config ·
    3 inconclusive · 4 down."""
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
                    f"{m.name}.{name} {number(bound)} ms is not one of Istio's histogram bucket "
                    "boundaries: the quantile is interpolated inside a bucket, so values near "
                    "the bound are estimates (boundaries near it: "
                    f"{_neighbours(bound)})"
                )
    return out


def _neighbours(bound: float) -> str:
    below = [b for b in ISTIO_LATENCY_BUCKETS if b < bound]
    above = [b for b in ISTIO_LATENCY_BUCKETS if b > bound]
    return ", ".join(number(b) for b in ([below[-1]] if below else []) + above[:1])


def _print_check(plan: Plan, sample: MetricsSample, result: CheckResult, out: TextIO) -> None:
    window = format_duration(sample.window)
    print(f"{plan.key}: {result.verdict.value} — {result.reason}", file=out)
    print(
        f"window {window}; requests canary {number(sample.canary_requests)}, stable "
        f"{number(sample.stable_requests)} (minRequests {plan.analysis.min_requests})",
        file=out,
    )
    key = requests_key(plan.analysis.metrics, sample.window)
    print(f"  requests: {render_key(key, [(plan.namespace, plan.workloads.canary)])}", file=out)
    if not result.metrics:
        return
    rows = [("METRIC", "CANARY", "STABLE", "BOUNDS", "VERDICT")]
    for m in result.metrics:
        limits = render.bounds(m.bounds)
        stable = number(m.stable_value) if m.stable_query else "-"
        rows.append((m.name, number(m.value), stable, limits, m.verdict.value))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip(), file=out)
    for m in result.metrics:
        print(f"\n{m.name}: {m.reason}", file=out)
        print(f"  canary: {m.query}", file=out)
        if m.stable_query:
            print(f"  stable: {m.stable_query}", file=out)


def _plan(arg: str, config: ControllerConfig, err: TextIO) -> Plan | None:
    """The plan to check: a plan file; or NAMESPACE/NAME from the --plans directory, else the
    snapshot the controller keeps in the rollout's state on the cluster."""
    try:
        target = resolve(arg, config)
        if target.plan is not None:
            return target.plan
        _, state, _ = Cluster(config).state(target)
    except PlanError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=err)
        return None
    except CanaryError as exc:
        fail(err, exc)
        return None
    if state is None or not state.spec:
        print(
            f"error: plan {target.key} is not in the --plans directory ({config.plans}) and "
            "its VirtualService holds no rollout snapshot of it; pass the plan file",
            file=err,
        )
        return None
    try:
        return plan_from_spec(
            dict(state.spec), target.name, target.namespace, source="canary.dev/state"
        )
    except PlanError as exc:
        print(f"error: the rollout snapshot of {target.key} is not a valid plan: {exc}", file=err)
        return None


def cmd_check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    config = config_of(args)
    plan = _plan(args.plan, config, err)
    if plan is None:
        return exitcodes.USAGE
    for warning in check_warnings(plan):
        print(f"warning: {warning}", file=err)
    scrape_interval = config.scrape_interval
    scrape = scrape_interval.total_seconds()
    window = timedelta(seconds=(plan.analysis.window.total_seconds() // scrape) * scrape)
    if window < 2 * scrape_interval:
        print(
            f"error: spec.analysis.window {format_duration(plan.analysis.window)} holds fewer "
            f"than two scrapes of {format_duration(scrape_interval)}: no check can judge "
            "it (raise the window)",
            file=err,
        )
        return exitcodes.USAGE
    request = CheckRequest.for_plan(plan, "check", 0, window)
    from canary.adapters.prometheus import PrometheusConfig, PrometheusSource  # noqa: PLC0415

    auth = config.prometheus_auth
    source = PrometheusSource(
        PrometheusConfig(
            url=config.prometheus_url,
            timeout=args.timeout,
            retries=args.retries,
            bearer_token_file=auth.bearer_token_file,
            username=auth.username,
            password_file=auth.password_file,
            ca_file=auth.ca_file,
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


def add_parser(sub: Any) -> None:
    p = sub.add_parser("check", help="run a plan's checks once against a live Prometheus")
    p.add_argument("plan", metavar="PLAN", help="plan file (one plan) or NAMESPACE/NAME")
    p.add_argument("--timeout", type=duration_arg, default="5s", help="per-query timeout")
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
    add_common(p)
    p.set_defaults(func=cmd_check, require=["prometheusUrl"])
