"""`python -m bftconsensus replica` refuses bad input with a one-line error, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bftconsensus import ConfigError
from bftconsensus._serve import load_cluster, main


def test_missing_cluster_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["replica", "--cluster", str(tmp_path / "nope.json"), "--key", "k", "--network", "n"])
    assert code == 2
    err = capsys.readouterr().err
    assert "cluster file" in err
    assert "Traceback" not in err


def test_unknown_config_field_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"replicas": {}, "config": {"batchsize": 3}}))
    with pytest.raises(ConfigError, match="batchsize"):
        load_cluster(path)


def test_a_flag_must_be_true_or_false(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    replicas = {"r0": {"host": "127.0.0.1", "port": 7001, "public_key": "00" * 32}}
    path.write_text(json.dumps({"replicas": replicas, "config": {"check_all_requests": "false"}}))
    with pytest.raises(ConfigError, match=r"check_all_requests.*true or false"):
        load_cluster(path)
    path.write_text(json.dumps({"replicas": replicas, "config": {"check_all_requests": True}}))
    assert load_cluster(path)[2].check_all_requests is True


def test_malformed_replica_entry_says_what_is_expected(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"replicas": {"r0": {"host": "127.0.0.1"}}}))
    with pytest.raises(ConfigError, match="public_key"):
        load_cluster(path)


def test_a_taken_port_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    from meshnet import NetworkIdentity, NodeIdentity

    net = NetworkIdentity.generate("cli")
    net.save(tmp_path / "net.json")
    me = NodeIdentity.generate()
    me.save(tmp_path / "me.pem")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        doc = {
            "replicas": {me.node_id: {"host": "127.0.0.1", "port": port, "public_key": me.public_key.hex()}}
        }
        (tmp_path / "c.json").write_text(json.dumps(doc))
        argv = ["replica", "--cluster", str(tmp_path / "c.json"), "--key", str(tmp_path / "me.pem")]
        code = main([*argv, "--network", str(tmp_path / "net.json")])
    assert code == 2
    err = capsys.readouterr().err
    assert "in use" in err
    assert "Traceback" not in err
