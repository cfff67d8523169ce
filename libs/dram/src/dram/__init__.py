"""mycelium-dram: live memory replication. See README.md and docs/dram.md.

Layers: pure cores (curves, buffer, replication protocol, migration planner, tuning) that the
simulator drives; trackers and actuators that touch the OS; an anyio driver over a framed stream.
The public API is exactly what `__all__` lists.
"""

from importlib.metadata import version as _version

from ._actions import (
    Action,
    CloseConnection,
    FollowPrimary,
    Promote,
    ReadPages,
    ReplicationConfig,
    Send,
    SetPaused,
    SetScanInterval,
    SetThrottle,
)
from ._backup import BackupCore, BackupState, choose_promotion
from ._buffer import BufferConfig, FullPolicy, Lag, OutgoingPage, PutOutcome, ReplicationBuffer
from ._curves import ExponentialCurve, FunctionCurve, LinearCurve, PointTableCurve, ThrottleCurve
from ._driver import BackupServer, MigrationResult, PrimaryReplicator, ScanReport
from ._errors import DramConfigError, DramDecodeError, DramError, DramStateError, TrackerUnavailableError
from ._metrics import DramMetrics
from ._migration import GiveUp, Iterate, MigrationConfig, MigrationDecision, MigrationPlanner, StopAndCopy
from ._primary import ConnectionStats, PrimaryCore
from ._region import MemoryRegion
from ._select import TrackerChoice, choose_tracker
from ._softdirty import SoftDirtyTracker, soft_dirty_available
from ._stream import FrameStream, TcpFrameStream, connect_tcp
from ._throttle import (
    CgroupV1CpuActuator,
    CooperativeThrottle,
    QmpActuator,
    SignalDutyCycleActuator,
    ThrottleActuator,
    cgroup_cpu_available,
)
from ._tracker import DIGESTS, DirtyTracker, HashDiffTracker
from ._tuning import LatencyTuner, LinkMode, Profile, TuningConfig
from ._uffd import UffdWpTracker, uffd_wp_available
from ._wire import Frame, WireLimits, decode, encode

__version__ = _version("mycelium-dram")

__all__: list[str] = [
    # errors
    "DramError",
    "DramConfigError",
    "DramDecodeError",
    "DramStateError",
    "TrackerUnavailableError",
    # throttle curves
    "ThrottleCurve",
    "LinearCurve",
    "ExponentialCurve",
    "PointTableCurve",
    "FunctionCurve",
    # memory and dirty-page tracking
    "MemoryRegion",
    "DirtyTracker",
    "HashDiffTracker",
    "DIGESTS",
    "UffdWpTracker",
    "uffd_wp_available",
    "SoftDirtyTracker",
    "soft_dirty_available",
    "choose_tracker",
    "TrackerChoice",
    # replication buffer
    "BufferConfig",
    "FullPolicy",
    "ReplicationBuffer",
    "PutOutcome",
    "Lag",
    "OutgoingPage",
    # replication protocol (sans-I/O)
    "ReplicationConfig",
    "PrimaryCore",
    "ConnectionStats",
    "BackupCore",
    "BackupState",
    "choose_promotion",
    "Action",
    "Send",
    "SetThrottle",
    "SetPaused",
    "ReadPages",
    "CloseConnection",
    "SetScanInterval",
    "Promote",
    "FollowPrimary",
    # wire
    "WireLimits",
    "Frame",
    "encode",
    "decode",
    # driver and transport
    "PrimaryReplicator",
    "BackupServer",
    "ScanReport",
    "FrameStream",
    "TcpFrameStream",
    "connect_tcp",
    "DramMetrics",
    # throttle actuators
    "ThrottleActuator",
    "CooperativeThrottle",
    "CgroupV1CpuActuator",
    "SignalDutyCycleActuator",
    "QmpActuator",
    "cgroup_cpu_available",
    # planned migration
    "MigrationConfig",
    "MigrationPlanner",
    "MigrationDecision",
    "Iterate",
    "StopAndCopy",
    "GiveUp",
    "MigrationResult",
    # latency adaptation
    "LatencyTuner",
    "TuningConfig",
    "LinkMode",
    "Profile",
]
