"""Typed errors, split by what the caller should do next.

::

    CanaryError
    ├── ConfigError          the input is wrong; a human fixes it (exit 2, plan paused on stable)
    │   ├── PlanError        a plan failed validation; carries every problem at once
    │   ├── RouteError       the VirtualService route is not the one the plan describes
    │   ├── NotFoundError    an object the plan names does not exist (HTTP 404)
    │   ├── ForbiddenError   RBAC denies a verb on a resource (HTTP 401/403); names both
    │   └── InvalidError     the API server rejected an object (HTTP 422)
    ├── TransientError       retry on the next tick; never a verdict by itself
    │   ├── ConflictError    resourceVersion changed under us: re-read and decide again
    │   └── UnavailableError a dependency (API server, Prometheus) did not answer
    └── HelmError            a helm call failed; the rollback flow counts attempts

Adapters translate library exceptions into these at the boundary with ``raise ... from``, so the
core and the controller never see a ``kubernetes`` or ``requests`` exception.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class CanaryError(Exception):
    """Base of every error canary raises on purpose."""


class ConfigError(CanaryError):
    """Input a human must fix: a plan, a flag, a VirtualService that does not match its plan."""


@dataclass(frozen=True)
class Problem:
    """One problem in one plan: where, what, and how to fix it."""

    source: str  # file path (or ConfigMap key); "" when not from a file
    path: str  # field path, e.g. spec.steps[2].weight
    message: str  # what is wrong, naming the bad value
    fix: str = ""  # how to fix it

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        fix = f" ({self.fix})" if self.fix else ""
        return f"{where}{self.path}: {self.message}{fix}"


class PlanError(ConfigError):
    """One or more plans are invalid; ``problems`` lists every one of them."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class RouteError(ConfigError):
    """The managed route cannot be used (missing, ambiguous, or not the plan's destinations)."""


class NotFoundError(ConfigError):
    """An object the plan names does not exist."""


class ForbiddenError(ConfigError):
    """RBAC denies the controller a verb on a resource; the message names both."""


class InvalidError(ConfigError):
    """The API server rejected what we sent as invalid."""


class TransientError(CanaryError):
    """Try again on the next tick."""


class ConflictError(TransientError):
    """The object changed since we read it (HTTP 409 / failed resourceVersion precondition)."""


class UnavailableError(TransientError):
    """A dependency did not answer in time or answered 5xx."""


class HelmError(CanaryError):
    """A helm invocation failed; ``stderr_tail`` is the end of what helm printed."""

    def __init__(self, message: str, stderr_tail: str = "") -> None:
        self.stderr_tail = stderr_tail
        super().__init__(f"{message}: {stderr_tail}" if stderr_tail else message)
