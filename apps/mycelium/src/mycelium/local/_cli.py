"""`mycelium up` (the main job) and `down`, `status`, `nodes`, `kill`, `logs` acting on it."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import time
import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mycelium._errors import CLIError
from mycelium.local._netns import netns_hosts, require_netns
from mycelium.local._state import LocalNetwork, LocalNetworkError, default_dir
from mycelium.local._up import Layout, UpOptions, http_json, start, stop, wait_converged, watch


def register(sub: argparse._SubParsersAction[Any]) -> None:
    up = sub.add_parser(
        "up", help="start a local network (3 Sclerotia, 2 Rhizomorphs, 1 Hypha) and keep it running"
    )
    up.add_argument(
        "--dir", type=Path, default=None, help="where the network's files live (default ~/.mycelium/local)"
    )
    up.add_argument(
        "--nodes", default="3,2,1", metavar="S,R,H", help="Sclerotia, Rhizomorphs, Hyphae (default 3,2,1)"
    )
    up.add_argument(
        "--etcd",
        default="",
        metavar="URL",
        help="use this etcd (etcd://host:port) instead of the embedded Global DB",
    )
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the network to form")
    up.add_argument(
        "--exit-when-ready", action="store_true", help="stop the network once it has formed (smoke test)"
    )
    up.add_argument(
        "--netns",
        action="store_true",
        help="root only: run each node on its own host (network namespace), HTTP forwarded to loopback",
    )
    up.set_defaults(func=_cmd_up)
    for name, helptext, func in [
        ("down", "stop the local network", _cmd_down),
        ("status", "summarise the local network", _cmd_status),
        ("nodes", "list the nodes of the local network", _cmd_nodes),
    ]:
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--dir", type=Path, default=None)
        p.set_defaults(func=func)
    k = sub.add_parser("kill", help="chaos: SIGKILL a node of the local network")
    k.add_argument("node")
    k.add_argument("--dir", type=Path, default=None)
    k.set_defaults(func=_cmd_kill)
    lg = sub.add_parser("logs", help="print a node's log")
    lg.add_argument("node")
    lg.add_argument("--lines", "-n", type=int, default=50)
    lg.add_argument("--dir", type=Path, default=None)
    lg.set_defaults(func=_cmd_logs)


def _dir(args: argparse.Namespace) -> Path:
    return args.dir if args.dir is not None else default_dir()


def _parse_nodes(text: str) -> tuple[int, int, int]:
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() for p in parts):
        raise CLIError(f"--nodes {text!r}: expected three counts S,R,H such as 3,2,1")
    s, r, h = (int(p) for p in parts)
    if s < 1:
        raise CLIError("--nodes: a network needs at least one Sclerotium")
    return s, r, h


def _cmd_up(args: argparse.Namespace) -> int:
    s, r, h = _parse_nodes(args.nodes)
    if args.etcd and not args.etcd.startswith("etcd://"):
        raise CLIError(f"--etcd {args.etcd!r}: expected etcd://HOST:PORT[,HOST:PORT]")
    console = Console(soft_wrap=True)
    opts = UpOptions(
        _dir(args), sclerotia=s, rhizomorphs=r, hyphae=h, etcd=args.etcd, ready_timeout=args.timeout
    )

    def say(msg: str) -> None:
        console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {msg}")

    with contextlib.ExitStack() as stack:
        layout = None
        if args.netns:
            require_netns(args.etcd)
            layout = stack.enter_context(netns_hosts(opts, say))
        return _run_up(args, console, opts, say, layout)


def _run_up(
    args: argparse.Namespace,
    console: Console,
    opts: UpOptions,
    say: Callable[[str], None],
    layout: Layout | None,
) -> int:
    state, procs = start(opts, say, layout)
    try:
        with console.status("forming the network…"):
            wait_converged(state, procs, opts.ready_timeout, say)
        console.print(
            f"\n[bold green]network {state.network_id} is up[/bold green] ({len(state.nodes)} nodes)"
        )
        for n in state.sclerotia():
            console.print(f"  dashboard  http://{n.http}/        metrics  http://{n.http}/metrics")
        console.print(f"  Global DB  {state.globaldb}")
        console.print(
            "  try: mycelium status | mycelium nodes | mycelium kill sclerotium-1 | mycelium logs hypha-1"
        )
        if args.exit_when_ready:
            return 0
        console.print("Ctrl-C stops the network.")
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        watch(state, procs, say)
    except KeyboardInterrupt:
        console.print("\nstopping…")
    finally:
        stop(state, procs, say)
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    state = LocalNetwork.load(_dir(args))
    try:
        os.kill(state.supervisor_pid, signal.SIGTERM)
        print(f"asked the supervisor (pid {state.supervisor_pid}) to stop the network")
    except ProcessLookupError:
        for n in state.nodes:
            if n.alive():
                os.kill(n.pid, signal.SIGTERM)
        (Path(state.directory) / "network.json").unlink(missing_ok=True)
        print("the supervisor was gone; stopped the leftover nodes")
    return 0


def _live_view(state: LocalNetwork) -> dict[str, Any]:
    for n in state.sclerotia():
        if n.alive():
            try:
                view: dict[str, Any] = http_json(n.http, "/api/network", timeout=2.0)
                return view
            except (OSError, ValueError, urllib.error.URLError):
                continue
    raise LocalNetworkError("no Sclerotium of the local network answers; is it still running?")


def _cmd_status(args: argparse.Namespace) -> int:
    state = LocalNetwork.load(_dir(args))
    view = _live_view(state)
    if args.json:
        print(json.dumps(view, indent=2))
        return 0
    c = view["counts"]
    print(f"network {view['network_id']} (seen from {view['observer']})")
    print(f"  {c['alive']} alive, {c['suspect']} suspect, {c['dead']} dead of {len(view['nodes'])} nodes")
    for a in view["alerts"]:
        print(f"  ALERT {a['rule']}: {a['node']}")
    return 0


def _cmd_nodes(args: argparse.Namespace) -> int:
    state = LocalNetwork.load(_dir(args))
    try:
        seen = {n["name"]: n["state"] for n in _live_view(state)["nodes"]}
    except LocalNetworkError:
        seen = {}
    rows = [
        {
            "name": n.name,
            "role": n.role,
            "pid": n.pid,
            "process": "running" if n.alive() else "exited",
            "seen_as": seen.get(n.name, "unknown"),
            "mesh": n.mesh,
            "http": n.http,
        }
        for n in state.nodes
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table()
    for col in rows[0]:
        table.add_column(col)
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    console.print(table)
    return 0


def _cmd_kill(args: argparse.Namespace) -> int:
    node = LocalNetwork.load(_dir(args)).node(args.node)
    if not node.alive():
        raise CLIError(f"{node.name} is not running")
    os.kill(node.pid, signal.SIGKILL)
    print(f"killed {node.name} (pid {node.pid})")
    return 0


def _cmd_logs(args: argparse.Namespace) -> int:
    node = LocalNetwork.load(_dir(args)).node(args.node)
    try:
        lines = Path(node.log).read_text(errors="replace").splitlines()
    except OSError as exc:
        raise CLIError(f"cannot read {node.log}: {exc.strerror}") from None
    print("\n".join(lines[-args.lines :]))
    return 0
