"""The CLI contract: output and exit codes of validate, simulate and demo (DESIGN §5)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from canary.cli import main
from canary.sim import SCENARIOS

ROOT = Path(__file__).resolve().parents[1]
BAD = sorted((ROOT / "tests" / "fixtures" / "plans" / "bad").glob("*.yaml"))
PLAN = str(ROOT / "config" / "plans" / "reviews.yaml")


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def expectations(path: Path) -> list[str]:
    return [
        line.removeprefix("# expect:").strip()
        for line in path.read_text().splitlines()
        if line.startswith("# expect:")
    ]


def test_validate_accepts_the_example_plans() -> None:
    code, out, err = run("validate", str(ROOT / "config" / "plans"))
    assert code == 0, err
    assert "bookinfo/reviews" in out and "2 plan(s) valid" in out


def test_there_are_at_least_twelve_malformed_plans() -> None:
    assert len(BAD) >= 12


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_validate_reports_each_problem_precisely(path: Path) -> None:
    code, out, err = run("validate", str(path))
    assert code == 2 and "valid" not in out
    expected = expectations(path)
    assert expected, f"{path.name} has no '# expect:' line"
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    for text in expected:
        matching = [line for line in errors if text in line]
        assert len(matching) == 1, f"want exactly one error containing {text!r}, got {errors}"
        assert str(path) in matching[0], "each problem names its file"
    assert len(errors) == len(expected), "one message per problem, nothing else"


def test_validate_reports_problems_of_all_files_at_once() -> None:
    code, _, err = run("validate", *map(str, BAD))
    assert code == 2
    errors = [x for x in err.splitlines() if x.startswith("error: ")]
    for path in BAD:
        for text in expectations(path):
            assert any(text in line and str(path) in line for line in errors), (path, text)


def test_validate_an_empty_file_is_a_usage_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("---\n")
    code, out, err = run("validate", str(empty))
    assert code == 2 and "no plans found" in err and "valid" not in out


def test_validate_warns_about_a_window_no_scrape_interval_can_fill(tmp_path: Path) -> None:
    text = (ROOT / "config" / "plans" / "reviews.yaml").read_text()
    short = tmp_path / "short.yaml"
    short.write_text(text.replace("window: 1m ", "window: 40s"))
    code, _, err = run("validate", str(short))
    assert code == 0 and "warning" not in err  # 40s ≥ 2 × 15s
    code, _, err = run("validate", "--scrape-interval", "30s", str(short))
    assert code == 0
    assert "spec.analysis.window 40s is shorter than two scrape intervals (1m)" in err


def test_validate_missing_file_is_a_usage_error() -> None:
    code, _, err = run("validate", "/nonexistent/plan.yaml")
    assert code == 2 and "/nonexistent/plan.yaml" in err


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_simulate_exit_codes(name: str) -> None:
    code, out, _ = run("simulate", PLAN, "--scenario", name)
    assert code == SCENARIOS[name].expected_exit
    assert "outcome:" in out and "rollout.started" in out


def test_simulate_unknown_scenario_is_a_usage_error() -> None:
    code, _, err = run("simulate", PLAN, "--scenario", "nope")
    assert code == 2 and "good" in err


def test_simulate_times_out_with_exit_3() -> None:
    code, out, _ = run("simulate", PLAN, "--scenario", "good", "--max-time", "3m")
    assert code == 3 and "no verdict" in out


def test_simulate_needs_exactly_one_plan() -> None:
    code, _, err = run("simulate", str(ROOT / "config" / "plans"), "--scenario", "good")
    assert code == 2 and "exactly one" in err


def test_usage_error_exits_2() -> None:
    code, _, _ = run("simulate", PLAN)  # --scenario missing
    assert code == 2


def test_demo_shows_good_then_bad_release() -> None:
    code, out, _ = run("demo", "--fast")
    assert code == 0
    good, _, bad = out.partition("(a bad release)")
    for step, weight in enumerate((10, 50, 100)):
        assert f"step {step}: canary {weight}%" in good
        assert f"check.passed               step {step} ({weight}%)" in good
    assert "check.failed" not in good
    assert "rollout.succeeded" in good and "rollout.finalised" in good
    assert "step 1: canary 50%" not in bad  # the bad release never left 10 %
    assert "check.failed               step 0 (10%)" in bad
    order = [
        "check.failed",
        "rollback.traffic_reverted",
        "rollback.helm_started",
        "rollback.helm_succeeded",
        "rollout.rolled_back",
    ]
    positions = [bad.index(name) for name in order]
    assert positions == sorted(positions)
    assert "helm rollback reviews 3" in bad  # the base revision: the promotion


def test_console_script_runs_the_demo() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "canary.cli", "demo", "--fast"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "rollout.rolled_back" in proc.stdout
