"""``canary ...``: the command line (docs/design.md §5), one module per command.

Exit codes are API (CI scripts branch on them): :mod:`canary.core.exitcodes`. Every command
takes the common settings (:mod:`canary.cli.options`), loaded once here before it runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from canary import __version__
from canary.cli import check, commands, run, simulate, status, timeline, validate, wait
from canary.cli.options import LOG_FORMATS, load, log_format
from canary.core import exitcodes
from canary.core.errors import ConfigError
from canary.shell.emitter import configure_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="canary",
        description="Progressive delivery for Helm releases on Istio.",
    )
    parser.add_argument("--version", action="version", version=f"canary {__version__}")
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=None,
        help="structured log output on stderr (default: console on a TTY, else json, for run; "
        "off for the other commands)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    validate.add_parser(sub)
    check.add_parser(sub)
    simulate.add_parsers(sub)
    run.add_parser(sub)
    status.add_parser(sub)
    wait.add_parser(sub)
    commands.add_parsers(sub)
    timeline.add_parser(sub)
    return parser


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, as docs/design.md §5 wants
        return int(exc.code or 0)
    try:
        config = load(args)
    except ConfigError as exc:
        print(f"canary {args.command}: invalid configuration:\n{exc}", file=err)
        return exitcodes.USAGE
    configure_logging(log_format(args, config), stream=err)
    func: Callable[[argparse.Namespace, TextIO, TextIO], int] = args.func
    return func(args, out, err)


if __name__ == "__main__":
    sys.exit(main())
