"""anyio drivers that run the sans-I/O PBFT cores over meshnet's authenticated, encrypted streams.

The transport authenticates every peer (mutual TLS 1.3 with network certificates), so the ``src``
handed to a core is the verified node id of the stream's other end (which is all commits and
replies rely on); the cores also check the Ed25519 signature of every message that can enter a
certificate, so it stays attributable after it is relayed.
Frames to a peer that is down are dropped: PBFT recovers lost messages through retransmission by
clients, view changes and state transfer.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from types import TracebackType

import anyio
import anyio.abc

import obs
from bftconsensus._actions import Action, CancelTimer, Send, SendReply, SetTimer
from bftconsensus._client import Client, read_replies
from bftconsensus._deadlines import Deadlines
from bftconsensus._errors import BftConsensusError, ConfigError, DecodeError
from bftconsensus._metrics import ReplicaMetrics
from bftconsensus._outgoing import LINK_ERRORS, QUEUE_LIMIT, Outgoing
from bftconsensus._replica import Replica
from bftconsensus._wire import Kind, decode_frame, replies_frames
from meshnet import DEFAULT_MAX_FRAME_SIZE, FramedStream, MeshCredentials, MeshServer, connect

__all__ = ["ReplicaService", "ClusterClient"]

_SEND_EVERY = 4
"""Frames a client process writes at once (see `_Sender`); 4 and 8 measured alike."""
_ROUTED = frozenset({int(Kind.CLIENT_REQUEST), int(Kind.CLIENT_LINK)})


def _check_frame_limit(max_frame_bytes: int, who: str) -> None:
    """Refuse wire limits above what a meshnet stream carries: such frames could never be sent."""
    if max_frame_bytes > DEFAULT_MAX_FRAME_SIZE:
        raise ConfigError(
            f"{who}: WireLimits.max_frame_bytes is {max_frame_bytes}, above the {DEFAULT_MAX_FRAME_SIZE}"
            " bytes a meshnet stream carries; frames that large could never be sent"
        )


class _Sender(Outgoing):
    """A client process's frames to one replica: written in groups of ``_SEND_EVERY`` as they are
    put, whatever is left by the pump when the event loop gets to it.

    Replies to one batch wake many callers together, and each signs its next request in turn.
    Written together at the end, all those requests reach the primary after the last is signed,
    and the primary only starts checking the first then; in groups it checks one group while the
    next is signed (measured: +4-10% puts/s with 32 clients in one process).
    """

    def put(self, frame: bytes) -> None:
        if self._closed or len(self._frames) >= QUEUE_LIMIT:
            return
        self._frames.append(frame)
        if len(self._frames) >= _SEND_EVERY and self._send_now(self._frames):
            self._frames.clear()
        else:
            self._wake.set()


class _Outbox(Outgoing):
    """One dialled connection per peer replica; frames that come while it is down are dropped."""

    def __init__(self, creds: MeshCredentials, node: str, host: str, port: int) -> None:
        super().__init__()
        self.creds, self.node, self.host, self.port = creds, node, host, port

    async def run(self) -> None:
        retry_at = 0.0
        while frames := await self.take():
            if self.stream is None:
                if anyio.current_time() < retry_at:
                    continue
                try:
                    with anyio.fail_after(2.0):
                        self.stream = await connect(
                            self.creds, self.host, self.port, expected_node_id=self.node
                        )
                except (*LINK_ERRORS, TimeoutError):
                    retry_at = anyio.current_time() + 0.2
                    continue
            try:
                await self.stream.send_many(frames)
            except LINK_ERRORS:
                self.stream = None


class ReplicaService:
    """Serve one :class:`Replica` on ``host:port`` and dial its peers at ``addresses``.

    ``async with ReplicaService(...) as service:`` starts listening (``service.port``) and stops
    everything on exit. All calls into the core happen on the event loop without awaiting in
    between, so the core needs no locking.
    """

    def __init__(
        self,
        replica: Replica,
        creds: MeshCredentials,
        addresses: Mapping[str, tuple[str, int]],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        metrics: ReplicaMetrics | None = None,
    ) -> None:
        if creds.node_id != replica.me:
            raise BftConsensusError(
                f"credentials are for node {creds.node_id!r} but the replica signs as {replica.me!r}"
            )
        _check_frame_limit(replica.limits.max_frame_bytes, f"replica {replica.me!r}")
        self.replica = replica
        self.creds = creds
        self.host, self._port = host, port
        self._out = {n: _Outbox(creds, n, h, p) for n, (h, p) in addresses.items() if n != replica.me}
        self._clients: dict[str, Outgoing] = {}
        # client id -> the stream its latest request came in on: one connection may carry many
        # clients (ClusterClient with several Client cores), and their replies share its writes
        self._routes: dict[str, Outgoing] = {}
        self._timers = Deadlines(lambda tag: self._dispatch(self.replica.timer(tag)))
        self._tg: anyio.abc.TaskGroup | None = None
        self._server: MeshServer | None = None
        self.metrics = metrics if metrics is not None else ReplicaMetrics()
        self._log = obs.get_logger("bftconsensus.replica", node_id=replica.me)
        self._view = replica.view

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return self._server.port

    async def __aenter__(self) -> ReplicaService:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        for box in self._out.values():
            self._tg.start_soon(box.run)
        self._tg.start_soon(self._timers.run)
        self._server = MeshServer(self.creds, self._handle, host=self.host, port=self._port)
        await self._server.__aenter__()
        self._dispatch(self.replica.start())
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._tg is not None
        assert self._server is not None
        # The server passes on what ended the body; when that is the cancellation of a failed
        # timer or outbox task, only our task group can turn it back into that task's error.
        raised: BaseException | None = None
        try:
            await self._server.__aexit__(et, exc, tb)
        except BaseException as passed:  # handed to the task group, then re-raised
            raised = passed
        self._tg.cancel_scope.cancel()
        if raised is None:
            return await self._tg.__aexit__(et, exc, tb)
        if await self._tg.__aexit__(type(raised), raised, raised.__traceback__):
            return True
        raise raised

    async def _handle(self, stream: FramedStream) -> None:
        src = stream.peer.node_id
        queue: Outgoing | None = None
        async with anyio.create_task_group() as tg:
            if src not in self.replica.members:  # a client: replies go back on this stream
                queue = self._clients[src] = Outgoing(stream)
                tg.start_soon(queue.pump)

            def take(frame: bytes) -> None:  # called as frames arrive (meshnet's FramedStream.deliver)
                if queue is not None:
                    self._learn_route(frame, queue)
                self._dispatch(self.replica.receive(src, frame))

            try:
                await stream.deliver(take)
            except LINK_ERRORS:
                pass
            finally:
                if queue is not None:
                    if self._clients.get(src) is queue:
                        del self._clients[src]
                    for client in [c for c, q in self._routes.items() if q is queue]:
                        del self._routes[client]
                    queue.close()

    def _learn_route(self, frame: bytes, queue: Outgoing) -> None:
        """Send the replies of the client that signed this request (or link grant) back the way it
        came (a backup may get no request from a client before it must reply to it).

        Only clients in the key directory get a route (the table stays bounded); a peer that
        replays another client's request can divert that client's replies until the client's
        retransmission re-routes them, which costs the client time, not a wrong result (replies
        still need f+1 matching ones, each from the replica it names).
        """
        try:
            env = decode_frame(frame, self.replica.limits)  # cached: the core decodes it again
        except DecodeError:
            return
        if env.kind in _ROUTED and env.signer in self.replica.keys:
            self._routes[env.signer] = queue

    def _dispatch(self, actions: Sequence[Action]) -> None:
        assert self._tg is not None
        self.metrics.observe(self.replica)
        if self.replica.view != self._view:
            self._log.info("view_entered", view=self.replica.view, primary=self.replica.primary)
            self._view = self.replica.view
        frames: dict[Outgoing, list[bytes]] = {}  # per connection: one write for this event's
        replies: dict[Outgoing, list[SendReply]] = {}  # per client connection: one REPLIES frame
        for a in actions:
            if isinstance(a, Send):
                box = self._out.get(a.dst) or self._routes.get(a.dst) or self._clients.get(a.dst)
                if box is None:
                    continue
                if isinstance(a, SendReply):
                    replies.setdefault(box, []).append(a)
                else:
                    frames.setdefault(box, []).append(a.frame)
            elif isinstance(a, SetTimer):
                self._timers.set(a.tag, a.delay)
            elif isinstance(a, CancelTimer):
                self._timers.cancel(a.tag)
        for box, answered in replies.items():
            # A reply frame costs its client ~4 us more to read than a reply in a bundle, and a
            # process carrying many clients gets a batch's replies together.
            if len(answered) == 1:
                frames.setdefault(box, []).append(answered[0].frame)
            else:
                bundles = replies_frames(self.replica.me, [r.reply for r in answered], self.replica.limits)
                frames.setdefault(box, []).extend(bundles)
        for box, group in frames.items():
            box.send(group)


class ClusterClient:
    """Submit operations to a replicated cluster and wait for f+1 matching replies.

    Each :class:`Client` core has one operation outstanding at a time (PBFT's exactly-once rule);
    give ``ClusterClient`` several cores for concurrency. They share one connection per replica,
    so requests submitted together and the replies a replica produces together for them travel
    in the same writes. ``call(op)`` uses the only core; ``call(op, client=node_id)`` picks one.
    """

    def __init__(
        self,
        client: Client | Sequence[Client],
        creds: MeshCredentials,
        addresses: Mapping[str, tuple[str, int]],
    ) -> None:
        cores = [client] if isinstance(client, Client) else list(client)
        if not cores:
            raise BftConsensusError("ClusterClient needs at least one Client")
        self.clients: dict[str, Client] = {c.signer.node_id: c for c in cores}
        if len(self.clients) != len(cores):
            raise BftConsensusError("ClusterClient clients must have distinct node ids")
        for c in cores:
            _check_frame_limit(c.limits.max_frame_bytes, f"client {c.signer.node_id!r}")
        self.client = cores[0]
        self.creds = creds
        self.addresses = dict(addresses)
        # Per replica, a grant for this process's link to carry each core's requests, with the
        # core's MAC key for that replica: replicas then skip the per-request signature check,
        # and backups check a request's MAC tag instead of its signature.
        self._links = {
            r: [c.link_frame(creds.node_id, r if r in c.replicas else None) for c in cores]
            for r in self.addresses
        }
        self._streams: dict[str, _Sender] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._done: dict[str, anyio.Event] = {}
        self._retransmit = Deadlines(self._on_retransmit)
        self._changed = anyio.Event()

    async def __aenter__(self) -> ClusterClient:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        for node in self.addresses:
            self._tg.start_soon(self._keep, node)
        self._tg.start_soon(self._retransmit.run)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        return await self._tg.__aexit__(et, exc, tb)

    async def _keep(self, node: str) -> None:
        host, port = self.addresses[node]
        while True:
            try:
                with anyio.fail_after(2.0):
                    stream = await connect(self.creds, host, port, expected_node_id=node)
            except (*LINK_ERRORS, TimeoutError):
                await anyio.sleep(0.2)
                continue
            sender = self._streams[node] = _Sender(stream)
            sender.send(self._links[node])
            self._changed.set()
            self._changed = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(sender.pump)
                try:
                    await stream.deliver(functools.partial(self._on_reply, node))
                except LINK_ERRORS:
                    pass
                finally:
                    self._streams.pop(node, None)
                    sender.close()
                    await stream.aclose()
            await anyio.sleep(0.1)

    def _on_reply(self, node: str, frame: bytes) -> None:
        parsed = read_replies(frame, self.client.limits)
        if parsed is None:
            return
        env, replies = parsed
        for reply in replies:
            core = self.clients.get(reply.client)
            if core is not None and core.busy:
                core.take_reply(node, env, reply)
                self._apply(core, [])

    async def wait_connected(self, count: int | None = None) -> None:
        """Wait until streams to ``count`` replicas (default: all) are up (bound it with fail_after)."""
        want = len(self.addresses) if count is None else count
        while len(self._streams) < want:
            await self._changed.wait()

    def _apply(self, core: Client, actions: Sequence[Action]) -> None:
        name = core.signer.node_id
        for a in actions:
            if isinstance(a, Send):  # a core only ever sends its request (primary, or all on retransmission)
                sender = self._streams.get(a.dst)
                if sender is not None:
                    sender.put(a.frame)  # which also tells the replica where this client's replies go
            elif isinstance(a, SetTimer):
                self._retransmit.set(name, a.delay)
        if not core.busy:
            self._retransmit.cancel(name)
            done = self._done.get(name)
            if done is not None:
                done.set()

    def _on_retransmit(self, name: str) -> None:
        core = self.clients[name]
        if core.busy:
            self._apply(core, core.timer("retransmit"))

    async def call(self, operation: bytes, *, client: str | None = None) -> bytes:
        """Order ``operation`` and return its result once f+1 replicas agree on it.

        Retransmits until then; bound the wait with ``anyio.fail_after`` around the call.
        ``client`` names the core to use (required when there are several).
        """
        if client is None:
            if len(self.clients) > 1:
                raise BftConsensusError("this ClusterClient has several clients: pass client=<node id>")
            core = self.client
        else:
            found = self.clients.get(client)
            if found is None:
                raise BftConsensusError(f"no client {client!r} in this ClusterClient")
            core = found
        done = self._done[core.signer.node_id] = anyio.Event()
        self._apply(core, core.submit(operation))  # arms its retransmission (see _on_retransmit)
        try:
            await done.wait()
        finally:
            if core.busy:  # cancelled by the caller: stop retransmitting what nobody awaits
                self._retransmit.cancel(core.signer.node_id)
        assert core.result is not None
        return core.result
