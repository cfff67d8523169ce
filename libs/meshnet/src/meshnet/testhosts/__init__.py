"""meshnet.testhosts: real hosts on one machine for end-to-end and chaos tests (needs root).

:class:`HostNetwork` builds N network namespaces on a private bridge (addresses 10.77.0.2...),
runs, kills and restarts processes in them (:class:`HostProcess`), partitions any hosts from any
others with nftables and heals them. :class:`DelayRelay` adds latency in user space, because the
kernels we run on have no ``tc netem``. Everything is removed on exit, and leftovers of crashed
runs are removed on the next start. See docs/meshnet-testworlds.md.
"""

from meshnet.testhosts._errors import HostNetworkError
from meshnet.testhosts._netns import netns_unavailable_reason, socket_in_netns
from meshnet.testhosts._network import DEFAULT_PREFIX, Host, HostNetwork, cleanup_leftovers
from meshnet.testhosts._process import HostProcess
from meshnet.testhosts._relay import DelayRelay

__all__ = [
    "HostNetwork",
    "Host",
    "HostProcess",
    "DelayRelay",
    "netns_unavailable_reason",
    "cleanup_leftovers",
    "socket_in_netns",
    "DEFAULT_PREFIX",
    "HostNetworkError",
]
