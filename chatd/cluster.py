# -*- test-case-name: tests.test_cluster -*-
"""
Cluster mode: several chatd processes that users cannot tell from one.

Every node keeps a replica of the whole hub: every user, on whatever node,
is a L{User} in every node's hub, and every room holds all its members.  A
request never changes the replica directly: it becomes an operation that is
appended to one ordered log (L{IOpLog}, on Redis), and every node applies
every operation, in log order, to its replica with the hub's own code.  The
rules are deterministic, so the replicas stay identical, and each node
writes events to its own connections only (a user on another node is a
L{REMOTE} stand-in whose output goes nowhere).  That gives, by
construction, one order for every room on every node, one nickname per
name in the cluster, and a message id that is the operation's place in the
log.

The node that made a request waits for its operation to come back from the
log and answers with what applying it did, refusal included; it alone
writes what must be kept to the shared store.

A node starting up asks the log for a live peer; that peer writes a
snapshot of its replica as of the start-up operation, and the new node
applies the operations that follow it.  A node that misses part of the log
(its place was trimmed away, or the others declared it dead) cannot know
what it missed: it tells its users to reconnect, closes their connections,
and starts again from a snapshot.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from chatd.errors import ChatError
from chatd.hub import Hub, Room, User
from chatd.interfaces import IClient, IEncoder, IOpLog, IStore
from chatd.model import (
    LOBBY,
    Error,
    Event,
    Message,
    Notice,
    PrivateMessage,
    RoomRecord,
    StoreState,
    check_nick,
    fold,
)

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


def degraded(why: str = "Cross-node delivery is interrupted; try again shortly") -> ChatError:
    return ChatError("degraded", why)


NOT_READY = "Not ready: the server cannot reach its cluster yet; try again in a moment"


class ClusterHub(Hub):
    """
    A hub that is one node of a cluster: its public requests are appended
    to the log and answered once applied; L{receive} applies the log.

    @ivar node: this node's id, unique in the cluster for this process.
    @ivar nodes: the nodes the replica knows to be alive.
    @ivar sessions: every user in the cluster, by session id
        (C{NODE.SERIAL}), which unlike a nickname never passes to someone
        else.
    @ivar ready: whether the replica is complete and current.
    @ivar connected: whether the log can be reached.
    @ivar unreachable: whether the last L{start} could not open the store
        (sign-ons are refused until one does).
    @ivar operations: operations of the log applied since start.
    """

    def __init__(
        self,
        clock: IReactorTime,
        store: IStore,
        log: IOpLog,
        *,
        node: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(clock, store, state=StoreState(0, frozenset(), ()), **options)
        self.log = log
        self.node = node or os.urandom(4).hex()
        self.nodes: set[str] = set()
        self.sessions: dict[str, User] = {}
        self.ready = False
        self.connected = True
        self.unreachable = False
        self._serial = itertools.count(1)
        self._waiting: dict[int, Deferred[Any]] = {}
        self._clients: dict[str, IClient] = {}
        self._departed: dict[str, str | None] = {}
        self._applied = 0
        self.operations = 0
        self._held: list[tuple[int, str]] | None = None
        self._snapshot_timer: Any = None
        self._on_ready: list[Deferred[None]] = []
        self._op_node = ""
        self._op_ts = 0.0
        self._op_seq = 0
        self._reaping = LoopingCall(self._reap)
        self._reaping.clock = clock
        self._connected_since = clock.seconds()

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
            self._last_id = max(self._last_id, state.last_id)
            self.accounts = set(state.accounts)
            self.registered = {fold(r.name): r for r in state.rooms}
            lobby = fold(LOBBY)
            self.rooms = {lobby: Room(LOBBY, self.registered.get(lobby))}
            self.log.watch(self._connection_changed)
            self._reaping.start(REAP_EVERY, now=False)
            self._hello()
            return self.when_ready()

        opened: Deferred[StoreState] = self.store.open()  # type: ignore[union-attr]
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
                self._last_id = max(self._last_id, seq)
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
                users=len(self.users),
            )
            waiting, self._on_ready = self._on_ready, []
            for d in waiting:
                d.callback(None)
            self._send_departures()

    def leave(self) -> Deferred[None]:
        """
        Tell the cluster this node and its users are going, then stop
        following the log.
        """
        if self._reaping.running:
            self._reaping.stop()
        if not self.ready:
            return self.log.stop()
        gone = self._submit("gone", self.node, "server shutting down")
        gone.addErrback(lambda f: None)
        timer = self.clock.callLater(LEAVE_TIMEOUT, gone.cancel)
        gone.addBoth(lambda _: timer.cancel() if timer.active() else None)
        return gone.addBoth(lambda _: self.log.stop())

    # -- following the log --------------------------------------------------

    def receive(self, seq: int, op: str) -> None:
        """
        Apply operation number C{seq} of the log, if it is the next one.
        """
        if self._held is not None:
            if len(self._held) >= MAX_HELD:
                self._lost("too much happened while this node was starting")
                return
            self._held.append((seq, op))
            if op.startswith('["snapshot",') and json.loads(op)[4] == self.node:
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

    def _apply(self, seq: int, raw: str) -> None:
        try:
            kind, node, ref, ts, *args = json.loads(raw)
            handler = _APPLY[kind]
        except (ValueError, KeyError, TypeError):
            _log.error("Skipping malformed operation {seq}: {raw!r}", seq=seq, raw=raw[:200])
            return
        waiting = self._waiting.pop(ref, None) if node == self.node else None
        if node not in self.nodes and kind not in _ANY_NODE:
            if waiting is not None:
                waiting.errback(degraded("This server is not part of the cluster right now"))
            return
        self._op_node, self._op_ts, self._op_seq = node, ts, seq
        try:
            result = handler(self, node, *args)
        except ChatError as error:
            if waiting is not None:
                waiting.errback(error)
            return
        except Exception:
            _log.failure("Applying operation {seq} ({kind}) failed", seq=seq, kind=kind)
            if waiting is not None:
                waiting.errback(ChatError("internal_error", "Something went wrong"))
            return
        finally:
            self._op_node = ""
        if waiting is not None:
            waiting.callback(result)

    def _lost(self, why: str) -> None:
        """
        This replica can no longer be trusted: send local users away,
        forget everyone and join again.
        """
        _log.warn("This node lost its place in the cluster: {why}", why=why)
        for user in self._local_users():
            self._deliver(
                user,
                Error("degraded", "This server lost its place in the cluster; please reconnect"),
            )
            user.client.close()
        waiting, self._waiting = self._waiting, {}
        for d in waiting.values():
            d.errback(degraded())
        self.users.clear()
        self.sessions.clear()
        self._departed.clear()
        lobby = fold(LOBBY)
        self.rooms = {lobby: Room(LOBBY, self.registered.get(lobby))}
        self.nodes = set()
        self._hello()

    # -- liveness -----------------------------------------------------------

    def trouble(self) -> str | None:
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
                self._deliver(user, Notice("Cross-node delivery is back"))
            if self.ready:
                self._send_departures()
        else:
            _log.warn("The cluster's Redis cannot be reached; reconnecting")
            for user in self._local_users():
                self._deliver(
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
                    self._submit("gone", node, "connection lost").addErrback(lambda f: None)

        return self.log.dead(others).addCallbacks(bury, lambda f: None)

    # -- snapshots ----------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """
        The replica as plain data, for a node that is starting.
        """
        return {
            "seq": self._applied,
            "last_id": self._last_id,
            "nodes": sorted(self.nodes),
            "accounts": sorted(self.accounts),
            "registered": [r.to_list() for r in self.registered.values()],
            "users": [[u.sid, u.nick, u.account] for u in self.users.values()],
            "rooms": [
                [
                    r.name,
                    [m.sid for m in r.members],
                    [m.sid for m in r.guest_ops],
                    list(r.invites),
                    r.topic,
                    r.topic_by,
                    r.modes,
                    r.key,
                    r.owner,
                    sorted(r.op_accounts),
                    sorted(r.bans),
                ]
                for r in self.rooms.values()
            ],
        }

    def restore(self, data: dict[str, Any]) -> None:
        """
        Replace the replica by C{data} from L{snapshot}.
        """
        self._applied = data["seq"]
        self._last_id = data["last_id"]
        self.nodes = set(data["nodes"]) | {self.node}
        self.accounts = set(data["accounts"])
        self.registered = {fold(r[0]): RoomRecord.from_list(r) for r in data["registered"]}
        self.users, self.sessions, self.rooms = {}, {}, {}
        for sid, nick, account in data["users"]:
            user = User(nick, REMOTE, account, self._last_id)
            user.sid = sid
            self.users[fold(nick)] = self.sessions[sid] = user
        for name, members, guest_ops, invites, topic, by, modes, key, owner, ops, bans in data[
            "rooms"
        ]:
            room = Room(name)
            room.topic, room.topic_by, room.modes, room.key = topic, by, modes, key
            room.owner, room.op_accounts, room.bans = owner, set(ops), set(bans)
            room.invites = dict.fromkeys(invites)
            for sid in members:
                user = self.sessions[sid]
                room.members[user] = None
                user.rooms[fold(name)] = room
            room.guest_ops = {self.sessions[sid] for sid in guest_ops}
            self.rooms[fold(name)] = room
        lobby = fold(LOBBY)
        self.rooms.setdefault(lobby, Room(LOBBY, self.registered.get(lobby)))

    # -- requests: each is an operation, answered once applied ---------------

    def _submit(self, kind: str, *args: object) -> Deferred[Any]:
        if not self.connected or not (self.ready or kind == "gone"):
            return fail(degraded())
        ref = next(self._serial)

        def forget(_: Deferred[Any]) -> None:
            self._waiting.pop(ref, None)

        waiting: Deferred[Any] = Deferred(forget)
        self._waiting[ref] = waiting
        op = json.dumps([kind, self.node, ref, self.clock.seconds(), *args], separators=(",", ":"))

        def refused(failure: Failure) -> None:
            held = self._waiting.pop(ref, None)
            if held is not None:
                held.errback(degraded())

        self.log.append(op).addErrback(refused)
        return waiting

    def connect(  # type: ignore[override]
        self, client: IClient, nick: str, account: str | None = None
    ) -> Deferred[User]:
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

        return self._submit("connect", sid, nick, account).addErrback(refused)

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

        self._submit("disconnect", sid, reason).addBoth(done)

    def change_nick(self, user: User, new: str) -> Deferred[None]:
        return self._submit("nick", user.sid, new)

    def identify(self, user: User, nick: str, account: str) -> Deferred[None]:
        return self._submit("identify", user.sid, nick, account)

    def _registered(self, user: User, nick: str) -> Deferred[None]:
        return self._submit("registered", user.sid, nick)

    def join(self, user: User, name: str, key: str | None = None) -> Deferred[None]:
        return self._submit("join", user.sid, name, key)

    def part(self, user: User, name: str, reason: str | None = None) -> Deferred[None]:
        return self._submit("part", user.sid, name, reason)

    def topic(self, user: User, name: str, text: str | None = None) -> Deferred[None] | None:
        if text is None:
            return Hub.topic(self, user, name)
        return self._submit("topic", user.sid, name, text)

    def set_op(self, user: User, name: str, nick: str, op: bool = True) -> Deferred[None]:
        return self._submit("op", user.sid, name, nick, op)

    def kick(self, user: User, name: str, nick: str, reason: str | None = None) -> Deferred[None]:
        return self._submit("kick", user.sid, name, nick, reason)

    def ban(self, user: User, name: str, nick: str, banned: bool = True) -> Deferred[None]:
        return self._submit("ban", user.sid, name, nick, banned)

    def set_mode(
        self, user: User, name: str, change: str | None, key: str | None = None
    ) -> Deferred[None] | None:
        if not change:
            return Hub.set_mode(self, user, name, change, key)
        return self._submit("mode", user.sid, name, change, key)

    def invite(self, user: User, name: str, nick: str) -> Deferred[None]:
        return self._submit("invite", user.sid, name, nick)

    def kill(self, user: User, nick: str, reason: str | None = None) -> Deferred[None]:
        return self._submit("kill", user.sid, nick, reason)

    def drop(self, nick: str, by: str, reason: str | None = None) -> Deferred[None]:
        return self._submit("drop", nick, by, reason)

    def remove(self, nick: str, name: str, by: str, reason: str | None = None) -> Deferred[None]:
        return self._submit("remove", nick, name, by, reason)

    def announce(self, text: str) -> Deferred[None]:
        return self._submit("announce", text)

    def say(  # type: ignore[override]
        self, user: User, name: str, text: str, action: bool = False
    ) -> Deferred[Message]:
        return self._submit("say", user.sid, name, text, action)

    def private(self, user: User, nick: str, text: str) -> Deferred[None]:
        return self._submit("private", user.sid, nick, text)

    # -- what applying an operation needs from the hub ----------------------

    def _now(self) -> float:
        return self._op_ts

    def _next_id(self) -> int:
        self.messages += 1
        self._last_id = self._op_seq
        return self._op_seq

    def _record(self, message: Message | PrivateMessage) -> None:
        if self._op_node == self.node:
            self.store.record(message)

    def _keep_room(self, record: RoomRecord) -> None:
        if self._op_node == self.node:
            self.store.save_room(record)

    def _disconnect(self, user: User, reason: str | None) -> None:
        self.sessions.pop(user.sid, None)
        super()._disconnect(user, reason)

    def _is_local(self, user: User) -> bool:
        return user.client is not REMOTE

    def _note(self, kind: str, text: str, **fields: object) -> None:
        """
        Log a change of state once in the cluster: every node applies every
        operation, and the node that made it (the node of the user who
        asked, the one that declared a dead node's users gone) logs it.
        """
        if self._op_node in ("", self.node):
            super()._note(kind, text, **fields)

    def _local_users(self) -> list[User]:
        return [u for u in self.users.values() if u.client is not REMOTE]

    def _broadcast(self, users: Iterable[User], event: Event) -> None:
        """
        Write C{event} to the local ones of C{users} only: every other node
        does the same for its own, so each delivery is counted once, and
        the fan-out loop does not visit other nodes' users.
        """
        super()._broadcast([u for u in users if u.client is not REMOTE], event)

    def _session(self, sid: str) -> User:
        user = self.sessions.get(sid)
        if user is None or self.users.get(fold(user.nick)) is not user:
            self.sessions.pop(sid, None)
            raise ChatError("gone", "That session has ended")
        return user


def _on_session(method: Callable[..., Any]) -> Callable[..., Any]:
    """
    Apply an operation made for a session: the hub's own C{method}, called
    with that session's user.
    """

    def apply(hub: ClusterHub, node: str, sid: str, *args: Any) -> Any:
        return method(hub, hub._session(sid), *args)

    return apply


def _apply_connect(hub: ClusterHub, node: str, sid: str, nick: str, account: str | None) -> User:
    client = hub._clients.pop(sid, REMOTE) if node == hub.node else REMOTE
    user = Hub.connect(hub, client, nick, account)
    user.sid = sid
    hub.sessions[sid] = user
    return user


def _apply_disconnect(hub: ClusterHub, node: str, sid: str, reason: str | None) -> None:
    user = hub.sessions.get(sid)
    if user is not None:
        hub._disconnect(user, reason)


def _apply_registered(hub: ClusterHub, node: str, sid: str, nick: str) -> None:
    user = hub.sessions.get(sid)
    if user is None:
        hub.accounts.add(fold(nick))
    else:
        Hub._registered(hub, user, nick)


def _apply_join(hub: ClusterHub, node: str, sid: str, name: str, key: str | None) -> None:
    Hub._join(hub, hub._session(sid), name, key)


def _apply_hello(hub: ClusterHub, node: str, responder: str | None) -> None:
    hub.nodes.add(node)
    if responder == hub.node and node != hub.node:
        hub.log.put_snapshot(node, json.dumps(hub.snapshot(), separators=(",", ":")))
        hub._submit("snapshot", node).addErrback(lambda f: None)


def _apply_snapshot(hub: ClusterHub, node: str, target: str) -> None:
    """
    Snapshots are taken while holding the log (L{ClusterHub.receive}).
    """


def _apply_gone(hub: ClusterHub, node: str, gone: str, reason: str) -> None:
    if gone == hub.node and node != hub.node:
        hub._lost("the other nodes declared this one gone")
        return
    hub.nodes.discard(gone)
    prefix = gone + "."
    for sid in [s for s in hub.sessions if s.startswith(prefix)]:
        hub._disconnect(hub.sessions[sid], reason)


def _plain(method: Callable[..., Any]) -> Callable[..., Any]:
    def apply(hub: ClusterHub, node: str, *args: Any) -> Any:
        return method(hub, *args)

    return apply


_APPLY: dict[str, Callable[..., Any]] = {
    "connect": _apply_connect,
    "disconnect": _apply_disconnect,
    "nick": _on_session(Hub.change_nick),
    "identify": _on_session(Hub.identify),
    "registered": _apply_registered,
    "join": _apply_join,
    "part": _on_session(Hub.part),
    "topic": _on_session(Hub.topic),
    "op": _on_session(Hub.set_op),
    "kick": _on_session(Hub.kick),
    "ban": _on_session(Hub.ban),
    "mode": _on_session(Hub.set_mode),
    "invite": _on_session(Hub.invite),
    "kill": _on_session(Hub.kill),
    "drop": _plain(Hub._drop),
    "remove": _plain(Hub.remove),
    "announce": _plain(Hub.announce),
    "say": _on_session(Hub.say),
    "private": _on_session(Hub.private),
    "hello": _apply_hello,
    "snapshot": _apply_snapshot,
    "gone": _apply_gone,
}
_ANY_NODE = frozenset({"hello", "snapshot", "gone"})
