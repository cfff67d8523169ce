"""obs benchmarks: /metrics scrape throughput and latency, and the cost of a metric update.

Peer: prometheus-client's own exposition server (``start_http_server``: a threaded wsgiref server)
serving the SAME registry as ``obs.MetricsServer``. Both servers run in this process, each on its
own thread (ours on an anyio event loop behind a blocking portal), started once and stopped when
the module's ExitStack closes. The registry is declared through ``obs.Metrics`` and looks like a
busy node's: 200 families (counters, gauges, histograms), 1 in 5 labelled with 10-50 series. With
that registry a scrape is mostly ``generate_latest`` (shared code, same bytes on both sides), so a
tiny registry (5 counters) is raced too: there the time is the HTTP servers' own.

The load generator is a separate process (this file run as a script) so that it never competes
with the servers for this process' GIL: raw loopback sockets, one request per connection
(``Connection: close``, what ``MetricsServer`` speaks), sequential or from N threads for a fixed
duration, every response checked (status 200 and the exact body length, or the gzip magic).
Wall-clock rates on a CPU-contended host also measure how much CPU the scheduler grants each
server's threads, so "server CPU per scrape" rows (this process' CPU time / scrapes answered)
compare the work each server does, whatever the machine's load.

The metric update comparison times ``counter.labels(...).inc()`` on an obs-declared counter against
a counter built with prometheus-client directly: obs wraps declaration, not the hot path, so the
ratio should be ~1.0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import anyio.from_thread
from harness import Comparison, Trial
from prometheus_client import CollectorRegistry, Counter, generate_latest, start_http_server

import obs

FAMILIES = 200
SCRAPE_SECONDS = 2.0  # per trial; a bounded run, not a count, so slow and fast sides take alike
MAX_SCRAPES = 100_000  # hard bound per trial whatever the speed
TINY_FAMILIES = 5
CONCURRENCY = 8
WARMUP_SCRAPES = 3
UPDATES = 200_000  # counter increments per update-cost trial
REQUEST_TIMEOUT = 10.0


# ---------------------------------------------------------------------------------------------
# The load generator (runs in a child process: ``python bench_obs.py --port N ...``)
# ---------------------------------------------------------------------------------------------


def _scrape_once(host: str, port: int, request: bytes, expect_bytes: int, gzipped: bool) -> float:
    """One GET on a fresh connection, read to EOF, checked; returns its latency in seconds."""
    started = time.perf_counter()
    with socket.create_connection((host, port), timeout=REQUEST_TIMEOUT) as sock:
        sock.sendall(request)
        chunks: list[bytes] = []
        while chunk := sock.recv(262_144):
            chunks.append(chunk)
    elapsed = time.perf_counter() - started
    response = b"".join(chunks)
    head, sep, body = response.partition(b"\r\n\r\n")
    if not sep or not head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
        raise RuntimeError(f"bad scrape response: {head[:80]!r}")
    if gzipped:
        if not body.startswith(b"\x1f\x8b"):
            raise RuntimeError("asked for gzip, got a body that is not gzip")
    elif len(body) != expect_bytes:
        raise RuntimeError(f"body of {len(body)} bytes, expected {expect_bytes}")
    return elapsed


def _load_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="scrape load generator (child process)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--expect-bytes", type=int, required=True)
    parser.add_argument("--gzip", action="store_true")
    args = parser.parse_args(argv)
    host, port = "127.0.0.1", args.port
    headers = "Host: 127.0.0.1\r\nUser-Agent: bench-obs\r\nConnection: close\r\n"
    if args.gzip:
        headers += "Accept-Encoding: gzip\r\n"
    request = f"GET /metrics HTTP/1.1\r\n{headers}\r\n".encode("ascii")
    for _ in range(WARMUP_SCRAPES):  # warm-up: first connections, server-side caches
        _scrape_once(host, port, request, args.expect_bytes, args.gzip)

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + args.seconds

    def worker() -> None:
        while time.perf_counter() < deadline:
            try:
                latency = _scrape_once(host, port, request, args.expect_bytes, args.gzip)
            except Exception as exc:  # reported to the parent, which fails the trial
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                return
            with lock:
                latencies.append(latency)
                if len(latencies) >= MAX_SCRAPES:
                    return

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    print(json.dumps({"count": len(latencies), "seconds": elapsed, "latencies": latencies, "errors": errors}))


# ---------------------------------------------------------------------------------------------
# The parent: registry, servers, trials
# ---------------------------------------------------------------------------------------------


def _build_registry() -> CollectorRegistry:
    """200 families as a busy node would expose: 1 in 5 labelled, with 10-50 series each."""
    registry = CollectorRegistry()
    metrics = obs.Metrics("benchnode", registry=registry)
    buckets = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
    for i in range(FAMILIES):
        kind = ("counter", "counter", "gauge", "gauge", "histogram")[i % 5]
        labelled = i % 10 in (1, 3) or (kind == "histogram" and i % 20 == 4)
        series = 10 + (i * 7) % 41 if labelled else 1  # 10..50
        if kind == "histogram" and labelled:
            series = 10  # 10 series x (13 buckets + sum + count + created) is already 160 lines
        labels = ("peer",) if labelled else ()
        help_text = f"Benchmark {kind} number {i}, shaped like a protocol's metric"
        if kind == "counter":
            c = metrics.counter(f"events_{i}", help_text, labels=labels)
            for s in range(series):
                (c.labels(peer=f"node-{s:03d}") if labelled else c).inc(1000 + i * s)
        elif kind == "gauge":
            g = metrics.gauge(f"level_{i}", help_text, labels=labels, unit="bytes")
            for s in range(series):
                (g.labels(peer=f"node-{s:03d}") if labelled else g).set(1.5e9 + i * s)
        else:
            h = metrics.histogram(f"latency_{i}", help_text, labels=labels, unit="seconds", buckets=buckets)
            for s in range(series):
                child = h.labels(peer=f"node-{s:03d}") if labelled else h
                for k in range(20):
                    child.observe(0.0007 * (k + 1) * (1 + s % 3))
    return registry


def _build_tiny_registry() -> CollectorRegistry:
    """A handful of unlabelled series: the scrape cost is then mostly the HTTP server's own."""
    registry = CollectorRegistry()
    metrics = obs.Metrics("benchtiny", registry=registry)
    for i in range(TINY_FAMILIES):
        metrics.counter(f"events_{i}", f"Tiny benchmark counter {i}").inc(i)
    return registry


def _http_get(port: int) -> bytes:
    request = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT) as sock:
        sock.sendall(request)
        chunks: list[bytes] = []
        while chunk := sock.recv(262_144):
            chunks.append(chunk)
    return b"".join(chunks).partition(b"\r\n\r\n")[2]


class _Servers:
    """Both exposition servers on one registry, in this process; closed by the ExitStack."""

    def __init__(self, stack: contextlib.ExitStack, registry: CollectorRegistry) -> None:
        self.registry = registry
        portal = stack.enter_context(anyio.from_thread.start_blocking_portal())
        ours = stack.enter_context(portal.wrap_async_context_manager(obs.MetricsServer(self.registry)))
        self.ours_port = ours.port
        httpd, thread = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.peer_port = int(httpd.server_port)

        def stop_peer() -> None:
            httpd.shutdown()
            httpd.server_close()
            thread.join(timeout=10)

        stack.callback(stop_peer)
        body = generate_latest(self.registry)
        self.body_bytes = len(body)
        self.series_lines = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
        # Same registry, same exposition: a fair race only if both send exactly these bytes.
        for name, port in (("obs.MetricsServer", self.ours_port), ("start_http_server", self.peer_port)):
            if _http_get(port) != body:
                raise RuntimeError(f"{name} does not serve the registry's exposition unchanged")

    def load(self, port: int, *, concurrency: int = 1, gzipped: bool = False) -> dict[str, object]:
        argv = [
            sys.executable, str(Path(__file__).resolve()), "--port", str(port),
            "--seconds", str(SCRAPE_SECONDS), "--concurrency", str(concurrency),
            "--expect-bytes", str(self.body_bytes),
        ]  # fmt: skip
        if gzipped:
            argv.append("--gzip")
        cpu_before = time.process_time()  # both servers live in this process; the load does not
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=SCRAPE_SECONDS + 60, check=False)
        cpu = time.process_time() - cpu_before
        if proc.returncode != 0:
            raise RuntimeError(f"load generator failed: {proc.stderr.strip()[-500:]}")
        result: dict[str, object] = json.loads(proc.stdout)
        if result["errors"]:
            raise RuntimeError(f"scrapes failed: {result['errors']}")
        result["server_cpu"] = cpu
        return result


def _throughput(servers: _Servers, port: int, concurrency: int, gzipped: bool = False) -> float:
    r = servers.load(port, concurrency=concurrency, gzipped=gzipped)
    count, seconds = r["count"], r["seconds"]
    assert isinstance(count, int)
    assert isinstance(seconds, float)
    return count / seconds


def _cpu_ms_per_scrape(servers: _Servers, port: int, concurrency: int, gzipped: bool = False) -> float:
    """Server CPU (this process) per answered scrape, warm-up included: immune to CPU share."""
    r = servers.load(port, concurrency=concurrency, gzipped=gzipped)
    count, cpu = r["count"], r["server_cpu"]
    assert isinstance(count, int)
    assert isinstance(cpu, float)
    return 1000.0 * cpu / (count + WARMUP_SCRAPES)


def _p50_ms(servers: _Servers, port: int) -> float:
    latencies = servers.load(port, concurrency=1)["latencies"]
    assert isinstance(latencies, list)
    return 1000.0 * float(statistics.median(latencies))


def _update_ns(counter: Counter) -> float:
    """ns per ``counter.labels(reason=...).inc()``, cycling 8 label values like a real caller."""
    reasons = [f"reason_{i}" for i in range(8)]
    for r in reasons:  # children exist before timing: we measure updates, not first creation
        counter.labels(reason=r).inc()
    started = time.perf_counter_ns()
    for i in range(UPDATES):
        counter.labels(reason=reasons[i & 7]).inc()
    return (time.perf_counter_ns() - started) / UPDATES


def comparisons(stack: contextlib.ExitStack) -> list[Comparison]:
    servers = _Servers(stack, _build_registry())
    tiny = _Servers(stack, _build_tiny_registry())
    shape = (
        f"{FAMILIES} families, {servers.series_lines} sample lines, {servers.body_bytes / 1024:.0f} KiB; "
        f"one request per connection, load from a separate process for {SCRAPE_SECONDS:g} s"
    )
    tiny_shape = f"{tiny.series_lines} sample lines, {tiny.body_bytes} bytes: measures the HTTP server itself"
    ours_name, peer_name = "obs.MetricsServer (anyio)", "prometheus_client start_http_server (threaded WSGI)"

    def scrape_pair(on: _Servers, fn: Callable[[_Servers, int], float]) -> tuple[Trial, Trial]:
        ours = Trial(ours_name, lambda: fn(on, on.ours_port))
        return ours, Trial(peer_name, lambda: fn(on, on.peer_port))

    seq = scrape_pair(servers, lambda on, port: _throughput(on, port, 1))
    conc = scrape_pair(servers, lambda on, port: _throughput(on, port, CONCURRENCY))
    gz = scrape_pair(servers, lambda on, port: _throughput(on, port, 1, gzipped=True))
    lat = scrape_pair(servers, _p50_ms)
    tiny_seq = scrape_pair(tiny, lambda on, port: _throughput(on, port, 1))
    tiny_lat = scrape_pair(tiny, _p50_ms)
    conc_cpu = scrape_pair(servers, lambda on, port: _cpu_ms_per_scrape(on, port, CONCURRENCY))
    gz_cpu = scrape_pair(servers, lambda on, port: _cpu_ms_per_scrape(on, port, 1, gzipped=True))
    tiny_cpu = scrape_pair(tiny, lambda on, port: _cpu_ms_per_scrape(on, port, 1))

    ours_counter = obs.Metrics("benchupdate", registry=CollectorRegistry()).counter(
        "refused", "Refused, by reason", labels=("reason",)
    )
    raw_counter = Counter("raw_refused", "Refused, by reason", ["reason"], registry=CollectorRegistry())
    return [
        Comparison(
            name="/metrics scrape throughput, 1 sequential scraper",
            unit="scrapes/s", higher_is_better=True, ours=seq[0], peer=seq[1], note=shape,
        ),
        Comparison(
            name=f"/metrics scrape throughput, {CONCURRENCY} concurrent scrapers",
            unit="scrapes/s", higher_is_better=True, ours=conc[0], peer=conc[1],
            note=f"{shape}; on a CPU-contended host the peer's 8 threads win a larger CPU share, "
            "see the CPU-per-scrape row",
        ),
        Comparison(
            name=f"server CPU per scrape, {CONCURRENCY} concurrent scrapers",
            unit="ms CPU/scrape", higher_is_better=False, ours=conc_cpu[0], peer=conc_cpu[1],
            note=f"{shape}; process CPU time of the servers' process divided by scrapes answered",
        ),
        Comparison(
            name="/metrics scrape throughput, 1 scraper, Accept-Encoding: gzip (as Prometheus asks)",
            unit="scrapes/s", higher_is_better=True, ours=gz[0], peer=gz[1], note=shape,
        ),
        Comparison(
            name="server CPU per scrape, 1 scraper, Accept-Encoding: gzip",
            unit="ms CPU/scrape", higher_is_better=False, ours=gz_cpu[0], peer=gz_cpu[1],
            note=f"{shape}; obs gzips at level 5, prometheus_client at gzip's default 9",
        ),
        Comparison(
            name="/metrics scrape latency p50, 1 sequential scraper (connect to EOF)",
            unit="ms", higher_is_better=False, ours=lat[0], peer=lat[1], note=shape,
        ),
        Comparison(
            name="/metrics scrape throughput, tiny registry, 1 sequential scraper",
            unit="scrapes/s", higher_is_better=True, ours=tiny_seq[0], peer=tiny_seq[1], note=tiny_shape,
        ),
        Comparison(
            name="/metrics scrape latency p50, tiny registry, 1 sequential scraper",
            unit="ms", higher_is_better=False, ours=tiny_lat[0], peer=tiny_lat[1], note=tiny_shape,
        ),
        Comparison(
            name="server CPU per scrape, tiny registry, 1 sequential scraper",
            unit="ms CPU/scrape", higher_is_better=False, ours=tiny_cpu[0], peer=tiny_cpu[1],
            note=tiny_shape,
        ),
        Comparison(
            name="metric update: counter.labels(reason=...).inc()",
            unit="ns/update", higher_is_better=False,
            ours=Trial("counter declared through obs.Metrics", lambda: _update_ns(ours_counter)),
            peer=Trial("prometheus_client.Counter declared directly", lambda: _update_ns(raw_counter)),
            note=f"{UPDATES} updates per repetition over 8 label values; same collector class, so ~1.0x",
        ),
    ]  # fmt: skip


if __name__ == "__main__":
    _load_main(sys.argv[1:])
