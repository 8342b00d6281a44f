"""What a load of the plans directory found (:class:`PlanSet`) and what the controller serves
after it (:class:`Update`), both pure.

A load is a :class:`PlanSet`: the valid plans by key, the errors of plans whose key is known
  but whose definition is not valid, and the problems no key can be given to.
:func:`reconcile` (pure) turns the previous :class:`Update` and a new PlanSet into the next
  Update: the ``plans`` / ``invalid`` / ``deleted`` the Controller works from, and what changed,
  so the daemon logs once per change and not once per poll.

What a load cannot tell apart is resolved towards keeping what runs (design §3: "when in doubt,
traffic goes to stable"; a rollout is never dropped because a mount hiccupped):

==========================================  ==================================================
In the directory                            Effect on the plan
==========================================  ==================================================
valid, new or changed                       ``plans[key]`` = the new Plan
invalid, a valid Plan loaded before         previous Plan kept, ``invalid[key]`` = the error:
                                            its rollout pauses with traffic on stable
invalid on its first load                   reported only (``rejected``): nothing to run
two plans on one VirtualService/Deployment  both invalid, as above: which one is meant is a
                                            human's call
gone (file or document removed, or every   ``deleted[key]`` = previous Plan: traffic to stable
key of the ConfigMap)
in a file that cannot be parsed far enough  previous Plan kept, ``invalid[key]`` = the file's
to find its key                             problem (it may be broken, not removed)
in a file that cannot be read (EACCES)     previous Plan kept as it was: an I/O error says
                                            nothing about the plan
directory missing or unreadable             every previous Plan kept as it was, one problem
==========================================  ==================================================
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from canary.core.conflicts import conflicts_of_every_party
from canary.core.errors import PlanError, Problem
from canary.core.plan import Plan
from canary.plans.documents import split
from canary.plans.files import load_plan_text

# =============================================================================================
# Results
# =============================================================================================


@dataclass(frozen=True)
class PlanSet:
    """What one load of the directory found. Treat the containers as read-only.

    ``plans`` and ``errors`` never share a key. ``problems`` holds every message that is not in
    ``errors``: files whose plans have no key we could read, files that cannot be read, and a
    directory that cannot be listed.
    """

    #: valid plans by key (``namespace/name``), none of them in conflict with another
    plans: dict[str, Plan] = field(default_factory=dict)
    #: key → why its current definition is refused: validation problems with their field
    #: paths, a conflict with another plan, or a key defined more than once
    errors: dict[str, str] = field(default_factory=dict)
    #: messages that name no plan (a YAML syntax error before ``metadata``, a missing
    #: ``metadata.namespace``, an unreadable file or directory)
    problems: list[str] = field(default_factory=list)
    #: file → its problems, for files with content no key could be attributed to: plans loaded
    #: from such a file before may be in it still, broken rather than removed
    broken_files: dict[str, str] = field(default_factory=dict)
    #: files that exist but could not be read: their plans are unknown, not gone
    unreadable_files: frozenset[str] = frozenset()
    #: False when the directory itself could not be listed: nothing is known about any plan
    listed: bool = True


@dataclass(frozen=True)
class Update:
    """The plans to serve after a load, and what changed since the previous Update.

    ``plans`` / ``invalid`` are the Controller's new dicts in full; ``deleted`` holds only the
    plans removed by this load (the daemon drops them from the Controller once their traffic is
    on stable). The tuples of keys say what changed, for one log line per change.
    """

    #: key → Plan the controller runs: the new definition, or the last valid one if the new is
    #: invalid
    plans: dict[str, Plan] = field(default_factory=dict)
    #: key → error of its current definition; every key is also in ``plans`` (paused on stable)
    invalid: dict[str, str] = field(default_factory=dict)
    #: key → last Plan of plans removed by this load
    deleted: dict[str, Plan] = field(default_factory=dict)
    #: key → error of plans that were never valid: reported, nothing to run
    rejected: dict[str, str] = field(default_factory=dict)
    #: every problem that names no plan, as of this load
    problems: tuple[str, ...] = ()
    added: tuple[str, ...] = ()  # keys served now and not before
    changed: tuple[str, ...] = ()  # keys whose valid definition changed
    removed: tuple[str, ...] = ()  # keys in ``deleted``
    invalidated: tuple[str, ...] = ()  # keys newly in ``invalid``/``rejected``, or a new message
    fixed: tuple[str, ...] = ()  # keys in ``invalid`` before and valid now
    new_problems: tuple[str, ...] = ()  # problems not reported by the previous Update

    @property
    def has_changes(self) -> bool:
        """Whether this Update has anything to log (a reload that changed nothing has not)."""
        return any(self.changes().values())

    def changes(self) -> dict[str, Any]:
        """What changed, as the fields of one canonical log line; empty lists included."""
        return {
            "added": list(self.added),
            "changed": list(self.changed),
            "removed": list(self.removed),
            "invalid": {key: self._error(key) for key in self.invalidated},
            "fixed": list(self.fixed),
            "problems": list(self.new_problems),
        }

    def _error(self, key: str) -> str:
        return self.invalid.get(key) or self.rejected.get(key, "")

    def apply(self, target: PlanTarget) -> None:
        """Make the controller serve this Update; call it between ticks.

        The dicts are updated in place, since the daemon and the health server may hold them.
        A key served again leaves ``deleted``; ``deleted`` keeps keys removed earlier until the
        daemon drops them.
        """
        # Never cleared and refilled: a tick running in another thread must not see a served
        # plan missing (or an invalid one valid) for an instant. Add and change, then remove.
        target.plans.update(self.plans)
        for key in [k for k in target.plans if k not in self.plans]:
            target.plans.pop(key, None)
        target.invalid.update(self.invalid)
        for key in [k for k in target.invalid if k not in self.invalid]:
            target.invalid.pop(key, None)
        for key in self.plans:
            target.deleted.pop(key, None)
        target.deleted.update(self.deleted)


class PlanTarget(Protocol):
    """What an Update is applied to: the three dicts of the controller
    (:class:`canary.shell.controller.Controller`)."""

    plans: dict[str, Plan]
    invalid: dict[str, str]
    deleted: dict[str, Plan]


#: The Update before the first load: nothing served, nothing reported.
NO_PLANS = Update()


# =============================================================================================
# Reconcile (pure)
# =============================================================================================


def reconcile(previous: Update, loaded: PlanSet) -> Update:
    """The Update that follows ``previous`` given a new load; see the table in the module doc.

    Pure: the daemon calls it with the Update it applied last (:data:`NO_PLANS` at start) and
    applies the result with :meth:`Update.apply`.
    """
    if not loaded.listed:
        # Nothing is known: a directory that vanished for a moment must not stop every rollout.
        return replace(
            previous,
            deleted={},
            problems=tuple(loaded.problems),
            added=(),
            changed=(),
            removed=(),
            invalidated=(),
            fixed=(),
            new_problems=_new(loaded.problems, previous.problems),
        )
    plans: dict[str, Plan] = dict(loaded.plans)
    invalid: dict[str, str] = {}
    rejected: dict[str, str] = {}
    deleted: dict[str, Plan] = {}
    for key, message in loaded.errors.items():
        before = previous.plans.get(key)
        if before is None:
            rejected[key] = message
        else:
            plans[key] = before
            invalid[key] = message
    for key, before in previous.plans.items():
        if key in plans:
            continue
        if before.source in loaded.unreadable_files:
            plans[key] = before  # unknown, not gone: keep it as it was
            if key in previous.invalid:
                invalid[key] = previous.invalid[key]
        elif before.source in loaded.broken_files:
            plans[key] = before  # broken, perhaps not removed: pause it
            invalid[key] = loaded.broken_files[before.source]
        else:
            deleted[key] = before
    errors_before = {**previous.rejected, **previous.invalid}
    errors_now = {**rejected, **invalid}
    return Update(
        plans=dict(sorted(plans.items())),
        invalid=dict(sorted(invalid.items())),
        deleted=dict(sorted(deleted.items())),
        rejected=dict(sorted(rejected.items())),
        problems=tuple(loaded.problems),
        added=tuple(sorted(plans.keys() - previous.plans.keys())),
        changed=tuple(
            sorted(
                key
                for key, plan in loaded.plans.items()
                if key in previous.plans and not _same_definition(previous.plans[key], plan)
            )
        ),
        removed=tuple(sorted(deleted)),
        invalidated=tuple(
            sorted(key for key, msg in errors_now.items() if errors_before.get(key) != msg)
        ),
        fixed=tuple(sorted(key for key in previous.invalid if key in loaded.plans)),
        new_problems=_new(loaded.problems, previous.problems),
    )


def _same_definition(a: Plan, b: Plan) -> bool:
    """Equal but for where they were read from: a plan moved to another file is not changed."""
    return replace(a, source=b.source) == b


def _new(now: Iterable[str], before: Iterable[str]) -> tuple[str, ...]:
    seen = set(before)
    return tuple(p for p in now if p not in seen)


@dataclass(frozen=True)
class File:
    """One plan file's content, or why there is none."""

    source: str
    text: str | None = None
    unreadable: str = ""  # an I/O error: nothing is known about the file's plans
    broken: Problem | None = None  # content that is not plan YAML at all (size, encoding)


# =============================================================================================
# From file contents to a PlanSet (pure)
# =============================================================================================


@dataclass(frozen=True)
class _Definition:
    """One document that names a plan: its Plan if valid, else its problems."""

    key: str
    where: str  # file, plus "(document N)" in a multi-document file
    plan: Plan | None
    problems: tuple[Problem, ...] = ()


def assemble(files: Sequence[File]) -> PlanSet:
    definitions: list[_Definition] = []
    problems: list[str] = []
    broken: dict[str, str] = {}
    unreadable: set[str] = set()
    for file in files:
        if file.unreadable:
            unreadable.add(file.source)
            problems.append(
                f"{file.source}: cannot read: {file.unreadable} (check the file and its "
                "permissions; the plans loaded from it before stay in force)"
            )
            continue
        if file.broken is not None:
            loose = [file.broken]
        else:
            found, loose = _definitions(file.source, file.text or "")
            definitions.extend(found)
        if loose:
            messages = [str(p) for p in loose]
            broken[file.source] = "\n".join(messages)
            problems.extend(messages)
    by_key: dict[str, list[_Definition]] = {}
    for definition in definitions:
        by_key.setdefault(definition.key, []).append(definition)
    conflicts = conflicts_of_every_party([d.plan for d in definitions if d.plan is not None])
    plans: dict[str, Plan] = {}
    errors: dict[str, str] = {}
    for key in sorted(by_key):
        found = by_key[key]
        lines: list[Problem] = []
        if len(found) > 1:
            places = ", ".join(d.where for d in found)
            lines.append(
                Problem(
                    found[0].where,
                    "metadata.name",
                    f"plan {key} is defined {len(found)} times ({places}); every definition is "
                    "refused",
                    "give each plan its own name within its namespace, or remove the copies",
                )
            )
        for definition in found:
            lines.extend(definition.problems)
        lines.extend(conflicts.get(key, ()))
        plan = found[0].plan
        if lines or plan is None:
            errors[key] = "\n".join(str(p) for p in lines)
        else:
            plans[key] = plan
    return PlanSet(
        plans=plans,
        errors=errors,
        problems=problems,
        broken_files=broken,
        unreadable_files=frozenset(unreadable),
    )


def _definitions(source: str, text: str) -> tuple[list[_Definition], list[Problem]]:
    """The plans of one file, each valid or not, and the problems no key can be given to.

    A whole valid file is loaded in one go. Otherwise each document is validated on its own, so
    that one bad document does not hide the valid plans next to it, and the problems of a bad
    one go to the key its ``metadata`` names, read leniently.
    """
    try:
        return [_Definition(p.key, source, p) for p in load_plan_text(text, source)], []
    except PlanError:
        pass
    documents, multi = split(text)
    found: list[_Definition] = []
    loose: list[Problem] = []
    for doc in documents:
        where = f"{source} (document {doc.number})" if multi else source
        try:
            plans = load_plan_text(doc.text, source)
        except PlanError as err:
            problems = tuple(_in_document(p, doc.number, multi) for p in err.problems)
            if doc.key is None:
                loose.extend(problems)
            else:
                found.append(_Definition(doc.key, where, None, problems))
            continue
        found.extend(_Definition(p.key, where, p) for p in plans)
    return found, loose


_DOCUMENT_PATH = re.compile(r"\(document (\d+)\)")
_POSITION_PATH = re.compile(r"line \d+, column \d+|character \d+|\(input\)|\(file\)")


def _in_document(problem: Problem, number: int, multi: bool) -> Problem:
    """A problem of a document validated alone, with the path it has in the whole file, as
    ``load_plan_files`` would print it: field paths get ``(document N)`` in a multi-document
    file, positions (line, column) are the file's already."""
    path = problem.path
    numbered = _DOCUMENT_PATH.match(path)
    if numbered is not None:  # counts from this document: 1 is the document itself
        path = f"(document {number + int(numbered.group(1)) - 1}){path[numbered.end() :]}"
    elif multi and not _POSITION_PATH.fullmatch(path):
        path = f"(document {number}) {path}"
    return replace(problem, path=path)
