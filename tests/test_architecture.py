"""Layers enforced by a check, not by good intentions (DESIGN §9)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from canary import events

ROOT = Path(__file__).resolve().parents[1] / "canary"
CORE = ["plan.py", "model.py", "analysis.py", "decide.py", "routes.py"]
FORBIDDEN = {
    "kubernetes",
    "prometheus_api_client",
    "apscheduler",
    "subprocess",
    "time",
    "threading",
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_no_io(module: str) -> None:
    bad = imported_roots(ROOT / module) & FORBIDDEN
    assert not bad, f"canary/{module} imports {sorted(bad)}; the core must stay pure"


def test_core_imports_only_core_and_stdlib() -> None:
    """The pure core may import canary modules only from the core (plus events' names)."""
    allowed = {m.removesuffix(".py") for m in CORE} | {"errors", "events", "queries"}
    for module in CORE:
        tree = ast.parse((ROOT / module).read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("canary")
            ):
                sub = node.module.split(".")[1] if "." in node.module else None
                names = [a.name for a in node.names]
                targets = [sub] if sub else names
                for target in targets:
                    assert target in allowed, f"canary/{module} imports canary.{target}"


def test_importing_the_core_loads_no_io_module_even_indirectly() -> None:
    """A fresh interpreter: what importing the core adds to sys.modules (time and threading
    are loaded by the interpreter itself before any of our code runs)."""
    probe = (
        "import sys; before = set(sys.modules); "
        "import canary.plan, canary.model, canary.analysis, canary.decide, canary.routes; "
        "print(sorted(set(sys.modules) - before))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    added = {name.split(".")[0] for name in ast.literal_eval(out)}
    bad = added & (FORBIDDEN | {"structlog", "asyncio", "requests", "urllib3"})
    assert not bad, f"importing the core loads {sorted(bad)}"


def test_the_check_catches_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nfrom subprocess import run\n")
    assert imported_roots(bad) & FORBIDDEN == {"time", "subprocess"}


def test_only_adapters_import_io_libraries() -> None:
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in ("adapters",) or rel.name in ("cli.py", "daemon.py"):
            continue
        bad = imported_roots(path) & {"kubernetes", "prometheus_api_client", "subprocess"}
        assert not bad, f"canary/{rel} imports {sorted(bad)}; only adapters may"


def test_emitted_event_names_are_in_the_catalog() -> None:
    """Every ev.NAME used in the code exists, and names keep the dotted form."""
    used: set[str] = set()
    for path in ROOT.rglob("*.py"):
        used.update(re.findall(r"\bev\.([A-Z_]+)\b", path.read_text()))
    for name in used:
        assert hasattr(events, name), f"events.{name} is not defined"
    for name in events.CATALOG:
        assert re.fullmatch(r"[a-z]+\.[a-z_]+", name), name
    design = {
        "rollout.started",
        "step.started",
        "weight.set",
        "weight.drift",
        "check.passed",
        "check.failed",
        "check.inconclusive",
        "check.error",
        "rollout.paused",
        "rollout.succeeded",
        "rollout.bypassed",
        "rollback.started",
        "rollback.traffic_reverted",
        "rollback.helm_started",
        "rollback.helm_succeeded",
        "rollback.helm_failed",
        "rollout.rolled_back",
        "state.lost",
        "rollout.finalise_stalled",
    }
    assert design <= events.CATALOG
