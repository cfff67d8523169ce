"""Real NBD clients (qemu-img, qemu-io, nbdinfo, nbdcopy, fio) against our server."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def run(*args: str, timeout: float = 60) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{args[0]} failed: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_nbdinfo_sees_size_block_sizes_and_multi_conn(
    nbd_export: Callable[..., str], need_binary: Callable[[str], str]
) -> None:
    need_binary("nbdinfo")
    uri = nbd_export(size=8 << 20)
    info = json.loads(run("nbdinfo", "--json", uri))
    export = info["exports"][0]
    assert export["export-size"] == 8 << 20
    assert export["block_size_minimum"] == 512
    assert export["block_size_preferred"] == 4096
    assert export["block_size_maximum"] == 32 << 20
    assert export["can_multi_conn"] is True
    assert export["can_flush"] is True
    assert export["can_fua"] is True
    assert export["can_trim"] is True
    assert export["can_zero"] is True
    assert info["protocol"] == "newstyle-fixed"


def test_nbdinfo_lists_exports(nbd_export: Callable[..., str], need_binary: Callable[[str], str]) -> None:
    need_binary("nbdinfo")
    uri = nbd_export()
    out = run("nbdinfo", "--list", "--json", uri.rsplit("/", 1)[0])
    assert [e["export-name"] for e in json.loads(out)["exports"]] == ["disk"]


def test_qemu_img_writes_an_image_that_reads_back_byte_for_byte(
    nbd_export: Callable[..., str], need_binary: Callable[[str], str], tmp_path: Path
) -> None:
    need_binary("qemu-img")
    uri = nbd_export(size=8 << 20)
    src = tmp_path / "src.raw"
    payload = os.urandom(8 << 20)
    src.write_bytes(payload)
    run("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(src), uri)
    back = tmp_path / "back.raw"
    run("qemu-img", "convert", "-f", "raw", "-O", "raw", uri, str(back))
    assert back.read_bytes() == payload
    run("qemu-img", "compare", "-f", "raw", "-F", "raw", str(src), uri)


def test_nbdcopy_round_trip_with_multiple_connections(
    nbd_export: Callable[..., str], need_binary: Callable[[str], str], tmp_path: Path
) -> None:
    need_binary("nbdcopy")
    uri = nbd_export(size=8 << 20)
    src = tmp_path / "src.raw"
    payload = os.urandom(3 << 20) + bytes(2 << 20) + os.urandom(3 << 20)
    src.write_bytes(payload)
    run("nbdcopy", "--connections=4", str(src), uri)
    back = tmp_path / "back.raw"
    run("nbdcopy", "--connections=4", uri, str(back))
    assert back.read_bytes() == payload


def test_qemu_io_unaligned_write_trim_and_zero(
    nbd_export: Callable[..., str], need_binary: Callable[[str], str]
) -> None:
    need_binary("qemu-io")
    uri = nbd_export(size=4 << 20)
    cmds = [
        "write -P 0xab 0 64k",
        "write -P 0xcd 1536 512",  # sub-block write inside a 4 KiB block
        "read -P 0xab 0 1536",
        "read -P 0xcd 1536 512",
        "read -P 0xab 2048 62k",
        "discard 8k 8k",
        "read -P 0 8k 8k",
        "write -z 20k 4k",
        "read -P 0 20k 4k",
        "read -P 0xab 24k 40k",
        "flush",
    ]
    args = ["qemu-io", "-f", "raw"]
    for c in cmds:
        args += ["-c", c]
    out = run(*args, uri)
    assert "Pattern verification failed" not in out
    assert "error" not in out.lower()


def test_fio_random_writes_verify_crc32c(
    nbd_export: Callable[..., str], need_binary: Callable[[str], str], tmp_path: Path
) -> None:
    need_binary("fio")
    uri = nbd_export(size=16 << 20)
    port = uri.split(":")[2].split("/")[0]
    out = run(
        "fio",
        "--name=verify",
        "--ioengine=nbd",
        f"--uri=nbd://127.0.0.1:{port}/disk",
        "--rw=randwrite",
        "--bs=4k",
        "--iodepth=16",
        "--size=16m",
        "--verify=crc32c",
        "--verify_fatal=1",
        "--verify_state_save=0",
        "--do_verify=1",
        "--output-format=json",
        timeout=120,
    )
    job = json.loads(out[out.index("{") :])["jobs"][0]
    assert job["error"] == 0
    assert job["write"]["io_bytes"] == 16 << 20
    assert job["read"]["io_bytes"] == 16 << 20  # the verify pass read everything back


def test_garbage_client_then_good_client(
    nbd_export: Callable[..., str], need_binary: Callable[[str], str]
) -> None:
    import socket

    need_binary("qemu-io")
    uri = nbd_export(size=4 << 20)
    port = int(uri.split(":")[2].split("/")[0])
    garbage = [
        b"\xff" * 64,  # bad client flags
        b"\x00\x00\x00\x01" + b"IHAVEOPT" + b"\x00\x00\x00\x07" + b"\xff\xff\xff\xff",  # huge option
        b"\x00\x00\x00\x01" + b"IHAVEOPT\x00\x00\x00\x07\x00\x00\x00\x02\x00\x00",  # truncated GO
        b"\x00\x00\x00\x03"
        + b"IHAVEOPT\x00\x00\x00\x01\x00\x00\x00\x00"
        + b"\x25\x60\x95\x13"
        + b"\x00" * 40,
    ]
    for junk in garbage:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.recv(18)
            s.sendall(junk)
            s.settimeout(0.5)
            try:
                while s.recv(4096):
                    pass
            except TimeoutError:
                pass
    out = run("qemu-io", "-f", "raw", "-c", "write -P 0x5a 0 8k", "-c", "read -P 0x5a 0 8k", uri)
    assert "Pattern verification failed" not in out


def test_cli_serves_an_encrypted_volume_that_stores_no_plaintext(
    need_binary: Callable[[str], str], tmp_path: Path
) -> None:
    import sys

    need_binary("qemu-io")
    key = tmp_path / "volume.key"
    key.write_bytes(os.urandom(32))
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "blockstore", "serve", "--name", "secret", "--size", "4M",
            "--local", str(tmp_path / "vol"), "--replicas", "1", "--key-file", str(key),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        port = json.loads(proc.stdout.readline())["port"]
        uri = f"nbd://127.0.0.1:{port}/secret"
        out = run("qemu-io", "-f", "raw", "-c", "write -P 0x41 0 64k", "-c", "read -P 0x41 0 64k", uri)
        assert "Pattern verification failed" not in out
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    stored = (tmp_path / "vol" / "local0" / "data").read_bytes()
    assert b"A" * 64 not in stored
    assert stored[:4096] != bytes(4096)  # ciphertext was written
