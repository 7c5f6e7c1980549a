"""
The seams between the hub, its doors and its storage.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from chatd.hub.state import User
    from chatd.model import Account, Event, Message, PrivateMessage, RoomRecord, StoreState
    from chatd.requests import Request


class IEncoder(Interface):
    """
    Turns hub events into one door's wire payloads.

    One encoder serves every connection of a door, so the hub encodes an
    event once per door and writes the same payload to each recipient.
    """

    def encode(event: Event) -> object:
        """
        Return the payload for C{event}, ready for L{IClient.send}.
        """


class IClient(Interface):
    """
    One connected, named user as the hub sees it: a sink for payloads.

    A client may also have a true C{greets_itself}: its door greets it at
    sign-on (IRC's welcome numerics and MOTD), so the hub neither puts it
    in C{#lobby} nor sends it the message of the day.
    """

    encoder: IEncoder = Attribute("The IEncoder whose payloads send() accepts.")
    push: Callable[[object], None] = Attribute(
        "send(payload) for the hub's fan-out loop, by the shortest way there is "
        "(a door may point it straight at its transport while that keeps up)."
    )

    def send(payload: object, optional: bool = False) -> None:
        """
        Queue one payload made by C{encoder} for writing; never block.
        C{optional} output (history) may be skipped for a reader far behind.
        """

    def close() -> None:
        """
        End the connection once what is queued has been written: the hub
        has already let the user go (taken over, killed).
        """


class IDoor(Interface):
    """
    A listening front end onto the hub (the line door, the web door).
    """

    name: str = Attribute("Short name for logs, e.g. 'line'.")

    def shutdown(reason: str) -> Deferred[None]:
        """
        Tell every connection C{reason} and close it; fire when all are gone.
        """


class IStore(Interface):
    """
    Where everything that outlives a connection is kept: room and private
    messages, accounts, and the settings of registered rooms.

    Writes are queued and committed in groups, in the order they were made;
    the hub never waits for them except where it says so (a new account).
    Reads return Deferreds and see every write made before them, committed
    or still queued.  Nothing here blocks the reactor.
    """

    def load() -> StoreState:
        """
        What the hub needs at start-up.  Called once, before the reactor
        runs; the only call allowed to do I/O on the calling thread.
        """

    def record(message: Message | PrivateMessage) -> None:
        """
        Keep C{message} (whose C{id} the hub has set).  Failures are the
        store's to log: talking never waits for, or fails on, storage.
        """

    def fetch(room: str, limit: int, before: int | None) -> Deferred[list[Message]]:
        """
        The newest C{limit} messages of C{room} (any case) whose id is below
        C{before} (if given), oldest first.
        """

    def fetch_private(
        nick: str, other: str, limit: int, before: int | None, after: int
    ) -> Deferred[list[PrivateMessage]]:
        """
        The newest C{limit} private messages between C{nick} and C{other}
        (either way, names in any case) whose id is above C{after} and below
        C{before} (if given), oldest first.
        """

    def account(name: str) -> Deferred[Account | None]:
        """
        The account of nickname C{name} (any case), or None.
        """

    def create_account(account: Account) -> Deferred[bool]:
        """
        Register C{account}; fires once committed, with False (and nothing
        changed) if its name is already registered.
        """

    def set_password(name: str, password_hash: str) -> Deferred[None]:
        """
        Replace the password hash of account C{name}; fires once committed.
        """

    def save_room(room: RoomRecord) -> None:
        """
        Keep the settings of registered room C{room.name}, replacing any.
        """

    def prune(before: float) -> Deferred[int]:
        """
        Forget messages older than C{before} (seconds since the epoch);
        fires with how many were removed.
        """

    def check() -> Deferred[None]:
        """
        Fire if the store works (it can be read, its last write succeeded);
        fail otherwise.  For readiness probes.
        """

    def close() -> Deferred[None]:
        """
        Commit everything queued, then release the store; fires when done.
        """


class ISharedStore(IStore):
    """
    A store several processes share (a cluster's), read when a node starts
    rather than when it is made.
    """

    def open() -> Deferred[StoreState]:
        """
        Connect, and fire with what the store keeps (as L{IStore.load}).
        """


class IOpLog(Interface):
    """
    The ordered log of operations that the nodes of a cluster share
    (L{chatd.cluster}): every node reads every entry, in one order.
    """

    heartbeat_ttl: float = Attribute(
        "Seconds after its last heartbeat at which a silent node counts as dead."
    )

    def hello(node: str, deliver: Callable[[int, str], None]) -> Deferred[tuple[int, str | None]]:
        """
        Append a C{hello} operation for C{node}, naming a live node that is
        to answer it with a snapshot (or None if C{node} is alone); then
        call C{deliver(seq, op)} with every entry after it, in order, for
        as long as the log is followed.  Fires with the hello's number and
        the answering node.
        """

    def append(op: str) -> Deferred[int]:
        """
        Append C{op}; fires with its number, or fails if the log cannot be
        reached.
        """

    def put_snapshot(node: str, data: str) -> Deferred[None]:
        """
        Leave C{data} for the starting node C{node}.
        """

    def get_snapshot(node: str) -> Deferred[str | None]:
        """
        Take what was left for C{node}, if anything.
        """

    def dead(nodes: list[str]) -> Deferred[list[str]]:
        """
        Those of C{nodes} whose heartbeat has lapsed.
        """

    def watch(callback: Callable[[bool], None]) -> None:
        """
        Call C{callback} with whether the log can be reached, each time
        that changes.
        """

    def stop() -> Deferred[None]:
        """
        Stop following, withdraw this node's heartbeat and disconnect.
        """


class IRunner(Interface):
    """
    What a hub asks of whatever applies requests to it: a lone process
    (L{chatd.hub.hub.Alone}) or a node of a cluster
    (L{chatd.cluster.node.ClusterGateway}), whose every node applies every
    change to its own replica.
    """

    def now() -> float:
        """
        The time stamped on a message being accepted.
        """

    def next_id(last_id: int) -> int:
        """
        The id of a message being accepted, after the newest, C{last_id}.
        """

    def keeps() -> bool:
        """
        Whether the change being applied was asked for on this process,
        which then writes what it changed to the store and logs it (every
        node of a cluster applies it; one keeps it).
        """

    def is_local(user: User) -> bool:
        """
        Whether C{user} is connected to this process.
        """

    def signed_off(user: User) -> None:
        """
        C{user} left the hub.
        """


class IGateway(Interface):
    """
    Carries requests to a hub: one applies them at once; a cluster node
    appends each change to the cluster's log and answers once it is applied.
    """

    hub = Attribute("The L{chatd.hub.Hub} requests are applied to.")

    def submit(user: User | None, request: Request) -> Deferred[object] | None:
        """
        Apply C{request} on behalf of C{user} (C{None}: the server's own).
        Refuse with L{chatd.errors.ChatError}, raised or as the Deferred's
        failure; return a Deferred if the answer waits.
        """

    def connect(client: IClient, nick: str, account: str | None) -> User | Deferred[User]:
        """
        Admit C{client} as C{nick}, holding C{account} (proven already).
        """

    def disconnect(user: User, reason: str | None) -> None:
        """
        Take C{user} out of the hub; everyone sharing a room sees it leave.
        """

    def start() -> Deferred[None]:
        """
        Get ready to serve; fire when ready.
        """

    def stop() -> Deferred[None]:
        """
        Tell whoever must know that this process stops serving.
        """

    def why_not_ready() -> str | None:
        """
        Why requests cannot be served right now, if they cannot.
        """
