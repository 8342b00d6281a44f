"""tests/e2e-kind/run.sh runs the getting-started guide on kind where docker, kind, istioctl and
helm exist; here none do. What can be checked here: it is valid bash, and without its tools it
says it is skipped and exits 0 instead of failing half-way."""

from __future__ import annotations

import itertools
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


GUIDE = Path(__file__).resolve().parents[1] / "docs" / "getting-started.md"


def _commands(text: str) -> list[list[str]]:
    """Each command of the bash blocks (or of a script), as bash would split it."""
    import re
    import shlex

    blocks = re.findall(r"```bash\n(.*?)```", text, re.S) or [text]
    out = []
    for block in blocks:
        joined = block.replace("\\\n", " ")
        for raw in joined.splitlines():
            line = raw.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                out.append(shlex.split(line, comments=True))
    return out


def test_the_guide_and_the_kind_script_give_helm_the_same_arguments() -> None:
    """What bash passes on: a `--set-file plans.files.x\\.yaml=...` left unquoted loses its
    backslash and names a nested key the chart refuses; and the script must release the
    same versions the guide does."""

    def helm_sets(commands: list[list[str]]) -> list[tuple[str, str]]:
        pairs = []
        for argv in commands:
            if argv[:1] == ["helm"]:
                for flag, value in itertools.pairwise(argv):
                    if flag in ("--set", "--set-file"):
                        pairs.append((flag, value.split("=", 1)[0]))
        return pairs

    for flag, key in helm_sets(_commands(GUIDE.read_text())) + helm_sets(
        _commands(SCRIPT.read_text())
    ):
        if flag == "--set-file" and key.startswith("plans.files."):
            assert "\\." in key, f"{key}: the dot of the file name must reach helm escaped"

    def released(commands: list[list[str]]) -> set[str]:
        return {a for argv in commands for a in argv if "image.tag=" in a and "${" not in a}

    script_tags = released(_commands(SCRIPT.read_text()))
    assert script_tags and script_tags <= released(_commands(GUIDE.read_text()))
