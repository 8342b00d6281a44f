"""Controller configuration (DESIGN §5): the settings of the controller itself, never of a plan.

Every setting has a key in the config file (camelCase, nested as in ``config/canary.yaml``), a
command-line flag, and an environment variable named after the flag: ``CANARY_`` + the flag in
upper case with ``_`` for ``-`` (``--lease-renew-deadline`` → ``CANARY_LEASE_RENEW_DEADLINE``)::

    key in the file                  flag
    plans                            --plans DIR
    prometheusUrl                    --prometheus-url URL
    scrapeInterval                   --scrape-interval DURATION
    prometheusAuth.bearerTokenFile   --prometheus-bearer-token-file FILE
    prometheusAuth.caFile            --prometheus-ca-file FILE
    prometheusAuth.username          --prometheus-username USER
    prometheusAuth.passwordFile      --prometheus-password-file FILE
    helmBinary                       --helm-binary PATH
    namespaces                       --namespace NS (repeatable; CANARY_NAMESPACE=a,b,c)
    kubeconfig                       --kubeconfig FILE
    context                          --context NAME
    lease.name                       --lease-name NAME
    lease.namespace                  --lease-namespace NS
    lease.duration                   --lease-duration DURATION
    lease.renewDeadline              --lease-renew-deadline DURATION
    lease.retryPeriod                --lease-retry-period DURATION
    notifications.slackWebhookFile   --slack-webhook-file FILE
    notifications.webhookFile        --webhook-file FILE
    port                             --port N
    logFormat                        --log-format json|console
    (the file itself)                --config FILE

Precedence, for each setting on its own, highest first:

1. the command-line flag;
2. the environment variable ``CANARY_<FLAG>`` (an empty variable counts as unset);
3. the config file named by ``--config`` (else ``CANARY_CONFIG``): YAML, camelCase keys;
   a key given as ``null`` counts as unset;
4. the built-in default (the ``DEFAULT_*`` constants below, each with its reason).

A setting is taken whole from the highest source that gives it: ``--namespace`` given twice
replaces the file's ``namespaces`` list, it does not add to it. Every value that is given is
validated, even one a higher source overrides, and every problem of every source is reported
at once (:class:`SettingsError`), each naming its source (the flag, the variable, or the file and
the key path), what is wrong and how to fix it.

Secrets never live here: credentials and webhook URLs are named by **file paths**, read by the
adapter that uses them each time it needs them (so a rotated Secret is picked up), and never
logged. A Prometheus URL carrying ``user:password@`` is rejected for the same reason. Relative
paths are relative to the working directory, not to the config file.

This module only reads and validates; nothing here opens a connection or runs helm.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast
from urllib.parse import urlsplit

import yaml

from canary.core.durations import format_duration, parse_duration
from canary.core.errors import ConfigError, Problem

# Shared wording with plan validation: "did you mean …?", "got the number 3".
from canary.core.wording import got as _got
from canary.core.wording import show as _show
from canary.core.wording import suggest_key as _suggest_key

# --- defaults --------------------------------------------------------------------------------

#: Where the controller's Deployment mounts the plans ConfigMap (config/canary.yaml).
DEFAULT_PLANS = "/etc/canary/plans"
#: No default: a guessed Prometheus would turn every check into ERROR instead of saying what
#: is missing. Commands that query Prometheus ask for it with ``load_config(require=...)``.
DEFAULT_PROMETHEUS_URL = ""
#: Istio's Prometheus scrapes every 15 s (DESIGN §5); windows are rounded to multiples of it.
DEFAULT_SCRAPE_INTERVAL = timedelta(seconds=15)
#: The image ships helm on PATH (DESIGN §7); an absolute path pins one binary.
DEFAULT_HELM_BINARY = "helm"
#: Empty means every namespace: one controller serves the whole mesh unless told otherwise.
DEFAULT_NAMESPACES: tuple[str, ...] = ()
#: None: in-cluster credentials in a pod, else the kubernetes client's own ``KUBECONFIG`` /
#: ``~/.kube/config`` and its current context (canary.adapters.kube.connect).
DEFAULT_KUBECONFIG: str | None = None
DEFAULT_CONTEXT: str | None = None
#: One Lease per installation; replicas of one controller compete for it.
DEFAULT_LEASE_NAME = "canary-leader"
#: The namespace the controller is installed in by convention. Installed elsewhere, set
#: CANARY_LEASE_NAMESPACE from the pod's namespace (downward API).
DEFAULT_LEASE_NAMESPACE = "canary-system"
#: client-go's leader-election defaults (canary.adapters.lease, whose constants these equal;
#: not imported, so that reading a config does not load the kubernetes client): a crashed
#: leader is replaced after 15 s, a leader that cannot renew for 10 s stops acting before
#: anyone else may take over, and it tries every 2 s.
DEFAULT_LEASE_DURATION = timedelta(seconds=15)
DEFAULT_RENEW_DEADLINE = timedelta(seconds=10)
DEFAULT_RETRY_PERIOD = timedelta(seconds=2)
#: The usual unprivileged port for health and metrics: the container runs as non-root and
#: cannot bind below 1024.
DEFAULT_PORT = 8080
#: None: console on a TTY, JSON lines otherwise (DESIGN §6; canary.core.events.configure_logging).
DEFAULT_LOG_FORMAT: str | None = None

LOG_FORMATS = ("json", "console")
#: Same bound as plan files: a controller config is a few hundred bytes.
MAX_CONFIG_BYTES = 1024 * 1024
ENV_PREFIX = "CANARY_"
#: Where ``--config`` and ``CANARY_CONFIG`` come from; not a key in the file.
CONFIG_FLAG = "--config"
CONFIG_ENV = "CANARY_CONFIG"


# --- the configuration -----------------------------------------------------------------------


@dataclass(frozen=True)
class PrometheusAuth:
    """How to authenticate to Prometheus: file paths only, read on every batch of queries."""

    bearer_token_file: str = ""
    ca_file: str = ""  # a CA bundle for https
    username: str = ""  # basic auth; the password comes from password_file
    password_file: str = ""


@dataclass(frozen=True)
class LeaseConfig:
    """The Lease the replicas compete for (canary.adapters.lease.LeaderElector)."""

    name: str = DEFAULT_LEASE_NAME
    namespace: str = DEFAULT_LEASE_NAMESPACE
    duration: timedelta = DEFAULT_LEASE_DURATION
    renew_deadline: timedelta = DEFAULT_RENEW_DEADLINE
    retry_period: timedelta = DEFAULT_RETRY_PERIOD


@dataclass(frozen=True)
class Notifications:
    """Where alerts go: files holding the webhook URLs (a webhook URL is a secret). Empty: none."""

    slack_webhook_file: str = ""
    webhook_file: str = ""


@dataclass(frozen=True)
class ControllerConfig:
    """Every controller setting, merged from flags, environment, config file and defaults."""

    plans: str = DEFAULT_PLANS
    prometheus_url: str = DEFAULT_PROMETHEUS_URL
    scrape_interval: timedelta = DEFAULT_SCRAPE_INTERVAL
    prometheus_auth: PrometheusAuth = PrometheusAuth()
    helm_binary: str = DEFAULT_HELM_BINARY
    namespaces: tuple[str, ...] = DEFAULT_NAMESPACES
    kubeconfig: str | None = DEFAULT_KUBECONFIG
    context: str | None = DEFAULT_CONTEXT
    lease: LeaseConfig = LeaseConfig()
    notifications: Notifications = Notifications()
    port: int = DEFAULT_PORT
    log_format: str | None = DEFAULT_LOG_FORMAT
    #: the config file that was read, if any
    config_file: str | None = field(default=None, compare=False)
    #: where each setting came from, by key path: "default", a flag, a variable or a file path
    origins: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def describe(self) -> dict[str, Any]:
        """The settings as the config file spells them, for a startup log line.

        The result is itself a valid config file (``yaml.safe_dump`` it). It holds no secret:
        the configuration holds none.
        """
        auth, lease, notes = self.prometheus_auth, self.lease, self.notifications
        return {
            "plans": self.plans,
            "prometheusUrl": self.prometheus_url,
            "scrapeInterval": format_duration(self.scrape_interval),
            "prometheusAuth": {
                "bearerTokenFile": auth.bearer_token_file,
                "caFile": auth.ca_file,
                "username": auth.username,
                "passwordFile": auth.password_file,
            },
            "helmBinary": self.helm_binary,
            "namespaces": list(self.namespaces),
            "kubeconfig": self.kubeconfig,
            "context": self.context,
            "lease": {
                "name": lease.name,
                "namespace": lease.namespace,
                "duration": format_duration(lease.duration),
                "renewDeadline": format_duration(lease.renew_deadline),
                "retryPeriod": format_duration(lease.retry_period),
            },
            "notifications": {
                "slackWebhookFile": notes.slack_webhook_file,
                "webhookFile": notes.webhook_file,
            },
            "port": self.port,
            "logFormat": self.log_format,
        }


class SettingsError(ConfigError):
    """The controller configuration is invalid; ``problems`` lists every problem at once."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


# --- values ----------------------------------------------------------------------------------


class _Invalid(Exception):
    """A value is wrong. ``items``: (suffix of the key path, message, fix), one per problem."""

    def __init__(self, message: str = "", fix: str = "", suffix: str = "") -> None:
        super().__init__(message)
        self.items = [(suffix, message, fix)] if message else []


#: A parser gets the raw value and whether it came as text (a flag or a variable) rather
#: than as a typed YAML value; flags defined elsewhere may hand over values already parsed.
_Parser = Callable[[object, bool], object]


def _string(value: object, what: str) -> str:
    if not isinstance(value, str):
        fix = f'quote it: "{_show(value)}"' if isinstance(value, int | float) else ""
        raise _Invalid(f"expected {what}, got {_got(value)}", fix)
    return value


def _required_string(what: str) -> _Parser:
    def parse(value: object, text: bool) -> str:
        out = _string(value, what)
        if not out.strip():
            raise _Invalid("empty", f"give {what}, or leave the setting out for its default")
        return out

    return parse


def _optional_string(what: str) -> _Parser:
    """A file path or name that may be empty (= none)."""

    def parse(value: object, text: bool) -> str:
        return _string(value, what)

    return parse


def _optional_name(what: str) -> _Parser:
    """A value whose absence is None (kubeconfig, context): empty means the default."""

    def parse(value: object, text: bool) -> str | None:
        return _string(value, what) or None

    return parse


def _duration(value: object, text: bool) -> timedelta:
    if isinstance(value, timedelta):
        duration = value
    elif isinstance(value, str) or (isinstance(value, int | float) and not isinstance(value, bool)):
        try:
            duration = parse_duration(str(value))
        except ValueError as exc:
            raise _Invalid(str(exc)) from None
    else:
        raise _Invalid(f'expected a duration such as "15s", got {_got(value)}')
    if duration <= timedelta(0):
        raise _Invalid(f"{format_duration(duration)} is not positive", 'write e.g. "15s"')
    return duration


def _port(value: object, text: bool) -> int:
    fix = "write a whole number from 1 to 65535"
    if text and isinstance(value, str):
        if not re.fullmatch(r"[0-9]+", value):
            raise _Invalid(f"{_show(value)} is not a port number", fix)
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        extra = ", without quotes" if isinstance(value, str) else ""
        raise _Invalid(f"expected a port number, got {_got(value)}", fix + extra)
    if not 1 <= value <= 65535:
        raise _Invalid(f"{value} is not a port number", fix)
    return value


def _log_format(value: object, text: bool) -> str:
    out = _string(value, "json or console")
    if out not in LOG_FORMATS:
        raise _Invalid(f"{_show(out)} is not a log format", "choose json or console")
    return out


_URL_EXAMPLE = '"http://prometheus.istio-system:9090"'


def _url(value: object, text: bool) -> str:
    url = _string(value, "a URL")
    if url == "":
        return url  # unset; commands that need it say so (load_config require=)
    if "://" not in url:
        raise _Invalid(f"{_show(url)} is not a URL", f'write "http://{url}"')
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError as exc:
        raise _Invalid(f"{_show(url)} is not a URL: {exc}", f"write e.g. {_URL_EXAMPLE}") from None
    if "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        shown = f"{parts.scheme}://***@{host}"  # never echo the password
        raise _Invalid(
            f"{_show(shown)} carries credentials",
            "remove them from the URL: set prometheusAuth.username and name a file holding "
            "the password in prometheusAuth.passwordFile",
        )
    if parts.scheme not in ("http", "https"):
        raise _Invalid(
            f"{_show(url)} has scheme {parts.scheme}; Prometheus is reached over http or https",
            f"write e.g. {_URL_EXAMPLE}",
        )
    if not parts.hostname:
        raise _Invalid(f"{_show(url)} has no host", f"write e.g. {_URL_EXAMPLE}")
    return url


_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SUBDOMAIN = re.compile(rf"{_LABEL.pattern}(\.{_LABEL.pattern})*")


def _dns_name(text: str, *, subdomain: bool, suffix: str = "") -> _Invalid | None:
    """Whether ``text`` is a DNS-1123 label (a namespace) or subdomain (an object name)."""
    what, pattern, limit = (
        ("Kubernetes name (DNS-1123 subdomain)", _SUBDOMAIN, 253)
        if subdomain
        else ("namespace name (DNS-1123 label)", _LABEL, 63)
    )
    if len(text) > limit:
        return _Invalid(
            f"{_show(text)} is {len(text)} characters long; a {what} has at most {limit}",
            "shorten it",
            suffix,
        )
    if pattern.fullmatch(text):
        return None
    chars = (
        'lower-case letters, digits, "-" and "."'
        if subdomain
        else 'lower-case letters, digits and "-"'
    )
    candidate = re.sub(r"[^a-z0-9.-]" if subdomain else r"[^a-z0-9-]", "-", text.lower())
    candidate = re.sub(r"-{2,}", "-", candidate).strip("-.")[:limit].strip("-.")
    example = f', e.g. "{candidate}"' if candidate and pattern.fullmatch(candidate) else ""
    return _Invalid(
        f"{_show(text)} is not a valid {what}",
        f"use {chars}, starting and ending with a letter or digit{example}",
        suffix,
    )


def _kube_name(subdomain: bool) -> _Parser:
    def parse(value: object, text: bool) -> str:
        name = _string(value, "a name")
        if not name.strip():
            raise _Invalid("empty", "give a name, or leave the setting out for its default")
        problem = _dns_name(name, subdomain=subdomain)
        if problem is not None:
            raise problem
        return name

    return parse


def _namespaces(value: object, text: bool) -> tuple[str, ...]:
    """A YAML list; text is comma-separated; flags give a list of texts (``--namespace`` is
    repeatable and each may hold several). Duplicates are dropped, order is kept."""
    items: list[tuple[str, object]] = []  # (path suffix, value)
    if text and isinstance(value, str):
        items = [("", part) for part in value.split(",")]
    elif text and isinstance(value, list | tuple):
        items = [("", part) for given in value for part in str(given).split(",")]
    elif isinstance(value, list | tuple):
        items = [(f"[{i}]", item) for i, item in enumerate(value)]
    else:
        shown = f"[{value}]" if isinstance(value, str) else "[bookinfo, shop]"
        raise _Invalid(
            f"expected a list of namespaces, got {_got(value)}", f"write e.g. namespaces: {shown}"
        )
    invalid = _Invalid()
    out: list[str] = []
    for suffix, item in items:
        if not isinstance(item, str):
            invalid.items.append((suffix, f"expected a namespace name, got {_got(item)}", ""))
            continue
        name = item.strip() if text else item
        if text and not name:
            continue  # "a,,b" or a trailing comma
        problem = _dns_name(name, subdomain=False, suffix=suffix)
        if problem is not None:
            invalid.items.extend(problem.items)
        elif name not in out:
            out.append(name)
    if invalid.items:
        raise invalid
    return tuple(out)


# --- the settings table ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Setting:
    key: str  # path in the config file, e.g. lease.renewDeadline
    flag: str  # e.g. --lease-renew-deadline; the variable is CANARY_LEASE_RENEW_DEADLINE
    parse: _Parser
    default: object
    group: str  # "common" (DESIGN §5), "auth" (Prometheus), "daemon" (canary run)
    metavar: str
    help: str
    default_help: str = ""  # the default in words, where it is not a value
    dest_override: str = ""
    repeatable: bool = False

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.flag.removeprefix("--").upper().replace("-", "_")

    @property
    def dest(self) -> str:
        return self.dest_override or self.flag.removeprefix("--").replace("-", "_")


_SETTINGS: tuple[_Setting, ...] = (
    _Setting(
        "plans",
        "--plans",
        _required_string("a directory"),
        DEFAULT_PLANS,
        "common",
        "DIR",
        "directory of RolloutPlan files (a mounted ConfigMap)",
        # not "plans": `canary validate PLAN...` names its positional arguments so
        dest_override="plans_dir",
    ),
    _Setting(
        "prometheusUrl",
        "--prometheus-url",
        _url,
        DEFAULT_PROMETHEUS_URL,
        "common",
        "URL",
        "Prometheus base URL, http or https",
    ),
    _Setting(
        "scrapeInterval",
        "--scrape-interval",
        _duration,
        DEFAULT_SCRAPE_INTERVAL,
        "common",
        "DURATION",
        "Prometheus's scrape interval; windows are rounded down to multiples of it",
    ),
    _Setting(
        "prometheusAuth.bearerTokenFile",
        "--prometheus-bearer-token-file",
        _optional_string("a file path"),
        "",
        "auth",
        "FILE",
        "file holding a bearer token for Prometheus (read on use, never logged)",
    ),
    _Setting(
        "prometheusAuth.caFile",
        "--prometheus-ca-file",
        _optional_string("a file path"),
        "",
        "auth",
        "FILE",
        "CA bundle for an https Prometheus",
    ),
    _Setting(
        "prometheusAuth.username",
        "--prometheus-username",
        _optional_string("a user name"),
        "",
        "auth",
        "USER",
        "basic-auth user for Prometheus",
    ),
    _Setting(
        "prometheusAuth.passwordFile",
        "--prometheus-password-file",
        _optional_string("a file path"),
        "",
        "auth",
        "FILE",
        "file holding the basic-auth password (read on use, never logged)",
    ),
    _Setting(
        "helmBinary",
        "--helm-binary",
        _required_string("a path or command name"),
        DEFAULT_HELM_BINARY,
        "common",
        "PATH",
        "the helm executable",
    ),
    _Setting(
        "namespaces",
        "--namespace",
        _namespaces,
        DEFAULT_NAMESPACES,
        "common",
        "NS",
        "namespace to serve; repeat it or separate with commas",
        default_help="all",
        dest_override="namespaces",
        repeatable=True,
    ),
    _Setting(
        "kubeconfig",
        "--kubeconfig",
        _optional_name("a file path"),
        DEFAULT_KUBECONFIG,
        "common",
        "FILE",
        "kubeconfig file",
        default_help="in-cluster, else KUBECONFIG",
    ),
    _Setting(
        "context",
        "--context",
        _optional_name("a context name"),
        DEFAULT_CONTEXT,
        "common",
        "NAME",
        "kubeconfig context",
        default_help="the kubeconfig's current one",
    ),
    _Setting(
        "lease.name",
        "--lease-name",
        _kube_name(subdomain=True),
        DEFAULT_LEASE_NAME,
        "daemon",
        "NAME",
        "the Lease replicas compete for",
    ),
    _Setting(
        "lease.namespace",
        "--lease-namespace",
        _kube_name(subdomain=False),
        DEFAULT_LEASE_NAMESPACE,
        "daemon",
        "NS",
        "namespace of the Lease (usually the controller's own)",
    ),
    _Setting(
        "lease.duration",
        "--lease-duration",
        _duration,
        DEFAULT_LEASE_DURATION,
        "daemon",
        "DURATION",
        "a crashed leader is replaced after this",
    ),
    _Setting(
        "lease.renewDeadline",
        "--lease-renew-deadline",
        _duration,
        DEFAULT_RENEW_DEADLINE,
        "daemon",
        "DURATION",
        "a leader that could not renew for this long stops acting",
    ),
    _Setting(
        "lease.retryPeriod",
        "--lease-retry-period",
        _duration,
        DEFAULT_RETRY_PERIOD,
        "daemon",
        "DURATION",
        "time between attempts to acquire or renew the Lease",
    ),
    _Setting(
        "notifications.slackWebhookFile",
        "--slack-webhook-file",
        _optional_string("a file path"),
        "",
        "daemon",
        "FILE",
        "file holding a Slack-compatible incoming-webhook URL",
    ),
    _Setting(
        "notifications.webhookFile",
        "--webhook-file",
        _optional_string("a file path"),
        "",
        "daemon",
        "FILE",
        "file holding a generic JSON webhook URL",
    ),
    _Setting(
        "port",
        "--port",
        _port,
        DEFAULT_PORT,
        "common",
        "N",
        "port of /healthz, /readyz and /metrics",
    ),
    _Setting(
        "logFormat",
        "--log-format",
        _log_format,
        DEFAULT_LOG_FORMAT,
        "common",
        "json|console",
        "log output on stderr",
        default_help="console on a TTY, else json",
    ),
)

_BY_KEY = {s.key: s for s in _SETTINGS}
#: Keys of the file: top-level, and the keys of each nested mapping.
_TOP_KEYS = tuple(dict.fromkeys(s.key.split(".")[0] for s in _SETTINGS))
_NESTED_KEYS: dict[str, tuple[str, ...]] = {
    group: tuple(s.key.split(".")[1] for s in _SETTINGS if s.key.startswith(group + "."))
    for group in _TOP_KEYS
    if any(s.key.startswith(group + ".") for s in _SETTINGS)
}


# --- flags -----------------------------------------------------------------------------------


def add_common_flags(
    parser: argparse.ArgumentParser,
    *,
    exclude: Collection[str] = (),
    prometheus_auth: bool = True,
    daemon: bool = False,
) -> None:
    """Add the controller flags to ``parser``, each defaulting to None ("not given").

    DESIGN §5's common flags always, plus ``--config``; the Prometheus auth flags unless
    ``prometheus_auth=False``; the lease and notification flags with ``daemon=True``
    (``canary run``). ``exclude`` names flags (``"--log-format"``) the caller defines itself,
    e.g. on the top-level parser; :func:`load_config` still reads their values from the parsed
    namespace under the same ``dest``, already-parsed values (a ``timedelta``) included.
    """
    known = {CONFIG_FLAG} | {s.flag for s in _SETTINGS}
    unknown = set(exclude) - known
    if unknown:
        raise ValueError(f"no such controller flag: {', '.join(sorted(unknown))}")
    groups = (
        {"common"} | ({"auth"} if prometheus_auth else set()) | ({"daemon"} if daemon else set())
    )
    group = parser.add_argument_group(
        "controller settings",
        f"each also an environment variable {ENV_PREFIX}<FLAG> and a key in the --config file; "
        "flag > environment > file > default",
    )
    if CONFIG_FLAG not in exclude:
        group.add_argument(
            CONFIG_FLAG,
            default=None,
            metavar="FILE",
            help=f"controller config file, YAML (env {CONFIG_ENV})",
        )
    for s in _SETTINGS:
        if s.group not in groups or s.flag in exclude:
            continue
        default = s.default
        if isinstance(default, timedelta):
            default = format_duration(default)
        shown = s.default_help or ("" if default in (None, "", ()) else str(default))
        shown = f"; default {shown}" if shown else ""
        group.add_argument(
            s.flag,
            dest=s.dest,
            default=None,
            metavar=s.metavar,
            action="append" if s.repeatable else "store",
            help=f"{s.help} (env {s.env}; key {s.key}{shown})",
        )


# --- the config file -------------------------------------------------------------------------


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice (YAML would silently keep the last)."""


def _construct_map(loader: _ConfigLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key is a list or a mapping", key_node.start_mark
            )
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key}", key_node.start_mark
            )
        out[key] = loader.construct_object(value_node, deep=True)
    return out


_ConfigLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)


def _read_file(path: str, given_by: str, problems: list[Problem]) -> object:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        problems.append(
            Problem(
                path,
                "(file)",
                f"cannot read the config file: {err.strerror or err}",
                f"check the path given by {given_by}",
            )
        )
        return None
    if len(raw) > MAX_CONFIG_BYTES:
        problems.append(
            Problem(path, "(file)", "larger than 1 MiB", "check that this is a controller config")
        )
        return None
    try:
        return yaml.load(raw.decode("utf-8-sig"), Loader=_ConfigLoader)
    except UnicodeDecodeError as err:
        problems.append(
            Problem(path, "(file)", f"not UTF-8 text at offset {err.start}", "save it as UTF-8")
        )
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        problems.append(
            Problem(path, where, f"invalid YAML: {err.problem or err}", "fix the YAML syntax")
        )
    except yaml.YAMLError as err:
        problems.append(Problem(path, "(file)", f"invalid YAML: {err}", "fix the YAML syntax"))
    return None


def _file_values(data: object, path: str, problems: list[Problem]) -> dict[str, object]:
    """The file's settings by key path; unknown keys and wrong shapes become problems.
    A null value counts as unset."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        problems.append(
            Problem(
                path,
                "(file)",
                f"expected a mapping of settings, got {_got(data)}",
                "see config/canary.yaml for an example",
            )
        )
        return {}
    out: dict[str, object] = {}
    for key, value in data.items():
        text = key if isinstance(key, str) else _show(key)
        if text not in _TOP_KEYS:
            problems.append(Problem(path, text, "unknown key", _suggest_key(text, _TOP_KEYS)))
        elif value is None:
            continue
        elif text in _NESTED_KEYS:
            if not isinstance(value, Mapping):
                problems.append(
                    Problem(
                        path,
                        text,
                        f"expected a mapping, got {_got(value)}",
                        f"give its keys: {', '.join(_NESTED_KEYS[text])}",
                    )
                )
                continue
            for sub, item in value.items():
                subtext = sub if isinstance(sub, str) else _show(sub)
                if subtext not in _NESTED_KEYS[text]:
                    problems.append(
                        Problem(
                            path,
                            f"{text}.{subtext}",
                            "unknown key",
                            _suggest_key(subtext, _NESTED_KEYS[text]),
                        )
                    )
                elif item is not None:
                    out[f"{text}.{subtext}"] = item
        else:
            out[text] = value
    return out


# --- merging ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Origin:
    source: str  # Problem.source: a file path, or "" for a flag, a variable or a default
    path: str  # Problem.path: the key path in a file, else the flag or the variable
    label: str  # for ControllerConfig.origins

    def problem(self, message: str, fix: str = "", suffix: str = "") -> Problem:
        return Problem(self.source, self.path + suffix, message, fix)


def load_config(
    args: argparse.Namespace,
    environ: Mapping[str, str],
    *,
    require: Collection[str] = (),
) -> ControllerConfig:
    """Merge flags (``args``), environment (``environ``), config file and defaults.

    ``require`` names keys that must end up set (``"prometheusUrl"`` for commands that query
    Prometheus). Raises :class:`SettingsError` listing every problem of every source.
    """
    unknown = set(require) - set(_BY_KEY)
    if unknown:
        raise ValueError(f"no such setting: {', '.join(sorted(unknown))}")
    problems: list[Problem] = []

    config_file: str | None = None
    given_by = ""
    flag_value = getattr(args, "config", None)
    if flag_value:
        config_file, given_by = str(flag_value), CONFIG_FLAG
    elif environ.get(CONFIG_ENV, "").strip():
        config_file, given_by = environ[CONFIG_ENV].strip(), CONFIG_ENV
    from_file: dict[str, object] = {}
    if config_file is not None:
        from_file = _file_values(_read_file(config_file, given_by, problems), config_file, problems)

    values: dict[str, object] = {}
    origins: dict[str, _Origin] = {}
    for s in _SETTINGS:
        values[s.key] = s.default
        origins[s.key] = _Origin("", s.key, "default")
        # lowest first: each source that gives a valid value overrides the ones below
        candidates: list[tuple[_Origin, object, bool]] = []
        if s.key in from_file:
            assert config_file is not None
            candidates.append((_Origin(config_file, s.key, config_file), from_file[s.key], False))
        env_value = environ.get(s.env, "").strip()
        if env_value:
            candidates.append((_Origin("", s.env, s.env), env_value, True))
        flag = getattr(args, s.dest, None)
        if flag is not None:
            candidates.append((_Origin("", s.flag, s.flag), flag, True))
        for origin, raw, text in candidates:
            try:
                values[s.key] = s.parse(raw, text)
            except _Invalid as invalid:
                problems.extend(origin.problem(m, f, suffix) for suffix, m, f in invalid.items)
                continue
            origins[s.key] = origin

    problems.extend(_check_lease(values, origins))
    for key in require:
        if values[key] in ("", None, ()):
            s = _BY_KEY[key]
            problems.append(
                Problem(
                    "",
                    key,
                    "not set",
                    f"pass {s.flag}, set {s.env} or add {key} to the --config file",
                )
            )
    if problems:
        raise SettingsError(problems)
    return _build(values, config_file, {k: o.label for k, o in origins.items()})


def _check_lease(values: Mapping[str, object], origins: Mapping[str, _Origin]) -> Iterable[Problem]:
    """client-go's rule: duration > renewDeadline > retryPeriod, so that a leader stops acting
    before anyone else may take the Lease, and gets several tries before it gives up."""
    pairs = (
        (
            "lease.renewDeadline",
            "lease.duration",
            "a leader must stop acting before another may take the Lease",
        ),
        (
            "lease.retryPeriod",
            "lease.renewDeadline",
            "a leader must get several tries to renew before it gives up",
        ),
    )
    for shorter, longer, why in pairs:
        short, long = cast(timedelta, values[shorter]), cast(timedelta, values[longer])
        if short < long:
            continue
        if origins[shorter].label != "default" or origins[longer].label == "default":
            yield origins[shorter].problem(
                f"{format_duration(short)} must be shorter than {longer} ({format_duration(long)})",
                why,
            )
        else:  # the explicit one is to blame, not the default
            yield origins[longer].problem(
                f"{format_duration(long)} must be longer than {shorter} "
                f"({format_duration(short)}, the default)",
                why,
            )


def _build(
    values: Mapping[str, object], config_file: str | None, origins: Mapping[str, str]
) -> ControllerConfig:
    def text(key: str) -> str:
        return cast(str, values[key])

    def duration(key: str) -> timedelta:
        return cast(timedelta, values[key])

    return ControllerConfig(
        plans=text("plans"),
        prometheus_url=text("prometheusUrl"),
        scrape_interval=duration("scrapeInterval"),
        prometheus_auth=PrometheusAuth(
            bearer_token_file=text("prometheusAuth.bearerTokenFile"),
            ca_file=text("prometheusAuth.caFile"),
            username=text("prometheusAuth.username"),
            password_file=text("prometheusAuth.passwordFile"),
        ),
        helm_binary=text("helmBinary"),
        namespaces=cast(tuple[str, ...], values["namespaces"]),
        kubeconfig=cast(str | None, values["kubeconfig"]),
        context=cast(str | None, values["context"]),
        lease=LeaseConfig(
            name=text("lease.name"),
            namespace=text("lease.namespace"),
            duration=duration("lease.duration"),
            renew_deadline=duration("lease.renewDeadline"),
            retry_period=duration("lease.retryPeriod"),
        ),
        notifications=Notifications(
            slack_webhook_file=text("notifications.slackWebhookFile"),
            webhook_file=text("notifications.webhookFile"),
        ),
        port=cast(int, values["port"]),
        log_format=cast(str | None, values["logFormat"]),
        config_file=config_file,
        origins=dict(origins),
    )


def env_names() -> dict[str, str]:
    """Each setting's environment variable by key path (docs and tests)."""
    return {s.key: s.env for s in _SETTINGS}


def flag_names() -> dict[str, str]:
    """Each setting's flag by key path (docs and tests)."""
    return {s.key: s.flag for s in _SETTINGS}
