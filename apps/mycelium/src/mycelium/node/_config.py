"""A node's configuration: the one attrs class the CLI, `mycelium up` and the tests build."""

from __future__ import annotations

from pathlib import Path

import attrs

from mycelium._errors import MyceliumError
from mycelium.node._roles import Role


class ConfigError(MyceliumError):
    """A node setting is invalid; the message names it."""


def parse_address(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{what} {text!r} is not HOST:PORT (port 1-65535)")
    return host, int(port)


@attrs.frozen
class NodeConfig:
    """Where a node keeps its files, where it listens and whom it contacts first.

    ``data_dir`` holds ``node.key`` (0600), ``node.crt`` and ``trust.json`` written by
    ``mycelium network create``/``mycelium up``. ``seeds`` are mesh addresses of Sclerotia (or any
    node) to join through; the rest of the network is learned from them.
    """

    name: str
    role: Role
    data_dir: Path = attrs.field(converter=Path)
    host: str = "127.0.0.1"
    mesh_port: int = 0
    http_port: int = 0
    service_port: int = 0  # Sclerotia: the client-facing call port
    gossip_port: int = 0  # Rhizomorphs and Hyphae: the Latent Spore gossip port
    seeds: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    globaldb: str = attrs.field(default="")  # "" (none), "sqlite:PATH" or "etcd://h:p[,h:p]"
    probe_interval: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    dead_after: float = attrs.field(default=6.0, validator=attrs.validators.gt(0))
    work_interval: float = attrs.field(default=0.5, validator=attrs.validators.gt(0))

    @seeds.validator
    def _check_seeds(self, _attribute: attrs.Attribute[tuple[str, ...]], value: tuple[str, ...]) -> None:
        for seed in value:
            parse_address(seed, "seed")

    @globaldb.validator
    def _check_globaldb(self, _attribute: attrs.Attribute[str], value: str) -> None:
        if value and not value.startswith(("sqlite:", "etcd://")):
            raise ConfigError(f"globaldb {value!r}: use sqlite:PATH or etcd://HOST:PORT[,HOST:PORT]")
