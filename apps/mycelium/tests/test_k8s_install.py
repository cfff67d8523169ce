"""`mycelium install` into a temporary root: the plan, permissions, the download check, uninstall."""

from __future__ import annotations

import hashlib
import http.server
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mycelium.cli import main
from mycelium.k8s._install import (
    InstallError,
    InstallOptions,
    fetch_k3s,
    install,
    join_token,
    plan,
    uninstall,
)

SECRET = b"0123456789abcdef0123456789abcdef"
FAKE_K3S = b"\x7fELF this stands in for the K3s binary, which cannot be obtained here\n"


def opts(root: Path, **kw: object) -> InstallOptions:
    return InstallOptions(root=root, join_secret=SECRET, k3s_binary=FAKE_K3S, **kw)  # type: ignore[arg-type]


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_install_writes_the_minimal_core_with_hardened_permissions(tmp_path: Path) -> None:
    install(opts(tmp_path), report=lambda _m: None)
    assert mode(tmp_path / "etc/mycelium/join-token") == 0o600
    assert mode(tmp_path / "etc/rancher/k3s/config.yaml") == 0o600
    assert mode(tmp_path / "var/lib/mycelium") == 0o700
    assert mode(tmp_path / "usr/local/bin/k3s") == 0o755
    assert (tmp_path / "usr/local/bin/k3s").read_bytes() == FAKE_K3S
    unit = (tmp_path / "etc/systemd/system/mycelium-agent.service").read_text()
    assert "NoNewPrivileges=yes" in unit
    assert "ProtectSystem=strict" in unit
    assert join_token(SECRET) in (tmp_path / "etc/rancher/k3s/config.yaml").read_text()


def test_join_token_follows_the_network_secret() -> None:
    assert join_token(SECRET) == join_token(bytes(SECRET))
    assert join_token(SECRET) != join_token(SECRET[::-1])


def test_uninstall_reverses_install_and_keeps_changed_files(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/hostname").write_text("mine\n")
    install(opts(tmp_path), report=lambda _m: None)
    unit = tmp_path / "etc/systemd/system/k3s.service"
    unit.write_text(unit.read_text() + "# edited by the admin\n")
    uninstall(tmp_path, report=lambda _m: None)
    assert (tmp_path / "etc/hostname").read_text() == "mine\n"  # not ours: untouched
    assert unit.exists()  # changed since install: kept
    assert not (tmp_path / "usr/local/bin/k3s").exists()
    assert not (tmp_path / "etc/mycelium").exists()


def test_install_refuses_to_overwrite_or_to_run_twice(tmp_path: Path) -> None:
    install(opts(tmp_path), report=lambda _m: None)
    with pytest.raises(InstallError, match="already has"):
        install(opts(tmp_path), report=lambda _m: None)
    other = tmp_path / "other"
    (other / "usr/local/bin").mkdir(parents=True)
    (other / "usr/local/bin/k3s").write_bytes(b"someone else's")
    with pytest.raises(InstallError, match="not ours"):
        install(opts(other), report=lambda _m: None)


def test_secrets_never_appear_in_the_dry_run_output(tmp_path: Path) -> None:
    lines = [step.describe() for step in plan(opts(tmp_path))]
    assert not any(join_token(SECRET) in line for line in lines)
    assert any("secret, not shown" in line for line in lines)


def test_agent_role_needs_a_server() -> None:
    with pytest.raises(InstallError, match="--server"):
        InstallOptions(root=Path("/tmp"), join_secret=SECRET, role="agent")


@pytest.fixture
def release_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A loopback HTTP server laid out like the K3s release page."""
    rel = tmp_path / "releases" / "v1.31.4+k3s1"
    rel.mkdir(parents=True)
    (rel / "k3s").write_bytes(FAKE_K3S)
    (rel / "sha256sum-amd64.txt").write_text(f"{hashlib.sha256(FAKE_K3S).hexdigest()}  k3s\n")
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path / "releases"))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.RequestHandlerClass.log_message = lambda *a: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", rel
    finally:
        server.shutdown()


def test_download_is_verified_against_the_published_checksum(release_server: tuple[str, Path]) -> None:
    url, rel = release_server
    assert fetch_k3s("v1.31.4+k3s1", url) == FAKE_K3S
    (rel / "k3s").write_bytes(FAKE_K3S + b"tampered")
    with pytest.raises(InstallError, match="checksum mismatch"):
        fetch_k3s("v1.31.4+k3s1", url)


def test_cli_dry_run_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "isolation.key"
    secret.write_bytes(SECRET)
    root = tmp_path / "root"
    root.mkdir()
    code = main(
        [
            "install",
            "--root",
            str(root),
            "--dry-run",
            "--join-secret-file",
            str(secret),
            "--k3s-version",
            "v1",
        ]
    )
    assert code == 0
    assert list(root.iterdir()) == []
    out = capsys.readouterr().out
    assert "etc/systemd/system/k3s.service" in out
    assert "download K3s v1" in out


def test_cli_reports_a_missing_secret_file_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["install", "--root", str(tmp_path), "--join-secret-file", str(tmp_path / "nope")])
    assert code == 2
    assert "No such file" in capsys.readouterr().err
