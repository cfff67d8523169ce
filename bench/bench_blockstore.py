"""blockstore: NBD block I/O with fio (Longhorn kbench shapes, shortened) against `nbdkit memory`.

Peer: ``nbdkit memory`` (a C NBD server keeping the disk in RAM) on the same machine, driven by
the same fio job through fio's ``ioengine=nbd`` (there is no NBD kernel module here). Ours:
``python -m blockstore serve`` with

* replicas=1: one local sparse-file replica in the serving process;
* replicas=3: three ``python -m blockstore node`` processes on loopback, replication over meshnet
  (mutual TLS 1.3), writes acknowledged after all three (policy ack=all, min_replicas=2);
* replicas=3 (1 local + 2 remote): the realistic deployment where every host runs both roles: the
  NBD server holds one of the three replicas itself (``--local-node``, reads served from it, as
  DRBD's primary reads its own disk) and two storage node processes hold the others; same policy.

Shapes (kbench): 4k random read/write IOPS at iodepth 64, 128k sequential read/write bandwidth at
iodepth 64, 4k random read/write latency at iodepth 1. Runtimes are shortened (ramp 1 s, run 3 s)
from kbench's 5 s / 20 s so the module finishes in a few minutes. Both sides are pre-filled, so
reads return data, not holes. Target from the issue: >= 0.5x nbdkit's IOPS; the table reports
whatever the ratio really is. On a 2-core machine shared with other work, fio, the NBD server
and (for replicas=3) three storage nodes compete for the same CPUs.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import Comparison, Trial

from meshnet import NetworkIdentity, free_port

SIZE = "512M"
WORKING_SET = "256m"
RAMP, RUNTIME = 1, 3

# name, fio rw, block size, iodepth, metric, unit, higher is better
SHAPES = [
    ("4k randread iodepth=64", "randread", "4k", 64, "iops", "IOPS", True),
    ("4k randwrite iodepth=64", "randwrite", "4k", 64, "iops", "IOPS", True),
    ("128k seq read iodepth=64", "read", "128k", 64, "bw", "MiB/s", True),
    ("128k seq write iodepth=64", "write", "128k", 64, "bw", "MiB/s", True),
    ("4k randread latency iodepth=1", "randread", "4k", 1, "lat", "us", False),
    ("4k randwrite latency iodepth=1", "randwrite", "4k", 1, "lat", "us", False),
]


def _wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def _spawn(stack: contextlib.ExitStack, args: list[str]) -> int:
    """Start a `python -m blockstore` process; returns the port from its ready line."""
    proc = subprocess.Popen([sys.executable, "-m", "blockstore", *args], stdout=subprocess.PIPE, text=True)

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()

    stack.callback(stop)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"blockstore {args[0]} exited before it was ready")
    return int(json.loads(line)["port"])


def fio(uri: str, rw: str, bs: str, iodepth: int, metric: str, *, time_based: bool = True) -> float:
    args = [
        "fio",
        "--name=bench",
        "--ioengine=nbd",
        f"--uri={uri}",
        f"--rw={rw}",
        f"--bs={bs}",
        f"--iodepth={iodepth}",
        f"--size={WORKING_SET}",
        "--output-format=json",
        "--randrepeat=0",
    ]
    if time_based:
        args += ["--time_based", f"--runtime={RUNTIME}", f"--ramp_time={RAMP}"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=300, check=True).stdout
    job = json.loads(out[out.index("{") :])["jobs"][0]
    side = job["read"] if "read" in rw else job["write"]
    if job["error"]:
        raise RuntimeError(f"fio reported error {job['error']}")
    if metric == "iops":
        return float(side["iops"])
    if metric == "bw":
        return float(side["bw_bytes"]) / (1 << 20)
    return float(side["lat_ns"]["mean"]) / 1000.0


def _trial(name: str, uri: str, shape: tuple[str, str, str, int, str, str, bool]) -> Trial:
    _label, rw, bs, iodepth, metric, _unit, _hib = shape

    def run() -> float:
        return fio(uri, rw, bs, iodepth, metric)

    return Trial(name, run)


def comparisons(stack: contextlib.ExitStack) -> list[Comparison]:
    for binary in ("fio", "nbdkit"):
        if shutil.which(binary) is None:
            raise RuntimeError(f"{binary} is not installed (Debian packages fio, nbdkit)")
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-blockstore-")))
    network = NetworkIdentity.generate("bench-blockstore")
    network.save(tmp / "network.json")
    key = ["--network-key", str(tmp / "network.json")]

    peer_port = free_port()
    nbdkit = subprocess.Popen(
        ["nbdkit", "--foreground", "--exit-with-parent", "--port", str(peer_port), "memory", SIZE],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stack.callback(nbdkit.kill)
    _wait_port(peer_port)
    peer_uri = f"nbd://127.0.0.1:{peer_port}/"

    single = _spawn(stack, ["serve", "--size", SIZE, "--local", str(tmp / "r1"), "--replicas", "1"])
    node_args = []
    for i in range(3):
        port = _spawn(stack, ["node", "--dir", str(tmp / f"node{i}"), *key])
        node_args += ["--node", f"n{i}=127.0.0.1:{port}"]
    triple = _spawn(stack, ["serve", "--size", SIZE, "--replicas", "3", *node_args, *key])
    # The serving host also holds one replica (each host runs both): node n0 is replaced by a
    # replica inside the NBD server; n1 and n2 stay remote storage node processes.
    colocated = _spawn(
        stack,
        [
            *("serve", "--size", SIZE, "--replicas", "3"),
            *("--local-node", f"n0={tmp / 'colocated-n0'}"),
            *node_args[2:],
            *key,
        ],
    )
    ours = {
        "replicas=1": f"nbd://127.0.0.1:{single}/disk",
        "replicas=3": f"nbd://127.0.0.1:{triple}/disk",
        "replicas=3 (1 local + 2 remote)": f"nbd://127.0.0.1:{colocated}/disk",
    }

    for uri in (peer_uri, *ours.values()):  # pre-fill the working set so reads return data
        fio(uri, "write", "1m", 8, "bw", time_based=False)

    out: list[Comparison] = []
    for config, uri in ours.items():
        for shape in SHAPES:
            label, _rw, _bs, _qd, _metric, unit, higher = shape
            out.append(
                Comparison(
                    name=f"blockstore NBD {label}, {config}",
                    unit=unit,
                    higher_is_better=higher,
                    ours=_trial(f"blockstore {config}", uri, shape),
                    peer=_trial("nbdkit memory", peer_uri, shape),
                    repetitions=3,
                    note="fio ioengine=nbd; kbench shapes, ramp 1 s / run 3 s",
                )
            )
    return out
