"""What went wrong on the way to a server, read once for every adapter: the exception chains
that requests, urllib3 and the kubernetes client raise end in a socket error that says whether
the name did not resolve, the connection was refused, the answer did not come in time, the TLS
handshake failed or the connection was dropped."""

from __future__ import annotations

import enum
import socket
import ssl

import requests
import urllib3.exceptions as errors


class Failure(enum.Enum):
    DNS = "dns"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    TLS = "tls"
    DROPPED = "dropped"
    OTHER = "other"


def chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps: requests puts urllib3's MaxRetryError in ``args``, whose
    ``reason`` is the NewConnectionError/ReadTimeoutError raised ``from`` the socket error."""
    out: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo and len(out) < 20:
        e = todo.pop(0)
        if any(e is seen for seen in out):
            continue
        out.append(e)
        todo += [a for a in e.args if isinstance(a, BaseException)]
        reason = getattr(e, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)
        todo += [c for c in (e.__cause__, e.__context__) if c is not None]
    return out


def timed_out(e: BaseException) -> bool:
    """A read or connect timeout (a refused connect is a NewConnectionError, not a timeout)."""
    return isinstance(e, requests.Timeout | TimeoutError | errors.ReadTimeoutError) or (
        isinstance(e, errors.ConnectTimeoutError) and not isinstance(e, errors.NewConnectionError)
    )


def failure(exc: BaseException) -> Failure:
    """The kind of network failure ``exc`` is, most telling first."""
    found = chain(exc)
    if any(isinstance(e, socket.gaierror | errors.NameResolutionError) for e in found):
        return Failure.DNS
    if any(isinstance(e, ConnectionRefusedError) for e in found):
        return Failure.REFUSED
    if any(timed_out(e) for e in found):
        return Failure.TIMEOUT
    if any(isinstance(e, errors.SSLError | ssl.SSLError) for e in found):
        return Failure.TLS
    if any(isinstance(e, ConnectionResetError | errors.ProtocolError) for e in found):
        return Failure.DROPPED
    return Failure.OTHER
