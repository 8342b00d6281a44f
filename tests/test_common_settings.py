"""One configuration path for every command (docs/design.md §5): each common setting is a flag
of every command, its CANARY_<FLAG> variable and its config-file key, merged the same way."""

from __future__ import annotations

import argparse
import io
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from canary.cli import build_parser, main
from canary.cli.options import config_of
from canary.config.settings import ControllerConfig
from canary.core import exitcodes

#: Every command, with the arguments it needs besides the settings.
COMMANDS: dict[str, list[str]] = {
    "validate": ["config/plans"],
    "check": ["config/plans/reviews.yaml"],
    "simulate": ["config/plans/reviews.yaml", "--scenario", "good"],
    "demo": [],
    "run": [],
    "status": [],
    "wait": ["bookinfo/reviews"],
    "abort": ["bookinfo/reviews"],
    "pause": ["bookinfo/reviews"],
    "resume": ["bookinfo/reviews"],
    "promote": ["bookinfo/reviews"],
    "retry": ["bookinfo/reviews"],
    "timeline": [],
}

#: flag, value given, how the merged settings show it, env variable, config-file key.
SETTINGS: list[tuple[str, str, object, str, str]] = [
    ("--plans", "/srv/plans", "/srv/plans", "CANARY_PLANS", "plans"),
    ("--prometheus-url", "http://p:90", "http://p:90", "CANARY_PROMETHEUS_URL", "prometheusUrl"),
    ("--scrape-interval", "5s", timedelta(seconds=5), "CANARY_SCRAPE_INTERVAL", "scrapeInterval"),
    ("--helm-binary", "/opt/helm", "/opt/helm", "CANARY_HELM_BINARY", "helmBinary"),
    ("--namespace", "a,b", ("a", "b"), "CANARY_NAMESPACE", "namespaces"),
    ("--kubeconfig", "/k/config", "/k/config", "CANARY_KUBECONFIG", "kubeconfig"),
    ("--context", "prod", "prod", "CANARY_CONTEXT", "context"),
    ("--port", "9091", 9091, "CANARY_PORT", "port"),
    ("--log-format", "console", "console", "CANARY_LOG_FORMAT", "logFormat"),
    ("--prometheus-bearer-token-file", "/t", "/t", "CANARY_PROMETHEUS_BEARER_TOKEN_FILE",
     "prometheusAuth.bearerTokenFile"),
    ("--prometheus-ca-file", "/ca", "/ca", "CANARY_PROMETHEUS_CA_FILE", "prometheusAuth.caFile"),
    ("--prometheus-username", "ci", "ci", "CANARY_PROMETHEUS_USERNAME", "prometheusAuth.username"),
    ("--prometheus-password-file", "/pw", "/pw", "CANARY_PROMETHEUS_PASSWORD_FILE",
     "prometheusAuth.passwordFile"),
]  # fmt: skip


def _value(config: ControllerConfig, key: str) -> object:
    return {
        "plans": config.plans,
        "prometheusUrl": config.prometheus_url,
        "scrapeInterval": config.scrape_interval,
        "helmBinary": config.helm_binary,
        "namespaces": config.namespaces,
        "kubeconfig": config.kubeconfig,
        "context": config.context,
        "port": config.port,
        "logFormat": config.log_format,
        "prometheusAuth.bearerTokenFile": config.prometheus_auth.bearer_token_file,
        "prometheusAuth.caFile": config.prometheus_auth.ca_file,
        "prometheusAuth.username": config.prometheus_auth.username,
        "prometheusAuth.passwordFile": config.prometheus_auth.password_file,
    }[key]


def _file_doc(key: str, value: object) -> dict[str, object]:
    """``a.b: v`` as the nested mapping a config file holds."""
    head, _, rest = key.partition(".")
    return {head: _file_doc(rest, value) if rest else value}


def _parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("setting", SETTINGS, ids=[s[0] for s in SETTINGS])
def test_every_command_takes_every_common_setting_three_ways(
    command: str,
    setting: tuple[str, str, object, str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    flag, given, merged, env, key = setting
    for name in [s[3] for s in SETTINGS] + ["CANARY_CONFIG"]:
        monkeypatch.delenv(name, raising=False)
    argv = [command, *COMMANDS[command]]
    if command in ("check", "run") and key != "prometheusUrl":  # they need one
        argv += ["--prometheus-url", "http://base:9090"]
    by_flag = _parse([*argv, flag, given])
    assert _value(config_of(by_flag), key) == merged
    monkeypatch.setenv(env, given)
    by_env = _parse(argv)
    assert _value(config_of(by_env), key) == merged
    monkeypatch.delenv(env)
    config = tmp_path / "canary.yaml"
    value: object = ["a", "b"] if key == "namespaces" else given
    if key == "port":
        value = int(given)
    config.write_text(yaml.safe_dump(_file_doc(key, value)))
    by_file = _parse([*argv, "--config", str(config)])
    assert _value(config_of(by_file), key) == merged
    # the file named by CANARY_CONFIG instead of --config
    monkeypatch.setenv("CANARY_CONFIG", str(config))
    assert _value(config_of(_parse(argv)), key) == merged


def test_a_flag_beats_the_environment_which_beats_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "canary.yaml"
    config.write_text("scrapeInterval: 30s\nport: 7000\nhelmBinary: /file/helm\n")
    monkeypatch.setenv("CANARY_SCRAPE_INTERVAL", "20s")
    monkeypatch.setenv("CANARY_PORT", "7001")
    args = _parse(["wait", "bookinfo/reviews", "--config", str(config), "--port", "7002"])
    merged = config_of(args)
    assert (merged.port, merged.scrape_interval, merged.helm_binary) == (
        7002,
        timedelta(seconds=20),
        "/file/helm",
    )


def test_a_bad_setting_is_a_usage_error_for_any_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANARY_PORT", "eighty")
    err = io.StringIO()
    assert main(["validate", "config/plans"], out=io.StringIO(), err=err) == exitcodes.USAGE
    assert "CANARY_PORT" in err.getvalue() and "not a port number" in err.getvalue()


SHORT_WINDOW_PLAN = Path(__file__).resolve().parents[1] / "config" / "plans" / "reviews.yaml"


def _short_window_plan(tmp_path: Path) -> Path:
    """The reviews plan judged over 10 s windows: fine at 1 s scrapes, not at 15 s ones."""
    doc = yaml.safe_load(SHORT_WINDOW_PLAN.read_text())
    doc["spec"]["analysis"].update(interval="5s", window="10s", settle="5s")
    path = tmp_path / "short.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_simulate_runs_at_the_scrape_interval_it_is_given(tmp_path: Path) -> None:
    plan = _short_window_plan(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["simulate", str(plan), "--scenario", "good", "--scrape-interval", "1s", "--tick", "1s"],
        out=out,
        err=err,
    )
    assert code == exitcodes.SUCCEEDED, out.getvalue()
    assert "warning" not in err.getvalue()


@pytest.mark.parametrize("command", ["simulate", "demo"])
def test_simulate_and_demo_warn_first_when_the_plan_cannot_be_judged(
    tmp_path: Path, command: str
) -> None:
    plan = _short_window_plan(tmp_path)
    argv = (
        ["simulate", str(plan), "--scenario", "good"]
        if command == "simulate"
        else ["demo", "--fast", "--plan", str(plan)]
    )
    out, err = io.StringIO(), io.StringIO()
    main(argv, out=out, err=err)
    warnings = [line for line in err.getvalue().splitlines() if line.startswith("warning:")]
    assert any("window 10s is shorter than two scrape intervals (30s)" in w for w in warnings)
    assert any("settle 5s is shorter than one scrape interval (15s)" in w for w in warnings)
