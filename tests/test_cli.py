"""The CLI contract: output and exit codes of validate, simulate and demo (docs/design.md §5)."""

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
#: Every plan shipped for users: each must pass `good`, be rolled back by `bad-errors` and demo.
SHIPPED = sorted(
    [
        *(ROOT / "config" / "plans").glob("*.yaml"),
        *(ROOT / "deploy" / "examples").glob("*/plan.yaml"),
    ]
)


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


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("prometheus:9090", '"prometheus:9090" is not a URL (write "http://prometheus:9090")'),
        ("ftp://p:9090", '"ftp://p:9090" has scheme ftp; Prometheus is reached over http or https'),
        ("http://", '"http://" has no host'),
    ],
    ids=["no-scheme", "ftp", "no-host"],
)
def test_check_with_a_bad_prometheus_url_is_a_config_error_not_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str, message: str
) -> None:
    """Exit 2 with the config error, never 4 (Prometheus unreachable): nothing is queried."""
    code, out, err = run("check", PLAN, "--prometheus-url", given)
    assert (code, out) == (2, "") and f"--prometheus-url: {message}" in err
    monkeypatch.setenv("CANARY_PROMETHEUS_URL", given)
    code, _, err = run("check", PLAN)
    assert code == 2 and f"CANARY_PROMETHEUS_URL: {message}" in err
    monkeypatch.delenv("CANARY_PROMETHEUS_URL")
    config = tmp_path / "config.yaml"
    config.write_text(f'prometheusUrl: "{given}"\n')
    code, _, err = run("check", PLAN, "--config", str(config))
    assert code == 2 and f"{config}: prometheusUrl: {message}" in err


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


def test_there_are_shipped_plans() -> None:
    assert {str(p.relative_to(ROOT)) for p in SHIPPED} >= {
        "config/plans/reviews.yaml",
        "config/plans/ratings.yaml",
        "deploy/examples/podinfo/plan.yaml",
    }


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
@pytest.mark.parametrize(
    ("scenario", "code", "outcome"),
    [("good", 0, "outcome: Succeeded: "), ("bad-errors", 1, "outcome: RolledBack: ")],
)
def test_every_shipped_plan_passes_good_and_is_rolled_back_by_bad_errors(
    path: Path, scenario: str, code: int, outcome: str
) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert main(["simulate", str(path), "--scenario", scenario], out=out, err=err) == code
    (line,) = [line for line in out.getvalue().splitlines() if line.startswith("outcome:")]
    assert line.startswith(outcome) and line.endswith(f"(exit {code})")
    assert "no data" not in line


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_demo_runs_for_every_shipped_plan(path: Path) -> None:
    code, out, _ = run("demo", "--fast", "--plan", str(path))
    assert code == 0
    assert "good release: Succeeded, promoted, back to Idle" in out
    assert "bad release:  RolledBack: " in out


def test_demo_releases_the_plans_own_images() -> None:
    code, out, _ = run("demo", "--fast", "--plan", str(ROOT / "config" / "plans" / "ratings.yaml"))
    assert code == 0
    image = "docker.io/istio/examples-bookinfo-ratings-v2"
    assert f"helm upgrade ratings --set canary.image={image}:1.20.1   (a good release)" in out
    assert f"helm upgrade ratings --set canary.image={image}:bad   (a bad release)" in out
    assert "reviews" not in out


def variant(tmp_path: Path, *edits: tuple[str, str]) -> str:
    """reviews.yaml with each (old, new) text replaced, as a new plan file."""
    text = Path(PLAN).read_text()
    for old, new in edits:
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("edit", "verdict"),
    [
        # the good canary's 0.2 % 5xx fails a 0.15 % bound: rolled back
        (("max: 0.01 ", "max: 0.0015 "), "RolledBack: 2 consecutive failed checks: error-rate"),
        # the canary never serves enough requests: inconclusive, paused
        (("minRequests: 20", "minRequests: 1000000"), "Paused: inconclusive for 10m"),
    ],
)
def test_demo_says_why_the_good_release_did_not_succeed(
    tmp_path: Path, edit: tuple[str, str], verdict: str
) -> None:
    code, out, _ = run("demo", "--fast", "--plan", variant(tmp_path, edit))
    assert code == 1
    assert f"good release: FAILED — {verdict}" in out
    assert "the good release did not succeed, so no promotion" in out
    assert "→ promote" not in out and "rollout.finalised" not in out
    assert "(a bad release)" not in out and "bad release:  not released" in out


def test_demo_says_why_the_bad_release_was_not_rolled_back(tmp_path: Path) -> None:
    lax = variant(
        tmp_path, ("max: 0.01 ", "max: 0.5 "), ("maxAboveStable: 0.005", "maxAboveStable: 0.5")
    )
    code, out, _ = run("demo", "--fast", "--plan", lax)
    assert code == 1
    assert "good release: Succeeded, promoted, back to Idle" in out
    # the bad release's own reason, not the good one's ("promoted")
    assert "bad release:  FAILED, not rolled back — Succeeded: step 2 passed 4 checks" in out
    assert "helm calls: none" in out


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
