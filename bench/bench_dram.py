"""dram benchmarks: trackers, replication throughput, RPO, promotion and migration downtime.

Peers run in the same process and run alternately with ours (bench/harness.py): memcpy of the
same region for tracker scans, an untracked write for the first-write cost, raw TCP loopback
(1 MiB sends) for replication throughput. Where no peer can run here the comparison names the
published value from /work/shared/ANCHORS.md (Remus epochs, QEMU's 300 ms downtime target).
Where QEMU runs, a 1 GiB migration is also compared with QEMU's own live migration of a guest
with 1 GiB of RAM, two QEMUs on loopback started and killed per repetition.

``DRAM_BENCH_ONLY=qemu`` (or ``core``; comma-separated) builds only that group.
"""

from __future__ import annotations

import contextlib
import functools
import json
import mmap
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import anyio
from harness import Comparison, Trial

from dram import (
    BackupCore,
    BackupServer,
    BufferConfig,
    CooperativeThrottle,
    HashDiffTracker,
    MemoryRegion,
    MigrationPlanner,
    PrimaryCore,
    PrimaryReplicator,
    ReplicationConfig,
    UffdWpTracker,
    choose_promotion,
    connect_tcp,
    soft_dirty_available,
    uffd_wp_available,
)
from meshnet import free_port

PS = mmap.PAGESIZE
GIB = 1 << 30
SCAN_MIB = 256  # scans are timed on 256 MiB and reported per GiB


def _dirty(region: MemoryRegion, fraction: float, rng: random.Random) -> None:
    n = int(region.pages * fraction)
    pages = range(region.pages) if fraction >= 1.0 else rng.sample(range(region.pages), n)
    view = region.view
    for p in pages:
        view[p * PS] = (view[p * PS] + 1) & 0xFF


def _scan_trial(stack: contextlib.ExitStack, kind: str, fraction: float) -> Trial:
    region = stack.enter_context(MemoryRegion.anonymous(SCAN_MIB << 20))
    region.view[:] = os.urandom(1 << 20) * SCAN_MIB
    tracker = UffdWpTracker(region) if kind == "uffd-wp" else HashDiffTracker(region, digest=kind)
    stack.callback(tracker.close)
    tracker.start()
    rng = random.Random(1)

    def run() -> float:
        _dirty(region, fraction, rng)
        t0 = time.perf_counter()
        got = tracker.collect()
        elapsed = time.perf_counter() - t0
        assert len(got) >= int(region.pages * fraction) * 0.99, (kind, len(got))
        return elapsed * GIB / region.size

    return Trial(f"{kind} scan", run)


def _memcpy_trial(stack: contextlib.ExitStack) -> Trial:
    region = stack.enter_context(MemoryRegion.anonymous(SCAN_MIB << 20))
    region.view[:] = b"\1" * region.size
    dst = bytearray(region.size)

    def run() -> float:
        t0 = time.perf_counter()
        dst[:] = region.view
        return (time.perf_counter() - t0) * GIB / region.size

    return Trial("memcpy of the region", run)


def _first_write_trials(stack: contextlib.ExitStack) -> tuple[Trial, Trial]:
    pages = 16384

    def measure(tracked: bool) -> float:
        with MemoryRegion.anonymous(pages * PS) as region:
            region.view[:] = b"\1" * region.size  # populated, as a running workload's memory is
            tracker = UffdWpTracker(region) if tracked else None
            if tracker is not None:
                tracker.start()
            view = region.view
            t0 = time.perf_counter()
            for off in range(0, region.size, PS):
                view[off] = 2
            elapsed = time.perf_counter() - t0
            if tracker is not None:
                tracker.close()
            return elapsed / pages * 1e6

    return Trial("first write, uffd-wp armed", lambda: measure(True)), Trial(
        "first write, untracked", lambda: measure(False)
    )


# ---- replication --------------------------------------------------------------------------
REPL_MIB = 128


_CHILD = """
import sys, anyio
from dram import BackupCore, BackupServer, ReplicationConfig

mode, size = sys.argv[1], int(sys.argv[2])

async def backups():
    servers = [BackupServer(BackupCore(f"b{i}", memoryview(bytearray(size)), 4096, ReplicationConfig()))
               for i in range(2)]
    async with anyio.create_task_group() as tg:
        ports = [await s.listen_tcp(tg) for s in servers]
        print(*ports, flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        tg.cancel_scope.cancel()

async def sink():
    async def handle(sock):
        got = 0
        async with sock:
            while got < size:
                got += len(await sock.receive(1 << 20))
            await sock.send(b"k")
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    print(listener.extra(anyio.abc.SocketAttribute.local_port), flush=True)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        tg.cancel_scope.cancel()

anyio.run(backups if mode == "backups" else sink)
"""


def _child(mode: str, size: int) -> tuple[subprocess.Popen[str], list[int]]:
    """Backups (or a TCP sink) in another process, as on another machine: the primary's CPU only."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, mode, str(size)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ports = [int(p) for p in proc.stdout.readline().split()]
    return proc, ports


def _stop(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    proc.wait(timeout=30)


async def _replicate_once(region: MemoryRegion, conns: int) -> float:
    cfg = ReplicationConfig(buffer=BufferConfig(capacity_bytes=256 << 20))
    proc, ports = _child("backups", region.size)
    try:
        core = PrimaryCore("p", region.pages, cfg)
        tracker = HashDiffTracker(region, digest="crc32")
        async with PrimaryReplicator(region, core, tracker, scan_interval=3600) as rep:
            t0 = time.perf_counter()
            for i, port in enumerate(ports):
                for c in range(conns):
                    await rep.add_connection(
                        f"b{i}/{c}", f"b{i}", await connect_tcp("127.0.0.1", port, 1 << 24)
                    )
            with anyio.fail_after(120):
                while len(core.backups) < len(ports) or any(core.lag(b, 0).bytes for b in core.backups):  # noqa: ASYNC110
                    await anyio.sleep(0.002)
            elapsed = time.perf_counter() - t0
    finally:
        _stop(proc)
    return len(ports) * region.size / elapsed / (1 << 20)


async def _raw_tcp_once(total: int) -> float:
    """Raw TCP loopback to another process: 1 MiB sends, until the sink confirms every byte."""
    proc, (port,) = _child("sink", total)
    try:
        chunk = b"x" * (1 << 20)
        t0 = time.perf_counter()
        async with await anyio.connect_tcp("127.0.0.1", port) as s:
            for _ in range(total // len(chunk)):
                await s.send(chunk)
            await s.receive(1)
        elapsed = time.perf_counter() - t0
    finally:
        _stop(proc)
    return total / elapsed / (1 << 20)


def _repl_trials(stack: contextlib.ExitStack) -> tuple[Trial, Trial]:
    region = stack.enter_context(MemoryRegion.anonymous(REPL_MIB << 20))
    region.view[:] = os.urandom(1 << 20) * REPL_MIB
    ours = Trial("replicate to 2 backups x 2 conns", lambda: anyio.run(_replicate_once, region, 2))
    peer = Trial("raw TCP loopback, 1 MiB sends", lambda: anyio.run(_raw_tcp_once, 2 * region.size))
    return ours, peer


async def _rpo_once(dirty_mib_s: float, pct: float) -> float:
    size = 64 << 20
    cfg = ReplicationConfig()
    image = bytearray(size)
    server = BackupServer(BackupCore("b", memoryview(image), PS, cfg))
    samples: list[float] = []
    with MemoryRegion.anonymous(size) as region:
        core = PrimaryCore(
            "p", region.pages, cfg, tags=__import__("array").array("Q", bytes(8 * region.pages))
        )
        tracker = UffdWpTracker(region) if uffd_wp_available()[0] else HashDiffTracker(region)
        async with anyio.create_task_group() as tg:
            port = await server.listen_tcp(tg)
            async with PrimaryReplicator(region, core, tracker, scan_interval=0.005) as rep:
                for c in range(2):
                    await rep.add_connection(f"b/{c}", "b", await connect_tcp("127.0.0.1", port, 1 << 24))
                rng = random.Random(3)
                per_tick = max(1, int(dirty_mib_s * (1 << 20) / PS * 0.005))
                end = time.monotonic() + 1.0
                while time.monotonic() < end:
                    for _ in range(per_tick):
                        p = rng.randrange(region.pages)
                        region.view[p * PS] = (region.view[p * PS] + 1) & 0xFF
                    if "b" in core.backups:
                        samples.append(core.lag("b", rep.clock()).seconds)
                    await anyio.sleep(0.005)
            tg.cancel_scope.cancel()
    samples.sort()
    return 1000 * samples[min(len(samples) - 1, int(len(samples) * pct))]


async def _promotion_once(size: int) -> float:
    """Replicas as they stand after a primary loss (their images are memory regions): time until
    the least-lagging one runs as the new primary on its own image, tracking writes again."""
    cfg = ReplicationConfig()
    regions = {n: MemoryRegion.anonymous(size) for n in ("b1", "b2")}
    for r in regions.values():
        r.view[:] = b"\1" * size  # replicated content, resident
    replicas = {n: BackupCore(n, regions[n].view, PS, cfg) for n in regions}
    replicas["b1"].watermark, replicas["b2"].watermark = 100, 120
    t0 = time.perf_counter()
    winner = replicas[choose_promotion({n: r.watermark for n, r in replicas.items()})]
    region = regions[winner.node_id]
    core = PrimaryCore(winner.node_id, region.pages, cfg, epoch=winner.epoch + 1, tags=winner.tags)
    tracker = UffdWpTracker(region) if uffd_wp_available()[0] else HashDiffTracker(region)
    tracker.start()
    elapsed = time.perf_counter() - t0
    assert core.epoch == 1
    assert winner.node_id == "b2"
    tracker.close()
    for r in regions.values():
        r.close()
    return elapsed


async def _migration_once(size: int, busy: bool = True, totals: list[float] | None = None) -> float:
    """Migrate a ``size`` region to a fresh target; downtime in ms (total time appended to ``totals``).

    ``busy``: ~16 MiB/s of random page writes during the live phase; otherwise the region is idle
    after being filled, as the idle QEMU guest is in the QEMU comparison.
    """
    cfg = ReplicationConfig(buffer=BufferConfig(capacity_bytes=256 << 20))
    image = bytearray(size)
    server = BackupServer(BackupCore("t", memoryview(image), PS, cfg))
    with MemoryRegion.anonymous(size) as region:
        block = os.urandom(1 << 20)
        for off in range(0, size, len(block)):  # 1 MiB at a time: no 1 GiB temporary
            region.view[off : off + len(block)] = block
        tracker = UffdWpTracker(region) if uffd_wp_available()[0] else HashDiffTracker(region)
        core = PrimaryCore("s", region.pages, cfg)
        gate = CooperativeThrottle()

        async def workload() -> None:  # ~16 MiB/s of random page writes
            rng = random.Random(5)
            while True:
                await gate.gate()
                for _ in range(40):
                    p = rng.randrange(region.pages)
                    region.view[p * PS] = (region.view[p * PS] + 1) & 0xFF
                await anyio.sleep(0.01)

        async with anyio.create_task_group() as tg:
            port = await server.listen_tcp(tg)
            async with PrimaryReplicator(region, core, tracker, actuator=gate, scan_interval=0.02) as rep:
                t0 = time.perf_counter()
                for c in range(2):
                    await rep.add_connection(f"t/{c}", "t", await connect_tcp("127.0.0.1", port, 1 << 24))
                if busy:
                    tg.start_soon(workload)
                # The default budget scales with the region (150 s/GiB, as KubeVirt's).
                result = await rep.migrate("t", MigrationPlanner(), round_seconds=0.05)
                total = time.perf_counter() - t0
            tg.cancel_scope.cancel()
        assert image == region.view, "target image differs from the source region"
    if totals is not None:
        totals.append(total)
    return result.downtime * 1000


# ---- QEMU's own live migration, same RAM size, same run -------------------------------------
QEMU_MIB = 1024


def _qemu_accel() -> tuple[str | None, str]:
    """(accelerator, why): KVM when /dev/kvm is usable, else TCG; None when QEMU is missing."""
    if shutil.which("qemu-system-x86_64") is None:
        return None, "qemu-system-x86_64 not installed (apt-get install qemu-system-x86)"
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "kvm", "KVM"
    return "tcg", "TCG (no usable /dev/kvm)"


class _Qmp:
    """A minimal QMP client over a unix socket: greeting, qmp_capabilities, then commands."""

    def __init__(self, path: str, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 30
        self._sock = socket.socket(socket.AF_UNIX)
        self._sock.settimeout(30)
        while True:
            try:
                self._sock.connect(path)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"QEMU QMP socket {path} never came up (exit {proc.poll()})") from None
                time.sleep(0.02)
        self._file = self._sock.makefile("rwb")
        json.loads(self._file.readline())  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name: str, **arguments: object) -> Any:
        self._file.write(json.dumps({"execute": name, "arguments": arguments}).encode() + b"\n")
        self._file.flush()
        while True:  # asynchronous events may come first
            line = self._file.readline()
            if not line:
                raise RuntimeError(f"QEMU closed QMP during {name}")
            msg = json.loads(line)
            if "error" in msg:
                raise RuntimeError(f"QMP {name}: {msg['error']}")
            if "return" in msg:
                return msg["return"]

    def close(self) -> None:
        self._file.close()
        self._sock.close()


def _start_qemu(stack: contextlib.ExitStack, accel: str, workdir: str, name: str, extra: list[str]) -> _Qmp:
    qmp_path = os.path.join(workdir, f"{name}.qmp")
    log = stack.enter_context(open(os.path.join(workdir, f"{name}.log"), "wb"))  # noqa: SIM115
    argv = ["qemu-system-x86_64", "-accel", accel, "-nographic", "-nodefaults", "-display", "none"]
    argv += ["-m", f"{QEMU_MIB}M", "-machine", "pc,memory-backend=ram0"]
    argv += ["-qmp", f"unix:{qmp_path},server=on,wait=off", *extra]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )

    def kill() -> None:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)

    stack.callback(kill)
    try:
        qmp = _Qmp(qmp_path, proc)
    except RuntimeError as exc:
        log.flush()
        with open(log.name, "rb") as f:
            raise RuntimeError(f"{exc}; QEMU said: {f.read()[-2000:].decode(errors='replace')}") from None
    stack.callback(qmp.close)
    return qmp


def _qemu_migration_once(accel: str, workdir: str, ram_file: str, totals: list[float]) -> float:
    """One real QEMU live migration on loopback; QEMU's own ``downtime`` in ms."""
    port = free_port()
    with contextlib.ExitStack() as stack:  # both QEMUs are killed whatever happens
        dst = _start_qemu(
            stack,
            accel,
            workdir,
            "dst",
            ["-object", f"memory-backend-ram,id=ram0,size={QEMU_MIB}M", "-incoming", f"tcp:127.0.0.1:{port}"],
        )
        # The source guest's RAM starts as a private copy of a random-filled file, so no page is a
        # zero page QEMU could skip (our region is filled with random bytes too).
        src = _start_qemu(
            stack,
            accel,
            workdir,
            "src",
            ["-object", f"memory-backend-file,id=ram0,size={QEMU_MIB}M,mem-path={ram_file},share=off"],
        )
        src.cmd("migrate-set-parameters", **{"downtime-limit": 300})  # max-bandwidth: default
        src.cmd("migrate", uri=f"tcp:127.0.0.1:{port}")
        deadline = time.monotonic() + 120
        while True:
            info = src.cmd("query-migrate")
            if info.get("status") == "completed":
                break
            if info.get("status") in ("failed", "cancelled") or time.monotonic() > deadline:
                raise RuntimeError(f"QEMU migration did not complete: {info}")
            time.sleep(0.05)
        while dst.cmd("query-status")["status"] != "running":  # the guest resumed on the target
            if time.monotonic() > deadline:
                raise RuntimeError("destination QEMU never resumed the guest")
            time.sleep(0.02)
    ram = info.get("ram", {})
    print(
        f"   QEMU ({accel}): downtime {info['downtime']} ms, total {info['total-time']} ms, "
        f"sent {ram.get('transferred', 0) / (1 << 20):.0f} MiB in {ram.get('dirty-sync-count')} passes",
        flush=True,
    )
    totals.append(info["total-time"] / 1000)
    return float(info["downtime"])


def _replayed(recorded: list[float], fresh: Callable[[], object]) -> Callable[[], float]:
    """Total time of a migration the downtime comparison already ran (a fresh one if none is left),
    so both numbers come from the same migrations without doubling the runtime."""

    def run() -> float:
        if not recorded:
            fresh()
        return recorded.pop(0)

    return run


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _qemu_comparisons(stack: contextlib.ExitStack) -> list[Comparison]:
    accel, why = _qemu_accel()
    size = QEMU_MIB << 20
    ours_totals: list[float] = []

    def ours() -> float:
        return anyio.run(_migration_once, size, False, ours_totals)

    if accel is None:
        return [
            Comparison(
                name=f"dram: migration downtime, {QEMU_MIB} MiB idle region",
                unit="ms",
                higher_is_better=False,
                ours=Trial("two-phase convergence", ours),
                reference=300.0,
                reference_source="QEMU default downtime-limit 300 ms",
                repetitions=3,
                note=f"QEMU peer not run: {why}",
            )
        ]
    workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="dram-bench-qemu-"))
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else workdir
    ram_file = os.path.join(shm, f"dram-bench-qemu-{os.getpid()}.ram")
    stack.callback(_unlink_quietly, ram_file)
    block = os.urandom(1 << 20)
    with open(ram_file, "wb") as f:
        for _ in range(QEMU_MIB):
            f.write(block)
    peer_totals: list[float] = []

    def peer() -> float:
        return _qemu_migration_once(accel, workdir, ram_file, peer_totals)

    note = (
        f"QEMU 7.2 ({why}) on loopback, downtime-limit 300 ms, default max-bandwidth 128 MiB/s; "
        "idle guest (no disk: SeaBIOS finds no boot device and halts), RAM prefilled with random "
        "bytes so nothing is a zero page: QEMU's best case. Ours: idle 1 GiB random-filled region, "
        "2 TCP connections, no bandwidth cap"
    )
    return [
        Comparison(
            name=f"dram: migration downtime, {QEMU_MIB} MiB idle, vs QEMU live migration",
            unit="ms",
            higher_is_better=False,
            ours=Trial("two-phase convergence", ours),
            peer=Trial(f"QEMU live migration ({accel})", peer),
            repetitions=3,
            note=note,
        ),
        Comparison(
            name=f"dram: migration total time, {QEMU_MIB} MiB idle, vs QEMU live migration",
            unit="s",
            higher_is_better=False,
            ours=Trial("two-phase convergence", _replayed(ours_totals, ours)),
            peer=Trial(f"QEMU live migration ({accel})", _replayed(peer_totals, peer)),
            repetitions=3,
            note="the same migrations as the downtime row (QEMU's total-time); " + note,
        ),
    ]


def _core_comparisons(stack: contextlib.ExitStack) -> list[Comparison]:
    out: list[Comparison] = []
    kinds = ["crc32+adler32", "crc32"] + (["uffd-wp"] if uffd_wp_available()[0] else [])
    sd_ok, sd_why = soft_dirty_available()
    memcpy = _memcpy_trial(stack)
    for kind in kinds:
        for fraction in (0.01, 0.10, 1.0):
            out.append(
                Comparison(
                    name=f"dram: {kind} scan @ {fraction:.0%} dirty",
                    unit="s/GiB",
                    higher_is_better=False,
                    ours=_scan_trial(stack, kind, fraction),
                    peer=memcpy,
                    repetitions=5,
                    note="" if sd_ok else f"soft-dirty not benchmarked: {sd_why}",
                )
            )
    if uffd_wp_available()[0]:
        armed, plain = _first_write_trials(stack)
        out.append(
            Comparison(
                name="dram: first write to a page, uffd-wp armed vs untracked",
                unit="us/page",
                higher_is_better=False,
                ours=armed,
                peer=plain,
                repetitions=5,
                note="ANCHORS: +0.85 us per first write (C); ours includes a Python store loop",
            )
        )
    ours, peer = _repl_trials(stack)
    out.append(
        Comparison(
            name=f"dram: replication throughput, {REPL_MIB} MiB to 2 backups",
            unit="MiB/s",
            higher_is_better=True,
            ours=ours,
            peer=peer,
            repetitions=3,
            note="backups (and the TCP sink) in a second process; 2 cores shared with the whole machine",
        )
    )
    for rate in (4, 32):
        for label, pct in (("p50", 0.5), ("p99", 0.99)):
            out.append(
                Comparison(
                    name=f"dram: RPO lag {label} at {rate} MiB/s dirty",
                    unit="ms",
                    higher_is_better=False,
                    ours=Trial(f"lag {label}", functools.partial(anyio.run, _rpo_once, float(rate), pct)),
                    reference=25.0,
                    reference_source="Remus checkpoint epoch 25 ms (NSDI'08)",
                    repetitions=3,
                )
            )
    out.append(
        Comparison(
            name="dram: promotion of the least-lagging 256 MiB replica",
            unit="s",
            higher_is_better=False,
            ours=Trial("choose + apply + re-arm tracking", lambda: anyio.run(_promotion_once, 256 << 20)),
            reference=1.0,
            reference_source="Remus: failover 'in seconds' (1 s taken)",
            repetitions=3,
            note="election messaging excluded (timeouts are config: failover_timeout 1 s)",
        )
    )
    out.append(
        Comparison(
            name="dram: migration downtime, 256 MiB busy region",
            unit="ms",
            higher_is_better=False,
            ours=Trial("two-phase convergence", lambda: anyio.run(_migration_once, 256 << 20)),
            reference=300.0,
            reference_source="QEMU default downtime-limit 300 ms",
            repetitions=3,
            note="~16 MiB/s of random page writes; auto-converge throttles them until the rest fits",
        )
    )
    _ = statistics  # medians are the harness's job
    return out


_GROUPS = {"core": _core_comparisons, "qemu": _qemu_comparisons}


def comparisons(stack: contextlib.ExitStack) -> list[Comparison]:
    """All groups, or those named in ``DRAM_BENCH_ONLY`` (comma-separated: core, qemu)."""
    only = [g for g in os.environ.get("DRAM_BENCH_ONLY", "").split(",") if g]
    unknown = set(only) - set(_GROUPS)
    if unknown:
        raise ValueError(f"DRAM_BENCH_ONLY: unknown group(s) {sorted(unknown)}; valid: {sorted(_GROUPS)}")
    out: list[Comparison] = []
    for name, build in _GROUPS.items():
        if not only or name in only:
            out.extend(build(stack))
    return out
