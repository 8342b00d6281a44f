"""The value parsers of the controller settings: one per kind of value, each raising
:class:`Invalid` with what is wrong and how to fix it (:mod:`canary.config.load` turns that into
a problem naming where the value came from)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import timedelta

from canary.core.durations import format_duration, parse_duration
from canary.core.names import NAMESPACE, SUBDOMAIN, NameRule, name_problem
from canary.core.wording import got, show

#: The log formats a setting may name (the CLI also takes ``off``).
LOG_FORMATS = ("json", "console")


class Invalid(Exception):
    """A value is wrong. ``items``: (suffix of the key path, message, fix), one per problem."""

    def __init__(self, message: str = "", fix: str = "", suffix: str = "") -> None:
        super().__init__(message)
        self.items = [(suffix, message, fix)] if message else []


#: A parser gets the raw value and whether it came as text (a flag or a variable) rather
#: than as a typed YAML value; flags defined elsewhere may hand over values already parsed.
Parser = Callable[[object, bool], object]


def string(value: object, what: str) -> str:
    if not isinstance(value, str):
        fix = f'quote it: "{show(value)}"' if isinstance(value, int | float) else ""
        raise Invalid(f"expected {what}, got {got(value)}", fix)
    return value


def required_string(what: str) -> Parser:
    def parse(value: object, text: bool) -> str:
        out = string(value, what)
        if not out.strip():
            raise Invalid("empty", f"give {what}, or leave the setting out for its default")
        return out

    return parse


def optional_string(what: str) -> Parser:
    """A file path or name that may be empty (= none)."""

    def parse(value: object, text: bool) -> str:
        return string(value, what)

    return parse


def optional_name(what: str) -> Parser:
    """A value whose absence is None (kubeconfig, context): empty means the default."""

    def parse(value: object, text: bool) -> str | None:
        return string(value, what) or None

    return parse


def duration(value: object, text: bool) -> timedelta:
    if isinstance(value, timedelta):
        duration = value
    elif isinstance(value, str) or (isinstance(value, int | float) and not isinstance(value, bool)):
        try:
            duration = parse_duration(str(value))
        except ValueError as exc:
            raise Invalid(str(exc)) from None
    else:
        raise Invalid(f'expected a duration such as "15s", got {got(value)}')
    if duration <= timedelta(0):
        raise Invalid(f"{format_duration(duration)} is not positive", 'write e.g. "15s"')
    return duration


def port(value: object, text: bool) -> int:
    fix = "write a whole number from 1 to 65535"
    if text and isinstance(value, str):
        if not re.fullmatch(r"[0-9]+", value):
            raise Invalid(f"{show(value)} is not a port number", fix)
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        extra = ", without quotes" if isinstance(value, str) else ""
        raise Invalid(f"expected a port number, got {got(value)}", fix + extra)
    if not 1 <= value <= 65535:
        raise Invalid(f"{value} is not a port number", fix)
    return value


def positive_number(value: object, text: bool) -> float:
    """A number greater than 0 (requests per second)."""
    fix = "write a number greater than 0, e.g. 20"
    if text and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise Invalid(f"{show(value)} is not a number", fix) from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        extra = ", without quotes" if isinstance(value, str) else ""
        raise Invalid(f"expected a number, got {got(value)}", fix + extra)
    if not (0 < value < math.inf):  # NaN and inf too
        raise Invalid(f"{value} is not a number greater than 0", fix)
    return float(value)


def positive_int(value: object, text: bool) -> int:
    """A whole number of at least 1 (a burst of requests)."""
    fix = "write a whole number of at least 1, e.g. 40"
    if text and isinstance(value, str):
        if not re.fullmatch(r"[0-9]+", value):
            raise Invalid(f"{show(value)} is not a whole number", fix)
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        extra = ", without quotes" if isinstance(value, str) else ""
        raise Invalid(f"expected a whole number, got {got(value)}", fix + extra)
    if value < 1:
        raise Invalid(f"{value} is not a whole number of at least 1", fix)
    return value


def log_format(value: object, text: bool) -> str:
    out = string(value, "json or console")
    if out not in LOG_FORMATS:
        raise Invalid(f"{show(out)} is not a log format", "choose json or console")
    return out


_URL_EXAMPLE = '"http://prometheus.istio-system:9090"'


#: ``scheme://[userinfo@]host[:port][/path...]``: the parts of a URL this setting needs.
_URL = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<netloc>[^/?#]*)(?P<rest>[/?#].*)?",
    re.DOTALL,
)
_MANGLED_SCHEME = re.compile(r"(?P<scheme>https?):/?(?P<rest>[^/].*)", re.IGNORECASE | re.DOTALL)
_HOST_PORT = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^:\[\]]*)(?::(?P<port>[^:]*))?")


def url(value: object, text: bool) -> str:
    """An http(s) URL with a host, an optional port and no credentials."""
    given = string(value, "a URL")
    if given == "":
        return given  # unset; commands that need it say so (load_config require=)
    parts = _URL.fullmatch(given)
    if parts is None:
        mangled = _MANGLED_SCHEME.fullmatch(given)
        if mangled is not None:  # "http:/prom", "https:prom": the slashes went missing
            fixed = f"{mangled['scheme'].lower()}://{mangled['rest']}"
            raise Invalid(f"{show(given)} is not a URL", f'write "{fixed}"')
        if "://" not in given:
            raise Invalid(f"{show(given)} is not a URL", f'write "http://{given}"')
        raise Invalid(f"{show(given)} is not a URL", f"write e.g. {_URL_EXAMPLE}")
    scheme, netloc = parts["scheme"].lower(), parts["netloc"]
    if "@" in netloc:
        host = netloc.rsplit("@", 1)[1]
        shown = f"{scheme}://***@{host}"  # never echo the password
        raise Invalid(
            f"{show(shown)} carries credentials",
            "remove them from the URL: set prometheusAuth.username and name a file holding "
            "the password in prometheusAuth.passwordFile",
        )
    if scheme not in ("http", "https"):
        raise Invalid(
            f"{show(given)} has scheme {scheme}; Prometheus is reached over http or https",
            f"write e.g. {_URL_EXAMPLE}",
        )
    host_port = _HOST_PORT.fullmatch(netloc)
    if host_port is None:
        raise Invalid(
            f"{show(given)} is not a URL: bad host {show(netloc)}", f"write e.g. {_URL_EXAMPLE}"
        )
    if not host_port["host"]:
        raise Invalid(f"{show(given)} has no host", f"write e.g. {_URL_EXAMPLE}")
    port_text = host_port["port"]
    if port_text is not None and (not port_text.isdigit() or not 1 <= int(port_text) <= 65535):
        raise Invalid(
            f"{show(given)} is not a URL: port {show(port_text)} is not a number from 1 to 65535",
            f"write e.g. {_URL_EXAMPLE}",
        )
    return given


def _name_problem(text: str, rule: NameRule, suffix: str = "") -> Invalid | None:
    problem = name_problem(text, rule)
    return Invalid(*problem, suffix) if problem is not None else None


def kube_name(subdomain: bool) -> Parser:
    rule = SUBDOMAIN if subdomain else NAMESPACE

    def parse(value: object, text: bool) -> str:
        name = string(value, "a name")
        if not name.strip():
            raise Invalid("empty", "give a name, or leave the setting out for its default")
        problem = _name_problem(name, rule)
        if problem is not None:
            raise problem
        return name

    return parse


def namespaces(value: object, text: bool) -> tuple[str, ...]:
    """A YAML list; text is comma-separated; flags give a list of texts (``--namespace`` is
    repeatable and each may hold several). Duplicates are dropped, order is kept."""
    items: list[tuple[str, object]] = []  # (path suffix, value)
    if text and isinstance(value, str):
        items = [("", part) for part in value.split(",")]
    elif text and isinstance(value, list | tuple):
        items = [("", part) for given in value for part in str(given).split(",")]
    elif isinstance(value, list | tuple):
        items = [(f"[{i}]", item) for i, item in enumerate(value)]
    else:
        shown = f"[{value}]" if isinstance(value, str) else "[bookinfo, shop]"
        raise Invalid(
            f"expected a list of namespaces, got {got(value)}", f"write e.g. namespaces: {shown}"
        )
    invalid = Invalid()
    out: list[str] = []
    for suffix, item in items:
        if not isinstance(item, str):
            invalid.items.append((suffix, f"expected a namespace name, got {got(item)}", ""))
            continue
        name = item.strip() if text else item
        if text and not name:
            continue  # "a,,b" or a trailing comma
        problem = _name_problem(name, NAMESPACE, suffix)
        if problem is not None:
            invalid.items.extend(problem.items)
        elif name not in out:
            out.append(name)
    if invalid.items:
        raise invalid
    return tuple(out)
