"""The release port over a `helm` executable: the fake of tests/support/fakehelm, which accepts
exactly the documented Helm 3/4 syntax and rejects anything else (docs/design.md §7)."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest

from canary.adapters.helm import HelmReleases, parse_history
from canary.core.durations import go_duration
from canary.core.errors import ConfigError, HelmError, NotFoundError
from canary.core.model import RevisionStatus, rollback_description
from canary.core.plan import ReleaseRef
from tests.support.fakehelm import FakeHelm

REL = ReleaseRef(name="reviews", namespace="bookinfo")


@pytest.fixture
def helm(tmp_path: Path) -> FakeHelm:
    fake = FakeHelm(tmp_path / "helm-state.json")
    fake.install("reviews", "bookinfo", revisions=3)
    return fake


def releases(helm: FakeHelm, **kwargs: object) -> HelmReleases:
    return HelmReleases(helm.binary, env=helm.env, **kwargs)  # type: ignore[arg-type]


def test_history_is_parsed_oldest_first(helm: FakeHelm) -> None:
    info = releases(helm).history(REL)
    assert [(r.number, r.status) for r in info.revisions] == [
        (1, RevisionStatus.SUPERSEDED),
        (2, RevisionStatus.SUPERSEDED),
        (3, RevisionStatus.DEPLOYED),
    ]
    assert info.revisions[0].description == "Install complete"
    assert helm.calls("history") == [
        ["history", "reviews", "--namespace", "bookinfo", "-o", "json"]
    ]


def test_history_is_cached_for_a_few_seconds_and_a_rollback_invalidates_it(
    helm: FakeHelm,
) -> None:
    now = [0.0]
    r = releases(helm, clock=lambda: now[0])
    r.history(REL)
    r.history(REL)
    assert len(helm.calls("history")) == 1
    now[0] += 6
    r.history(REL)
    assert len(helm.calls("history")) == 2
    r.rollback(REL, 1, timedelta(minutes=5))
    assert r.history(REL).deployed.description == rollback_description(1)  # type: ignore[union-attr]


def test_rollback_runs_the_exact_documented_argv(helm: FakeHelm) -> None:
    releases(helm).rollback(REL, 2, timedelta(minutes=5))
    assert helm.calls("rollback") == [
        ["rollback", "reviews", "2", "--namespace", "bookinfo", "--wait", "--timeout", "5m0s"]
    ]
    assert helm.deployed("reviews", "bookinfo") == 4
    assert helm.history("reviews", "bookinfo")[-1]["description"] == "Rollback to 2"


def test_kube_context_and_kubeconfig_are_passed_through(helm: FakeHelm) -> None:
    releases(helm, kube_context="prod", kubeconfig="/etc/kube/config").history(REL)
    assert helm.calls("history")[0][-4:] == [
        "--kube-context", "prod", "--kubeconfig", "/etc/kube/config"
    ]  # fmt: skip


def test_a_failed_rollback_carries_helms_stderr_tail(helm: FakeHelm) -> None:
    helm.fail_next(stderr="Error: UPGRADE FAILED: an error occurred while rolling back")
    with pytest.raises(HelmError) as info:
        releases(helm).rollback(REL, 2, timedelta(minutes=5))
    assert "exited 1" in str(info.value)
    assert "an error occurred while rolling back" in info.value.stderr_tail


def test_helm_timing_out_is_a_helm_error(helm: FakeHelm) -> None:
    helm.set(hang_seconds=5)
    with pytest.raises(HelmError, match="timed out waiting for the condition"):
        releases(helm).rollback(REL, 2, timedelta(seconds=1))


def test_a_rollback_outliving_its_timeout_is_left_running_never_killed(helm: FakeHelm) -> None:
    helm.set(slow_seconds=2)
    r = releases(helm, rollback_grace=timedelta(seconds=0))
    # We wait --timeout (1 s) plus a grace of 0 for helm; the fake waits its whole --timeout
    # after starting up, so it is still running when we stop waiting.
    with pytest.raises(HelmError, match="left running"):
        r.rollback(REL, 2, timedelta(seconds=1))
    process = r.running[("bookinfo", "reviews")]
    assert process.poll() is None  # still running: we stopped waiting, we did not kill it
    # one breach, one helm: no second rollback while that one is still going
    with pytest.raises(HelmError, match="still running; not starting another"):
        r.rollback(REL, 2, timedelta(seconds=1))
    assert len(helm.calls("rollback")) == 1
    deadline = time.monotonic() + 10
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.returncode is not None  # it ended by itself
    helm.set(slow_seconds=0)
    r.rollback(REL, 2, timedelta(seconds=5))  # once it has ended, a new attempt may run
    assert len(helm.calls("rollback")) == 2
    assert ("bookinfo", "reviews") not in r.running


def test_a_helm_past_its_grace_is_left_to_finish_and_exits_0_by_itself(helm: FakeHelm) -> None:
    """Helm's update outlasts our wait (--timeout 1s + grace 1s; a slow API server makes the
    update take 3 s, which --timeout does not bound): we stop waiting, and helm, never
    signalled, finishes the rollback and exits 0."""
    helm.set(update_seconds=3)
    r = releases(helm, rollback_grace=timedelta(seconds=1))
    with pytest.raises(HelmError, match="left running"):
        r.rollback(REL, 2, timedelta(seconds=1))
    process = r.running[("bookinfo", "reviews")]
    assert process.wait(timeout=15) == 0  # not -9 or -15: nobody killed it
    last = helm.history("reviews", "bookinfo")[-1]
    assert (last["status"], last["description"]) == ("deployed", rollback_description(2))


def test_helm_environment_reaches_helm(helm: FakeHelm) -> None:
    """HELM_* (and the rest of the environment) pass through to the helm process."""
    r = HelmReleases(
        helm.binary, env={**helm.env, "HELM_NAMESPACE": "ignored", "HELM_DEBUG": "false"}
    )
    r.history(REL)
    r.rollback(REL, 2, timedelta(seconds=5))
    for call in helm.state()["calls"]:
        assert call["env"] == {"HELM_NAMESPACE": "ignored", "HELM_DEBUG": "false"}
    # --namespace on the argv wins over HELM_NAMESPACE, as in helm
    assert helm.calls("rollback")[0][3:5] == ["--namespace", "bookinfo"]


def test_a_history_read_during_a_rollback_is_not_cached(helm: FakeHelm) -> None:
    """A history read that overlaps a rollback must not pin the pre-rollback history."""
    clock = [100.0]
    r = releases(helm, history_ttl=timedelta(seconds=60), clock=lambda: clock[0])
    before = r.history(REL)
    r._changed(("bookinfo", "reviews"))  # a rollback started (or ended) meanwhile
    assert r.history(REL) == before  # fresh read, same content...
    r.rollback(REL, 2, timedelta(seconds=5))
    after = r.history(REL)
    assert after != before and after.deployed is not None
    assert after.deployed.description == rollback_description(2)


def test_an_unknown_release_is_not_found(helm: FakeHelm) -> None:
    with pytest.raises(NotFoundError, match="bookinfo/ratings"):
        releases(helm).history(ReleaseRef(name="ratings", namespace="bookinfo"))


@pytest.mark.parametrize(
    "release",
    [
        ReleaseRef(name="reviews; rm -rf /", namespace="bookinfo"),
        ReleaseRef(name="--kube-context=evil", namespace="bookinfo"),
        ReleaseRef(name="reviews", namespace="book info"),
        ReleaseRef(name="r" * 54, namespace="bookinfo"),
    ],
    ids=["shell", "flag", "namespace", "too-long"],
)
def test_names_are_validated_before_they_reach_argv(helm: FakeHelm, release: ReleaseRef) -> None:
    with pytest.raises(ConfigError):
        releases(helm).history(release)
    with pytest.raises(ConfigError):
        releases(helm).rollback(release, 1, timedelta(minutes=5))
    assert helm.calls() == []


def test_revision_zero_is_refused(helm: FakeHelm) -> None:
    with pytest.raises(ConfigError, match="revision 0"):
        releases(helm).rollback(REL, 0, timedelta(minutes=5))  # helm's "previous": never ours


def test_a_missing_binary_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot run helm"):
        HelmReleases(str(tmp_path / "no-helm")).history(REL)


@pytest.mark.parametrize(
    ("delta", "text"),
    [(timedelta(minutes=5), "5m0s"), (timedelta(seconds=90), "1m30s"), (timedelta(seconds=45),
     "45s"), (timedelta(hours=1, minutes=2, seconds=3), "1h2m3s")],
)  # fmt: skip
def test_go_durations(delta: timedelta, text: str) -> None:
    assert go_duration(delta) == text


def test_unexpected_history_output_is_a_helm_error() -> None:
    with pytest.raises(HelmError):
        parse_history("not json")
    with pytest.raises(HelmError):
        parse_history('[{"status": "deployed"}]')
    assert parse_history('[{"revision": 2, "status": "weird"}]').revisions[0].status is (
        RevisionStatus.UNKNOWN
    )
