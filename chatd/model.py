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

from chatd.errors import ChatError

LOBBY = "#lobby"
MAX_NICK_LENGTH = 24
MAX_ROOM_LENGTH = 32
MAX_TEXT_LENGTH = 2000
MAX_TOPIC_LENGTH = 390

# The counts below are MAX_NICK_LENGTH - 1 and MAX_ROOM_LENGTH.
_NICK = re.compile(r"[A-Za-z][A-Za-z0-9_\-\[\]\\^{}|]{0,23}\Z")
_ROOM = re.compile(r"#[A-Za-z0-9_\-]{1,32}\Z")


def fold(name: str) -> str:
    """
    The key under which a nick or room name is unique: names differ only if
    they differ case-insensitively (names are ASCII, so C{lower} suffices).
    """
    return name.lower()


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


@dataclass(frozen=True, slots=True)
class Welcome:
    """A connection was accepted into the hub under C{nick}."""

    nick: str
    rooms: tuple[str, ...]


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
    """Stored messages of a room, oldest first, sent to one user on request."""

    room: str
    messages: tuple[Message, ...]


@dataclass(frozen=True, slots=True)
class PrivateMessage:
    """A private message, as its recipient sees it."""

    sender: str
    recipient: str
    text: str
    ts: float


@dataclass(frozen=True, slots=True)
class PrivateEcho(PrivateMessage):
    """The same private message, as its sender sees it."""


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
    """The members of C{room}, in the order they joined."""

    room: str
    nicks: tuple[str, ...]


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
    """A request of this user's was refused; see L{chatd.errors.ChatError}."""

    code: str
    message: str

    @classmethod
    def from_exception(cls, error: ChatError) -> Error:
        return cls(error.code, error.message)


Event = (
    Welcome
    | Message
    | HistoryPage
    | PrivateMessage
    | Joined
    | Parted
    | NickChanged
    | Topic
    | UserList
    | RoomList
    | Notice
    | Error
)
