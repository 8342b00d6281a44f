"""A fleet at rest: the real ``canary run`` against the Kubernetes API double with N plans.

    python3 bench/bench_scale.py                 # N = 100 and 1000
    python3 bench/bench_scale.py --plans 100,1000,5000 --rest 60

Per N, the controller process (a subprocess, as in production, talking HTTP to the double in
this process) is started on N Idle plans, each with its VirtualService, two Deployments and three
helm release Secrets, spread over 10 namespaces. Reported:

- start-up: process start → every plan's first tick written (``base.recorded`` for all N; on a
  fresh cluster each plan writes its state once, so this is bounded by ``kubeApi.qps``) and
  → the same on a restart (states already there: nothing to write);
- at rest, over ``--rest`` seconds after that: API requests/s by kind (watches and the Lease
  apart from the rest), plan ticks/s and cache hits, the process's CPU (% of one core) and RSS.

What is not here yet (docs/running.md "Scale" says so): Prometheus queries per cycle with 50
active rollouts, check lateness, and rollback latency among N plans. The figures depend on the
double's speed as much as on the controller's: the double is one Python process on the same
two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from canary.adapters.helmstore import encode_release  # noqa: E402
from canary.core import events as ev  # noqa: E402
from canary.plans.files import load_plan_text  # noqa: E402
from canary.sim import chart  # noqa: E402
from tests.support.bookinfo import available  # noqa: E402
from tests.support.daemon import CanaryProcess  # noqa: E402
from tests.support.fakehelm import FakeHelm  # noqa: E402
from tests.support.kubeapi import KubeApiServer  # noqa: E402

NAMESPACES = 10
PLAN = """
apiVersion: canary.dev/v1
kind: RolloutPlan
metadata: {{name: {app}, namespace: {ns}}}
spec:
  release: {app}
  virtualService:
    name: {app}
    route: default
    stable: {{host: {app}, subset: v1}}
    canary: {{host: {app}, subset: v3}}
  workloads: {{stable: {app}-v1, canary: {app}-v3}}
  steps: [10, 50, 100]
"""


def helm_secret(app: str, ns: str, version: int, status: str) -> dict[str, Any]:
    release = {"name": app, "version": version, "namespace": ns,
               "info": {"status": status, "description": "Upgrade complete"}}  # fmt: skip
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "helm.sh/release.v1",
        "metadata": {
            "name": f"sh.helm.release.v1.{app}.v{version}",
            "namespace": ns,
            "labels": {"owner": "helm", "name": app, "version": str(version), "status": status},
        },
        "data": {"release": encode_release(release)},
    }


def seed(kubeapi: KubeApiServer, n: int, plans: Path) -> list[str]:
    keys = []
    for i in range(n):
        ns, app = f"team-{i % NAMESPACES}", f"app-{i}"
        text = PLAN.format(app=app, ns=ns)
        (plans / f"{app}.yaml").write_text(text)
        (plan,) = load_plan_text(text)
        values = chart.values_for_plan(plan, stable_image=chart.STABLE_IMAGE)
        for obj in chart.render(app, ns, values):
            if obj["kind"] == "Deployment":
                kubeapi.put_object(obj)
                kubeapi.edit("apps", "v1", "deployments", ns, obj["metadata"]["name"], available)
            elif obj["kind"] == "VirtualService":
                kubeapi.put_object(obj)
        for version, status in ((1, "superseded"), (2, "superseded"), (3, "deployed")):
            kubeapi.put_object(helm_secret(app, ns, version, status))
        keys.append(plan.key)
    return keys


def proc_stats(pid: int) -> tuple[float, float]:
    """(CPU seconds used so far, RSS in MiB) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss_kb = next(
        int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    return cpu, rss_kb / 1024


def metric(port: int, name: str, labels: str = "") -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith(name + labels + " ") or line.startswith(name + labels + "{}"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def start(
    workdir: Path,
    kubeapi: KubeApiServer,
    plans: Path,
    helm: FakeHelm,
    *,
    name: str,
    n: int,
    fresh: bool,
) -> tuple[CanaryProcess, float]:
    """Start ``canary run``; seconds until every plan has had its first tick (and, on a fresh
    cluster, written its base)."""
    process = CanaryProcess(
        workdir, kube_url=kubeapi.url, prometheus_url="http://127.0.0.1:9",
        plans=plans, helm=helm, name=name, extra=["--lease-retry-period", "2s",
        "--lease-renew-deadline", "10s", "--lease-duration", "15s"],
    )  # fmt: skip
    began = time.monotonic()
    process.start()

    def done(records: list[dict[str, Any]]) -> bool:
        if fresh and sum(1 for r in records if r.get("event") == ev.BASE_RECORDED) < n:
            return False
        try:
            return metric(process.port, "canary_plan_ticks_total") >= n
        except OSError:  # not serving yet
            return False

    process.wait_for(done, limit=1800)
    return process, time.monotonic() - began


def one(n: int, rest: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, KubeApiServer() as kubeapi:
        workdir = Path(tmp)
        plans = workdir / "plans"
        plans.mkdir()
        t = time.monotonic()
        seed(kubeapi, n, plans)
        seeded = time.monotonic() - t
        helm = FakeHelm(workdir / "helm.json")
        daemon, fresh = start(workdir, kubeapi, plans, helm, name="first", n=n, fresh=True)
        daemon.stop()
        daemon, restart = start(workdir, kubeapi, plans, helm, name="second", n=n, fresh=False)
        try:
            time.sleep(2)  # start-up's one-off requests (orphan list, discovery) settle
            mark = len(kubeapi.requests.all())
            cpu0, _ = proc_stats(daemon.pid)
            ticks0 = metric(daemon.port, "canary_plan_ticks_total")
            hits0 = metric(daemon.port, "canary_cache_reads_total", '{result="hit"}')
            time.sleep(rest)
            cpu1, rss = proc_stats(daemon.pid)
            ticks1 = metric(daemon.port, "canary_plan_ticks_total")
            hits1 = metric(daemon.port, "canary_cache_reads_total", '{result="hit"}')
            calls = Counter(
                "watch" if r.verb == "watch" else "lease" if r.resource == "leases" else
                f"{r.verb} {r.resource or 'discovery'}"
                for r in kubeapi.requests.all()[mark:]
            )  # fmt: skip
        finally:
            daemon.stop()
    other = {k: v for k, v in calls.items() if k not in ("watch", "lease")}
    return {
        "plans": n,
        "seed_s": round(seeded, 1),
        "fresh_start_s": round(fresh, 1),
        "restart_s": round(restart, 1),
        "rest_s": rest,
        "watch_req_per_s": round(calls["watch"] / rest, 2),
        "lease_req_per_s": round(calls["lease"] / rest, 2),
        "other_req_per_s": round(sum(other.values()) / rest, 3),
        "other": dict(other),
        "plan_ticks_per_s": round((ticks1 - ticks0) / rest, 1),
        "cache_hits_per_s": round((hits1 - hits0) / rest, 1),
        "cpu_percent": round(100 * (cpu1 - cpu0) / rest, 1),
        "rss_mib": round(rss, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plans", default="100,1000", help="comma-separated N (default 100,1000)")
    parser.add_argument("--rest", type=float, default=40.0, help="seconds measured at rest")
    args = parser.parse_args()
    rows = [one(int(n), args.rest) for n in args.plans.split(",")]
    print(json.dumps(rows, indent=2))
    header = ("N", "fresh start", "restart", "watch/s", "lease/s", "other/s", "ticks/s", "CPU %",
              "RSS MiB")  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print(
            f"| {r['plans']} | {r['fresh_start_s']} s | {r['restart_s']} s | "
            f"{r['watch_req_per_s']} | {r['lease_req_per_s']} | {r['other_req_per_s']} | "
            f"{r['plan_ticks_per_s']} | {r['cpu_percent']} | {r['rss_mib']} |"
        )


if __name__ == "__main__":
    main()
