"""The plans directory of ``canary run``: watched cheaply, read consistently, reconciled purely.

In a cluster the directory is a mounted ConfigMap, which the kubelet lays out and updates like
this (``AtomicWriter`` in kubelet's volume util)::

    plans/
      ..2026_11_22_10_00_00.123/        the current generation, never modified once written
        reviews.yaml
      ..data -> ..2026_11_22_10_00_00.123
      reviews.yaml -> ..data/reviews.yaml

An update writes a new timestamped directory, renames a new ``..data`` symlink over the old one
(atomic), adds symlinks for new keys, removes those of deleted keys, then removes the old
directory. Outside a cluster (``canary run --plans config/plans``) it is a plain directory whose
files are edited in place. This module handles both the same way:

* :meth:`PlanSource.changed` compares a fingerprint of the directory (the ``..data`` target and,
  per plan file, its resolved path and ``stat``) with the one taken for the last load: a listing
  and a few ``stat`` calls, cheap enough to run every second or two.
* :meth:`PlanSource.load` reads every plan file from the resolved path of that fingerprint and
  takes the fingerprint again afterwards; if the directory changed meanwhile (a swap in the
  middle of the read) it reads again. A generation directory is never modified, so a read that
  saw one fingerprint throughout is one consistent generation, never half old and half new.
* A load is a :class:`PlanSet`: the valid plans by key, the errors of plans whose key is known
  but whose definition is not valid, and the problems no key can be given to.
* :func:`reconcile` (pure) turns the previous :class:`Update` and a new PlanSet into the next
  Update: the ``plans`` / ``invalid`` / ``deleted`` the Controller works from, and what changed,
  so the daemon logs once per change and not once per poll.

What a load cannot tell apart is resolved towards keeping what runs (DESIGN §3: "when in doubt,
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

import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Protocol

import yaml
from yaml.events import (
    CollectionEndEvent,
    CollectionStartEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    Event,
    MappingStartEvent,
    NodeEvent,
    ScalarEvent,
)
from yaml.nodes import ScalarNode

from canary.core.errors import PlanError, Problem
from canary.core.plan import Plan
from canary.plans.files import MAX_INPUT_BYTES, load_plan_text

# --- defaults ----------------------------------------------------------------------------------

#: The names ``load_plan_files`` reads from a directory, so ``canary validate DIR`` and
#: ``canary run --plans DIR`` see the same plans.
PLAN_SUFFIXES: tuple[str, ...] = (".yaml", ".yml")
#: The kubelet's symlink to the current generation of a ConfigMap volume. Its target is part of
#: the fingerprint: it is what an update swaps, even when no visible name changes.
CONFIGMAP_DATA_LINK = "..data"
#: A swap takes the kubelet milliseconds; a read that overlaps one is simply done again. Three
#: overlapping reads in a row mean the directory is being rewritten continuously: the last read
#: is used and the next poll, which sees a changed fingerprint, reads again.
MAX_READ_ATTEMPTS = 3
#: How often the daemon should call :meth:`PlanSource.changed`. The kubelet itself propagates a
#: ConfigMap edit within about a minute (its sync period plus cache TTL); two seconds adds
#: nothing noticeable to that and costs a listing and a few stat calls.
DEFAULT_POLL_INTERVAL = timedelta(seconds=2)

_STR_TAG = "tag:yaml.org,2002:str"
_METADATA_KEYS = ("name", "namespace")


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
    """What an Update is applied to: the three dicts of :class:`canary.shell.controller.Controller`."""

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


# =============================================================================================
# The directory
# =============================================================================================


@dataclass(frozen=True)
class _Entry:
    """One plan file as listed: its visible path (the plan's source) and what it resolves to."""

    path: str  # directory/name, e.g. plans/reviews.yaml: stable across ConfigMap updates
    real: str  # the file read, e.g. plans/..2026_11_22_10_00_00.123/reviews.yaml
    #: (device, inode, size, mtime_ns, ctime_ns): a rename-over changes the inode, an in-place
    #: write the size or times. ctime cannot be set back by tools that restore mtime.
    stat: tuple[int, ...] = ()
    error: str = ""  # stat failed for another reason than a missing target


@dataclass(frozen=True)
class _Fingerprint:
    data: str | None  # target of ..data; None outside a ConfigMap volume
    entries: tuple[_Entry, ...] = ()
    error: str = ""  # the directory could not be listed


@dataclass(frozen=True)
class _File:
    """One plan file's content, or why there is none."""

    source: str
    text: str | None = None
    unreadable: str = ""  # an I/O error: nothing is known about the file's plans
    broken: Problem | None = None  # content that is not plan YAML at all (size, encoding)


def _read_bytes(path: str) -> bytes:
    """The file's first ``MAX_INPUT_BYTES + 1`` bytes: enough to tell it is too large."""
    with open(path, "rb") as handle:
        return handle.read(MAX_INPUT_BYTES + 1)


def _is_plan_name(name: str) -> bool:
    """Visible ``*.yaml``/``*.yml``; hidden names include the kubelet's ``..data`` and
    ``..<timestamp>`` entries, whose files are reached through the visible symlinks."""
    return not name.startswith(".") and name.endswith(PLAN_SUFFIXES)


class PlanSource:
    """The plans directory: :meth:`changed` is cheap, :meth:`load` reads a consistent copy."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = os.fspath(directory)
        self._loaded: _Fingerprint | None = None

    def changed(self) -> bool:
        """Whether the directory differs from what the last :meth:`load` read (True before the
        first load). A listing, a readlink and a stat plus realpath per plan file."""
        return self._loaded is None or self._fingerprint() != self._loaded

    def poll(self) -> PlanSet | None:
        """:meth:`load` if the directory :meth:`changed`, else None."""
        return self.load() if self.changed() else None

    def load(self) -> PlanSet:
        """Read every plan file; retried while a ConfigMap swap overlaps the read."""
        files: list[_File] = []
        attempt = 0
        while True:
            attempt += 1
            before = self._fingerprint()
            if before.error:
                break
            files, vanished = self._read(before)
            if attempt >= MAX_READ_ATTEMPTS or (not vanished and self._fingerprint() == before):
                break
        # The fingerprint from *before* the read: if the directory changed during it, the next
        # changed() says so and the next load reads the newer content.
        self._loaded = before
        if before.error:
            message = (
                f"{self.directory}: cannot list the plans directory: {before.error} (check "
                "--plans and the volume mount; the plans loaded before stay in force)"
            )
            return PlanSet(problems=[message], listed=False)
        return _assemble(files)

    def _fingerprint(self) -> _Fingerprint:
        """The ``..data`` target first, then the files: a swap between the two shows up as a
        different ``..data`` in the fingerprint taken after the read."""
        try:
            data: str | None = os.readlink(os.path.join(self.directory, CONFIGMAP_DATA_LINK))
        except OSError:  # absent, or not a symlink: not a ConfigMap volume
            data = None
        try:
            with os.scandir(self.directory) as listing:
                names = sorted(entry.name for entry in listing if _is_plan_name(entry.name))
        except OSError as err:
            return _Fingerprint(data, error=err.strerror or str(err))
        entries: list[_Entry] = []
        for name in names:
            path = os.path.join(self.directory, name)
            try:
                st = os.stat(path)  # follows the per-key symlink
            except FileNotFoundError:
                # A dangling symlink: the kubelet removed this key's file in a swap and removes
                # the link right after. The key is gone from the ConfigMap.
                continue
            except OSError as err:
                entries.append(_Entry(path, path, error=err.strerror or str(err)))
                continue
            if not stat.S_ISREG(st.st_mode):  # a directory or a FIFO named *.yaml
                continue
            stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            entries.append(_Entry(path, os.path.realpath(path), stamp))
        return _Fingerprint(data, tuple(entries))

    @staticmethod
    def _read(fingerprint: _Fingerprint) -> tuple[list[_File], bool]:
        """Each file from its resolved path; the flag says whether one vanished (the old
        generation directory was removed under the read)."""
        files: list[_File] = []
        vanished = False
        for entry in fingerprint.entries:
            if entry.error:
                files.append(_File(entry.path, unreadable=entry.error))
                continue
            try:
                raw = _read_bytes(entry.real)
            except FileNotFoundError:
                vanished = True
                files.append(_File(entry.path, unreadable="it vanished while being read"))
                continue
            except OSError as err:
                files.append(_File(entry.path, unreadable=err.strerror or str(err)))
                continue
            files.append(_decode(entry.path, raw))
        return files, vanished


def _decode(source: str, raw: bytes) -> _File:
    """Text as ``load_plan_files`` reads it: at most MAX_INPUT_BYTES of UTF-8, BOM dropped."""
    if len(raw) > MAX_INPUT_BYTES:
        return _File(
            source,
            broken=Problem(
                source,
                "(file)",
                f"larger than {MAX_INPUT_BYTES} bytes (1 MiB)",
                "a plan is a few KiB: split the file, or check that this is a plan file",
            ),
        )
    try:
        return _File(source, text=raw.decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        return _File(
            source,
            broken=Problem(
                source,
                "(file)",
                f"not UTF-8 text: byte 0x{raw[err.start]:02x} at offset {err.start}",
                "save the file as UTF-8",
            ),
        )


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


def _assemble(files: Sequence[_File]) -> PlanSet:
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
    conflicts = _conflicts([d.plan for d in definitions if d.plan is not None])
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
    documents, multi = _split(text)
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


# --- splitting a stream into documents, reading each one's key leniently -------------------


@dataclass(frozen=True)
class _Document:
    number: int  # 1-based, counting every document as plan.py does
    #: the document's text, preceded by blank lines and spaces so that the line and column
    #: numbers in its problems are those of the file
    text: str
    key: str | None  # metadata.namespace/metadata.name, if both are plain strings


def _split(text: str) -> tuple[list[_Document], bool]:
    """The documents of a YAML stream; the flag says whether problems name their document
    (more than one document, or a syntax error that ended the stream).

    Uses the parser's events only: nothing is constructed, aliases are never expanded and the
    nesting costs no recursion, so this is safe on any input ``load_plan_text`` would refuse.
    A syntax error ends the stream (YAML cannot resynchronise): the rest of the text is one last
    document, keyed by the metadata seen before the error.
    """
    documents: list[_Document] = []
    number = 0
    resume: Any = None  # where the text after the last complete document starts (a Mark)
    start: Any = None  # start Mark of the document being read
    scan = _MetadataScan()
    try:
        # The pure-Python parser, as plan.py's loader: its marks index the characters of text.
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, DocumentStartEvent):
                number += 1
                start = event.start_mark
                scan = _MetadataScan()
            elif isinstance(event, DocumentEndEvent):
                end: Any = event.end_mark
                documents.append(_Document(number, _slice(text, start, end.index), scan.key))
                resume, start = end, None
            elif start is not None:
                scan.feed(event)
    except yaml.YAMLError:
        if start is not None:
            documents.append(_Document(number, _slice(text, start, len(text)), scan.key))
        else:
            documents.append(_Document(number + 1, _slice(text, resume, len(text)), None))
        return documents, True
    return documents, number > 1


def _slice(text: str, start: Any, end: int) -> str:
    """``text[start:end]`` padded to keep the file's line and column numbers."""
    if start is None:
        return text[:end]
    padding = "\n" * int(start.line) + " " * int(start.column)
    return padding + text[int(start.index) : end]


class _MetadataScan:
    """Reads ``metadata.name`` and ``metadata.namespace`` from one document's events.

    Only the top two levels are tracked, so memory stays constant however deep the document
    nests. Values count only if YAML would read them as strings (``name: 123`` does not).
    """

    def __init__(self) -> None:
        self.depth = 0  # nesting level of the next node; 0 is the document's root
        self.frames: list[_Frame] = []  # the open collections of levels 1 and 2
        self.found: dict[str, str] = {}

    @property
    def key(self) -> str | None:
        name, namespace = self.found.get("name"), self.found.get("namespace")
        return f"{namespace}/{name}" if name and namespace else None

    def feed(self, event: Event) -> None:
        if isinstance(event, CollectionEndEvent):
            if self.depth <= len(self.frames):
                self.frames.pop()
            self.depth -= 1
            return
        if not isinstance(event, NodeEvent):
            return
        path = self._place(event)
        if isinstance(event, CollectionStartEvent):
            self.depth += 1
            if self.depth <= 2:
                self.frames.append(_Frame(isinstance(event, MappingStartEvent), path))
        elif isinstance(event, ScalarEvent) and path is not None and len(path) == 2:
            parent, key = path
            if parent == "metadata" and key in _METADATA_KEYS and _is_string(event):
                self.found[key] = event.value

    def _place(self, event: NodeEvent) -> tuple[str, ...] | None:
        """The key path of this node if it is a value under string keys, else None."""
        if self.depth == 0:
            return ()
        if self.depth > len(self.frames):
            return None  # deeper than tracked
        frame = self.frames[self.depth - 1]
        if not frame.mapping:
            return None
        if frame.want_key:
            frame.want_key = False
            frame.key = event.value if isinstance(event, ScalarEvent) else None
            return None
        frame.want_key = True
        if frame.path is None or frame.key is None:
            return None
        return (*frame.path, frame.key)


@dataclass
class _Frame:
    mapping: bool
    path: tuple[str, ...] | None  # of this collection; None if not under string keys
    want_key: bool = True
    key: str | None = None  # the key whose value comes next


_RESOLVER = yaml.resolver.Resolver()


def _is_string(event: ScalarEvent) -> bool:
    """Whether YAML reads this scalar as a non-empty string (as PyYAML's composer resolves it)."""
    tag = event.tag
    if tag is None or tag == "!":
        tag = _RESOLVER.resolve(  # type: ignore[no-untyped-call]
            ScalarNode, event.value, event.implicit
        )
    return tag == _STR_TAG and event.value != ""


# --- conflicts between plans ------------------------------------------------------------------

_VS_FIX = (
    "one plan per VirtualService: a rollout's state lives in one annotation on the "
    "VirtualService; merge the plans or point all but one at another VirtualService"
)
_DEPLOYMENT_FIX = (
    "a Deployment belongs to one plan: two plans would fight over its traffic and roll it back "
    "twice; remove it from all plans but one"
)


def _conflicts(plans: Sequence[Plan]) -> dict[str, list[Problem]]:
    """Per plan key, the problems of sharing a VirtualService or Deployment with another plan.

    The rule is :func:`canary.core.plan.check_conflicts`'s, but every party gets the problem, not
    only the later one: the directory has no order that says which plan was meant, so all of
    them are refused until a human resolves it.
    """
    claims: dict[tuple[str, str, str], list[tuple[Plan, str, str]]] = {}
    for plan in plans:
        ns = plan.namespace
        claims.setdefault(("VirtualService", ns, plan.virtual_service.name), []).append(
            (plan, "spec.virtualService.name", "")
        )
        for role, deployment in (
            ("stable", plan.workloads.stable),
            ("canary", plan.workloads.canary),
        ):
            claims.setdefault(("Deployment", ns, deployment), []).append(
                (plan, f"spec.workloads.{role}", role)
            )
    out: dict[str, list[Problem]] = {}
    for (kind, ns, name), claimants in claims.items():
        if len({plan.key for plan, _, _ in claimants}) < 2:
            continue
        for plan, path, role in claimants:
            others = ", ".join(
                f"plan {o.key} ({', '.join(filter(None, (o.source, _as(o_role))))})"
                for o, _, o_role in claimants
                if o.key != plan.key
            )
            verb = (
                f"names {kind} {ns}/{name} {_as(role)}" if role else f"manages {kind} {ns}/{name}"
            )
            out.setdefault(plan.key, []).append(
                Problem(
                    plan.source,
                    path,
                    f"plan {plan.key} {verb}, and so does {others}: all of these plans are "
                    "refused until only one of them names it",
                    _VS_FIX if kind == "VirtualService" else _DEPLOYMENT_FIX,
                )
            )
    return out


def _as(role: str) -> str:
    return f"as its {role} workload" if role else ""
