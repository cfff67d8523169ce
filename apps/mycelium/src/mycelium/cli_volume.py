"""``mycelium volume``: create, list and serve replicated blockstore volumes from a local directory.

A volume lives in ``--dir``/NAME (default ``~/.mycelium/volumes``): ``volume.json`` holds its
shape, validated by :class:`blockstore.VolumeSpec` on every load, and ``replica<i>/`` one
:class:`blockstore.LocalReplica` each (sparse files). ``serve`` opens a :class:`blockstore.Volume`
over those replicas in this process and exports it with :func:`blockstore.serve_nbd` until
Ctrl-C, so qemu-img, nbdinfo or QEMU see a plain disk. In-process replicas are the simplest thing
the library's public API offers (its storage-node processes are internal); they protect against
bit rot on one copy and are rebuilt like any replica, but they share this machine's disk.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import attrs

from blockstore import (
    BlockstoreError,
    Keyring,
    LocalReplica,
    Replica,
    Volume,
    VolumeSpec,
    WritePolicy,
    serve_nbd,
)
from mycelium._errors import CLIError, MyceliumError

__all__ = ["register", "parse_size", "DEFAULT_DIR"]

DEFAULT_DIR = Path("~/.mycelium/volumes")
SPEC_FILE = "volume.json"
LOCK_FILE = "serve.lock"
_FORMAT = 1
_NBD_PORT = 10809  # IANA's port for NBD: the URI a user types needs no port then
_SIZE = re.compile(r"(\d+)\s*([KMGT]?)(?:i?B)?", re.IGNORECASE)
_SHIFT = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}


def parse_size(text: str) -> int:
    """``4096``, ``64K``, ``16M``, ``1G``, ``2T`` (binary multiples; ``GiB``/``GB`` read the same)."""
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(
            f"size {text!r}: expected a whole number of bytes with an optional K/M/G/T suffix (e.g. 1G)"
        )
    return int(m.group(1)) << _SHIFT[m.group(2).upper()]


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"port {text!r}: expected 0..65535 (0: any free port)")
    return int(text)


def human_size(n: int) -> str:
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            value = n / (1 << shift)
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} B"


@attrs.frozen
class StoredVolume:
    """A volume as kept under ``--dir``: its spec plus how to find its key (never the key)."""

    spec: VolumeSpec
    key_file: str | None = None
    key_check: str | None = None  # hash of the key: a wrong key file is refused before any I/O

    def as_json(self) -> dict[str, Any]:
        s = self.spec
        return {
            "format": _FORMAT,
            "name": s.name,
            "size": s.size,
            "block_size": s.block_size,
            "chunk_size": s.chunk_size,
            "replicas": s.replicas,
            "policy": {"ack": s.policy.ack, "min_replicas": s.policy.min_replicas},
            "encryption": None
            if self.key_file is None
            else {"key_file": self.key_file, "key_check": self.key_check},
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> StoredVolume:
        if raw.get("format") != _FORMAT:
            raise CLIError(f"format={raw.get('format')!r}: this mycelium reads format {_FORMAT}")
        policy = WritePolicy(ack=raw["policy"]["ack"], min_replicas=int(raw["policy"]["min_replicas"]))
        spec = VolumeSpec(
            name=str(raw["name"]),
            size=int(raw["size"]),
            block_size=int(raw["block_size"]),
            chunk_size=int(raw["chunk_size"]),
            replicas=int(raw["replicas"]),
            policy=policy,
        )
        enc = raw.get("encryption")
        if enc is None:
            return cls(spec)
        return cls(spec, key_file=str(enc["key_file"]), key_check=str(enc["key_check"]))


def _key_check(key: bytes) -> str:
    return hashlib.sha256(b"mycelium volume key check v1\0" + key).hexdigest()[:16]


def _volume_dir(args: argparse.Namespace, name: str) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        raise CLIError(
            f"volume name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return Path(args.dir).expanduser() / name


def _load(path: Path) -> StoredVolume:
    spec_path = path / SPEC_FILE
    try:
        raw = json.loads(spec_path.read_text())
        if not isinstance(raw, dict):
            raise TypeError("not a JSON object")
        return StoredVolume.from_json(raw)
    except FileNotFoundError:
        raise CLIError(
            f"no volume {path.name!r} under {path.parent} (create it: mycelium volume create {path.name} --size 1G)"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise MyceliumError(f"{spec_path}: not a valid volume spec ({type(exc).__name__}: {exc})") from None
    except BlockstoreError as exc:
        raise MyceliumError(f"{spec_path}: {exc}") from None


def _replica_dirs(path: Path, spec: VolumeSpec) -> dict[str, Path]:
    return {f"replica{i}": path / f"replica{i}" for i in range(spec.replicas)}


def _run(fn: Callable[..., Awaitable[None]], *args: Any) -> None:
    """``anyio.run`` that turns library and OS errors (also inside task groups) into one-line errors."""
    try:
        anyio.run(fn, *args)
    except BaseExceptionGroup as group:
        leaf: BaseException = group
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        if isinstance(leaf, MyceliumError):
            raise leaf from None
        if isinstance(leaf, BlockstoreError | OSError):
            raise MyceliumError(str(leaf)) from None
        raise
    except BlockstoreError as exc:
        raise MyceliumError(str(exc)) from None
    except OSError as exc:
        raise MyceliumError(f"{exc.filename or 'I/O'}: {exc.strerror or exc}") from None


def register(sub: argparse._SubParsersAction[Any]) -> None:
    vol = sub.add_parser(
        "volume",
        help="replicated virtual disks served over NBD (blockstore)",
        description="Create, list and serve replicated volumes kept in a local directory.",
    )
    vol_sub = vol.add_subparsers(dest="volume_command", metavar="COMMAND", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", default=str(DEFAULT_DIR), help=f"where volumes live (default {DEFAULT_DIR})")
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )

    c = vol_sub.add_parser(
        "create",
        parents=[common],
        help="create a volume",
        description="Create a volume (sparse: no space used yet).",
    )
    c.add_argument("name", help="volume name: letters, digits, '.', '_', '-' (also the NBD export name)")
    c.add_argument("--size", type=parse_size, required=True, help="size, e.g. 512M, 1G, 2T (multiple of 4K)")
    c.add_argument("--replicas", type=int, default=3, help="copies of every chunk, 1-9 (default 3)")
    c.add_argument(
        "--chunk-size", type=parse_size, default=4 << 20, help="placement/rebuild unit (default 4M)"
    )
    c.add_argument(
        "--min-replicas", type=int, help="refuse I/O below this many live copies (default min(2, replicas))"
    )
    c.add_argument(
        "--ack",
        choices=("all", "quorum"),
        default="all",
        help="acknowledge after all live replicas or a quorum",
    )
    c.add_argument("--encrypt", action="store_true", help="AES-256-GCM at rest (needs --key-file)")
    c.add_argument("--key-file", help="32-byte key; created with a fresh random key if it does not exist")
    c.set_defaults(func=_cmd_create)

    ls = vol_sub.add_parser(
        "list", parents=[common], help="list volumes", description="List the volumes in --dir."
    )
    ls.set_defaults(func=_cmd_list)

    s = vol_sub.add_parser(
        "serve",
        parents=[common],
        help="serve a volume over NBD until Ctrl-C",
        description="Serve a volume over NBD until Ctrl-C (or SIGTERM); prints the nbd:// URI for clients.",
    )
    s.add_argument("name", help="the volume to serve")
    s.add_argument(
        "--port", type=_port, default=_NBD_PORT, help=f"TCP port (default {_NBD_PORT}; 0: any free port)"
    )
    s.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default loopback: NBD has no authentication)",
    )
    s.add_argument("--key-file", help="key of an encrypted volume (default: the file given at create)")
    s.set_defaults(func=_cmd_serve)


def _read_or_make_key(path: Path) -> tuple[bytes, bool]:
    """The key in ``path``, or a fresh random one written there (mode 0600); True when created."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        fd = -1
    except OSError as exc:
        raise CLIError(f"--key-file {path}: {exc.strerror}") from None
    if fd >= 0:
        key = secrets.token_bytes(32)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        return key, True
    try:
        key = path.read_bytes()
    except OSError as exc:
        raise CLIError(f"--key-file {path}: {exc.strerror}") from None
    if len(key) != 32:
        raise CLIError(f"--key-file {path}: must hold exactly 32 bytes (an AES-256 key), it holds {len(key)}")
    return key, False


async def _lay_out(path: Path, spec: VolumeSpec) -> None:
    """Create the replicas now (sparse files, geometry recorded), so serve only ever opens them."""
    for node_id, directory in _replica_dirs(path, spec).items():
        await LocalReplica(node_id, directory, spec.size, spec.block_size, spec.chunk_size).aclose()


def _cmd_create(args: argparse.Namespace) -> int:
    path = _volume_dir(args, args.name)
    if args.key_file and not args.encrypt:
        raise CLIError("--key-file: only with --encrypt")
    if args.encrypt and not args.key_file:
        raise CLIError(
            "--encrypt: needs --key-file FILE (a new random key is written there if it does not exist)"
        )
    min_replicas = args.min_replicas if args.min_replicas is not None else min(2, max(args.replicas, 1))
    try:
        spec = VolumeSpec(
            name=args.name,
            size=args.size,
            chunk_size=args.chunk_size,
            replicas=args.replicas,
            policy=WritePolicy(ack=args.ack, min_replicas=min_replicas),
        )
    except BlockstoreError as exc:
        raise CLIError(f"volume create {args.name}: {exc}") from None
    if (path / SPEC_FILE).exists():
        raise CLIError(f"volume {args.name!r} already exists in {path.parent}")
    stored = StoredVolume(spec)
    key_created = False
    if args.encrypt:
        key_path = Path(args.key_file).expanduser().resolve()
        key, key_created = _read_or_make_key(key_path)
        stored = StoredVolume(spec, key_file=str(key_path), key_check=_key_check(key))
    existed = path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
        _run(_lay_out, path, spec)
        tmp = path / f".{SPEC_FILE}.tmp"
        tmp.write_text(json.dumps(stored.as_json(), indent=2) + "\n")
        tmp.replace(path / SPEC_FILE)
    except (OSError, BlockstoreError, MyceliumError) as exc:
        if not existed:  # leave nothing half-made behind
            shutil.rmtree(path, ignore_errors=True)
        if key_created and stored.key_file:
            Path(stored.key_file).unlink(missing_ok=True)
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise MyceliumError(f"cannot create volume under {path}: {detail}") from None
    if args.json:
        print(json.dumps({**stored.as_json(), "path": str(path), "key_created": key_created}, indent=2))
        return 0
    print(
        f"created volume {spec.name!r}: {human_size(spec.size)}, {spec.replicas} replica(s), "
        f"{human_size(spec.chunk_size)} chunks, ack={spec.policy.ack}, min {spec.policy.min_replicas} live"
    )
    print(f"  in {path}")
    if stored.key_file:
        note = "new random key written to" if key_created else "key from"
        print(
            f"  encrypted at rest (AES-256-GCM), {note} {stored.key_file}: keep it safe, it is not stored elsewhere"
        )
    print(f"serve it with: mycelium volume serve {spec.name} --dir {Path(args.dir).expanduser()}")
    return 0


def _allocated(path: Path) -> int:
    """Bytes the volume's files really occupy on disk (sparse files count only written blocks)."""
    total = 0
    for f in path.rglob("*"):
        with contextlib.suppress(OSError):
            if f.is_file():
                total += f.stat().st_blocks * 512
    return total


@contextlib.contextmanager
def _serve_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on the volume: two front ends on one set of replicas would corrupt it."""
    try:
        fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise MyceliumError(f"cannot lock volume {path.name!r} in {path}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CLIError(f"volume {path.name!r} is already being served by another process") from None
        yield
    finally:
        os.close(fd)


def _is_served(path: Path) -> bool | None:
    """Whether a process holds the serve lock (None: cannot tell, e.g. no permission)."""
    try:
        fd = os.open(path / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)
    return False


def _cmd_list(args: argparse.Namespace) -> int:
    root = Path(args.dir).expanduser()
    rows: list[dict[str, Any]] = []
    if root.is_dir():
        for path in sorted(p for p in root.iterdir() if (p / SPEC_FILE).is_file()):
            try:
                stored = _load(path)
            except MyceliumError as exc:
                rows.append({"name": path.name, "error": str(exc)})
                continue
            rows.append({**stored.as_json(), "allocated": _allocated(path), "serving": _is_served(path)})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no volumes in {root} (create one: mycelium volume create NAME --size 1G)")
        return 0
    header = ("NAME", "SIZE", "REPLICAS", "CHUNK", "ENCRYPTED", "ON DISK", "STATE")
    table = [header]
    for r in rows:
        if "error" in r:
            table.append((r["name"], "-", "-", "-", "-", "-", "unreadable"))
            continue
        table.append(
            (
                r["name"],
                human_size(r["size"]),
                str(r["replicas"]),
                human_size(r["chunk_size"]),
                "yes" if r["encryption"] else "no",
                human_size(r["allocated"]),
                {True: "serving", False: "idle", None: "unknown"}[r["serving"]],
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    for r in rows:
        if "error" in r:
            print(f"{r['name']}: {r['error']}", file=sys.stderr)
    return 0


def _keyring(stored: StoredVolume, override: str | None) -> Keyring | None:
    if stored.key_file is None:
        if override:
            raise CLIError(f"--key-file: volume {stored.spec.name!r} is not encrypted")
        return None
    key_path = Path(override or stored.key_file).expanduser()
    try:
        key = key_path.read_bytes()
    except OSError as exc:
        raise CLIError(
            f"--key-file {key_path}: {exc.strerror} (volume {stored.spec.name!r} is encrypted)"
        ) from None
    if _key_check(key) != stored.key_check:
        raise CLIError(f"--key-file {key_path}: not the key volume {stored.spec.name!r} was created with")
    return Keyring({1: key}, 1)


def _uri(host: str, port: int, name: str) -> str:
    """The URI a client on this machine uses (a wildcard listen address is not one to connect to)."""
    with contextlib.suppress(ValueError):
        ip = ipaddress.ip_address(host)
        if ip.is_unspecified:
            ip = ipaddress.ip_address("127.0.0.1" if ip.version == 4 else "::1")
        host = f"[{ip}]" if ip.version == 6 else str(ip)
    return f"nbd://{host}:{port}/{name}"


async def _serve(args: argparse.Namespace, path: Path, stored: StoredVolume, keyring: Keyring | None) -> None:
    spec = stored.spec
    replicas: dict[str, Replica] = {}
    try:
        for node_id, directory in _replica_dirs(path, spec).items():
            replicas[node_id] = LocalReplica(node_id, directory, spec.size, spec.block_size, spec.chunk_size)
        async with Volume(spec, replicas, keyring=keyring) as volume:
            async with contextlib.AsyncExitStack() as stack:
                try:
                    server = await stack.enter_async_context(
                        serve_nbd({spec.name: volume}, args.host, args.port)
                    )
                except OSError as exc:
                    raise CLIError(
                        f"--port {args.port} on {args.host}: {exc.strerror or exc} "
                        "(choose another with --port, or 0 for any free port)"
                    ) from None
                _announce(args, stored, _uri(args.host, server.port, spec.name), server.port)
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        break
            await volume.flush()  # make everything acknowledged durable before the replicas close
    finally:
        for replica in replicas.values():
            await replica.aclose()
    if not args.json:
        print(f"stopped; volume {spec.name!r} flushed to {path}", flush=True)


def _announce(args: argparse.Namespace, stored: StoredVolume, uri: str, port: int) -> None:
    spec = stored.spec
    if args.json:
        print(
            json.dumps({"name": spec.name, "uri": uri, "host": args.host, "port": port, "size": spec.size}),
            flush=True,
        )
        return
    enc = ", encrypted" if stored.key_file else ""
    print(
        f"serving volume {spec.name!r} ({human_size(spec.size)}, {spec.replicas} in-process replica(s){enc}) at"
    )
    print(f"  {uri}")
    print(f"try:  nbdinfo {uri}")
    print(f"      qemu-img info {uri}")
    print("Ctrl-C to stop", flush=True)


def _cmd_serve(args: argparse.Namespace) -> int:
    path = _volume_dir(args, args.name)
    stored = _load(path)
    keyring = _keyring(stored, args.key_file)
    with contextlib.suppress(ValueError):
        if not ipaddress.ip_address(args.host).is_loopback:
            print(
                f"warning: serving on {args.host}: NBD has no authentication, anyone who can reach "
                f"this port can read and write the volume",
                file=sys.stderr,
            )
    with _serve_lock(path):
        _run(_serve, args, path, stored, keyring)
    return 0
