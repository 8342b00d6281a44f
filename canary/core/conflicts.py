"""The conflict rule between plans, one rule for every place plans come from: a plan defined
twice, or a VirtualService or Deployment claimed by two plans (docs/design.md §2)."""

from __future__ import annotations

from collections.abc import Iterable

from canary.core.errors import Problem
from canary.core.plan import Plan


def _where(owner: Plan, plan: Plan) -> str:
    """Where ``owner`` (a plan that came first) is, as seen from ``plan``."""
    if not owner.source:
        return ""
    if owner.source == plan.source:
        return " (earlier in this file)"
    return f" ({owner.source})"


def check_conflicts(plans: Iterable[Plan]) -> list[Problem]:
    """Problems between plans: a plan defined twice, a VirtualService or Deployment in two plans.

    Each conflict is reported once, on the later plan.
    """
    problems: list[Problem] = []
    by_key: dict[str, Plan] = {}
    by_virtual_service: dict[tuple[str, str], Plan] = {}
    by_deployment: dict[tuple[str, str], tuple[Plan, str]] = {}
    for plan in plans:
        first = by_key.get(plan.key)
        if first is not None:
            problems.append(
                Problem(
                    plan.source,
                    "metadata.name",
                    f"plan {plan.key} is defined twice{_where(first, plan)}",
                    "give each plan its own name within its namespace, or remove the copy",
                )
            )
            continue
        by_key[plan.key] = plan
        vs_key = (plan.namespace, plan.virtual_service.name)
        owner = by_virtual_service.get(vs_key)
        if owner is not None:
            problems.append(
                Problem(
                    plan.source,
                    "spec.virtualService.name",
                    f"plan {plan.key} manages VirtualService {'/'.join(vs_key)}, already managed "
                    f"by plan {owner.key}{_where(owner, plan)}",
                    "one plan per VirtualService: a rollout's state lives in one annotation on "
                    "the VirtualService; merge the two plans or point this one at another "
                    "VirtualService",
                )
            )
        else:
            by_virtual_service[vs_key] = plan
        roles = (("stable", plan.workloads.stable), ("canary", plan.workloads.canary))
        for role, deployment in roles:
            taken = by_deployment.get((plan.namespace, deployment))
            if taken is not None:
                other, other_role = taken
                problems.append(
                    Problem(
                        plan.source,
                        f"spec.workloads.{role}",
                        f"plan {plan.key} names Deployment {plan.namespace}/{deployment}, already "
                        f"the {other_role} workload of plan {other.key}{_where(other, plan)}",
                        "a Deployment belongs to one plan: two plans would fight over its "
                        "traffic and roll it back twice",
                    )
                )
        for role, deployment in roles:
            by_deployment.setdefault((plan.namespace, deployment), (plan, role))
    return problems
