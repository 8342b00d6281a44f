"""Helm's release history read cheaply from its storage Secrets, through the kube API.

Helm 3 and 4 store each revision of a release as a Secret ``sh.helm.release.v1.REL.vN`` in the
release's namespace, labelled ``owner=helm, name=REL, version=N, status=STATUS``; its
``data.release`` is base64 (the Secret encoding) of base64 of gzip of the release JSON, whose
``info.description`` says e.g. ``Rollback to 3``. One label-selected list answers what ``helm
history`` would, without starting a helm process on every tick (design §1: the base revision is
recorded "cheaply, not a helm call per tick"). Rollbacks still run the helm binary.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from kubernetes import client

from canary.adapters.kube import DEFAULT_REQUEST_TIMEOUT, call
from canary.core.errors import ConfigError, NotFoundError
from canary.core.model import ReleaseInfo, Revision, RevisionStatus
from canary.core.plan import ReleaseRef
from canary.core.ports import ReleaseManager

#: gzip's magic number: helm compresses the release JSON before base64-encoding it.
GZIP_MAGIC = b"\x1f\x8b\x08"


def decode_release(data: str) -> Mapping[str, Any]:
    """A Secret's ``data.release`` (as the API returns it) → the release JSON."""
    inner = base64.b64decode(base64.b64decode(data))
    if inner.startswith(GZIP_MAGIC):
        inner = gzip.decompress(inner)
    doc = json.loads(inner)
    if not isinstance(doc, Mapping):
        raise ValueError("the release is not a JSON object")
    return doc


def encode_release(release: Mapping[str, Any]) -> str:
    """The inverse of :func:`decode_release` (tests seed Secrets the way helm writes them)."""
    inner = base64.b64encode(gzip.compress(json.dumps(release).encode()))
    return base64.b64encode(inner).decode()


def _labelled(secret: Mapping[str, Any]) -> tuple[int, RevisionStatus] | None:
    labels = (secret.get("metadata") or {}).get("labels") or {}
    try:
        number = int(labels.get("version", ""))
    except ValueError:
        return None
    try:
        return number, RevisionStatus(str(labels.get("status", "unknown")))
    except ValueError:
        return number, RevisionStatus.UNKNOWN


def _revision(secret: Mapping[str, Any]) -> Revision | None:
    labelled = _labelled(secret)
    if labelled is None:
        return None
    number, status = labelled
    description = ""
    raw = (secret.get("data") or {}).get("release")
    if raw:
        try:
            description = str((decode_release(raw).get("info") or {}).get("description", ""))
        except (ValueError, OSError, EOFError) as exc:
            # Never guess: an unreadable description could be our own "Rollback to N" read as
            # a release that moved on. The history is unreadable until the Secret is fixed.
            name = (secret.get("metadata") or {}).get("name", f"revision {number}")
            raise ConfigError(
                f"helm's release Secret {name} cannot be decoded ({type(exc).__name__}: {exc})"
            ) from None
    return Revision(number, status, description)


class SecretHistory:
    """ReleaseManager: history from helm's Secrets (one list call), rollback by ``delegate``.
    Every revision's number and status; the description of the deployed and the newest only
    (the ones decide reads), so a tick gunzips two releases, not the whole history.
    (the helm binary: :class:`canary.adapters.helm.HelmReleases`)."""

    def __init__(self, api: client.ApiClient, delegate: ReleaseManager) -> None:
        self._api = api
        self._core = client.CoreV1Api(api)
        self._delegate = delegate

    def history(self, release: ReleaseRef) -> ReleaseInfo:
        found = call(
            lambda: self._core.list_namespaced_secret(
                release.namespace,
                label_selector=f"owner=helm,name={release.name}",
                _request_timeout=DEFAULT_REQUEST_TIMEOUT,
            ),
            verb="list",
            what=f"secrets in {release.namespace} (helm release {release.name})",
        )
        items = self._api.sanitize_for_serialization(found).get("items") or []  # type: ignore[no-untyped-call]
        # Decisions read the description of the deployed and the newest revision only: decode
        # (gunzip) just those two; the others' number and status are in their labels.
        labelled = [(lab, s) for s, lab in ((s, _labelled(s)) for s in items) if lab is not None]
        deployed = [lab[0] for lab, _ in labelled if lab[1] is RevisionStatus.DEPLOYED]
        wanted = {max(lab[0] for lab, _ in labelled)} if labelled else set()
        if deployed:
            wanted.add(max(deployed))
        revisions: list[Revision] = []
        for (number, status), secret in labelled:
            full = _revision(secret) if number in wanted else None
            revisions.append(full or Revision(number, status, ""))
        if not revisions:
            raise NotFoundError(f"helm release {release.namespace}/{release.name} not found")
        return ReleaseInfo(tuple(sorted(revisions, key=lambda r: r.number)))

    def rollback(self, release: ReleaseRef, revision: int, timeout: timedelta) -> None:
        self._delegate.rollback(release, revision, timeout)
