"""tests/e2e-kind/run.sh runs the getting-started guide on kind where docker, kind, istioctl and
helm exist; here none do. What can be checked here: it is valid bash, and without its tools it
says it is skipped and exits 0 instead of failing half-way."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "e2e-kind" / "run.sh"


def test_the_kind_script_is_valid_bash() -> None:
    done = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_without_its_tools_the_kind_script_says_skipped(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # no docker, kind, helm, istioctl, kubectl
    done = subprocess.run(
        ["/bin/bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("skipped:")
    assert "kind" in done.stdout and "istioctl" in done.stdout
