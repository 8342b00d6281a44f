"""`canary status`, `wait` and the manual commands against the Kubernetes API double.

The controller runs in this process over the real Kubernetes adapters (IstioRouter,
KubeWorkloads, SecretHistory + the fake helm); its metrics are a stand-in that passes or fails
every check (the Prometheus path has its own end-to-end tests). The commands run as the CLI
runs them, through the real `kubernetes` client; their `sleep` between polls ticks the
controller and moves its clock, so a whole rollout takes no real time.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from canary.adapters.helm import HelmReleases
from canary.adapters.helmstore import SecretHistory
from canary.adapters.istio import IstioRouter
from canary.adapters.kube import KubeEventSink, KubeWorkloads
from canary.cli import build_parser
from canary.cli.commands import cmd_command
from canary.cli.wait import cmd_wait
from canary.core import exitcodes
from canary.core.model import Phase
from canary.core.plan import Plan
from canary.plans.files import load_plan_text
from canary.shell.controller import Controller, Ports
from canary.shell.emitter import Emitter
from tests.support.bookinfo import CANARY, Bookinfo, fast_plan
from tests.support.daemon import write_kubeconfig
from tests.support.kubeapi import KubeApiServer
from tests.support.prometheus import PrometheusServer
from tests.support.stubs import Clock, Metrics

pytest.importorskip("helm_python")
_namespaces = itertools.count(1)


class Rig:
    def __init__(self, kubeapi: KubeApiServer, tmp_path: Path) -> None:
        self.namespace = f"ctl-{next(_namespaces)}"
        self.app = Bookinfo(kubeapi, tmp_path / "helm.json", self.namespace)
        self.plan_file = tmp_path / "reviews.yaml"
        self.plan_file.write_text(fast_plan(self.namespace))
        (self.plan,) = load_plan_text(self.plan_file.read_text())
        self.kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kubeapi.url)
        self.kubeapi = kubeapi
        self.metrics = Metrics()
        self.clock = Clock()
        self.controller = self.make_controller(self.plan)
        self.acting = True

    def make_controller(self, plan: Plan) -> Controller:
        api = self.kubeapi.client()
        helm = HelmReleases(str(self.app.helm.binary), env=self.app.helm.env)
        return Controller(
            ports=Ports(
                router=IstioRouter(api),
                workloads=KubeWorkloads(api),
                metrics=self.metrics,
                releases=SecretHistory(api, helm),
                clock=self.clock,
            ),
            emitter=Emitter(KubeEventSink(api)),
            plans={plan.key: plan},
            scrape_interval=timedelta(seconds=1),
        )

    def tick(self, seconds: float = 1.0) -> None:
        """What passes between two polls of a command: the controller's next tick."""
        self.app.deployments._reconcile()  # the Deployment controller, synchronously
        self.clock.now_ += timedelta(seconds=seconds)
        if self.acting:
            self.controller.tick()

    def run(self, argv: list[str], **hooks: Any) -> tuple[int, str, str]:
        args = build_parser().parse_args([*argv, "--kubeconfig", str(self.kubeconfig)])
        out, err = io.StringIO(), io.StringIO()
        func = args.func
        if func in (cmd_wait, cmd_command):
            code = func(args, out, err, sleep=lambda _: self.tick(), **hooks)
        else:
            code = func(args, out, err)
        return code, out.getvalue(), err.getvalue()

    @property
    def key(self) -> str:
        return f"{self.namespace}/reviews"

    def until(self, phase: Phase, limit: int = 200) -> None:
        for _ in range(limit):
            state = self.app.state()
            if state is not None and state.phase is phase:
                return
            self.tick()
        raise AssertionError(f"never {phase}: {self.app.state()}")


@pytest.fixture
def rig(kubeapi: KubeApiServer, tmp_path: Path) -> Iterator[Rig]:
    r = Rig(kubeapi, tmp_path)
    r.tick()  # the controller records the base while Idle
    try:
        yield r
    finally:
        r.app.close()


# --- wait ---------------------------------------------------------------------------------


def test_wait_started_right_after_the_upgrade_exits_0_on_success(rig: Rig) -> None:
    rig.app.upgrade("1.20.2")  # CI's helm upgrade; the controller has not seen it yet
    code, out, _ = rig.run(["wait", str(rig.plan_file), "--timeout", "5m"])
    assert code == exitcodes.SUCCEEDED, out
    assert "succeeded (exit 0)" in out
    assert "Progressing step 0 90/10" in out and "Succeeded step 2 0/100" in out


def test_wait_by_namespace_and_name_binds_to_the_next_rollout(rig: Rig) -> None:
    rig.metrics.error_rate = 0.3
    rig.app.upgrade("1.20.2")
    code, out, _ = rig.run(["wait", rig.key, "--timeout", "5m"])
    assert code == exitcodes.ROLLED_BACK, out
    assert "rolled back (exit 1)" in out


def test_wait_never_reports_an_older_rollouts_outcome(rig: Rig) -> None:
    """A rolled-back canary, then a new one: wait answers for the new one only."""
    rig.metrics.error_rate = 0.3
    rig.app.upgrade("1.20.2")
    rig.until(Phase.ROLLED_BACK)
    rig.metrics.error_rate = 0.0
    rig.app.upgrade("1.20.3")
    code, out, _ = rig.run(["wait", str(rig.plan_file), "--timeout", "5m"])
    assert code == exitcodes.SUCCEEDED, out


def test_wait_whose_canary_is_superseded_exits_5(rig: Rig) -> None:
    rig.app.upgrade("1.20.2")
    rig.until(Phase.PROGRESSING)
    upgraded = [False]

    def sleep_then_upgrade(_: float) -> None:
        if not upgraded[0]:
            rig.app.upgrade("1.20.3")  # a newer release lands while CI waits for the first
            upgraded[0] = True
        rig.tick()

    args = build_parser().parse_args(
        ["wait", str(rig.plan_file), "--timeout", "5m", "--kubeconfig", str(rig.kubeconfig)]
    )
    out, err = io.StringIO(), io.StringIO()
    code = cmd_wait(args, out, err, sleep=sleep_then_upgrade)
    assert code == exitcodes.SUPERSEDED, out.getvalue()
    assert "superseded by a newer canary" in out.getvalue()


def test_wait_times_out_with_exit_3_when_nothing_happens(rig: Rig) -> None:
    rig.app.upgrade("1.20.2")
    rig.acting = False  # no controller
    ticks = itertools.count()
    code, _, err = rig.run(["wait", rig.key, "--timeout", "10s"], clock=lambda: float(next(ticks)))
    assert code == exitcodes.TIMEOUT
    assert "no verdict" in err and "within 10s" in err


def test_wait_by_revision_and_a_paused_rollout_exits_6(rig: Rig) -> None:
    revision = rig.app.upgrade("1.20.2")
    rig.until(Phase.PROGRESSING)
    code, out, _ = rig.run(["pause", rig.key])
    assert code == 0, out
    code, out, _ = rig.run(["wait", rig.key, "--revision", str(revision), "--timeout", "1m"])
    assert code == exitcodes.PAUSED
    assert "paused: a human decides (exit 6)" in out


def test_wait_for_a_rollback_that_failed_exits_4(rig: Rig) -> None:
    rig.metrics.error_rate = 0.3
    rig.app.helm.fail_next(3)  # rollback.retries
    rig.app.upgrade("1.20.2")
    code, out, _ = rig.run(["wait", rig.key, "--timeout", "10m"])
    assert code == exitcodes.ROLLBACK_FAILED, out
    assert "rollback failed: a human is needed (exit 4)" in out
    assert len(rig.app.rollbacks()) == 3
    assert rig.app.weights() == (100, 0)


def test_status_of_a_failed_rollback_shows_its_attempts_and_error(rig: Rig) -> None:
    """What the on-call engineer reads first: which revision, how many tries, helm's stderr."""
    rig.metrics.error_rate = 0.3
    rig.app.helm.fail_next(3)
    rig.app.upgrade("1.20.2")
    rig.until(Phase.ROLLBACK_FAILED)
    code, out, _ = rig.run(["status", rig.key])
    assert code == 0
    (line,) = [x for x in out.splitlines() if x.startswith("rollback: ")]
    assert line.startswith("rollback: to revision 1, attempt 3 of 3 (3 failed); last error: ")
    code, out, _ = rig.run(["status", rig.key, "-o", "json"])
    doc = json.loads(out)
    assert doc["rollback"]["toRevision"] == doc["baseRevision"] == 1
    assert (doc["rollback"]["attempts"], doc["rollback"]["failures"]) == (3, 3)
    assert doc["rollback"]["error"] and doc["rollback"]["error"] in line


def test_wait_with_a_bad_plan_argument_is_a_usage_error(rig: Rig) -> None:
    code, _, err = rig.run(["wait", "not a plan", "--timeout", "1m"])
    assert code == exitcodes.USAGE
    assert "neither a plan file nor NAMESPACE/NAME" in err


def test_wait_started_before_the_upgrade_binds_to_the_next_rollout(rig: Rig) -> None:
    """The canary equals stable when wait starts: the verdict is the next rollout's, not the
    last one's and not "superseded"."""
    upgraded = [False]

    def upgrade_after_first_poll(_: float) -> None:
        if not upgraded[0]:
            rig.app.upgrade("1.20.2")
            upgraded[0] = True
        rig.tick()

    args = build_parser().parse_args(
        ["wait", str(rig.plan_file), "--timeout", "5m", "--kubeconfig", str(rig.kubeconfig)]
    )
    out = io.StringIO()
    code = cmd_wait(args, out, io.StringIO(), sleep=upgrade_after_first_poll)
    assert code == exitcodes.SUCCEEDED, out.getvalue()
    assert "waiting for" in out.getvalue() and "the next rollout" in out.getvalue()


def test_wait_for_a_revision_already_superseded_exits_5(rig: Rig) -> None:
    first = rig.app.upgrade("1.20.2")
    rig.until(Phase.PROGRESSING)
    rig.app.upgrade("1.20.3")
    rig.tick()
    code, out, _ = rig.run(["wait", rig.key, "--revision", str(first), "--timeout", "1m"])
    assert code == exitcodes.SUPERSEDED, out


def test_wait_rides_out_api_errors_and_a_stripped_state(rig: Rig) -> None:
    rig.app.upgrade("1.20.2")
    rig.kubeapi.fail(503, times=2, resource="virtualservices", method="GET")
    stripped = [False]

    def strip_once(_: float) -> None:
        state = rig.app.state()
        if not stripped[0] and state is not None and state.phase is Phase.PROGRESSING:
            rig.kubeapi.edit(
                "networking.istio.io", "v1", "virtualservices", rig.namespace, "reviews",
                lambda vs: vs["metadata"]["annotations"].pop("canary.dev/state"),
            )  # fmt: skip
            stripped[0] = True
            return  # one poll sees no state at all
        rig.tick()

    args = build_parser().parse_args(
        ["wait", rig.key, "--timeout", "10m", "--kubeconfig", str(rig.kubeconfig)]
    )
    out, err = io.StringIO(), io.StringIO()
    code = cmd_wait(args, out, err, sleep=strip_once)
    assert stripped[0]
    assert "retrying" in err.getvalue() and "no canary.dev/state" in err.getvalue()
    # the controller restarts the analysis after state.lost; wait reports that rollout's end
    assert code in (exitcodes.SUCCEEDED, exitcodes.SUPERSEDED), out.getvalue()


def test_a_canary_redeployed_after_its_rollout_ended_is_a_new_rollout_for_wait(rig: Rig) -> None:
    rig.metrics.error_rate = 0.3
    rig.app.helm.fail_next(3)
    rig.app.upgrade("1.20.2")
    rig.until(Phase.ROLLBACK_FAILED)
    fixed = rig.app.helm.run("rollback", "reviews", "1", "--namespace", rig.namespace)
    assert fixed.returncode == 0, fixed.stderr  # a human fixes the release by hand
    rig.until(Phase.IDLE)
    rig.metrics.error_rate = 0.0
    rig.app.upgrade("1.20.2")  # the same canary again
    code, out, _ = rig.run(["wait", str(rig.plan_file), "--timeout", "5m"])
    assert code == exitcodes.SUCCEEDED, out  # not the old RollbackFailed (4)
    assert rig.app.state().rollout_id.endswith("-2")  # type: ignore[union-attr]


def _idle_after(rig: Rig, outcome: str) -> int:
    """A plan back at Idle whose state still names the rollout that ended: the promoted
    revision after a success, the hand-fixed one after a failed rollback."""
    if outcome == "promoted":
        revision = rig.app.upgrade("1.20.2")
        rig.until(Phase.SUCCEEDED)
        rig.app.promote("1.20.2")
    else:
        rig.metrics.error_rate = 0.3
        rig.app.helm.fail_next(3)
        revision = rig.app.upgrade("1.20.2")
        rig.until(Phase.ROLLBACK_FAILED)
        fixed = rig.app.helm.run("rollback", "reviews", "1", "--namespace", rig.namespace)
        assert fixed.returncode == 0, fixed.stderr
    rig.until(Phase.IDLE)
    state = rig.app.state()
    assert state is not None and state.last is not None and state.last.rollout_id
    return revision


@pytest.mark.parametrize("outcome", ["promoted", "rollback-failed"])
@pytest.mark.parametrize("form", ["plan-file", "namespace/name", "revision"])
def test_wait_on_an_idle_plan_never_reports_the_previous_rollouts_outcome(
    rig: Rig, outcome: str, form: str
) -> None:
    """Idle, with the last rollout's outcome in its state: wait answers for the next rollout
    only, and with none it times out (3), never the old 0 or 4."""
    revision = _idle_after(rig, outcome)
    rig.metrics.error_rate = 0.0
    target = {"plan-file": [str(rig.plan_file)], "namespace/name": [rig.key]}.get(
        form, [str(rig.plan_file), "--revision", str(revision)]
    )
    code, out, err = rig.run(["wait", *target, "--timeout", "1m"], clock=rig.clock.seconds)
    assert code == exitcodes.TIMEOUT, out + err
    assert "no verdict" in err
    if form == "revision":
        return  # that revision's rollout is over: there is no next one to bind to
    rig.app.upgrade("1.20.3")  # the next rollout: wait answers for it
    code, out, _ = rig.run(["wait", *target, "--timeout", "5m"])
    assert code == exitcodes.SUCCEEDED, out


# --- commands -----------------------------------------------------------------------------


def test_pause_resume_promote_full_abort_and_retry(rig: Rig) -> None:
    rig.app.upgrade("1.20.2")
    rig.until(Phase.PROGRESSING)
    rid = rig.app.state().rollout_id  # type: ignore[union-attr]
    code, out, _ = rig.run(["pause", rig.key])
    assert code == 0 and "Paused" in out
    code, out, _ = rig.run(["resume", rig.key])
    assert code == 0 and "Progressing" in out
    code, out, _ = rig.run(["promote", rig.key])
    assert code == 0 and "step 1" in out
    code, out, err = rig.run(["abort", rig.key])
    assert code == 0, err
    rig.until(Phase.ROLLED_BACK)
    assert len(rig.app.rollbacks()) == 1
    rig.app.upgrade("1.20.2")  # the same canary deployed again: held until someone retries
    for _ in range(3):
        rig.tick()
    assert rig.app.state().phase is Phase.ROLLED_BACK  # type: ignore[union-attr]
    code, out, err = rig.run(["retry", rig.key])
    assert code == 0, err
    state = rig.app.state()
    assert state is not None and state.rollout_id != rid and state.rollout_id.endswith("-2")
    rig.until(Phase.PROGRESSING)
    code, out, err = rig.run(["promote", rig.key, "--full"])
    assert code == 0, err
    assert rig.app.state().phase is Phase.SUCCEEDED  # type: ignore[union-attr]
    command = (rig.app.virtual_service()["metadata"].get("annotations") or {}).get(
        "canary.dev/command"
    )
    assert command is None  # consumed with its effect


def test_abort_of_a_succeeded_canary_rolls_it_back(rig: Rig) -> None:
    """CI is gone and 100 % of traffic is on the canary: on-call can still take it back."""
    rig.app.upgrade("1.20.2")
    rig.until(Phase.SUCCEEDED)
    code, _, err = rig.run(["abort", rig.key])
    assert code == 0, err
    rig.until(Phase.ROLLED_BACK)
    assert rig.app.weights() == (100, 0) and len(rig.app.rollbacks()) == 1


def test_status_across_namespaces_shows_what_it_may_read(rig: Rig) -> None:
    rig.kubeapi.deny("list", "networking.istio.io", "virtualservices", namespace="forbidden")
    code, out, err = rig.run(
        ["status", "-o", "json", "--namespace", "forbidden", "--namespace", rig.namespace]
    )
    assert code == 0
    assert [r["plan"] for r in json.loads(out)] == [rig.key]
    assert "forbidden" in err and "list" in err


def test_a_command_the_phase_does_not_allow_is_refused_before_writing(rig: Rig) -> None:
    code, _, err = rig.run(["resume", rig.key])
    assert code == exitcodes.USAGE
    assert "is Idle; resume applies to Paused" in err
    assert not rig.kubeapi.requests.writes(resource="virtualservices", method="PATCH") or all(
        "canary.dev~1command" not in json.dumps(r.body)
        for r in rig.kubeapi.requests.writes(resource="virtualservices")
    )


def test_a_controller_that_never_acts_gives_a_clear_timeout(rig: Rig) -> None:
    rig.app.upgrade("1.20.2")
    rig.until(Phase.PROGRESSING)
    rig.acting = False
    ticks = itertools.count()
    code, _, err = rig.run(["pause", rig.key, "--timeout", "10s"], clock=lambda: float(next(ticks)))
    assert code == exitcodes.TIMEOUT
    assert "did not act on pause" in err and "is it running and leading?" in err


def test_rbac_denied_says_which_verb_on_which_object(rig: Rig) -> None:
    rig.app.upgrade("1.20.2")
    rig.until(Phase.PROGRESSING)
    rig.kubeapi.deny("patch", "networking.istio.io", "virtualservices", namespace=rig.namespace)
    code, _, err = rig.run(["abort", rig.key])
    assert code == exitcodes.USAGE
    assert "permission denied" in err and "patch" in err and "virtualservices" in err


# --- status -------------------------------------------------------------------------------


def test_status_of_one_plan_and_of_all(rig: Rig) -> None:
    rig.app.upgrade("1.20.2")
    rig.until(Phase.PROGRESSING)
    for _ in range(3):
        rig.tick()  # a check
    code, out, _ = rig.run(["status", rig.key])
    assert code == 0
    header, row = out.splitlines()[:2]
    assert header.split()[:4] == ["PLAN", "PHASE", "STEP", "WEIGHTS"]
    assert row.split()[:2] == [rig.key, "Progressing"]
    step = rig.app.state().step  # type: ignore[union-attr]
    assert row.split()[2:4] == [str(step), ["90/10", "50/50", "0/100"][step]]
    assert "last event: " in out  # from the Kubernetes Events on the VirtualService
    assert "last check: check.passed: " in out
    code, out, _ = rig.run(["status", "-o", "json", "--namespace", rig.namespace])
    rows = json.loads(out)
    assert [r["plan"] for r in rows] == [rig.key]
    assert rows[0]["revision"] == 2 and rows[0]["phase"] == "Progressing"
    assert rows[0]["rollback"] is None  # a rollout that never rolled back shows none
    assert "rollback: " not in rig.run(["status", rig.key])[1]
    code, out, _ = rig.run(["status", str(rig.plan_file), "-o", "yaml"])
    doc = yaml.safe_load(out)
    assert doc["phase"] == "Progressing" and doc["baseRevision"] == 1


def test_status_of_an_unknown_plan_names_what_it_looked_for(rig: Rig) -> None:
    code, _, err = rig.run(["status", f"{rig.namespace}/ratings"])
    assert code == exitcodes.USAGE
    assert f"plan {rig.namespace}/ratings" in err


def _args(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def test_every_command_has_its_parser() -> None:
    for name in ("status", "wait", "abort", "pause", "resume", "promote", "retry"):
        assert _args([name, "bookinfo/reviews"]).func is not None


# --- one configuration path for every command --------------------------------------------------


def test_status_takes_the_settings_every_command_takes(rig: Rig) -> None:
    """One set of CI flags for all commands: settings status has no use for are accepted."""
    code, out, err = rig.run(
        ["status", rig.key, "--prometheus-url", "http://prometheus.istio-system:9090",
         "--scrape-interval", "15s", "--helm-binary", "helm", "--port", "9090",
         "--plans", str(rig.plan_file.parent)],
    )  # fmt: skip
    assert code == 0, err
    assert rig.key in out


def test_status_lists_comma_separated_namespaces(rig: Rig) -> None:
    code, out, err = rig.run(["status", "-o", "json", "--namespace", f"elsewhere,{rig.namespace}"])
    assert code == 0, err
    assert [r["plan"] for r in json.loads(out)] == [rig.key]


def test_the_kubeconfig_can_come_from_the_config_file(rig: Rig, tmp_path: Path) -> None:
    config = tmp_path / "canary.yaml"
    config.write_text(f"kubeconfig: {rig.kubeconfig}\nnamespaces: [{rig.namespace}]\n")
    args = build_parser().parse_args(["status", "-o", "json", "--config", str(config)])
    out, err = io.StringIO(), io.StringIO()
    assert args.func(args, out, err) == 0, err.getvalue()
    assert [r["plan"] for r in json.loads(out.getvalue())] == [rig.key]


def test_wait_for_namespace_and_name_binds_exactly_with_the_plans_directory(rig: Rig) -> None:
    """NAMESPACE/NAME alone binds to the next rollout; with --plans holding the plan it binds to
    the canary live now, as the plan file does."""
    rig.app.upgrade("1.20.2")
    code, out, _ = rig.run(
        ["wait", rig.key, "--timeout", "5m", "--plans", str(rig.plan_file.parent)]
    )
    assert code == exitcodes.SUCCEEDED, out
    assert "the next rollout" not in out.splitlines()[0]
    assert out.splitlines()[0].startswith(f"waiting for {rig.key}: canary ")


# --- check NAMESPACE/NAME ---------------------------------------------------------------------


def test_check_by_namespace_and_name_finds_the_plan_in_the_plans_directory(
    rig: Rig, prometheus: PrometheusServer
) -> None:
    """The plan comes from --plans: this namespace has no Istio series at all, so the check is
    inconclusive and says why, with the plan's own canary in the query."""
    code, out, err = rig.run(
        ["check", rig.key, "--plans", str(rig.plan_file.parent),
         "--prometheus-url", prometheus.url, "--scrape-interval", "1s"]
    )  # fmt: skip
    assert code == exitcodes.CHECK_INCONCLUSIVE, err
    assert out.startswith(f"{rig.key}: INCONCLUSIVE")
    assert f'destination_workload="{CANARY}"' in out
    assert f'destination_workload_namespace="{rig.namespace}"' in out


def test_check_by_namespace_and_name_falls_back_to_the_rollouts_snapshot(
    rig: Rig, prometheus: PrometheusServer, tmp_path: Path
) -> None:
    """No plan file at hand (a CI job that only knows the name): the snapshot the controller
    wrote into the rollout's state is the plan that is checked."""
    rig.app.upgrade("1.20.2")
    rig.until(Phase.PROGRESSING)
    empty = tmp_path / "no-plans"
    empty.mkdir()
    code, out, err = rig.run(
        ["check", rig.key, "--plans", str(empty),
         "--prometheus-url", prometheus.url, "--scrape-interval", "1s"]
    )  # fmt: skip
    assert code == exitcodes.CHECK_INCONCLUSIVE, err
    assert out.startswith(f"{rig.key}: INCONCLUSIVE")
    assert f'destination_workload="{CANARY}"' in out


def test_check_of_a_plan_neither_served_nor_snapshotted_says_where_it_looked(
    rig: Rig, prometheus: PrometheusServer, tmp_path: Path
) -> None:
    empty = tmp_path / "no-plans"
    empty.mkdir()
    argv = ["--plans", str(empty), "--prometheus-url", prometheus.url]
    state = rig.app.state()
    assert state is None or not state.spec  # Idle before any rollout: no snapshot yet
    code, _, err = rig.run(["check", rig.key, *argv])
    assert code == exitcodes.USAGE
    assert f"plan {rig.key} is not in the --plans directory ({empty})" in err
    assert "pass the plan file" in err
    assert "not built yet" not in err
    # a VirtualService that does not exist at all: the API error, naming it
    code, _, err = rig.run(["check", f"{rig.namespace}/ratings", *argv])
    assert code == exitcodes.USAGE
    assert f"no VirtualService in {rig.namespace} carries the state of plan" in err
    assert f"{rig.namespace}/ratings" in err
