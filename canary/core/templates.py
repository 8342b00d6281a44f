"""The normalised pod-template hash that decides whether canary differs from stable
(docs/design.md §1).

*Compared* is the whole pod template (spec and annotations, labels too) minus:

* the label and annotation keys that name the track (:data:`DEFAULT_TRACK_KEYS`): the two
  Deployments of a two-track chart differ in these by design;
* the annotations that restart pods without changing what runs (:data:`RESTART_ANNOTATIONS`):
  ``kubectl rollout restart`` of either Deployment is not a new version;
* null values and empty maps and lists (the API server and Helm disagree on whether to write
  them); keys are sorted. The order of lists is kept: container and env order matter.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

#: Label and annotation keys that name the track, not the version of the code: the two
#: Deployments of a two-track chart differ in these by design (bookinfo uses `version`).
DEFAULT_TRACK_KEYS: frozenset[str] = frozenset(
    {
        "version",
        "track",
        "canary.dev/track",
        "app.kubernetes.io/version",
        "pod-template-hash",
    }
)


#: Annotations that only restart the pods. ``kubectl rollout restart`` stamps the first on the
#: pod template; a restart of the canary (or of stable) must not start a rollout.
RESTART_ANNOTATIONS: frozenset[str] = frozenset({"kubectl.kubernetes.io/restartedAt"})


def _prune(value: Any) -> Any:
    if isinstance(value, Mapping):
        out = {str(k): _prune(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None and v not in ({}, [])}
    if isinstance(value, list | tuple):
        return [_prune(v) for v in value]
    return value


def normalise(template: Mapping[str, Any], track_keys: Iterable[str] = DEFAULT_TRACK_KEYS) -> Any:
    """The compared part of a pod template (``spec.template`` of a Deployment)."""
    drop = frozenset(track_keys)
    meta = template.get("metadata") or {}
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in drop}
    annotations = {
        k: v
        for k, v in (meta.get("annotations") or {}).items()
        if k not in drop and k not in RESTART_ANNOTATIONS
    }
    return _prune(
        {
            "labels": labels,
            "annotations": annotations,
            "spec": template.get("spec") or {},
        }
    )


def template_hash(
    template: Mapping[str, Any], track_keys: Iterable[str] = DEFAULT_TRACK_KEYS
) -> str:
    """sha256 hex of the normalised template; equal templates give equal hashes."""
    blob = json.dumps(normalise(template, track_keys), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()
