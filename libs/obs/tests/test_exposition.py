"""The /metrics endpoint, scraped over real HTTP and parsed with prometheus-client's parser."""

from __future__ import annotations

import gzip
import urllib.error
import urllib.request

import anyio
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import obs

pytestmark = pytest.mark.anyio


@pytest.fixture
def registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    m = obs.Metrics("meshnet", registry=reg)
    m.counter("handshakes_refused", "Handshakes refused", labels=("reason",)).labels(
        reason="wrong_network"
    ).inc(3)
    m.gauge("peers_connected", "Live peers", unit="count").set(7)
    h = m.histogram("rpc_latency", "RPC latency", unit="seconds", buckets=(0.1, 1.0))
    h.observe(0.05)
    h.observe(0.5)
    return reg


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 (http to our own test server)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


async def raw_request(port: int, data: bytes, *, close_write: bool = False) -> bytes:
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(data)
        if close_write:
            await stream.send_eof()
        chunks = []
        with anyio.fail_after(10):
            while True:
                try:
                    chunks.append(await stream.receive())
                except anyio.EndOfStream:
                    break
        return b"".join(chunks)


async def test_a_scrape_returns_every_metric_in_the_text_format(registry: CollectorRegistry) -> None:
    async with obs.MetricsServer(registry) as server:
        status, headers, body = await anyio.to_thread.run_sync(http_get, server.url)
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    refused = families["mycelium_meshnet_handshakes_refused"]
    assert refused.type == "counter"
    (total,) = [s for s in refused.samples if s.name.endswith("_total")]
    assert total.labels == {"reason": "wrong_network"}
    assert total.value == 3.0
    assert families["mycelium_meshnet_peers_connected_count"].samples[0].value == 7.0
    latency = families["mycelium_meshnet_rpc_latency_seconds"]
    assert latency.type == "histogram"
    buckets = {s.labels["le"]: s.value for s in latency.samples if s.name.endswith("_bucket")}
    assert buckets == {"0.1": 1.0, "1.0": 2.0, "+Inf": 2.0}


async def test_the_scrape_sees_updates(registry: CollectorRegistry) -> None:
    gauge = obs.Metrics("meshnet", registry=registry).gauge("peers_connected", "Live peers", unit="count")
    async with obs.MetricsServer(registry) as server:
        gauge.set(11)
        _, _, body = await anyio.to_thread.run_sync(http_get, server.url)
    assert "mycelium_meshnet_peers_connected_count 11.0" in body.decode()


async def test_gzip_is_used_when_the_scraper_accepts_it(registry: CollectorRegistry) -> None:
    async with obs.MetricsServer(registry) as server:
        status, headers, body = await anyio.to_thread.run_sync(
            http_get, server.url, {"Accept-Encoding": "gzip"}
        )
    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    assert b"mycelium_meshnet_peers_connected_count" in gzip.decompress(body)


async def test_other_paths_are_404(registry: CollectorRegistry) -> None:
    async with obs.MetricsServer(registry) as server:
        status, _, body = await anyio.to_thread.run_sync(http_get, f"http://127.0.0.1:{server.port}/")
        status2, _, _ = await anyio.to_thread.run_sync(http_get, f"http://127.0.0.1:{server.port}/metricsx")
    assert status == 404
    assert status2 == 404
    assert b"/metrics" in body


async def test_query_strings_are_ignored_and_head_has_no_body(registry: CollectorRegistry) -> None:
    async with obs.MetricsServer(registry) as server:
        status, _, body = await anyio.to_thread.run_sync(http_get, server.url + "?x=1")
        head = await raw_request(server.port, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200
    assert b"mycelium_meshnet" in body
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert head.endswith(b"\r\n\r\n")


async def test_other_methods_are_405(registry: CollectorRegistry) -> None:
    async with obs.MetricsServer(registry) as server:
        reply = await raw_request(server.port, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 405 ")
    assert b"Allow: GET, HEAD" in reply


async def test_a_garbled_request_line_is_400(registry: CollectorRegistry) -> None:
    async with obs.MetricsServer(registry) as server:
        reply = await raw_request(server.port, b"hello there\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400 ")


async def test_an_oversized_request_head_is_refused_without_reading_it_all(
    registry: CollectorRegistry,
) -> None:
    async with obs.MetricsServer(registry) as server:
        huge = b"GET /metrics HTTP/1.1\r\nX-Junk: " + b"a" * 20_000 + b"\r\n\r\n"
        reply = await raw_request(server.port, huge)
    assert reply.startswith(b"HTTP/1.1 431 ")


async def test_a_silent_client_times_out(registry: CollectorRegistry) -> None:
    async with obs.MetricsServer(registry, read_timeout=0.2) as server:
        reply = await raw_request(server.port, b"GET /metr")
    assert reply.startswith(b"HTTP/1.1 408 ")


async def test_a_client_hanging_up_early_does_not_hurt_the_server(registry: CollectorRegistry) -> None:
    async with obs.MetricsServer(registry) as server:
        reply = await raw_request(server.port, b"GET /met", close_write=True)
        assert reply == b""
        status, _, _ = await anyio.to_thread.run_sync(http_get, server.url)
    assert status == 200


async def test_connections_over_the_limit_get_503(registry: CollectorRegistry) -> None:
    async with obs.MetricsServer(registry, max_connections=1) as server:
        # The first connection holds the only slot by never finishing its request.
        async with await anyio.connect_tcp("127.0.0.1", server.port) as idle:
            await idle.send(b"GET ")
            with anyio.fail_after(10):  # wait until the server has accepted it and taken the slot
                while True:
                    if server._limiter.borrowed_tokens >= 1:
                        break
                    await anyio.sleep(0.01)
            reply = await raw_request(server.port, b"GET /metrics HTTP/1.1\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 503 ")
        await anyio.sleep(0.05)
        status, _, _ = await anyio.to_thread.run_sync(http_get, server.url)
    assert status == 200


async def test_the_port_is_released_when_the_block_ends(registry: CollectorRegistry) -> None:
    async with obs.MetricsServer(registry) as server:
        port = server.port
    with pytest.raises(obs.ObsError):
        _ = server.port
    with pytest.raises(OSError, match=r"(?i)connect"):
        await anyio.connect_tcp("127.0.0.1", port)


async def test_a_failing_collector_gives_500_and_the_server_survives() -> None:
    class Broken:
        def collect(self) -> list[object]:
            raise RuntimeError("collector bug")

    reg = CollectorRegistry()
    reg.register(Broken())  # type: ignore[arg-type]
    async with obs.MetricsServer(reg) as server:
        first = await raw_request(server.port, b"GET /metrics HTTP/1.1\r\n\r\n")
        second = await raw_request(server.port, b"GET /metrics HTTP/1.1\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 500 ")
    assert second.startswith(b"HTTP/1.1 500 ")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"port": 70000}, "port"),
        ({"port": -1}, "port"),
        ({"host": ""}, "host"),
        ({"path": "metrics"}, "path"),
        ({"read_timeout": 0}, "read_timeout"),
        ({"max_connections": 0}, "max_connections"),
        ({"registry": "REGISTRY"}, "registry"),
    ],
)
def test_bad_server_settings_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(obs.ObsError) as info:
        obs.MetricsServer(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
