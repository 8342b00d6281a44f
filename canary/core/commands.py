"""The manual commands' rules, one place for the controller and the CLI (docs/design.md §4):
in which phases each command applies, and how to tell from the state that it took effect.

``decide`` refuses a command outside its phases (``command.dropped``); the CLI refuses to send
it (exit 2, naming the phases) and, once the controller consumed it, tells a command that took
effect (exit 0) from one dropped (exit 1) with :func:`took_effect`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from canary.core.model import (
    ANALYSING_PHASES,
    SUPERSEDABLE_PHASES,
    CommandName,
    Phase,
    RolloutState,
)

#: Where each command applies. ``abort`` works in every active phase but RollingBack (a
#: rollback is under way already) and in RollbackFailed (one more helm attempt); ``promote``
#: also from a Paused rollout: a human decided.
PHASES: Final[Mapping[CommandName, frozenset[Phase]]] = {
    CommandName.ABORT: SUPERSEDABLE_PHASES | {Phase.ROLLBACK_FAILED},
    CommandName.PAUSE: frozenset({Phase.PROGRESSING}),
    CommandName.RESUME: frozenset({Phase.PAUSED}),
    CommandName.PROMOTE: ANALYSING_PHASES,
    CommandName.PROMOTE_FULL: ANALYSING_PHASES,
    CommandName.RETRY: frozenset({Phase.ROLLED_BACK}),
}

#: What a command's verb is called in messages (``promote-full`` is ``promote --full``).
VERBS: Final[Mapping[CommandName, str]] = {
    CommandName.ABORT: "abort",
    CommandName.PAUSE: "pause",
    CommandName.RESUME: "resume",
    CommandName.PROMOTE: "promote",
    CommandName.PROMOTE_FULL: "promote",
    CommandName.RETRY: "retry",
}


def _attempts(state: RolloutState) -> int:
    return state.rollback.attempts if state.rollback else 0


_EFFECTS: Final[Mapping[CommandName, Callable[[RolloutState, RolloutState], bool]]] = {
    CommandName.ABORT: lambda before, after: (
        after.phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK)
        or _attempts(after) > _attempts(before)  # RollbackFailed: one more helm attempt
    ),
    CommandName.PAUSE: lambda before, after: after.phase is Phase.PAUSED,
    CommandName.RESUME: lambda before, after: after.phase is Phase.PROGRESSING,
    CommandName.PROMOTE: lambda before, after: (
        after.step > before.step or after.phase is Phase.SUCCEEDED
    ),
    CommandName.PROMOTE_FULL: lambda before, after: after.phase is Phase.SUCCEEDED,
    CommandName.RETRY: lambda before, after: after.phase is not Phase.ROLLED_BACK,
}


def applies(name: CommandName, phase: Phase) -> bool:
    return phase in PHASES[name]


def not_applicable(name: CommandName, phase: Phase) -> str:
    """Why ``name`` does nothing in ``phase`` ("" if it applies)."""
    if applies(name, phase):
        return ""
    if name is CommandName.ABORT:
        return f"nothing to abort in phase {phase.value}"
    return f"{VERBS[name]} needs a {allowed(name, ' or ')} rollout, this one is {phase.value}"


def allowed(name: CommandName, sep: str = ", ") -> str:
    """The phases ``name`` applies to, in the order of the phase machine."""
    return sep.join(p.value for p in Phase if p in PHASES[name])


def took_effect(name: CommandName, before: RolloutState, after: RolloutState) -> bool:
    """Whether the state after the controller consumed the command shows its effect."""
    return _EFFECTS[name](before, after)
