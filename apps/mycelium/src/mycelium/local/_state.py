"""The running local network, as `mycelium up` records it for `status`, `nodes`, `kill` and `logs`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import attrs

from mycelium._errors import MyceliumError

STATE_FILE = "network.json"


class LocalNetworkError(MyceliumError):
    """No local network, or the named node is not part of it."""


def default_dir() -> Path:
    base = os.environ.get("MYCELIUM_HOME")
    return Path(base) if base else Path.home() / ".mycelium" / "local"


@attrs.frozen
class NodeEntry:
    name: str
    role: str
    pid: int
    data_dir: str
    log: str
    mesh: str = ""
    http: str = ""

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        # A zombie child of a dead supervisor still answers kill(0): check its state.
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
            return stat.rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return True


@attrs.frozen
class LocalNetwork:
    directory: str
    network_id: str
    supervisor_pid: int
    globaldb: str
    nodes: tuple[NodeEntry, ...]

    def save(self) -> None:
        path = Path(self.directory) / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(attrs.asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, directory: Path) -> LocalNetwork:
        path = directory / STATE_FILE
        try:
            doc = json.loads(path.read_text())
            doc["nodes"] = tuple(NodeEntry(**n) for n in doc["nodes"])
            return cls(**doc)
        except FileNotFoundError:
            raise LocalNetworkError(
                f"no local network is running in {directory} (start one with `mycelium up`)"
            ) from None
        except (ValueError, TypeError, KeyError) as exc:
            raise LocalNetworkError(
                f"{path} is damaged ({exc}); stop any leftover nodes and remove it"
            ) from None

    def node(self, name: str) -> NodeEntry:
        for n in self.nodes:
            if n.name == name:
                return n
        names = ", ".join(n.name for n in self.nodes)
        raise LocalNetworkError(f"no node named {name!r} in the local network; its nodes are: {names}")

    def sclerotia(self) -> list[NodeEntry]:
        return [n for n in self.nodes if n.role.endswith("sclerotium")]
