"""Reading and merging the controller settings: flags > ``CANARY_*`` environment > the
``--config`` file > defaults, every problem of every source at once (:class:`SettingsError`)."""

from __future__ import annotations

import argparse
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import cast

from canary.config.settings import (
    BY_KEY,
    CONFIG_ENV,
    CONFIG_FLAG,
    NESTED_KEYS,
    SETTINGS,
    TOP_KEYS,
    ControllerConfig,
    KubeApiLimits,
    LeaseConfig,
    Notifications,
    PrometheusAuth,
    SettingsError,
)
from canary.config.values import Invalid
from canary.core.durations import format_duration
from canary.core.errors import Problem
from canary.core.fields import key_text
from canary.core.wording import DUPLICATE_KEY_FIX, got, show, suggest_key
from canary.plans.files import read_text
from canary.plans.yamlload import parse_stream


def _read_file(path: str, given_by: str, problems: list[Problem]) -> object:
    """The one document of a config file, read as plan files are (:mod:`canary.plans`): at most
    1 MiB of UTF-8, safe YAML without aliases, keys given twice reported."""
    text = read_text(
        path,
        problems,
        cannot="cannot read the config file",
        fix=f"check the path given by {given_by}",
        too_large_fix="a controller config is a few hundred bytes: check that this is one",
    )
    if text is None:
        return None
    entries, _ = parse_stream(text, path)
    broken = [entry for entry in entries if isinstance(entry, Problem)]
    if broken:
        problems.extend(broken)
        return None
    documents = [entry[1] for entry in entries if not isinstance(entry, Problem)]
    if len(documents) > 1:
        problems.append(
            Problem(
                path, "(file)", f"holds {len(documents)} YAML documents", "a config file holds one"
            )
        )
        return None
    return documents[0] if documents else None


def _duplicates(data: object, path: str, prefix: str, problems: list[Problem]) -> None:
    """Keys YAML gave twice (it keeps only the last): reported, never silently dropped."""
    for key in getattr(data, "duplicates", ()):
        problems.append(Problem(path, prefix + key_text(key), "duplicate key", DUPLICATE_KEY_FIX))


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
                f"expected a mapping of settings, got {got(data)}",
                "see config/canary.yaml for an example",
            )
        )
        return {}
    _duplicates(data, path, "", problems)
    out: dict[str, object] = {}
    for key, value in data.items():
        text = key if isinstance(key, str) else show(key)
        if text not in TOP_KEYS:
            problems.append(Problem(path, text, "unknown key", suggest_key(text, TOP_KEYS)))
        elif value is None:
            continue
        elif text in NESTED_KEYS:
            if not isinstance(value, Mapping):
                problems.append(
                    Problem(
                        path,
                        text,
                        f"expected a mapping, got {got(value)}",
                        f"give its keys: {', '.join(NESTED_KEYS[text])}",
                    )
                )
                continue
            _duplicates(value, path, f"{text}.", problems)
            for sub, item in value.items():
                subtext = sub if isinstance(sub, str) else show(sub)
                if subtext not in NESTED_KEYS[text]:
                    problems.append(
                        Problem(
                            path,
                            f"{text}.{subtext}",
                            "unknown key",
                            suggest_key(subtext, NESTED_KEYS[text]),
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
    unknown = set(require) - set(BY_KEY)
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
    refused: set[str] = set()  # keys some source gave an invalid value for
    for s in SETTINGS:
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
            except Invalid as invalid:
                problems.extend(origin.problem(m, f, suffix) for suffix, m, f in invalid.items)
                refused.add(s.key)
                continue
            origins[s.key] = origin

    problems.extend(_check_lease(values, origins))
    for key in require:
        # a value given but invalid is reported as such, not also as missing
        if values[key] in ("", None, ()) and key not in refused:
            s = BY_KEY[key]
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
        kube_api=KubeApiLimits(
            qps=cast(float, values["kubeApi.qps"]), burst=cast(int, values["kubeApi.burst"])
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
