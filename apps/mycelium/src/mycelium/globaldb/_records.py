"""Typed records of a Mycelium network stored in the Global DB, and their JSON codec.

Values are JSON objects (bytes fields as base64) so that ``etcdctl get`` shows something a human
can read and other languages can decode. Decoding is bounded and strict: an oversized, malformed
or mistyped value raises :class:`SchemaError` naming the key's record type and field.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import typing
from typing import Any, TypeVar

import attrs

from ._errors import SchemaError

__all__ = [
    "Record",
    "SclerotiumRecord",
    "TrustScore",
    "HealthScore",
    "ServiceDefinition",
    "AclEntry",
    "SeedSporeEntry",
    "NetworkConfig",
    "encode_record",
    "decode_record",
    "check_name",
    "MAX_RECORD_BYTES",
]

#: etcd refuses requests over 1.5 MiB by default; a record is far smaller or is a bug.
MAX_RECORD_BYTES = 1024 * 1024
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_name(value: str, field: str) -> str:
    """Names become key segments, so a ``/`` or an empty name could reach another record's key."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise SchemaError(
            f"{field} {value!r} must be 1-128 characters of A-Z a-z 0-9 . _ - (not starting with . _ -)"
        )
    return value


def _name(_inst: object, attribute: attrs.Attribute[Any], value: str) -> None:
    check_name(value, attribute.name)


def _unit(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise SchemaError(f"{attribute.name} must be between 0.0 and 1.0, got {value}")


def _non_negative(_inst: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if value < 0:
        raise SchemaError(f"{attribute.name} must be >= 0, got {value}")


def _one_of(*allowed: str) -> Any:
    def check(_inst: object, attribute: attrs.Attribute[Any], value: str) -> None:
        if value not in allowed:
            raise SchemaError(f"{attribute.name} must be one of {', '.join(allowed)}; got {value!r}")

    return check


@attrs.frozen
class SclerotiumRecord:
    """An entry of the Sclerotia master list: who may run the control plane, and how to verify it."""

    node_id: str = attrs.field(validator=_name)
    public_key: bytes
    certificate: bytes
    kind: str = attrs.field(default="dedicated", validator=_one_of("dedicated", "dynamic"))
    addresses: tuple[str, ...] = ()


@attrs.frozen
class TrustScore:
    node_id: str = attrs.field(validator=_name)
    score: float = attrs.field(validator=_unit)
    updated_at: float = 0.0


@attrs.frozen
class HealthScore:
    node_id: str = attrs.field(validator=_name)
    score: float = attrs.field(validator=_unit)
    checked_at: float = 0.0
    detail: str = ""


@attrs.frozen
class ServiceDefinition:
    name: str = attrs.field(validator=_name)
    kind: str = attrs.field(default="endomycete", validator=_one_of("endomycete", "endophyte"))
    image: str = ""
    replicas: int = attrs.field(default=1, validator=_non_negative)
    ports: tuple[int, ...] = ()


@attrs.frozen
class AclEntry:
    """What ``subject`` (a node id or a federated network id) may do on ``resource``."""

    subject: str = attrs.field(validator=_name)
    resource: str
    permissions: tuple[str, ...] = ()

    def __attrs_post_init__(self) -> None:
        bad = set(self.permissions) - {"read", "write", "admin"}
        if bad:
            raise SchemaError(f"permissions {sorted(bad)} are not among read, write, admin")


@attrs.frozen
class SeedSporeEntry:
    """A signed seed spore: ``name`` is ``master`` for the Master Seed Spore, else the service."""

    name: str = attrs.field(validator=_name)
    kind: str = attrs.field(validator=_one_of("master", "service"))
    payload: bytes
    signature: bytes
    issued_at: float = 0.0


@attrs.frozen
class NetworkConfig:
    network_id: str = attrs.field(validator=_name)
    display_name: str = ""
    dedicated_sclerotia: int = attrs.field(default=3, validator=_non_negative)
    replication_factor: int = attrs.field(default=3, validator=_non_negative)
    min_trust: float = attrs.field(default=0.5, validator=_unit)


Record = (
    SclerotiumRecord
    | TrustScore
    | HealthScore
    | ServiceDefinition
    | AclEntry
    | SeedSporeEntry
    | NetworkConfig
)
R = TypeVar("R", bound=Record)


def encode_record(record: Record) -> bytes:
    out: dict[str, Any] = {}
    for f in attrs.fields(type(record)):
        v = getattr(record, f.name)
        out[f.name] = base64.b64encode(v).decode("ascii") if isinstance(v, bytes) else v
    return json.dumps(out, sort_keys=True, separators=(",", ":")).encode()


def _decode_field(cls_name: str, name: str, hint: Any, raw: Any) -> Any:
    where = f"{cls_name}.{name}"
    if hint is bytes:
        if not isinstance(raw, str):
            raise SchemaError(f"{where}: expected base64 text, got {type(raw).__name__}")
        try:
            return base64.b64decode(raw.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise SchemaError(f"{where}: not valid base64") from None
    if hint is float:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise SchemaError(f"{where}: expected a number, got {type(raw).__name__}")
        return float(raw)
    if hint is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise SchemaError(f"{where}: expected an integer, got {type(raw).__name__}")
        return raw
    if hint is str:
        if not isinstance(raw, str):
            raise SchemaError(f"{where}: expected text, got {type(raw).__name__}")
        return raw
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(raw, list):
            raise SchemaError(f"{where}: expected a list, got {type(raw).__name__}")
        return tuple(_decode_field(cls_name, f"{name}[]", item, x) for x in raw)
    raise SchemaError(f"{where}: unsupported field type {hint!r}")  # pragma: no cover - schema bug


def decode_record(cls: type[R], data: bytes) -> R:
    """Parse ``data`` as a ``cls`` record; anything else raises :class:`SchemaError`."""
    if len(data) > MAX_RECORD_BYTES:
        raise SchemaError(
            f"{cls.__name__}: stored value is {len(data)} bytes, over the {MAX_RECORD_BYTES}-byte limit"
        )
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise SchemaError(f"{cls.__name__}: stored value is not JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise SchemaError(f"{cls.__name__}: stored value must be a JSON object")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in attrs.fields(cls):
        if f.name not in obj:
            if f.default is attrs.NOTHING:
                raise SchemaError(f"{cls.__name__}.{f.name}: missing")
            continue
        kwargs[f.name] = _decode_field(cls.__name__, f.name, hints[f.name], obj[f.name])
    unknown = set(obj) - set(kwargs) - {f.name for f in attrs.fields(cls)}
    if unknown:
        raise SchemaError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
    try:
        return cls(**kwargs)
    except SchemaError:
        raise
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"{cls.__name__}: {exc}") from None
