# -*- test-case-name: tests.test_store -*-
"""
The store that keeps nothing on disk: bounded rings of recent messages, and
accounts and room settings for as long as the process lives.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import replace
from itertools import islice
from typing import TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from zope.interface import implementer

from chatd.errors import StoreError
from chatd.interfaces import ISharedStore
from chatd.model import Account, Message, PrivateMessage, RoomRecord, StoreState, fold

_M = TypeVar("_M", Message, PrivateMessage)
_K = TypeVar("_K")


def pair_key(nick: str, other: str) -> tuple[str, str]:
    """
    The key of the private conversation between two nicknames, the same
    whichever of them is asking and however either is spelled.
    """
    a, b = fold(nick), fold(other)
    return (a, b) if a <= b else (b, a)


def newest(messages: Iterable[_M], limit: int, before: int | None, after: int = 0) -> list[_M]:
    """
    The newest C{limit} of C{messages} (given newest first) with an id
    between C{after} and C{before}, oldest first.
    """
    page = list(
        islice(
            (m for m in messages if after < m.id and (before is None or m.id < before)),
            max(limit, 0),
        )
    )
    page.reverse()
    return page


def _ring(rings: OrderedDict[_K, deque[_M]], key: _K, size: int, most: int) -> deque[_M]:
    """
    The ring of C{key} in C{rings}, made the most recently used; a new one
    drops the least recently used ring beyond C{most}.
    """
    ring = rings.get(key)
    if ring is None:
        ring = rings[key] = deque(maxlen=size)
        if len(rings) > most:
            rings.popitem(last=False)
    else:
        rings.move_to_end(key)
    return ring


def _prune(rings: OrderedDict[_K, deque[_M]], before: float) -> int:
    """
    Drop the messages older than C{before} from C{rings}, and the rings
    left empty; return how many messages went.
    """
    removed = 0
    for key, ring in list(rings.items()):
        kept = [m for m in ring if m.ts >= before]
        removed += len(ring) - len(kept)
        if not kept:
            del rings[key]
        elif len(kept) < len(ring):
            ring.clear()
            ring.extend(kept)
    return removed


@implementer(ISharedStore)
class MemoryStore:
    """
    Keep the last C{per_room} messages of at most C{max_rooms} rooms and the
    last C{per_pair} private messages of at most C{max_pairs} conversations.

    The bounds keep memory flat however many messages or names users throw
    at it; the least recently active ring is dropped first.  Accounts and
    room settings are few and are all kept.

    Every answer is an already-fired Deferred.  After L{close}, writes are
    logged and ignored and the other methods fail with L{StoreError}, as
    with a store on disk; L{load} opens it again, so a test can restart a
    hub on the same store.
    """

    log = Logger()

    def __init__(
        self,
        per_room: int = 100,
        max_rooms: int = 1000,
        per_pair: int = 100,
        max_pairs: int = 10_000,
    ) -> None:
        self.per_room = per_room
        self.max_rooms = max_rooms
        self.per_pair = per_pair
        self.max_pairs = max_pairs
        self._rooms: OrderedDict[str, deque[Message]] = OrderedDict()
        self._pairs: OrderedDict[tuple[str, str], deque[PrivateMessage]] = OrderedDict()
        self._accounts: dict[str, Account] = {}
        self._records: dict[str, RoomRecord] = {}
        self._last_id = 0
        self._closed = False

    def load(self) -> StoreState:
        self._closed = False
        return StoreState(self._last_id, frozenset(self._accounts), tuple(self._records.values()))

    def open(self) -> Deferred[StoreState]:
        """
        L{load}, as a cluster node asks for it (one store may serve several
        nodes in a test).
        """
        return succeed(self.load())

    def _refused(self) -> bool:
        if self._closed:
            self.log.warn("A write to a closed store was ignored")
        return self._closed

    def record(self, message: Message | PrivateMessage) -> None:
        if self._refused():
            return
        self._last_id = max(self._last_id, message.id)
        if isinstance(message, Message):
            _ring(self._rooms, fold(message.room), self.per_room, self.max_rooms).append(message)
        else:
            key = pair_key(message.sender, message.recipient)
            _ring(self._pairs, key, self.per_pair, self.max_pairs).append(message)

    def fetch(self, room: str, limit: int, before: int | None) -> Deferred[list[Message]]:
        if self._closed:
            return fail(StoreError("The store is closed"))
        return succeed(newest(reversed(self._rooms.get(fold(room), ())), limit, before))

    def fetch_private(
        self, nick: str, other: str, limit: int, before: int | None, after: int
    ) -> Deferred[list[PrivateMessage]]:
        if self._closed:
            return fail(StoreError("The store is closed"))
        ring = self._pairs.get(pair_key(nick, other), ())
        return succeed(newest(reversed(ring), limit, before, after))

    def account(self, name: str) -> Deferred[Account | None]:
        if self._closed:
            return fail(StoreError("The store is closed"))
        return succeed(self._accounts.get(fold(name)))

    def create_account(self, account: Account) -> Deferred[bool]:
        if self._closed:
            return fail(StoreError("The store is closed"))
        key = fold(account.name)
        if key in self._accounts:
            return succeed(False)
        self._accounts[key] = account
        return succeed(True)

    def set_password(self, name: str, password_hash: str) -> Deferred[None]:
        if self._closed:
            return fail(StoreError("The store is closed"))
        key = fold(name)
        if key in self._accounts:
            self._accounts[key] = replace(self._accounts[key], password_hash=password_hash)
        return succeed(None)

    def save_room(self, room: RoomRecord) -> None:
        if not self._refused():
            self._records[fold(room.name)] = room

    def prune(self, before: float) -> Deferred[int]:
        if self._closed:
            return fail(StoreError("The store is closed"))
        removed = _prune(self._rooms, before) + _prune(self._pairs, before)
        return succeed(removed)

    def check(self) -> Deferred[None]:
        if self._closed:
            return fail(StoreError("The store is closed"))
        return succeed(None)

    def close(self) -> Deferred[None]:
        self._closed = True
        return succeed(None)
