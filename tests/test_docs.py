"""The docs stand alone and tell the truth the code can check: no pointer outside the
repository, no internal issue numbers, links that resolve, the README's commands are CI's, and
the runbook's event table is the catalog's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from canary.core import events as ev

ROOT = Path(__file__).resolve().parents[1]
USER_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("doc", USER_DOCS, ids=lambda p: p.name)
def test_a_user_doc_points_nowhere_a_user_cannot_follow(doc: Path) -> None:
    text = doc.read_text()
    # the one exception: where the test suite finds Istio's schemas (test data, not a contract)
    text = text.replace("../shared/schemas/istio/", "")
    assert "../shared" not in text, f"{doc.name} points at ../shared"
    assert not re.search(r"\bDESIGN\b", text), f"{doc.name} cites DESIGN: cite docs/design.md"
    internal = re.findall(r"(?i)\bissues? #?\d+(?:[–-]\d+)?\b|\(#\d+\)", text)
    assert not internal, f"{doc.name} names internal issue numbers: {internal}"


@pytest.mark.parametrize("doc", USER_DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(doc: Path) -> None:
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"


def test_the_contract_and_the_architecture_are_in_the_repository() -> None:
    for name in ("design.md", "architecture.md", "events.md"):
        assert (ROOT / "docs" / name).is_file(), name
    readme = (ROOT / "README.md").read_text()
    assert "docs/design.md" in readme and "docs/architecture.md" in readme


def _fenced(text: str) -> list[str]:
    return [
        line.strip()
        for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)
        for line in block.splitlines()
        if line.strip()
    ]


def test_the_readme_commands_are_the_ones_ci_runs() -> None:
    """What a newcomer types is what CI runs: the setup, and exactly the test command."""
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    head = readme.split("## Install")[0]
    setup, demo, tests = _fenced(head)[:3]
    assert setup == "python3 -m venv .venv && .venv/bin/pip install -c constraints.txt -e '.[test]'"
    assert demo == ".venv/bin/canary demo"
    assert tests == ".venv/bin/python -m pytest -q"
    assert "python3 -m venv .venv" in ci
    assert (
        ".venv/bin/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'"
        in ci
    )
    assert ci.rstrip().splitlines()[-1] == tests


def test_the_runbook_event_table_is_the_catalogs() -> None:
    """Names and warning marks of the runbook's table against canary/core/events.py."""
    text = (ROOT / "docs" / "runbook.md").read_text()
    section = text.split("## 5. Events", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_.]+)` \|\s*(W?)(¹?)\s*\|", section, flags=re.M)
    assert {name for name, _, _ in rows} == set(ev.ROLLOUT_EVENTS)
    for name, mark, varies in rows:
        spec = ev.SPECS[name]
        assert (mark == "W") == (spec.level is ev.Level.WARNING), name
        assert bool(varies) == bool(spec.info_when), name


PROSE = [
    *USER_DOCS,
    ROOT / "config" / "canary.yaml",
    ROOT / "deploy" / "helm" / "canary" / "values.yaml",
    *sorted((ROOT / "canary").rglob("*.py")),
]


@pytest.mark.parametrize("doc", PROSE, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_statement_of_kubeconfig_precedence_puts_kubeconfig_first(doc: Path) -> None:
    """connect() reads a named kubeconfig (flag or $KUBECONFIG) before the pod's service
    account, as kubectl and helm do; a sentence that names both must say so in that order."""
    for number, line in enumerate(doc.read_text().splitlines(), 1):
        wrong = re.search(r"(?i)in-cluster[^.;|]*\belse\b[^.;|]*kubeconfig", line)
        assert not wrong, f"{doc.name}:{number}: {line.strip()}"


@pytest.mark.parametrize("doc", ["ci.md", "design.md"])
def test_the_docs_name_every_key_the_template_comparison_ignores(doc: str) -> None:
    """What a chart author may let differ between the tracks is exactly what the code drops."""
    from canary.core.templates import DEFAULT_TRACK_KEYS, RESTART_ANNOTATIONS

    text = (ROOT / "docs" / doc).read_text()
    for key in sorted(DEFAULT_TRACK_KEYS | RESTART_ANNOTATIONS):
        assert f"`{key}`" in text, f"docs/{doc} does not say that {key} is ignored"


SOURCES = [
    p
    for folder in ("canary", "tests", "bench", "deploy")
    for p in sorted((ROOT / folder).rglob("*"))
    if p.suffix in {".py", ".sh", ".yaml", ".tpl"} and "__pycache__" not in p.parts
]


def test_every_design_section_cited_exists() -> None:
    """``docs/design.md §N`` in code, tests and docs names a section the contract has."""
    design = (ROOT / "docs" / "design.md").read_text()
    sections = set(re.findall(r"^## (\d+)\. ", design, flags=re.M))
    cited = re.compile(r"design\.md §(\d+)(?:[–-]§?(\d+))?((?:, ?§\d+)*)")
    wrong = []
    for path in [*SOURCES, *USER_DOCS]:
        for match in cited.finditer(path.read_text()):
            numbers = {match.group(1), match.group(2), *re.findall(r"\d+", match.group(3))}
            missing = sorted(n for n in numbers - {None} if n not in sections)
            if missing:
                wrong.append(f"{path.relative_to(ROOT)}: {match.group(0)} (no §{missing})")
    assert not wrong, "\n".join(wrong)


def test_code_and_tests_cite_the_repository_not_the_workspace() -> None:
    """What a reader of the code can follow: docs/design.md, not DESIGN or issue numbers."""
    found = []
    for path in SOURCES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if path.name == "test_docs.py":
                continue
            if re.search(r"\bDESIGN\b|\b[Ii]ssues? #?\d+", line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)
