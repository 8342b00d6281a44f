"""Controller configuration: precedence, validation messages, flags (docs/design.md §5)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from canary.config import settings as config
from canary.config.load import load_config
from canary.config.settings import (
    ControllerConfig,
    LeaseConfig,
    Notifications,
    PrometheusAuth,
    SettingsError,
    add_common_flags,
)
from canary.core.durations import parse_duration
from canary.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config" / "canary.yaml"


def parse(argv: Sequence[str] = ()) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_common_flags(parser, daemon=True)
    return parser.parse_args(list(argv))


def load(
    argv: Sequence[str] = (), env: Mapping[str, str] | None = None, require: Sequence[str] = ()
) -> ControllerConfig:
    return load_config(parse(argv), env or {}, require=require)


def problems(argv: Sequence[str] = (), env: Mapping[str, str] | None = None) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        load(argv, env)
    return [str(p) for p in caught.value.problems]


class Files:
    """Writes config files into a test's temporary directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, text: str, name: str = "canary.yaml") -> str:
        path = self.root / name
        path.write_text(text)
        return str(path)


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)


# --- defaults and the example ----------------------------------------------------------------


def test_nothing_given_means_every_default() -> None:
    cfg = load()
    assert cfg == ControllerConfig()
    assert cfg.plans == "/etc/canary/plans"
    assert cfg.prometheus_url == ""
    assert cfg.scrape_interval == timedelta(seconds=15)
    assert cfg.helm_binary == "helm"
    assert cfg.namespaces == ()
    assert cfg.kubeconfig is None and cfg.context is None
    assert cfg.lease == LeaseConfig(
        "canary-leader",
        "canary-system",
        timedelta(seconds=15),
        timedelta(seconds=10),
        timedelta(seconds=2),
    )
    assert cfg.notifications == Notifications("", "")
    assert cfg.prometheus_auth == PrometheusAuth("", "", "", "")
    assert cfg.port == 8080
    assert cfg.log_format is None
    assert cfg.config_file is None
    assert set(cfg.origins.values()) == {"default"}


def test_lease_defaults_are_the_lease_adapters() -> None:
    from canary.adapters import lease

    assert config.DEFAULT_LEASE_DURATION == lease.DEFAULT_LEASE_DURATION
    assert config.DEFAULT_RENEW_DEADLINE == lease.DEFAULT_RENEW_DEADLINE
    assert config.DEFAULT_RETRY_PERIOD == lease.DEFAULT_RETRY_PERIOD


def test_the_example_config_loads_and_validates() -> None:
    cfg = load(["--config", str(EXAMPLE)], require=["prometheusUrl"])
    assert cfg.config_file == str(EXAMPLE)
    assert cfg.plans == "/etc/canary/plans"
    assert cfg.prometheus_url == "http://prometheus.istio-system:9090"
    assert cfg.scrape_interval == timedelta(seconds=15)
    assert cfg.prometheus_auth == PrometheusAuth()
    assert cfg.helm_binary == "/usr/local/bin/helm"
    assert cfg.namespaces == ()
    assert cfg.lease == LeaseConfig()
    assert cfg.notifications == Notifications()
    assert cfg.port == 8080
    assert cfg.log_format == "json"
    assert cfg.origins["helmBinary"] == str(EXAMPLE)
    assert cfg.origins["kubeconfig"] == "default"  # not in the example


def test_every_key_of_the_example_is_a_setting() -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    keys = {
        f"{k}.{sub}" if isinstance(v, dict) else k
        for k, v in data.items()
        for sub in (v if isinstance(v, dict) else [None])
    }
    assert keys <= set(config.flag_names())


def test_variables_are_named_after_the_flags() -> None:
    env = config.env_names()
    flags = config.flag_names()
    assert env["prometheusUrl"] == "CANARY_PROMETHEUS_URL"
    assert env["scrapeInterval"] == "CANARY_SCRAPE_INTERVAL"
    assert env["namespaces"] == "CANARY_NAMESPACE"
    assert env["port"] == "CANARY_PORT"
    assert env["helmBinary"] == "CANARY_HELM_BINARY"
    assert env["plans"] == "CANARY_PLANS"
    assert env["kubeconfig"] == "CANARY_KUBECONFIG"
    assert env["context"] == "CANARY_CONTEXT"
    assert env["logFormat"] == "CANARY_LOG_FORMAT"
    assert env["lease.renewDeadline"] == "CANARY_LEASE_RENEW_DEADLINE"
    assert env["prometheusAuth.bearerTokenFile"] == "CANARY_PROMETHEUS_BEARER_TOKEN_FILE"
    for key, flag in flags.items():
        assert env[key] == "CANARY_" + flag[2:].upper().replace("-", "_")


# --- precedence ------------------------------------------------------------------------------

S15, S30, M1 = timedelta(seconds=15), timedelta(seconds=30), timedelta(minutes=1)


@dataclass(frozen=True)
class Levels:
    """One setting given at every level: raw (file, env, flag) texts and the values expected
    when the default, the file, the variable and the flag win."""

    key: str
    raw: tuple[str, str, str]
    get: Callable[[ControllerConfig], object]
    want: tuple[object, object, object, object]


PRECEDENCE = [
    Levels("port", ("9000", "9001", "9002"), lambda c: c.port, (8080, 9000, 9001, 9002)),
    Levels(
        "scrapeInterval",
        ("30s", "1m", "5s"),
        lambda c: c.scrape_interval,
        (S15, S30, M1, timedelta(seconds=5)),
    ),
    Levels(
        "prometheusUrl",
        ("http://file:9090", "http://env:9090", "https://flag:9090"),
        lambda c: c.prometheus_url,
        ("", "http://file:9090", "http://env:9090", "https://flag:9090"),
    ),
    Levels(
        "helmBinary",
        ("/file/helm", "/env/helm", "/flag/helm"),
        lambda c: c.helm_binary,
        ("helm", "/file/helm", "/env/helm", "/flag/helm"),
    ),
    Levels(
        "logFormat",
        ("console", "json", "console"),
        lambda c: c.log_format,
        (None, "console", "json", "console"),
    ),
    Levels("plans", ("/f", "/e", "/x"), lambda c: c.plans, ("/etc/canary/plans", "/f", "/e", "/x")),
    Levels("kubeconfig", ("/f", "/e", "/x"), lambda c: c.kubeconfig, (None, "/f", "/e", "/x")),
    Levels("context", ("f", "e", "x"), lambda c: c.context, (None, "f", "e", "x")),
    Levels(
        "lease.duration",
        ("20s", "30s", "40s"),
        lambda c: c.lease.duration,
        (S15, timedelta(seconds=20), S30, timedelta(seconds=40)),
    ),
    Levels(
        "prometheusAuth.bearerTokenFile",
        ("/f/token", "/e/token", "/x/token"),
        lambda c: c.prometheus_auth.bearer_token_file,
        ("", "/f/token", "/e/token", "/x/token"),
    ),
    Levels(
        "notifications.webhookFile",
        ("/f/hook", "/e/hook", "/x/hook"),
        lambda c: c.notifications.webhook_file,
        ("", "/f/hook", "/e/hook", "/x/hook"),
    ),
]


def _yaml_for(key: str, value: str) -> str:
    if "." in key:
        group, sub = key.split(".")
        return f"{group}:\n  {sub}: {value}\n"
    return f"{key}: {value}\n"


@pytest.mark.parametrize("case", PRECEDENCE, ids=[c.key for c in PRECEDENCE])
def test_each_source_wins_over_the_ones_below(files: Files, case: Levels) -> None:
    in_file, in_env, in_flag = case.raw
    default, file_v, env_v, flag_v = case.want
    path = files.write(_yaml_for(case.key, in_file))
    env_name = config.env_names()[case.key]
    flag = config.flag_names()[case.key]

    def got(cfg: ControllerConfig) -> tuple[object, str]:
        return case.get(cfg), cfg.origins[case.key]

    assert got(load()) == (default, "default")
    assert got(load(["--config", path])) == (file_v, path)
    assert got(load(["--config", path], {env_name: in_env})) == (env_v, env_name)
    assert got(load(["--config", path, flag, in_flag], {env_name: in_env})) == (flag_v, flag)
    assert got(load([flag, in_flag])) == (flag_v, flag)  # a flag alone beats the default too
    assert got(load([], {env_name: in_env})) == (env_v, env_name)  # and so does a variable


def test_sources_merge_key_by_key(files: Files) -> None:
    path = files.write("port: 9000\nscrapeInterval: 30s\nhelmBinary: /file/helm\n")
    cfg = load(["--config", path, "--port", "9100"], {"CANARY_SCRAPE_INTERVAL": "1m"})
    assert (cfg.port, cfg.scrape_interval, cfg.helm_binary) == (
        9100,
        timedelta(minutes=1),
        "/file/helm",
    )
    assert cfg.plans == config.DEFAULT_PLANS
    assert cfg.origins["port"] == "--port"
    assert cfg.origins["scrapeInterval"] == "CANARY_SCRAPE_INTERVAL"
    assert cfg.origins["helmBinary"] == path
    assert cfg.origins["plans"] == "default"


def test_an_empty_variable_counts_as_unset(files: Files) -> None:
    path = files.write("port: 9000\n")
    cfg = load(["--config", path], {"CANARY_PORT": "", "CANARY_PROMETHEUS_URL": "  "})
    assert cfg.port == 9000 and cfg.prometheus_url == ""


def test_null_in_the_file_counts_as_unset(files: Files) -> None:
    path = files.write("port:\nprometheusAuth:\nlease:\n  duration: null\n")
    assert load(["--config", path]) == ControllerConfig()


def test_an_empty_file_gives_the_defaults(files: Files) -> None:
    assert load(["--config", files.write("# nothing yet\n")]) == ControllerConfig()


def test_config_file_from_the_environment(files: Files) -> None:
    by_env = files.write("port: 9000\n", "env.yaml")
    by_flag = files.write("port: 9100\n", "flag.yaml")
    cfg = load([], {"CANARY_CONFIG": by_env})
    assert (cfg.port, cfg.config_file) == (9000, by_env)
    cfg = load(["--config", by_flag], {"CANARY_CONFIG": by_env})
    assert (cfg.port, cfg.config_file) == (9100, by_flag)


# --- namespaces ------------------------------------------------------------------------------


def test_namespaces_from_repeated_flags() -> None:
    cfg = load(["--namespace", "bookinfo", "--namespace", "shop"])
    assert cfg.namespaces == ("bookinfo", "shop")


def test_namespaces_from_a_comma_separated_variable() -> None:
    cfg = load([], {"CANARY_NAMESPACE": "bookinfo, shop,,payments,"})
    assert cfg.namespaces == ("bookinfo", "shop", "payments")


def test_a_namespace_flag_may_hold_several_and_duplicates_are_dropped() -> None:
    cfg = load(["--namespace", "a,b", "--namespace", "a", "--namespace", "c"])
    assert cfg.namespaces == ("a", "b", "c")


def test_namespaces_from_the_file_and_replaced_whole_by_a_flag(files: Files) -> None:
    path = files.write("namespaces: [bookinfo, shop]\n")
    assert load(["--config", path]).namespaces == ("bookinfo", "shop")
    assert load(["--config", path], {"CANARY_NAMESPACE": "x"}).namespaces == ("x",)
    assert load(["--config", path, "--namespace", "y"]).namespaces == ("y",)


# --- validation: exact messages --------------------------------------------------------------

SOURCE_ERRORS = [
    pytest.param(
        {"CANARY_SCRAPE_INTERVAL": "15"},
        [],
        'CANARY_SCRAPE_INTERVAL: 15 is a bare number, not a duration (write "15s")',
        id="bare-number-env",
    ),
    pytest.param(
        {},
        ["--scrape-interval", "fast"],
        '--scrape-interval: "fast" is not a duration (write a number and a unit, one of ms, '
        's, m, h: e.g. "30s", "2m" or "1m30s")',
        id="not-a-duration-flag",
    ),
    pytest.param(
        {"CANARY_LEASE_DURATION": "0s"},
        [],
        'CANARY_LEASE_DURATION: 0s is not positive (write e.g. "15s")',
        id="zero-duration",
    ),
    pytest.param(
        {"CANARY_LEASE_RETRY_PERIOD": "-2s"},
        [],
        'CANARY_LEASE_RETRY_PERIOD: "-2s" is negative (durations cannot be negative; write '
        'e.g. "30s")',
        id="negative-duration",
    ),
    pytest.param(
        {"CANARY_PORT": "80a"},
        [],
        'CANARY_PORT: "80a" is not a port number (write a whole number from 1 to 65535)',
        id="port-not-a-number",
    ),
    pytest.param(
        {},
        ["--port", "70000"],
        "--port: 70000 is not a port number (write a whole number from 1 to 65535)",
        id="port-too-high",
    ),
    pytest.param(
        {"CANARY_PORT": "0"},
        [],
        "CANARY_PORT: 0 is not a port number (write a whole number from 1 to 65535)",
        id="port-zero",
    ),
    pytest.param(
        {"CANARY_LOG_FORMAT": "text"},
        [],
        'CANARY_LOG_FORMAT: "text" is not a log format (choose json or console)',
        id="log-format",
    ),
    pytest.param(
        {},
        ["--prometheus-url", "ftp://prom:9090"],
        '--prometheus-url: "ftp://prom:9090" has scheme ftp; Prometheus is reached over http '
        'or https (write e.g. "http://prometheus.istio-system:9090")',
        id="url-scheme",
    ),
    pytest.param(
        {"CANARY_PROMETHEUS_URL": "prometheus:9090"},
        [],
        'CANARY_PROMETHEUS_URL: "prometheus:9090" is not a URL (write "http://prometheus:9090")',
        id="url-without-scheme",
    ),
    pytest.param(
        {"CANARY_PROMETHEUS_URL": "http:/prom:9090"},
        [],
        'CANARY_PROMETHEUS_URL: "http:/prom:9090" is not a URL (write "http://prom:9090")',
        id="url-slash-missing",
    ),
    pytest.param(
        {},
        ["--prometheus-url", "HTTPS:prom"],
        '--prometheus-url: "HTTPS:prom" is not a URL (write "https://prom")',
        id="url-slashes-missing",
    ),
    pytest.param(
        {"CANARY_PROMETHEUS_URL": "http://"},
        [],
        'CANARY_PROMETHEUS_URL: "http://" has no host (write e.g. '
        '"http://prometheus.istio-system:9090")',
        id="url-without-host",
    ),
    pytest.param(
        {"CANARY_PROMETHEUS_URL": "http://prom:99999"},
        [],
        'CANARY_PROMETHEUS_URL: "http://prom:99999" is not a URL: port "99999" is not a number '
        'from 1 to 65535 (write e.g. "http://prometheus.istio-system:9090")',
        id="url-bad-port",
    ),
    pytest.param(
        {"CANARY_NAMESPACE": "bookinfo,Shop_1"},
        [],
        'CANARY_NAMESPACE: "Shop_1" is not a valid namespace name (DNS-1123 label) (use '
        'lower-case letters, digits and "-", starting and ending with a letter or digit, '
        'e.g. "shop-1")',
        id="namespace-invalid",
    ),
    pytest.param(
        {},
        ["--namespace", "a" * 64],
        f'--namespace: "{"a" * 64}" is 64 characters long; a namespace name (DNS-1123 label) '
        "has at most 63 (shorten it)",
        id="namespace-too-long",
    ),
    pytest.param(
        {"CANARY_LEASE_NAMESPACE": "canary.system"},
        [],
        'CANARY_LEASE_NAMESPACE: "canary.system" is not a valid namespace name (DNS-1123 '
        'label) (use lower-case letters, digits and "-", starting and ending with a letter or '
        'digit, e.g. "canary-system")',
        id="lease-namespace",
    ),
    pytest.param(
        {},
        ["--lease-name", "Canary Leader"],
        '--lease-name: "Canary Leader" is not a valid Kubernetes name (DNS-1123 subdomain) '
        '(use lower-case letters, digits, "-" and ".", starting and ending with a letter or '
        'digit, e.g. "canary-leader")',
        id="lease-name",
    ),
    pytest.param(
        {},
        ["--helm-binary", ""],
        "--helm-binary: empty (give a path or command name, or leave the setting out for its "
        "default)",
        id="empty-helm-binary",
    ),
    pytest.param(
        {"CANARY_LEASE_RENEW_DEADLINE": "20s"},
        [],
        "CANARY_LEASE_RENEW_DEADLINE: 20s must be shorter than lease.duration (15s) (a leader "
        "must stop acting before another may take the Lease)",
        id="renew-deadline-vs-default-duration",
    ),
    pytest.param(
        {"CANARY_LEASE_DURATION": "5s"},
        [],
        "CANARY_LEASE_DURATION: 5s must be longer than lease.renewDeadline (10s, the default) "
        "(a leader must stop acting before another may take the Lease)",
        id="duration-vs-default-renew-deadline",
    ),
    pytest.param(
        {},
        ["--lease-retry-period", "10s"],
        "--lease-retry-period: 10s must be shorter than lease.renewDeadline (10s) (a leader "
        "must get several tries to renew before it gives up)",
        id="retry-period-vs-renew-deadline",
    ),
]


@pytest.mark.parametrize(("env", "argv", "expected"), SOURCE_ERRORS)
def test_a_bad_flag_or_variable_is_named_with_the_fix(
    env: dict[str, str], argv: list[str], expected: str
) -> None:
    assert problems(argv, env) == [expected]


def test_a_url_with_credentials_is_refused_without_echoing_them() -> None:
    found = problems(["--prometheus-url", "http://admin:hunter2@prom:9090"])
    assert found == [
        '--prometheus-url: "http://***@prom:9090" carries credentials (remove them from the '
        "URL: set prometheusAuth.username and name a file holding the password in "
        "prometheusAuth.passwordFile)"
    ]
    assert "hunter2" not in found[0]


FILE_ERRORS = [
    pytest.param(
        "lease:\n  duration: 15s\n  renewDeadline: 20s\n",
        "lease.renewDeadline: 20s must be shorter than lease.duration (15s) (a leader must stop "
        "acting before another may take the Lease)",
        id="renew-deadline",
    ),
    pytest.param(
        "scrapeIntervall: 15s\n",
        "scrapeIntervall: unknown key (did you mean scrapeInterval?)",
        id="unknown-key-typo",
    ),
    pytest.param(
        "prometheus_url: http://p:9090\n",
        "prometheus_url: unknown key (did you mean prometheusUrl?)",
        id="unknown-key-snake-case",
    ),
    pytest.param(
        "lease:\n  retryPerod: 5s\n",
        "lease.retryPerod: unknown key (did you mean retryPeriod?)",
        id="unknown-nested-key",
    ),
    pytest.param(
        "colour: blue\n",
        "colour: unknown key (known keys here: plans, prometheusUrl, scrapeInterval, "
        "prometheusAuth, helmBinary, namespaces, kubeconfig, context, lease, kubeApi, "
        "notifications, port, logFormat)",
        id="unknown-key-far-off",
    ),
    pytest.param(
        "scrapeInterval: 15\n",
        'scrapeInterval: 15 is a bare number, not a duration (write "15s")',
        id="bare-number",
    ),
    pytest.param(
        "port: '8080'\n",
        'port: expected a port number, got the string "8080" (write a whole number from 1 to '
        "65535, without quotes)",
        id="quoted-port",
    ),
    pytest.param(
        "port: 65536\n",
        "port: 65536 is not a port number (write a whole number from 1 to 65535)",
        id="port-range",
    ),
    pytest.param(
        "logFormat: pretty\n",
        'logFormat: "pretty" is not a log format (choose json or console)',
        id="log-format",
    ),
    pytest.param(
        "prometheusUrl: https://\n",
        'prometheusUrl: "https://" has no host (write e.g. "http://prometheus.istio-system:9090")',
        id="url-host",
    ),
    pytest.param(
        "namespaces: bookinfo\n",
        'namespaces: expected a list of namespaces, got the string "bookinfo" (write e.g. '
        "namespaces: [bookinfo])",
        id="namespaces-not-a-list",
    ),
    pytest.param(
        "namespaces: [ok, Bad, 3]\n",
        'namespaces[1]: "Bad" is not a valid namespace name (DNS-1123 label) (use lower-case '
        'letters, digits and "-", starting and ending with a letter or digit, e.g. "bad")\n'
        "namespaces[2]: expected a namespace name, got the number 3",
        id="namespaces-items",
    ),
    pytest.param(
        "lease: 15s\n",
        'lease: expected a mapping, got the string "15s" (give its keys: name, namespace, '
        "duration, renewDeadline, retryPeriod)",
        id="group-not-a-mapping",
    ),
    pytest.param(
        "helmBinary: 3\n",
        'helmBinary: expected a path or command name, got the number 3 (quote it: "3")',
        id="string-expected",
    ),
    pytest.param(
        "notifications:\n  webhookFile: [a]\n",
        "notifications.webhookFile: expected a file path, got a list",
        id="file-path-expected",
    ),
    pytest.param(
        "- port: 8080\n",
        "(file): expected a mapping of settings, got a list (see config/canary.yaml for an "
        "example)",
        id="not-a-mapping",
    ),
    pytest.param(
        "port: 8080\nport: 9090\n",
        "port: duplicate key (YAML keeps only the last value and drops the others; remove the "
        "extra ones)",
        id="duplicate-key",
    ),
    pytest.param(
        "port: [8080\n",
        "line 2, column 1: invalid YAML: expected ',' or ']', but got '<stream end>' (while "
        "parsing a flow sequence) (check the indentation, quoting and colons here)",
        id="yaml-syntax",
    ),
]


@pytest.mark.parametrize(("text", "expected"), FILE_ERRORS)
def test_a_bad_file_is_named_with_the_key_path_and_the_fix(
    files: Files,
    text: str,
    expected: str,
) -> None:
    path = files.write(text)
    assert problems(["--config", path]) == [f"{path}: {line}" for line in expected.splitlines()]


def test_every_problem_of_every_source_at_once(files: Files) -> None:
    path = files.write("port: 0\nlogFormat: pretty\nscrapeIntervall: 15s\n")
    found = problems(
        ["--config", path, "--prometheus-url", "prom:9090"],
        {"CANARY_SCRAPE_INTERVAL": "15", "CANARY_NAMESPACE": "Shop"},
    )
    # the file's shape first, then setting by setting in the order of config/canary.yaml
    assert found == [
        f"{path}: scrapeIntervall: unknown key (did you mean scrapeInterval?)",
        '--prometheus-url: "prom:9090" is not a URL (write "http://prom:9090")',
        'CANARY_SCRAPE_INTERVAL: 15 is a bare number, not a duration (write "15s")',
        'CANARY_NAMESPACE: "Shop" is not a valid namespace name (DNS-1123 label) (use '
        'lower-case letters, digits and "-", starting and ending with a letter or digit, '
        'e.g. "shop")',
        f"{path}: port: 0 is not a port number (write a whole number from 1 to 65535)",
        f'{path}: logFormat: "pretty" is not a log format (choose json or console)',
    ]


def test_an_overridden_bad_value_is_still_reported(files: Files) -> None:
    path = files.write("port: 0\n")
    assert problems(["--config", path, "--port", "9000"]) == [
        f"{path}: port: 0 is not a port number (write a whole number from 1 to 65535)"
    ]


def test_settings_error_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="CANARY_PORT"):
        load([], {"CANARY_PORT": "x"})


def test_a_missing_config_file_names_the_path_and_where_it_came_from(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    assert problems(["--config", missing]) == [
        f"{missing}: (file): cannot read the config file: No such file or directory (check the "
        "path given by --config)"
    ]
    assert problems([], {"CANARY_CONFIG": missing}) == [
        f"{missing}: (file): cannot read the config file: No such file or directory (check the "
        "path given by CANARY_CONFIG)"
    ]


def test_a_missing_file_does_not_hide_other_problems(tmp_path: Path) -> None:
    found = problems(["--config", str(tmp_path / "nope.yaml"), "--port", "x"])
    assert len(found) == 2 and found[1].startswith("--port: ")


def test_required_settings() -> None:
    assert problems_required() == [
        "prometheusUrl: not set (pass --prometheus-url, set CANARY_PROMETHEUS_URL or add "
        "prometheusUrl to the --config file)"
    ]
    cfg = load([], {"CANARY_PROMETHEUS_URL": "http://p:9090"}, require=["prometheusUrl"])
    assert cfg.prometheus_url == "http://p:9090"
    with pytest.raises(ValueError, match="no such setting: prometheus"):
        load(require=["prometheus"])


def problems_required() -> list[str]:
    with pytest.raises(SettingsError) as caught:
        load(require=["prometheusUrl"])
    return [str(p) for p in caught.value.problems]


# --- secrets ---------------------------------------------------------------------------------


def test_the_config_holds_paths_never_secrets(files: Files, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cr3t-token")
    webhook = tmp_path / "hook"
    webhook.write_text("https://hooks.slack.com/services/T000/B000/XXXX")
    path = files.write(
        f"prometheusAuth:\n  bearerTokenFile: {token}\n  username: ops\n"
        f"  passwordFile: {token}\nnotifications:\n  slackWebhookFile: {webhook}\n"
    )
    cfg = load(["--config", path])
    assert cfg.prometheus_auth.bearer_token_file == str(token)
    for text in (repr(cfg), str(cfg.describe())):
        assert "s3cr3t" not in text and "hooks.slack.com" not in text
        assert str(token) in text


# --- describe --------------------------------------------------------------------------------


def test_describe_is_a_config_file_that_loads_back(files: Files) -> None:
    cfg = load(
        [
            "--namespace",
            "bookinfo,shop",
            "--prometheus-url",
            "http://p:9090",
            "--lease-duration",
            "1m30s",
            "--kubeconfig",
            "/k",
            "--log-format",
            "console",
        ],
        {"CANARY_PORT": "9100"},
    )
    described = cfg.describe()
    assert described["lease"]["duration"] == "1m30s"
    assert described["namespaces"] == ["bookinfo", "shop"]
    again = load(["--config", files.write(yaml.safe_dump(described))])
    assert again == cfg


# --- flags -----------------------------------------------------------------------------------


def test_flags_default_to_none_so_not_given_is_visible() -> None:
    args = parse()
    for dest in (
        "config",
        "plans_dir",
        "prometheus_url",
        "scrape_interval",
        "helm_binary",
        "namespaces",
        "kubeconfig",
        "context",
        "port",
        "log_format",
        "lease_duration",
        "slack_webhook_file",
    ):
        assert getattr(args, dest) is None, dest


def test_design_common_flags_are_always_added_daemon_flags_on_request() -> None:
    parser = argparse.ArgumentParser()
    add_common_flags(parser)
    flags = {s for a in parser._actions for s in a.option_strings}
    assert {
        "--config",
        "--plans",
        "--prometheus-url",
        "--scrape-interval",
        "--helm-binary",
        "--namespace",
        "--kubeconfig",
        "--context",
        "--port",
        "--log-format",
        "--prometheus-bearer-token-file",
    } <= flags
    assert "--lease-duration" not in flags and "--webhook-file" not in flags
    parser = argparse.ArgumentParser()
    add_common_flags(parser, prometheus_auth=False)
    assert "--prometheus-ca-file" not in {s for a in parser._actions for s in a.option_strings}


def test_exclude_avoids_a_clash_and_reads_the_callers_own_flag() -> None:
    """cli.py's top-level parser already has --log-format, and `check` a typed
    --scrape-interval: excluded here, their values are still read from the namespace."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--log-format", choices=["json", "console", "off"], default=None)
    sub = parser.add_subparsers(dest="command")
    check = sub.add_parser("check")
    check.add_argument("--scrape-interval", type=parse_duration, default=None)
    add_common_flags(check, exclude=["--log-format", "--scrape-interval"])
    args = parser.parse_args(["--log-format", "console", "check", "--scrape-interval", "30s"])
    cfg = load_config(args, {"CANARY_SCRAPE_INTERVAL": "1m"})
    assert cfg.log_format == "console"
    assert cfg.scrape_interval == timedelta(seconds=30)
    assert cfg.origins["scrapeInterval"] == "--scrape-interval"


def test_without_exclude_the_clash_is_argparses_error() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port")
    with pytest.raises(argparse.ArgumentError):
        add_common_flags(parser)


def test_excluding_an_unknown_flag_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="no such controller flag: --colour"):
        add_common_flags(argparse.ArgumentParser(), exclude=["--colour"])


def test_plans_flag_does_not_collide_with_validates_positional_plans() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("plans", nargs="+")
    add_common_flags(parser)
    args = parser.parse_args(["a.yaml", "b.yaml", "--plans", "/srv/plans"])
    assert args.plans == ["a.yaml", "b.yaml"]
    assert load_config(args, {}).plans == "/srv/plans"


def test_a_whole_command_line(files: Files) -> None:
    path = files.write(EXAMPLE.read_text())
    cfg = load(
        [
            "--config",
            path,
            "--namespace",
            "bookinfo",
            "--context",
            "kind-dev",
            "--prometheus-ca-file",
            "/ca.pem",
            "--webhook-file",
            "/hook",
            "--lease-namespace",
            "ops",
        ],
        {"CANARY_LOG_FORMAT": "console", "CANARY_PROMETHEUS_USERNAME": "ops"},
    )
    assert cfg.namespaces == ("bookinfo",)
    assert cfg.context == "kind-dev"
    assert cfg.prometheus_auth == PrometheusAuth(ca_file="/ca.pem", username="ops")
    assert cfg.notifications.webhook_file == "/hook"
    assert cfg.lease.namespace == "ops"
    assert cfg.log_format == "console"
    assert cfg.helm_binary == "/usr/local/bin/helm"  # from the file


def test_a_required_setting_given_wrong_is_reported_once_not_also_as_missing() -> None:
    def required(argv: list[str]) -> list[str]:
        with pytest.raises(SettingsError) as caught:
            load(argv, require=["prometheusUrl"])
        return [str(p) for p in caught.value.problems]

    assert required(["--prometheus-url", "prom:9090"]) == [
        '--prometheus-url: "prom:9090" is not a URL (write "http://prom:9090")'
    ]
    assert required(["--prometheus-url", ""])[0].startswith("prometheusUrl: not set")
