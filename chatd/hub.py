# -*- test-case-name: tests.test_hub -*-
"""
The hub: users, nicknames, rooms, topics and routing, with no I/O at all.

Doors call the hub's methods on behalf of a connected user; the hub answers
by delivering events (L{chatd.model}) to L{chatd.interfaces.IClient}s, never
by returning text, so every door renders every outcome the same way.  A
refused request raises L{ChatError} before anything has changed.
"""

from __future__ import annotations

from collections.abc import Iterable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatd.errors import ChatError
from chatd.interfaces import IClient, IEncoder, IHistoryStore
from chatd.model import (
    LOBBY,
    MAX_TOPIC_LENGTH,
    Error,
    Event,
    HistoryPage,
    Joined,
    Message,
    NickChanged,
    Parted,
    PrivateEcho,
    PrivateMessage,
    RoomInfo,
    RoomList,
    Topic,
    TopicChanged,
    UserList,
    Welcome,
    check_nick,
    check_room,
    check_text,
    fold,
)
from chatd.store.memory import MemoryHistoryStore


class User:
    """
    A named connection in the hub.

    @ivar rooms: the rooms the user is in, by folded name, oldest join first.
    """

    __slots__ = ("client", "nick", "rooms")

    def __init__(self, nick: str, client: IClient) -> None:
        self.nick = nick
        self.client = client
        self.rooms: dict[str, Room] = {}

    def __repr__(self) -> str:
        return f"<User {self.nick}>"


class Room:
    """
    A room and its members (an ordered set, in join order).
    """

    __slots__ = ("members", "name", "topic", "topic_by")

    def __init__(self, name: str) -> None:
        self.name = name
        self.members: dict[User, None] = {}
        self.topic = ""
        self.topic_by: str | None = None


class Hub:
    """
    The one place where chat state lives and chat rules are enforced.

    @ivar users: connected users by folded nick.
    @ivar rooms: rooms with at least one member (and always C{#lobby}), by
        folded name.
    @ivar closing: set while the server shuts down; quits are then not
        announced, since everybody is leaving at once.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        history: IHistoryStore | None = None,
        *,
        max_rooms_per_user: int = 50,
        history_page: int = 20,
        max_history_page: int = 200,
    ) -> None:
        self.clock = clock
        self.history = MemoryHistoryStore() if history is None else history
        self.max_rooms_per_user = max_rooms_per_user
        self.history_page = history_page
        self.max_history_page = max_history_page
        self.users: dict[str, User] = {}
        self.rooms: dict[str, Room] = {fold(LOBBY): Room(LOBBY)}
        self.closing = False
        self._last_id = 0

    # -- connecting ---------------------------------------------------------

    def connect(self, client: IClient, nick: str) -> User:
        """
        Admit C{client} as C{nick}: it is welcomed and joins C{#lobby}.
        """
        check_nick(nick)
        if self.closing:
            raise ChatError("shutting_down", "The server is shutting down")
        if fold(nick) in self.users:
            raise ChatError("nick_taken", f"The nickname {nick} is already in use")
        user = User(nick, client)
        self.users[fold(nick)] = user
        self._deliver(user, Welcome(nick, (LOBBY,)))
        self.join(user, LOBBY)
        return user

    def disconnect(self, user: User, reason: str | None = None) -> None:
        """
        Remove C{user}; everyone sharing a room sees it leave each room once.
        Calling it again for the same user does nothing.
        """
        if self.users.get(fold(user.nick)) is not user:
            return
        del self.users[fold(user.nick)]
        for room in list(user.rooms.values()):
            self._leave(user, room)
            if not self.closing:
                self._broadcast(room.members, Parted(room.name, user.nick, reason))

    def change_nick(self, user: User, new: str) -> None:
        """
        Rename C{user}; it and everyone sharing a room with it see it once.
        """
        check_nick(new)
        if new == user.nick:
            return
        holder = self.users.get(fold(new))
        if holder is not None and holder is not user:
            raise ChatError("nick_taken", f"The nickname {new} is already in use")
        old = user.nick
        del self.users[fold(old)]
        user.nick = new
        self.users[fold(new)] = user
        audience: dict[User, None] = {user: None}
        for room in user.rooms.values():
            audience.update(room.members)
        self._broadcast(audience, NickChanged(old, new))

    # -- rooms --------------------------------------------------------------

    def is_member(self, user: User, room: str) -> bool:
        """
        Whether C{user} is in C{room}.
        """
        return fold(room) in user.rooms

    def join(self, user: User, name: str) -> None:
        """
        Put C{user} in room C{name}, creating it if needed.

        The joiner gets its own join, then the member list, then the topic
        if one is set; every other member gets the join.
        """
        check_room(name)
        key = fold(name)
        if key in user.rooms:
            raise ChatError("already_joined", f"You are already in {user.rooms[key].name}")
        if len(user.rooms) >= self.max_rooms_per_user:
            raise ChatError(
                "too_many_rooms", f"You cannot be in more than {self.max_rooms_per_user} rooms"
            )
        room = self.rooms.get(key)
        if room is None:
            room = self.rooms[key] = Room(name)
        room.members[user] = None
        user.rooms[key] = room
        self._broadcast(room.members, Joined(room.name, user.nick))
        self._deliver(user, UserList(room.name, tuple(m.nick for m in room.members)))
        if room.topic:
            self._deliver(user, Topic(room.name, room.topic, room.topic_by))

    def part(self, user: User, name: str, reason: str | None = None) -> None:
        """
        Take C{user} out of room C{name}; it and the other members see it.
        """
        room = self._membership(user, name)
        self._broadcast(room.members, Parted(room.name, user.nick, reason))
        self._leave(user, room)

    def who(self, user: User, name: str) -> None:
        """
        Send C{user} the members of room C{name}.
        """
        room = self._existing(name)
        self._deliver(user, UserList(room.name, tuple(m.nick for m in room.members)))

    def list_rooms(self, user: User) -> None:
        """
        Send C{user} every room, its member count and topic, by name.
        """
        rooms = sorted(self.rooms.items())
        info = tuple(RoomInfo(r.name, len(r.members), r.topic) for _, r in rooms)
        self._deliver(user, RoomList(info))

    def topic(self, user: User, name: str, text: str | None = None) -> None:
        """
        With no C{text}, send C{user} the topic of room C{name}; otherwise set
        it (an empty or blank text clears it) and show every member.
        """
        if text is None:
            room = self._existing(name)
            self._deliver(user, Topic(room.name, room.topic, room.topic_by))
            return
        room = self._membership(user, name)
        text = text.strip()
        if len(text) > MAX_TOPIC_LENGTH:
            raise ChatError(
                "text_too_long", f"The topic is longer than {MAX_TOPIC_LENGTH} characters"
            )
        room.topic = text
        room.topic_by = user.nick
        self._broadcast(room.members, TopicChanged(room.name, text, user.nick))

    # -- talking ------------------------------------------------------------

    def say(self, user: User, name: str, text: str, action: bool = False) -> Message:
        """
        Say C{text} in room C{name}: every member, sender included, gets it
        exactly once, in the order the hub accepted messages.
        """
        room = self._membership(user, name)
        check_text(text)
        self._last_id += 1
        message = Message(room.name, user.nick, text, self.clock.seconds(), self._last_id, action)
        self._broadcast(room.members, message)
        self.history.record(message).addErrback(self._log_failure, "storing a message")
        return message

    def private(self, user: User, nick: str, text: str) -> None:
        """
        Send C{text} to C{nick} alone, and echo it back to the sender.
        """
        check_text(text)
        target = self.users.get(fold(nick))
        if target is None:
            raise ChatError("no_such_nick", f"There is no user named {nick}")
        ts = self.clock.seconds()
        self._deliver(target, PrivateMessage(user.nick, target.nick, text, ts))
        if target is not user:
            self._deliver(user, PrivateEcho(user.nick, target.nick, text, ts))

    def recent(
        self, user: User, name: str, limit: int | None = None, before: int | None = None
    ) -> Deferred[None]:
        """
        Send C{user} the newest C{limit} stored messages of room C{name}
        (older than message id C{before}, if given), oldest first.
        """
        room = self._membership(user, name)
        if limit is None:
            limit = self.history_page
        if limit < 1:
            raise ChatError("bad_request", "The history limit must be a positive number")
        limit = min(limit, self.max_history_page)

        def send(messages: list[Message]) -> None:
            self._deliver(user, HistoryPage(room.name, tuple(messages)))

        def failed(failure: Failure) -> None:
            self._log_failure(failure, "fetching history")
            self._deliver(user, Error("history_unavailable", "History is unavailable"))

        fetched = self.history.fetch(room.name, limit, before)
        return fetched.addCallback(send).addErrback(failed)

    # -- internals ----------------------------------------------------------

    def _existing(self, name: str) -> Room:
        check_room(name)
        room = self.rooms.get(fold(name))
        if room is None:
            raise ChatError("no_such_room", f"There is no room named {name}")
        return room

    def _membership(self, user: User, name: str) -> Room:
        check_room(name)
        room = user.rooms.get(fold(name))
        if room is None:
            raise ChatError("not_in_room", f"You are not in {name}")
        return room

    def _leave(self, user: User, room: Room) -> None:
        key = fold(room.name)
        del room.members[user]
        del user.rooms[key]
        if not room.members and key != fold(LOBBY):
            del self.rooms[key]

    def _deliver(self, user: User, event: Event) -> None:
        self._broadcast((user,), event)

    def _broadcast(self, users: Iterable[User], event: Event) -> None:
        """
        Encode C{event} once per door and write it to each of C{users}.

        Each recipient is isolated: a failure while delivering to one is
        logged and never reaches the sender or the other recipients.
        """
        encoded: dict[IEncoder, object] = {}
        for user in tuple(users):  # a delivery may end in someone leaving
            client = user.client
            try:
                encoder = client.encoder
                payload = encoded.get(encoder)
                if payload is None:
                    payload = encoded[encoder] = encoder.encode(event)
                client.send(payload)
            except Exception:
                self._log.failure(
                    "Delivering {event!r} to {nick} failed", event=event, nick=user.nick
                )

    def _log_failure(self, failure: Failure, doing: str) -> None:
        self._log.failure("Failed {doing}", failure=failure, doing=doing)
