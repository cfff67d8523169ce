"""The most any NBD server could reach against ``nbdkit memory`` here, by replication layout.

``python bench/floor_blockstore.py [--seconds S]``

The blockstore benchmark compares our server with ``nbdkit memory``, a C server that keeps the disk
in RAM and replicates nothing, with fio, the server and the storage nodes sharing this machine's
cores. This script measures, in one run, what that comparison leaves room for:

* nbdkit's 4 KiB IOPS at iodepth 64 and the CPU fio itself spends per I/O;
* the kernel and crypto work a 4 KiB I/O cannot avoid in each layout the benchmark runs: moving
  the block over loopback TCP (fio to server, and server to each remote replica), encrypting and
  decrypting it for each remote replica (AES-256-GCM, what meshnet's TLS 1.3 negotiates), and the
  ``pwrite`` (or ``pread``) of each replica's file.

The floor leaves out everything else a real server does (acknowledgements, checksums, block
records, parsing, wake-ups and context switches, any user-space code at all), so it is a lower
bound on the CPU a server of any language needs per I/O. With ``cores`` CPUs shared by fio and the
server, no server can exceed ``cores / ((fio + floor) x nbdkit IOPS)`` of nbdkit's IOPS; the script
prints that ceiling next to the issue's target of 0.5.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

BLOCK = 4096
PIECE = 16 * 1024  # blockstore writes data files in aligned pieces of at most 16 KiB
FILE_BYTES = 256 << 20
TARGET = 0.5


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _fio(args: list[str], seconds: float) -> tuple[float, float, int]:
    """Run one fio job: (IOPS, fio's CPU microseconds per I/O, I/Os done)."""
    cmd = [
        "fio",
        "--name=floor",
        "--bs=4k",
        "--randrepeat=0",
        "--time_based",
        f"--runtime={seconds}",
        "--output-format=json",
        *args,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True).stdout
    job = json.loads(out[out.index("{") :])["jobs"][0]
    if job["error"]:
        raise RuntimeError(f"fio reported error {job['error']}")
    side = job["write"] if job["write"]["total_ios"] else job["read"]
    ios = int(side["total_ios"])
    cpu = (job["usr_cpu"] + job["sys_cpu"]) / 100 * job["job_runtime"] / 1000
    return float(side["iops"]), cpu / ios * 1e6, ios


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nbdkit_memory(seconds: float) -> dict[str, tuple[float, float, float]]:
    """{rw: (IOPS, fio us per I/O, nbdkit us per I/O)} for 4 KiB random I/O at iodepth 64."""
    port = _free_port()
    proc = subprocess.Popen(
        ["nbdkit", "--foreground", "--exit-with-parent", "--port", str(port), "memory", "512M"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("nbdkit did not start listening within 10 s") from None
                time.sleep(0.05)
        uri = f"--uri=nbd://127.0.0.1:{port}/"
        common = ["--ioengine=nbd", uri, "--size=256m"]
        subprocess.run(
            ["fio", "--name=fill", *common, "--rw=write", "--bs=1m", "--iodepth=8"],
            capture_output=True,
            timeout=300,
            check=True,
        )
        out: dict[str, tuple[float, float, float]] = {}
        for rw in ("randwrite", "randread"):
            before = _cpu_seconds(proc.pid)
            iops, fio_us, ios = _fio([*common, f"--rw={rw}", "--iodepth=64"], seconds)
            out[rw] = (iops, fio_us, (_cpu_seconds(proc.pid) - before) / ios * 1e6)
        return out
    finally:
        proc.kill()
        proc.wait()


def file_io(directory: Path, ios: int = 300_000) -> dict[str, float]:
    """Kernel CPU per 4 KiB pwrite / pread at random places in a file laid out as blockstore's data.

    The file is written in 16 KiB pieces first (the kernel sizes page-cache folios by the write
    that creates them), then timed calls are made from Python, less the same loop calling a
    builtin of the same arity, so what is left is the system call.
    """
    path = directory / "data"
    piece = os.urandom(PIECE)
    block = os.urandom(BLOCK)
    rng = random.Random(1)
    offsets = [rng.randrange(FILE_BYTES // BLOCK) * BLOCK for _ in range(ios)]
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        for offset in range(0, FILE_BYTES, PIECE):
            os.pwrite(fd, piece, offset)

        def timed(call: Callable[[int, bytes | int, int], object], arg: bytes | int) -> float:
            start = time.process_time()
            for offset in offsets:
                call(fd, arg, offset)
            return (time.process_time() - start) / ios * 1e6

        loop = timed(slice, block)
        return {
            "randwrite": max(timed(os.pwrite, block) - loop, 0.0),  # type: ignore[arg-type]
            "randread": max(timed(os.pread, BLOCK) - loop, 0.0),  # type: ignore[arg-type]
        }
    finally:
        os.close(fd)


def loopback_tcp(total: int = 1 << 30, chunk: int = 256 * 1024) -> float:
    """Kernel CPU (both ends) per 4 KiB carried over loopback TCP in large writes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # fio's runs so far
    pid = os.fork()
    if pid == 0:  # the sender
        try:
            with socket.create_connection(("127.0.0.1", port)) as conn:
                data = b"\0" * chunk
                for _ in range(total // chunk):
                    conn.sendall(data)
        finally:
            os._exit(0)
    conn, _ = listener.accept()
    listener.close()
    buf = bytearray(chunk)
    start = resource.getrusage(resource.RUSAGE_SELF)
    with conn:
        while conn.recv_into(buf):
            pass
    end = resource.getrusage(resource.RUSAGE_SELF)
    os.waitpid(pid, 0)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    receiver = end.ru_utime + end.ru_stime - start.ru_utime - start.ru_stime
    sender = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    return (receiver + sender) / (total / BLOCK) * 1e6


def aes_gcm(rounds: int = 20000, size: int = 64 * 1024) -> float:
    """CPU to encrypt and then decrypt 4 KiB with AES-256-GCM (large calls: no Python per block)."""
    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    nonce = os.urandom(12)
    data = os.urandom(size)
    start = time.process_time()
    for _ in range(rounds):
        aead.decrypt(nonce, aead.encrypt(nonce, data, None), None)
    return (time.process_time() - start) / (rounds * size / BLOCK) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each fio run")
    args = parser.parse_args()
    for binary in ("fio", "nbdkit"):
        if shutil.which(binary) is None:
            print(f"error: {binary} is not installed (Debian packages fio, nbdkit)", file=sys.stderr)
            return 2
    cores = len(os.sched_getaffinity(0))
    print(f"measuring on {cores} cores ({args.seconds:g} s fio runs)...", file=sys.stderr)
    peer = nbdkit_memory(args.seconds)
    with tempfile.TemporaryDirectory(prefix="floor-blockstore-") as tmp:
        disk = file_io(Path(tmp))
    tcp = loopback_tcp()
    crypt = aes_gcm()
    remote = crypt + tcp  # one copy to or from a storage node: loopback TCP, encrypt, decrypt

    print(
        f"\nper 4 KiB, CPU microseconds: loopback TCP {tcp:.2f}, AES-256-GCM encrypt+decrypt "
        f"{crypt:.2f}, pwrite {disk['randwrite']:.2f}, pread {disk['randread']:.2f}"
    )
    layouts = {
        "randwrite": {
            "replicas=1": tcp + disk["randwrite"],
            "replicas=3 (remote)": tcp + 3 * (remote + disk["randwrite"]),
            "replicas=3 (1 local + 2 remote)": tcp + disk["randwrite"] + 2 * (remote + disk["randwrite"]),
        },
        "randread": {
            "replicas=1": tcp + disk["randread"],
            "replicas=3 (remote)": tcp + remote + disk["randread"],
            "replicas=3 (1 local + 2 remote)": tcp + disk["randread"],
        },
    }
    for rw, rows in layouts.items():
        iops, fio_us, nbdkit_us = peer[rw]
        budget = cores / (TARGET * iops) * 1e6 - fio_us
        print(
            f"\n4 KiB {rw}, iodepth 64: nbdkit memory {iops:,.0f} IOPS ({nbdkit_us:.1f} us CPU per I/O), "
            f"fio {fio_us:.1f} us per I/O;"
        )
        print(f"  a server at {TARGET}x may spend {budget:.1f} us of CPU per I/O (all its processes)")
        for layout, floor in rows.items():
            ceiling = cores / ((fio_us + floor) * 1e-6 * iops)
            verdict = "reachable in principle" if ceiling >= TARGET else "out of reach for any server here"
            print(f"  {layout:32} floor {floor:5.1f} us -> at most {ceiling:.2f}x nbdkit ({verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
