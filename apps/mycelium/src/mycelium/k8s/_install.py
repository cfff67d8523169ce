"""``mycelium install``: put exactly the minimal core on a node (R1.1, R2.1, R2.5).

The core is the K3s runtime, the mycelium agent, its systemd units, hardened permissions and a
join token derived from the network identity. Everything else (management services, storage,
replication) runs inside the network afterwards. The installer first builds a *plan* (a list of
steps), so ``--dry-run`` prints exactly what a real run does, and every step it takes is written
to an install manifest that ``mycelium uninstall`` reverses.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shlex
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import attrs

from mycelium._errors import MyceliumError

DEFAULT_K3S_MIRROR = "https://github.com/k3s-io/k3s/releases/download"
MANIFEST = "var/lib/mycelium/install-manifest.json"
TOKEN_CONTEXT = b"mycelium k3s join token v1"


class InstallError(MyceliumError):
    """The installation cannot proceed; nothing past the failing step was changed."""


@attrs.frozen
class MakeDir:
    path: str
    mode: int

    def describe(self) -> str:
        return f"mkdir -m {self.mode:o} {self.path}"


@attrs.frozen
class WriteFile:
    path: str
    content: bytes = attrs.field(repr=False)
    mode: int
    secret: bool = False

    def describe(self) -> str:
        what = "<secret, not shown>" if self.secret else f"{len(self.content)} bytes"
        return f"write {self.path} (mode {self.mode:o}, {what})"


Step = MakeDir | WriteFile


@attrs.frozen
class InstallOptions:
    root: Path
    join_secret: bytes = attrs.field(repr=False)
    role: str = attrs.field(default="server", validator=attrs.validators.in_(("server", "agent")))
    server_url: str = ""
    k3s_binary: bytes = attrs.field(default=b"", repr=False)
    python: str = sys.executable

    def __attrs_post_init__(self) -> None:
        if self.role == "agent" and not self.server_url:
            raise InstallError("--role agent needs --server URL (the K3s server to join)")
        if len(self.join_secret) < 16:
            raise InstallError(
                "the join secret must be at least 16 bytes (use the network's isolation key file)"
            )


def join_token(secret: bytes) -> str:
    """A K3s cluster token derived from the network's secret: same network, same token, no copy."""
    return "mycelium-" + hmac.new(secret, TOKEN_CONTEXT, hashlib.sha256).hexdigest()


def fetch_k3s(version: str, mirror: str = DEFAULT_K3S_MIRROR, arch: str = "amd64") -> bytes:
    """Download the K3s binary and verify it against the release's published sha256 list."""
    suffix = "" if arch == "amd64" else f"-{arch}"
    base = f"{mirror.rstrip('/')}/{version}"
    try:
        with urllib.request.urlopen(f"{base}/k3s{suffix}", timeout=60) as resp:  # noqa: S310 (https/http only)
            binary: bytes = resp.read()
        with urllib.request.urlopen(f"{base}/sha256sum-{arch}.txt", timeout=60) as resp:  # noqa: S310
            sums = resp.read().decode()
    except OSError as exc:
        raise InstallError(f"could not download K3s {version} from {base}: {exc}") from None
    expected = {
        name.strip(): digest
        for digest, name in (line.split(maxsplit=1) for line in sums.splitlines() if line)
    }
    name = f"k3s{suffix}"
    if name not in expected:
        raise InstallError(f"{base}/sha256sum-{arch}.txt lists no checksum for {name}")
    actual = hashlib.sha256(binary).hexdigest()
    if actual != expected[name]:
        raise InstallError(
            f"K3s {version} checksum mismatch: published {expected[name]}, downloaded {actual}"
        )
    return binary


def _unit(description: str, exec_start: str, after: str, hardening: list[str]) -> bytes:
    lines = [
        "[Unit]",
        f"Description={description}",
        "Wants=network-online.target",
        f"After=network-online.target {after}".rstrip(),
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={exec_start}",
        "Restart=always",
        "RestartSec=5s",
        *hardening,
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines).encode()


def plan(opts: InstallOptions) -> list[Step]:
    """The steps of an installation, in order; pure (reads nothing, writes nothing)."""
    token = join_token(opts.join_secret)
    k3s_cmd = "/usr/local/bin/k3s server" if opts.role == "server" else "/usr/local/bin/k3s agent"
    k3s_config = f"token: {token}\n" + (f"server: {opts.server_url}\n" if opts.server_url else "")
    agent_launcher = f'#!/bin/sh\nexec {shlex.quote(opts.python)} -m mycelium.cli node start "$@"\n'
    steps: list[Step] = [
        MakeDir("etc/mycelium", 0o750),
        MakeDir("etc/rancher/k3s", 0o700),
        MakeDir("var/lib/mycelium", 0o700),
        MakeDir("usr/local/bin", 0o755),
        MakeDir("etc/systemd/system", 0o755),
        WriteFile("etc/mycelium/join-token", token.encode() + b"\n", 0o600, secret=True),
        WriteFile("etc/rancher/k3s/config.yaml", k3s_config.encode(), 0o600, secret=True),
        WriteFile("usr/local/bin/mycelium-agent", agent_launcher.encode(), 0o755),
        WriteFile(
            "etc/systemd/system/mycelium-agent.service",
            _unit(
                "Mycelium node agent",
                "/usr/local/bin/mycelium-agent --data-dir /var/lib/mycelium",
                "k3s.service",
                [
                    "NoNewPrivileges=yes",
                    "ProtectSystem=strict",
                    "ProtectHome=yes",
                    "PrivateTmp=yes",
                    "ReadWritePaths=/var/lib/mycelium",
                    "AmbientCapabilities=CAP_NET_ADMIN",
                    "CapabilityBoundingSet=CAP_NET_ADMIN",
                ],
            ),
            0o644,
        ),
        WriteFile(
            "etc/systemd/system/k3s.service",
            _unit(
                "K3s (Mycelium network runtime)",
                k3s_cmd,
                "",
                ["Delegate=yes", "KillMode=process", "LimitNOFILE=1048576", "TasksMax=infinity"],
            ),
            0o644,
        ),
    ]
    if opts.k3s_binary:
        steps.insert(5, WriteFile("usr/local/bin/k3s", opts.k3s_binary, 0o755))
    return steps


def install(opts: InstallOptions, report: Callable[[str], None] = print) -> list[Step]:
    """Carry out the plan under ``opts.root``, recording what was created for uninstall."""
    root = opts.root
    manifest_path = root / MANIFEST
    if manifest_path.exists():
        raise InstallError(
            f"{root} already has a Mycelium installation ({manifest_path}); uninstall it first"
        )
    created: list[dict[str, object]] = []
    steps = plan(opts)
    for step in steps:
        target = root / step.path
        if isinstance(step, MakeDir):
            existed = target.exists()
            target.mkdir(parents=True, exist_ok=True)
            if not existed:
                os.chmod(target, step.mode)
                created.append({"dir": step.path})
        else:
            if target.exists():
                raise InstallError(f"{target} exists and is not ours; refusing to overwrite it")
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, step.mode)
            with os.fdopen(fd, "wb") as f:
                f.write(step.content)
            os.chmod(target, step.mode)
            created.append({"file": step.path, "sha256": hashlib.sha256(step.content).hexdigest()})
        report(step.describe())
    fd = os.open(manifest_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"created": created}, f, indent=1)
    return steps


def uninstall(root: Path, dry_run: bool = False, report: Callable[[str], None] = print) -> int:
    """Remove what ``install`` created, newest first; a file changed since install is kept."""
    manifest_path = root / MANIFEST
    if not manifest_path.exists():
        raise InstallError(f"no Mycelium installation under {root} (no {MANIFEST})")
    try:
        created = json.loads(manifest_path.read_text())["created"]
    except (ValueError, KeyError) as exc:
        raise InstallError(f"{manifest_path} is damaged ({exc}); remove the files by hand") from None
    removed = 0
    for entry in reversed(created):
        if "file" in entry:
            target = root / entry["file"]
            if not target.exists():
                continue
            if hashlib.sha256(target.read_bytes()).hexdigest() != entry["sha256"]:
                report(f"keep {entry['file']} (changed since install)")
                continue
            report(f"remove {entry['file']}")
            if not dry_run:
                target.unlink()
            removed += 1
    if not dry_run:
        manifest_path.unlink()
    for entry in reversed(created):
        if "dir" in entry:
            target = root / entry["dir"]
            if target.is_dir() and (dry_run or not any(target.iterdir())):
                report(f"rmdir {entry['dir']}")
                if not dry_run:
                    target.rmdir()
    return removed
