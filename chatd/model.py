# -*- test-case-name: tests.test_hub -*-
"""
The vocabulary the hub speaks: naming rules and the events it delivers.

Events are small immutable records.  The hub hands each event to a door's
L{chatd.interfaces.IEncoder} once and writes the result to every recipient on
that door, so an event must carry everything any door needs to render it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from chatd.errors import ChatError

LOBBY = "#lobby"
MAX_NICK_LENGTH = 24
MAX_ROOM_LENGTH = 32
MAX_TEXT_LENGTH = 2000
MAX_TOPIC_LENGTH = 390
MEMBERS_PAGE = 100
"""Nicks in a page of a big room's members."""
PRESENCE_NAMES = 20
"""The most nicks a presence event lists; above, it gives only counts."""
MAX_ID = 2**63 - 1
"""The largest number a request may carry (a message id, a page size): the
largest integer SQLite stores, so that no number a client sends can overflow
a store."""

# The counts below are MAX_NICK_LENGTH - 1 and MAX_ROOM_LENGTH.
_NICK = re.compile(r"[A-Za-z][A-Za-z0-9_\-\[\]\\^{}|]{0,23}\Z")
_ROOM = re.compile(r"#[A-Za-z0-9_\-]{1,32}\Z")


def fold(name: str) -> str:
    """
    The key under which a nick or room name is unique: names differ only if
    they differ case-insensitively.  Valid names are ASCII; anything else is
    left as it is, so that no invalid name (C{#\u212a} with a Kelvin sign)
    can fold onto a valid one (C{#k}).
    """
    return name.lower() if name.isascii() else name


def check_nick(nick: str) -> str:
    """
    Return C{nick} if it is a valid nickname, else raise C{bad_nick}.
    """
    if not _NICK.match(nick):
        raise ChatError(
            "bad_nick",
            f"Invalid nickname {nick[:40]!r}: 1-{MAX_NICK_LENGTH} characters, a "
            "letter first, then letters, digits or _-[]\\^{}|",
        )
    return nick


def check_room(room: str) -> str:
    """
    Return C{room} if it is a valid room name, else raise C{bad_room}.
    """
    if not _ROOM.match(room):
        raise ChatError(
            "bad_room",
            f"Invalid room name {room[:40]!r}: '#' then 1-{MAX_ROOM_LENGTH} "
            "letters, digits, '_' or '-'",
        )
    return room


def check_text(text: str, limit: int = MAX_TEXT_LENGTH, what: str = "message") -> str:
    """
    Return C{text} if it is a sayable message, else raise.
    """
    if not text or text.isspace():
        raise ChatError("empty_text", f"Empty {what}")
    if len(text) > limit:
        raise ChatError("text_too_long", f"The {what} is longer than {limit} characters")
    return text


def check_number(value: int, what: str) -> int:
    """
    Return C{value} if it is a whole number from 1 to L{MAX_ID}, else raise
    C{bad_request} naming it as C{what}.
    """
    if not 1 <= value <= MAX_ID:
        raise ChatError("bad_request", f"{what} must be a whole number from 1 to {MAX_ID}")
    return value


@dataclass(frozen=True, slots=True)
class Welcome:
    """
    A connection was accepted into the hub under C{nick}, identified as
    C{account} if it gave a password.
    """

    nick: str
    rooms: tuple[str, ...]
    account: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """
    Something said (or, with C{action}, done) in a room.

    @ivar id: unique, increasing in the order the hub accepted messages.
    @ivar ts: seconds since the epoch.
    """

    room: str
    sender: str
    text: str
    ts: float
    id: int
    action: bool = False


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """
    Stored messages of a room, oldest first, sent to one user on joining
    or on request.  C{more} when older ones may exist.
    """

    room: str
    messages: tuple[Message, ...]
    more: bool = False


@dataclass(frozen=True, slots=True)
class PrivateMessage:
    """
    A private message, as its recipient sees it.

    @ivar id: from the same sequence as room messages' ids.
    """

    sender: str
    recipient: str
    text: str
    ts: float
    id: int = 0


@dataclass(frozen=True, slots=True)
class PrivateEcho(PrivateMessage):
    """The same private message, as its sender sees it."""


@dataclass(frozen=True, slots=True)
class PrivateHistory:
    """
    Stored private messages between C{nick} (who asked) and C{other},
    oldest first.  C{more} when older ones may exist.
    """

    nick: str
    other: str
    messages: tuple[PrivateMessage, ...]
    more: bool = False


@dataclass(frozen=True, slots=True)
class Joined:
    """C{nick} joined C{room}."""

    room: str
    nick: str


@dataclass(frozen=True, slots=True)
class Parted:
    """C{nick} left C{room} (by C{/part}, by quitting, or by dropping)."""

    room: str
    nick: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class NickChanged:
    """C{old} is now known as C{new}."""

    old: str
    new: str


@dataclass(frozen=True, slots=True)
class Topic:
    """The topic of C{room} (empty when none is set), as an answer or on join."""

    room: str
    topic: str
    by: str | None


@dataclass(frozen=True, slots=True)
class TopicChanged(Topic):
    """C{by} just set the topic of C{room}."""


@dataclass(frozen=True, slots=True)
class UserList:
    """
    The members of C{room}, in the order they joined, and its operators
    among them: all of them, or with C{page} one page of the room's
    C{count} members (L{MEMBERS_PAGE} each, C{pages} in all).
    """

    room: str
    nicks: tuple[str, ...]
    ops: tuple[str, ...] = ()
    count: int = 0
    page: int | None = None
    pages: int = 1


@dataclass(frozen=True, slots=True)
class Presence:
    """
    Who joined and left big room C{room} since the last such event, told
    to its members at most once a second instead of each join and part.

    @ivar joins: members who joined and are still there.
    @ivar parts: members who left (not counting those who joined since).
    @ivar count: the members now.
    @ivar joined: their nicks, or C{None} when the change is too long to
        list (more than L{PRESENCE_NAMES} nicks).
    @ivar left: likewise.
    """

    room: str
    joins: int
    parts: int
    count: int
    joined: tuple[str, ...] | None = None
    left: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Kicked:
    """
    C{by} put C{nick} out of C{room}.  Doors show it as the contract's part
    (so that every client sees the member leave) with L{part_reason}.
    """

    room: str
    nick: str
    by: str
    reason: str | None = None

    @property
    def part_reason(self) -> str:
        return f"kicked by {self.by}" + (f": {self.reason}" if self.reason else "")


@dataclass(frozen=True, slots=True)
class BanChanged:
    """C{by} banned C{nick} (an account or nickname) from C{room}, or lifted it."""

    room: str
    nick: str
    by: str
    banned: bool


@dataclass(frozen=True, slots=True)
class OpChanged:
    """C{by} made C{nick} an operator of C{room}, or took that away."""

    room: str
    nick: str
    by: str
    op: bool


@dataclass(frozen=True, slots=True)
class ModeChanged:
    """C{by} changed a mode of C{room}: C{change} is e.g. C{+m}, C{-t} or C{+k KEY}."""

    room: str
    change: str
    by: str


@dataclass(frozen=True, slots=True)
class Modes:
    """The modes of C{room} (e.g. C{+ikt}) and its key, as an answer."""

    room: str
    modes: str
    key: str | None


@dataclass(frozen=True, slots=True)
class Invited:
    """C{by} invites the recipient into C{room}."""

    room: str
    by: str


@dataclass(frozen=True, slots=True)
class AccountChanged:
    """
    The recipient's account: C{what} is C{registered}, C{identified} or
    C{password}.
    """

    account: str
    what: str


@dataclass(frozen=True, slots=True)
class RoomInfo:
    """One line of a room listing."""

    room: str
    users: int
    topic: str


@dataclass(frozen=True, slots=True)
class RoomList:
    """Every room on the server."""

    rooms: tuple[RoomInfo, ...]


@dataclass(frozen=True, slots=True)
class Notice:
    """A message from the server itself, e.g. that it is shutting down."""

    text: str


@dataclass(frozen=True, slots=True)
class Error:
    """
    A request of this user's was refused; see L{chatd.errors.ChatError}.

    @ivar request: what was refused (a WebSocket request's type), if known.
    """

    code: str
    message: str
    request: str | None = None

    @classmethod
    def from_exception(cls, error: ChatError, request: str | None = None) -> Error:
        return cls(error.code, error.message, request)


@dataclass(frozen=True, slots=True)
class Account:
    """
    A registered nickname.

    @ivar name: the nickname as it was registered.
    @ivar password_hash: an argon2id hash (PHC string), never the password.
    @ivar created: seconds since the epoch.
    @ivar first_id: the message id from which on private messages to this
        nickname are the account holder's (earlier ones were to whoever
        held the name before it was registered).
    """

    name: str
    password_hash: str
    created: float
    first_id: int = 0


@dataclass(frozen=True, slots=True)
class RoomRecord:
    """
    The settings of a registered room, which outlive its members.

    @ivar owner: the folded name of the owning account.
    @ivar modes: the set flags among C{i} (invite only), C{m} (moderated)
        and C{t} (only operators set the topic), sorted; C{k} is implied by
        C{key}.
    @ivar ops: folded names of accounts that are operators here.
    @ivar bans: folded names of accounts (or nicknames) banned from here.
    """

    name: str
    owner: str
    topic: str = ""
    topic_by: str | None = None
    modes: str = ""
    key: str | None = None
    ops: frozenset[str] = frozenset()
    bans: frozenset[str] = frozenset()

    def to_list(self) -> list[object]:
        """
        The record as a JSON-ready list (for Redis and cluster snapshots).
        """
        fields = [self.name, self.owner, self.topic, self.topic_by, self.modes, self.key]
        return [*fields, sorted(self.ops), sorted(self.bans)]

    @classmethod
    def from_list(cls, data: list[Any]) -> RoomRecord:
        """
        The record that L{to_list} made C{data} from.
        """
        name, owner, topic, topic_by, modes, key, ops, bans = data
        return cls(name, owner, topic, topic_by, modes, key, frozenset(ops), frozenset(bans))


@dataclass(frozen=True, slots=True)
class StoreState:
    """
    What a store hands the hub at start-up.

    @ivar last_id: the highest message id ever stored (0 if none).
    @ivar accounts: folded names of every registered nickname.
    @ivar rooms: every registered room.
    """

    last_id: int = 0
    accounts: frozenset[str] = frozenset()
    rooms: tuple[RoomRecord, ...] = ()


Event = (
    Welcome
    | Message
    | HistoryPage
    | PrivateHistory
    | PrivateMessage
    | Joined
    | Parted
    | NickChanged
    | Topic
    | UserList
    | Presence
    | Kicked
    | BanChanged
    | OpChanged
    | ModeChanged
    | Modes
    | Invited
    | AccountChanged
    | RoomList
    | Notice
    | Error
)
