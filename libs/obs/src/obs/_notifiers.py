"""Where alert events go: notifier plug-ins, and the anyio loop that evaluates and delivers.

A notifier is anything with ``async def notify(event) -> None``. Shipped: `LogNotifier` (a JSON
log line), `WebhookNotifier` (an HTTP POST of the event as JSON, bounded by a timeout) and
`CallableNotifier` (your function, sync or async). `run_alert_loop` evaluates every
``interval`` seconds and hands each event to every notifier concurrently; a notifier that fails
is logged and does not stop the others or the loop.
"""

from __future__ import annotations

import datetime
import inspect
import json
import logging
import math
import ssl
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import anyio
import anyio.abc

from obs._alerts import AlertEvaluator, AlertEvent, AlertState
from obs._errors import NotifierError, ObsError
from obs._logging import BoundLogger, get_logger

__all__ = [
    "PAYLOADS",
    "alertmanager_alerts",
    "CallableNotifier",
    "LogNotifier",
    "Notifier",
    "WebhookNotifier",
    "parse_status_line",
    "run_alert_loop",
]

PAYLOADS = ("obs", "alertmanager")
# A reply's status line and headers; we never read a body.
_MAX_REPLY_HEAD = 8192


@runtime_checkable
class Notifier(Protocol):
    """Delivers one alert event somewhere; raising means it was not delivered."""

    async def notify(self, event: AlertEvent) -> None: ...


class LogNotifier:
    """Writes each event as a structured log line (WARNING/ERROR when firing, INFO when resolved)."""

    def __init__(self, logger: BoundLogger | None = None) -> None:
        self.logger = logger if logger is not None else get_logger("obs.alerts")

    async def notify(self, event: AlertEvent) -> None:
        fields = event.to_dict()
        fields.pop("state")
        if event.state is AlertState.RESOLVED:
            self.logger.info("alert_resolved", **fields)
        elif event.severity == "critical":
            self.logger.error("alert_firing", **fields)
        else:
            self.logger.warning("alert_firing", **fields)


class CallableNotifier:
    """Calls ``fn(event)``; awaits the result when ``fn`` is a coroutine function."""

    def __init__(self, fn: Callable[[AlertEvent], Any]) -> None:
        if not callable(fn):
            raise NotifierError("fn", f"expected a callable taking an AlertEvent, got {fn!r}")
        self.fn = fn

    async def notify(self, event: AlertEvent) -> None:
        result = self.fn(event)
        if inspect.isawaitable(result):
            await result


class WebhookNotifier:
    """POSTs each event as JSON to an ``http://`` or ``https://`` URL.

    ``payload="obs"`` posts `AlertEvent.to_dict`; ``payload="alertmanager"`` posts the
    Alertmanager API v2 shape (a one-alert list; point ``url`` at ``.../api/v2/alerts``). The
    whole exchange (connect, TLS, send, read the status line) must finish within ``timeout``
    seconds; any status other than 2xx raises `NotifierError`.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        headers: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        payload: str = "obs",
    ) -> None:
        if payload not in PAYLOADS:
            raise NotifierError("payload", f"{payload!r} is not one of {', '.join(PAYLOADS)}")
        parsed = urllib.parse.urlsplit(url) if isinstance(url, str) else None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise NotifierError("url", f"expected an http:// or https:// URL with a host, got {url!r}")
        try:
            port = parsed.port
        except ValueError as exc:
            raise NotifierError("url", f"bad port in {url!r}: {exc}") from exc
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < math.inf:
            raise NotifierError("timeout", f"expected a positive number of seconds, got {timeout!r}")
        for key, value in (headers or {}).items():
            if any(c in f"{key}{value}" for c in "\r\n") or not key.strip():
                raise NotifierError("headers", f"header {key!r} has an empty name or a line break")
        self.url = url
        self.timeout = float(timeout)
        self._tls = parsed.scheme == "https"
        self._host = parsed.hostname
        self._port = port if port is not None else (443 if self._tls else 80)
        self._target = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
        self._headers = dict(headers or {})
        self._ssl_context = ssl_context
        self.payload = payload

    async def notify(self, event: AlertEvent) -> None:
        data = alertmanager_alerts([event]) if self.payload == "alertmanager" else event.to_dict()
        body = json.dumps(data).encode()
        host_header = self._host if ":" not in self._host else f"[{self._host}]"
        lines = [
            f"POST {self._target} HTTP/1.1",
            f"Host: {host_header}:{self._port}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            "Connection: close",
            "User-Agent: mycelium-obs",
            *(f"{k}: {v}" for k, v in self._headers.items()),
        ]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        status: int | None = None
        with anyio.move_on_after(self.timeout):
            status = await self._exchange(request)
        if status is None:
            raise NotifierError("timeout", f"{self.url} did not answer within {self.timeout} s")
        if not 200 <= status < 300:
            raise NotifierError("url", f"{self.url} answered HTTP {status}, expected 2xx")

    async def _exchange(self, request: bytes) -> int:
        stream: anyio.abc.ByteStream
        try:
            if self._tls:
                context = self._ssl_context or ssl.create_default_context()
                stream = await anyio.connect_tcp(
                    self._host, self._port, ssl_context=context, tls_standard_compatible=False
                )
            else:
                stream = await anyio.connect_tcp(self._host, self._port)
        except (OSError, anyio.BrokenResourceError) as exc:
            raise NotifierError("url", f"cannot connect to {self.url}: {exc}") from exc
        async with stream:
            try:
                await stream.send(request)
                reply = bytearray()
                while b"\r\n" not in reply:
                    if len(reply) > _MAX_REPLY_HEAD:
                        raise NotifierError("url", f"{self.url} sent an oversized status line")
                    reply += await stream.receive(4096)
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError) as exc:
                raise NotifierError("url", f"{self.url} closed the connection before answering") from exc
        status = parse_status_line(bytes(reply))
        if status is None:
            raise NotifierError("url", f"{self.url} did not answer in HTTP: {bytes(reply[:80])!r}")
        return status


def parse_status_line(reply: bytes) -> int | None:
    """The status code of an HTTP/1.x reply's first line, or None if it is not one. Never raises."""
    line = reply.split(b"\r\n", 1)[0]
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        return None
    code = parts[1]
    if len(code) != 3 or not all(48 <= c <= 57 for c in code):
        return None
    return int(code)


def _rfc3339(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat()


def alertmanager_alerts(events: Sequence[AlertEvent]) -> list[dict[str, Any]]:
    """Events in the body shape of Alertmanager's ``POST /api/v2/alerts``.

    Labels: ``alertname`` (the rule), ``severity`` and the series' labels; annotations carry
    the summary, value and condition. A firing alert has no ``endsAt`` (Alertmanager expires it
    after its ``resolve_timeout`` unless it is sent again: use ``run_alert_loop(resend_every=...)``);
    a resolved one ends at the time it resolved. Times are the evaluator's clock, so they must
    be Unix seconds.
    """
    out: list[dict[str, Any]] = []
    for e in events:
        alert: dict[str, Any] = {
            "labels": {**dict(e.labels), "alertname": e.rule, "severity": e.severity},
            "annotations": {
                "summary": e.summary or f"{e.metric} {e.comparison} {e.threshold:g}",
                "value": f"{e.value:g}",
                "condition": f"{e.metric} {e.comparison} {e.threshold:g}",
            },
            "startsAt": _rfc3339(e.active_since),
        }
        if e.state is AlertState.RESOLVED:
            alert["endsAt"] = _rfc3339(e.at)
        out.append(alert)
    return out


_log = get_logger("obs.alerts")


def _with_resends(
    evaluator: AlertEvaluator,
    events: list[AlertEvent],
    last_sent: dict[tuple[str, tuple[tuple[str, str], ...]], float],
    now: float,
    every: float,
) -> list[AlertEvent]:
    """``events`` plus still-firing alerts not sent for ``every`` seconds; updates ``last_sent``."""
    for e in events:
        if e.state is AlertState.FIRING:
            last_sent[(e.rule, e.labels)] = now
        else:
            last_sent.pop((e.rule, e.labels), None)
    out = list(events)
    for alert in evaluator.active():
        key = (alert.rule, alert.labels)
        if alert.state is AlertState.FIRING and key in last_sent and now - last_sent[key] >= every:
            last_sent[key] = now
            out.append(alert)
    return out


async def _deliver(notifier: Notifier, event: AlertEvent) -> None:
    try:
        await notifier.notify(event)
    except Exception as exc:  # one broken notifier must not silence the others
        _log.log(
            logging.ERROR,
            "alert_notifier_failed",
            notifier=type(notifier).__name__,
            rule=event.rule,
            state=event.state.value,
            error=str(exc),
        )


async def run_alert_loop(
    evaluator: AlertEvaluator,
    notifiers: Sequence[Notifier],
    *,
    interval: float = 15.0,
    clock: Callable[[], float] = time.time,
    iterations: int | None = None,
    resend_every: float | None = None,
) -> None:
    """Evaluate every ``interval`` seconds and deliver each event to every notifier.

    Runs until cancelled (put it in your node's task group), or for ``iterations`` rounds. With
    ``resend_every``, an alert that keeps firing is delivered again (state FIRING) that often,
    as Prometheus does for Alertmanager (its resend delay defaults to 1 minute).
    """
    if not isinstance(evaluator, AlertEvaluator):
        raise ObsError("evaluator", f"expected an AlertEvaluator, got {evaluator!r}")
    for n in notifiers:
        if not isinstance(n, Notifier):
            raise NotifierError("notifiers", f"{n!r} has no 'async def notify(event)'")
    if isinstance(interval, bool) or not isinstance(interval, int | float) or not 0 <= interval < math.inf:
        raise ObsError("interval", f"expected a finite number of seconds >= 0, got {interval!r}")
    if iterations is not None and (
        isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0
    ):
        raise ObsError("iterations", f"expected a non-negative integer or None, got {iterations!r}")
    if resend_every is not None and (
        isinstance(resend_every, bool)
        or not isinstance(resend_every, int | float)
        or not 0 < resend_every < math.inf
    ):
        raise ObsError("resend_every", f"expected a positive number of seconds or None, got {resend_every!r}")
    last_sent: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    done = 0
    while iterations is None or done < iterations:
        now = clock()
        events = evaluator.evaluate(now)
        if resend_every is not None:
            events = _with_resends(evaluator, events, last_sent, now, resend_every)
        if events and notifiers:
            async with anyio.create_task_group() as tg:
                for event in events:
                    for notifier in notifiers:
                        tg.start_soon(_deliver, notifier, event)
        done += 1
        if iterations is None or done < iterations:
            await anyio.sleep(interval)
