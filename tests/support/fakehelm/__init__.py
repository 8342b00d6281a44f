"""The fake ``helm`` executable and its test-side handle (README: test doubles).

``tests/support/fakehelm/helm`` is a standalone script; :class:`FakeHelm` creates its state
file, installs releases, sets failure controls and reads back calls and history. Pass
:attr:`FakeHelm.env` to the process under test (or ``monkeypatch.setenv`` each item): it puts
the script's directory first on ``PATH`` and names the state file in ``FAKEHELM_STATE``; or use
:attr:`FakeHelm.binary` as the helm binary path.

State file layout (JSON)::

    {
      "releases": {"NS/REL": {"name": REL, "namespace": NS, "revisions": [
          {"revision": 1, "status": "superseded", "description": "Install complete",
           "chart": "reviews-0.1.0", "app_version": "1.20.1",
           "updated": "2026-03-01T09:00:00Z", "values": {...}, "manifest": null,
           "chart_dir": "/path/to/chart" | null}, ...]}},
      "calls": [{"argv": [...args after "helm"...], "pid": 123, "at": 1700000000.0}, ...],
      "controls": {
        "fail_next": [{"command": "rollback", "count": 1, "stderr": "Error: ...",
                       "exit_code": 1, "stage": "before" | "after-pending"}],
        "slow_seconds": 0, "hang_seconds": 0,   # number, or {"history": s, "rollback": s}
        "update_seconds": 0,   # rollback: the Kubernetes update takes this long
        "leave_pending": false,
        "version": {"version": "v3.16.2", "git_commit": "...", ...}
      }
    }

Semantics of the controls, as the script implements them:

* ``fail_next``: the first entry whose ``command`` (default ``rollback``; ``history`` or ``*``)
  matches loses one ``count``; stage ``before`` exits with ``stderr``/``exit_code`` and no change
  (like an unreachable cluster); stage ``after-pending`` (rollback only) first records revision
  N+1 ``pending-rollback``, then does what helm does when the Kubernetes update fails: N+1
  ``failed`` (description ``Rollback "REL" failed: <msg>``), the previous last revision
  ``superseded``, exit ``exit_code``.
* ``slow_seconds`` + ``hang_seconds``: a delay before answering (history: before reading the
  state; rollback: after recording the pending revision, as helm's ``--wait``). With ``--wait``
  a rollback whose delay exceeds ``--timeout`` sleeps the timeout, marks N+1 ``failed``
  (``Release "REL" failed: timed out waiting for the condition``) and exits 1 with
  ``Error: release REL failed: timed out waiting for the condition``; the previous revision
  stays ``deployed``, as in helm.
* ``update_seconds``: a rollback's Kubernetes update (step 3, after recording the pending
  revision) takes this long, as against a slow API server. Not bounded by ``--timeout``: in
  helm the timeout bounds ``--wait`` and hooks, not the update's requests. The rollback then
  goes on and succeeds (exit 0): a helm that outlives the controller's patience by itself.
* ``leave_pending``: consumed by the next rollback, which records N+1 ``pending-rollback``,
  waits its delay (bounded by ``--timeout``), and exits 1 with
  ``Error: release REL failed: context deadline exceeded`` **leaving N+1 pending** — a helm that
  died before recording the outcome. :meth:`FakeHelm.settle` finishes it later.

With ``FAKEHELM_KUBE_URL`` in the environment and a ``chart_dir`` on the current and the target
revision, a rollback also renders both with Helm's engine (helm-python-sdk) and applies the
difference to that API as helm 3 does (the script's ``apply_change``), after recording the
pending revision and before ``--wait``; :meth:`FakeHelm.upgrade` with ``kube_url`` does the same
for a new revision. Render or API errors mark the new revision ``failed`` and exit 1.
The same variable (or ``FakeHelm(kube_url=...)``) keeps helm's storage Secrets
(``sh.helm.release.v1.REL.vN``, driver "secret") in that API in step with the history: the
pending revision's Secret is created when helm records it, and updated when it settles.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
BINARY = HERE / "helm"
#: Install times of the revisions FakeHelm creates: revision i at T0 + (i - 1) minutes.
T0 = datetime(2026, 3, 1, 9, 0, 0, tzinfo=UTC)


def _load_script() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("_fakehelm_script", str(BINARY))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


#: The script itself, imported: its ``locked_state`` is the one lock protocol for both sides.
script = _load_script()


def go_time(moment: datetime) -> str:
    """A datetime as Go's RFC3339Nano in UTC (trailing fraction zeros trimmed)."""
    moment = moment.astimezone(UTC)
    base = moment.strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{moment.microsecond:06d}".rstrip("0")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


class FakeHelm:
    """Handle on one fake-helm state file."""

    binary: Path = BINARY

    def __init__(
        self, state_path: Path | str, *, version: str | None = None, kube_url: str | None = None
    ) -> None:
        self.state_path = Path(state_path)
        #: the Kubernetes API this fake's releases live in: its storage Secrets are kept there
        #: (so the controller's SecretHistory and the binary agree) and rollbacks applied there
        self.kube_url = kube_url
        with self._state() as state:
            state.setdefault("releases", {})
            state.setdefault("calls", [])
            controls = state.setdefault("controls", {})
            if version is not None:
                controls["version"] = {"version": version}

    # --- plumbing ---------------------------------------------------------------------------

    def _state(self, write: bool = True) -> Any:
        return script.locked_state(str(self.state_path), write=write)

    @property
    def env(self) -> dict[str, str]:
        """Environment additions for the process under test."""
        env = {
            "FAKEHELM_STATE": str(self.state_path),
            # the script's `#!/usr/bin/env python3` is the test's interpreter
            "PATH": os.pathsep.join(
                [str(HERE), str(Path(sys.executable).parent), os.environ.get("PATH", "")]
            ),
        }
        if self.kube_url is not None:
            env[script.KUBE_URL_ENV] = self.kube_url
        return env

    def _mirror(self, name: str, namespace: str) -> None:
        """Write the release's storage Secrets to :attr:`kube_url` as helm would have."""
        if self.kube_url is None:
            return
        release = self.state()["releases"].get(f"{namespace}/{name}")
        if release:
            script.mirror_release(self.kube_url, release)

    def full_env(self, **extra: str) -> dict[str, str]:
        """``os.environ`` plus :attr:`env` plus ``extra``: ready for ``subprocess``."""
        return {**os.environ, **self.env, **extra}

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run the fake as a subprocess with an argv list (never a shell)."""
        return subprocess.run(
            [str(self.binary), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.full_env(),
            check=False,
        )

    def state(self) -> dict[str, Any]:
        with self._state(write=False) as state:
            copy: dict[str, Any] = json.loads(json.dumps(state))
        return copy

    # --- releases ---------------------------------------------------------------------------

    def install(
        self,
        name: str,
        namespace: str = "default",
        *,
        revisions: int = 1,
        chart: str | Sequence[str] = "reviews-0.1.0",
        app_version: str | Sequence[str] = "1.20.1",
        values: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        statuses: Sequence[str] | None = None,
        manifests: Sequence[str | None] | None = None,
        chart_dir: str | Path | None = None,
    ) -> None:
        """A release with ``revisions`` revisions: 1 "Install complete", the rest
        "Upgrade complete"; the newest ``deployed``, the older ones ``superseded`` (or
        ``statuses``, oldest first). ``chart``, ``app_version`` and ``values`` are one value for
        all revisions or one per revision; ``chart_dir`` (one chart directory for all) makes the
        revisions renderable."""

        def nth(value: Any, i: int, default: Any) -> Any:
            if value is None:
                return default
            if isinstance(value, str | Mapping):
                return value
            return value[i]

        rows = []
        for i in range(revisions):
            status = (
                statuses[i] if statuses else ("deployed" if i == revisions - 1 else "superseded")
            )
            rows.append(
                {
                    "revision": i + 1,
                    "status": status,
                    "description": "Install complete" if i == 0 else "Upgrade complete",
                    "chart": nth(chart, i, ""),
                    "app_version": nth(app_version, i, ""),
                    "updated": go_time(T0 + timedelta(minutes=i)),
                    "values": dict(nth(values, i, {})),
                    "manifest": nth(manifests, i, None),
                    "chart_dir": str(chart_dir) if chart_dir is not None else None,
                }
            )
        with self._state() as state:
            state["releases"][f"{namespace}/{name}"] = {
                "name": name,
                "namespace": namespace,
                "revisions": rows,
            }
        self._mirror(name, namespace)

    def upgrade(
        self,
        name: str,
        namespace: str = "default",
        *,
        chart: str | None = None,
        app_version: str | None = None,
        values: Mapping[str, Any] | None = None,
        status: str = "deployed",
        description: str = "Upgrade complete",
        chart_dir: str | Path | None = None,
        kube_url: str | None = None,
    ) -> int:
        """What CI's ``helm upgrade`` leaves in the history: a new revision (by default
        ``deployed``, the previously deployed one ``superseded``). Returns its number.
        With ``kube_url``, the change from the last revision to the new one is first applied to
        that Kubernetes API the way the script's rollback applies one (both revisions must be
        renderable)."""
        kube_url = kube_url if kube_url is not None else self.kube_url
        if kube_url is not None and chart_dir is None and values is None:
            kube_url = None  # a history-only upgrade: nothing to render
        if kube_url is not None:
            last_rev = self.history(name, namespace)[-1]
            new_rev = {
                **last_rev,
                "values": dict(values) if values is not None else last_rev.get("values", {}),
                "chart_dir": str(chart_dir) if chart_dir is not None else last_rev.get("chart_dir"),
            }
            if not script.renderable(last_rev, new_rev):
                raise ValueError("upgrade with kube_url needs chart_dir on both revisions")
            script.apply_change(
                kube_url,
                script.render_revision(last_rev, name, namespace),
                script.render_revision(new_rev, name, namespace),
            )
        with self._state() as state:
            revs = state["releases"][f"{namespace}/{name}"]["revisions"]
            last = max(revs, key=lambda r: r["revision"])
            if status == "deployed":
                for rev in revs:
                    if rev["status"] == "deployed":
                        rev["status"] = "superseded"
            number = last["revision"] + 1
            revs.append(
                {
                    "revision": number,
                    "status": status,
                    "description": description,
                    "chart": chart if chart is not None else last["chart"],
                    "app_version": app_version if app_version is not None else last["app_version"],
                    "updated": script.go_time_now(),
                    "values": dict(values) if values is not None else last.get("values", {}),
                    "manifest": last.get("manifest"),
                    "chart_dir": str(chart_dir) if chart_dir is not None else last.get("chart_dir"),
                }
            )
        self._mirror(name, namespace)
        return int(number)

    def settle(self, name: str, namespace: str = "default", *, status: str = "deployed") -> int:
        """Finish the newest ``pending-*`` revision the way its helm would have: ``deployed``
        (earlier deployed revisions → ``superseded``) or ``failed``. Returns its number."""
        with self._state() as state:
            revs = state["releases"][f"{namespace}/{name}"]["revisions"]
            pending = [r for r in revs if r["status"].startswith("pending-")]
            if not pending:
                raise ValueError(f"{namespace}/{name} has no pending revision")
            target = max(pending, key=lambda r: r["revision"])
            if status == "deployed":
                for rev in revs:
                    if rev["status"] == "deployed":
                        rev["status"] = "superseded"
            target["status"] = status
            number = int(target["revision"])
        self._mirror(name, namespace)
        return number

    def history(self, name: str, namespace: str = "default") -> list[dict[str, Any]]:
        """The stored revisions (with values and manifest), oldest first; [] if none."""
        release = self.state()["releases"].get(f"{namespace}/{name}")
        if not release:
            return []
        return sorted(release["revisions"], key=lambda r: r["revision"])

    def deployed(self, name: str, namespace: str = "default") -> int | None:
        numbers = [
            r["revision"] for r in self.history(name, namespace) if r["status"] == "deployed"
        ]
        return max(numbers) if numbers else None

    # --- controls ---------------------------------------------------------------------------

    def fail_next(
        self,
        count: int = 1,
        *,
        stderr: str | None = None,
        exit_code: int = 1,
        stage: str = "before",
        command: str = "rollback",
    ) -> None:
        """The next ``count`` calls of ``command`` fail (queued after earlier entries)."""
        if stage not in ("before", "after-pending"):
            raise ValueError(f"unknown stage {stage!r}")
        entry: dict[str, Any] = {
            "command": command,
            "count": count,
            "exit_code": exit_code,
            "stage": stage,
        }
        if stderr is not None:
            entry["stderr"] = stderr
        with self._state() as state:
            state["controls"].setdefault("fail_next", []).append(entry)

    def set(self, **controls: Any) -> None:
        """Set controls: ``slow_seconds``, ``hang_seconds``, ``update_seconds``,
        ``leave_pending``, ``version``."""
        known = {
            "slow_seconds",
            "hang_seconds",
            "update_seconds",
            "leave_pending",
            "version",
            "fail_next",
        }
        unknown = set(controls) - known
        if unknown:
            raise ValueError(f"unknown controls {sorted(unknown)}")
        with self._state() as state:
            state["controls"].update(controls)

    def controls(self) -> dict[str, Any]:
        controls: dict[str, Any] = self.state()["controls"]
        return controls

    # --- calls ------------------------------------------------------------------------------

    def calls(self, command: str | None = None) -> list[list[str]]:
        """Every argv received (after ``helm``), in order; only ``command``'s if given."""
        out = [c["argv"] for c in self.state()["calls"]]
        if command is not None:
            out = [a for a in out if script.find_command(list(a))[0] == command]
        return out

    def clear_calls(self) -> None:
        with self._state() as state:
            state["calls"] = []
