"""The Digital Mycelium Network app: node agent, CLI, Global DB, K3s packaging and dashboard."""

from importlib.metadata import version as _version

__version__ = _version("mycelium")

__all__: list[str] = []
