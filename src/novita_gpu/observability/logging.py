"""Structured logs: one renderer for structlog and stdlib (uvicorn, httpx, ...), with secrets redacted.

Every line carries an ISO UTC timestamp, the level, the logger name and whatever was bound with
`structlog.contextvars` (request_id, correlation_id, instance_id, ...). Redaction runs last, just
before rendering, so it also covers formatted tracebacks and foreign (stdlib) records.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
import threading
from collections.abc import Mapping
from typing import Any, Literal, TextIO

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 6

# Normalised (lower case, "-" -> "_") key names whose values are never logged.
_SENSITIVE_KEYS = frozenset(
    {
        "authorization",
        "proxy_authorization",
        "api_key",
        "apikey",
        "x_api_key",
        "token",
        "secret",
        "password",
        "envs",
        "env",
        "value_of_env",
        "cookie",
        "set_cookie",
    }
)
_SENSITIVE_SUFFIXES = ("_token", "_secret", "_password", "_api_key", "_apikey")
# "Bearer <token>" and secret-looking query/form parameters ("?token=...") in any string.
_BEARER = r"(?P<bearer>(?i:bearer)\s+)[^\s\"',;]+"
_PARAM = r"(?P<param>\b(?i:token|access_token|api_key|apikey|key|secret|password|signature|sig)=)[^&\s\"',;]+"
_BUILTIN = f"{_BEARER}|{_PARAM}"
_MAX_DEPTH = 8

_secrets_lock = threading.Lock()
_secrets: set[str] = set()
_secret_values: tuple[str, ...] = ()  # a snapshot for lock-free reads
_mask_pattern = re.compile(_BUILTIN)

_handler_marker = "_novita_gpu_handler"
REQUEST_LOGGER = "novita_gpu.web.middleware"


def register_secret(value: str) -> None:
    """Mask `value` wherever it appears in a logged string (values shorter than 6 chars are ignored)."""
    global _mask_pattern, _secret_values
    if len(value) < MIN_SECRET_LENGTH:
        return
    with _secrets_lock:
        if value in _secrets:
            return
        _secrets.add(value)
        # Longest first, so a secret containing another one is masked whole.
        ordered = sorted(_secrets, key=len, reverse=True)
        _mask_pattern = re.compile("|".join([_BUILTIN, *(re.escape(s) for s in ordered)]))
        _secret_values = tuple(ordered)


def _mask_match(match: re.Match[str]) -> str:
    prefix = match.group("bearer") or match.group("param") or ""
    return prefix + REDACTED


def mask_string(text: str) -> str:
    """Mask registered secrets, `Bearer <token>` and `token=...`-style parameters in a string."""
    # Most logged strings hold none of them: substring tests (C speed) spare them the regex, which was
    # the largest cost of an access-log line. Every pattern needs "=", "bearer" or a registered secret.
    if "=" not in text and "bearer" not in text.lower() and not any(secret in text for secret in _secret_values):
        return text
    return _mask_pattern.sub(_mask_match, text)


def _is_sensitive_key(key: object) -> bool:
    return isinstance(key, str) and _is_sensitive_name(key)


@functools.lru_cache(maxsize=4096)  # log keys come from code: a small set, each normalised once
def _is_sensitive_name(key: str) -> bool:
    name = key.lower().replace("-", "_")
    return name in _SENSITIVE_KEYS or name.endswith(_SENSITIVE_SUFFIXES)


def _redact_value(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return mask_string(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth >= _MAX_DEPTH:
        return REDACTED
    if isinstance(value, Mapping):
        return {k: REDACTED if _is_sensitive_key(k) else _redact_value(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(v, depth + 1) for v in value]
    # Anything else is rendered as text anyway; mask its text so a repr cannot leak a secret.
    return mask_string(str(value))


def redact(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: drop values of sensitive keys and mask secrets in every string."""
    return {k: REDACTED if _is_sensitive_key(k) else _redact_value(v, 0) for k, v in event_dict.items()}


def _dumps(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        _add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
    ]


def configure_logging(
    level: str = "INFO",
    fmt: Literal["json", "console"] = "json",
    stream: TextIO = sys.stdout,
) -> None:
    """Route structlog and stdlib logging to `stream` through one renderer. Safe to call again."""
    numeric_level = logging.getLevelNamesMapping().get(level.upper())
    if numeric_level is None:
        raise ValueError(f"unknown log level {level!r}")
    renderer: Processor = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if fmt == "json"
        # Exceptions reach the renderer as text (format_exc_info runs first, so `redact` sees them).
        else structlog.dev.ConsoleRenderer(colors=stream.isatty(), exception_formatter=structlog.dev.plain_traceback)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    setattr(handler, _handler_marker, True)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _handler_marker, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric_level)

    # uvicorn's own handlers would print a second, unredacted copy; our middleware writes the
    # access log, so uvicorn's is kept for warnings only.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uv_logger = logging.getLogger(name)
        uv_logger.handlers.clear()
        uv_logger.propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # httpx logs every URL at INFO; webhook URLs are user input and may carry credentials.
    logging.getLogger("httpx").setLevel(max(numeric_level, logging.WARNING))
    # These log SQL parameters (instance env values) and raw HTTP traffic: never below WARNING.
    for chatty in ("aiosqlite", "asyncpg", "sqlalchemy.engine", "httpcore", "hpack"):
        logging.getLogger(chatty).setLevel(max(numeric_level, logging.WARNING))

    global _request_lines
    _request_lines = _JsonRequestLines(stream, numeric_level) if fmt == "json" else None

    # structlog renders its own events straight to the stream (the stdlib round trip costs about a
    # fifth of a request's CPU); stdlib records (uvicorn, alembic, ...) go through the same processors.
    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        logger_factory=_NamedWriteLoggerFactory(stream),
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        # Not cached: loggers created (or used) before this call must pick up the new set-up too.
        cache_logger_on_first_use=False,
    )


class _NamedWriteLogger(structlog.WriteLogger):
    """A WriteLogger that remembers the name it was asked for, for the `logger` field."""

    def __init__(self, stream: TextIO, name: str | None) -> None:
        super().__init__(stream)
        self.name = name


class _NamedWriteLoggerFactory:
    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def __call__(self, *args: Any) -> _NamedWriteLogger:
        return _NamedWriteLogger(self._stream, str(args[0]) if args else None)


def _add_logger_name(logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    record = event_dict.get("_record")
    name = record.name if record is not None else getattr(logger, "name", None)
    if name:
        event_dict.setdefault("logger", name)
    return event_dict


class _JsonRequestLines:
    """The access log's JSON lines, rendered directly: one per request, it is the most frequent line,
    and structlog's processor chain cost about 15% of a cached read's CPU. Each line holds what the
    chain would give it: the fields, bound context, level, logger, timestamp, secrets masked."""

    def __init__(self, stream: TextIO, level: int) -> None:
        self._level = level
        self._out = structlog.WriteLogger(stream)
        self._stamp = structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp")

    def write(self, fields: dict[str, Any], level: int) -> None:
        if level < self._level:
            return
        line: dict[str, Any] = {"event": "request", **fields}
        for key, value in structlog.contextvars.get_contextvars().items():
            line.setdefault(key, value)
        line["level"] = logging.getLevelName(level).lower()
        line["logger"] = REQUEST_LOGGER
        self._out.msg(_dumps(redact(None, "", self._stamp(None, "", line))))


_request_lines: _JsonRequestLines | None = None
_request_log = structlog.get_logger(REQUEST_LOGGER)


def log_request(fields: dict[str, Any], *, quiet: bool) -> None:
    """One access-log line (`quiet`: at DEBUG rather than INFO, for /health and /metrics)."""
    level = logging.DEBUG if quiet else logging.INFO
    if _request_lines is not None:
        _request_lines.write(fields, level)
    elif quiet:
        _request_log.debug("request", **fields)
    else:
        _request_log.info("request", **fields)
