"""``promtool`` for exact PromQL values: rule unit tests and backfilled blocks.

Two ways to know a query's value exactly, without waiting on a clock:

* :meth:`Promtool.test_rules` runs ``promtool test rules`` on a generated test file
  (``input_series`` in promtool's expanding notation, ``promql_expr_test`` with ``exp_samples``);
  :func:`expr_test` and :func:`series` build its parts.
* :meth:`Promtool.create_blocks` writes OpenMetrics text with explicit timestamps (build it with
  :class:`OpenMetrics`) into TSDB blocks via ``promtool tsdb create-blocks-from openmetrics``;
  a :class:`~tests.support.prometheus.PrometheusServer` on that data dir answers queries at an
  explicit ``time=``. Use timestamps well in the past (:data:`T0`, 2024-01-01T00:00:00Z).

Prometheus 2.42's range selectors include both ends (``[t-w, t]``), so a sample exactly at the
window start counts and ``increase`` needs no extrapolation when samples sit on both edges.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.istio_exporter import DURATION_BUCKETS_MS, labels_text
from tests.support.prometheus import require_binary

#: 2024-01-01T00:00:00Z: backfilled data lives here, far from the head block and from "now".
T0 = 1_704_067_200
PROMTOOL_TIMEOUT_S = 60


@dataclass(frozen=True)
class PromtoolResult:
    ok: bool
    returncode: int
    output: str


def series(name: str, labels: Mapping[str, str], values: str) -> dict[str, str]:
    """One ``input_series`` entry; ``values`` in promtool notation, e.g. ``"0+60x10"``."""
    return {"series": f"{name}{labels_text(labels)}", "values": values}


def expr_test(
    expr: str, eval_time: str, samples: Iterable[tuple[Mapping[str, str], float]] = ()
) -> dict[str, Any]:
    """One ``promql_expr_test``: ``samples`` are (labels, exact value); none means empty."""
    return {
        "expr": expr,
        "eval_time": eval_time,
        "exp_samples": [
            {"labels": labels_text(labels), "value": value} for labels, value in samples
        ],
    }


@dataclass
class Promtool:
    """``promtool`` run in ``workdir`` (files it needs are written there)."""

    workdir: Path
    binary: str = field(default_factory=lambda: require_binary("promtool"))

    def run(self, *args: str) -> PromtoolResult:
        done = subprocess.run(
            [self.binary, *args],
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=PROMTOOL_TIMEOUT_S,
            check=False,
        )
        return PromtoolResult(done.returncode == 0, done.returncode, done.stdout + done.stderr)

    def test_rules(
        self,
        *,
        input_series: Sequence[Mapping[str, str]],
        promql_tests: Sequence[Mapping[str, Any]],
        interval: str = "1m",
        rule_groups: Sequence[Mapping[str, Any]] = (),
        name: str = "canary",
    ) -> PromtoolResult:
        """One promtool unit test: the series sampled every ``interval``, then the queries.

        ``rule_groups`` (recording/alerting rule groups) are written to a rules file the test
        loads; without them the test only evaluates ``promql_tests``.
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        rule_files: list[str] = []
        if rule_groups:
            rules = self.workdir / f"{name}.rules.yml"
            rules.write_text(yaml.safe_dump({"groups": list(rule_groups)}, sort_keys=False))
            rule_files.append(rules.name)
        test_file = self.workdir / f"{name}.test.yml"
        test = {
            "rule_files": rule_files,
            "evaluation_interval": interval,
            "tests": [
                {
                    "interval": interval,
                    "input_series": [dict(s) for s in input_series],
                    "promql_expr_test": [dict(t) for t in promql_tests],
                }
            ],
        }
        test_file.write_text(yaml.safe_dump(test, sort_keys=False))
        return self.run("test", "rules", test_file.name)

    def create_blocks(self, openmetrics: str, data_dir: Path) -> PromtoolResult:
        """Backfill ``openmetrics`` (text ending in ``# EOF``) into TSDB blocks in ``data_dir``."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        source = self.workdir / "backfill.om.txt"
        source.write_text(openmetrics)
        result = self.run("tsdb", "create-blocks-from", "openmetrics", str(source), str(data_dir))
        if not result.ok:
            raise RuntimeError(f"promtool create-blocks-from failed:\n{result.output}")
        return result


def _number(value: float) -> str:
    return repr(float(value))


def _timestamp(seconds: float) -> str:
    return f"{seconds:.3f}"


class OpenMetrics:
    """OpenMetrics text with explicit timestamps (seconds), one family after another.

    ``counter("istio_requests_total", labels, [(T0, 0), (T0 + 15, 150)])`` and
    ``histogram("istio_request_duration_milliseconds", labels, [(T0, {}), (T0 + 60, {80: 50,
    200: 50})])``: histogram points give, per timestamp, the cumulative count of observations at
    each latency; buckets (Istio's boundaries), ``_sum`` and ``_count`` are derived from them.
    """

    def __init__(self) -> None:
        self._families: dict[str, tuple[str, list[str]]] = {}

    def _lines(self, family: str, kind: str) -> list[str]:
        known = self._families.setdefault(family, (kind, []))
        if known[0] != kind:
            raise ValueError(f"{family} is a {known[0]}, not a {kind}")
        return known[1]

    def counter(
        self, name: str, labels: Mapping[str, str], points: Iterable[tuple[float, float]]
    ) -> OpenMetrics:
        family = name.removesuffix("_total")
        lines = self._lines(family, "counter")
        lines.extend(
            f"{family}_total{labels_text(labels)} {_number(v)} {_timestamp(t)}" for t, v in points
        )
        return self

    def gauge(
        self, name: str, labels: Mapping[str, str], points: Iterable[tuple[float, float]]
    ) -> OpenMetrics:
        lines = self._lines(name, "gauge")
        lines.extend(f"{name}{labels_text(labels)} {_number(v)} {_timestamp(t)}" for t, v in points)
        return self

    def histogram(
        self,
        name: str,
        labels: Mapping[str, str],
        points: Iterable[tuple[float, Mapping[float, float]]],
        buckets: Sequence[float] = DURATION_BUCKETS_MS,
    ) -> OpenMetrics:
        lines = self._lines(name, "histogram")
        for t, observed in points:
            ts = _timestamp(t)
            for le in (*buckets, float("inf")):
                count = sum(n for value, n in observed.items() if value <= le)
                bound = "+Inf" if le == float("inf") else f"{le:g}"
                lines.append(
                    f"{name}_bucket{labels_text({**labels, 'le': bound})} {_number(count)} {ts}"
                )
            total = sum(observed.values())
            latency_sum = sum(value * n for value, n in observed.items())
            lines.append(f"{name}_sum{labels_text(labels)} {_number(latency_sum)} {ts}")
            lines.append(f"{name}_count{labels_text(labels)} {_number(total)} {ts}")
        return self

    def text(self) -> str:
        out: list[str] = []
        for family, (kind, lines) in self._families.items():
            out.append(f"# TYPE {family} {kind}")
            out.extend(lines)
        out.append("# EOF")
        return "\n".join(out) + "\n"
