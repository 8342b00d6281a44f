"""Layers enforced by a check, not by good intentions (docs/architecture.md).

``lint-imports`` (the contracts in ``.importlinter``) is the layer check; these tests run it and
add what it cannot see: what importing the core loads at run time, in an interpreter that has
nothing preloaded.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "canary"
LAYERS = ("core", "plans", "config", "adapters", "shell", "sim", "cli")

#: What the core must never load, even indirectly: I/O, clocks, threads, logging and every
#: third-party library (the core is the standard library's pure parts and itself).
FORBIDDEN_IN_CORE = frozenset(
    {
        "os",
        "io",
        "time",
        "threading",
        "logging",
        "socket",
        "subprocess",
        "signal",
        "asyncio",
        "urllib",
        "http",
        "pathlib",
        "yaml",
        "structlog",
        "kubernetes",
        "prometheus_api_client",
        "prometheus_client",
        "apscheduler",
        "requests",
        "urllib3",
    }
)

#: A bare interpreter loads ``io`` and ``time`` itself, and walking the package needs ``os``: the
#: run-time probe cannot see those three, so ``lint-imports`` (the ``pure-core`` contract) keeps
#: the core from importing them; the probe watches everything else, however indirect.
SEEN_AT_RUN_TIME = FORBIDDEN_IN_CORE - {"os", "io", "time"}

#: Run in a bare interpreter (no site-packages, no sitecustomize, no .pth preloads), started
#: the same way twice: once importing nothing, once importing every core module. The
#: difference is what the core loads; nothing a preloading interpreter loads can hide it.
PROBE = """
import os, sys
root = sys.argv[1]
sys.path.insert(0, root)
before = sorted(sys.modules)
if sys.argv[2] == "core":
    for folder, _, files in os.walk(os.path.join(root, "canary", "core")):
        package = os.path.relpath(folder, root).replace(os.sep, ".")
        for name in sorted(files):
            if name.endswith(".py"):
                module = package if name == "__init__.py" else package + "." + name[:-3]
                __import__(module)
print(repr({"before": before, "after": sorted(sys.modules)}))
"""


def _probe(what: str) -> tuple[set[str], set[str]]:
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE, str(ROOT), what],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    doc = ast.literal_eval(out)
    return set(doc["before"]), set(doc["after"])


def test_the_probe_interpreter_preloads_nothing_the_check_looks_for() -> None:
    """If the bare interpreter had loaded a forbidden module before our code ran, importing the
    core could not be seen to load it: the check would be blind."""
    before, after = _probe("nothing")
    roots = {name.split(".")[0] for name in after}
    assert not roots & SEEN_AT_RUN_TIME, sorted(roots & SEEN_AT_RUN_TIME)
    assert before <= after


def test_importing_the_core_loads_only_the_pure_standard_library() -> None:
    _, bare = _probe("nothing")
    _, after = _probe("core")
    added = {name.split(".")[0] for name in after - bare} - {"canary"}
    assert "canary" in {name.split(".")[0] for name in after}
    assert not added & FORBIDDEN_IN_CORE, (
        f"importing the core loads {sorted(added & FORBIDDEN_IN_CORE)}"
    )
    outside = sorted(n for n in added if n not in sys.stdlib_module_names and not n.startswith("_"))
    assert not outside, f"the core loads non-stdlib modules {outside}"
    loaded = {n for n in after - bare if n.startswith("canary.")}
    assert all(n.startswith("canary.core") for n in loaded), sorted(loaded)


def test_the_probe_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The probe fails for a core that imports threading (as logging does)."""
    fake = tmp_path / "canary"
    shutil.copytree(PACKAGE / "core", fake / "core")
    (fake / "__init__.py").write_text("")
    (fake / "core" / "leak.py").write_text("import logging\n")
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE, str(tmp_path), "core"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    loaded = {name.split(".")[0] for name in ast.literal_eval(out)["after"]}
    assert {"logging", "threading"} <= loaded


def test_every_module_lives_in_a_layer() -> None:
    """A newcomer reads the folder names and knows which side of the line a file is on."""
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert not loose, f"modules outside a layer package: {loose}"
    packages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    assert packages == sorted(LAYERS)


def test_no_module_is_over_600_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 600
    }
    assert not long, long


def test_the_layer_contracts_hold() -> None:
    """``lint-imports`` with the repository's ``.importlinter`` (CI runs it too)."""
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.fail("lint-imports is not installed: pip install -e '.[test]'")
    run = subprocess.run(
        [str(exe), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_contracts_catch_a_layer_violation(tmp_path: Path) -> None:
    """The contracts are not vacuous: a core module importing the shell breaks them."""
    work = tmp_path / "repo"
    shutil.copytree(PACKAGE, work / "canary", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", work / ".importlinter")
    (work / "canary" / "core" / "leak.py").write_text("from canary.shell import controller\n")
    exe = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run(
        [str(exe), "--no-cache"],
        cwd=work,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(work), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert run.returncode != 0
    assert "canary.core.leak" in run.stdout


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_only_adapters_import_network_and_process_libraries() -> None:
    """Also lazy (function-level) imports, which import-linter sees as well: belt and braces."""
    io_libraries = {"kubernetes", "prometheus_api_client", "subprocess", "urllib", "http"}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "adapters":
            continue
        bad = imported_roots(path) & io_libraries
        assert not bad, f"canary/{rel} imports {sorted(bad)}; only canary/adapters may"


#: The modules that own a format: numbers and bounds (render), durations, timestamps.
FORMAT_OWNERS = {"core/render.py", "core/durations.py", "core/timestamps.py"}

#: A number formatted on the spot (``f"{x:g}s"``, ``f"{n:.0f}"``) or a hand-made timestamp.
AD_HOC_FORMAT = re.compile(r"\{[^{}]*:\.?\d*[gf]\}|\.isoformat\(\)")


def test_numbers_durations_and_timestamps_have_one_format_each() -> None:
    """Messages, events and the CLI read alike only if they format through the same three
    modules: render.number/bounds, durations.format_duration, timestamps.iso."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(PACKAGE))
        if rel in FORMAT_OWNERS:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if AD_HOC_FORMAT.search(line) and "timestamp():" not in line:  # a Prometheus param
                found.append(f"canary/{rel}:{number}: {line.strip()}")
    assert not found, "format through render/durations/timestamps:\n" + "\n".join(found)
