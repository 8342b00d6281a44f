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
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import timedelta

from canary.core.errors import Problem
from canary.plans.files import decode, read_bytes
from canary.plans.planset import File as _File
from canary.plans.planset import PlanSet, assemble

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
        return assemble(files)

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
                raw = read_bytes(entry.real)
            except FileNotFoundError:
                vanished = True
                files.append(_File(entry.path, unreadable="it vanished while being read"))
                continue
            except OSError as err:
                files.append(_File(entry.path, unreadable=err.strerror or str(err)))
                continue
            text = decode(entry.path, raw)
            files.append(
                _File(entry.path, broken=text)
                if isinstance(text, Problem)
                else _File(entry.path, text=text)
            )
        return files, vanished
