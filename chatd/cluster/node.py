# -*- test-case-name: tests.test_cluster -*-
"""
A node of a cluster: several chatd processes that users cannot tell from one.

Every node keeps a replica of the whole hub: every user, on whatever node,
is a L{User} in every node's hub, and every room holds all its members.  A
change never reaches the replica directly: it becomes an operation
(L{chatd.cluster.ops}) appended to one ordered log (L{IOpLog}, on Redis),
and every node applies every operation, in log order, to its replica with
the hub's own code.  The rules are deterministic, so the replicas stay
identical, and each node writes events to its own connections only (a user
on another node is a L{REMOTE} stand-in whose output goes nowhere).  That
gives, by construction, one order for every room on every node, one
nickname per name in the cluster, and a message id that is the operation's
place in the log.

The node that made a request waits for its operation to come back from the
log and answers with what applying it did, refusal included; it alone
writes what must be kept to the shared store.

A node starting up asks the log for a live peer; that peer writes a
snapshot of its replica as of the start-up operation, and the new node
applies the operations that follow it.  A node that misses part of the log
(its place was trimmed away, or the others declared it dead) cannot know
what it missed: it tells its users to reconnect, closes their connections,
and starts again from a snapshot.  A node that reads an operation in a
format it does not know stops applying the log rather than guess.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from chatd.cluster import snapshot
from chatd.cluster.ops import Gone, Hello, Operation, Snapshot, UnknownFormat, decode, encode
from chatd.errors import ChatError
from chatd.hub import Hub, Room, User
from chatd.hub.fanout import Fanout
from chatd.hub.gateway import Gateway
from chatd.interfaces import IClient, IEncoder, IGateway, IOpLog, IRunner, ISharedStore
from chatd.model import LOBBY, Error, Event, Notice, StoreState, check_nick, fold
from chatd.requests import Registered, Request, SignOff, SignOn

REAP_EVERY = 2.0
SNAPSHOT_TIMEOUT = 10.0
MAX_HELD = 100_000
LEAVE_TIMEOUT = 2.0

_log = Logger(namespace="chatd.cluster")


@implementer(IEncoder)
class _Nowhere:
    def encode(self, event: Event) -> object:
        return None


@implementer(IClient)
class _Remote:
    """
    Stands for every user connected to another node: that node writes to
    it, so here its output goes nowhere.
    """

    encoder = _Nowhere()

    def push(self, payload: object) -> None:
        pass

    def send(self, payload: object, optional: bool = False) -> None:
        pass

    def close(self) -> None:
        pass


REMOTE = _Remote()


class _LocalFanout(Fanout):
    """
    Writes to the users connected to this node only: every other node does
    the same for its own, so each delivery is counted once, and the fan-out
    loop does not visit other nodes' users.
    """

    def recipients(self, users: Iterable[User]) -> tuple[User, ...]:
        return tuple(u for u in users if u.client is not REMOTE)


def degraded(why: str = "Cross-node delivery is interrupted; try again shortly") -> ChatError:
    return ChatError("degraded", why)


NOT_READY = "Not ready: the server cannot reach its cluster yet; try again in a moment"
HALTED = "This server cannot follow its cluster until it is upgraded; try another server"


@implementer(IGateway, IRunner)
class ClusterGateway(Gateway):
    """
    The gateway of a hub that is one node's replica: each change is
    appended to the log and answered once applied; L{receive} applies the
    log.

    @ivar node: this node's id, unique in the cluster for this process.
    @ivar nodes: the nodes the replica knows to be alive.
    @ivar sessions: every user in the cluster, by session id
        (C{NODE.SERIAL}), which unlike a nickname never passes to someone
        else.
    @ivar ready: whether the replica is complete and current.
    @ivar connected: whether the log can be reached.
    @ivar unreachable: whether the last L{start} could not open the store
        (sign-ons are refused until one does).
    @ivar halted: why this node stopped applying the log, if it did (an
        operation in a format it cannot read).
    @ivar operations: operations of the log applied since start.
    """

    def __init__(
        self, hub: Hub, log: IOpLog, clock: IReactorTime, *, node: str | None = None
    ) -> None:
        super().__init__(hub)
        hub.runner = self
        hub.fanout = _LocalFanout()
        self.clock = clock
        self.log = log
        self.node = node or os.urandom(4).hex()
        self.nodes: set[str] = set()
        self.sessions: dict[str, User] = {}
        self.ready = False
        self.connected = True
        self.unreachable = False
        self.halted: str | None = None
        self._serial = itertools.count(1)
        self._waiting: dict[int, Deferred[Any]] = {}
        self._clients: dict[str, IClient] = {}
        self._departed: dict[str, str | None] = {}
        self._applied = 0
        self.operations = 0
        self._held: list[tuple[int, str]] | None = None
        self._snapshot_timer: IDelayedCall | None = None
        self._on_ready: list[Deferred[None]] = []
        self._applying: Operation | None = None
        self._reaping = LoopingCall(self._reap)
        self._reaping.clock = clock
        self._connected_since = clock.seconds()

    # -- what the hub asks while applying an operation ----------------------

    def now(self) -> float:
        assert self._applying is not None
        return self._applying.ts

    def next_id(self, last_id: int) -> int:
        return self._applied

    def keeps(self) -> bool:
        """
        Whether this node made the operation being applied (or none is):
        it alone logs the change and writes it to the store.
        """
        return self._applying is None or self._applying.node == self.node

    def is_local(self, user: User) -> bool:
        return user.client is not REMOTE

    def signed_off(self, user: User) -> None:
        self.sessions.pop(user.sid, None)

    # -- joining and leaving the cluster ------------------------------------

    def start(self) -> Deferred[None]:
        """
        Load what the store keeps, follow the log and get a replica; fire
        once this node serves.

        If the store cannot be opened, the node is L{unreachable}: sign-ons
        waiting for it, and those that come until a later C{start} opens the
        store, are refused (the caller may call C{start} again).
        """

        def not_opened(failure: Failure) -> Failure:
            if not failure.check(CancelledError):
                self.unreachable = True
                waiting, self._on_ready = self._on_ready, []
                for d in waiting:
                    d.errback(degraded(NOT_READY))
            return failure

        def loaded(state: StoreState) -> Deferred[None]:
            self.unreachable = False
            self._connected_since = self.clock.seconds()
            self.hub.load(state)
            self.log.watch(self._connection_changed)
            self._reaping.start(REAP_EVERY, now=False)
            self._hello()
            return self.when_ready()

        opened = ISharedStore(self.hub.store).open()
        return opened.addErrback(not_opened).addCallback(loaded)

    def when_ready(self) -> Deferred[None]:
        if self.ready:
            return succeed(None)
        waiting: Deferred[None] = Deferred()
        self._on_ready.append(waiting)
        return waiting

    def _hello(self) -> None:
        """
        Announce this node in the log and hold what follows until the
        replica is complete.
        """
        self.ready = False
        self._held = []

        def answered(result: tuple[int, str | None]) -> None:
            seq, responder = result
            self._applied = seq
            if responder is None:
                self.nodes = {self.node}
                self.hub.last_id = max(self.hub.last_id, seq)
                self._release()
            else:
                self._snapshot_timer = self.clock.callLater(SNAPSHOT_TIMEOUT, self._no_snapshot)

        def failed(failure: Failure) -> None:
            _log.warn("Joining the cluster failed ({why}); retrying", why=failure.getErrorMessage())
            self._held = None
            self.clock.callLater(1.0, self._hello)

        self.log.hello(self.node, self.receive).addCallbacks(answered, failed)

    def _no_snapshot(self) -> None:
        self._snapshot_timer = None
        _log.warn("No snapshot of the cluster came; asking again")
        self._hello()

    def _take_snapshot(self, raw: str | None) -> None:
        if self._snapshot_timer is not None and self._snapshot_timer.active():
            self._snapshot_timer.cancel()
        self._snapshot_timer = None
        if raw is None:
            self._hello()
            return
        data = json.loads(raw)
        if data["seq"] != self._applied:  # the answer to an earlier hello
            self._snapshot_timer = self.clock.callLater(SNAPSHOT_TIMEOUT, self._no_snapshot)
            return
        self.restore(data)
        self._release()

    def _release(self) -> None:
        held, self._held = self._held or [], None
        for seq, op in held:
            self.receive(seq, op)
        if self._held is None:
            self.ready = True
            _log.info(
                "Node {node} joined the cluster: {nodes} nodes, {users} users",
                node=self.node,
                nodes=len(self.nodes),
                users=len(self.hub.users),
            )
            waiting, self._on_ready = self._on_ready, []
            for d in waiting:
                d.callback(None)
            self._send_departures()

    def stop(self) -> Deferred[None]:
        """
        Tell the cluster this node and its users are going, then stop
        following the log.
        """
        if self._reaping.running:
            self._reaping.stop()
        if not self.ready:
            return self.log.stop()
        gone = self._submit(None, Gone(gone=self.node, reason="server shutting down"))
        gone.addErrback(lambda f: None)
        timer = self.clock.callLater(LEAVE_TIMEOUT, gone.cancel)
        gone.addBoth(lambda _: timer.cancel() if timer.active() else None)
        return gone.addBoth(lambda _: self.log.stop())

    # -- following the log --------------------------------------------------

    def receive(self, seq: int, op: str) -> None:
        """
        Apply operation number C{seq} of the log, if it is the next one.
        """
        if self.halted is not None:
            return
        if self._held is not None:
            if len(self._held) >= MAX_HELD:
                self._lost("too much happened while this node was starting")
                return
            self._held.append((seq, op))
            if '"snapshot"' in op and self._snapshot_for_me(op):
                self.log.get_snapshot(self.node).addCallbacks(
                    self._take_snapshot, lambda f: self._take_snapshot(None)
                )
            return
        if seq <= self._applied:
            return
        if seq != self._applied + 1:
            self._lost(f"operations {self._applied + 1} to {seq - 1} were missed")
            return
        self._applied = seq
        self.operations += 1
        self._apply(seq, op)

    def _snapshot_for_me(self, raw: str) -> bool:
        try:
            request = decode(raw).request
        except (ValueError, KeyError, TypeError):
            return False
        return isinstance(request, Snapshot) and request.target == self.node

    def _apply(self, seq: int, raw: str) -> None:
        try:
            operation = decode(raw)
        except UnknownFormat as unknown:
            self._halt(seq, unknown)
            return
        except (ValueError, KeyError, TypeError):
            _log.error("Skipping malformed operation {seq}: {raw!r}", seq=seq, raw=raw[:200])
            return
        node, request = operation.node, operation.request
        waiting = self._waiting.pop(operation.ref, None) if node == self.node else None
        if node not in self.nodes and not isinstance(request, (Hello, Snapshot, Gone)):
            if waiting is not None:
                waiting.errback(degraded("This server is not part of the cluster right now"))
            return
        self._applying = operation
        try:
            result = self._carry_out(operation)
        except ChatError as error:
            if waiting is not None:
                waiting.errback(error)
            return
        except Exception:
            _log.failure("Applying operation {seq} ({kind}) failed", seq=seq, kind=request.type)
            if waiting is not None:
                waiting.errback(ChatError("internal_error", "Something went wrong"))
            return
        finally:
            self._applying = None
        if waiting is not None:
            waiting.callback(result)

    def _carry_out(self, operation: Operation) -> object:
        node, sid, request = operation.node, operation.sid, operation.request
        if isinstance(request, SignOn):
            assert sid is not None
            client = self._clients.pop(sid, REMOTE) if node == self.node else REMOTE
            user = self.hub.connect(
                client, request.nick, request.account, bool(request.greets_itself)
            )
            user.sid = sid
            self.sessions[sid] = user
            return user
        if isinstance(request, SignOff):
            gone = self.sessions.get(sid or "")
            if gone is not None:
                self.hub.disconnect(gone, request.reason)
            return None
        if isinstance(request, Hello):
            self.nodes.add(node)
            if request.responder == self.node and node != self.node:
                data = snapshot.take(self.hub, self._applied, self.nodes)
                self.log.put_snapshot(node, json.dumps(data, separators=(",", ":")))
                self._submit(None, Snapshot(target=node)).addErrback(lambda f: None)
            return None
        if isinstance(request, Snapshot):  # taken while holding the log (receive)
            return None
        if isinstance(request, Gone):
            self._bury(node, request)
            return None
        if sid is None:
            return self.hub.apply(None, request)
        if isinstance(request, Registered):  # the account exists, its user or not
            return self.hub.apply(self.sessions.get(sid), request)
        return self.hub.apply(self._session(sid), request)

    def _bury(self, node: str, request: Gone) -> None:
        if request.gone == self.node and node != self.node:
            self._lost("the other nodes declared this one gone")
            return
        self.nodes.discard(request.gone)
        prefix = request.gone + "."
        for sid in [s for s in self.sessions if s.startswith(prefix)]:
            self.hub.disconnect(self.sessions[sid], request.reason)

    def _halt(self, seq: int, unknown: UnknownFormat) -> None:
        """
        Stop applying the log at operation C{seq}, whose format this node
        cannot read: the replica stays as it was, and L{why_not_ready} says why.
        """
        self.halted = (
            f"operation {seq} of the cluster's log is in format {unknown.version!r},"
            " which this node cannot read; upgrade it"
        )
        _log.critical("Stopped applying the cluster's log: {why}", why=self.halted)
        waiting, self._waiting = self._waiting, {}
        for d in waiting.values():
            d.errback(degraded(HALTED))

    def _lost(self, why: str) -> None:
        """
        This replica can no longer be trusted: send local users away,
        forget everyone and join again.
        """
        _log.warn("This node lost its place in the cluster: {why}", why=why)
        for user in self._local_users():
            self.hub.fanout.deliver(
                user,
                Error("degraded", "This server lost its place in the cluster; please reconnect"),
            )
            user.client.close()
        waiting, self._waiting = self._waiting, {}
        for d in waiting.values():
            d.errback(degraded())
        self.hub.users.clear()
        self.sessions.clear()
        self._departed.clear()
        lobby = fold(LOBBY)
        self.hub.rooms = {lobby: Room(LOBBY, self.hub.registered.get(lobby))}
        self.nodes = set()
        self._hello()

    # -- liveness -----------------------------------------------------------

    def why_not_ready(self) -> str | None:
        if self.halted is not None:
            return self.halted
        if self.unreachable or not self.connected:
            return "cannot reach the cluster's Redis"
        if not self.ready:
            return "not yet part of the cluster"
        return None

    def _connection_changed(self, connected: bool) -> None:
        if connected == self.connected:
            return
        self.connected = connected
        if connected:
            self._connected_since = self.clock.seconds()
            _log.info("The cluster's Redis is reachable again")
            for user in self._local_users():
                self.hub.fanout.deliver(user, Notice("Cross-node delivery is back"))
            if self.ready:
                self._send_departures()
        else:
            _log.warn("The cluster's Redis cannot be reached; reconnecting")
            for user in self._local_users():
                self.hub.fanout.deliver(
                    user,
                    Error("degraded", "Cross-node delivery is interrupted; reconnecting"),
                )

    def _reap(self) -> Deferred[None] | None:
        """
        Declare gone every node whose heartbeat has lapsed (but only once
        this node has itself been connected long enough for the others to
        have renewed theirs).
        """
        grace = self.log.heartbeat_ttl
        if not (self.ready and self.connected):
            return None
        if self.clock.seconds() - self._connected_since < grace:
            return None
        others = sorted(self.nodes - {self.node})
        if not others:
            return None
        since = self._connected_since

        def bury(dead: list[str]) -> None:
            # The answer may have waited for Redis to come back: only trust
            # it if nothing happened to the connection meanwhile.
            if not self.connected or self._connected_since != since:
                return
            for node in dead:
                if node in self.nodes:
                    _log.warn("Node {node} stopped answering; its users are gone", node=node)
                    gone = Gone(gone=node, reason="connection lost")
                    self._submit(None, gone).addErrback(lambda f: None)

        return self.log.dead(others).addCallbacks(bury, lambda f: None)

    # -- snapshots ----------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """
        The replica as plain data, for a node that is starting.
        """
        return snapshot.take(self.hub, self._applied, self.nodes)

    def restore(self, data: dict[str, Any]) -> None:
        """
        Replace the replica by C{data} from L{snapshot}.
        """
        self._applied = data["seq"]
        self.nodes = set(data["nodes"]) | {self.node}
        self.sessions = snapshot.restore(self.hub, data, REMOTE)

    # -- requests: each change is an operation, answered once applied --------

    def commit(self, user: User | None, change: Request) -> Deferred[Any]:
        return self._submit(None if user is None else user.sid, change)

    def _submit(self, sid: str | None, request: Request) -> Deferred[Any]:
        if self.halted is not None:
            return fail(degraded(HALTED))
        if not self.connected:
            return fail(degraded())
        if not (self.ready or isinstance(request, Gone)):
            return fail(degraded())
        ref = next(self._serial)

        def forget(_: Deferred[Any]) -> None:
            self._waiting.pop(ref, None)

        waiting: Deferred[Any] = Deferred(forget)
        self._waiting[ref] = waiting
        op = encode(Operation(self.node, ref, self.clock.seconds(), sid, request))

        def refused(failure: Failure) -> None:
            held = self._waiting.pop(ref, None)
            if held is not None:
                held.errback(degraded())

        self.log.append(op).addErrback(refused)
        return waiting

    def connect(self, client: IClient, nick: str, account: str | None = None) -> Deferred[User]:
        check_nick(nick)
        if self.unreachable:  # the store could not be opened: not yet
            return fail(degraded(NOT_READY))
        if self.connected and not self.ready:  # joining the cluster: wait for it
            waited = self.when_ready()
            return waited.addCallback(lambda _: self.connect(client, nick, account))
        sid = f"{self.node}.{next(self._serial)}"
        self._clients[sid] = client

        def refused(failure: Failure) -> Failure:
            self._clients.pop(sid, None)
            return failure

        greets_itself = getattr(client, "greets_itself", False) or None
        signing_on = SignOn(nick=nick, account=account, greets_itself=greets_itself)
        return self._submit(sid, signing_on).addErrback(refused)

    def disconnect(self, user: User, reason: str | None = None) -> None:
        self._depart(user.sid, reason)

    def _send_departures(self) -> None:
        """
        Announce the sessions that ended while the log was out of reach.
        """
        for sid, reason in list(self._departed.items()):
            self._depart(sid, reason)

    def _depart(self, sid: str, reason: str | None) -> None:
        """
        Announce that local session C{sid} ended; while the log cannot be
        reached, remember to do it later.
        """
        if sid not in self.sessions:
            self._departed.pop(sid, None)
            return
        self._departed[sid] = reason

        def done(result: object) -> None:
            if not isinstance(result, Failure) or sid not in self.sessions:
                self._departed.pop(sid, None)

        self._submit(sid, SignOff(reason=reason)).addBoth(done)

    def _local_users(self) -> list[User]:
        return [u for u in self.hub.users.values() if u.client is not REMOTE]

    def _session(self, sid: str) -> User:
        user = self.sessions.get(sid)
        if user is None or self.hub.users.get(fold(user.nick)) is not user:
            self.sessions.pop(sid, None)
            raise ChatError("gone", "That session has ended")
        return user
