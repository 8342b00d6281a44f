"""JSON Merge Patch (RFC 7386): how Helm 3 updates objects without a strategic-merge schema.

Helm 3 computes, for each object, a patch from the object in the OLD release manifest to the
same object in the NEW one, and applies it to the live object: live state it did not render a
change for survives (design §1). For custom resources such as a VirtualService this is exactly
``jsonpatch.CreateMergePatch(old, new)``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any


def create_merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch that turns ``old`` into ``new``; ``{}`` when they are equal.

    Removed keys become ``None``; lists are replaced whole (RFC 7386 has no list merging).
    """
    patch: dict[str, Any] = {}
    for key in old:
        if key not in new:
            patch[key] = None
    for key, value in new.items():
        before = old.get(key, _MISSING)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            sub = create_merge_patch(before, value)
            if sub:
                patch[key] = sub
        elif before is _MISSING or before != value:
            patch[key] = copy.deepcopy(value)
    return patch


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 MergePatch(target, patch); returns a new value, never mutates ``target``."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result: dict[str, Any] = copy.deepcopy(dict(target)) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()
