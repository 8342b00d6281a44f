"""Controller configuration (design §5): the settings of the controller itself, never of a plan.

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
    kubeApi.qps                      --kube-api-qps N
    kubeApi.burst                    --kube-api-burst N
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

This package only reads and validates; nothing here opens a connection or runs helm. The table
of settings is here, the value parsers in :mod:`canary.config.values`, reading and merging the
sources in :mod:`canary.config.load`.
"""

from __future__ import annotations

import argparse
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from canary.config.values import (
    Parser,
    duration,
    kube_name,
    log_format,
    namespaces,
    optional_name,
    optional_string,
    port,
    positive_int,
    positive_number,
    required_string,
    url,
)
from canary.core.durations import format_duration
from canary.core.errors import ConfigError, Problem

# --- defaults --------------------------------------------------------------------------------

#: Where the controller's Deployment mounts the plans ConfigMap (config/canary.yaml).
DEFAULT_PLANS = "/etc/canary/plans"
#: No default: a guessed Prometheus would turn every check into ERROR instead of saying what
#: is missing. Commands that query Prometheus ask for it with ``load_config(require=...)``.
DEFAULT_PROMETHEUS_URL = ""
#: Istio's Prometheus scrapes every 15 s (design §5); windows are rounded to multiples of it.
DEFAULT_SCRAPE_INTERVAL = timedelta(seconds=15)
#: The image ships helm on PATH (docs/design.md §7); an absolute path pins one binary.
DEFAULT_HELM_BINARY = "helm"
#: Empty means every namespace: one controller serves the whole mesh unless told otherwise.
DEFAULT_NAMESPACES: tuple[str, ...] = ()
#: None: found as kubectl and helm find it (canary.adapters.kube.connect): ``$KUBECONFIG``,
#: else the pod's service account in a pod, else ``~/.kube/config``, in its current context.
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
#: The client-side rate limit of the requests ticks make (writes, and the reads the cache
#: cannot answer), client-go's defaults doubled: at rest ticks send none (they read the
#: watch-fed cache), so this is the budget of writes when many rollouts move at once. The
#: watches, the Lease and the Kubernetes Events each have a client and limit of their own, so
#: nothing routine can queue in front of a rollback's write.
DEFAULT_KUBE_API_QPS = 20.0
DEFAULT_KUBE_API_BURST = 40
#: The usual unprivileged port for health and metrics: the container runs as non-root and
#: cannot bind below 1024.
DEFAULT_PORT = 8080
#: None: console on a TTY, JSON lines otherwise (design §6; canary.core.events.configure_logging).
DEFAULT_LOG_FORMAT: str | None = None

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
class KubeApiLimits:
    """The client-side rate limit of the ticks' API client (canary.adapters.kube.connect)."""

    qps: float = DEFAULT_KUBE_API_QPS
    burst: int = DEFAULT_KUBE_API_BURST


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
    kube_api: KubeApiLimits = KubeApiLimits()
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
            "kubeApi": {"qps": self.kube_api.qps, "burst": self.kube_api.burst},
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


# --- the settings table ----------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    key: str  # path in the config file, e.g. lease.renewDeadline
    flag: str  # e.g. --lease-renew-deadline; the variable is CANARY_LEASE_RENEW_DEADLINE
    parse: Parser
    default: object
    group: str  # "common" (docs/design.md §5), "auth" (Prometheus), "daemon" (canary run)
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


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "plans",
        "--plans",
        required_string("a directory"),
        DEFAULT_PLANS,
        "common",
        "DIR",
        "directory of RolloutPlan files (a mounted ConfigMap)",
        # not "plans": `canary validate PLAN...` names its positional arguments so
        dest_override="plans_dir",
    ),
    Setting(
        "prometheusUrl",
        "--prometheus-url",
        url,
        DEFAULT_PROMETHEUS_URL,
        "common",
        "URL",
        "Prometheus base URL, http or https",
    ),
    Setting(
        "scrapeInterval",
        "--scrape-interval",
        duration,
        DEFAULT_SCRAPE_INTERVAL,
        "common",
        "DURATION",
        "Prometheus's scrape interval; windows are rounded down to multiples of it",
    ),
    Setting(
        "prometheusAuth.bearerTokenFile",
        "--prometheus-bearer-token-file",
        optional_string("a file path"),
        "",
        "auth",
        "FILE",
        "file holding a bearer token for Prometheus (read on use, never logged)",
    ),
    Setting(
        "prometheusAuth.caFile",
        "--prometheus-ca-file",
        optional_string("a file path"),
        "",
        "auth",
        "FILE",
        "CA bundle for an https Prometheus",
    ),
    Setting(
        "prometheusAuth.username",
        "--prometheus-username",
        optional_string("a user name"),
        "",
        "auth",
        "USER",
        "basic-auth user for Prometheus",
    ),
    Setting(
        "prometheusAuth.passwordFile",
        "--prometheus-password-file",
        optional_string("a file path"),
        "",
        "auth",
        "FILE",
        "file holding the basic-auth password (read on use, never logged)",
    ),
    Setting(
        "helmBinary",
        "--helm-binary",
        required_string("a path or command name"),
        DEFAULT_HELM_BINARY,
        "common",
        "PATH",
        "the helm executable",
    ),
    Setting(
        "namespaces",
        "--namespace",
        namespaces,
        DEFAULT_NAMESPACES,
        "common",
        "NS",
        "namespace to serve; repeat it or separate with commas",
        default_help="all",
        dest_override="namespaces",
        repeatable=True,
    ),
    Setting(
        "kubeconfig",
        "--kubeconfig",
        optional_name("a file path"),
        DEFAULT_KUBECONFIG,
        "common",
        "FILE",
        "kubeconfig file",
        default_help="$KUBECONFIG, else in-cluster, else ~/.kube/config",
    ),
    Setting(
        "context",
        "--context",
        optional_name("a context name"),
        DEFAULT_CONTEXT,
        "common",
        "NAME",
        "kubeconfig context",
        default_help="the kubeconfig's current one",
    ),
    Setting(
        "lease.name",
        "--lease-name",
        kube_name(subdomain=True),
        DEFAULT_LEASE_NAME,
        "daemon",
        "NAME",
        "the Lease replicas compete for",
    ),
    Setting(
        "lease.namespace",
        "--lease-namespace",
        kube_name(subdomain=False),
        DEFAULT_LEASE_NAMESPACE,
        "daemon",
        "NS",
        "namespace of the Lease (usually the controller's own)",
    ),
    Setting(
        "lease.duration",
        "--lease-duration",
        duration,
        DEFAULT_LEASE_DURATION,
        "daemon",
        "DURATION",
        "a crashed leader is replaced after this",
    ),
    Setting(
        "lease.renewDeadline",
        "--lease-renew-deadline",
        duration,
        DEFAULT_RENEW_DEADLINE,
        "daemon",
        "DURATION",
        "a leader that could not renew for this long stops acting",
    ),
    Setting(
        "lease.retryPeriod",
        "--lease-retry-period",
        duration,
        DEFAULT_RETRY_PERIOD,
        "daemon",
        "DURATION",
        "time between attempts to acquire or renew the Lease",
    ),
    Setting(
        "kubeApi.qps",
        "--kube-api-qps",
        positive_number,
        DEFAULT_KUBE_API_QPS,
        "daemon",
        "N",
        "requests per second the ticks may send to the API server (writes, cache misses)",
    ),
    Setting(
        "kubeApi.burst",
        "--kube-api-burst",
        positive_int,
        DEFAULT_KUBE_API_BURST,
        "daemon",
        "N",
        "requests the ticks may send at once above --kube-api-qps",
    ),
    Setting(
        "notifications.slackWebhookFile",
        "--slack-webhook-file",
        optional_string("a file path"),
        "",
        "daemon",
        "FILE",
        "file holding a Slack-compatible incoming-webhook URL",
    ),
    Setting(
        "notifications.webhookFile",
        "--webhook-file",
        optional_string("a file path"),
        "",
        "daemon",
        "FILE",
        "file holding a generic JSON webhook URL",
    ),
    Setting(
        "port",
        "--port",
        port,
        DEFAULT_PORT,
        "common",
        "N",
        "port of /healthz, /readyz and /metrics",
    ),
    Setting(
        "logFormat",
        "--log-format",
        log_format,
        DEFAULT_LOG_FORMAT,
        "common",
        "json|console",
        "log output on stderr",
        default_help="console on a TTY, else json",
    ),
)

BY_KEY = {s.key: s for s in SETTINGS}
#: Keys of the file: top-level, and the keys of each nested mapping.
TOP_KEYS = tuple(dict.fromkeys(s.key.split(".")[0] for s in SETTINGS))
NESTED_KEYS: dict[str, tuple[str, ...]] = {
    group: tuple(s.key.split(".")[1] for s in SETTINGS if s.key.startswith(group + "."))
    for group in TOP_KEYS
    if any(s.key.startswith(group + ".") for s in SETTINGS)
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

    docs/design.md §5's common flags always, plus ``--config``; the Prometheus auth flags unless
    ``prometheus_auth=False``; the lease and notification flags with ``daemon=True``
    (``canary run``). ``exclude`` names flags (``"--log-format"``) the caller defines itself,
    e.g. on the top-level parser; :func:`load_config` still reads their values from the parsed
    namespace under the same ``dest``, already-parsed values (a ``timedelta``) included.
    """
    known = {CONFIG_FLAG} | {s.flag for s in SETTINGS}
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
    for s in SETTINGS:
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


def env_names() -> dict[str, str]:
    """Each setting's environment variable by key path (docs and tests)."""
    return {s.key: s.env for s in SETTINGS}


def flag_names() -> dict[str, str]:
    """Each setting's flag by key path (docs and tests)."""
    return {s.key: s.flag for s in SETTINGS}
