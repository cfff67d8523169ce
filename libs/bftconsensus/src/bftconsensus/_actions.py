"""What sans-I/O cores ask their driver to do. Cores return lists of these; they never do I/O."""

from __future__ import annotations

import attrs

__all__ = ["Send", "SendReply", "SetTimer", "CancelTimer", "Action"]


@attrs.frozen
class Send:
    """Deliver ``frame`` (one encoded ``Signed`` envelope) to node ``dst``."""

    dst: str
    frame: bytes


@attrs.frozen
class SendReply(Send):
    """A reply to client ``dst``: ``frame`` is its own REPLY envelope, ``reply`` the encoded
    ``Reply`` inside it. Any driver may send ``frame`` as it sends any other; bftconsensus's own
    put the replies one event produced for the clients of one link in one REPLIES frame."""

    reply: bytes


@attrs.frozen
class SetTimer:
    """Call the core's ``timer(tag)`` after ``delay`` seconds; re-arming a tag replaces it."""

    tag: str
    delay: float


@attrs.frozen
class CancelTimer:
    tag: str


Action = Send | SetTimer | CancelTimer
