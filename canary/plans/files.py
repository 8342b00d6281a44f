"""Plan files → plans: read (at most 1 MiB of UTF-8), parse (:mod:`canary.plans.yamlload`),
validate (:mod:`canary.core.spec`) and check for conflicts (:mod:`canary.core.conflicts`), every
problem of every file at once. ``canary validate``, ``check``, ``simulate``, ``demo`` and the
plans directory of ``canary run`` all read plans through here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from canary.core.conflicts import check_conflicts
from canary.core.errors import PlanError, Problem
from canary.core.fields import Doc
from canary.core.plan import Plan
from canary.core.spec import plan_from_document
from canary.plans.yamlload import parse_stream

#: A plan is a few KiB. A MiB of YAML is a mistake or an attack, and PyYAML's pure-Python parser
#: needs about a second per MiB: refuse anything larger before parsing it.
MAX_INPUT_BYTES = 1024 * 1024


def _load_text(text: str, source: str) -> tuple[list[Plan], list[Problem]]:
    """Plans and problems of one YAML stream, in document order; no cross-plan checks."""
    if len(text) > MAX_INPUT_BYTES or len(text.encode("utf-8")) > MAX_INPUT_BYTES:
        return [], [_too_large(source, "(input)")]
    entries, multi = parse_stream(text, source)
    plans: list[Plan] = []
    problems: list[Problem] = []
    for entry in entries:
        if isinstance(entry, Problem):
            problems.append(entry)
            continue
        number, data = entry
        doc = Doc(source, f"(document {number}) " if multi else "")
        plan = plan_from_document(doc, data, number)
        problems.extend(doc.problems)
        if plan is not None:
            plans.append(plan)
    return plans, problems


#: What a file too large to be a plan is, most likely.
TOO_LARGE_FIX = "a plan is a few KiB: split the file, or check that this is a plan file"


def _too_large(source: str, path: str, fix: str = TOO_LARGE_FIX) -> Problem:
    return Problem(source, path, f"larger than {MAX_INPUT_BYTES} bytes (1 MiB)", fix)


def load_plan_text(text: str, source: str = "") -> list[Plan]:
    """Load every RolloutPlan in a multi-document YAML text; empty documents are skipped.

    Raises :class:`PlanError` listing every problem of every document (and conflicts between
    the plans of this text) at once.
    """
    plans, problems = _load_text(text, source)
    problems.extend(check_conflicts(plans))
    if problems:
        raise PlanError(problems)
    return plans


def _plan_paths(paths: Sequence[str | os.PathLike[str]], problems: list[Problem]) -> list[str]:
    """Files to read: each file as given, each directory's ``*.yaml``/``*.yml`` sorted.

    Hidden names are skipped, which also skips a ConfigMap mount's ``..data`` and
    ``..<timestamp>`` entries; the visible ``*.yaml`` symlinks into them are read once each.
    """
    out: list[str] = []
    for given in paths:
        path = os.fspath(given)
        if not os.path.isdir(path):
            out.append(path)
            continue
        try:
            names = sorted(os.listdir(path))
        except OSError as err:
            problems.append(
                Problem(
                    path,
                    "(directory)",
                    f"cannot list: {err.strerror or err}",
                    "check the path and its permissions",
                )
            )
            continue
        for name in names:
            child = os.path.join(path, name)
            if name.startswith(".") or not name.endswith((".yaml", ".yml")):
                continue
            if os.path.isfile(child):
                out.append(child)
    return out


def read_bytes(path: str) -> bytes:
    """The file's first ``MAX_INPUT_BYTES + 1`` bytes: enough to tell it is too large."""
    with open(path, "rb") as handle:
        return handle.read(MAX_INPUT_BYTES + 1)


def decode(source: str, raw: bytes, too_large_fix: str = TOO_LARGE_FIX) -> str | Problem:
    """Text as every input is read: at most MAX_INPUT_BYTES of UTF-8, a BOM dropped."""
    if len(raw) > MAX_INPUT_BYTES:
        return _too_large(source, "(file)", too_large_fix)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        return Problem(
            source,
            "(file)",
            f"not UTF-8 text: byte 0x{raw[err.start]:02x} at offset {err.start}",
            "save the file as UTF-8",
        )


def read_text(
    path: str,
    problems: list[Problem],
    *,
    cannot: str = "cannot read",
    fix: str = "check the path and its permissions",
    too_large_fix: str = TOO_LARGE_FIX,
) -> str | None:
    """A file's text (:func:`decode`), or None with the problem added to ``problems``."""
    try:
        raw = read_bytes(path)
    except OSError as err:
        problems.append(Problem(path, "(file)", f"{cannot}: {err.strerror or err}", fix))
        return None
    text = decode(path, raw, too_large_fix)
    if isinstance(text, Problem):
        problems.append(text)
        return None
    return text


def load_plan_files(paths: Sequence[str | os.PathLike[str]]) -> list[Plan]:
    """Load plans from files and directories (``*.yaml``/``*.yml`` in each, not recursive).

    Problems of every file, then conflicts between all plans, are raised as one
    :class:`PlanError`; each problem's ``source`` is its file's path.
    """
    if isinstance(paths, str | os.PathLike):  # one path, not a sequence of characters
        paths = [paths]
    problems: list[Problem] = []
    plans: list[Plan] = []
    for path in _plan_paths(paths, problems):
        text = read_text(path, problems)
        if text is None:
            continue
        file_plans, file_problems = _load_text(text, path)
        plans.extend(file_plans)
        problems.extend(file_problems)
    problems.extend(check_conflicts(plans))
    if problems:
        raise PlanError(problems)
    return plans
