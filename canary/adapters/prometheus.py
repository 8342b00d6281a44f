"""The metrics port over a real Prometheus, with prometheus-api-client.

:class:`PrometheusSource` answers many rollouts' checks at once: it asks
:mod:`canary.core.queries` what to measure (batched by metric type, reporter, quantile and window),
runs each query once at an explicit evaluation time, and reads every workload's number out of
the grouped result. It decides nothing: missing data comes back as ``None`` (INCONCLUSIVE in
:mod:`canary.core.analysis`), failures as errors (ERROR), never as a pass.

Outcomes, translated at this boundary:

* empty result, NaN, ±Inf → no data (``value=None``);
* several series where one is expected (a custom query) → an error naming their labels,
  marked ``misconfigured``;
* HTTP 4xx (a bad query) → an error naming the metric, marked ``misconfigured``;
* timeout, connection refused, HTTP 5xx → a transient error (:class:`UnavailableError`);
  an unreachable Prometheus says why: connection refused by host:port, cannot resolve the
  host, or no answer within the timeout (and retries) configured here.

Our own timeout and retry budget applies per query (urllib3's default retries, which
prometheus-api-client would otherwise use, could stall a tick for minutes). Credentials (bearer
token, basic auth) are read from files or the environment on every batch, so a rotated token
is picked up; they are never logged or put in an error message.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from canary.adapters.network import Failure, failure
from canary.core import queries
from canary.core.durations import format_duration
from canary.core.errors import CanaryError, ConfigError, UnavailableError
from canary.core.model import MetricsSample, MetricValue
from canary.core.plan import MetricType
from canary.core.ports import CheckRequest

#: A healthy Prometheus answers these queries in milliseconds; 5 s means it is in trouble,
#: and a tick must not wait longer than interval allows.
DEFAULT_TIMEOUT = timedelta(seconds=5)
#: One retry rides out a dropped connection; more would stall every rollout's tick.
DEFAULT_RETRIES = 1
#: Pause before the retry (urllib3 doubles it per retry).
RETRY_BACKOFF_SECONDS = 0.2
#: Status codes worth one more try: the server or a proxy in front of it is busy.
RETRY_STATUSES = (502, 503, 504)
#: The counter every Istio sidecar exports; none at all means Istio is not being scraped.
ISTIO_REQUESTS = "istio_requests_total"


class QueryError(ConfigError):
    """Prometheus rejected the query (HTTP 4xx): the plan's query is wrong, not the network."""


@dataclass(frozen=True)
class PrometheusConfig:
    """How to reach Prometheus (controller config; docs/design.md §5 --prometheus-url)."""

    url: str
    timeout: timedelta = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    bearer_token_file: str = ""
    bearer_token_env: str = ""  # name of an environment variable holding the token
    username: str = ""
    password_file: str = ""
    password_env: str = ""
    ca_file: str = ""  # a custom CA bundle for https

    def __repr__(self) -> str:  # credentials stay out of logs and tracebacks
        url = redact(self.url)
        return f"PrometheusConfig(url={url!r}, timeout={self.timeout}, retries={self.retries})"


def redact(url: str) -> str:
    """The URL without user:password (``http://user:pw@host`` → ``http://***@host``)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def _read_secret(path: str, env: str, what: str) -> str:
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the Prometheus {what} file {path}: {exc}") from None
    if env:
        value = os.environ.get(env, "")
        if not value:
            raise ConfigError(f"the Prometheus {what} variable {env} is empty or unset")
        return value
    return ""


def _number(raw: Any) -> float | None:
    """A sample value as Prometheus sends it ("0.01", "NaN", "+Inf") → float, or None if it is
    not a usable number."""
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


_STATUS = re.compile(r"HTTP Status Code (\d{3})")


class PrometheusSource:
    """MetricsSource over Prometheus's HTTP API."""

    def __init__(self, config: PrometheusConfig) -> None:
        self.config = config
        session = requests.Session()
        if config.ca_file:
            session.verify = config.ca_file
        retry = Retry(
            total=config.retries,
            connect=config.retries,
            read=config.retries,
            status=config.retries,
            backoff_factor=RETRY_BACKOFF_SECONDS,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"GET", "POST"}),
            raise_on_status=False,
        )
        self._client = PrometheusConnect(
            url=config.url.rstrip("/"),
            retry=retry,
            session=session,
            # requests takes float seconds; the client's annotation says int
            timeout=cast(int, config.timeout.total_seconds()),
            disable_ssl=False,
        )
        #: queries sent, for the batching tests and /metrics
        self.queries_sent = 0
        #: set while answering one batch once Prometheus proved unreachable
        self._down: UnavailableError | None = None

    # -- one query ---------------------------------------------------------------------------

    def _authorise(self) -> None:
        c = self.config
        token = _read_secret(c.bearer_token_file, c.bearer_token_env, "bearer token")
        self._client.headers = {"Authorization": f"Bearer {token}"} if token else None
        password = _read_secret(c.password_file, c.password_env, "password")
        self._client.auth = (c.username, password) if c.username else None

    def query(self, promql: str, at: datetime) -> list[dict[str, Any]]:
        """Run an instant query evaluated at ``at``; the raw result vector.

        Raises :class:`QueryError` for a query Prometheus rejects, :class:`UnavailableError`
        for anything transient.
        """
        self.queries_sent += 1
        try:
            result = self._client.custom_query(promql, params={"time": f"{at.timestamp():.3f}"})
        except PrometheusApiClientException as exc:
            match = _STATUS.search(str(exc))
            status = int(match.group(1)) if match else 0
            detail = _error_text(str(exc))
            where = redact(self.config.url)
            # Wrong credentials or URL are the controller's configuration, not the plan's: every
            # check is an ERROR (errorLimit → onError), with a message that says what to fix.
            if status in (401, 403):
                raise UnavailableError(
                    f"Prometheus at {where} refused our credentials (HTTP {status}): check the "
                    "bearer token or basic auth settings"
                ) from None
            if status == 404:
                raise UnavailableError(
                    f"no Prometheus query API at {where} (HTTP 404): check --prometheus-url"
                ) from None
            if status in (400, 422):
                raise QueryError(
                    f"Prometheus rejected the query (HTTP {status}): {detail}"
                ) from None
            raise UnavailableError(
                f"Prometheus at {where} answered HTTP {status or '?'}: {detail}"
            ) from None
        except requests.RequestException as exc:
            raise UnavailableError(
                f"Prometheus at {redact(self.config.url)} unreachable: {self._why(exc)}"
            ) from None
        if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
            return [{"metric": {}, "value": result}]  # a scalar result
        if not isinstance(result, list):
            raise UnavailableError(f"unexpected answer from Prometheus: {str(result)[:200]}")
        return result

    def _why(self, exc: requests.RequestException) -> str:
        """What went wrong on the way to Prometheus, from the exception chain requests and
        urllib3 raise. Names the host and port only (never the URL's user info, nor the
        exception's text, which carries the query)."""
        parts = urlsplit(self.config.url)
        host = parts.hostname or "?"
        shown = f"[{host}]" if ":" in host else host
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:  # a port that is not a number (config validation rejects it)
            port = 0
        where = f"{shown}:{port}" if port else shown
        kind = failure(exc)
        if kind is Failure.DNS:
            return f"cannot resolve host {host}"
        if kind is Failure.REFUSED:
            return f"connection refused by {where} — is Prometheus running there?"
        if kind is Failure.TIMEOUT:
            seconds = format_duration(self.config.timeout)
            n = self.config.retries
            retries = "no retry" if n <= 0 else f"{n} retr{'y' if n == 1 else 'ies'}"
            return f"no answer from {where} within {seconds} ({retries})"
        return type(exc).__name__

    def ping(self, at: datetime) -> str:
        """ "" when Prometheus answers a trivial query with our credentials, else why not (the
        daemon's /readyz). One cheap query; never raises."""
        try:
            self._authorise()
            self.query("vector(1)", at)
        except CanaryError as exc:
            return str(exc)
        return ""

    # -- the port ----------------------------------------------------------------------------

    def sample(
        self, requests_: Sequence[CheckRequest], at: datetime
    ) -> Mapping[str, MetricsSample]:
        """Answer every check with one query per (metric type, reporter, quantile, window)."""
        try:
            self._authorise()
        except ConfigError as exc:
            return {r.plan: _failed(r, str(exc)) for r in requests_}
        # What to ask, and for which workloads.
        batches: dict[queries.BatchKey, set[tuple[str, str]]] = {}
        for r in requests_:
            batches.setdefault(queries.requests_key(r.metrics, r.window), set()).update(
                {(r.namespace, r.canary), (r.namespace, r.stable)}
            )
            for m in r.metrics:
                if m.type is MetricType.CUSTOM:
                    continue
                wanted = {(r.namespace, r.canary)}
                if m.relative:
                    wanted.add((r.namespace, r.stable))
                batches.setdefault(queries.metric_key(m, r.window), set()).update(wanted)
        answers: dict[queries.BatchKey, dict[tuple[str, str], float | None] | Exception] = {}
        down: UnavailableError | None = None
        for key, workloads in batches.items():
            if down is not None:  # one unreachable answer is enough: a tick costs one budget
                answers[key] = down
                continue
            try:
                answers[key] = _by_workload(self.query(queries.render_key(key, workloads), at))
            except QueryError as exc:
                answers[key] = exc
            except UnavailableError as exc:
                answers[key] = down = exc
        self._down = down
        silent = {  # requests batches without a single series: nobody asked has any traffic
            key
            for key, found in answers.items()
            if key.kind == queries.REQUESTS_KIND and isinstance(found, dict) and not found
        }
        no_data = self._no_istio_series(at) if silent else ""
        out = {r.plan: self._one(r, answers, at) for r in requests_}
        if no_data:
            for r in requests_:
                if queries.requests_key(r.metrics, r.window) in silent:
                    out[r.plan] = replace(out[r.plan], no_data=no_data)
        return out

    def _no_istio_series(self, at: datetime) -> str:
        """Why a requests query found no series for any workload, when the reason is that this
        Prometheus has no Istio request series at all (it does not scrape the sidecars, or it
        is not the mesh's Prometheus); "" when it has some or cannot tell. One query, asked
        only after an empty requests answer (an unknown workload's is empty too)."""
        try:
            found = self.query(f"count({ISTIO_REQUESTS})", at)
        except CanaryError:
            return ""
        if found:
            return ""
        return (
            f"Prometheus at {redact(self.config.url)} has no {ISTIO_REQUESTS} series at all: "
            "is it scraping the Istio sidecars (and is this the mesh's Prometheus)?"
        )

    def _one(
        self,
        r: CheckRequest,
        answers: Mapping[queries.BatchKey, dict[tuple[str, str], float | None] | Exception],
        at: datetime,
    ) -> MetricsSample:
        counts = answers[queries.requests_key(r.metrics, r.window)]
        if isinstance(counts, Exception):
            return _failed(r, str(counts))
        values: list[MetricValue] = []
        for m in r.metrics:
            query, stable_query = queries.render_tracks(
                m,
                namespace=r.namespace,
                stable=r.stable,
                canary=r.canary,
                window=r.window,
                service=r.service,
            )
            if m.type is MetricType.CUSTOM:
                values.append(self._custom(m.name, query, at))
                continue
            found = answers[queries.metric_key(m, r.window)]
            if isinstance(found, Exception):
                values.append(
                    MetricValue(
                        m.name,
                        query=query,
                        stable_query=stable_query,
                        error=str(found),
                        misconfigured=isinstance(found, QueryError),
                    )
                )
                continue
            values.append(
                MetricValue(
                    m.name,
                    query=query,
                    value=found.get((r.namespace, r.canary)),
                    stable_query=stable_query,
                    stable_value=found.get((r.namespace, r.stable)) if m.relative else None,
                )
            )
        return MetricsSample(
            rollout_id=r.rollout_id,
            step=r.step,
            window=r.window,
            canary_requests=counts.get((r.namespace, r.canary)),
            stable_requests=counts.get((r.namespace, r.stable)),
            metrics=tuple(values),
        )

    def _custom(self, name: str, query: str, at: datetime) -> MetricValue:
        """Custom queries run per rollout and must yield one value."""
        if self._down is not None:
            return MetricValue(name, query=query, error=str(self._down))
        try:
            result = self.query(query, at)
        except QueryError as exc:
            return MetricValue(name, query=query, error=f"{name}: {exc}", misconfigured=True)
        except UnavailableError as exc:
            self._down = exc
            return MetricValue(name, query=query, error=str(exc))
        if result and "value" not in result[0]:
            return MetricValue(
                name,
                query=query,
                error=f"{name}: the query returns a range vector; a check needs one instant "
                "value (drop the trailing [range] or wrap it, e.g. in sum(rate(...)))",
                misconfigured=True,
            )
        if len(result) > 1:
            labels = "; ".join(
                "{" + ",".join(f'{k}="{v}"' for k, v in sorted(s.get("metric", {}).items())) + "}"
                for s in result[:5]
            )
            return MetricValue(
                name,
                query=query,
                error=f"{name}: the query returned {len(result)} series, expected one: {labels} "
                "(aggregate it, e.g. sum(...))",
                misconfigured=True,
            )
        value = _number(result[0]["value"][1]) if result else None
        return MetricValue(name, query=query, value=value)


def _by_workload(result: list[dict[str, Any]]) -> dict[tuple[str, str], float | None]:
    out: dict[tuple[str, str], float | None] = {}
    for series in result:
        labels = series.get("metric", {})
        key = (
            str(labels.get("destination_workload_namespace", "")),
            str(labels.get("destination_workload", "")),
        )
        out[key] = _number(series.get("value", [None, None])[1])
    return out


def _failed(r: CheckRequest, error: str) -> MetricsSample:
    return MetricsSample(rollout_id=r.rollout_id, step=r.step, window=r.window, error=error)


def _error_text(message: str) -> str:
    """The useful part of Prometheus's error body (its JSON "error" field when present)."""
    found = re.search(r'"error"\s*:\s*"((?:[^"\\]|\\.)*)"', message)
    return found.group(1) if found else message[:300]
