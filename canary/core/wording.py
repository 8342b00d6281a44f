"""How problems quote values: one wording for plan validation, the controller config and the CLI.

``show`` spells a value as the user wrote it (strings in double quotes, YAML's spelling for the
rest); ``got`` says what kind of value it is, for "expected X, got Y"; ``suggest_key`` finds the
key the user probably meant.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping, Sequence

#: The fix for a key given twice in one mapping: YAML would keep the last silently.
DUPLICATE_KEY_FIX = "YAML keeps only the last value and drops the others; remove the extra ones"


def show(value: object) -> str:
    """A value as the message quotes it: strings in double quotes, YAML spelling for the rest."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        shown = value if len(value) <= 80 else value[:77] + "..."
        return json.dumps(shown, ensure_ascii=False)
    return got(value)


def got(value: object) -> str:
    """What a wrong value is, for ``expected X, got Y`` messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {show(value)}"
    if isinstance(value, int | float):
        return f"the number {show(value)}"
    if isinstance(value, str):
        return f"the string {show(value)}"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return f"a {type(value).__name__}"


def suggest_key(key: str, known: Sequence[str]) -> str:
    def norm(s: str) -> str:
        return s.replace("_", "").replace("-", "").lower()

    by_norm = {norm(k): k for k in known}
    if norm(key) in by_norm:
        return f"did you mean {by_norm[norm(key)]}?"
    close = difflib.get_close_matches(norm(key), list(by_norm), n=1, cutoff=0.6)
    if close:
        return f"did you mean {by_norm[close[0]]}?"
    return f"known keys here: {', '.join(known)}"
