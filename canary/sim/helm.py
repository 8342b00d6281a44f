"""Helm in the simulated cluster, as Helm 3 does it: ``install``, ``upgrade`` and ``rollback``
each create a new revision and update the live objects with a **two-way merge** between the old
revision's manifest and the new one (:mod:`canary.sim.merge`), so a field the chart renders the
same in both (the VirtualService weights, 100/0 in every revision) keeps its LIVE value
(docs/design.md §1). Failures, hangs and ``pending-*`` revisions can be injected.

:class:`SimHelm` is the helm half of :class:`~canary.sim.cluster.SimCluster`, which provides the
live objects it writes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from canary.core.errors import HelmError
from canary.core.model import ReleaseInfo, Revision, RevisionStatus, rollback_description
from canary.core.plan import DEFAULT_ROLLBACK_TIMEOUT, ReleaseRef
from canary.core.ports import Clock
from canary.sim import chart
from canary.sim.merge import apply_merge_patch, create_merge_patch

Renderer = Callable[[str, str, Mapping[str, Any]], list[dict[str, Any]]]
ObjectKey = tuple[str, str, str]  # kind, namespace, name


def object_key(obj: Mapping[str, Any]) -> ObjectKey:
    meta = obj.get("metadata") or {}
    return str(obj.get("kind", "")), str(meta.get("namespace", "")), str(meta.get("name", ""))


#: Where an injected helm rollback failure happens:
#: ``connect`` before anything is recorded (cluster unreachable); ``update`` while applying
#: (revision N+1 recorded failed, nothing applied, the previous one superseded, as Helm 3
#: does); ``wait`` after applying (revision N+1 failed, objects already changed).
FailStage = Literal["connect", "update", "wait"]

_DEFAULT_FAILURE: Mapping[str, str] = {
    "connect": 'Kubernetes cluster unreachable: Get "https://10.96.0.1:443/version": '
    "dial tcp 10.96.0.1:443: connect: connection refused",
    "update": 'cannot patch "reviews-v3" with kind Deployment: Internal error occurred: '
    "etcdserver: request timed out",
    "wait": "context deadline exceeded",
}
_IN_PROGRESS = "another operation (install/upgrade/rollback) is in progress"


@dataclass
class HelmRevision:
    number: int
    status: RevisionStatus
    description: str
    values: dict[str, Any]
    manifest: list[dict[str, Any]]
    updated_at: datetime


@dataclass
class HelmRelease:
    name: str
    namespace: str
    revisions: list[HelmRevision] = field(default_factory=list)

    @property
    def last(self) -> HelmRevision:
        return self.revisions[-1]

    def get(self, number: int) -> HelmRevision | None:
        for rev in self.revisions:
            if rev.number == number:
                return rev
        return None

    @property
    def deployed(self) -> HelmRevision | None:
        for rev in reversed(self.revisions):
            if rev.status == RevisionStatus.DEPLOYED:
                return rev
        return None

    def supersede_deployed(self) -> None:
        for rev in self.revisions:
            if rev.status == RevisionStatus.DEPLOYED:
                rev.status = RevisionStatus.SUPERSEDED


@dataclass(frozen=True)
class HelmCall:
    """One ``helm rollback`` the controller asked for, and how it ended."""

    release: ReleaseRef
    revision: int
    timeout: timedelta
    at: datetime
    outcome: str  # "deployed", "pending" or "failed: <stderr tail>"


@dataclass
class _Failure:
    remaining: int
    message: str | None
    stage: FailStage


@dataclass
class _Pending:
    release: HelmRelease
    revision: HelmRevision
    old_manifest: list[dict[str, Any]]


class SimHelm:
    """Helm releases over the live objects of the cluster this is mixed into."""

    clock: Clock
    helm_calls: list[HelmCall]
    _releases: dict[tuple[str, str], HelmRelease]
    _failures: list[_Failure]
    _leave_pending: list[str | None]
    _pending: list[_Pending]
    _objects: dict[ObjectKey, dict[str, Any]]
    render: Renderer

    # The live objects are the cluster's (SimCluster overrides these).
    def put(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        raise NotImplementedError

    def _release(self, name: str | None, namespace: str | None) -> HelmRelease:
        found = [
            rel
            for (n, ns), rel in self._releases.items()
            if (name is None or n == name) and (namespace is None or ns == namespace)
        ]
        if len(found) == 1:
            return found[0]
        if not found:
            raise HelmError("helm failed (exit status 1)", "Error: release: not found")
        raise ValueError(f"release is ambiguous ({name!r} in {namespace!r}): name it")

    def release(self, name: str | None = None, namespace: str | None = None) -> HelmRelease:
        """A copy of a release's record (the only release when neither is given)."""
        return copy.deepcopy(self._release(name, namespace))

    def release_values(
        self, name: str | None = None, namespace: str | None = None
    ) -> dict[str, Any]:
        """The user-supplied values of the deployed (else the last) revision."""
        rel = self._release(name, namespace)
        rev = rel.deployed or rel.last
        return copy.deepcopy(rev.values)

    def history(self, name: str, namespace: str) -> ReleaseInfo:
        """``helm history``: revisions oldest first."""
        rel = self._release(name, namespace)
        return ReleaseInfo(
            revisions=tuple(
                Revision(number=r.number, status=r.status, description=r.description)
                for r in rel.revisions
            )
        )

    def _apply(
        self, old_manifest: list[dict[str, Any]], new_manifest: list[dict[str, Any]]
    ) -> None:
        """Helm 3's update: a two-way merge (old manifest → new manifest) onto LIVE objects."""
        old = {object_key(o): o for o in old_manifest}
        new = {object_key(o): o for o in new_manifest}
        for key, target in new.items():
            live = self._objects.get(key)
            if live is None:
                self.put(target)
                continue
            patch = create_merge_patch(old.get(key, {}), target)
            if patch:
                merged = apply_merge_patch(live, patch)
                if merged != live:
                    self.put(merged)
        for key in old:
            if key not in new:
                self.delete(*key)

    def install(self, release: str, namespace: str, values: Mapping[str, Any]) -> int:
        """``helm install``: revision 1, "Install complete"."""
        if (release, namespace) in self._releases:
            raise HelmError(
                "helm install failed (exit status 1)",
                "Error: INSTALLATION FAILED: cannot re-use a name that is still in use",
            )
        manifest = self.render(release, namespace, values)
        rel = HelmRelease(name=release, namespace=namespace)
        self._releases[(release, namespace)] = rel
        self._apply([], manifest)
        rel.revisions.append(
            HelmRevision(
                number=1,
                status=RevisionStatus.DEPLOYED,
                description="Install complete",
                values=copy.deepcopy(dict(values)),
                manifest=manifest,
                updated_at=self.clock.now(),
            )
        )
        return 1

    def upgrade(self, release: str, namespace: str, values: Mapping[str, Any]) -> int:
        """``helm upgrade`` with exactly these user values: a new revision, "Upgrade complete"."""
        rel = self._release(release, namespace)
        if rel.last.status.pending:
            raise HelmError(
                "helm upgrade failed (exit status 1)", f"Error: UPGRADE FAILED: {_IN_PROGRESS}"
            )
        current = rel.deployed or rel.last
        manifest = self.render(release, namespace, values)
        self._apply(current.manifest, manifest)
        rel.supersede_deployed()
        number = rel.last.number + 1
        rel.revisions.append(
            HelmRevision(
                number=number,
                status=RevisionStatus.DEPLOYED,
                description="Upgrade complete",
                values=copy.deepcopy(dict(values)),
                manifest=manifest,
                updated_at=self.clock.now(),
            )
        )
        return number

    def rollback(
        self,
        release: str,
        revision: int,
        namespace: str | None = None,
        timeout: timedelta = DEFAULT_ROLLBACK_TIMEOUT,
    ) -> int:
        """``helm rollback REL REV --wait --timeout T``: a new revision "Rollback to REV".

        Honours :meth:`helm_fail_next` and :meth:`helm_leave_pending`; every call is recorded
        in :attr:`helm_calls`. Returns the new revision's number; raises HelmError.
        """
        rel_ns = namespace
        if rel_ns is None:
            matches = [ns for (n, ns) in self._releases if n == release]
            rel_ns = matches[0] if len(matches) == 1 else ""
        outcome = "deployed"
        try:
            number = self._rollback(release, revision, namespace)
            if self._pending and self._pending[-1].revision.number == number:
                outcome = "pending"
            return number
        except HelmError as exc:
            outcome = f"failed: {exc.stderr_tail or exc}"
            raise
        finally:
            self.helm_calls.append(
                HelmCall(
                    release=ReleaseRef(name=release, namespace=rel_ns),
                    revision=revision,
                    timeout=timeout,
                    at=self.clock.now(),
                    outcome=outcome,
                )
            )

    def _rollback(self, release: str, revision: int, namespace: str | None) -> int:
        argv = f"helm rollback {release} {revision}"
        rel = self._release(release, namespace)
        if rel.last.status.pending:
            raise HelmError(f"{argv} failed (exit status 1)", f"Error: {_IN_PROGRESS}")
        failure = self._failures[0] if self._failures else None
        if failure is not None and failure.stage == "connect":
            self._consume_failure()
            raise HelmError(f"{argv} failed (exit status 1)", f"Error: {self._message(failure)}")
        if revision <= 0:  # `helm rollback REL 0` (or none): the previous revision
            revision = rel.last.number - 1
        target = rel.get(revision)
        if target is None:
            raise HelmError(f"{argv} failed (exit status 1)", "Error: release: not found")
        current = rel.last
        number = current.number + 1
        new = HelmRevision(
            number=number,
            status=RevisionStatus.PENDING_ROLLBACK,
            description=rollback_description(revision),
            values=copy.deepcopy(target.values),
            manifest=copy.deepcopy(target.manifest),
            updated_at=self.clock.now(),
        )
        rel.revisions.append(new)
        if failure is not None and failure.stage == "update":
            self._consume_failure()
            message = self._message(failure)
            current.status = RevisionStatus.SUPERSEDED
            new.status = RevisionStatus.FAILED
            new.description = f'Rollback "{release}" failed: {message}'
            raise HelmError(f"{argv} failed (exit status 1)", f"Error: {message}")
        if self._leave_pending:
            error = self._leave_pending.pop(0)
            self._pending.append(_Pending(rel, new, copy.deepcopy(current.manifest)))
            if error is not None:
                raise HelmError(f"{argv} failed", error)
            return number
        self._apply(current.manifest, new.manifest)
        if failure is not None and failure.stage == "wait":
            self._consume_failure()
            message = self._message(failure)
            new.status = RevisionStatus.FAILED
            new.description = f'Release "{release}" failed: {message}'
            raise HelmError(
                f"{argv} failed (exit status 1)", f"Error: release {release} failed: {message}"
            )
        rel.supersede_deployed()
        new.status = RevisionStatus.DEPLOYED
        return number

    def _message(self, failure: _Failure) -> str:
        return failure.message or _DEFAULT_FAILURE[failure.stage]

    def _consume_failure(self) -> None:
        self._failures[0].remaining -= 1
        if self._failures[0].remaining <= 0:
            self._failures.pop(0)

    def helm_fail_next(
        self, n: int, message: str | None = None, *, stage: FailStage = "connect"
    ) -> None:
        """Make the next ``n`` rollbacks fail with ``message`` as helm's stderr (see FailStage)."""
        if n > 0:
            self._failures.append(_Failure(remaining=n, message=message, stage=stage))

    def helm_leave_pending(self, error: str | None = None) -> None:
        """Make the next rollback stop half-way: its revision stays ``pending-rollback`` and its
        effect unapplied until :meth:`helm_settle` (a helm whose caller went away). With
        ``error``, the call also raises HelmError with that stderr (e.g. ``signal: killed``)."""
        self._leave_pending.append(error)

    def helm_settle(self) -> int:
        """Finish every pending rollback (apply it, mark it deployed); returns how many."""
        settled = 0
        while self._pending:
            pending = self._pending.pop(0)
            self._apply(pending.old_manifest, pending.revision.manifest)
            pending.release.supersede_deployed()
            pending.revision.status = RevisionStatus.DEPLOYED
            pending.revision.updated_at = self.clock.now()
            settled += 1
        return settled

    # --- what CI does ------------------------------------------------------------------------

    def deploy_canary(
        self, image: str, release: str | None = None, namespace: str | None = None
    ) -> int:
        """CI after an image push: ``helm upgrade`` with ``canary.image`` set to ``image``."""
        rel = self._release(release, namespace)
        values = self.release_values(rel.name, rel.namespace)
        values.setdefault("canary", {})["image"] = image
        return self.upgrade(rel.name, rel.namespace, values)

    def promote(self, release: str | None = None, namespace: str | None = None) -> int:
        """CI after success: ``helm upgrade`` giving stable the canary's template values."""
        rel = self._release(release, namespace)
        values = self.release_values(rel.name, rel.namespace)
        effective = chart.merge_values(chart.DEFAULT_VALUES, values)
        stable = values.setdefault("stable", {})
        for key in chart.TEMPLATE_KEYS:
            stable[key] = copy.deepcopy(effective["canary"].get(key))
        return self.upgrade(rel.name, rel.namespace, values)
