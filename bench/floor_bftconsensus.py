"""How far PBFT in Python is from etcd here, with and without the signatures the issue requires.

``python bench/floor_bftconsensus.py [--repetitions N]``

Runs, alternating in one run: the etcd cluster of the bftconsensus benchmark; the same n=4 PBFT
cluster as that benchmark; and a second n=4 cluster whose processes (replicas and load generator)
have libsodium's Ed25519 sign and verify replaced by no-ops, so nothing is signed or checked.
The second cluster is a measuring device only, never a configuration: it is what our replicas,
driver and meshnet transport cost with cryptography taken out. Each run gives puts per second
and CPU per put summed over every process, load generator included (the same measure as the
benchmark's "CPU per put" row).

What it tells: the signed-minus-unsigned CPU is what Ed25519 costs per operation, and the unsigned
cluster's ratio to etcd is the most that removing cryptography altogether could buy.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import nacl.bindings

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_bftconsensus as bench  # noqa: E402

from bftconsensus._serve import backend_options  # noqa: E402

_NO_SIGNATURES = '''\
"""Measuring device of bench/floor_bftconsensus.py: Ed25519 through libsodium becomes a no-op."""
import nacl.bindings

nacl.bindings.crypto_sign = lambda message, sk: bytes(64) + message
nacl.bindings.crypto_sign_open = lambda signed, pk: signed[64:]
'''


@contextlib.contextmanager
def _unsigned_here() -> Iterator[None]:
    """Sign and verify as no-ops in this process (the load generator) for the duration."""
    saved = nacl.bindings.crypto_sign, nacl.bindings.crypto_sign_open
    nacl.bindings.crypto_sign = lambda message, sk: bytes(64) + message
    nacl.bindings.crypto_sign_open = lambda signed, pk: signed[64:]
    try:
        yield
    finally:
        nacl.bindings.crypto_sign, nacl.bindings.crypto_sign_open = saved


def _unsigned_cluster(stack: contextlib.ExitStack, tmp: Path) -> bench.PbftCluster:
    """An n=4 cluster whose replica processes start with the no-op signatures (sitecustomize)."""
    hook = tmp / "unsigned"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_NO_SIGNATURES)
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(hook), saved) if p)
    try:
        sub = tmp / "unsigned-cluster"
        sub.mkdir()
        return bench.PbftCluster(stack, 4, sub)
    finally:
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved


def _pbft(cluster: bench.PbftCluster) -> tuple[float, float]:
    cluster.round += 1
    tp, _lat, cpu = anyio.run(
        cluster._load, cluster.clients[: bench.CLIENTS], bench.DURATION, backend_options=backend_options()
    )
    return tp, cpu


def _etcd(etcd: bench.EtcdCluster) -> tuple[float, float]:
    tp, _lat, cpu = anyio.run(etcd._run, bench.CLIENTS, bench.DURATION)
    return tp, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repetitions", type=int, default=3, help="alternating runs of each (default 3)")
    args = parser.parse_args()
    if args.repetitions < 1:
        parser.error("--repetitions must be at least 1")
    if not Path("/usr/bin/etcd").exists():
        print("error: /usr/bin/etcd is not installed (Debian package etcd-server)", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="floor-bft-")))
        print("starting etcd and two n=4 PBFT clusters...", file=sys.stderr)
        etcd = bench.EtcdCluster(stack, tmp)
        signed = bench.PbftCluster(stack, 4, tmp)
        unsigned = _unsigned_cluster(stack, tmp)

        def unsigned_run() -> tuple[float, float]:
            with _unsigned_here():
                return _pbft(unsigned)

        trials: dict[str, Callable[[], tuple[float, float]]] = {
            "etcd, 3 members": lambda: _etcd(etcd),
            "PBFT n=4, Ed25519 (as the issue asks)": lambda: _pbft(signed),
            "PBFT n=4, no signatures at all": unsigned_run,
        }
        for run in trials.values():  # warm-up: connections, caches, JIT-free but page-cache warm
            run()
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in trials}
        for rep in range(args.repetitions):
            print(f"repetition {rep + 1}/{args.repetitions}...", file=sys.stderr)
            for name, run in trials.items():
                samples[name].append(run())

    medians = {
        name: (statistics.median(t for t, _ in runs), statistics.median(c for _, c in runs))
        for name, runs in samples.items()
    }
    etcd_tp, etcd_cpu = medians["etcd, 3 members"]
    print(f"\n{bench.CLIENTS} concurrent clients, {bench.DURATION:g} s runs, medians of {args.repetitions}:")
    for name, (tp, cpu) in medians.items():
        print(
            f"  {name:40} {tp:7,.0f} puts/s ({tp / etcd_tp:.2f}x etcd), "
            f"{cpu:5,.0f} us CPU per put, every process ({cpu / etcd_cpu:.2f}x etcd)"
        )
    signed_cpu = medians["PBFT n=4, Ed25519 (as the issue asks)"][1]
    unsigned_tp, unsigned_cpu = medians["PBFT n=4, no signatures at all"]
    print(
        f"\nEd25519 costs {signed_cpu - unsigned_cpu:,.0f} us of CPU per operation here; without any "
        f"cryptography PBFT in Python would reach {unsigned_tp / etcd_tp:.2f}x etcd's puts/s "
        f"and {unsigned_cpu / etcd_cpu:.2f}x its CPU per put."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
