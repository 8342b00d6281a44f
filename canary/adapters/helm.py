"""The release port over the ``helm`` binary (docs/design.md §7).

Exactly two commands, valid for Helm 3 and 4, as argv lists (never a shell)::

    helm history REL --namespace NS -o json
    helm rollback REL REV --namespace NS --wait --timeout 5m0s

Every call has a timeout; errors carry the tail of helm's stderr. ``history`` is read-only, so
a hung one is killed at its timeout. A running ``rollback`` is **never** killed by us: helm's
own ``--timeout`` bounds it, and if it outlives that plus a grace period we stop waiting (the
rollback flow then sees the release ``pending-rollback`` and waits for it) but leave the
process alone. Release names are validated before they reach argv; the kube context and the
``HELM_*`` environment are passed through.

History is cached for a few seconds per release (a tick must not start a helm process per
plan); a rollback invalidates its release's entry.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from datetime import timedelta

from canary.core.durations import go_duration
from canary.core.errors import ConfigError, HelmError, NotFoundError, UnavailableError
from canary.core.model import ReleaseInfo, Revision, RevisionStatus
from canary.core.names import NAMESPACE, RELEASE, name_problem
from canary.core.plan import ReleaseRef

#: `helm version` reads nothing remote: an answer takes milliseconds.
VERSION_TIMEOUT = timedelta(seconds=10)
#: `helm history` reads a few Secrets; 30 s means the API server is in trouble.
DEFAULT_HISTORY_TIMEOUT = timedelta(seconds=30)
#: How long past helm's own --timeout we keep waiting for a rollback before we stop waiting
#: (never killing it): helm needs a moment to record the outcome after its timeout.
DEFAULT_ROLLBACK_GRACE = timedelta(seconds=60)
#: A history younger than this is reused: ticks every few seconds cost one helm call, not one
#: per tick and plan. Short enough that a CI upgrade is seen within a couple of ticks.
DEFAULT_HISTORY_TTL = timedelta(seconds=5)
#: The end of stderr kept in errors: enough for helm's one-line "Error: ..." and its cause.
STDERR_TAIL = 2000

#: Helm's own rule for release names (pkg/chartutil/validate_name.go), at most 53 characters.


def _tail(text: str) -> str:
    return text.strip()[-STDERR_TAIL:]


def _check_names(release: ReleaseRef) -> None:
    """Names reach helm's argv: the plan's validation checked them; checked again here."""
    for text, rule in ((release.name, RELEASE), (release.namespace, NAMESPACE)):
        problem = name_problem(text, rule)
        if problem is not None:
            raise ConfigError(f"{problem[0]} ({problem[1]})")


def parse_history(raw: str) -> ReleaseInfo:
    """`helm history -o json` → revisions, oldest first."""
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise HelmError("helm history printed no JSON", raw[:200]) from exc
    if not isinstance(doc, list):
        raise HelmError("helm history printed an unexpected document", raw[:200])
    revisions = []
    for item in doc:
        if not isinstance(item, Mapping) or not isinstance(item.get("revision"), int):
            raise HelmError("helm history entry without a revision number", str(item)[:200])
        try:
            status = RevisionStatus(str(item.get("status", "unknown")))
        except ValueError:
            status = RevisionStatus.UNKNOWN
        revisions.append(Revision(item["revision"], status, str(item.get("description", ""))))
    return ReleaseInfo(tuple(sorted(revisions, key=lambda r: r.number)))


class HelmReleases:
    """ReleaseManager over the helm binary."""

    def __init__(
        self,
        binary: str = "helm",
        *,
        kube_context: str | None = None,
        kubeconfig: str | None = None,
        env: Mapping[str, str] | None = None,
        history_timeout: timedelta = DEFAULT_HISTORY_TIMEOUT,
        history_ttl: timedelta = DEFAULT_HISTORY_TTL,
        rollback_grace: timedelta = DEFAULT_ROLLBACK_GRACE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.binary = binary
        self._global: list[str] = []
        if kube_context:
            self._global += ["--kube-context", kube_context]
        if kubeconfig:
            self._global += ["--kubeconfig", kubeconfig]
        self._env = {**os.environ, **(env or {})}  # HELM_*, KUBECONFIG, PATH pass through
        self.history_timeout = history_timeout
        self.history_ttl = history_ttl
        self.rollback_grace = rollback_grace
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, ReleaseInfo]] = {}
        self._generations: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        #: rollbacks we stopped waiting for (still running, never killed), by release
        self.running: dict[tuple[str, str], subprocess.Popen[str]] = {}

    def locate(self) -> str:
        """The path of the helm binary; :class:`ConfigError` naming the setting if there is
        none. Cheap (a PATH lookup): ``/readyz`` asks on every probe."""
        path = shutil.which(self.binary, path=self._env.get("PATH"))
        if path is None:
            raise ConfigError(
                f"helm binary {self.binary!r} not found"
                + ("" if os.sep in self.binary else " on PATH")
                + ": without helm no rollback can run; install it, or point --helm-binary "
                "(CANARY_HELM_BINARY, key helmBinary) at it"
            )
        return path

    def version(self) -> str:
        """``helm version --short`` (e.g. ``v3.16.2+g13654a5``): the binary runs. Raises
        :class:`ConfigError` when it cannot be run or fails."""
        argv = [self.locate(), "version", "--short"]
        try:
            done = subprocess.run(  # an argv list we built, never a shell
                argv,
                capture_output=True,
                text=True,
                timeout=VERSION_TIMEOUT.total_seconds(),
                env=self._env,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ConfigError(
                f"{self.binary} version did not answer within {go_duration(VERSION_TIMEOUT)}"
            ) from None
        except OSError as exc:
            raise ConfigError(f"cannot run helm ({self.binary}): {exc}") from None
        if done.returncode != 0:
            raise ConfigError(
                f"{self.binary} version exited {done.returncode}: {_tail(done.stderr)}"
            )
        return done.stdout.strip()

    def _argv(self, *args: str) -> list[str]:
        return [self.binary, *args, *self._global]

    def history(self, release: ReleaseRef) -> ReleaseInfo:
        _check_names(release)
        key = (release.namespace, release.name)
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
            generation = self._generations.get(key, 0)
        if cached is not None and now - cached[0] < self.history_ttl.total_seconds():
            return cached[1]
        argv = self._argv("history", release.name, "--namespace", release.namespace, "-o", "json")
        try:
            done = subprocess.run(  # an argv list we built, never a shell
                argv,
                capture_output=True,
                text=True,
                timeout=self.history_timeout.total_seconds(),
                env=self._env,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise UnavailableError(
                f"helm history {release.name} did not answer within "
                f"{go_duration(self.history_timeout)}"
            ) from None
        except OSError as exc:
            raise ConfigError(f"cannot run helm ({self.binary}): {exc}") from None
        if done.returncode != 0:
            stderr = _tail(done.stderr)
            if "not found" in stderr:
                raise NotFoundError(
                    f"helm release {release.namespace}/{release.name} not found: {stderr}"
                )
            raise HelmError(f"helm history {release.name} exited {done.returncode}", stderr)
        info = parse_history(done.stdout)
        with self._lock:
            # a rollback that started or ended while we read makes this answer stale: not cached
            if self._generations.get(key, 0) == generation:
                self._cache[key] = (now, info)
        return info

    def _changed(self, key: tuple[str, str]) -> None:
        """The release is changing (a rollback starts or ends): forget what we read of it."""
        with self._lock:
            self._cache.pop(key, None)
            self._generations[key] = self._generations.get(key, 0) + 1

    def rollback(self, release: ReleaseRef, revision: int, timeout: timedelta) -> None:
        """`helm rollback`; returns when helm exited 0. Raises HelmError otherwise, or if helm
        is still running past its timeout plus the grace (then it is left running)."""
        _check_names(release)
        if revision < 1:
            raise ConfigError(f"refusing to roll back to revision {revision}: name it exactly")
        key = (release.namespace, release.name)
        previous = self.running.get(key)
        if previous is not None:
            if previous.poll() is None:
                # one breach, one helm at a time: the one we stopped waiting for is still going
                raise HelmError(
                    f"helm rollback {release.name} started earlier (pid {previous.pid}) is still "
                    "running; not starting another"
                )
            del self.running[key]  # it ended (and is reaped): its outcome is in the history
        self._changed(key)
        argv = self.rollback_argv(release, revision, timeout)
        try:
            process = subprocess.Popen(  # an argv list we built, never a shell
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=self._env,
                start_new_session=True,  # our own signals (SIGTERM at shutdown) never reach it
            )
        except OSError as exc:
            raise ConfigError(f"cannot run helm ({self.binary}): {exc}") from None
        try:
            _, stderr = process.communicate(timeout=(timeout + self.rollback_grace).total_seconds())
        except subprocess.TimeoutExpired:
            self.running[key] = process  # never killed: helm settles the release itself
            raise HelmError(
                f"helm rollback {release.name} {revision} still running after "
                f"{go_duration(timeout + self.rollback_grace)}; left running"
            ) from None
        finally:
            self._changed(key)
        if process.returncode != 0:
            raise HelmError(
                f"helm rollback {release.name} {revision} exited {process.returncode}",
                _tail(stderr),
            )

    def rollback_argv(self, release: ReleaseRef, revision: int, timeout: timedelta) -> list[str]:
        """The exact argv of a rollback (docs/design.md §7)."""
        return self._argv(
            "rollback", release.name, str(revision), "--namespace", release.namespace,
            "--wait", "--timeout", go_duration(timeout),
        )  # fmt: skip
