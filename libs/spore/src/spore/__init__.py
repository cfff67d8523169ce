"""mycelium-spore: signed spore records, Primary/Seed/Latent spores, SWIM-style gossip and
validated discovery. See README.md and docs/spore.md. The public API is exactly what `__all__` lists.

Layout: records and their wire codec (`_record`, `_codec`, `_wire`), validation (`_validation`),
the sans-I/O Latent Spore gossip core (`_gossip*`, `_broadcast`, `_messages`) and its simulator
adapter (`_sim`), its anyio driver over meshnet (`_driver`) and metrics (`_metrics`); the Primary
Spore (`_primary`), Seed Spores (`_seed`), the client discovery chain (`_discovery`), partition
evidence (`_partition`) and per-network views (`_networks`).
"""

from importlib.metadata import version as _version

from spore._codec import MessageLimits, decode_envelope, decode_record, encode_envelope, encode_record
from spore._discovery import DISCOVERY_ORDER, DiscoveryChain, DiscoveryStep, discover
from spore._driver import LatentSporeNode
from spore._errors import ConfigError, DecodeError, RecordRejectedError, SporeError, UnknownNetworkError
from spore._gossip import LatentSpore, Member
from spore._gossip_config import GossipConfig
from spore._gossip_events import (
    Action,
    CancelTimer,
    ConfirmPeer,
    Event,
    GossipStats,
    Join,
    Leave,
    MemberChanged,
    Received,
    Send,
    SetTimer,
    Start,
    TimerFired,
)
from spore._identity import Ed25519Signer, Signer, default_node_id, verify_ed25519
from spore._messages import Ack, Envelope, MemberState, Nack, Ping, PingReq, PushPull, Update
from spore._metrics import SporeMetrics
from spore._networks import NetworkViews
from spore._partition import PartitionReport, ReachabilityTracker
from spore._primary import (
    LocalPrimaryAuthority,
    MembershipChange,
    PrimaryAuthority,
    PrimarySnapshot,
    PrimaryView,
    follow_primary,
)
from spore._record import Capabilities, RecordLimits, Role, SporeRecord, build_record
from spore._seed import SeedSpore, build_seed, decode_seed, encode_seed
from spore._sim import LatentSimNode
from spore._validation import REJECT_REASONS, MembershipOracle, NetworkTrust, RecordValidator

__version__ = _version("mycelium-spore")

__all__: list[str] = [
    # records
    "SporeRecord",
    "Role",
    "Capabilities",
    "RecordLimits",
    "build_record",
    "encode_record",
    "decode_record",
    # identity
    "Signer",
    "Ed25519Signer",
    "default_node_id",
    "verify_ed25519",
    # validation
    "NetworkTrust",
    "RecordValidator",
    "MembershipOracle",
    "REJECT_REASONS",
    # latent spore (gossip)
    "LatentSpore",
    "Member",
    "MemberState",
    "GossipConfig",
    "GossipStats",
    "MessageLimits",
    "LatentSimNode",
    "Event",
    "Start",
    "Join",
    "Received",
    "TimerFired",
    "Leave",
    "ConfirmPeer",
    "Action",
    "Send",
    "SetTimer",
    "CancelTimer",
    "MemberChanged",
    "LatentSporeNode",
    "SporeMetrics",
    # primary spore
    "PrimaryAuthority",
    "LocalPrimaryAuthority",
    "PrimaryView",
    "PrimarySnapshot",
    "MembershipChange",
    "follow_primary",
    # seed spores
    "SeedSpore",
    "build_seed",
    "encode_seed",
    "decode_seed",
    # discovery, partitions, networks
    "DiscoveryChain",
    "DiscoveryStep",
    "DISCOVERY_ORDER",
    "discover",
    "PartitionReport",
    "ReachabilityTracker",
    "NetworkViews",
    # gossip wire
    "Envelope",
    "Update",
    "Ping",
    "Ack",
    "Nack",
    "PingReq",
    "PushPull",
    "encode_envelope",
    "decode_envelope",
    # errors
    "SporeError",
    "ConfigError",
    "DecodeError",
    "RecordRejectedError",
    "UnknownNetworkError",
]
