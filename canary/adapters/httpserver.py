"""The controller's HTTP endpoints: liveness, readiness and Prometheus metrics.

=============  ==============================================================================
``/healthz``   200 ``ok`` while the process is alive and, with an ``alive`` check, the tick
               loop is not wedged; else 503. Kubernetes' livenessProbe restarts the pod on 503.
``/readyz``    200 with a JSON body ``{"ready": true, "checks": {...}}`` when ``ready()`` says
               so (config loaded, Kubernetes and Prometheus reachable, role leader|standby);
               else 503 with the same shape and ``"ready": false``. The readinessProbe only
               gates the Service: a standby is ready (it serves ``/metrics``).
``/metrics``   The registry in the Prometheus text format (:mod:`canary.shell.telemetry`).
anything else  404.
=============  ==============================================================================

The server runs in a daemon thread (:class:`http.server.ThreadingHTTPServer`, one thread per
request), so a slow scraper never delays a tick and a tick never delays a probe. Requests are
not logged: probes every few seconds would drown the controller's own log lines.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import urlsplit

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from canary.core import events as ev

log = structlog.get_logger("canary")

#: In a pod the kubelet and Prometheus reach us on the pod IP: listen on every interface.
DEFAULT_HOST: Final = "0.0.0.0"
#: controller-runtime's metrics port, which cluster scrape configs often expect; not 9090,
#: which is Prometheus's own.
DEFAULT_PORT: Final = 8080
#: A client that sends nothing for this long loses its connection (and its thread); probes
#: answer in milliseconds and kubelet's default probe timeout is 1 s.
REQUEST_TIMEOUT_SECONDS: Final = 10.0
#: How often the serving loop looks for a stop request: shutdown (SIGTERM, tests) waits up to
#: this long; ten wake-ups a second cost nothing measurable.
POLL_INTERVAL_SECONDS: Final = 0.1
#: How long :meth:`HealthServer.stop` waits for the serving thread to end.
STOP_TIMEOUT_SECONDS: Final = 5.0

#: ``ready()``: whether the controller is ready, and the state of each check by name
#: (e.g. ``{"config": "loaded", "kubernetes": "ok", "prometheus": "unreachable: ...",
#: "role": "leader"}``).
ReadyCheck = Callable[[], tuple[bool, Mapping[str, str]]]
#: ``alive()``: False when the process should be restarted (e.g. the tick loop is wedged).
AliveCheck = Callable[[], bool]

_TEXT: Final = "text/plain; charset=utf-8"
_JSON: Final = "application/json"


def _current_error() -> str:
    error = sys.exc_info()[1]
    return repr(error) if error is not None else ""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # the handler reaches the endpoints' callbacks through its server
    owner: HealthServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A request that broke (a client that hung up, mostly): logged, never on stderr."""
        log.debug(ev.HTTP_REQUEST_FAILED, client=str(client_address), error=_current_error())


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = REQUEST_TIMEOUT_SECONDS
    server_version = "canary"
    sys_version = ""

    def do_GET(self) -> None:
        self._respond(head=False)

    def do_HEAD(self) -> None:
        self._respond(head=True)

    def _respond(self, *, head: bool) -> None:
        path = urlsplit(self.path).path
        owner = self.server.owner
        if path == "/healthz":
            status, ctype, body = owner.healthz()
        elif path == "/readyz":
            status, ctype, body = owner.readyz()
        elif path == "/metrics":
            status, ctype, body = owner.metrics()
        else:
            status, ctype, body = HTTPStatus.NOT_FOUND, _TEXT, b"not found\n"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """No access log (see the module docstring)."""


class HealthServer:
    """``/healthz``, ``/readyz`` and ``/metrics`` on ``host:port`` (port 0: a free port)."""

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        ready: ReadyCheck,
        alive: AliveCheck | None = None,
    ) -> None:
        self.host = host
        self._port = port
        self.registry = registry
        self._ready = ready
        self._alive = alive
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port listened on once started (the one the OS chose for port 0)."""
        if self._server is not None:
            return int(self._server.server_address[1])
        return self._port

    def start(self) -> None:
        """Bind and serve in a daemon thread; raises OSError if the address is taken."""
        if self._server is not None:
            return
        cls = _Server6 if ":" in self.host else _Server
        server = cls((self.host, self._port), _Handler)
        server.owner = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            args=(POLL_INTERVAL_SECONDS,),
            name="canary-health",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice or before start."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(STOP_TIMEOUT_SECONDS)

    def __enter__(self) -> HealthServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- endpoints (status, content type, body) ------------------------------------------------

    def healthz(self) -> tuple[HTTPStatus, str, bytes]:
        try:
            alive = self._alive() if self._alive is not None else True
        except Exception as exc:  # a broken check says "not alive", and why
            log.error(ev.HTTP_PROBE_FAILED, probe="healthz", error=repr(exc), exc_info=True)
            return HTTPStatus.SERVICE_UNAVAILABLE, _TEXT, f"error: {exc}\n".encode()
        if alive:
            return HTTPStatus.OK, _TEXT, b"ok\n"
        return HTTPStatus.SERVICE_UNAVAILABLE, _TEXT, b"not alive: the tick loop is stuck\n"

    def readyz(self) -> tuple[HTTPStatus, str, bytes]:
        try:
            ready, checks = self._ready()
            doc: dict[str, Any] = {"ready": bool(ready), "checks": dict(checks)}
        except Exception as exc:  # a broken check is never "ready"
            log.error(ev.HTTP_PROBE_FAILED, probe="readyz", error=repr(exc), exc_info=True)
            ready, doc = False, {"ready": False, "checks": {"readiness": f"error: {exc}"}}
        status = HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE
        return status, _JSON, (json.dumps(doc, sort_keys=True, default=str) + "\n").encode()

    def metrics(self) -> tuple[HTTPStatus, str, bytes]:
        try:
            body = generate_latest(self.registry)
        except Exception as exc:  # a collector's bug: say so to the scraper, keep serving
            log.error(ev.HTTP_PROBE_FAILED, probe="metrics", error=repr(exc), exc_info=True)
            return HTTPStatus.INTERNAL_SERVER_ERROR, _TEXT, f"error: {exc}\n".encode()
        return HTTPStatus.OK, CONTENT_TYPE_LATEST, body
