# -*- test-case-name: tests.test_store -*-
"""
The default history store: a bounded ring of recent messages per room.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from itertools import islice

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from chatd.interfaces import IHistoryStore
from chatd.model import Message, fold


@implementer(IHistoryStore)
class MemoryHistoryStore:
    """
    Keep the last C{per_room} messages of at most C{max_rooms} rooms.

    Both bounds keep memory flat however many messages or room names users
    throw at it; the least recently active room's ring is dropped first.
    """

    def __init__(self, per_room: int = 100, max_rooms: int = 1000) -> None:
        self.per_room = per_room
        self.max_rooms = max_rooms
        self._rings: OrderedDict[str, deque[Message]] = OrderedDict()

    def record(self, message: Message) -> Deferred[None]:
        key = fold(message.room)
        ring = self._rings.get(key)
        if ring is None:
            ring = self._rings[key] = deque(maxlen=self.per_room)
            if len(self._rings) > self.max_rooms:
                self._rings.popitem(last=False)
        else:
            self._rings.move_to_end(key)
        ring.append(message)
        return succeed(None)

    def fetch(self, room: str, limit: int, before: int | None) -> Deferred[list[Message]]:
        ring = self._rings.get(fold(room), ())
        newest_first = (m for m in reversed(ring) if before is None or m.id < before)
        page = list(islice(newest_first, max(limit, 0)))
        page.reverse()
        return succeed(page)
