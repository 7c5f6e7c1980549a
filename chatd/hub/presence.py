# -*- test-case-name: tests.test_presence -*-
"""
Presence in big rooms: joins and parts told once a second, not one by one.

In a room of n members every join is sent to n members, so filling it
costs O(n²): 19,000 users signing on into C{#lobby} after a restart is
180 million join lines.  Above L{Presence.big_room} members the hub
instead tells each joiner and each parting member its own join or part at
once, and everyone else one L{model.Presence} a second with the net change
(as Twitch does for big channels' JOIN and PART).  Smaller rooms keep one
event per join and part.
"""

from __future__ import annotations

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from chatd import model
from chatd.hub.fanout import Fanout
from chatd.hub.state import Room, User
from chatd.model import PRESENCE_NAMES, fold

PRESENCE_INTERVAL = 1.0
"""Seconds between presence events of a big room."""


class _Change:
    """
    A room's net change since its last presence event.

    @ivar joined: who joined and is still there.
    @ivar left: nicks (by folded nick) of who left and has not come back.
    """

    __slots__ = ("joined", "left")

    def __init__(self) -> None:
        self.joined: dict[User, None] = {}
        self.left: dict[str, str] = {}


class Presence:
    """
    The pending presence changes of big rooms, and the one timer that tells
    them.

    @ivar big_room: the member count above which a room is big (0: none is).
    """

    def __init__(self, clock: IReactorTime, fanout: Fanout, big_room: int) -> None:
        self.clock = clock
        self.fanout = fanout
        self.big_room = big_room
        self._pending: dict[Room, _Change] = {}
        self._call: IDelayedCall | None = None

    def is_big(self, room: Room) -> bool:
        return 0 < self.big_room < len(room.members)

    def coalesces(self, room: Room) -> bool:
        """
        Whether the room's joins and parts wait for its next presence
        event: it is big, or changes are still waiting (so that nothing
        overtakes them when it shrinks).
        """
        return room in self._pending or self.is_big(room)

    def joined(self, room: Room, user: User) -> None:
        change = self._change(room)
        if fold(user.nick) in change.left:  # back before anyone was told
            del change.left[fold(user.nick)]
        else:
            change.joined[user] = None

    def left(self, room: Room, user: User) -> None:
        change = self._change(room)
        if user in change.joined:  # gone before anyone was told
            del change.joined[user]
        else:
            change.left[fold(user.nick)] = user.nick

    def forget(self, room: Room, user: User) -> None:
        """
        C{user} left C{room} in a way its members were told of (a kick):
        a join they have not been told of yet is not told.
        """
        change = self._pending.get(room)
        if change is not None:
            change.joined.pop(user, None)

    def flush(self) -> None:
        """
        Tell each room with a change its members: who joined and left, or
        only how many when that is too many names.
        """
        self._cancel()
        pending, self._pending = self._pending, {}
        for room, change in pending.items():
            joins, parts = len(change.joined), len(change.left)
            if not room.members or not joins + parts:
                continue
            listed = joins + parts <= PRESENCE_NAMES
            event = model.Presence(
                room.name,
                joins,
                parts,
                len(room.members),
                tuple(u.nick for u in change.joined) if listed else None,
                tuple(change.left.values()) if listed else None,
            )
            self.fanout.broadcast(room.members, event)

    def stop(self) -> None:
        """
        Tell nothing more (the server is shutting down).
        """
        self._cancel()
        self._pending.clear()

    def _cancel(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _change(self, room: Room) -> _Change:
        change = self._pending.get(room)
        if change is None:
            change = self._pending[room] = _Change()
            if self._call is None:
                self._call = self.clock.callLater(PRESENCE_INTERVAL, self.flush)
        return change
