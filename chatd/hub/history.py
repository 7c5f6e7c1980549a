# -*- test-case-name: tests.test_persistence,tests.test_hub -*-
"""
History: pages of stored messages, fetched from the store and sent to the
user who asked, if it is still there to read them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.python.failure import Failure

from chatd.errors import ChatError, StoreBusy
from chatd.hub.state import Room, User
from chatd.interfaces import IStore
from chatd.model import (
    Error,
    HistoryPage,
    Message,
    PrivateHistory,
    PrivateMessage,
    check_nick,
    check_number,
    check_room,
    fold,
)

if TYPE_CHECKING:
    from chatd.hub.fanout import Fanout


class HistoryPages:
    """
    History paging (a mixin of L{chatd.hub.Hub}).

    @ivar history_page: messages in a page unless the user asks for fewer
        or more.
    @ivar max_history_page: the most messages in one page.
    """

    store: IStore
    fanout: Fanout
    users: dict[str, User]
    history_page: int
    max_history_page: int

    if TYPE_CHECKING:  # the hub's own

        def _log_failure(self, failure: Failure, doing: str) -> None: ...

    def history(
        self, user: User, name: str, limit: int | None = None, before: int | None = None
    ) -> Deferred[None]:
        """
        Send C{user} the newest C{limit} stored messages of room C{name}
        (older than message id C{before}, if given), oldest first.
        """
        check_room(name)
        room = user.rooms.get(fold(name))
        if room is None:
            raise ChatError("not_in_room", f"You are not in {name}")
        return self.send_history(user, room, self._page(limit), self._before(before))

    def private_history(
        self, user: User, nick: str, limit: int | None = None, before: int | None = None
    ) -> Deferred[None]:
        """
        Send C{user} its newest C{limit} stored private messages with
        C{nick}.  Everything is kept for the owner of an account; a guest
        sees what was said since it took its nickname, not what an earlier
        holder of the same name was told.
        """
        check_nick(nick)
        limit = self._page(limit)
        before = self._before(before)
        after = user.since
        me = user.nick

        def send(messages: list[PrivateMessage]) -> None:
            more = len(messages) > limit  # one more was asked for, to know
            page = PrivateHistory(me, nick, tuple(messages[-limit:]), more)
            if self.users.get(fold(me)) is user:
                self.fanout.deliver(user, page, optional=True)

        fetched = self.store.fetch_private(me, nick, limit + 1, before, after)
        return fetched.addCallbacks(send, self._history_failed, errbackArgs=(user,))

    def send_history(
        self, user: User, room: Room, limit: int, before: int | None, on_join: bool = False
    ) -> Deferred[None]:
        """
        Send C{user} a page of C{room}'s history (on joining: only if there
        is any), if it is still in the room when the page comes.
        """

        def send(messages: list[Message]) -> None:
            if on_join and not messages:
                return
            if user.rooms.get(fold(room.name)) is room:
                more = len(messages) > limit  # one more was asked for, to know
                page = HistoryPage(room.name, tuple(messages[-limit:]), more)
                self.fanout.deliver(user, page, optional=True)

        fetched = maybeDeferred(self.store.fetch, room.name, limit + 1, before)
        return fetched.addCallbacks(send, self._history_failed, errbackArgs=(user,))

    def _page(self, limit: int | None) -> int:
        if limit is None:
            return self.history_page
        if limit < 1:
            raise ChatError("bad_request", "The history limit must be a positive number")
        return min(limit, self.max_history_page)

    def _before(self, before: int | None) -> int | None:
        """
        C{before} if it can be a message id (the doors check it too: no
        number from a client may reach the store out of range).
        """
        return None if before is None else check_number(before, "A message id")

    def _history_failed(self, failure: Failure, user: User) -> None:
        if failure.check(StoreBusy):  # the store warns of it, once a minute
            text = "History is busy; try again in a moment"
        else:
            self._log_failure(failure, "fetching history")
            text = "History is unavailable"
        self.fanout.deliver(user, Error("history_unavailable", text))
