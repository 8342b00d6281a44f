"""The image's Dockerfile. It cannot be built here (no Docker, no internet), so its
invariants are read from the file: a pinned base, a non-root numeric user, a helm release
pinned by version whose sha256 is verified during the build and has no made-up default,
``canary run`` as the entrypoint, OCI labels, and a context limited by ``.dockerignore``."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    stage: int  # -1: before the first FROM (global ARGs)


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    out: list[Instruction] = []
    stage = -1
    logical = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not logical and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        keyword, _, args = logical.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(keyword, args.strip(), stage))
        logical = ""
    return out


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return instructions(DOCKERFILE.read_text())


def _arg_defaults(found: list[Instruction], stage: int) -> dict[str, str | None]:
    args: dict[str, str | None] = {}
    for ins in found:
        if ins.keyword == "ARG" and ins.stage in (-1, stage):
            name, eq, default = ins.args.partition("=")
            args[name] = default.strip('"') if eq else None
    return args


def _expand(text: str, args: dict[str, str | None]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2]) or m[0], text)


def test_every_base_image_is_pinned_by_a_version_tag(dockerfile: list[Instruction]) -> None:
    stages = [i for i in dockerfile if i.keyword == "FROM"]
    assert len(stages) >= 2, "multi-stage: build tools stay out of the runtime image"
    globals_ = _arg_defaults(dockerfile, -1)
    for ins in stages:
        image = _expand(ins.args.split()[0], globals_)
        assert "$" not in image, f"unresolved base image {ins.args}"
        tag = image.partition("@")[0].rpartition("/")[2].partition(":")[2]  # a digest may follow
        assert tag and tag != "latest", f"{image}: pin the base image by a version tag"
        assert re.match(r"\d+\.\d+\.\d+-slim", tag), f"{image}: a slim Python, full version"


def test_the_runtime_runs_as_a_numeric_non_root_user(dockerfile: list[Instruction]) -> None:
    last = max(i.stage for i in dockerfile)
    users = [i.args for i in dockerfile if i.keyword == "USER" and i.stage == last]
    assert users, "the runtime stage sets USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, "a numeric UID (runAsNonRoot can check it)"
    assert not gid or (gid.isdigit() and int(gid) != 0)


def test_helm_is_pinned_and_its_sha256_is_checked_with_no_default(
    dockerfile: list[Instruction],
) -> None:
    helm_stage = next(i.stage for i in dockerfile if "helm" in i.args and i.keyword == "FROM")
    args = _arg_defaults(dockerfile, helm_stage)
    assert re.fullmatch(r"v\d+\.\d+\.\d+", args.get("HELM_VERSION") or ""), "pin helm's version"
    assert "HELM_SHA256" in args and args["HELM_SHA256"] is None, "no made-up hash default"
    runs = " ".join(i.args for i in dockerfile if i.keyword == "RUN" and i.stage == helm_stage)
    assert 'test -n "${HELM_SHA256}"' in runs, "the build fails when HELM_SHA256 is not given"
    assert "get.helm.sh/helm-${HELM_VERSION}-linux-" in runs
    check = re.search(r'echo "\$\{HELM_SHA256\}  (\S+)" \| sha256sum --check', runs)
    assert check, "the download is verified with sha256sum"
    download = runs.index(f" {check[1]}")  # the file urlretrieve writes
    assert download < check.start() < runs.index("tar -xzf"), "download, verify, then unpack"
    copies = [i.args for i in dockerfile if i.keyword == "COPY" and "--from=helm" in i.args]
    assert copies == ["--from=helm /usr/local/bin/helm /usr/local/bin/helm"]


def test_the_entrypoint_is_canary_run(dockerfile: list[Instruction]) -> None:
    last = max(i.stage for i in dockerfile)
    [entrypoint] = [i.args for i in dockerfile if i.keyword == "ENTRYPOINT" and i.stage == last]
    assert json.loads(entrypoint) == ["canary", "run"]  # exec form: SIGTERM reaches canary


def test_the_runtime_writes_only_under_tmp(dockerfile: list[Instruction]) -> None:
    last = max(i.stage for i in dockerfile)
    env = " ".join(i.args for i in dockerfile if i.keyword == "ENV" and i.stage == last)
    for name in ("HOME", "HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        assert re.search(rf"\b{name}=/tmp\b", env), f"{name} must point under /tmp"
    assert "PYTHONDONTWRITEBYTECODE=1" in env  # no .pyc next to the read-only code
    assert "HELM_DRIVER=secret" in env  # the history is read from helm's Secrets


def test_oci_labels(dockerfile: list[Instruction]) -> None:
    labels = " ".join(i.args for i in dockerfile if i.keyword == "LABEL")
    for key in ("title", "description", "version", "revision", "licenses", "base.name"):
        assert f"org.opencontainers.image.{key}=" in labels, key


def test_the_build_context_is_only_what_the_image_needs() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "ignore everything, then allow what COPY needs"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = set()
    for ins in instructions(DOCKERFILE.read_text()):
        if ins.keyword == "COPY" and "--from=" not in ins.args:
            copied.update(p.rstrip("/").removeprefix("./") for p in ins.args.split()[:-1])
    assert copied == allowed


def test_the_python_dependencies_are_pinned_to_the_tested_versions() -> None:
    """The image installs with constraints.txt: every runtime dependency of pyproject.toml at
    the exact version the tests ran with."""
    import re
    import tomllib
    from importlib.metadata import version

    root = Path(__file__).resolve().parents[1]
    assert "pip install -c constraints.txt ." in (root / "Dockerfile").read_text()
    assert "!constraints.txt" in (root / ".dockerignore").read_text()
    pins = dict(
        line.split("==", 1)
        for line in (root / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    norm = {re.sub(r"[-_.]+", "-", k).lower(): v for k, v in pins.items()}
    deps = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        name = re.sub(r"[-_.]+", "-", re.split(r"[<>=!~ \[]", dep, maxsplit=1)[0]).lower()
        assert name in norm, f"{name} is not pinned in constraints.txt"
        assert norm[name] == version(name), f"{name}: pinned {norm[name]}, tested {version(name)}"
