"""`mycelium up`: a whole network of real node processes on this machine, with one command.

The supervisor creates the network identity, enrols every node (key, certificate, trust files),
starts the nodes as separate processes on loopback (Sclerotia first in the seed list), shows
their progress until the membership has converged, prints where the dashboards and metrics are,
and then watches. Ctrl-C (or SIGTERM) stops every node and removes the state file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from meshnet import NetworkIdentity, free_port
from mycelium.local._state import LocalNetwork, LocalNetworkError, NodeEntry
from mycelium.node._enrol import enrol


@attrs.frozen
class UpOptions:
    directory: Path
    sclerotia: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    rhizomorphs: int = attrs.field(default=2, validator=attrs.validators.ge(0))
    hyphae: int = attrs.field(default=1, validator=attrs.validators.ge(0))
    etcd: str = ""
    host: str = "127.0.0.1"
    name: str = "local"
    ready_timeout: float = 60.0


def plan_nodes(opts: UpOptions) -> list[tuple[str, str]]:
    return (
        [(f"sclerotium-{i + 1}", "dedicated-sclerotium") for i in range(opts.sclerotia)]
        + [(f"rhizomorph-{i + 1}", "rhizomorph") for i in range(opts.rhizomorphs)]
        + [(f"hypha-{i + 1}", "hypha") for i in range(opts.hyphae)]
    )


def http_json(address: str, path: str, timeout: float = 1.0) -> Any:
    with urllib.request.urlopen(f"http://{address}{path}", timeout=timeout) as resp:
        return json.loads(resp.read())


def is_ready(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}/readyz", timeout=1.0) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _check_not_running(directory: Path) -> None:
    try:
        existing = LocalNetwork.load(directory)
    except LocalNetworkError:
        return
    try:
        os.kill(existing.supervisor_pid, 0)
    except ProcessLookupError:
        for n in existing.nodes:  # leftovers of a supervisor that died: stop them
            if n.alive():
                os.kill(n.pid, signal.SIGKILL)
        return
    raise LocalNetworkError(
        f"a local network is already running in {directory} (supervisor pid {existing.supervisor_pid});"
        " stop it with Ctrl-C in its terminal or `mycelium down`"
    )


@attrs.frozen
class NodePlan:
    """Where one node runs: the address it listens on, and where the supervisor reaches its HTTP.

    On loopback both are the node's own address; with ``--netns`` (see ``_netns``) the node listens
    on its host's bridge address and ``http`` is the supervisor's loopback forwarder.
    """

    name: str
    role: str
    host: str
    mesh_port: int
    http_port: int
    http: str
    command_prefix: tuple[str, ...] = ()  # e.g. ("ip", "netns", "exec", NAME)


Layout = Callable[[list[tuple[str, str]]], list[NodePlan]]


def loopback_layout(opts: UpOptions) -> Layout:
    """Every node on ``opts.host`` with two free ports of its own."""

    def layout(planned: list[tuple[str, str]]) -> list[NodePlan]:
        plans = []
        for name, role in planned:
            mesh_port, http_port = free_port(opts.host), free_port(opts.host)
            plans.append(NodePlan(name, role, opts.host, mesh_port, http_port, f"{opts.host}:{http_port}"))
        return plans

    return layout


def start(
    opts: UpOptions, say: Callable[[str], None], layout: Layout | None = None
) -> tuple[LocalNetwork, dict[str, subprocess.Popen[bytes]]]:
    directory = opts.directory
    _check_not_running(directory)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    directory.chmod(0o700)
    network = NetworkIdentity.generate(opts.name)
    network.save(directory / "network.key")
    say(f"created network {network.network_id} in {directory}")
    globaldb = opts.etcd or f"sqlite:{directory / 'globaldb.sqlite'}"
    plans = (layout or loopback_layout(opts))(plan_nodes(opts))
    seeds = [f"{p.host}:{p.mesh_port}" for p in plans if p.role.endswith("sclerotium")]
    procs: dict[str, subprocess.Popen[bytes]] = {}
    entries = []
    for plan in plans:
        name, role = plan.name, plan.role
        data_dir = directory / "nodes" / name
        enrol(network, data_dir, role, f"{plan.host}:{plan.mesh_port}")
        mesh_port, http_port = plan.mesh_port, plan.http_port
        log_path = data_dir / "node.log"
        cmd = [
            *plan.command_prefix, sys.executable, "-m", "mycelium.cli", "node", "start",
            "--name", name, "--role", role, "--data-dir", str(data_dir),
            "--host", plan.host, "--mesh-port", str(mesh_port), "--http-port", str(http_port),
            "--globaldb", globaldb,
        ]  # fmt: skip
        for seed in seeds:
            if seed != f"{plan.host}:{mesh_port}":
                cmd += ["--seed", seed]
        with open(log_path, "ab") as log:
            procs[name] = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        entries.append(
            NodeEntry(
                name=name,
                role=role,
                pid=procs[name].pid,
                data_dir=str(data_dir),
                log=str(log_path),
                mesh=f"{plan.host}:{mesh_port}",
                http=plan.http,
            )
        )
        say(f"started {name} ({role}) pid {procs[name].pid}")
    state = LocalNetwork(str(directory), network.network_id, os.getpid(), globaldb, tuple(entries))
    state.save()
    return state, procs


def wait_converged(
    state: LocalNetwork, procs: dict[str, subprocess.Popen[bytes]], timeout: float, say: Callable[[str], None]
) -> None:
    """Until every node answers ready and a Sclerotium sees all of them alive."""
    deadline = time.monotonic() + timeout
    ready: set[str] = set()
    last = ""
    while time.monotonic() < deadline:
        for n in state.nodes:
            if procs[n.name].poll() is not None:
                raise LocalNetworkError(
                    f"{n.name} exited with status {procs[n.name].returncode}; see {n.log}"
                )
            if n.name not in ready and is_ready(n.http):
                ready.add(n.name)
        alive = 0
        try:
            view = http_json(state.sclerotia()[0].http, "/api/network")
            alive = int(view["counts"]["alive"])
        except (OSError, ValueError, KeyError, urllib.error.URLError):
            pass
        line = f"{len(ready)}/{len(state.nodes)} nodes ready, {alive}/{len(state.nodes)} seen alive by {state.sclerotia()[0].name}"
        if line != last:
            say(line)
            last = line
        if len(ready) == len(state.nodes) and alive == len(state.nodes):
            return
        time.sleep(0.3)
    raise LocalNetworkError(
        f"the network did not converge within {timeout:.0f} s ({last}); see the node logs"
    )


def stop(state: LocalNetwork, procs: dict[str, subprocess.Popen[bytes]], say: Callable[[str], None]) -> None:
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for name, p in procs.items():
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"{name} did not stop within 10 s; killing it")
            p.kill()
            p.wait()
    (Path(state.directory) / "network.json").unlink(missing_ok=True)
    say("all nodes stopped")


def watch(state: LocalNetwork, procs: dict[str, subprocess.Popen[bytes]], say: Callable[[str], None]) -> None:
    """Report nodes that exit (e.g. killed by `mycelium kill`) until interrupted."""
    reported: set[str] = set()
    while True:
        for name, p in procs.items():
            if name not in reported and p.poll() is not None:
                reported.add(name)
                say(f"{name} exited (status {p.returncode}); the rest of the network carries on")
        time.sleep(0.5)
