"""Structured JSON logging on the standard `logging` module.

`get_logger` returns a `BoundLogger`: a thin wrapper over a stdlib logger that carries context
(node id, network id, component...) and emits one event name plus fields per call. The fields
travel on the `LogRecord` (attribute ``obs_fields``), already redacted, so any handler sees them
and no handler can see a secret. `JsonFormatter` renders a record as one JSON object per line;
`configure_logging` installs it on the root logger. Inside an `obs.span`, the current trace and
span ids are added so log lines of one request can be joined across nodes.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import sys
from collections.abc import Mapping
from typing import IO, Any

from obs._redact import redact
from obs._tracecontext import current_trace_context

__all__ = ["BoundLogger", "JsonFormatter", "configure_logging", "get_logger"]

FIELDS_ATTR = "obs_fields"
# Keys of the JSON line that a field may not overwrite; a clashing field is renamed with a '_'.
_BASE_KEYS = frozenset({"ts", "level", "logger", "event", "exc_info", "trace_id", "span_id"})


class BoundLogger:
    """A stdlib logger plus bound context; ``bind`` returns a new one, the original is unchanged."""

    __slots__ = ("_context", "_logger")

    def __init__(self, logger: logging.Logger, context: Mapping[str, Any]) -> None:
        self._logger = logger
        self._context = dict(context)

    @property
    def name(self) -> str:
        return self._logger.name

    @property
    def context(self) -> dict[str, Any]:
        """The bound fields (a copy, unredacted: it is the caller's own data)."""
        return dict(self._context)

    @property
    def stdlib(self) -> logging.Logger:
        """The underlying `logging.Logger` (for levels, handlers, propagation)."""
        return self._logger

    def bind(self, **fields: Any) -> BoundLogger:
        return BoundLogger(self._logger, {**self._context, **fields})

    def debug(self, event: str, /, **fields: Any) -> None:
        self._emit(logging.DEBUG, event, fields)

    def info(self, event: str, /, **fields: Any) -> None:
        self._emit(logging.INFO, event, fields)

    def warning(self, event: str, /, **fields: Any) -> None:
        self._emit(logging.WARNING, event, fields)

    def error(self, event: str, /, **fields: Any) -> None:
        self._emit(logging.ERROR, event, fields)

    def critical(self, event: str, /, **fields: Any) -> None:
        self._emit(logging.CRITICAL, event, fields)

    def exception(self, event: str, /, **fields: Any) -> None:
        """An ERROR event with the exception being handled attached as ``exc_info``."""
        self._emit(logging.ERROR, event, fields, exc_info=True)

    def log(self, level: int, event: str, /, **fields: Any) -> None:
        """An event at a numeric stdlib ``level``."""
        self._emit(level, event, fields)

    def _emit(self, level: int, event: str, fields: Mapping[str, Any], *, exc_info: bool = False) -> None:
        if not self._logger.isEnabledFor(level):
            return
        merged = redact({**self._context, **fields})
        # stacklevel 3: the record's origin is whoever called info()/log(), not this wrapper.
        self._logger.log(level, "%s", event, exc_info=exc_info, extra={FIELDS_ATTR: merged}, stacklevel=3)


def get_logger(name: str, **context: Any) -> BoundLogger:
    """A structured logger named ``name`` (dotted, e.g. ``"meshnet.tls"``) with bound ``context``."""
    return BoundLogger(logging.getLogger(name), context)


def _json_default(value: object) -> object:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, _dt.datetime | _dt.date):
        return value.isoformat()
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event, trace ids, then the fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _dt.datetime.fromtimestamp(record.created, _dt.UTC).isoformat(timespec="microseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        ctx = current_trace_context()
        if ctx is not None:
            line["trace_id"] = ctx.trace_id
            line["span_id"] = ctx.span_id
        fields = getattr(record, FIELDS_ATTR, None)
        if isinstance(fields, Mapping):
            # Redact again: records built by hand (logger.info(..., extra=...)) skip BoundLogger.
            for key, value in redact(fields).items():
                out_key = str(key)
                while out_key in line or out_key in _BASE_KEYS:
                    out_key += "_"
                line[out_key] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        # json.dumps escapes newlines, so a traceback stays on its one line.
        return json.dumps(line, default=_json_default, ensure_ascii=False)


_installed: dict[str, logging.Handler] = {}


def configure_logging(level: int | str = logging.INFO, stream: IO[str] | None = None) -> logging.Handler:
    """Install the JSON formatter on the root logger, writing to ``stream`` (stderr by default).

    Calling it again replaces the handler it installed before (and only that one), so tests and
    apps can reconfigure without stacking duplicate output.
    """
    from obs._errors import ObsError

    if isinstance(level, str):
        resolved = logging.getLevelNamesMapping().get(level.upper())
        if resolved is None:
            raise ObsError(
                "level", f"{level!r} is not a logging level; use DEBUG, INFO, WARNING, ERROR or CRITICAL"
            )
        level = resolved
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    previous = _installed.pop("root", None)
    if previous is not None:
        root.removeHandler(previous)
    root.addHandler(handler)
    root.setLevel(level)
    _installed["root"] = handler
    return handler
