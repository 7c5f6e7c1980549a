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
MAX_LIMIT = 2**31
"""The largest member limit (mode C{+l}) a room may have: more than any room
holds, and within the 32-bit integers IRC clients parse it into."""

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


def check_limit(value: int | None) -> int:
    """
    Return C{value} if it may be a room's member limit (mode C{+l}), from 1
    to L{MAX_LIMIT}, else raise C{bad_limit}.
    """
    if value is None or isinstance(value, bool) or not 1 <= value <= MAX_LIMIT:
        raise ChatError("bad_limit", f"A room's limit is a whole number from 1 to {MAX_LIMIT}")
    return value


def parse_limit(text: str) -> int:
    """
    The member limit written as C{text} (a door's C{+l N}), checked by
    L{check_limit}: C{bad_limit} for anything else, such as no number.
    """
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(MAX_LIMIT)):
        return check_limit(None)
    return check_limit(int(text))


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
    notice: bool = False


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
    notice: bool = False


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
    """
    C{nick} left C{room} (by C{/part}, by quitting, or by dropping: then
    C{quit}, which doors that tell a departure once, like IRC's C{QUIT},
    go by).
    """

    room: str
    nick: str
    reason: str | None = None
    quit: bool = False


@dataclass(frozen=True, slots=True)
class NickChanged:
    """C{old} is now known as C{new}."""

    old: str
    new: str


@dataclass(frozen=True, slots=True)
class Topic:
    """
    The topic of C{room} (empty when none is set), as an answer or on join;
    C{at} is when it was set (seconds since the epoch; 0 if not known, as
    for a topic kept by an older chatd), for doors that show it (IRC's
    C{333}), and C{None} when no topic is set.
    """

    room: str
    topic: str
    by: str | None
    at: float | None = None


@dataclass(frozen=True, slots=True)
class TopicChanged(Topic):
    """C{by} just set the topic of C{room}."""


@dataclass(frozen=True, slots=True)
class UserList:
    """
    The members of C{room}, in the order they joined, and its operators
    and voiced members among them: all of them, or with C{page} one page
    of the room's C{count} members (L{MEMBERS_PAGE} each, C{pages} in all).
    """

    room: str
    nicks: tuple[str, ...]
    ops: tuple[str, ...] = ()
    count: int = 0
    page: int | None = None
    pages: int = 1
    voiced: tuple[str, ...] = ()


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
class VoiceChanged:
    """
    C{by} gave C{nick} a voice in C{room} (it may speak when the room is
    moderated), or took it away.
    """

    room: str
    nick: str
    by: str
    voiced: bool


@dataclass(frozen=True, slots=True)
class ModeChanged:
    """
    C{by} changed a mode of C{room}: C{change} is e.g. C{+m}, C{-t},
    C{+k KEY}, C{-k}, C{+l 10} or C{-l}.
    """

    room: str
    change: str
    by: str


@dataclass(frozen=True, slots=True)
class Modes:
    """
    The modes of C{room} (e.g. C{+iklnt}), its key and member limit, as an
    answer; C{created} is when the room came to be (seconds since the
    epoch), for doors that show it (IRC's C{329}).
    """

    room: str
    modes: str
    key: str | None
    limit: int | None = None
    created: float | None = None


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
class InviteSent(Notice):
    """
    The inviter's word that C{nick} may now join C{room}: a notice to the
    doors that show one, IRC's 341 to the IRC door.
    """

    room: str = ""
    nick: str = ""


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
    @ivar modes: the set flags among C{i} (invite only), C{m} (moderated),
        C{n} (no messages from outside), C{s} (secret) and C{t} (only
        operators set the topic), sorted; C{k} is implied by C{key}, C{l}
        by C{limit}.
    @ivar ops: folded names of accounts that are operators here.
    @ivar bans: folded names of accounts (or nicknames) banned from here.
    @ivar limit: the most members it lets in (mode C{+l}), if any.
    @ivar topic_at: when the topic was set (0 if not known).
    """

    name: str
    owner: str
    topic: str = ""
    topic_by: str | None = None
    modes: str = "n"
    key: str | None = None
    ops: frozenset[str] = frozenset()
    bans: frozenset[str] = frozenset()
    limit: int | None = None
    topic_at: float = 0.0

    def to_list(self) -> list[object]:
        """
        The record as a JSON-ready list (for Redis and cluster snapshots).
        """
        fields = [self.name, self.owner, self.topic, self.topic_by, self.modes, self.key]
        return [*fields, sorted(self.ops), sorted(self.bans), self.limit, self.topic_at]

    @classmethod
    def from_list(cls, data: list[Any]) -> RoomRecord:
        """
        The record that L{to_list} made C{data} from.  A list of 8 is from
        a chatd that had no limit, topic time or mode C{n}: its rooms always
        refused messages from outside, so they have C{n}.
        """
        name, owner, topic, topic_by, modes, key, ops, bans, *rest = data
        limit, topic_at = rest if rest else (None, 0.0)
        if not rest:
            modes = "".join(sorted(modes + "n"))
        ops, bans = frozenset(ops), frozenset(bans)
        return cls(name, owner, topic, topic_by, modes, key, ops, bans, limit, topic_at)


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
    | VoiceChanged
    | ModeChanged
    | Modes
    | Invited
    | InviteSent
    | AccountChanged
    | RoomList
    | Notice
    | Error
)
