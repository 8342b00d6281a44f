"""`canary timeline`: real JSON logs in, one readable story per rollout out.

The logs are real: the simulator's rollouts rendered by canary's own structlog JSON renderer,
one of them through `python3 -m canary.cli --log-format json simulate` exactly as a user runs
it. Replicas, tracebacks and daemon lines are spliced around those lines the way `kubectl logs`
shows them.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from canary.cli.timeline import NOT_FOUND, add_parser, cmd_timeline

ROOT = Path(__file__).resolve().parents[1]
PLAN = str(ROOT / "config" / "plans" / "reviews.yaml")

#: Runs in a fresh interpreter (structlog's configuration is global): each rollout's JSON log
#: into its own file.
GENERATE = """
import io, sys
from pathlib import Path
from canary.cli import main
from canary.shell.emitter import configure_logging
from canary.core.model import Phase
from canary.plans.files import load_plan_files
from canary.sim.run import SCENARIOS, controller_for, run_until
from canary.sim.world import SimWorld

out, plan_file = Path(sys.argv[1]), sys.argv[2]
for scenario in ("good", "low-traffic"):
    with open(out / f"{scenario}.log", "w") as err:
        main(["--log-format", "json", "simulate", plan_file, "--scenario", scenario],
             out=io.StringIO(), err=err)
with open(out / "demo.log", "w") as err:
    main(["--log-format", "json", "demo", "--fast", "--plan", plan_file],
         out=io.StringIO(), err=err)
# A breach whose helm rollback fails twice (cluster unreachable), then succeeds.
with open(out / "helm.log", "w") as err:
    configure_logging("json", stream=err)
    plan = load_plan_files([plan_file])[0]
    world = SimWorld.create(plan, SCENARIOS["bad-errors"])
    ctrl = controller_for(world)
    ctrl.tick()
    world.release_canary()
    world.cluster.helm_fail_next(2, "Kubernetes cluster unreachable: connection refused")
    ended = (Phase.ROLLED_BACK, Phase.ROLLBACK_FAILED)
    assert run_until(world, ctrl, lambda s: s is not None and s.phase in ended)
"""


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Scenario name → its JSON log text (stderr of canary)."""
    tmp = tmp_path_factory.mktemp("logs")
    subprocess.run(
        [sys.executable, "-c", GENERATE, str(tmp), PLAN],
        cwd=ROOT,
        check=True,
        timeout=60,
        capture_output=True,
    )
    bad = subprocess.run(
        [
            sys.executable,
            *("-m", "canary.cli", "--log-format", "json", "simulate", PLAN),
            *("--scenario", "bad-errors"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 1, bad.stderr
    found = {p.stem: p.read_text() for p in tmp.glob("*.log")}
    return {**found, "bad-errors": bad.stderr}


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch) -> Run:
    """``run(*argv, stdin=TEXT)`` → (exit code, stdout, stderr) of `canary timeline ARGV`."""

    def go(*argv: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        args = parser().parse_args(["timeline", *argv])
        out, err = io.StringIO(), io.StringIO()
        code = args.func(args, out, err)
        return code, out.getvalue(), err.getvalue()

    return go


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="canary")
    add_parser(p.add_subparsers(dest="command", required=True))
    return p


def lines_of(out: str, *names: str) -> list[str]:
    """The event lines (not check rows or footers) for the given event names, in order."""
    return [line for line in out.splitlines() if line[:2].isdigit() and line.split()[3] in names]


def events_in_order(out: str) -> list[str]:
    return [line.split()[3] for line in out.splitlines() if line[:2].isdigit()]


def footer(out: str, key: str) -> str:
    """The value of a footer row (``breach``, ``time to safe``, ``helm``, ``outcome``) with its
    continuation lines."""
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(" " * 18 + key + " "):
            rest = [line[18 + 14 :]]
            for more in lines[i + 1 :]:
                if not more.startswith(" " * 33):
                    break
                rest.append(more.strip())
            return "\n".join(rest).strip()
    raise AssertionError(f"no footer {key!r} in:\n{out}")


# -- one rollout, end to end ---------------------------------------------------------------------


def test_bad_errors_header_names_plan_rollout_revisions_start_and_outcome(
    logs: dict[str, str], run: Run
) -> None:
    code, out, err = run(stdin=logs["bad-errors"])
    assert code == 0, err
    title, revisions, started = out.splitlines()[:3]
    assert "bookinfo/reviews" in title and "rollout f012e7925a-1" in title
    assert "revision 2 (canary reviews-v3 f012e7925a)" in revisions
    assert "base revision 1" in revisions and "steps 10 → 50 → 100" in revisions
    assert "started 2025-01-06 09:00:00 UTC" in started
    assert "RolledBack after 1m20s" in started


def test_bad_errors_tells_steps_checks_breach_time_to_safe_helm_and_outcome(
    logs: dict[str, str], run: Run
) -> None:
    _, out, _ = run(stdin=logs["bad-errors"])
    assert events_in_order(out) == [
        "rollout.started",
        "step.started",
        "weight.set",
        "check.failed",
        "check.failed",
        "rollback.started",
        "weight.set",
        "rollback.traffic_reverted",
        "rollback.helm_started",
        "rollback.helm_succeeded",
        "rollout.rolled_back",
    ]
    step = lines_of(out, "step.started")[0]
    assert step.startswith("09:00:20 +00:20") and "step 0: canary 10%" in step
    first, second = lines_of(out, "check.failed")
    assert "FAIL at step 0 (10%), window 30s, requests canary 150 / stable 1350" in first
    assert "fails 1 in a row" in first and "fails 2 in a row" in second
    rows = out.splitlines()
    error_rate = rows[rows.index(first) + 1].split()
    latency = rows[rows.index(first) + 2].split()
    # value, stable value, bounds, verdict and why, one row per metric
    assert error_rate[:8] == [
        "error-rate",
        "0.08",
        "stable",
        "0.001",
        "≤",
        "0.01,",
        "≤",
        "stable+0.005",
    ]
    assert error_rate[8:11] == ["FAIL", "0.08", ">"]
    assert latency == [
        "latency-p99",
        "120",
        "stable",
        "115",
        "≤",
        "500,",
        "≤",
        "1.5×",
        "stable",
        "PASS",
    ]
    assert footer(out, "breach").startswith(
        "2 consecutive failed checks: error-rate: 0.08 > max 0.01"
    )
    assert footer(out, "time to safe") == (
        "30 s (first failed check 09:00:50 → all traffic on stable 09:01:20)"
    )
    assert footer(out, "helm").splitlines() == [
        "helm rollback reviews 1 (timeout 5m)",
        "attempt 1 succeeded → revision 3 (confirmed by helm exit 0 and history)",
    ]
    assert footer(out, "outcome") == "RolledBack after 1m20s"
    # the Idle line before the rollout is no step of it, but it is accounted for
    assert out.rstrip().endswith("── skipped: 1 plan event(s) outside any rollout: base.recorded")


def test_good_rollout_walks_every_step_in_order(logs: dict[str, str], run: Run) -> None:
    code, out, _ = run(stdin=logs["good"])
    assert code == 0
    steps = lines_of(out, "step.started")
    assert [line.split("step.started")[1].split(":")[0].strip() for line in steps] == [
        "step 0",
        "step 1",
        "step 2",
    ]
    assert [line.split("canary ")[1].split()[0] for line in steps] == ["10%", "50%", "100%"]
    checks = lines_of(out, "check.passed")
    assert len(checks) == 12 and all("PASS at step" in line for line in checks)
    assert "passes 4 in a row" in checks[-1] and "(100%)" in checks[-1]
    # at 100 % stable serves nothing: the relative bounds are skipped, the value says so
    last_rows = out.splitlines()[out.splitlines().index(checks[-1]) + 1]
    assert "stable no data" in last_rows and "≤ 0.01" in last_rows
    assert "Succeeded after 6m20s" in out.splitlines()[2]
    assert "breach" not in out and "time to safe" not in out and "helm" not in out
    assert footer(out, "outcome") == "Succeeded after 6m20s"


def test_helm_failed_twice_then_succeeded(logs: dict[str, str], run: Run) -> None:
    code, out, _ = run(stdin=logs["helm"])
    assert code == 0
    started = lines_of(out, "rollback.helm_started")
    assert [line.split("attempt ")[1][0] for line in started] == ["1", "2", "3"]
    assert len(lines_of(out, "rollback.helm_failed")) == 2
    helm = footer(out, "helm").splitlines()
    assert helm[0] == "helm rollback reviews 1 (timeout 5m)"
    assert helm[1].startswith("attempt 1 failed: ") and "cluster unreachable" in helm[1]
    assert helm[2].startswith("attempt 2 failed: ") and "cluster unreachable" in helm[2]
    assert helm[3].startswith("attempt 3 succeeded → revision 3")
    assert footer(out, "time to safe").startswith("30 s")  # traffic first, helm afterwards
    assert footer(out, "outcome") == "RolledBack after 1m50s"


def test_a_paused_rollout_says_why_and_that_a_human_decides(logs: dict[str, str], run: Run) -> None:
    code, out, _ = run(stdin=logs["low-traffic"])
    assert code == 0
    assert len(lines_of(out, "check.inconclusive")) == 21
    assert "fewer than minRequests (20)" in footer(out, "paused")
    assert footer(out, "outcome").startswith("Paused after 10m50s (a human decides")


# -- merging replicas, skipping noise ------------------------------------------------------------

TRACEBACK = """\
Traceback (most recent call last):
  File "/app/canary/daemon.py", line 301, in _tick
    self.controller.tick()
RuntimeError: boom {"event": "not a log line"}"""


def daemon_line(event: str, ts: str, **fields: object) -> str:
    return json.dumps({"event": event, "level": "info", "ts": ts, **fields})


def replicas(helm_log: str) -> tuple[list[str], list[str]]:
    """The helm log as two replicas wrote it: A led until its first helm attempt failed, then
    lost the Lease; B took over and finished the rollback. Both have daemon lines, A died with a
    traceback, and B's log repeats A's last rollout line (an overlapping `kubectl logs`)."""
    lines = helm_log.splitlines()
    cut = next(i for i, line in enumerate(lines) if '"rollback.helm_failed"' in line) + 1
    a = [
        daemon_line("daemon.started", "2025-01-06T08:00:00Z", identity="canary-a"),
        daemon_line("leader.acquired", "2025-01-06T08:00:01Z", identity="canary-a"),
        daemon_line("plans.loaded", "2025-01-06T08:00:01Z", plans=["bookinfo/reviews"]),
        *lines[:cut],
        daemon_line("tick.overlap", "2025-01-06T09:01:21Z", job="tick", skipped=1),
        daemon_line("leader.lost", "2025-01-06T09:01:25Z", identity="canary-a"),
        *TRACEBACK.splitlines(),
    ]
    b = [
        daemon_line("daemon.started", "2025-01-06T08:00:00Z", identity="canary-b"),
        daemon_line("plan.released", "2025-01-06T08:00:02Z", plan="bookinfo/other"),
        lines[cut - 1],
        daemon_line("leader.acquired", "2025-01-06T09:01:27Z", identity="canary-b"),
        *lines[cut:],
        json.dumps(
            {
                "message": "API server unreachable; retrying in 2.4s",
                "event": "log.canary.adapters.watch",
                "level": "warning",
                "ts": "2025-01-06T09:01:40Z",
            }
        ),
    ]
    return a, b


def test_replicas_are_merged_by_time_and_noise_is_skipped_and_counted(
    logs: dict[str, str], run: Run
) -> None:
    _, alone, _ = run(stdin=logs["helm"])
    a, b = replicas(logs["helm"])
    # `kubectl logs -l app=canary --prefix` prints pod by pod, the newer leader first here
    stream = [f"[pod/canary-b/canary] {x}" for x in b] + [f"[pod/canary-a/canary] {x}" for x in a]
    code, out, err = run(stdin="\n".join(stream) + "\n")
    assert code == 0, err
    story, _, summary = out.rpartition("\n── skipped: ")
    assert story == alone.rpartition("\n── skipped: ")[0], "the same story as one replica's log"
    assert "4 line(s) that are not JSON" in summary  # the traceback
    assert "1 duplicate line(s)" in summary
    assert "9 daemon line(s): " in summary
    for name in ("daemon.started ×2", "leader.acquired ×2", "leader.lost", "tick.overlap"):
        assert name in summary
    assert "log.canary.adapters.watch" in summary and "plan.released" in summary


def test_files_are_merged_like_one_stream(logs: dict[str, str], run: Run, tmp_path: Path) -> None:
    a, b = replicas(logs["helm"])
    (tmp_path / "a.log").write_text("\n".join(a))
    (tmp_path / "b.log").write_text("\n".join(b))
    _, merged, _ = run(str(tmp_path / "b.log"), str(tmp_path / "a.log"))
    _, stream, _ = run(stdin="\n".join(b + a))
    assert merged == stream
    assert [x.split("attempt ")[1][0] for x in lines_of(merged, "rollback.helm_started")] == [
        "1",
        "2",
        "3",
    ]


def test_kubectl_timestamps_and_crlf_are_tolerated(logs: dict[str, str], run: Run) -> None:
    stamped = "".join(
        f"2026-11-22T22:25:03.{i:06d}000Z {line}\r\n"
        for i, line in enumerate(logs["bad-errors"].splitlines())
    )
    _, plain, _ = run(stdin=logs["bad-errors"])
    code, out, _ = run(stdin=stamped)
    assert code == 0 and out == plain


def test_hostile_lines_never_crash(logs: dict[str, str], run: Run) -> None:
    rollout = {"plan": "a/b", "rolloutId": "x-1", "at": "2025-01-06T09:00:00Z"}
    junk = [
        "",
        "{",
        "[1, 2]",
        "null",
        '{"event": 5}',
        "\x00\x01 binary",
        json.dumps({**rollout, "event": "rollout.started", "steps": "ten", "at": "yesterday"}),
        json.dumps({**rollout, "event": "check.failed", "metrics": "oops", "step": [1]}),
        json.dumps({**rollout, "event": "check.failed", "metrics": [1, {"bounds": 3}, {}]}),
        json.dumps({**rollout, "event": "check.passed", "metrics": [{"value": float("nan")}]}),
        json.dumps({**rollout, "event": "rollback.traffic_reverted", "secondsSinceFirstFail": "x"}),
        json.dumps({**rollout, "event": "rollback.helm_started", "attempt": [1]}),
        json.dumps({**rollout, "event": "rollback.helm_failed"}),
        json.dumps({**rollout, "event": "rollback.helm_succeeded", "at": 12}),
        json.dumps({**rollout, "event": "some.future_event", "rolloutId": "x-1"}),
        json.dumps({**rollout, "event": "check.future_verdict", "metrics": "oops"}),
        json.dumps({**rollout, "event": "step.started", "at": "9999-12-31T23:59:59-23:59"}),
        json.dumps({"event": "rollout.started", "plan": "a/b", "rolloutId": 7}),
    ]
    code, out, err = run(stdin="\n".join([*junk, *logs["bad-errors"].splitlines()]))
    assert code == 0, err
    assert "rollout x-1" in out and "rollout f012e7925a-1" in out


# -- what a rollout's log may lack ---------------------------------------------------------------


def test_a_log_that_begins_mid_rollout_says_so(logs: dict[str, str], run: Run) -> None:
    lines = logs["bad-errors"].splitlines()
    cut = next(i for i, line in enumerate(lines) if '"check.failed"' in line)
    code, out, _ = run(stdin="\n".join(lines[cut:]))
    assert code == 0
    header = out.splitlines()[2]
    assert "started before this log begins (first line 2025-01-06 09:00:50 UTC)" in header
    assert "RolledBack after at least 30s" in header
    assert footer(out, "time to safe").startswith("30 s")


def test_a_log_that_ends_mid_rollout_says_it_is_under_way(logs: dict[str, str], run: Run) -> None:
    lines = logs["helm"].splitlines()
    cut = next(i for i, line in enumerate(lines) if '"rollback.helm_started"' in line) + 1
    _, out, _ = run(stdin="\n".join(lines[:cut]))
    assert footer(out, "outcome").startswith("under way (RollingBack) for 1m20s so far")
    assert footer(out, "helm").splitlines()[1] == "attempt 1: no result in the log"


def test_an_event_without_rollout_id_joins_the_open_rollout_of_its_plan(
    logs: dict[str, str], run: Run
) -> None:
    failed = json.dumps(
        {
            "plan": "bookinfo/reviews",
            "at": "2025-01-06T09:00:35Z",
            "stage": "observe",
            "error": "API server unreachable",
            "kind": "transient",
            "event": "tick.failed",
            "level": "warning",
        }
    )
    _, out, _ = run(stdin=logs["bad-errors"] + failed + "\n")
    assert events_in_order(out)[2:4] == ["weight.set", "tick.failed"]
    assert "observe: API server unreachable (transient)" in lines_of(out, "tick.failed")[0]


# -- filters and exit codes ----------------------------------------------------------------------


def two_plans(logs: dict[str, str]) -> str:
    """The demo (two rollouts of bookinfo/reviews) and bad-errors as if of a second plan."""
    other = logs["bad-errors"].replace('"bookinfo/reviews"', '"shop/cart"')
    return logs["demo"] + other


def test_all_rollouts_by_default_in_order_of_start(logs: dict[str, str], run: Run) -> None:
    code, out, _ = run(stdin=two_plans(logs))
    titles = [line for line in out.splitlines() if line.startswith("══ ")]
    assert [t.split()[1] + " " + t.split()[4] for t in titles] == [
        "bookinfo/reviews f012e7925a-1",  # 09:00:00, logged first
        "shop/cart f012e7925a-1",  # 09:00:00 too
        "bookinfo/reviews 877e0bfcf8-1",  # 09:06:40, after the good one was promoted
    ]
    assert code == 0


def titles(out: str) -> list[str]:
    """``PLAN ROLLOUT-ID`` of each rollout printed."""
    return [f"{x.split()[1]} {x.split()[4]}" for x in out.splitlines() if x.startswith("══ ")]


def test_rollout_filter_takes_an_id_or_a_canary_hash_prefix(logs: dict[str, str], run: Run) -> None:
    code, out, _ = run("--rollout", "877e0bfcf8-1", stdin=two_plans(logs))
    assert code == 0 and titles(out) == ["bookinfo/reviews 877e0bfcf8-1"]
    assert "RolledBack after 1m20s" in out.splitlines()[2]
    assert (
        out.rstrip()
        .splitlines()[-1]
        .startswith("── skipped: 2 other rollout(s) not shown (--rollout 877e0bfcf8-1)")
    )
    _, by_prefix, _ = run("--rollout", "877e0b", stdin=two_plans(logs))
    assert by_prefix.splitlines()[:-1] == out.splitlines()[:-1]  # all but the skipped line
    code, out, _ = run("--rollout", "f012e7925a-1", stdin=two_plans(logs))
    assert code == 0  # the same canary under two plans
    assert titles(out) == ["bookinfo/reviews f012e7925a-1", "shop/cart f012e7925a-1"]
    _, out, _ = run("--rollout", "f012e7925a-10", stdin=two_plans(logs))
    assert titles(out) == [], "an id is never a prefix of another attempt's id"


def test_plan_filter_takes_namespace_and_name_or_the_name(logs: dict[str, str], run: Run) -> None:
    for plan in ("shop/cart", "cart"):
        code, out, _ = run("--plan", plan, stdin=two_plans(logs))
        assert code == 0 and titles(out) == ["shop/cart f012e7925a-1"]
    code, out, _ = run("--plan", "bookinfo/reviews", stdin=two_plans(logs))
    assert titles(out) == ["bookinfo/reviews f012e7925a-1", "bookinfo/reviews 877e0bfcf8-1"]
    _, out, _ = run(
        "--plan", "bookinfo/reviews", "--rollout", "f012e7925a-1", stdin=two_plans(logs)
    )
    assert titles(out) == ["bookinfo/reviews f012e7925a-1"]
    assert "Succeeded after 6m20s" in out.splitlines()[2]
    # promoted by CI after it succeeded: the finalising events belong to the same story
    assert events_in_order(out)[-3:] == ["base.recorded", "weight.set", "rollout.finalised"]


def test_a_rollout_not_in_the_input_exits_3_and_lists_what_is(
    logs: dict[str, str], run: Run
) -> None:
    code, out, err = run("--rollout", "deadbeef-1", stdin=two_plans(logs))
    assert code == NOT_FOUND == 3
    assert out == ""
    assert "no rollout in the input matches --rollout deadbeef-1" in err
    assert "bookinfo/reviews  877e0bfcf8-1  2025-01-06 09:06:40 UTC  RolledBack" in err
    assert "shop/cart  f012e7925a-1" in err
    code, _, err = run("--plan", "nowhere/nothing", stdin=two_plans(logs))
    assert code == 3 and "--plan nowhere/nothing" in err


def test_input_without_rollouts_exits_3(run: Run) -> None:
    console = "2025-01-06 09:00:00 [info     ] rollout.started  plan=bookinfo/reviews"
    text = "\n".join([daemon_line("daemon.started", "2025-01-06T08:00:00Z"), console, ""])
    code, out, err = run(stdin=text)
    assert code == 3 and out == ""
    assert "no rollout events in the input (2 line(s): 1 not JSON, 1 daemon-level)" in err
    code, _, _ = run(stdin="")
    assert code == 3


def test_an_unreadable_file_is_a_usage_error(run: Run, tmp_path: Path) -> None:
    good = tmp_path / "good.log"
    good.write_text("")
    for bad in (tmp_path / "missing.log", tmp_path):
        code, out, err = run(str(good), str(bad))
        assert code == 2 and out == ""
        assert f"cannot read {bad}" in err


def test_stdin_by_default_and_as_dash(logs: dict[str, str], run: Run, tmp_path: Path) -> None:
    _, default, _ = run(stdin=logs["bad-errors"])
    _, dash, _ = run("-", stdin=logs["bad-errors"])
    path = tmp_path / "bad.log"
    path.write_text(logs["bad-errors"])
    _, from_file, _ = run(str(path))
    assert default == dash == from_file and "rollout f012e7925a-1" in default


def test_stdin_on_a_terminal_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal())
    args = parser().parse_args(["timeline"])
    err = io.StringIO()
    assert cmd_timeline(args, io.StringIO(), err) == 2
    assert "stdin is a terminal" in err.getvalue()


def test_queries_flag_prints_the_promql_of_each_check(logs: dict[str, str], run: Run) -> None:
    _, plain, _ = run(stdin=logs["bad-errors"])
    _, out, _ = run("--queries", stdin=logs["bad-errors"])
    assert "istio_requests_total" not in plain
    canary = [x.strip() for x in out.splitlines() if x.strip().startswith("canary: ")]
    stable = [x.strip() for x in out.splitlines() if x.strip().startswith("stable: ")]
    assert len(canary) == len(stable) == 4  # two checks, two metrics each
    assert 'destination_workload="reviews-v3"' in canary[0]
    assert 'destination_workload="reviews-v1"' in stable[0]


def test_parser_synopsis_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    args = parser().parse_args(["timeline", "--rollout", "abc-1", "--plan", "ns/n", "a", "b"])
    assert (args.rollout, args.plan, args.files, args.queries) == (
        "abc-1",
        "ns/n",
        ["a", "b"],
        False,
    )
    assert args.func is cmd_timeline
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(["timeline", "--bogus"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        parser().parse_args(["timeline", "--help"])
    help_text = capsys.readouterr().out
    assert "[--rollout ID] [--plan NS/NAME]" in help_text
    assert "exit codes: 0 printed at least one rollout" in help_text
