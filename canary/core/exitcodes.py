"""Exit codes of ``canary wait`` and ``canary simulate`` (design §5). CI scripts branch on them."""

from __future__ import annotations

from typing import Final

from canary.core.model import ENDED_PHASES, Outcome, Phase, RolloutState

SUCCEEDED: Final = 0
ROLLED_BACK: Final = 1
USAGE: Final = 2
TIMEOUT: Final = 3
ROLLBACK_FAILED: Final = 4
SUPERSEDED: Final = 5
PAUSED: Final = 6

#: Exit codes of `check` (docs/design.md §5).
CHECK_PASS: Final = 0
CHECK_FAIL: Final = 1
CHECK_INCONCLUSIVE: Final = 3
CHECK_UNREACHABLE: Final = 4

_BY_OUTCOME: Final = {
    Outcome.SUCCEEDED: SUCCEEDED,
    Outcome.ROLLED_BACK: ROLLED_BACK,
    Outcome.ROLLBACK_FAILED: ROLLBACK_FAILED,
    Outcome.SUPERSEDED: SUPERSEDED,
    # analysis did not finish and a human took over (promoted early, deleted the plan)
    Outcome.BYPASSED: PAUSED,
    Outcome.ABANDONED: PAUSED,
}


def verdict_of(state: RolloutState | None, rollout_id: str | None = None) -> int | None:
    """The exit code a rollout has earned so far, or None while it is still running.

    ``rollout_id`` binds the answer to one rollout: an older rollout's outcome never counts,
    and a newer one means ours was superseded.
    """
    if state is None:
        return None
    if rollout_id is not None and state.rollout_id != rollout_id:
        if state.last is not None and state.last.rollout_id == rollout_id:
            return _BY_OUTCOME.get(state.last.outcome)
        return SUPERSEDED if state.rollout_id else None
    if state.phase is Phase.SUCCEEDED:
        return SUCCEEDED
    if state.phase is Phase.PAUSED:
        return PAUSED
    if (
        state.phase in ENDED_PHASES
        and state.last is not None
        and state.last.rollout_id == state.rollout_id
    ):
        return _BY_OUTCOME.get(state.last.outcome)
    return None
