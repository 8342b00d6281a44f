"""``canary run``: the controller daemon (:mod:`canary.shell.daemon`), built from the settings
(flags > CANARY_* environment > --config file > defaults). Exit 2 on a configuration error
(every problem listed), else 0 after a clean stop."""

from __future__ import annotations

import argparse
import os
from typing import Any, TextIO

from canary.cli.options import add_common, config_of
from canary.core import exitcodes
from canary.core.errors import ConfigError


def cmd_run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    config = config_of(args)
    from canary.shell.daemon import Daemon  # noqa: PLC0415 - the kubernetes client loads only here

    try:
        daemon = Daemon(config)
    except ConfigError as exc:  # e.g. no kubeconfig and not in a cluster
        print(f"canary run: {exc}", file=err)
        return exitcodes.USAGE
    try:
        code = daemon.run()
    except ConfigError as exc:  # found while starting (the port is taken, no helm binary)
        print(f"canary run: {exc}", file=err)
        return exitcodes.USAGE
    if daemon.unfinished:
        # A tick still blocked on a hung server: its thread would hold the interpreter's exit
        # until its timeout. Everything is persisted and the lease is released: leave now.
        out.flush()
        err.flush()
        os._exit(code)
    return code


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="the controller daemon (in-cluster Deployment)",
        description="Run the controller: serve the plans in --plans, step traffic, judge it in "
        "Prometheus, roll back with helm. Every flag is also CANARY_<FLAG> and a key of "
        "--config; precedence: flag > environment > config file > default.",
    )
    add_common(p, daemon=True)
    p.set_defaults(func=cmd_run, require=["prometheusUrl"])
