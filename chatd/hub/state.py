# -*- test-case-name: tests.test_hub,tests.test_moderation -*-
"""
The hub's state: users and rooms, and each room's own rules (who ranks
what, who may enter, which modes it has), testable without a hub.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

from chatd.errors import ChatError
from chatd.interfaces import IClient
from chatd.model import MEMBERS_PAGE, RoomRecord, UserList, check_limit, fold

MODES = "imnst"
"""The flags a room may have that take no argument (C{k} and C{l} do)."""
MAX_KEY_LENGTH = 23
MAX_INVITES = 100
MAX_BANS = 500

MEMBER, OPERATOR, OWNER, ADMIN = range(4)


class User:
    """
    A named connection in the hub.

    @ivar rooms: the rooms the user is in, by folded name, oldest join first.
    @ivar account: the folded name of the account it proved, if any.
    @ivar since: private history of its nickname from after this message id
        is its own: from when the account was registered for its account's
        nickname, else from when it took its nickname.
    @ivar oper: whether it is a server operator by IRC's C{OPER} (holding
        an admin account is the other way).
    @ivar sid: its session id in a cluster (C{NODE.SERIAL}), which unlike a
        nickname never passes to someone else.
    """

    __slots__ = ("account", "client", "nick", "oper", "rooms", "sid", "since")

    def __init__(self, nick: str, client: IClient, account: str | None, since: int) -> None:
        self.nick = nick
        self.client = client
        self.account = account
        self.since = since
        self.rooms: dict[str, Room] = {}
        self.sid = ""
        self.oper = False  # proved an admin account's password (IRC's OPER)

    def __repr__(self) -> str:
        return f"<User {self.nick}>"


class Room:
    """
    A room, its members (an ordered set, in join order) and its rules.

    A registered room (one with an C{owner}) keeps its settings in the
    store; operators by account are kept with them.  Anyone else made an
    operator, everyone voiced (while a member) and everyone invited is
    remembered only while the room has members.

    @ivar created: when this room came to be, in the runner's time (for a
        registered room, when it was last loaded or opened).
    @ivar topic_at: when the topic was set (0 if not known).
    """

    __slots__ = (
        "bans",
        "created",
        "guest_ops",
        "invites",
        "key",
        "limit",
        "members",
        "modes",
        "name",
        "op_accounts",
        "owner",
        "topic",
        "topic_at",
        "topic_by",
        "voiced",
    )

    def __init__(self, name: str, record: RoomRecord | None = None, created: float = 0.0) -> None:
        self.name = name
        self.created = created
        self.members: dict[User, None] = {}
        self.guest_ops: set[User] = set()
        self.voiced: set[User] = set()
        self.invites: dict[str, None] = {}
        self.owner: str | None = None
        self.topic = ""
        self.topic_by: str | None = None
        self.topic_at = 0.0
        self.modes = "n"  # rooms have always refused messages from outside
        self.key: str | None = None
        self.limit: int | None = None
        self.op_accounts: set[str] = set()
        self.bans: set[str] = set()
        if record is not None:
            self.name = record.name
            self.owner = record.owner
            self.topic, self.topic_by = record.topic, record.topic_by
            self.topic_at = record.topic_at
            self.modes, self.key = record.modes, record.key
            self.limit = record.limit
            self.op_accounts, self.bans = set(record.ops), set(record.bans)

    def record(self) -> RoomRecord:
        assert self.owner is not None
        return RoomRecord(
            self.name,
            self.owner,
            self.topic,
            self.topic_by,
            self.modes,
            self.key,
            frozenset(self.op_accounts),
            frozenset(self.bans),
            self.limit,
            self.topic_at,
        )

    def is_op(self, user: User) -> bool:
        return user in self.guest_ops or (
            user.account is not None
            and (user.account == self.owner or user.account in self.op_accounts)
        )

    def may_speak(self, user: User, admins: frozenset[str]) -> bool:
        """
        Whether C{user} may talk here although the room is moderated: an
        operator, or a member given a voice.
        """
        return user in self.voiced or self.rank(user, admins) >= OPERATOR

    def mode_string(self) -> str:
        flags = self.modes + ("k" if self.key else "") + ("l" if self.limit else "")
        return "+" + "".join(sorted(flags)) if flags else ""

    # -- rules --------------------------------------------------------------

    def rank(self, user: User, admins: frozenset[str]) -> int:
        """
        What C{user} is here: a server operator (one of C{admins}), the
        owner, an operator or a member.
        """
        if user.oper or (user.account is not None and user.account in admins):
            return ADMIN
        if user.account is not None and user.account == self.owner:
            return OWNER
        return OPERATOR if self.is_op(user) else MEMBER

    def require(self, user: User, admins: frozenset[str], rank: int) -> None:
        if self.rank(user, admins) < rank:
            raise ChatError("not_op", f"You are not an operator of {self.name}")

    def outrank(self, user: User, target: User, admins: frozenset[str]) -> None:
        """
        Refuse if C{target}, someone else, ranks above C{user}.
        """
        if target is not user and self.rank(target, admins) > self.rank(user, admins):
            raise ChatError("not_allowed", f"{target.nick} outranks you in {self.name}")

    def bans_user(self, user: User) -> bool:
        return fold(user.nick) in self.bans or (
            user.account is not None and user.account in self.bans
        )

    def check_entry(self, user: User, admins: frozenset[str], key: str | None) -> None:
        """
        Refuse C{user} entry (with C{key}) if a ban, C{+i}, the room's key
        or its limit keeps it out.  Operators pass bans, C{+i} and keys, but
        only server operators pass the limit (an invitation does not), so
        that a full room can still be put right.
        """
        rank = self.rank(user, admins)
        if rank < OPERATOR:
            if self.bans_user(user):
                raise ChatError("banned", f"You are banned from {self.name}")
            if "i" in self.modes and fold(user.nick) not in self.invites:
                raise ChatError("invite_only", f"{self.name} is invite only; ask an operator")
            if self.key is not None and key != self.key:
                raise ChatError(
                    "bad_key", f"{self.name} needs the right key: /join {self.name} KEY"
                )
        if rank < ADMIN and self.limit is not None and len(self.members) >= self.limit:
            raise ChatError("room_full", f"{self.name} is full")

    def change_modes(self, change: str, key: str | None, limit: int | None = None) -> list[str]:
        """
        Apply C{change}: C{+} or C{-} and letters among C{i}, C{k} (with
        C{key} to set), C{l} (with C{limit} to set), C{m}, C{n}, C{s} and
        C{t}.  Return what changed (C{+m}, C{+k KEY}, C{+l 10}, ...),
        nothing if the room was so already; refuse a bad change before
        anything changes.
        """
        sign, letters = change[0], change[1:]
        if sign not in "+-" or not letters or any(c not in MODES + "kl" for c in letters):
            raise ChatError(
                "bad_mode", "Modes are + or - then letters among i, k, l, m, n, s, t (e.g. +mt)"
            )
        if "k" in letters and sign == "+":
            if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable() or " " in key:
                raise ChatError(
                    "bad_key", f"A key is 1-{MAX_KEY_LENGTH} printable characters, no spaces"
                )
        if "l" in letters and sign == "+":
            check_limit(limit)
        changes = []
        for letter in dict.fromkeys(letters):
            if letter == "k":
                new_key = key if sign == "+" else None
                if new_key != self.key:
                    self.key = new_key
                    changes.append(f"{sign}k" + (f" {key}" if sign == "+" else ""))
            elif letter == "l":
                new_limit = limit if sign == "+" else None
                if new_limit != self.limit:
                    self.limit = new_limit
                    changes.append(f"{sign}l" + (f" {limit}" if sign == "+" else ""))
            elif (letter in self.modes) != (sign == "+"):
                modes = set(self.modes) ^ {letter}
                self.modes = "".join(sorted(modes))
                changes.append(sign + letter)
        return changes

    def user_list(self, admins: frozenset[str], page: int | None = None) -> UserList:
        """
        The members, and the operators and voiced members among them: all,
        or one C{page} (from 1) of L{MEMBERS_PAGE}, empty past the last.
        """
        members: Iterable[User] = self.members
        count = len(self.members)
        pages = max(1, -(-count // MEMBERS_PAGE))
        if page is not None:
            start = (page - 1) * MEMBERS_PAGE if page <= pages else count
            members = tuple(islice(self.members, start, start + MEMBERS_PAGE))
        ops = tuple(m.nick for m in members if self.rank(m, admins) >= OPERATOR)
        voiced = tuple(m.nick for m in members if m in self.voiced)
        nicks = tuple(m.nick for m in members)
        if page is None:
            return UserList(self.name, nicks, ops, voiced=voiced)
        return UserList(self.name, nicks, ops, count, page, pages, voiced)


Place = tuple[Room, bool]
"""A room a user is in, and whether it is a guest operator there."""
