"""Kubernetes names and service hosts: one rule for plans, the controller config, the CLI and
the adapters. Every name that reaches a PromQL selector, an API path or a helm argv has passed
:func:`name_problem` first.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from canary.core.wording import show


@dataclass(frozen=True)
class NameRule:
    pattern: re.Pattern[str]
    max_len: int
    what: str
    chars: str
    dots: bool


LABEL_PATTERN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"


SUBDOMAIN_PATTERN = rf"{LABEL_PATTERN}(\.{LABEL_PATTERN})*"


SUBDOMAIN = NameRule(
    re.compile(SUBDOMAIN_PATTERN),
    253,
    "Kubernetes name (DNS-1123 subdomain)",
    'lower-case letters, digits, "-" and "."',
    dots=True,
)


LABEL = NameRule(
    re.compile(LABEL_PATTERN),
    63,
    "DNS-1123 label",
    'lower-case letters, digits and "-"',
    dots=False,
)


#: Helm's own rule (pkg/chartutil ValidateReleaseName): a DNS-1123 subdomain of at most 53
#: characters, so that generated resource names stay within Kubernetes' limits.
RELEASE = NameRule(
    re.compile(SUBDOMAIN_PATTERN),
    53,
    "Helm release name",
    'lower-case letters, digits, "-" and "."',
    dots=True,
)


def suggest_name(text: str, rule: NameRule) -> str | None:
    allowed = r"[^a-z0-9.-]" if rule.dots else r"[^a-z0-9-]"
    candidate = re.sub(allowed, "-", text.lower())
    candidate = re.sub(r"-{2,}", "-", candidate).strip("-.")[: rule.max_len].strip("-.")
    if candidate and candidate != text and rule.pattern.fullmatch(candidate):
        return candidate
    return None


#: A namespace is a DNS-1123 label, named for what it is.
NAMESPACE = NameRule(
    LABEL.pattern, LABEL.max_len, "namespace name (DNS-1123 label)", LABEL.chars, dots=False
)


def name_problem(text: str, rule: NameRule) -> tuple[str, str] | None:
    """(what is wrong, how to fix it) if ``text`` breaks ``rule``, else None."""
    if len(text) > rule.max_len:
        return (
            f"{show(text)} is {len(text)} characters long; a {rule.what} has at most "
            f"{rule.max_len}",
            "shorten it",
        )
    if not rule.pattern.fullmatch(text):
        suggestion = suggest_name(text, rule)
        example = f', e.g. "{suggestion}"' if suggestion else ""
        return (
            f"{show(text)} is not a valid {rule.what}",
            f"use {rule.chars}, starting and ending with a letter or digit{example}",
        )
    return None


def is_name(text: str, rule: NameRule) -> bool:
    return name_problem(text, rule) is None


#: Kubernetes' default cluster DNS domain; Istio appends it to short service names too. Clusters
#: with another domain still compare correctly as long as both sides use the same spelling.
CLUSTER_DOMAIN = "cluster.local"


def normalise_host(host: str, namespace: str | None) -> str:
    """The fully qualified form of ``host`` as seen from a VirtualService in ``namespace``.

    ``reviews`` → ``reviews.<namespace>.svc.cluster.local``; ``reviews.bookinfo`` and
    ``reviews.bookinfo.svc`` are completed the same way. Hosts are case-insensitive (DNS) and a
    trailing dot is dropped. ``*`` and IP addresses are returned as they are. Without a
    namespace a short name cannot be qualified and is returned as is (what Istio does too).
    """
    name = host.strip().lower().rstrip(".")
    if not name or name == "*" or is_ip(name):
        return name
    parts = name.split(".")
    if len(parts) == 1:
        if not namespace:
            return name
        parts.append(namespace.lower())
    if len(parts) == 2:
        parts.append("svc")
    if len(parts) == 3 and parts[2] == "svc":
        parts.extend(CLUSTER_DOMAIN.split("."))
    return ".".join(parts)


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
