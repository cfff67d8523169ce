"""Notifiers (log, webhook over real HTTP, callable) and the anyio alert loop with a fake clock."""

from __future__ import annotations

import http.server
import io
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from prometheus_client import CollectorRegistry

import obs

pytestmark = pytest.mark.anyio


class Receiver(http.server.ThreadingHTTPServer):
    """A real HTTP server recording what was POSTed; answers with ``status``."""

    status = 200
    received: list[tuple[str, dict[str, str], bytes]]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.server.received.append((self.path, dict(self.headers), self.rfile.read(length)))
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(("127.0.0.1", 0), _Handler)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def event() -> obs.AlertEvent:
    reg = CollectorRegistry()
    obs.Metrics("dram", registry=reg).gauge("lag", "Lag", unit="seconds", labels=("node",)).labels(
        node="n1"
    ).set(7)
    rule = obs.AlertRule("Lagging", "mycelium_dram_lag_seconds", ">", 1, severity="critical", summary="lag")
    (ev,) = obs.AlertEvaluator(reg, [rule]).evaluate(42.0)
    return ev


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = obs.configure_logging("INFO", out)
    yield out
    root.removeHandler(handler)
    root.setLevel(level)


async def test_webhook_posts_the_event_as_json(receiver: Receiver, event: obs.AlertEvent) -> None:
    port = receiver.server_address[1]
    hook = obs.WebhookNotifier(f"http://127.0.0.1:{port}/hooks/alert?src=obs", headers={"X-Team": "ops"})
    await hook.notify(event)
    ((path, headers, body),) = receiver.received
    assert path == "/hooks/alert?src=obs"
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Team"] == "ops"
    data = json.loads(body)
    assert data["rule"] == "Lagging"
    assert data["state"] == "firing"
    assert data["labels"] == {"node": "n1"}
    assert data["value"] == 7.0


async def test_webhook_non_2xx_is_an_error(receiver: Receiver, event: obs.AlertEvent) -> None:
    receiver.status = 500
    hook = obs.WebhookNotifier(f"http://127.0.0.1:{receiver.server_address[1]}/")
    with pytest.raises(obs.NotifierError, match="HTTP 500"):
        await hook.notify(event)


async def test_webhook_gives_up_after_its_timeout(event: obs.AlertEvent) -> None:
    async def never_answer(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await anyio.sleep(30)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 (anyio, not Django)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, never_answer)
        hook = obs.WebhookNotifier(f"http://127.0.0.1:{port}/", timeout=0.3)
        started = time.monotonic()
        with pytest.raises(obs.NotifierError) as info:
            await hook.notify(event)
        assert time.monotonic() - started < 5
        assert info.value.field == "timeout"
        tg.cancel_scope.cancel()


async def test_webhook_to_a_closed_port_is_an_error(event: obs.AlertEvent) -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 (anyio, not Django)
    await listener.aclose()
    with pytest.raises(obs.NotifierError, match="cannot connect"):
        await obs.WebhookNotifier(f"http://127.0.0.1:{port}/").notify(event)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"url": "ftp://host/x"}, "url"),
        ({"url": "http:///nohost"}, "url"),
        ({"url": "http://host:99999/"}, "url"),
        ({"url": "http://host/", "timeout": 0}, "timeout"),
        ({"url": "http://host/", "headers": {"X-A": "b\r\nInjected: 1"}}, "headers"),
    ],
)
async def test_bad_webhook_settings_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(obs.NotifierError) as info:
        obs.WebhookNotifier(**kwargs)
    assert info.value.field == field


async def test_callable_notifier_accepts_sync_and_async_functions(event: obs.AlertEvent) -> None:
    seen: list[str] = []

    async def async_fn(e: obs.AlertEvent) -> None:
        await anyio.lowlevel.checkpoint()
        seen.append("async:" + e.rule)

    await obs.CallableNotifier(lambda e: seen.append("sync:" + e.rule)).notify(event)
    await obs.CallableNotifier(async_fn).notify(event)
    assert seen == ["sync:Lagging", "async:Lagging"]
    with pytest.raises(obs.NotifierError):
        obs.CallableNotifier("not callable")  # type: ignore[arg-type]


async def test_log_notifier_writes_a_json_line(event: obs.AlertEvent, log_stream: io.StringIO) -> None:
    await obs.LogNotifier().notify(event)
    (line,) = [json.loads(x) for x in log_stream.getvalue().splitlines()]
    assert line["event"] == "alert_firing"
    assert line["level"] == "error"  # severity critical
    assert line["rule"] == "Lagging"
    assert line["labels"] == {"node": "n1"}


async def test_the_loop_evaluates_on_its_clock_and_delivers_to_every_notifier(
    log_stream: io.StringIO,
) -> None:
    reg = CollectorRegistry()
    lag = obs.Metrics("dram", registry=reg).gauge("lag", "Lag", unit="seconds")
    ev = obs.AlertEvaluator(
        reg, [obs.AlertRule("Lagging", "mycelium_dram_lag_seconds", ">", 1, for_seconds=10)]
    )
    times = iter([0.0, 5.0, 10.0, 20.0])
    values = iter([5.0, 5.0, 5.0, 0.0])
    received: list[tuple[str, float]] = []

    def clock() -> float:
        lag.set(next(values))  # the world changes between evaluations
        return next(times)

    def broken(_e: obs.AlertEvent) -> None:
        raise RuntimeError("pager down")

    notifiers = [
        obs.CallableNotifier(lambda e: received.append((e.state.value, e.at))),
        obs.CallableNotifier(broken),
    ]
    await obs.run_alert_loop(ev, notifiers, interval=0, clock=clock, iterations=4)
    assert received == [("firing", 10.0), ("resolved", 20.0)]
    failures = [json.loads(x) for x in log_stream.getvalue().splitlines()]
    assert [f["event"] for f in failures] == ["alert_notifier_failed", "alert_notifier_failed"]
    assert failures[0]["error"] == "pager down"


async def test_the_loop_runs_until_cancelled() -> None:
    reg = CollectorRegistry()
    obs.Metrics("dram", registry=reg).gauge("lag", "Lag", unit="seconds")
    ev = obs.AlertEvaluator(reg, [obs.AlertRule("Lagging", "mycelium_dram_lag_seconds", ">", 1)])
    calls = 0

    def clock() -> float:
        nonlocal calls
        calls += 1
        return float(calls)

    with anyio.move_on_after(0.5):
        await obs.run_alert_loop(ev, [], interval=0.01, clock=clock)
    assert calls >= 3


async def test_the_loop_validates_its_arguments() -> None:
    reg = CollectorRegistry()
    obs.Metrics("dram", registry=reg).gauge("lag", "Lag", unit="seconds")
    ev = obs.AlertEvaluator(reg, [])
    with pytest.raises(obs.ObsError) as info:
        await obs.run_alert_loop(ev, [], interval=-1)
    assert info.value.field == "interval"
    with pytest.raises(obs.NotifierError) as info2:
        await obs.run_alert_loop(ev, [object()], iterations=1)  # type: ignore[list-item]
    assert info2.value.field == "notifiers"


def test_alertmanager_payload_shape(event: obs.AlertEvent) -> None:
    (alert,) = obs.alertmanager_alerts([event])
    assert alert["labels"] == {"node": "n1", "alertname": "Lagging", "severity": "critical"}
    assert alert["annotations"]["summary"] == "lag"
    assert alert["annotations"]["value"] == "7"
    assert alert["annotations"]["condition"] == "mycelium_dram_lag_seconds > 1"
    assert alert["startsAt"] == "1970-01-01T00:00:42+00:00"
    assert "endsAt" not in alert


async def test_webhook_can_post_the_alertmanager_shape(receiver: Receiver, event: obs.AlertEvent) -> None:
    hook = obs.WebhookNotifier(
        f"http://127.0.0.1:{receiver.server_address[1]}/api/v2/alerts", payload="alertmanager"
    )
    await hook.notify(event)
    ((path, _, body),) = receiver.received
    assert path == "/api/v2/alerts"
    assert json.loads(body) == obs.alertmanager_alerts([event])
    with pytest.raises(obs.NotifierError) as info:
        obs.WebhookNotifier("http://x/", payload="pagerduty")
    assert info.value.field == "payload"


async def test_the_loop_resends_firing_alerts_when_asked() -> None:
    reg = CollectorRegistry()
    lag = obs.Metrics("dram", registry=reg).gauge("lag", "Lag", unit="seconds")
    ev = obs.AlertEvaluator(reg, [obs.AlertRule("Lagging", "mycelium_dram_lag_seconds", ">", 1)])
    lag.set(5)
    times = iter([0.0, 30.0, 60.0, 90.0, 120.0, 150.0])
    received: list[tuple[str, float]] = []

    def clock() -> float:
        t = next(times)
        if t == 150.0:
            lag.set(0)
        return t

    notifier = obs.CallableNotifier(lambda e: received.append((e.state.value, e.at)))
    await obs.run_alert_loop(ev, [notifier], interval=0, clock=clock, iterations=6, resend_every=60)
    assert received == [("firing", 0.0), ("firing", 60.0), ("firing", 120.0), ("resolved", 150.0)]
    with pytest.raises(obs.ObsError) as info:
        await obs.run_alert_loop(ev, [], resend_every=0)
    assert info.value.field == "resend_every"
