"""What every command takes: the common controller flags (docs/design.md §5), each also
``CANARY_<FLAG>`` and a key of the ``--config`` file, read through the one configuration path
(:mod:`canary.config`), so a CI job passes one set of flags, or one config file, to all of them.

``main`` loads the settings once, before the command runs; a command reads them with
:func:`config_of`. Settings a command has no use for (``--port`` for ``wait``) are accepted and
validated all the same: one file and one environment serve every command.
"""

from __future__ import annotations

import argparse
import os
from datetime import timedelta

from canary.config.load import load_config
from canary.config.settings import ControllerConfig, add_common_flags
from canary.core.durations import parse_duration

#: The CLI's log formats: the controller's, and ``off``.
LOG_FORMATS = ("json", "console", "off")


def duration_arg(text: str) -> timedelta:
    """argparse ``type`` for a duration (``30s``, ``5m``): the CLI's one parser."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_common(p: argparse.ArgumentParser, *, daemon: bool = False) -> None:
    """The common flags, plus the lease and notification flags for ``run``. ``--log-format``
    is also accepted before the command (the top-level parser has it too)."""
    add_common_flags(p, exclude=["--log-format"], daemon=daemon)
    p.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=argparse.SUPPRESS,
        help="log output on stderr (env CANARY_LOG_FORMAT, key logFormat; default: console on "
        "a TTY, else json, for run; off for the other commands)",
    )


def load(args: argparse.Namespace) -> ControllerConfig:
    """Merge the settings of ``args`` with the environment and the config file, once; raises
    :class:`~canary.config.settings.SettingsError` listing every problem."""
    cached = getattr(args, "_config", None)
    if isinstance(cached, ControllerConfig):
        return cached
    off = getattr(args, "log_format", None) == "off"
    given = argparse.Namespace(**vars(args))
    if off:
        given.log_format = None  # "off" is the CLI's, not a controller setting
    config = load_config(given, os.environ, require=getattr(args, "require", ()))
    args._config = config
    args.log_off = off
    return config


def config_of(args: argparse.Namespace) -> ControllerConfig:
    """The command's settings (loaded by ``main``, or now for a command called directly)."""
    return load(args)


def log_format(args: argparse.Namespace, config: ControllerConfig) -> str | None:
    """The log format to configure: ``off`` when asked, the settings' when any source gave
    one, else console/json by TTY for ``run`` and off for the other commands."""
    if getattr(args, "log_off", False):
        return "off"
    if config.origins.get("logFormat", "default") != "default":
        return config.log_format
    return None if getattr(args, "command", "") == "run" else "off"
