# -*- test-case-name: tests.test_hub,tests.test_moderation,tests.test_accounts -*-
"""
The hub: users, nicknames, rooms, moderation and routing, with no I/O of
its own.

A gateway (L{chatd.hub.gateway}) applies requests (L{chatd.requests}) to
the hub with L{Hub.apply}; the hub answers by delivering events
(L{chatd.model}) to L{chatd.interfaces.IClient}s, never by returning text,
so every door renders every outcome the same way.  A refused request
raises L{ChatError} before anything has changed.  What must outlive the
process goes to an L{IStore}; only password checks and history pages wait
for it, and they return Deferreds.

The hub does not know whether it runs alone or as a replica in a cluster:
what differs (message times and ids, who keeps a change, which users are
connected here) it asks its L{IRunner}.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from chatd import model
from chatd import requests as rq
from chatd.errors import ChatError
from chatd.hub.accounts import Accounts, address
from chatd.hub.fanout import Fanout
from chatd.hub.history import HistoryPages
from chatd.hub.passwords import Attempts, Passwords
from chatd.hub.presence import Presence
from chatd.hub.state import ADMIN, MAX_BANS, MAX_INVITES, OPERATOR, Place, Room, User
from chatd.interfaces import IClient, IEncoder, IRunner, IStore
from chatd.model import (
    LOBBY,
    MAX_TOPIC_LENGTH,
    StoreState,
    check_nick,
    check_number,
    check_room,
    check_text,
    fold,
)
from chatd.store.memory import MemoryStore

_events = Logger(namespace="chatd.events")


@implementer(IRunner)
class Alone:
    """
    The runner of a hub that is the whole server: it stamps messages with
    its own clock and counter, keeps every change and has every user.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock

    def now(self) -> float:
        return self.clock.seconds()

    def next_id(self, last_id: int) -> int:
        return last_id + 1

    def keeps(self) -> bool:
        return True

    def is_local(self, user: User) -> bool:
        return True

    def signed_off(self, user: User) -> None:
        pass


class Hub(Accounts, HistoryPages):
    """
    The one place where chat state lives and chat rules are enforced.

    @ivar users: connected users by folded nick.
    @ivar rooms: rooms with at least one member (and always C{#lobby}), by
        folded name.
    @ivar registered: the settings of every registered room, by folded name.
    @ivar admins: folded account names of server operators.
    @ivar motd: the message of the day, lines shown to each user on sign-on.
    @ivar messages: room and private messages accepted since start.
    @ivar fanout: writes events to users, and counts them.
    @ivar runner: what differs between a lone hub and a cluster's replica.
    @ivar closing: set while the server shuts down; quits are then not
        announced, since everybody is leaving at once.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        store: IStore | None = None,
        *,
        passwords: Passwords | None = None,
        admins: Iterable[str] = (),
        max_rooms_per_user: int = 50,
        history_on_join: int = 20,
        motd: Iterable[str] = (),
        big_room: int = 500,
        history_page: int = 20,
        max_history_page: int = 200,
        state: StoreState | None = None,
    ) -> None:
        self.clock = clock
        self.store = MemoryStore() if store is None else store
        self.runner: IRunner = Alone(clock)
        self.fanout = Fanout()
        self.presence = Presence(clock, self.fanout, big_room)
        self.passwords = Passwords() if passwords is None else passwords
        self.attempts = Attempts(clock)
        self._floors: dict[str, int] = {}
        self.admins = frozenset(fold(a) for a in admins)
        self.max_rooms_per_user = max_rooms_per_user
        self.history_on_join = history_on_join
        self.motd = tuple(motd)
        self.history_page = history_page
        self.max_history_page = max_history_page
        self.users: dict[str, User] = {}
        self.leaving: User | None = None  # while its departure is told
        self.closing = False
        self.messages = 0
        self._last_id = 0
        self.load(self.store.load() if state is None else state)

    def load(self, state: StoreState) -> None:
        """
        Start from what the store keeps: accounts, registered rooms and the
        newest message id; nobody is connected.
        """
        self._last_id = max(self._last_id, state.last_id)
        self.accounts = set(state.accounts)
        self.registered = {fold(r.name): r for r in state.rooms}
        lobby = Room(LOBBY, self.registered.get(fold(LOBBY)), self.clock.seconds())
        self.rooms = {fold(LOBBY): lobby}

    @property
    def last_id(self) -> int:
        """
        The id of the newest message accepted (room or private).
        """
        return self._last_id

    @last_id.setter
    def last_id(self, last_id: int) -> None:
        self._last_id = last_id

    @property
    def deliveries(self) -> int:
        """
        Events written to recipients (broadcasts) since start.
        """
        return self.fanout.deliveries

    @property
    def bytes_out(self) -> Counter[IEncoder | None]:
        """
        Bytes of events handed to each door's connections, by encoder.
        """
        return self.fanout.bytes_out

    # -- requests -------------------------------------------------------------

    def prepare(self, user: User, request: rq.Request) -> Deferred[Any] | None:
        """
        For a request that must wait before it changes anything (a password
        to check, an account to store), a Deferred firing with the change to
        apply then (or C{None}); for any other, C{None}.
        """
        if isinstance(request, rq.Register):
            return self.register(user, request.password)
        if isinstance(request, rq.Identify):
            return self.prove(user, request.nick or user.nick, request.password)
        if isinstance(request, rq.Oper):
            return self.prove_oper(user, request.name, request.password)
        return None

    def apply(self, user: User | None, request: rq.Request) -> Any:
        """
        Apply C{request} on behalf of C{user} (C{None} for the server's
        own requests).  A refusal raises L{ChatError} before anything has
        changed; a request that waits for the store returns a Deferred.
        """
        return _APPLY[type(request)](self, user, request)

    # -- connecting ---------------------------------------------------------

    def connect(
        self,
        client: IClient,
        nick: str,
        account: str | None = None,
        greets_itself: bool | None = None,
    ) -> User:
        """
        Admit C{client} as C{nick}: it is welcomed and joins C{#lobby}
        (unless it C{greets_itself}: a client's door may say so, see
        L{IClient}; a cluster node says so for another node's client).

        A registered nickname needs its C{account} (from L{authenticate});
        an older session holding it is closed and this one takes its place
        in its rooms instead (L{_take_over}).  The welcome names the rooms
        the user is in: none, if the lobby's rules keep it out (an error
        then says why).
        """
        check_nick(nick)
        if self.closing:
            raise ChatError("shutting_down", "The server is shutting down")
        self._check_free(nick, account)
        places = self._take_over(nick, "signed on again")
        user = User(nick, client, account, self._floor(nick, account))
        self.users[fold(nick)] = user
        self._note(
            "sign_on", "{nick} signed on", nick=nick, account=account, address=address(client)
        )
        if greets_itself is None:
            greets_itself = getattr(client, "greets_itself", False)
        if places:
            entering = [room.name for room, _ in places[: self.max_rooms_per_user]]
            self.fanout.deliver(user, model.Welcome(nick, tuple(entering), account))
            self._inherit(user, places)
        elif greets_itself:
            self.fanout.deliver(user, model.Welcome(nick, (), account))
        else:
            self._enter_lobby(user)
        if not greets_itself:
            for line in self.motd:
                self.fanout.deliver(user, model.Notice(line))
        return user

    def _enter_lobby(self, user: User) -> None:
        """
        Welcome a new C{user} and put it in C{#lobby}; or, if the lobby's
        rules keep it out (an operator made it invite only, set a key or
        banned the user), welcome it to no room and tell it why.
        """
        try:
            room, new = self._entry(user, LOBBY, None)
        except ChatError as error:
            self.fanout.deliver(user, model.Welcome(user.nick, (), user.account))
            self.fanout.deliver(user, model.Error.from_exception(error))
            return
        self.fanout.deliver(user, model.Welcome(user.nick, (room.name,), user.account))
        self._enter(user, room, new)

    def close(self) -> None:
        """
        The server is stopping: everybody is about to leave at once, so
        nobody is told of anybody's departure (each connection is told the
        server is stopping), and the log says it once, not per user.
        """
        self.closing = True
        self.presence.stop()
        self._note(
            "shutdown", "The server is stopping: {count} users sign off", count=len(self.users)
        )

    def disconnect(self, user: User, reason: str | None = None) -> None:
        """
        Remove C{user}; everyone sharing a room sees it leave each room once.
        Calling it again for the same user does nothing.
        """
        if self.users.get(fold(user.nick)) is not user:
            return
        del self.users[fold(user.nick)]
        self.leaving = user
        self.runner.signed_off(user)
        if not self.closing:  # else close() said it once for everyone
            self._note(
                "sign_off", "{nick} signed off", nick=user.nick, address=address(user.client)
            )
        for room in list(user.rooms.values()):
            self._take_out(user, room)
            if not self.closing:
                self._tell_part(room, user, reason, quit=True)
        self.leaving = None

    def change_nick(self, user: User, new: str) -> None:
        """
        Rename C{user}; it and everyone sharing a room with it see it once.
        """
        check_nick(new)
        if new == user.nick:
            return
        places: list[Place] = []
        if fold(new) != fold(user.nick):
            self._check_free(new, user.account)
            places = self._take_over(new, f"{user.nick} took the nickname back")
        self._rename(user, new)
        self._inherit(user, places)

    def _rename(self, user: User, new: str) -> None:
        old = user.nick
        self._note("nick", "{old} is now known as {new}", old=old, new=new)
        del self.users[fold(old)]
        user.nick = new
        self.users[fold(new)] = user
        if fold(new) != fold(old):
            user.since = self._floor(new, user.account)
        audience: dict[User, None] = {user: None}
        for room in user.rooms.values():
            audience.update(room.members)
        self.fanout.broadcast(audience, model.NickChanged(old, new))

    def _check_free(self, nick: str, account: str | None) -> None:
        key = fold(nick)
        if key in self.accounts and account != key:
            raise ChatError(
                "nick_registered",
                f"The nickname {nick} is registered; give its password to use it",
            )
        holder = self.users.get(key)
        if holder is not None and holder.account != key:
            raise ChatError("nick_taken", f"The nickname {nick} is already in use")

    def _take_over(self, nick: str, why: str) -> list[Place]:
        """
        Close the session holding C{nick}, if any (the caller has proved
        the account), and return its places for its heir (L{_inherit}):
        each room it was in, and whether it was a guest operator there.

        The members see it leave; a room it leaves empty is kept as it is
        (topic, modes, key, invitations) for the heir to enter.
        """
        holder = self.users.get(fold(nick))
        if holder is None:
            return []
        places = [(room, holder in room.guest_ops) for room in holder.rooms.values()]
        self.fanout.deliver(
            holder, model.Error("taken_over", f"Your nickname was taken over: {why}")
        )
        self.disconnect(holder, why)
        holder.client.close()
        return places

    def _inherit(self, heir: User, places: list[Place]) -> None:
        """
        Put C{heir}, which took over another session (L{_take_over}), in
        that session's rooms, as it was there: past bans, keys and C{+i}
        (it was let in before), a guest operator where it was one, each
        room as it was even if its leaving emptied it.  A room the heir is
        in already stays as it is for it.  Whatever cannot be joined (the
        room limit) is told, not raised, since the user is in the hub
        already.
        """
        for place, guest_op in places:
            if fold(place.name) in heir.rooms:
                continue
            if len(heir.rooms) >= self.max_rooms_per_user:
                self.fanout.deliver(heir, model.Error.from_exception(self._too_many_rooms()))
                continue
            room = self.rooms.setdefault(fold(place.name), place)
            if guest_op:
                room.guest_ops.add(heir)
            self._enter(heir, room)

    # -- rooms --------------------------------------------------------------

    def is_member(self, user: User, room: str) -> bool:
        """
        Whether C{user} is in C{room}.
        """
        return fold(room) in user.rooms

    def join(self, user: User, name: str, key: str | None = None) -> None:
        """
        Put C{user} in room C{name}, creating it if needed, unless the room
        bans it, is invite-only, has another key or is full.

        The joiner gets its own join, then the member list, then the topic
        if one is set, then the room's recent history; every other member
        gets the join.  The first to enter a new room is its operator, and
        its owner if identified: the room is then registered.
        """
        room, new = self._entry(user, name, key)
        self._enter(user, room, new)

    def _entry(self, user: User, name: str, key: str | None) -> tuple[Room, bool]:
        """
        The room C{user} may join as C{name} (with C{key}), and whether it
        is new; raise if it may not.  Nothing changes.
        """
        check_room(name)
        folded = fold(name)
        if folded in user.rooms:
            raise ChatError("already_joined", f"You are already in {user.rooms[folded].name}")
        if len(user.rooms) >= self.max_rooms_per_user:
            raise self._too_many_rooms()
        room = self.rooms.get(folded)
        new = room is None
        if room is None:
            room = Room(name, self.registered.get(folded), self.runner.now())
        room.check_entry(user, self.admins, key)
        return room, new

    def _too_many_rooms(self) -> ChatError:
        return ChatError(
            "too_many_rooms", f"You cannot be in more than {self.max_rooms_per_user} rooms"
        )

    def _enter(self, user: User, room: Room, new: bool = False) -> None:
        """
        Put C{user} in C{room} (which L{_entry} let it join; if C{new}, it
        creates the room): the joiner gets its join, the member list, the
        topic and recent history, every other member the join.
        """
        folded = fold(room.name)
        if new:
            self.rooms[folded] = room
            if room.owner is None and folded != fold(LOBBY):
                if user.account is not None:
                    room.owner = user.account
                    self._save(room)
                else:
                    room.guest_ops.add(user)
        room.invites.pop(fold(user.nick), None)
        self._note("join", "{nick} joined {room}", nick=user.nick, room=room.name)
        room.members[user] = None
        user.rooms[folded] = room
        if self.presence.coalesces(room):
            self.presence.joined(room, user)
            self.fanout.deliver(user, model.Joined(room.name, user.nick))
        else:
            self.fanout.broadcast(room.members, model.Joined(room.name, user.nick))
        self.fanout.deliver(user, self._user_list(room))
        if room.topic:
            self.fanout.deliver(user, self._topic(room))
        if self.history_on_join > 0 and self.runner.is_local(user):
            limit = min(self.history_on_join, self.max_history_page)
            self.send_history(user, room, limit, self._last_id + 1, on_join=True)

    def part(self, user: User, name: str, reason: str | None = None) -> None:
        """
        Take C{user} out of room C{name}; it and the other members see it.
        """
        room = self._membership(user, name)
        self._note("part", "{nick} left {room}", nick=user.nick, room=room.name)
        self._tell_part(room, user, reason)
        self._take_out(user, room)

    def _tell_part(self, room: Room, user: User, reason: str | None, quit: bool = False) -> None:
        """
        Tell that C{user} left C{room} (C{quit}: the server): to it (if it
        is still there to be told) and to the members, or in a big room to
        it now and to the members with the room's next presence event.
        """
        event = model.Parted(room.name, user.nick, reason, quit)
        if not self.presence.coalesces(room):
            self.fanout.broadcast(room.members, event)
            return
        self.presence.left(room, user)
        if user in room.members:
            self.fanout.deliver(user, event)

    def who(self, user: User, name: str) -> None:
        """
        Send C{user} the members of room C{name}: the first page of a big
        room's.
        """
        self.fanout.deliver(user, self._user_list(self._existing(name)))

    def members(self, user: User, name: str, page: int | None = None) -> None:
        """
        Send C{user} page C{page} (by default the first) of the members of
        room C{name}.
        """
        page = 1 if page is None else check_number(page, "The page")
        self.fanout.deliver(user, self._existing(name).user_list(self.admins, page))

    def _user_list(self, room: Room) -> model.UserList:
        return room.user_list(self.admins, 1 if self.presence.is_big(room) else None)

    def list_rooms(self, user: User) -> None:
        """
        Send C{user} every room, its member count and topic, by name; a
        secret room (C{+s}) only to its members.
        """
        rooms = sorted(
            (folded, r)
            for folded, r in self.rooms.items()
            if "s" not in r.modes or folded in user.rooms
        )
        info = tuple(model.RoomInfo(r.name, len(r.members), r.topic) for _, r in rooms)
        self.fanout.deliver(user, model.RoomList(info))

    def topic(self, user: User, name: str, text: str | None = None) -> None:
        """
        With no C{text}, send C{user} the topic of room C{name}; otherwise set
        it (an empty or blank text clears it) and show every member.  In a
        room with mode C{+t} only operators set it.
        """
        if text is None:
            self.fanout.deliver(user, self._topic(self._existing(name)))
            return
        room = self._membership(user, name)
        if "t" in room.modes:
            room.require(user, self.admins, OPERATOR)
        text = text.strip()
        if len(text) > MAX_TOPIC_LENGTH:
            raise ChatError(
                "text_too_long", f"The topic is longer than {MAX_TOPIC_LENGTH} characters"
            )
        room.topic = text
        room.topic_by = user.nick
        room.topic_at = self.runner.now()
        self._save(room)
        self._note("topic", "{by} set the topic of {room}", by=user.nick, room=room.name)
        self.fanout.broadcast(
            room.members, model.TopicChanged(room.name, text, user.nick, room.topic_at)
        )

    def _topic(self, room: Room) -> model.Topic:
        """
        The topic of C{room} as an answer, with when it was set if it is.
        """
        return model.Topic(
            room.name, room.topic, room.topic_by, room.topic_at if room.topic else None
        )

    # -- moderation ---------------------------------------------------------

    def set_op(self, user: User, name: str, nick: str, op: bool = True) -> None:
        """
        Make member C{nick} an operator of room C{name} (or, with C{op}
        false, no longer one): by account if it has one and the room is
        registered, so that it lasts.
        """
        room = self._membership(user, name)
        room.require(user, self.admins, OPERATOR)
        target = self._member(room, nick)
        if room.is_op(target) == op:
            state = "already" if op else "not"
            self.fanout.deliver(
                user, model.Notice(f"{target.nick} is {state} an operator of {room.name}")
            )
            return
        if op:
            if room.owner is not None and target.account is not None:
                room.op_accounts.add(target.account)
            else:
                room.guest_ops.add(target)
        else:
            room.outrank(user, target, self.admins)
            if target.account is not None and target.account == room.owner:
                raise ChatError("not_allowed", f"{target.nick} owns {room.name}")
            room.op_accounts.discard(target.account or "")
            room.guest_ops.discard(target)
        self._save(room)
        self._note(
            "op" if op else "deop",
            "{by} {what} {nick} in {room}",
            by=user.nick,
            what="opped" if op else "deopped",
            nick=target.nick,
            room=room.name,
        )
        self.fanout.broadcast(room.members, model.OpChanged(room.name, target.nick, user.nick, op))
        if not self.presence.is_big(room):  # n lists of n members: the op event says it
            self.fanout.broadcast(room.members, room.user_list(self.admins))

    def set_voice(self, user: User, name: str, nick: str, voiced: bool = True) -> None:
        """
        Give member C{nick} a voice in room C{name} (or, with C{voiced}
        false, take it away), so that it may speak when the room is
        moderated; it lasts while the member stays in the room.
        """
        room = self._membership(user, name)
        room.require(user, self.admins, OPERATOR)
        target = self._member(room, nick)
        if (target in room.voiced) == voiced:
            state = "already" if voiced else "not"
            self.fanout.deliver(
                user, model.Notice(f"{target.nick} is {state} voiced in {room.name}")
            )
            return
        if voiced:
            room.voiced.add(target)
        else:
            room.voiced.discard(target)
        self._note(
            "voice" if voiced else "devoice",
            "{by} {what} {nick} in {room}",
            by=user.nick,
            what="voiced" if voiced else "devoiced",
            nick=target.nick,
            room=room.name,
        )
        self.fanout.broadcast(
            room.members, model.VoiceChanged(room.name, target.nick, user.nick, voiced)
        )
        if not self.presence.is_big(room):  # as for operators: the event says it
            self.fanout.broadcast(room.members, room.user_list(self.admins))

    def kick(self, user: User, name: str, nick: str, reason: str | None = None) -> None:
        """
        Put member C{nick} out of room C{name}; every member sees it.
        """
        room = self._membership(user, name)
        room.require(user, self.admins, OPERATOR)
        target = self._member(room, nick)
        room.outrank(user, target, self.admins)
        self._kick(room, target, user.nick, reason)

    def _kick(self, room: Room, target: User, by: str, reason: str | None) -> None:
        self._note(
            "kick", "{by} kicked {nick} from {room}", by=by, nick=target.nick, room=room.name
        )
        self.fanout.broadcast(room.members, model.Kicked(room.name, target.nick, by, reason))
        self.presence.forget(room, target)
        self._take_out(target, room)

    def ban(self, user: User, name: str, nick: str, banned: bool = True) -> None:
        """
        Ban C{nick} from room C{name} (or lift the ban): its account if it
        is online and identified, else the nickname.  A banned member is
        also put out.
        """
        check_nick(nick)
        room = self._membership(user, name)
        room.require(user, self.admins, OPERATOR)
        target = self.users.get(fold(nick))
        mask = target.account if target is not None and target.account else fold(nick)
        if not banned:
            if mask not in room.bans and fold(nick) not in room.bans:
                raise ChatError("not_banned", f"{nick} is not banned from {room.name}")
            room.bans.discard(mask)
            room.bans.discard(fold(nick))
        else:
            if mask == room.owner or mask in self.admins:
                if room.rank(user, self.admins) < ADMIN:
                    raise ChatError("not_allowed", f"You cannot ban {nick} from {room.name}")
            if target is not None and fold(room.name) in target.rooms:
                room.outrank(user, target, self.admins)
            if len(room.bans) >= MAX_BANS:
                raise ChatError("too_many_bans", f"{room.name} has {MAX_BANS} bans already")
            room.bans.add(mask)
            room.op_accounts.discard(mask)
            if target is not None:
                room.guest_ops.discard(target)
        self._save(room)
        self._note(
            "ban" if banned else "unban",
            "{by} {what} {mask} in {room}",
            by=user.nick,
            what="banned" if banned else "unbanned",
            mask=mask,
            room=room.name,
        )
        self.fanout.broadcast(room.members, model.BanChanged(room.name, nick, user.nick, banned))
        if banned and target is not None and fold(room.name) in target.rooms:
            self._kick(room, target, user.nick, "banned")

    def set_mode(
        self,
        user: User,
        name: str,
        change: str | None,
        key: str | None = None,
        limit: int | None = None,
    ) -> None:
        """
        With no C{change}, send C{user} the modes of room C{name}; otherwise
        apply C{change} (L{Room.change_modes}).  Every member sees each
        change.
        """
        room = self._membership(user, name)
        if not change:
            self.fanout.deliver(user, self._modes(room))
            return
        room.require(user, self.admins, OPERATOR)
        changes = room.change_modes(change, key, limit)
        if not changes:  # nothing to change: say how things are
            self.fanout.deliver(user, self._modes(room))
            return
        self._save(room)
        for applied in changes:
            self._note(
                "mode", "{by} set {mode} on {room}", by=user.nick, mode=applied[:2], room=room.name
            )
        # One event for the whole change, as IRC tells it: +mt, +kl KEY 5.
        letters = "".join(applied[1] for applied in changes)
        args = [applied.partition(" ")[2] for applied in changes if " " in applied]
        change = " ".join([changes[0][0] + letters, *args])
        self.fanout.broadcast(room.members, model.ModeChanged(room.name, change, user.nick))

    def _modes(self, room: Room) -> model.Modes:
        return model.Modes(room.name, room.mode_string(), room.key, room.limit, room.created)

    def invite(self, user: User, name: str, nick: str) -> None:
        """
        Let C{nick} into room C{name} past mode C{+i}, and tell it so.
        """
        room = self._membership(user, name)
        room.require(user, self.admins, OPERATOR)
        check_nick(nick)
        target = self.users.get(fold(nick))
        if target is None:
            raise ChatError("no_such_nick", f"There is no user named {nick}")
        if fold(room.name) in target.rooms:
            raise ChatError("already_joined", f"{target.nick} is already in {room.name}")
        room.invites[fold(target.nick)] = None
        if len(room.invites) > MAX_INVITES:
            del room.invites[next(iter(room.invites))]
        self.fanout.deliver(target, model.Invited(room.name, user.nick))
        told = f"Invited {target.nick} to {room.name}"
        self.fanout.deliver(user, model.InviteSent(told, room.name, target.nick))

    def kill(self, user: User, nick: str, reason: str | None = None) -> None:
        """
        Disconnect C{nick} from the server (server operators only).
        """
        if not user.oper and (user.account is None or user.account not in self.admins):
            raise ChatError("not_admin", "Only server operators can do that")
        self.server_kill(nick, user.nick, reason)

    def server_kill(self, nick: str, by: str, reason: str | None = None) -> None:
        """
        Disconnect C{nick}, on the word of C{by} (a server operator, or the
        admin console); it is told why and everyone sharing a room sees it
        leave.
        """
        check_nick(nick)
        target = self.users.get(fold(nick))
        if target is None:
            raise ChatError("no_such_nick", f"There is no user named {nick}")
        why = f"killed by {by}" + (f": {reason}" if reason else "")
        self._note("kill", "{by} killed {nick}", by=by, nick=target.nick)
        self.fanout.deliver(target, model.Error("killed", f"You were {why}"))
        self.disconnect(target, why)
        target.client.close()

    def server_kick(self, nick: str, name: str, by: str, reason: str | None = None) -> None:
        """
        Put C{nick} out of room C{name} on the word of C{by} (the admin
        console), as a kick.
        """
        check_room(name)
        room = self.rooms.get(fold(name))
        if room is None:
            raise ChatError("no_such_room", f"There is no room named {name}")
        self._kick(room, self._member(room, nick), by, reason)

    def announce(self, text: str) -> None:
        """
        Tell every connected user C{text}, as a notice from the server.
        """
        check_text(text)
        self._note("announce", "A server notice was sent to {count} users", count=len(self.users))
        self.fanout.broadcast(self.users.values(), model.Notice(text))

    # -- talking ------------------------------------------------------------

    def say(
        self, user: User, name: str, text: str, action: bool = False, notice: bool = False
    ) -> model.Message:
        """
        Say C{text} in room C{name}: every member, sender included, gets it
        exactly once, in the order the hub accepted messages.  A non-member
        may speak in a room without mode C{n} unless banned from it; it gets
        no copy, not being in the room.
        """
        room = self._speaking_in(user, name)
        check_text(text)
        if "m" in room.modes and not room.may_speak(user, self.admins):
            raise ChatError(
                "moderated",
                f"{room.name} is moderated; only operators and voiced members may speak",
            )
        message = model.Message(
            room.name, user.nick, text, self.runner.now(), self._next_id(), action, notice
        )
        self.fanout.broadcast(room.members, message)
        self._record(message)
        return message

    def private(self, user: User, nick: str, text: str, notice: bool = False) -> None:
        """
        Send C{text} to C{nick} alone (as a C{notice}: never to be answered
        automatically), and echo it back to the sender.
        """
        check_nick(nick)
        check_text(text)
        target = self.users.get(fold(nick))
        if target is None:
            raise ChatError("no_such_nick", f"There is no user named {nick}")
        ts, id = self.runner.now(), self._next_id()
        message = model.PrivateMessage(user.nick, target.nick, text, ts, id, notice)
        self.fanout.deliver(target, message)
        if target is not user:
            self.fanout.deliver(
                user, model.PrivateEcho(user.nick, target.nick, text, ts, id, notice)
            )
        self._record(message)

    # -- internals ----------------------------------------------------------

    def _next_id(self) -> int:
        """
        The id of a message being accepted (and now the newest).
        """
        self._last_id = self.runner.next_id(self._last_id)
        self.messages += 1
        return self._last_id

    def _record(self, message: model.Message | model.PrivateMessage) -> None:
        if self.runner.keeps():
            self.store.record(message)

    def _save(self, room: Room) -> None:
        if room.owner is not None:
            record = self.registered[fold(room.name)] = room.record()
            if self.runner.keeps():
                self.store.save_room(record)

    def _member(self, room: Room, nick: str) -> User:
        check_nick(nick)
        target = self.users.get(fold(nick))
        if target is None or fold(room.name) not in target.rooms:
            raise ChatError("no_such_nick", f"{nick} is not in {room.name}")
        return target

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

    def _speaking_in(self, user: User, name: str) -> Room:
        """
        The room C{user} may say something in as C{name}: one it is in, or
        one without mode C{n} that does not ban it.
        """
        check_room(name)
        room = user.rooms.get(fold(name))
        if room is not None:
            return room
        room = self.rooms.get(fold(name))
        if room is None or "n" in room.modes:
            raise ChatError("not_in_room", f"You are not in {name}")
        if room.bans_user(user) and room.rank(user, self.admins) < OPERATOR:
            raise ChatError("banned", f"You are banned from {room.name}")
        return room

    def _take_out(self, user: User, room: Room) -> None:
        folded = fold(room.name)
        del room.members[user]
        del user.rooms[folded]
        room.guest_ops.discard(user)
        room.voiced.discard(user)
        if not room.members and folded != fold(LOBBY):
            del self.rooms[folded]

    def _note(self, kind: str, text: str, **fields: object) -> None:
        """
        Log a change of state as one event with C{chatd_event} set to
        C{kind}: never message text, topics, keys or passwords.  In a
        cluster, the node that made the change logs it.
        """
        if self.runner.keeps():
            _events.info(text, chatd_event=kind, **fields)

    def _log_failure(self, failure: Failure, doing: str) -> None:
        self._log.failure("Failed {doing}", failure=failure, doing=doing)


def _history(hub: Hub, user: User, r: rq.History) -> Deferred[None]:
    if r.with_ is not None:
        return hub.private_history(user, r.with_, r.limit, r.before)
    assert r.room is not None  # rq.History.check
    return hub.history(user, r.room, r.limit, r.before)


_APPLY: dict[type[rq.Request], Callable[[Hub, Any, Any], Any]] = {
    rq.Say: lambda hub, user, r: hub.say(user, r.room, r.text, notice=bool(r.notice)),
    rq.Me: lambda hub, user, r: hub.say(user, r.room, r.text, action=True),
    rq.Nick: lambda hub, user, r: hub.change_nick(user, r.nick),
    rq.Join: lambda hub, user, r: hub.join(user, r.room, r.key),
    rq.Part: lambda hub, user, r: hub.part(user, r.room, r.reason),
    rq.Msg: lambda hub, user, r: hub.private(user, r.to, r.text, bool(r.notice)),
    rq.Who: lambda hub, user, r: hub.who(user, r.room),
    rq.Members: lambda hub, user, r: hub.members(user, r.room, r.page),
    rq.Rooms: lambda hub, user, r: hub.list_rooms(user),
    rq.Topic: lambda hub, user, r: hub.topic(user, r.room, r.text),
    rq.History: _history,
    rq.Password: lambda hub, user, r: hub.change_password(user, r.old, r.new),
    rq.Op: lambda hub, user, r: hub.set_op(user, r.room, r.nick),
    rq.Deop: lambda hub, user, r: hub.set_op(user, r.room, r.nick, op=False),
    rq.Voice: lambda hub, user, r: hub.set_voice(user, r.room, r.nick),
    rq.Devoice: lambda hub, user, r: hub.set_voice(user, r.room, r.nick, voiced=False),
    rq.Kick: lambda hub, user, r: hub.kick(user, r.room, r.nick, r.reason),
    rq.Ban: lambda hub, user, r: hub.ban(user, r.room, r.nick),
    rq.Unban: lambda hub, user, r: hub.ban(user, r.room, r.nick, banned=False),
    rq.Mode: lambda hub, user, r: hub.set_mode(user, r.room, r.mode, r.key, r.limit),
    rq.Invite: lambda hub, user, r: hub.invite(user, r.room, r.nick),
    rq.Kill: lambda hub, user, r: hub.kill(user, r.nick, r.reason),
    rq.Identified: lambda hub, user, r: hub.identify(user, r.nick, r.account),
    rq.Opered: lambda hub, user, r: hub.opered(user, r.account),
    rq.Registered: lambda hub, user, r: hub.account_created(user, r.nick),
    rq.ServerKill: lambda hub, user, r: hub.server_kill(r.nick, r.by, r.reason),
    rq.ServerKick: lambda hub, user, r: hub.server_kick(r.nick, r.room, r.by, r.reason),
    rq.Announce: lambda hub, user, r: hub.announce(r.text),
}
"""How the hub applies each request; L{rq.SignOn} and L{rq.SignOff} are the
gateway's (L{Hub.connect}, L{Hub.disconnect})."""
