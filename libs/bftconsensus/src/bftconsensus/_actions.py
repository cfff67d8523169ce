"""What sans-I/O cores ask their driver to do. Cores return lists of these; they never do I/O."""

from __future__ import annotations

import attrs

__all__ = ["Send", "SetTimer", "CancelTimer", "Action"]


@attrs.frozen
class Send:
    """Deliver ``frame`` (one encoded ``Signed`` envelope) to node ``dst``."""

    dst: str
    frame: bytes


@attrs.frozen
class SetTimer:
    """Call the core's ``timer(tag)`` after ``delay`` seconds; re-arming a tag replaces it."""

    tag: str
    delay: float


@attrs.frozen
class CancelTimer:
    tag: str


Action = Send | SetTimer | CancelTimer
