"""W3C Trace Context (https://www.w3.org/TR/trace-context/): the ``traceparent`` codec.

``traceparent: 00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>``. Parsing follows the
spec's rules: lower-case hex only, version ``ff`` is invalid, all-zero ids are invalid, version
``00`` is exactly 55 characters, and a future version may append fields after a ``-`` that a
version-00 parser ignores. Input is length-checked before anything else (it arrives from peers).
Ids come from `os.urandom`: unpredictable, as the spec recommends for privacy.
"""

from __future__ import annotations

import contextvars
import os
import re
from typing import Any

import attrs

from obs._errors import TraceContextError

__all__ = [
    "TRACEPARENT",
    "TRACESTATE",
    "TraceContext",
    "current_trace_context",
]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# The spec caps tracestate at 32 list members; 512 characters is the size it says must be kept.
MAX_TRACESTATE_LEN = 512
# Future versions may add fields; nothing legitimate needs more than this.
MAX_TRACEPARENT_LEN = 256
_HEX = re.compile(r"[0-9a-f]+\Z")
SAMPLED = 0x01


def _hex_field(field: str, value: object, length: int) -> str:
    if not isinstance(value, str) or len(value) != length or not _HEX.match(value):
        raise TraceContextError(field, f"expected {length} lower-case hex characters, got {value!r}")
    if value == "0" * length:
        raise TraceContextError(field, "an all-zero id is invalid")
    return value


def _check_trace_id(_inst: object, _attr: object, value: Any) -> None:
    _hex_field("trace_id", value, 32)


def _check_span_id(_inst: object, _attr: object, value: Any) -> None:
    _hex_field("span_id", value, 16)


def _check_flags(_inst: object, _attr: object, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFF:
        raise TraceContextError("flags", f"expected an integer 0..255, got {value!r}")


def _check_tracestate(_inst: object, _attr: object, value: Any) -> None:
    if not isinstance(value, str) or len(value) > MAX_TRACESTATE_LEN or not value.isprintable():
        raise TraceContextError(
            "tracestate", f"expected printable text of at most {MAX_TRACESTATE_LEN} characters"
        )


@attrs.frozen
class TraceContext:
    """Where a request is in a trace: which trace, which span is the parent, whether it is sampled."""

    trace_id: str = attrs.field(validator=_check_trace_id)
    span_id: str = attrs.field(validator=_check_span_id)
    flags: int = attrs.field(default=SAMPLED, validator=_check_flags)
    tracestate: str = attrs.field(default="", validator=_check_tracestate)

    @property
    def sampled(self) -> bool:
        return bool(self.flags & SAMPLED)

    @classmethod
    def new(cls, *, sampled: bool = True) -> TraceContext:
        """A fresh trace with a random 128-bit trace id and 64-bit span id."""
        return cls(_random_hex(16), _random_hex(8), SAMPLED if sampled else 0)

    def child(self) -> TraceContext:
        """The context of a new span inside this one: same trace, new span id."""
        return attrs.evolve(self, span_id=_random_hex(8))

    def to_traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags:02x}"

    @classmethod
    def from_traceparent(cls, header: str, tracestate: str = "") -> TraceContext:
        """Parse a ``traceparent`` header value; raise `TraceContextError` naming what is wrong."""
        if not isinstance(header, str):
            raise TraceContextError(TRACEPARENT, f"expected a string, got {type(header).__name__}")
        if len(header) > MAX_TRACEPARENT_LEN:
            raise TraceContextError(TRACEPARENT, f"longer than {MAX_TRACEPARENT_LEN} characters")
        if len(header) < 55:
            raise TraceContextError(TRACEPARENT, f"expected at least 55 characters, got {len(header)}")
        version = header[:2]
        if not _HEX.match(version):
            raise TraceContextError("version", f"expected 2 lower-case hex characters, got {version!r}")
        if version == "ff":
            raise TraceContextError("version", "version 'ff' is forbidden by the specification")
        if version == "00" and len(header) != 55:
            raise TraceContextError(
                TRACEPARENT, f"version 00 must be exactly 55 characters, got {len(header)}"
            )
        if len(header) > 55 and header[55] != "-":
            raise TraceContextError(TRACEPARENT, "fields of a future version must follow a '-'")
        if header[2] != "-" or header[35] != "-" or header[52] != "-":
            raise TraceContextError(TRACEPARENT, "expected '-' separators: version-traceid-parentid-flags")
        trace_id = _hex_field("trace_id", header[3:35], 32)
        span_id = _hex_field("span_id", header[36:52], 16)
        flags_text = header[53:55]
        if not _HEX.match(flags_text):
            raise TraceContextError("flags", f"expected 2 lower-case hex characters, got {flags_text!r}")
        # Unknown flag bits of version 00 are kept as sent; only 'sampled' has a meaning today.
        return cls(trace_id, span_id, int(flags_text, 16), tracestate)


def _random_hex(nbytes: int) -> str:
    while True:
        value = os.urandom(nbytes).hex()
        if value != "0" * (2 * nbytes):  # all-zero is invalid; astronomically rare, still excluded
            return value


_current: contextvars.ContextVar[TraceContext | None] = contextvars.ContextVar(
    "obs_trace_context", default=None
)


def current_trace_context() -> TraceContext | None:
    """The context of the innermost active `obs.span` in this task, or None outside any span."""
    return _current.get()
