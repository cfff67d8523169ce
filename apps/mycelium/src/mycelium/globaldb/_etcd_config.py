"""Configuration of the etcd client: endpoints, TLS and time limits, validated at construction."""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from ._errors import InvalidRequestError

__all__ = ["Endpoint", "TlsConfig", "EtcdConfig", "parse_endpoint"]


@attrs.frozen
class Endpoint:
    host: str
    port: int
    secure: bool

    def __str__(self) -> str:
        return f"{'https' if self.secure else 'http'}://{self.host}:{self.port}"


def parse_endpoint(text: str, *, secure_default: bool = False) -> Endpoint:
    """``host:port``, ``http://host:port`` or ``https://host:port`` (etcdctl's syntax)."""
    raw = text.strip()
    if "://" not in raw:
        raw = ("https://" if secure_default else "http://") + raw
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequestError(
            f"endpoint {text!r} is not host:port, http://host:port or https://host:port"
        )
    try:
        port = parts.port or 2379
    except ValueError:
        raise InvalidRequestError(f"endpoint {text!r} has an invalid port (1-65535)") from None
    return Endpoint(parts.hostname, port, parts.scheme == "https")


def _path(value: str | os.PathLike[str] | None) -> Path | None:
    return None if value is None else Path(value)


def _existing_file(_inst: object, attribute: attrs.Attribute[Any], value: Path | None) -> None:
    if value is not None and not Path(str(value)).is_file():
        raise InvalidRequestError(f"TlsConfig.{attribute.name}: no such file {value!s}")


@attrs.frozen
class TlsConfig:
    """Server verification against ``ca_file`` and, for client-certificate auth, a cert and key."""

    ca_file: Path | None = attrs.field(default=None, converter=_path, validator=_existing_file)
    cert_file: Path | None = attrs.field(default=None, converter=_path, validator=_existing_file)
    key_file: Path | None = attrs.field(default=None, converter=_path, validator=_existing_file)
    server_name: str | None = None

    def __attrs_post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise InvalidRequestError(
                "TlsConfig: give both cert_file and key_file for a client certificate, or neither"
            )

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file is not None and self.key_file is not None:
            try:
                ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
            except (ssl.SSLError, OSError) as exc:
                raise InvalidRequestError(f"TlsConfig: cannot load client certificate/key: {exc}") from exc
        ctx.set_alpn_protocols(["h2"])
        return ctx


def _endpoints(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(e for e in value.split(",") if e.strip())
    return tuple(str(e) for e in value)  # type: ignore[attr-defined]


def _positive(_inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not (isinstance(value, int | float) and value > 0):
        raise InvalidRequestError(f"EtcdConfig.{attribute.name} must be > 0, got {value!r}")


@attrs.frozen
class EtcdConfig:
    """How to reach an etcd cluster.

    Defaults: ``request_timeout`` 5 s (etcd's own client uses no default deadline; a control plane
    must not hang, and 5 s covers a leader election with etcd's default 1 s election timeout),
    ``dial_timeout`` 2 s (clientv3 examples use 5 s; on failover we want to move on sooner),
    ``keepalive_time`` 10 s with ``keepalive_timeout`` 5 s (etcd rejects pings more often than 5 s),
    ``watch_retry_timeout`` 60 s before a watch gives up on every member, and
    ``max_message_bytes`` 64 MiB for replies.
    """

    endpoints: tuple[str, ...] = attrs.field(converter=_endpoints)
    tls: TlsConfig | None = None
    request_timeout: float = attrs.field(default=5.0, validator=_positive)
    dial_timeout: float = attrs.field(default=2.0, validator=_positive)
    keepalive_time: float = attrs.field(default=10.0, validator=_positive)
    keepalive_timeout: float = attrs.field(default=5.0, validator=_positive)
    watch_retry_timeout: float = attrs.field(default=60.0, validator=_positive)
    max_message_bytes: int = attrs.field(default=64 * 1024 * 1024, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if not self.endpoints:
            raise InvalidRequestError("EtcdConfig.endpoints: give at least one endpoint, e.g. 127.0.0.1:2379")
        for e in self.parsed():
            if e.secure and self.tls is None:
                raise InvalidRequestError(f"EtcdConfig.tls: endpoint {e} uses https; give a TlsConfig")

    def parsed(self) -> tuple[Endpoint, ...]:
        return tuple(parse_endpoint(e, secure_default=self.tls is not None) for e in self.endpoints)
