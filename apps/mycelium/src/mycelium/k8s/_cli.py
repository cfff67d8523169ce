"""CLI subcommands for Kubernetes: ``k8s render``, ``k8s operator``, ``install``, ``uninstall``, ``recommend``."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from mycelium._errors import CLIError
from mycelium.k8s._install import InstallOptions, fetch_k3s, install, plan, uninstall
from mycelium.k8s._recommend import recommend_file
from mycelium.k8s._render import render, to_yaml
from mycelium.k8s._spec import EndophyteVMSpec, NetworkSpec, ServiceSpec


def register(sub: argparse._SubParsersAction[Any]) -> None:
    k8s = sub.add_parser("k8s", help="render manifests for K3s / run the operator")
    k8s_sub = k8s.add_subparsers(dest="k8s_command", metavar="COMMAND", required=True)

    r = k8s_sub.add_parser("render", help="print the manifests of a network as YAML")
    r.add_argument("--network", default="mycelium", help="network name (default: mycelium)")
    r.add_argument("--network-id", default="", help="the network id the Sclerotia join")
    r.add_argument("--namespace", default="mycelium-system")
    r.add_argument("--image", default=NetworkSpec.__attrs_attrs__.image.default)
    r.add_argument("--sclerotia", type=int, default=3, help="StatefulSet replicas (minimum 1, default 3)")
    r.add_argument("--storage", choices=["longhorn", "ceph-rbd", "existing"], default="longhorn")
    r.add_argument("--storage-class", default="", help="StorageClass name (required with --storage existing)")
    r.add_argument("--service", action="append", default=[], metavar="NAME", help="add a service namespace")
    r.add_argument("--vm", action="append", default=[], metavar="NAME:SERVICE", help="add an Endophyte VM")
    r.add_argument("--validate", action="store_true", help="validate against the Kubernetes schemas first")
    r.add_argument("--output", "-o", type=Path, help="write to this file instead of stdout")
    r.set_defaults(func=_cmd_render)

    op = k8s_sub.add_parser("operator", help="run the operator against the current kubeconfig")
    op.add_argument("--interval", type=float, default=10.0, help="seconds between reconciles (default 10)")
    op.add_argument("--once", action="store_true", help="reconcile once and exit")
    op.set_defaults(func=_cmd_operator)

    i = sub.add_parser("install", help="install the minimal core (K3s, agent, units) on this node")
    i.add_argument("--root", type=Path, default=Path("/"), help="install under this prefix (default /)")
    i.add_argument("--dry-run", action="store_true", help="print every action, change nothing")
    i.add_argument("--role", choices=["server", "agent"], default="server")
    i.add_argument("--server", default="", help="K3s server URL to join (with --role agent)")
    i.add_argument("--join-secret-file", type=Path, required=True, help="the network's isolation key file")
    src = i.add_mutually_exclusive_group()
    src.add_argument("--k3s-binary", type=Path, help="use this K3s binary")
    src.add_argument("--k3s-version", help="download this K3s release (e.g. v1.31.4+k3s1), checksum verified")
    i.add_argument("--k3s-mirror", default="https://github.com/k3s-io/k3s/releases/download")
    i.set_defaults(func=_cmd_install)

    u = sub.add_parser("uninstall", help="reverse `mycelium install`")
    u.add_argument("--root", type=Path, default=Path("/"))
    u.add_argument("--dry-run", action="store_true")
    u.set_defaults(func=_cmd_uninstall)

    rec = sub.add_parser(
        "recommend", help="Endomycete or Endophyte for an app (image config, compose, manifest)"
    )
    rec.add_argument("description", type=Path, help="OCI image config JSON, compose file, or Kubernetes YAML")
    rec.add_argument("--security", choices=["normal", "high"], default="normal")
    rec.set_defaults(func=_cmd_recommend)


def _cmd_render(args: argparse.Namespace) -> int:
    if args.sclerotia < 1:
        raise CLIError(f"--sclerotia {args.sclerotia}: at least 1 Sclerotium is needed")
    net = NetworkSpec(
        name=args.network,
        network_id=args.network_id,
        namespace=args.namespace,
        image=args.image,
        sclerotia=args.sclerotia,
        storage_backend=args.storage,
        storage_class=args.storage_class,
    )
    services = [ServiceSpec(name=s) for s in args.service]
    vms = []
    for item in args.vm:
        name, sep, service = item.partition(":")
        if not sep:
            raise CLIError(f"--vm {item!r}: expected NAME:SERVICE")
        vms.append(EndophyteVMSpec(name=name, service=service))
    objs = render(net, services, vms)
    if args.validate:
        from mycelium.k8s._validate import validate_object

        for obj in objs:
            validate_object(obj)
    text = json.dumps(objs, indent=2) if args.json else to_yaml(objs)
    if args.output:
        args.output.write_text(text)
        print(f"wrote {len(objs)} objects to {args.output}")
    else:
        print(text)
    return 0


def _cmd_operator(args: argparse.Namespace) -> int:
    try:
        import lightkube
    except ImportError:
        raise CLIError("the operator needs lightkube: pip install 'mycelium[k8s]'") from None
    import anyio

    from mycelium.k8s._controller import run

    async def main() -> None:
        try:
            client = lightkube.AsyncClient(field_manager="mycelium-operator")
        except Exception as exc:  # kubeconfig missing or unreadable: say so plainly
            raise CLIError(f"cannot reach a Kubernetes API server: {exc}") from None
        await run(client, interval=args.interval, iterations=1 if args.once else None)

    anyio.run(main)
    return 0


def _cmd_install(args: argparse.Namespace) -> int:
    try:
        secret = args.join_secret_file.read_bytes()
    except OSError as exc:
        raise CLIError(f"--join-secret-file {args.join_secret_file}: {exc.strerror}") from None
    binary = b""
    if args.k3s_binary:
        try:
            binary = args.k3s_binary.read_bytes()
        except OSError as exc:
            raise CLIError(f"--k3s-binary {args.k3s_binary}: {exc.strerror}") from None
    elif args.k3s_version and not args.dry_run:
        print(f"downloading K3s {args.k3s_version} and verifying its checksum...")
        binary = fetch_k3s(args.k3s_version, args.k3s_mirror)
    opts = InstallOptions(
        root=args.root, join_secret=secret, role=args.role, server_url=args.server, k3s_binary=binary
    )
    if args.root == Path("/") and os.geteuid() != 0 and not args.dry_run:
        raise CLIError("installing into / needs root (or use --root DIR / --dry-run)")
    if args.dry_run:
        steps = plan(opts)
        if args.k3s_version:
            print(f"download K3s {args.k3s_version} from {args.k3s_mirror} and verify sha256")
        for step in steps:
            print(f"{step.describe()}  [under {args.root}]")
        return 0
    install(opts)
    print(
        f"installed the Mycelium core under {args.root}; start it with: systemctl enable --now k3s mycelium-agent"
    )
    return 0


def _cmd_uninstall(args: argparse.Namespace) -> int:
    removed = uninstall(args.root, dry_run=args.dry_run)
    print(f"{'would remove' if args.dry_run else 'removed'} {removed} files under {args.root}")
    return 0


def _cmd_recommend(args: argparse.Namespace) -> int:
    recs = recommend_file(args.description, args.security)
    if args.json:
        print(json.dumps([r.as_json() for r in recs], indent=2))
        return 0
    for r in recs:
        where = f" in a {r.vdc} Virtual Distributed Computer" if r.vdc else ""
        print(f"{r.workload}: {r.model}{where}")
        for reason in r.reasons:
            print(f"  - {reason}")
    return 0
