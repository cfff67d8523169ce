"""Structured JSON logging: one event per line, bound context, secrets redacted by key name."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

import obs


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = obs.configure_logging("DEBUG", out)
    yield out
    root.removeHandler(handler)
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_an_event_is_one_json_line_with_context(stream: io.StringIO) -> None:
    log = obs.get_logger("meshnet.tls", node_id="n1", network_id="net-a", component="meshnet")
    log.info("handshake_refused", reason="wrong_network", peer="10.0.0.2")
    (line,) = lines(stream)
    assert line["event"] == "handshake_refused"
    assert line["level"] == "info"
    assert line["logger"] == "meshnet.tls"
    assert line["node_id"] == "n1"
    assert line["network_id"] == "net-a"
    assert line["component"] == "meshnet"
    assert line["reason"] == "wrong_network"
    assert line["ts"].endswith("+00:00")


def test_bind_adds_context_without_changing_the_original(stream: io.StringIO) -> None:
    log = obs.get_logger("spore.gossip", node_id="n1")
    child = log.bind(peer="x")
    child.warning("suspect")
    log.warning("alone")
    first, second = lines(stream)
    assert first["peer"] == "x"
    assert first["node_id"] == "n1"
    assert "peer" not in second
    assert log.context == {"node_id": "n1"}


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "PASSWORD",
        "db_password",
        "secret",
        "clientSecret",
        "token",
        "X-Auth-Token",
        "api_key",
        "key",
        "private_key",
        "privateKeyPem",
        "isolation_key",
        "IsolationKey",
        "passphrase",
        "credentials",
    ],
)
def test_secret_named_fields_are_redacted(stream: io.StringIO, key: str) -> None:
    obs.get_logger("t").info("login", **{key: "hunter2"})
    raw = stream.getvalue()
    assert "hunter2" not in raw
    assert lines(stream)[0][key] == obs.REDACTED


@pytest.mark.parametrize("key", ["monkey", "tokenizer", "peer", "keystone_count", "node_id", "author"])
def test_ordinary_fields_are_kept(stream: io.StringIO, key: str) -> None:
    obs.get_logger("t").info("e", **{key: "visible"})
    assert lines(stream)[0][key] == "visible"


def test_nested_secrets_are_redacted(stream: io.StringIO) -> None:
    log = obs.get_logger("t").bind(config={"network": {"isolation_key": "abc123", "name": "demo"}})
    log.info("started", peers=[{"id": "p1", "token": "tok-zzz"}])
    (line,) = lines(stream)
    assert line["config"]["network"] == {"isolation_key": obs.REDACTED, "name": "demo"}
    assert line["peers"] == [{"id": "p1", "token": obs.REDACTED}]
    assert "abc123" not in stream.getvalue()
    assert "tok-zzz" not in stream.getvalue()


def test_a_secret_bound_as_context_is_redacted(stream: io.StringIO) -> None:
    obs.get_logger("t", token="s3cr3t").info("e")
    assert "s3cr3t" not in stream.getvalue()


def test_plain_stdlib_extra_fields_are_redacted_by_the_formatter(stream: io.StringIO) -> None:
    logging.getLogger("plain").info("hello %s", "world", extra={"obs_fields": {"password": "pw"}})
    (line,) = lines(stream)
    assert line["event"] == "hello world"
    assert line["password"] == obs.REDACTED


def test_exception_is_kept_on_one_line(stream: io.StringIO) -> None:
    log = obs.get_logger("t")
    try:
        raise RuntimeError("bad\nthing")
    except RuntimeError:
        log.exception("failed", step=2)
    assert len(stream.getvalue().splitlines()) == 1
    (line,) = lines(stream)
    assert line["level"] == "error"
    assert "RuntimeError: bad" in line["exc_info"]


def test_fields_that_clash_with_base_keys_are_renamed(stream: io.StringIO) -> None:
    obs.get_logger("t").info("real", event="fake", level="fake", ts="fake")
    (line,) = lines(stream)
    assert line["event"] == "real"
    assert line["event_"] == "fake"
    assert line["level"] == "info"
    assert line["level_"] == "fake"


def test_non_json_values_are_rendered(stream: io.StringIO) -> None:
    obs.get_logger("t").info("e", blob=b"\x01\xff", obj=object, count=3)
    (line,) = lines(stream)
    assert line["blob"] == "01ff"
    assert "object" in line["obj"]
    assert line["count"] == 3


def test_level_filtering_skips_disabled_events(stream: io.StringIO) -> None:
    logging.getLogger().setLevel(logging.WARNING)
    log = obs.get_logger("t")
    log.debug("hidden")
    log.info("hidden")
    log.error("shown")
    assert [line["event"] for line in lines(stream)] == ["shown"]


def test_configure_logging_replaces_its_own_handler() -> None:
    root = logging.getLogger()
    level = root.level
    first, second = io.StringIO(), io.StringIO()
    h1 = obs.configure_logging(logging.INFO, first)
    h2 = obs.configure_logging(logging.INFO, second)
    try:
        assert h1 not in root.handlers
        obs.get_logger("t").info("once")
        assert first.getvalue() == ""
        assert len(second.getvalue().splitlines()) == 1
    finally:
        root.removeHandler(h2)
        root.setLevel(level)


def test_configure_logging_rejects_an_unknown_level() -> None:
    with pytest.raises(obs.ObsError) as info:
        obs.configure_logging("LOUD")
    assert info.value.field == "level"


def test_redact_is_a_pure_copy() -> None:
    data = {"password": "x", "inner": {"api_key": "y"}}
    out = obs.redact(data)
    assert out == {"password": obs.REDACTED, "inner": {"api_key": obs.REDACTED}}
    assert data["password"] == "x"


def test_redact_bounds_depth() -> None:
    deep: dict[str, Any] = {}
    cur = deep
    for _ in range(50):
        cur["n"] = {}
        cur = cur["n"]
    text = json.dumps(obs.redact(deep))
    assert "[TOO DEEP]" in text


def test_the_record_points_at_the_caller() -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    std = logging.getLogger("t.caller")
    std.addHandler(handler)
    std.setLevel(logging.INFO)
    try:
        log = obs.get_logger("t.caller")
        log.info("a")
        log.log(logging.WARNING, "b")
    finally:
        std.removeHandler(handler)
    assert [r.funcName for r in records] == ["test_the_record_points_at_the_caller"] * 2
    assert records[0].getMessage() == "a"
