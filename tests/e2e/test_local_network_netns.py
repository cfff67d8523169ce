"""`mycelium up --netns`: the local network with every node on a real, isolated host.

Starts the real supervisor as a person would (as root), talks to every node only through the
loopback addresses the state file records (the supervisor's forwarder into each namespace), checks
that the nodes really sit on the bridge's 10.77.0.x addresses, kills a Sclerotium inside its
namespace with `mycelium kill`, and checks that Ctrl-C removes every namespace of the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from meshnet.testhosts import HostNetwork, netns_unavailable_reason
from mycelium.local._netns import HttpForwarder

NAMES = {"sclerotium-1", "sclerotium-2", "sclerotium-3", "rhizomorph-1", "rhizomorph-2", "hypha-1"}


def get(address: str, path: str) -> Any:
    with urllib.request.urlopen(f"http://{address}{path}", timeout=3) as resp:
        return json.loads(resp.read())


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def mycelium(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mycelium.cli", *args, "--dir", str(home)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def run_namespaces(supervisor_pid: int) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(f"mycup-{supervisor_pid}-")]


@pytest.fixture
def netns_network(tmp_path: Path) -> Iterator[dict[str, Any]]:
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    home = tmp_path / "net"
    log_path = tmp_path / "up.log"
    log = open(log_path, "w")  # noqa: SIM115 (closed in teardown)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mycelium.cli", "up", "--netns", "--dir", str(home)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    info: dict[str, Any] = {"home": home, "proc": proc, "log": log_path}
    try:
        wait_for(lambda: "is up" in log_path.read_text() or proc.poll() is not None, 60, "`up --netns`")
        assert proc.poll() is None, f"`mycelium up --netns` exited:\n{log_path.read_text()}"
        info["state"] = json.loads((home / "network.json").read_text())
        yield info
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


@pytest.mark.integration
def test_up_netns_runs_each_node_on_its_own_host(netns_network: dict[str, Any]) -> None:
    state, home, proc = netns_network["state"], netns_network["home"], netns_network["proc"]
    nodes = {n["name"]: n for n in state["nodes"]}
    assert set(nodes) == NAMES
    assert len(run_namespaces(proc.pid)) == len(NAMES) + 1  # a host each, plus the bridge's
    # Every node answers on its loopback-forwarded address and says it lives on the bridge.
    for name, n in nodes.items():
        assert n["http"].startswith("127.0.0.1:"), n
        assert n["mesh"].startswith("10.77.0."), n
        status = get(n["http"], "/api/status")
        assert status["name"] == name
        me = next(m for m in status["members"] if m["name"] == name)
        assert me["mesh_address"].startswith("10.77.0."), me
    # A Sclerotium sees all six alive, each at a distinct bridge address.
    observer = nodes["sclerotium-1"]["http"]
    wait_for(lambda: get(observer, "/api/network")["counts"]["alive"] == 6, 30, "all six nodes alive")
    meshes = {m["name"]: m["mesh_address"] for m in get(observer, "/api/status")["members"]}
    assert set(meshes) == NAMES
    assert len({a.rsplit(":", 1)[0] for a in meshes.values()}) == 6
    assert all(a.startswith("10.77.0.") for a in meshes.values()), meshes
    # The CLI works unchanged against the forwarded addresses.
    listed = mycelium("--json", "nodes", home=home)
    assert listed.returncode == 0, listed.stderr
    assert all(r["process"] == "running" for r in json.loads(listed.stdout))

    victim = nodes["sclerotium-2"]
    killed = mycelium("kill", "sclerotium-2", home=home)
    assert killed.returncode == 0, killed.stderr
    wait_for(
        lambda: any(
            n["name"] == "sclerotium-2" and n["state"] == "dead"
            for n in get(observer, "/api/network")["nodes"]
        ),
        20,
        "sclerotium-2 to be seen dead",
    )
    status = mycelium("status", home=home)
    assert "5 alive" in status.stdout, status.stdout
    assert "1 dead" in status.stdout, status.stdout
    with pytest.raises(ProcessLookupError):
        os.kill(victim["pid"], 0)

    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0, netns_network["log"].read_text()
    assert run_namespaces(proc.pid) == []
    assert not (home / "network.json").exists()
    for n in nodes.values():
        with pytest.raises(ProcessLookupError):
            os.kill(n["pid"], 0)


def test_up_netns_without_root_is_a_one_line_error(tmp_path: Path) -> None:
    # The real command, with the process told it is not root (we may well be root here).
    code = (
        "import os, sys; os.geteuid = lambda: 1000; from mycelium.cli import main;"
        f" sys.exit(main(['up', '--netns', '--dir', {str(tmp_path / 'net')!r}]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: --netns needs root"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "net").exists()


def test_up_netns_refuses_an_external_etcd(tmp_path: Path) -> None:
    done = mycelium("up", "--netns", "--etcd", "etcd://127.0.0.1:2379", home=tmp_path / "net")
    assert done.returncode == 2
    assert "--netns cannot be combined with --etcd" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.integration
def test_forwarder_relays_into_a_namespace_bounded_and_closes() -> None:
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with HostNetwork(1, prefix="mycfwd") as net:
        host = net[0]
        server = host.socket()
        server.bind((host.address, 9000))
        server.listen(8)

        def echo() -> None:
            with contextlib.suppress(OSError):
                while True:
                    conn, _ = server.accept()
                    threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

        def serve_one(conn: socket.socket) -> None:
            with conn, contextlib.suppress(OSError):
                while data := conn.recv(4096):
                    conn.sendall(data.upper())

        threading.Thread(target=echo, daemon=True).start()
        fwd = HttpForwarder(max_connections=2, idle_timeout=1.0)
        port = fwd.add(host, 9000)
        fwd.start()
        try:
            held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
            for i, c in enumerate(held):
                c.sendall(f"hello {i}".encode())
                assert c.recv(100) == f"HELLO {i}".encode()
            # A third connection while two are open is refused by closing it.
            extra = socket.create_connection(("127.0.0.1", port), timeout=5)
            assert extra.recv(100) == b""
            extra.close()
            # Idle connections are cut after idle_timeout, which frees the slots.
            for c in held:
                assert c.recv(100) == b""
                c.close()
            again = socket.create_connection(("127.0.0.1", port), timeout=5)
            again.sendall(b"x" * 100_000)
            got = b""
            while len(got) < 100_000:
                got += again.recv(65536)
            assert got == b"X" * 100_000
            again.close()
        finally:
            fwd.close()
            server.close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
