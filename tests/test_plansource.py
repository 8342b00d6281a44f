"""The plans directory of ``canary run`` (canary/plans/): change detection, ConfigMap
symlink swaps, per-key errors, and the pure reconcile that the daemon applies to the Controller.

Real files and symlinks in ``tmp_path``; time never passes: where a change must be visible to
the fingerprint, ``os.utime`` sets the mtime explicitly.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from canary.core.conflicts import check_conflicts
from canary.core.errors import PlanError
from canary.core.plan import Plan
from canary.plans import directory as plansource
from canary.plans.directory import CONFIGMAP_DATA_LINK, PlanSource
from canary.plans.files import load_plan_files, load_plan_text
from canary.plans.planset import NO_PLANS, PlanSet, Update, reconcile

ROOT = Path(__file__).resolve().parent.parent
CONFIG_PLANS = ROOT / "config" / "plans"
BAD = ROOT / "tests" / "fixtures" / "plans" / "bad"

REVIEWS = (CONFIG_PLANS / "reviews.yaml").read_text()
RATINGS = (CONFIG_PLANS / "ratings.yaml").read_text()
REVIEWS_KEY = "bookinfo/reviews"
RATINGS_KEY = "bookinfo/ratings"

#: reviews starting at 20 % instead of 10 %
REVIEWS_20 = REVIEWS.replace("- {weight: 10, hold: 2m}", "- {weight: 20, hold: 2m}")
#: ratings starting at 10 % instead of 5 %
RATINGS_10 = RATINGS.replace("- {weight: 5, hold: 5m}", "- {weight: 10, hold: 5m}")
#: reviews with a second step below the first: invalid, the key still readable
REVIEWS_BAD_STEP = REVIEWS.replace("- {weight: 50, hold: 2m}", "- {weight: 5, hold: 2m}")
#: a tab before metadata: nothing in the file can be attributed to a plan
BROKEN_YAML = "apiVersion: canary.dev/v1\n\tkind: RolloutPlan\nmetadata: {name: reviews}\n"


def first_weight(plan: Plan) -> int:
    return plan.steps[0].weight


def bump_mtime(path: Path, ns: int = 1_700_000_000_000_000_000) -> None:
    """Give the file an mtime no earlier write had, without waiting for the clock."""
    os.utime(path, ns=(ns, ns))


def load_and_reconcile(source: PlanSource, previous: Update = NO_PLANS) -> Update:
    return reconcile(previous, source.load())


@dataclass
class Target:
    """The three dicts of the Controller an Update is applied to."""

    plans: dict[str, Plan] = field(default_factory=dict)
    invalid: dict[str, str] = field(default_factory=dict)
    deleted: dict[str, Plan] = field(default_factory=dict)


class ConfigMapVolume:
    """A directory laid out and updated like the kubelet's AtomicWriter does for a ConfigMap:
    write a new ``..<timestamp>`` directory, rename a new ``..data`` symlink over the old one,
    add the per-key symlinks of new keys, remove those of deleted keys, remove the old
    directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self.generation = 0
        self.old: str | None = None

    @property
    def data_target(self) -> str:
        return os.readlink(self.root / CONFIGMAP_DATA_LINK)

    def write(self, files: dict[str, str], *, cleanup: bool = True) -> None:
        self.generation += 1
        stamp = f"..2026_11_22_10_00_{self.generation:02d}.{100 + self.generation}"
        new = self.root / stamp
        new.mkdir()
        for name, text in files.items():
            (new / name).write_text(text)
        data = self.root / CONFIGMAP_DATA_LINK
        self.old = os.readlink(data) if data.is_symlink() else None
        tmp = self.root / "..data_tmp"
        os.symlink(stamp, tmp)
        os.replace(tmp, data)  # the atomic swap
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                os.symlink(f"{CONFIGMAP_DATA_LINK}/{name}", link)
        for link in self.root.iterdir():
            if not link.name.startswith(".") and link.name not in files:
                link.unlink()
        if cleanup:
            self.cleanup()

    def cleanup(self) -> None:
        if self.old is not None:
            shutil.rmtree(self.root / self.old)
            self.old = None


@pytest.fixture
def plans_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "plans"
    directory.mkdir()
    return directory


# --- loading a plain directory -----------------------------------------------------------------


def test_first_load_reads_every_plan_file_like_load_plan_files(plans_dir: Path) -> None:
    (plans_dir / "reviews.yaml").write_text(REVIEWS)
    (plans_dir / "ratings.yml").write_text(RATINGS)
    loaded = PlanSource(plans_dir).load()
    expected = {p.key: p for p in load_plan_files([plans_dir])}
    assert loaded == PlanSet(plans=expected)
    assert loaded.plans[REVIEWS_KEY].source == str(plans_dir / "reviews.yaml")


def test_unchanged_directory_is_not_changed_after_load(plans_dir: Path) -> None:
    (plans_dir / "reviews.yaml").write_text(REVIEWS)
    source = PlanSource(plans_dir)
    assert source.changed()  # nothing loaded yet
    source.load()
    assert not source.changed()
    assert not source.changed()
    assert source.poll() is None


def test_added_plan_file_is_detected_and_added(plans_dir: Path) -> None:
    (plans_dir / "reviews.yaml").write_text(REVIEWS)
    source = PlanSource(plans_dir)
    first = load_and_reconcile(source)
    assert first.added == (REVIEWS_KEY,)

    (plans_dir / "ratings.yaml").write_text(RATINGS)
    assert source.changed()
    update = load_and_reconcile(source, first)
    assert list(update.plans) == [RATINGS_KEY, REVIEWS_KEY]
    assert update.added == (RATINGS_KEY,)
    assert update.changed == update.removed == update.invalidated == ()


def test_modified_plan_file_is_changed(plans_dir: Path) -> None:
    path = plans_dir / "reviews.yaml"
    path.write_text(REVIEWS)
    source = PlanSource(plans_dir)
    first = load_and_reconcile(source)

    path.write_text(REVIEWS_20)  # in place: same inode
    bump_mtime(path)
    assert source.changed()
    update = load_and_reconcile(source, first)
    assert update.changed == (REVIEWS_KEY,)
    assert first_weight(update.plans[REVIEWS_KEY]) == 20
    assert not source.changed()


def test_same_size_rewrite_is_seen_through_the_mtime(plans_dir: Path) -> None:
    path = plans_dir / "reviews.yaml"
    path.write_text(REVIEWS)
    bump_mtime(path, 1_700_000_000_000_000_000)
    source = PlanSource(plans_dir)
    source.load()
    same_size = REVIEWS.replace("weight: 10,", "weight: 20,")
    assert len(same_size) == len(REVIEWS)
    path.write_text(same_size)
    bump_mtime(path, 1_700_000_001_000_000_000)
    assert source.changed()
    assert first_weight(source.load().plans[REVIEWS_KEY]) == 20


def test_removed_plan_file_moves_the_plan_to_deleted(plans_dir: Path) -> None:
    (plans_dir / "reviews.yaml").write_text(REVIEWS)
    (plans_dir / "ratings.yaml").write_text(RATINGS)
    source = PlanSource(plans_dir)
    first = load_and_reconcile(source)
    target = Target()
    first.apply(target)

    (plans_dir / "ratings.yaml").unlink()
    assert source.changed()
    update = load_and_reconcile(source, first)
    assert update.removed == (RATINGS_KEY,)
    assert update.deleted == {RATINGS_KEY: first.plans[RATINGS_KEY]}
    assert list(update.plans) == [REVIEWS_KEY]
    update.apply(target)
    assert list(target.plans) == [REVIEWS_KEY]
    assert target.deleted == {RATINGS_KEY: first.plans[RATINGS_KEY]}

    # the daemon has not dropped it yet when the plan comes back: it is served again
    (plans_dir / "ratings.yaml").write_text(RATINGS)
    back = load_and_reconcile(source, update)
    assert back.added == (RATINGS_KEY,)
    back.apply(target)
    assert sorted(target.plans) == [RATINGS_KEY, REVIEWS_KEY]
    assert target.deleted == {}


def test_dotfiles_and_other_names_are_ignored(plans_dir: Path) -> None:
    (plans_dir / "reviews.yaml").write_text(REVIEWS)
    (plans_dir / ".ratings.yaml").write_text(RATINGS)  # hidden: an editor's backup, say
    (plans_dir / ".reviews.yaml.swp").write_text("\0binary")
    (plans_dir / "README.md").write_text("# not a plan\n")
    (plans_dir / "ratings.yaml.orig").write_text(RATINGS)
    (plans_dir / "nested.yaml").mkdir()  # a directory named like a plan
    (plans_dir / "nested.yaml" / "ratings.yaml").write_text(RATINGS)
    os.mkfifo(plans_dir / "pipe.yaml")  # reading it would block
    source = PlanSource(plans_dir)
    loaded = source.load()
    assert list(loaded.plans) == [REVIEWS_KEY]
    assert loaded.errors == {}
    assert loaded.problems == []

    (plans_dir / ".another.yaml").write_text(RATINGS)
    assert not source.changed()  # hidden files are not even part of the fingerprint


# --- ConfigMap volumes --------------------------------------------------------------------------


def test_configmap_swap_is_detected_and_read(tmp_path: Path) -> None:
    volume = ConfigMapVolume(tmp_path / "plans")
    volume.write({"reviews.yaml": REVIEWS, "ratings.yaml": RATINGS})
    source = PlanSource(volume.root)
    first = load_and_reconcile(source)
    assert list(first.plans) == [RATINGS_KEY, REVIEWS_KEY]
    assert first.problems == ()  # ..data and ..<timestamp> are not plan files
    assert not source.changed()

    old_dir = volume.data_target
    volume.write({"reviews.yaml": REVIEWS_20, "ratings.yaml": RATINGS})
    assert not (volume.root / old_dir).exists()  # the kubelet removed the old generation
    assert source.changed()
    update = load_and_reconcile(source, first)
    assert update.changed == (REVIEWS_KEY,)
    assert first_weight(update.plans[REVIEWS_KEY]) == 20
    # the source is the visible name, the same in every generation
    assert update.plans[REVIEWS_KEY].source == str(volume.root / "reviews.yaml")
    assert not source.changed()


def test_configmap_swap_of_identical_content_is_seen_and_changes_nothing(tmp_path: Path) -> None:
    volume = ConfigMapVolume(tmp_path / "plans")
    volume.write({"reviews.yaml": REVIEWS})
    source = PlanSource(volume.root)
    first = load_and_reconcile(source)
    volume.write({"reviews.yaml": REVIEWS})  # e.g. a label of the ConfigMap changed
    assert source.changed()
    update = load_and_reconcile(source, first)
    assert update.plans == first.plans
    assert not update.has_changes


@pytest.mark.parametrize("old_dir_removed", [True, False], ids=["old-removed", "old-kept"])
def test_configmap_swap_during_a_read_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, old_dir_removed: bool
) -> None:
    """The swap lands between reading the first and the second file: the result is entirely
    the new generation, never new reviews with old ratings or the reverse."""
    volume = ConfigMapVolume(tmp_path / "plans")
    volume.write({"reviews.yaml": REVIEWS, "ratings.yaml": RATINGS})
    source = PlanSource(volume.root)
    read = plansource.read_bytes
    reads: list[str] = []

    def read_then_swap(path: str) -> bytes:
        raw = read(path)
        reads.append(path)
        if len(reads) == 1:
            volume.write(
                {"reviews.yaml": REVIEWS_20, "ratings.yaml": RATINGS_10},
                cleanup=old_dir_removed,
            )
        return raw

    monkeypatch.setattr(plansource, "read_bytes", read_then_swap)
    loaded = source.load()
    assert loaded.problems == []
    assert first_weight(loaded.plans[REVIEWS_KEY]) == 20
    assert first_weight(loaded.plans[RATINGS_KEY]) == 10
    assert len(reads) > 2  # the first attempt was thrown away
    assert not source.changed()


def test_configmap_key_removed_by_a_swap_is_deleted(tmp_path: Path) -> None:
    volume = ConfigMapVolume(tmp_path / "plans")
    volume.write({"reviews.yaml": REVIEWS, "ratings.yaml": RATINGS})
    source = PlanSource(volume.root)
    first = load_and_reconcile(source)
    # mid-update: ..data swapped, ratings.yaml's symlink still there but dangling
    volume.write({"reviews.yaml": REVIEWS}, cleanup=False)
    os.symlink(f"{CONFIGMAP_DATA_LINK}/ratings.yaml", volume.root / "ratings.yaml")
    update = load_and_reconcile(source, first)
    assert update.removed == (RATINGS_KEY,)
    assert update.problems == ()
    # the kubelet finishes: the dangling link goes; nothing more to report
    (volume.root / "ratings.yaml").unlink()
    volume.cleanup()
    assert not reconcile(update, source.load()).has_changes


# --- invalid plans ------------------------------------------------------------------------------


def test_invalid_edit_keeps_the_previous_plan_and_records_the_error(plans_dir: Path) -> None:
    path = plans_dir / "reviews.yaml"
    path.write_text(REVIEWS)
    source = PlanSource(plans_dir)
    first = load_and_reconcile(source)

    path.write_text(REVIEWS_BAD_STEP)
    bump_mtime(path)
    loaded = source.load()
    assert loaded.plans == {}
    assert list(loaded.errors) == [REVIEWS_KEY]
    update = reconcile(first, loaded)
    assert update.plans == first.plans  # the last valid definition keeps running...
    assert update.invalid == {  # ...paused with traffic on stable by decide()
        REVIEWS_KEY: f"{path}: spec.steps[1].weight: 5 is not greater than the previous step "
        "(10) (weights must increase from step to step, e.g. [10, 50, 100])"
    }
    assert update.invalidated == (REVIEWS_KEY,)
    assert update.changed == update.removed == ()
    target = Target()
    update.apply(target)
    assert target.plans == first.plans
    assert target.invalid == update.invalid

    # reported once: the same error on the next load is not news
    again = reconcile(update, loaded)
    assert again.invalid == update.invalid
    assert not again.has_changes

    # fixed: the new definition is served and the error is gone
    path.write_text(REVIEWS_20)
    bump_mtime(path, 1_800_000_000_000_000_000)
    fixed = load_and_reconcile(source, again)
    assert fixed.fixed == (REVIEWS_KEY,)
    assert fixed.changed == (REVIEWS_KEY,)
    assert fixed.invalid == {}
    fixed.apply(target)
    assert target.invalid == {}
    assert first_weight(target.plans[REVIEWS_KEY]) == 20


def test_invalid_on_first_load_is_only_reported(plans_dir: Path) -> None:
    (plans_dir / "reviews.yaml").write_text(REVIEWS_BAD_STEP)
    (plans_dir / "ratings.yaml").write_text(RATINGS)
    update = load_and_reconcile(PlanSource(plans_dir))
    assert list(update.plans) == [RATINGS_KEY]
    assert update.invalid == {}  # no Plan to pause
    assert list(update.rejected) == [REVIEWS_KEY]
    assert "spec.steps[1].weight" in update.rejected[REVIEWS_KEY]
    assert update.invalidated == (REVIEWS_KEY,)
    assert update.changes()["invalid"] == {REVIEWS_KEY: update.rejected[REVIEWS_KEY]}


def test_bad_yaml_is_reported_without_a_key(plans_dir: Path) -> None:
    (plans_dir / "broken.yaml").write_text(BROKEN_YAML)
    loaded = PlanSource(plans_dir).load()
    assert loaded.plans == loaded.errors == {}
    [problem] = loaded.problems
    assert problem.startswith(f"{plans_dir / 'broken.yaml'}: line 2, column 1: invalid YAML")
    assert "indent with spaces" in problem
    update = reconcile(NO_PLANS, loaded)
    assert update.new_problems == (problem,)
    assert reconcile(update, loaded).new_problems == ()  # reported once


def test_bad_yaml_after_metadata_is_attributed_to_the_plan(plans_dir: Path) -> None:
    text = (BAD / "yaml-syntax-error.yaml").read_text()
    (plans_dir / "reviews.yaml").write_text(text)
    loaded = PlanSource(plans_dir).load()
    assert loaded.problems == []
    assert loaded.errors == {
        REVIEWS_KEY: f"{plans_dir / 'reviews.yaml'}: line 12, column 7: invalid YAML: expected "
        "',' or '}', but got ':' (while parsing a flow mapping) (check the indentation, quoting "
        "and colons here)"
    }


def test_unparsable_file_keeps_its_previous_plans_as_invalid(plans_dir: Path) -> None:
    """A file that can no longer be parsed far enough to name its plans may be broken rather
    than emptied: its plans pause on stable instead of being deleted."""
    path = plans_dir / "reviews.yaml"
    path.write_text(REVIEWS)
    (plans_dir / "ratings.yaml").write_text(RATINGS)
    source = PlanSource(plans_dir)
    first = load_and_reconcile(source)

    path.write_text(BROKEN_YAML)
    bump_mtime(path)
    update = load_and_reconcile(source, first)
    assert update.removed == ()
    assert update.plans == first.plans
    assert list(update.invalid) == [REVIEWS_KEY]
    assert "invalid YAML" in update.invalid[REVIEWS_KEY]
    assert update.new_problems == update.problems

    # the file is emptied on purpose: now the plan is gone
    path.write_text("# no plans here any more\n")
    bump_mtime(path, 1_800_000_000_000_000_000)
    emptied = load_and_reconcile(source, update)
    assert emptied.removed == (REVIEWS_KEY,)
    assert emptied.invalid == {}
    assert emptied.problems == ()


@pytest.mark.parametrize(
    ("metadata", "key"),
    [
        ("metadata: {name: reviews, namespace: bookinfo}", REVIEWS_KEY),
        ("metadata:\n  namespace: \"bookinfo\"\n  name: 'reviews'", REVIEWS_KEY),
        ("metadata: {name: Reviews, namespace: bookinfo}", "bookinfo/Reviews"),
        ("metadata: {name: reviews}", None),  # no namespace: no key
        ("metadata: {name: 123, namespace: bookinfo}", None),  # YAML reads a number
        ("metadata: {name: ~, namespace: bookinfo}", None),
        ("metadata: {name: [reviews], namespace: bookinfo}", None),
        ("labels:\n  metadata: {name: reviews, namespace: bookinfo}", None),  # not top level
    ],
    ids=["flow", "quoted", "bad-name", "no-namespace", "number", "null", "list", "nested"],
)
def test_errors_are_keyed_by_metadata_read_leniently(
    plans_dir: Path, metadata: str, key: str | None
) -> None:
    text = f"apiVersion: canary.dev/v1\nkind: RolloutPlan\n{metadata}\nspec: {{release: 3}}\n"
    (plans_dir / "plan.yaml").write_text(text)
    loaded = PlanSource(plans_dir).load()
    assert loaded.plans == {}
    if key is None:
        assert loaded.errors == {}
        assert loaded.problems
    else:
        assert list(loaded.errors) == [key]
        assert loaded.problems == []


def test_one_bad_document_does_not_hide_its_valid_sibling(plans_dir: Path) -> None:
    (plans_dir / "two.yaml").write_text((BAD / "second-document-bad.yaml").read_text())
    loaded = PlanSource(plans_dir).load()
    assert list(loaded.plans) == ["second-doc/reviews"]
    assert loaded.errors == {
        "second-doc/ratings": f"{plans_dir / 'two.yaml'}: (document 2) spec.progressDeadline: "
        '"5min" has an unknown unit "min" (write a number and a unit, one of ms, s, m, h: e.g. '
        '"30s", "2m" or "1m30s")'
    }


@pytest.mark.parametrize(
    "fixture",
    sorted(p.name for p in BAD.glob("*.yaml") if not p.name.startswith("two-plans-")),
)
def test_messages_are_those_of_load_plan_files(plans_dir: Path, fixture: str) -> None:
    """Per key or not, the directory reports exactly what ``canary validate`` prints: the same
    field paths, line numbers and document numbers."""
    path = plans_dir / fixture
    shutil.copy(BAD / fixture, path)
    with pytest.raises(PlanError) as caught:
        load_plan_files([path])
    loaded = PlanSource(plans_dir).load()
    messages = [*loaded.problems, *(m for e in loaded.errors.values() for m in e.split("\n"))]
    assert sorted(messages) == sorted(str(p) for p in caught.value.problems)


def test_multi_document_line_numbers_are_the_files(plans_dir: Path) -> None:
    text = f"{RATINGS}---\n{REVIEWS.replace('  release: reviews', '  release: [reviews')}"
    (plans_dir / "both.yaml").write_text(text)
    with pytest.raises(PlanError) as caught:
        load_plan_text(text, str(plans_dir / "both.yaml"))
    loaded = PlanSource(plans_dir).load()
    assert list(loaded.plans) == [RATINGS_KEY]
    assert loaded.errors == {REVIEWS_KEY: str(caught.value.problems[0])}
    assert " line " in loaded.errors[REVIEWS_KEY]


# --- conflicts and duplicates -------------------------------------------------------------------


def reviews_copy(name: str, stable: str, canary: str) -> str:
    return (
        REVIEWS.replace("name: reviews          #", f"name: {name}          #")
        .replace("stable: reviews-v1", f"stable: {stable}")
        .replace("canary: reviews-v3", f"canary: {canary}")
    )


def test_two_plans_on_the_same_virtualservice_are_both_errors(plans_dir: Path) -> None:
    (plans_dir / "reviews.yaml").write_text(REVIEWS)
    source = PlanSource(plans_dir)
    first = load_and_reconcile(source)

    other = plans_dir / "reviews-b.yaml"
    other.write_text(reviews_copy("reviews-b", "reviews-v2", "reviews-v4"))
    loaded = source.load()
    # the rule is check_conflicts's; only who gets the error differs
    assert check_conflicts([first.plans[REVIEWS_KEY], *load_plan_files([other])])
    assert loaded.plans == {}
    assert sorted(loaded.errors) == ["bookinfo/reviews", "bookinfo/reviews-b"]
    assert loaded.errors[REVIEWS_KEY] == (
        f"{plans_dir / 'reviews.yaml'}: spec.virtualService.name: plan bookinfo/reviews manages "
        f"VirtualService bookinfo/reviews, and so does plan bookinfo/reviews-b ({other}): all "
        "of these plans are refused until only one of them names it (one plan per "
        "VirtualService: a rollout's state lives in one annotation on the VirtualService; merge "
        "the plans or point all but one at another VirtualService)"
    )
    assert (
        "plan bookinfo/reviews-b manages VirtualService bookinfo/reviews, and so does plan "
        f"bookinfo/reviews ({plans_dir / 'reviews.yaml'})"
    ) in loaded.errors["bookinfo/reviews-b"]

    update = reconcile(first, loaded)
    assert update.plans == first.plans  # the running plan pauses on stable...
    assert list(update.invalid) == [REVIEWS_KEY]
    assert list(update.rejected) == ["bookinfo/reviews-b"]  # ...the newcomer never starts


def test_same_virtualservice_in_one_file_is_both_errors(plans_dir: Path) -> None:
    shutil.copy(BAD / "two-plans-same-virtualservice.yaml", plans_dir / "both.yaml")
    loaded = PlanSource(plans_dir).load()
    assert loaded.plans == {}
    assert sorted(loaded.errors) == ["conflict-vs/reviews", "conflict-vs/reviews-b"]
    assert all("spec.virtualService.name" in e for e in loaded.errors.values())


def test_two_plans_on_the_same_workload_are_both_errors(plans_dir: Path) -> None:
    (plans_dir / "reviews.yaml").write_text(REVIEWS)
    (plans_dir / "reviews-b.yaml").write_text(
        reviews_copy("reviews-b", "reviews-v2", "reviews-v3").replace(
            "    name: reviews        #", "    name: reviews-b      #"
        )
    )
    loaded = PlanSource(plans_dir).load()
    assert loaded.plans == {}
    assert (
        "spec.workloads.canary: plan bookinfo/reviews names Deployment bookinfo/reviews-v3 "
        in (loaded.errors[REVIEWS_KEY])
    )
    assert "as its canary workload" in loaded.errors["bookinfo/reviews-b"]
    assert "VirtualService" not in loaded.errors["bookinfo/reviews-b"].split("(")[0]


def test_plan_defined_in_two_files_is_an_error(plans_dir: Path) -> None:
    (plans_dir / "a.yaml").write_text(REVIEWS)
    (plans_dir / "b.yaml").write_text(REVIEWS_20)
    loaded = PlanSource(plans_dir).load()
    assert loaded.plans == {}
    assert loaded.errors[REVIEWS_KEY].startswith(
        f"{plans_dir / 'a.yaml'}: metadata.name: plan bookinfo/reviews is defined 2 times "
        f"({plans_dir / 'a.yaml'}, {plans_dir / 'b.yaml'})"
    )


# --- the directory or a file cannot be read -----------------------------------------------------


def test_missing_directory_keeps_the_previous_plans_with_a_problem(plans_dir: Path) -> None:
    (plans_dir / "reviews.yaml").write_text(REVIEWS)
    source = PlanSource(plans_dir)
    first = load_and_reconcile(source)
    target = Target()
    first.apply(target)

    moved = plans_dir.with_name("elsewhere")
    plans_dir.rename(moved)  # e.g. the volume is remounted
    assert source.changed()
    loaded = source.load()
    assert not loaded.listed
    assert loaded.problems == [
        f"{plans_dir}: cannot list the plans directory: No such file or directory (check "
        "--plans and the volume mount; the plans loaded before stay in force)"
    ]
    update = reconcile(first, loaded)
    assert update.plans == first.plans
    assert update.invalid == update.deleted == {}
    assert update.new_problems == tuple(loaded.problems)
    update.apply(target)
    assert target.plans == first.plans
    assert target.deleted == {}
    assert not source.changed()  # still missing: nothing new to read or report

    moved.rename(plans_dir)
    assert source.changed()
    back = load_and_reconcile(source, update)
    assert back.plans == first.plans
    assert back.problems == ()
    assert not back.has_changes


def test_missing_directory_on_first_load_is_a_problem(tmp_path: Path) -> None:
    update = load_and_reconcile(PlanSource(tmp_path / "nope"))
    assert update.plans == {}
    assert len(update.problems) == 1
    assert "cannot list the plans directory" in update.problems[0]


def test_unreadable_file_keeps_its_previous_plan(
    plans_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An I/O error says nothing about the plan: it keeps running, not even paused."""
    path = plans_dir / "reviews.yaml"
    path.write_text(REVIEWS)
    (plans_dir / "ratings.yaml").write_text(RATINGS)
    source = PlanSource(plans_dir)
    first = load_and_reconcile(source)

    read: Callable[[str], bytes] = plansource.read_bytes

    def denied(name: str) -> bytes:
        if name.endswith("reviews.yaml"):
            raise PermissionError(13, "Permission denied", name)
        return read(name)

    monkeypatch.setattr(plansource, "read_bytes", denied)
    bump_mtime(path)
    loaded = source.load()
    assert loaded.unreadable_files == {str(path)}
    assert loaded.problems == [
        f"{path}: cannot read: Permission denied (check the file and its permissions; the "
        "plans loaded from it before stay in force)"
    ]
    update = reconcile(first, loaded)
    assert update.plans == first.plans
    assert update.invalid == update.deleted == {}
