"""The fake ``helm`` (tests/support/fakehelm): exactly helm's syntax, helm's answers, and the
failure controls the rollback tests rely on. Every case runs the script as a subprocess with
an argv list, as canary's helm adapter does."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.fakehelm import FakeHelm

HISTORY = ["history", "reviews", "--namespace", "shop", "-o", "json"]


def rollback(rev: str, timeout: str = "5m0s") -> list[str]:
    return ["rollback", "reviews", rev, "--namespace", "shop", "--wait", "--timeout", timeout]


@pytest.fixture
def helm(tmp_path: Path) -> FakeHelm:
    fake = FakeHelm(tmp_path / "helm-state.json")
    fake.install("reviews", "shop", revisions=3, app_version=["1.0", "1.1", "1.2"])
    return fake


def history(helm: FakeHelm) -> list[dict[str, object]]:
    done = helm.run(*HISTORY)
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, object]] = json.loads(done.stdout)
    return rows


def test_the_script_is_executable_and_found_on_path(helm: FakeHelm) -> None:
    assert os.access(helm.binary, os.X_OK)
    done = subprocess.run(
        ["helm", "version", "--short"],
        capture_output=True,
        text=True,
        env=helm.full_env(),
        timeout=10,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "v3.16.2+g13654a5\n"


def test_version_long_and_overridden(tmp_path: Path) -> None:
    helm = FakeHelm(tmp_path / "s.json")
    done = helm.run("version")
    assert done.returncode == 0
    assert done.stdout.startswith('version.BuildInfo{Version:"v3.16.2", GitCommit:"13654a5')
    assert done.stdout.rstrip().endswith('GoVersion:"go1.22.7"}')
    helm4 = FakeHelm(tmp_path / "s4.json", version="v4.0.0")
    assert helm4.run("version", "--template", "{{.Version}}").stdout == "v4.0.0"


def test_history_json_is_helms_shape_oldest_first(helm: FakeHelm) -> None:
    done = helm.run(*HISTORY)
    assert done.returncode == 0
    assert done.stdout.startswith('[{"revision":1,"updated":"2026-03-01T09:00:00Z",')
    assert done.stdout.endswith("}]\n")  # Go's json.Encoder: compact, one newline
    rows = json.loads(done.stdout)
    assert rows[0] == {
        "revision": 1,
        "updated": "2026-03-01T09:00:00Z",
        "status": "superseded",
        "chart": "reviews-0.1.0",
        "app_version": "1.0",
        "description": "Install complete",
    }
    assert list(rows[0]) == ["revision", "updated", "status", "chart", "app_version", "description"]
    assert [(r["revision"], r["status"], r["description"]) for r in rows] == [
        (1, "superseded", "Install complete"),
        (2, "superseded", "Upgrade complete"),
        (3, "deployed", "Upgrade complete"),
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["history", "-n", "shop", "reviews", "--output", "json"],
        ["history", "reviews", "-o=json", "--namespace=shop", "--max", "2"],
        ["--namespace", "shop", "history", "reviews", "-ojson", "--kube-context", "kind-x"],
    ],
)
def test_history_flags_in_any_order_and_form(helm: FakeHelm, argv: list[str]) -> None:
    done = helm.run(*argv)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert rows[-1]["revision"] == 3
    assert len(rows) == (2 if "--max" in argv else 3)


def test_history_of_an_unknown_release(helm: FakeHelm) -> None:
    done = helm.run("history", "ratings", "--namespace", "shop", "-o", "json")
    assert (done.returncode, done.stdout, done.stderr) == (1, "", "Error: release: not found\n")
    other_ns = helm.run("history", "reviews", "--namespace", "default", "-o", "json")
    assert other_ns.stderr == "Error: release: not found\n"


def test_rollback_creates_rollback_to_n_and_supersedes(helm: FakeHelm) -> None:
    done = helm.run(*rollback("1"))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Rollback was a success! Happy Helming!\n"
    rows = history(helm)
    assert [(r["revision"], r["status"], r["description"]) for r in rows] == [
        (1, "superseded", "Install complete"),
        (2, "superseded", "Upgrade complete"),
        (3, "superseded", "Upgrade complete"),
        (4, "deployed", "Rollback to 1"),
    ]
    assert rows[-1]["app_version"] == "1.0"  # the target's chart and values come back
    assert helm.deployed("reviews", "shop") == 4
    assert helm.calls() == [rollback("1"), HISTORY]


def test_rollback_to_zero_means_the_previous_revision(helm: FakeHelm) -> None:
    assert helm.run(*rollback("0")).returncode == 0
    assert history(helm)[-1]["description"] == "Rollback to 2"


def test_rollback_to_an_unknown_revision_or_release(helm: FakeHelm) -> None:
    done = helm.run(*rollback("9"))
    assert (done.returncode, done.stderr) == (1, "Error: release has no 9 version\n")
    unknown = helm.run("rollback", "ratings", "1", "--namespace", "shop", "--wait")
    assert (unknown.returncode, unknown.stderr) == (1, "Error: release: not found\n")
    not_a_number = helm.run(*rollback("two"))
    assert not_a_number.stderr.startswith("Error: could not convert revision to a number")
    assert [r["revision"] for r in history(helm)] == [1, 2, 3]  # nothing written


@pytest.mark.parametrize(
    ("argv", "stderr"),
    [
        (
            ["history reviews --namespace shop -o json"],
            'Error: unknown command "history reviews --namespace shop -o json" for "helm"\n',
        ),
        (["status", "reviews"], 'Error: unknown command "status" for "helm"\n'),
        ([*HISTORY, "--bogus"], "Error: unknown flag: --bogus\n"),
        ([*rollback("1"), "--atomic"], "Error: unknown flag: --atomic\n"),
        (["history", "reviews", "-x"], "Error: unknown shorthand flag: 'x' in -x\n"),
        (["history", "reviews", "--namespace"], "Error: flag needs an argument: --namespace\n"),
        (
            rollback("1", timeout="300"),
            'Error: invalid argument "300" for "--timeout" flag: '
            'time: missing unit in duration "300"\n',
        ),
        (
            ["history", "reviews", "-o", "xml"],
            'Error: invalid argument "xml" for "-o, --output" flag: invalid format type\n',
        ),
    ],
)
def test_anything_else_is_rejected_like_helm(helm: FakeHelm, argv: list[str], stderr: str) -> None:
    done = helm.run(*argv)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith(stderr)
    assert [r["revision"] for r in helm.history("reviews", "shop")] == [1, 2, 3]


def test_wrong_argument_counts(helm: FakeHelm) -> None:
    assert helm.run("history").stderr.startswith('Error: "helm history" requires 1 argument')
    assert helm.run("rollback", "-n", "shop").stderr.startswith(
        'Error: "helm rollback" requires at least 1 argument'
    )


def test_fail_next_then_success(helm: FakeHelm) -> None:
    helm.fail_next(2, stderr="Error: Kubernetes cluster unreachable\n")
    for _ in range(2):
        done = helm.run(*rollback("2"))
        assert (done.returncode, done.stderr) == (1, "Error: Kubernetes cluster unreachable\n")
    assert helm.deployed("reviews", "shop") == 3
    assert helm.run(*rollback("2")).returncode == 0
    last = history(helm)[-1]
    assert (last["revision"], last["status"], last["description"]) == (
        4,
        "deployed",
        "Rollback to 2",
    )
    assert len(helm.calls("rollback")) == 3
    assert helm.controls()["fail_next"] == []


def test_fail_after_pending_records_a_failed_revision(helm: FakeHelm) -> None:
    helm.fail_next(stage="after-pending", stderr="Error: conflict on Deployment reviews-v3\n")
    done = helm.run(*rollback("2"))
    assert done.returncode == 1
    rows = history(helm)
    assert (rows[-1]["revision"], rows[-1]["status"]) == (4, "failed")
    assert rows[-1]["description"] == 'Rollback "reviews" failed: conflict on Deployment reviews-v3'
    assert rows[-2]["status"] == "superseded"  # helm marks the old one superseded here too


def test_history_can_fail_too(helm: FakeHelm) -> None:
    helm.fail_next(command="history", exit_code=2)
    done = helm.run(*HISTORY)
    assert done.returncode == 2
    assert done.stderr.startswith("Error: Kubernetes cluster unreachable")
    assert helm.run(*HISTORY).returncode == 0


def test_hang_past_the_timeout_times_out(helm: FakeHelm) -> None:
    helm.set(hang_seconds={"rollback": 30})
    started = time.monotonic()
    done = helm.run(*rollback("2", timeout="1s"))
    elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 5
    assert done.returncode == 1
    assert done.stderr == "Error: release reviews failed: timed out waiting for the condition\n"
    rows = history(helm)
    assert [(r["revision"], r["status"]) for r in rows[-2:]] == [(3, "deployed"), (4, "failed")]


def test_a_slow_rollback_is_pending_while_it_runs(helm: FakeHelm) -> None:
    helm.set(slow_seconds={"rollback": 0.6})
    running = subprocess.Popen(
        [str(helm.binary), *rollback("2", timeout="10s")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=helm.full_env(),
    )
    try:
        deadline = time.monotonic() + 5
        while len(helm.history("reviews", "shop")) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert history(helm)[-1]["status"] == "pending-rollback"
    finally:
        out, _ = running.communicate(timeout=10)
    assert running.returncode == 0
    assert out == "Rollback was a success! Happy Helming!\n"
    assert history(helm)[-1]["status"] == "deployed"


def test_leave_pending_then_settle(helm: FakeHelm) -> None:
    helm.set(leave_pending=True)
    done = helm.run(*rollback("2"))
    assert (done.returncode, done.stderr) == (
        1,
        "Error: release reviews failed: context deadline exceeded\n",
    )
    assert [(r["revision"], r["status"]) for r in history(helm)[-2:]] == [
        (3, "deployed"),
        (4, "pending-rollback"),
    ]
    assert helm.controls()["leave_pending"] is False  # only the next rollback
    assert helm.settle("reviews", "shop") == 4
    assert helm.deployed("reviews", "shop") == 4


def test_concurrent_calls_are_all_recorded(helm: FakeHelm) -> None:
    argvs = [HISTORY] * 12 + [rollback("1"), rollback("2")]
    procs = [
        subprocess.Popen(
            [str(helm.binary), *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=helm.full_env(),
        )
        for argv in argvs
    ]
    assert [p.wait(timeout=20) for p in procs] == [0] * len(procs)
    assert sorted(map(tuple, helm.calls())) == sorted(map(tuple, argvs))
    rows = helm.history("reviews", "shop")
    assert [r["revision"] for r in rows] == [1, 2, 3, 4, 5]  # two rollbacks, no lost write
    assert [r["status"] for r in rows].count("deployed") == 1
