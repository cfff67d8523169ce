"""free_port picks listening ports outside the kernel's ephemeral range (where outgoing
connections take their source ports), so a port picked now is still free when a node binds it."""

from __future__ import annotations

import random
import socket

import pytest

from meshnet import _ports, free_port


def test_ports_are_bindable_and_below_the_ephemeral_range() -> None:
    start = _ports._ephemeral_start()
    ports = {free_port() for _ in range(50)}
    assert len(ports) > 40  # random, so concurrent pickers rarely agree
    for port in list(ports)[:10]:
        assert 10_000 <= port < start
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_port_in_use_is_never_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    real = random.SystemRandom()
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        taken = held.getsockname()[1]
        held.listen()
        drawn: list[int] = []

        class TakenTwiceFirst:
            """Draws the busy port twice, then random ports as usual."""

            def randrange(self, lo: int, hi: int) -> int:
                value = taken if len(drawn) < 2 else real.randrange(lo, hi)
                drawn.append(value)
                return value

        monkeypatch.setattr(_ports.random, "SystemRandom", TakenTwiceFirst)
        port = free_port()
    assert drawn[:2] == [taken, taken]  # it did try the busy port...
    assert port != taken  # ...and moved on


def test_an_address_not_on_this_machine_is_an_error() -> None:
    with pytest.raises(OSError, match="ssign"):
        free_port("192.0.2.1")  # TEST-NET-1: not assigned to any interface here


def test_an_unreadable_range_file_falls_back_to_linux_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.setattr(_ports, "_RANGE_FILE", tmp_path / "missing")
    assert _ports._ephemeral_start() == 32_768
    (tmp_path / "odd").write_text("1024 2000\n")
    monkeypatch.setattr(_ports, "_RANGE_FILE", tmp_path / "odd")
    assert _ports._ephemeral_start() == 32_768  # too low to leave room below it
