"""Logging for `appgw-sse run`: one record per line on stderr, human-readable text or JSON.

A line about a gateway carries the gateway and its routes: the gateway worker sets them for the
whole pass (a context variable, so the SDK's and the Kubernetes client's lines inside the pass get
them too); `extra={"route": ...}` and kopf's per-object loggers name a single route.

JSON lines always have `time`, `level`, `logger` and `message`, plus `gateway` (the ARM id, as in
the metrics' `gateway` label), `routes` (["namespace/name", ...]), `route`, `object` (another
Kubernetes object kopf logs about) and `exception` when they apply. Nothing else from a record
is written, so no stray attribute (credentials, settings) can leak; bearer tokens and
Authorization values are masked in every message as a last line of defence.
"""

import contextlib
import contextvars
import datetime
import json
import logging
import re
import sys
from collections.abc import Iterator
from typing import Any

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")
CONTEXT_KEYS = ("gateway", "routes", "route", "object")
JSON_KEYS = ("time", "level", "logger", "message", *CONTEXT_KEYS, "exception")

_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("log_context")

# Libraries whose INFO is per-request detail: urllib3 warns on every pool overflow and retry,
# azure-core's HttpLoggingPolicy prints each request's headers at INFO.
_LIBRARY_FLOORS = {
    "urllib3": logging.ERROR,
    "kubernetes": logging.WARNING,
    "azure": logging.WARNING,
    "aiohttp": logging.WARNING,
    "asyncio": logging.WARNING,
}
# kopf logs every handler call at INFO: with a pod watch, a line per pod event.
_KOPF_CHATTER = re.compile(
    r"^(Handler|Activity) '.*' succeeded\.$|is processed: |^Initial authentication has"
)
_SECRETS = (
    re.compile(r"(?i)(bearer\s+)[\w\-.~+/]+=*"),
    re.compile(r"""(?i)(["']?authorization["']?\s*[:=]\s*["']?)(?!REDACTED)[^"',\s}]+"""),
)


@contextlib.contextmanager
def context(**fields: Any) -> Iterator[None]:
    """Attach fields (gateway=..., routes=[...]) to every line logged in this task meanwhile."""
    token = _context.set({**_context.get({}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def routes() -> str:
    """The routes of the gateway pass logging now, for a message that should name them."""
    return ", ".join(_context.get({}).get("routes") or ())


def redact(text: str) -> str:
    for pattern in _SECRETS:
        text = pattern.sub(r"\1<redacted>", text)
    return text


class _Enrich(logging.Filter):
    """Adds the context fields, demotes kopf's per-handler chatter to DEBUG (dropping it below
    the configured level)."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get({}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, dict) and not hasattr(record, "route"):
            name = f"{ref['namespace']}/{ref['name']}" if ref.get("namespace") else ref.get("name")
            if ref.get("kind") == "SseRoute":
                record.route = name
            else:
                record.object = f"{ref.get('kind')} {name}"
        if (
            record.levelno == logging.INFO
            and record.name.startswith("kopf.")
            and _KOPF_CHATTER.search(record.getMessage())
        ):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return self.level <= logging.DEBUG
        return True


def _time(record: logging.LogRecord) -> str:
    moment = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class TextFormatter(logging.Formatter):
    """`TIME LEVEL logger: [route] message`, the traceback on the following lines."""

    def format(self, record: logging.LogRecord) -> str:
        about = getattr(record, "route", None) or getattr(record, "object", None)
        prefix = f"[{about}] " if about and hasattr(record, "k8s_ref") else ""
        line = f"{_time(record)} {record.levelname:<7} {record.name}: {prefix}{record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line with the keys in JSON_KEYS (absent when they do not apply)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key in CONTEXT_KEYS:
            value = getattr(record, key, None)
            if value:
                entry[key] = list(value) if isinstance(value, list | tuple | set) else str(value)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours, so that a second setup() replaces it rather than doubling every line."""


def setup(fmt: str = "text", level: str = "info", stream: Any = None) -> None:
    """Route every logger (ours, kopf's, the libraries') to one handler on stderr."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")
    if level.lower() not in LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    threshold = logging.getLevelName(level.upper())
    handler = _StderrHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_Enrich(threshold))
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _StderrHandler)]
    root.addHandler(handler)
    root.setLevel(threshold)
    for name, floor in _LIBRARY_FLOORS.items():
        logging.getLogger(name).setLevel(max(floor, threshold))
    logging.captureWarnings(True)  # "coroutine ... was never awaited" and the like, as lines
