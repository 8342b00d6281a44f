"""The conflict rule between plans, one rule wherever plans come from (docs/design.md §2): a
plan defined twice, or a VirtualService or Deployment claimed by two plans. A rollout's state
lives in one annotation on its VirtualService, and two plans on one Deployment would fight over
its traffic and roll it back twice.

:func:`claims` applies the rule; it is reported two ways. Plan files given in an order
(``canary validate a.yaml b.yaml``) blame the later plan (:func:`check_conflicts`); the plans
directory of ``canary run`` has no order that says which plan was meant, so every party is
refused until a human resolves it (:func:`conflicts_of_every_party`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from canary.core.errors import Problem
from canary.core.plan import Plan

#: (kind, namespace, name) of an object plans claim.
Claimed = tuple[str, str, str]
#: A plan's claim on an object: the plan, the field path naming it, the role ("" for the
#: VirtualService, "stable"/"canary" for a Deployment).
Claim = tuple[Plan, str, str]

_VS_FIX = (
    "one plan per VirtualService: a rollout's state lives in one annotation on the "
    "VirtualService; merge the two plans or point this one at another VirtualService"
)
_DEPLOYMENT_FIX = (
    "a Deployment belongs to one plan: two plans would fight over its traffic and roll it back "
    "twice"
)


def claims(plans: Iterable[Plan]) -> dict[Claimed, list[Claim]]:
    """Every object claimed by more than one plan, with its claims in the plans' order."""
    out: dict[Claimed, list[Claim]] = {}
    for plan in plans:
        ns = plan.namespace
        out.setdefault(("VirtualService", ns, plan.virtual_service.name), []).append(
            (plan, "spec.virtualService.name", "")
        )
        for role, deployment in (
            ("stable", plan.workloads.stable),
            ("canary", plan.workloads.canary),
        ):
            out.setdefault(("Deployment", ns, deployment), []).append(
                (plan, f"spec.workloads.{role}", role)
            )
    return {
        claimed: found for claimed, found in out.items() if len({p.key for p, _, _ in found}) > 1
    }


def _where(owner: Plan, plan: Plan) -> str:
    """Where ``owner`` (a plan that came first) is, as seen from ``plan``."""
    if not owner.source:
        return ""
    if owner.source == plan.source:
        return " (earlier in this file)"
    return f" ({owner.source})"


def check_conflicts(plans: Iterable[Plan]) -> list[Problem]:
    """Problems between plans given in an order, each reported once, on the later plan."""
    unique: list[Plan] = []
    problems: list[tuple[int, int, Problem]] = []  # (plan's place, claim's place, problem)
    seen: dict[str, Plan] = {}
    for plan in plans:
        first = seen.get(plan.key)
        if first is not None:
            problems.append(
                (
                    len(unique),
                    -1,
                    Problem(
                        plan.source,
                        "metadata.name",
                        f"plan {plan.key} is defined twice{_where(first, plan)}",
                        "give each plan its own name within its namespace, or remove the copy",
                    ),
                )
            )
            continue
        seen[plan.key] = plan
        unique.append(plan)
    place = {plan.key: index for index, plan in enumerate(unique)}
    for (kind, ns, name), found in claims(unique).items():
        owner, _, owner_role = found[0]
        for plan, path, role in found[1:]:
            if plan.key == owner.key:
                continue
            if kind == "VirtualService":
                message = (
                    f"plan {plan.key} manages VirtualService {ns}/{name}, already managed by "
                    f"plan {owner.key}{_where(owner, plan)}"
                )
                fix = _VS_FIX
            else:
                message = (
                    f"plan {plan.key} names Deployment {ns}/{name}, already the {owner_role} "
                    f"workload of plan {owner.key}{_where(owner, plan)}"
                )
                fix = _DEPLOYMENT_FIX
            order = 0 if kind == "VirtualService" else 1 + ("stable", "canary").index(role)
            problems.append((place[plan.key], order, Problem(plan.source, path, message, fix)))
    return [problem for _, _, problem in sorted(problems, key=lambda p: (p[0], p[1]))]


def _as(role: str) -> str:
    return f"as its {role} workload" if role else ""


def conflicts_of_every_party(plans: Sequence[Plan]) -> dict[str, list[Problem]]:
    """Per plan key, the problems of sharing a VirtualService or Deployment with another plan;
    every party gets the problem, not only the later one."""
    out: dict[str, list[Problem]] = {}
    for (kind, ns, name), found in claims(plans).items():
        for plan, path, role in found:
            others = ", ".join(
                f"plan {o.key} ({', '.join(filter(None, (o.source, _as(o_role))))})"
                for o, _, o_role in found
                if o.key != plan.key
            )
            verb = (
                f"names {kind} {ns}/{name} {_as(role)}" if role else f"manages {kind} {ns}/{name}"
            )
            fix = (
                "one plan per VirtualService: a rollout's state lives in one annotation on the "
                "VirtualService; merge the plans or point all but one at another VirtualService"
                if kind == "VirtualService"
                else f"{_DEPLOYMENT_FIX}; remove it from all plans but one"
            )
            out.setdefault(plan.key, []).append(
                Problem(
                    plan.source,
                    path,
                    f"plan {plan.key} {verb}, and so does {others}: all of these plans are "
                    "refused until only one of them names it",
                    fix,
                )
            )
    return out
