"""The event catalog and the one emitter (DESIGN §6).

Every event has a stable dotted name; it is the structlog event (the log line's ``event`` key)
and the ``reason`` of the Kubernetes Event posted for it. Names are API: CI scripts, alerts and
``canary timeline`` match on them. Add names here; never rename one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from canary.core.model import Outcome

ROLLOUT_STARTED: Final = "rollout.started"
ROLLOUT_PAUSED: Final = "rollout.paused"
ROLLOUT_RESUMED: Final = "rollout.resumed"
ROLLOUT_PROMOTED: Final = "rollout.promoted"
ROLLOUT_SUCCEEDED: Final = "rollout.succeeded"
ROLLOUT_BYPASSED: Final = "rollout.bypassed"
ROLLOUT_FINALISING: Final = "rollout.finalising"
ROLLOUT_FINALISED: Final = "rollout.finalised"
ROLLOUT_FINALISE_STALLED: Final = "rollout.finalise_stalled"
ROLLOUT_SUPERSEDED: Final = "rollout.superseded"
ROLLOUT_ROLLED_BACK: Final = "rollout.rolled_back"
ROLLOUT_ROLLBACK_FAILED: Final = "rollout.rollback_failed"
ROLLOUT_RECOVERED: Final = "rollout.recovered"
STEP_STARTED: Final = "step.started"
WEIGHT_SET: Final = "weight.set"
WEIGHT_DRIFT: Final = "weight.drift"
CHECK_PASSED: Final = "check.passed"
CHECK_FAILED: Final = "check.failed"
CHECK_INCONCLUSIVE: Final = "check.inconclusive"
CHECK_ERROR: Final = "check.error"
ROLLBACK_STARTED: Final = "rollback.started"
ROLLBACK_TRAFFIC_REVERTED: Final = "rollback.traffic_reverted"
ROLLBACK_HELM_STARTED: Final = "rollback.helm_started"
ROLLBACK_HELM_SUCCEEDED: Final = "rollback.helm_succeeded"
ROLLBACK_HELM_FAILED: Final = "rollback.helm_failed"
ROLLBACK_WAITING: Final = "rollback.waiting"
STABLE_UNAVAILABLE: Final = "stable.unavailable"
BASE_RECORDED: Final = "base.recorded"
BASE_FALLBACK: Final = "base.fallback"
STATE_LOST: Final = "state.lost"
COMMAND_ACCEPTED: Final = "command.accepted"
COMMAND_DROPPED: Final = "command.dropped"
PLAN_INVALID: Final = "plan.invalid"
PLAN_DELETED: Final = "plan.deleted"
ROUTE_INVALID: Final = "route.invalid"
TICK_FAILED: Final = "tick.failed"
CANARY_UNAVAILABLE: Final = "canary.unavailable"
RELEASE_PENDING: Final = "release.pending"
RELEASE_UNREADABLE: Final = "release.unreadable"

#: Events that end a rollout, with the outcome they give it (``plan.deleted`` ends one only if
#: it was still under way). Telemetry and `canary timeline` both read outcomes from events.
ROLLOUT_ENDINGS: Final[Mapping[str, Outcome]] = {
    ROLLOUT_SUCCEEDED: Outcome.SUCCEEDED,
    ROLLOUT_ROLLED_BACK: Outcome.ROLLED_BACK,
    ROLLOUT_ROLLBACK_FAILED: Outcome.ROLLBACK_FAILED,
    ROLLOUT_SUPERSEDED: Outcome.SUPERSEDED,
    ROLLOUT_BYPASSED: Outcome.BYPASSED,
    PLAN_DELETED: Outcome.ABANDONED,
}

#: Every event name canary may emit; a test checks that code only emits these.
CATALOG: Final[frozenset[str]] = frozenset(
    v for k, v in dict(globals()).items() if k.isupper() and isinstance(v, str) and "." in v
)

#: The events of rollouts (log line + Kubernetes Event), as opposed to the process's own lines.
ROLLOUT_EVENTS: Final[frozenset[str]] = CATALOG
