"""``canary timeline [--rollout ID] [--plan NS/NAME] [--queries] [FILE ...]``: reads the logs
(stdin by default) and prints one story per rollout (:mod:`canary.core.timeline`). Exit codes:
0 printed something · 2 usage error (unreadable FILE, stdin a terminal) · 3 no rollout in the
input matches.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final, TextIO

from canary.cli.options import add_common
from canary.core.exitcodes import USAGE
from canary.core.timeline import LogScan, Rollout, group_rollouts, render_rollout, scan_log, skipped

#: Exit code when the input holds no rollout that matches (none at all, or not the one asked
#: for): "not in these logs" differs from a usage error (2), and 0 always means output.
NOT_FOUND: Final = 3
#: At most this many rollouts are listed when the one asked for is not in the input.
_LIST_AT_MOST: Final = 20

TIMELINE_DESCRIPTION: Final = """\
Read canary's JSON logs (stdin, or FILEs) and print what each rollout did: every step, every
check with its values, bounds and verdict, the breach, the time to safe (first failed check →
all traffic on stable), the helm rollback attempts and the outcome. Lines from several replicas
are merged by time; lines that are not JSON and daemon-level lines are skipped and counted.

  kubectl logs deploy/canary | canary timeline           # one pod of the Deployment
  kubectl logs -l LABEL=VALUE --tail=-1 | canary timeline  # every replica (with -l,
                                                         # kubectl keeps 10 lines unless --tail)
  canary timeline --rollout f012e7925a-1 replica-a.log replica-b.log
"""
TIMELINE_EPILOG: Final = """\
exit codes: 0 printed at least one rollout · 2 usage error (unreadable FILE, stdin is a
terminal) · 3 no rollout in the input matches (none at all, or not the --rollout/--plan asked for)
"""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``canary timeline [--rollout ID] [--plan NS/NAME] [--queries] [FILE ...]``."""
    p = subparsers.add_parser(
        "timeline",
        help="JSON logs → a readable timeline per rollout",
        description=TIMELINE_DESCRIPTION,
        epilog=TIMELINE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="log file(s), merged by time (default, or '-': stdin)",
    )
    p.add_argument(
        "--rollout",
        metavar="ID",
        default=None,
        help="only this rollout: a rolloutId (f012e7925a-1), or a canary-hash prefix for "
        "every attempt of that canary",
    )
    p.add_argument(
        "--plan",
        metavar="NS/NAME",
        default=None,
        help="only this plan's rollouts (NAME alone matches it in any namespace)",
    )
    p.add_argument("--queries", action="store_true", help="also print each check's PromQL")
    add_common(p)
    p.set_defaults(func=cmd_timeline)


def _read(name: str, err: TextIO) -> list[str] | None:
    """A log's lines; None after printing why it cannot be read. Bytes that are not UTF-8
    become U+FFFD: a log with junk in it is still a log."""
    if name == "-":
        stdin = sys.stdin
        if stdin is None or stdin.isatty():
            print(
                "canary timeline: stdin is a terminal: pipe the logs in "
                "(kubectl logs deploy/canary | canary timeline) or pass a FILE",
                file=err,
            )
            return None
        raw = getattr(stdin, "buffer", None)
        text = raw.read().decode("utf-8", "replace") if raw is not None else stdin.read()
        return text.splitlines()
    try:
        return Path(name).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        print(f"canary timeline: cannot read {name}: {exc.strerror or exc}", file=err)
        return None


def cmd_timeline(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Print the timeline of every rollout in the logs that matches ``--rollout``/``--plan``.

    Exit 0 if at least one rollout was printed, 2 on a usage error, 3 (:data:`NOT_FOUND`) if
    no rollout in the input matches.
    """
    sources: list[list[str]] = []
    for name in args.files or ["-"]:
        lines = _read(name, err)
        if lines is None:
            return USAGE
        sources.append(lines)
    scan = scan_log(sources)
    rollouts, outside = group_rollouts(scan.records)
    wanted = [r for r in rollouts if r.matches(args.rollout, args.plan)]
    if not wanted:
        _explain_nothing(args, scan, rollouts, err)
        return NOT_FOUND
    filters = " ".join(
        f"--{k} {v}" for k, v in (("rollout", args.rollout), ("plan", args.plan)) if v
    )
    untold = skipped(scan, outside, len(rollouts) - len(wanted), filters)
    try:
        for index, rollout in enumerate(wanted):
            if index:
                print(file=out)
            print("\n".join(render_rollout(rollout, queries=args.queries)), file=out)
        if untold:
            print(f"\n{untold}", file=out)
        out.flush()
    except BrokenPipeError:  # `canary timeline | head`: the reader has seen enough
        _silence(out)
    return 0


def _silence(out: TextIO) -> None:
    """Point a closed stdout at /dev/null so the interpreter's final flush stays quiet."""
    try:
        fd = out.fileno()
    except (OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _explain_nothing(
    args: argparse.Namespace, scan: LogScan, rollouts: Sequence[Rollout], err: TextIO
) -> None:
    if not rollouts:
        print(
            f"canary timeline: no rollout events in the input ({scan.lines} line(s): "
            f"{scan.not_json} not JSON, {sum(scan.daemon.values())} daemon-level). It reads "
            "canary's JSON logs (--log-format json, the default off a terminal); console "
            "lines cannot be read",
            file=err,
        )
        return
    asked = " ".join(f"--{k} {v}" for k, v in (("rollout", args.rollout), ("plan", args.plan)) if v)
    print(f"canary timeline: no rollout in the input matches {asked}; it has:", file=err)
    for rollout in rollouts[:_LIST_AT_MOST]:
        begin = rollout.begin
        when = f"{begin:%Y-%m-%d %H:%M:%S} UTC" if begin else "?"
        print(
            f"  {rollout.plan}  {rollout.rollout_id}  {when}  {rollout.outcome or 'under way'}",
            file=err,
        )
    if len(rollouts) > _LIST_AT_MOST:
        print(f"  … and {len(rollouts) - _LIST_AT_MOST} more", file=err)
