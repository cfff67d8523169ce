"""mycelium-meshnet: see README.md. The public API is exactly what `__all__` lists."""

from importlib.metadata import version as _version

__version__ = _version("mycelium-meshnet")

__all__: list[str] = []
