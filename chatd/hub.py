# -*- test-case-name: tests.test_hub,tests.test_moderation,tests.test_accounts -*-
"""
The hub: users, nicknames, accounts, rooms, moderation and routing, with no
I/O of its own.

Doors call the hub's methods on behalf of a connected user; the hub answers
by delivering events (L{chatd.model}) to L{chatd.interfaces.IClient}s, never
by returning text, so every door renders every outcome the same way.  A
refused request raises L{ChatError} before anything has changed.  What must
outlive the process goes to an L{IStore}; only password checks and history
pages wait for it, and they return Deferreds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatd.accounts import Attempts, Passwords, check_password
from chatd.errors import ChatError
from chatd.interfaces import IClient, IEncoder, IStore
from chatd.model import (
    LOBBY,
    MAX_TOPIC_LENGTH,
    Account,
    AccountChanged,
    BanChanged,
    Error,
    Event,
    HistoryPage,
    Invited,
    Joined,
    Kicked,
    Message,
    ModeChanged,
    Modes,
    NickChanged,
    Notice,
    OpChanged,
    Parted,
    PrivateEcho,
    PrivateHistory,
    PrivateMessage,
    RoomInfo,
    RoomList,
    RoomRecord,
    StoreState,
    Topic,
    TopicChanged,
    UserList,
    Welcome,
    check_nick,
    check_number,
    check_room,
    check_text,
    fold,
)
from chatd.store.memory import MemoryStore

MODES = "imt"
MAX_KEY_LENGTH = 23
MAX_INVITES = 100
MAX_BANS = 500

MEMBER, OPERATOR, OWNER, ADMIN = range(4)

_events = Logger(namespace="chatd.events")

Answer = Deferred[None] | None
"""What a request returns: None once done, or (in a cluster, where requests
are applied once the log has them) a Deferred that fires when done and fails
with the refusal."""


class User:
    """
    A named connection in the hub.

    @ivar rooms: the rooms the user is in, by folded name, oldest join first.
    @ivar account: the folded name of the account it proved, if any.
    @ivar since: private history of its nickname from after this message id
        is its own: from when the account was registered for its account's
        nickname, else from when it took its nickname.
    """

    __slots__ = ("account", "client", "nick", "rooms", "sid", "since")

    def __init__(self, nick: str, client: IClient, account: str | None, since: int) -> None:
        self.nick = nick
        self.client = client
        self.account = account
        self.since = since
        self.rooms: dict[str, Room] = {}
        self.sid = ""

    def __repr__(self) -> str:
        return f"<User {self.nick}>"


class Room:
    """
    A room, its members (an ordered set, in join order) and its rules.

    A registered room (one with an C{owner}) keeps its settings in the
    store; operators by account are kept with them.  Anyone else made an
    operator, and everyone invited, is remembered only while the room has
    members.
    """

    __slots__ = (
        "bans",
        "guest_ops",
        "invites",
        "key",
        "members",
        "modes",
        "name",
        "op_accounts",
        "owner",
        "topic",
        "topic_by",
    )

    def __init__(self, name: str, record: RoomRecord | None = None) -> None:
        self.name = name
        self.members: dict[User, None] = {}
        self.guest_ops: set[User] = set()
        self.invites: dict[str, None] = {}
        self.owner: str | None = None
        self.topic = ""
        self.topic_by: str | None = None
        self.modes = ""
        self.key: str | None = None
        self.op_accounts: set[str] = set()
        self.bans: set[str] = set()
        if record is not None:
            self.name = record.name
            self.owner = record.owner
            self.topic, self.topic_by = record.topic, record.topic_by
            self.modes, self.key = record.modes, record.key
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
        )

    def is_op(self, user: User) -> bool:
        return user in self.guest_ops or (
            user.account is not None
            and (user.account == self.owner or user.account in self.op_accounts)
        )

    def mode_string(self) -> str:
        flags = self.modes + ("k" if self.key else "")
        return "+" + "".join(sorted(flags)) if flags else ""


Place = tuple[Room, bool]
"""A room a user is in, and whether it is a guest operator there."""


class Hub:
    """
    The one place where chat state lives and chat rules are enforced.

    @ivar users: connected users by folded nick.
    @ivar rooms: rooms with at least one member (and always C{#lobby}), by
        folded name.
    @ivar accounts: folded names of every registered nickname.
    @ivar registered: the settings of every registered room, by folded name.
    @ivar admins: folded account names of server operators.
    @ivar motd: the message of the day, lines shown to each user on sign-on.
    @ivar deliveries: events written to recipients (broadcasts) since start.
    @ivar messages: room and private messages accepted since start.
    @ivar bytes_out: bytes of events handed to each door's connections, by
        the door's encoder.
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
        history_page: int = 20,
        max_history_page: int = 200,
        state: StoreState | None = None,
    ) -> None:
        self.clock = clock
        self.store = MemoryStore() if store is None else store
        self.passwords = Passwords() if passwords is None else passwords
        self.attempts = Attempts(clock)
        self._floors: dict[str, int] = {}
        self.admins = frozenset(fold(a) for a in admins)
        self.max_rooms_per_user = max_rooms_per_user
        self.history_on_join = history_on_join
        self.motd = tuple(motd)
        self.history_page = history_page
        self.max_history_page = max_history_page
        if state is None:
            state = self.store.load()
        self._last_id = state.last_id
        self.accounts = set(state.accounts)
        self.registered = {fold(r.name): r for r in state.rooms}
        self.users: dict[str, User] = {}
        self.rooms = {fold(LOBBY): Room(LOBBY, self.registered.get(fold(LOBBY)))}
        self.closing = False
        self.deliveries = 0
        self.messages = 0
        self.bytes_out: Counter[IEncoder | None] = Counter()

    def start(self) -> Deferred[None]:
        """
        Get ready to serve; fire when ready (a lone hub is ready at once).
        """
        return succeed(None)

    def leave(self) -> Deferred[None]:
        """
        Tell whoever must know that this hub stops serving (nobody, alone).
        """
        return succeed(None)

    def trouble(self) -> str | None:
        """
        Why the hub cannot serve right now, if it cannot.
        """
        return None

    @property
    def last_id(self) -> int:
        """
        The id of the newest message accepted (room or private).
        """
        return self._last_id

    # -- connecting ---------------------------------------------------------

    def connect(self, client: IClient, nick: str, account: str | None = None) -> User:
        """
        Admit C{client} as C{nick}: it is welcomed and joins C{#lobby}.

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
            "sign_on", "{nick} signed on", nick=nick, account=account, address=_address(client)
        )
        if places:
            entering = [room.name for room, _ in places[: self.max_rooms_per_user]]
            self._deliver(user, Welcome(nick, tuple(entering), account))
            self._inherit(user, places)
        else:
            self._enter_lobby(user)
        for line in self.motd:
            self._deliver(user, Notice(line))
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
            self._deliver(user, Welcome(user.nick, (), user.account))
            self._deliver(user, Error.from_exception(error))
            return
        self._deliver(user, Welcome(user.nick, (room.name,), user.account))
        self._enter(user, room, new)

    def disconnect(self, user: User, reason: str | None = None) -> None:
        """
        Remove C{user}; everyone sharing a room sees it leave each room once.
        Calling it again for the same user does nothing.
        """
        self._disconnect(user, reason)

    def _disconnect(self, user: User, reason: str | None) -> None:
        if self.users.get(fold(user.nick)) is not user:
            return
        del self.users[fold(user.nick)]
        self._note("sign_off", "{nick} signed off", nick=user.nick, address=_address(user.client))
        for room in list(user.rooms.values()):
            self._leave(user, room)
            if not self.closing:
                self._broadcast(room.members, Parted(room.name, user.nick, reason))

    def change_nick(self, user: User, new: str) -> Answer:
        """
        Rename C{user}; it and everyone sharing a room with it see it once.
        """
        check_nick(new)
        if new == user.nick:
            return None
        places: list[Place] = []
        if fold(new) != fold(user.nick):
            self._check_free(new, user.account)
            places = self._take_over(new, f"{user.nick} took the nickname back")
        self._rename(user, new)
        self._inherit(user, places)
        return None

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
        self._broadcast(audience, NickChanged(old, new))

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
        self._deliver(holder, Error("taken_over", f"Your nickname was taken over: {why}"))
        self._disconnect(holder, why)
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
                self._deliver(heir, Error.from_exception(self._too_many_rooms()))
                continue
            room = self.rooms.setdefault(fold(place.name), place)
            if guest_op:
                room.guest_ops.add(heir)
            self._enter(heir, room)

    # -- accounts -----------------------------------------------------------

    def authenticate(self, client: IClient, nick: str, password: str) -> Deferred[str]:
        """
        Check C{password} for the account C{nick}; fire with the account's
        folded name, or fail with C{not_registered}, C{bad_password} or
        C{too_many_attempts}.  Wrong guesses are limited per nickname and
        per connection.
        """
        try:
            check_nick(nick)
            key = fold(nick)
            if key not in self.accounts:
                raise ChatError("not_registered", f"The nickname {nick} is not registered")
            self.attempts.check(key, client)
        except ChatError:
            return fail()

        def verify(account: Account | None) -> Deferred[bool]:
            if account is None:
                raise ChatError("not_registered", f"The nickname {nick} is not registered")
            self._floors[key] = account.first_id
            return self.passwords.verify(account.password_hash, password)

        def checked(right: bool) -> str:
            if not right:
                self._note(
                    "bad_password",
                    "A wrong password was given for {nick}",
                    nick=nick,
                    address=_address(client),
                )
                self.attempts.failed(key, client)
                raise ChatError("bad_password", f"Wrong password for {nick}")
            self.attempts.succeeded(key)
            return key

        return self.store.account(nick).addCallback(verify).addCallback(checked)

    def identify(self, user: User, nick: str, account: str) -> Answer:
        """
        Mark C{user} as holding C{account} (proved by L{authenticate}) and,
        if C{nick} differs from its nickname, rename it to C{nick}.
        """
        user.account = account
        self._note(
            "identify",
            "{nick} identified as {account}",
            nick=user.nick,
            account=account,
            address=_address(user.client),
        )
        places: list[Place] = []
        if fold(nick) != fold(user.nick):
            places = self._take_over(nick, f"{user.nick} identified for it")
            self._rename(user, nick)
        else:
            user.since = self._floor(nick, account)
        self._deliver(user, AccountChanged(account, "identified"))
        self._inherit(user, places)
        return None

    def register(self, user: User, password: str) -> Deferred[None]:
        """
        Register C{user}'s nickname with C{password}; it is then identified.
        """
        nick = user.nick
        try:
            if fold(nick) in self.accounts:
                raise ChatError("nick_registered", f"The nickname {nick} is already registered")
            check_password(password)
            hashed = self.passwords.hash(password)
        except ChatError:
            return fail()

        def create(password_hash: str) -> Deferred[bool]:
            account = Account(nick, password_hash, self.clock.seconds(), user.since)
            return self.store.create_account(account)

        def created(new: bool) -> Answer:
            if not new:
                raise ChatError("nick_registered", f"The nickname {nick} is already registered")
            self._floors[fold(nick)] = user.since
            return self._registered(user, nick)

        return hashed.addCallback(create).addCallback(created)

    def _registered(self, user: User, nick: str) -> Answer:
        """
        The account C{nick} now exists: C{user}, if it still holds the
        nickname, is identified for it.
        """
        self.accounts.add(fold(nick))
        self._note("register", "{nick} registered", nick=nick, address=_address(user.client))
        if self.users.get(fold(nick)) is user:
            user.account = fold(nick)
            self._deliver(user, AccountChanged(fold(nick), "registered"))
        return None

    def change_password(self, user: User, old: str, new: str) -> Deferred[None]:
        """
        Replace the password of C{user}'s account, given the current one.
        """
        account = user.account
        try:
            if account is None:
                raise ChatError("not_identified", "Register or identify first")
            check_password(new)
        except ChatError:
            return fail()

        def store(password_hash: str) -> Deferred[None]:
            return self.store.set_password(account, password_hash)

        def changed(_: None) -> None:
            self._deliver(user, AccountChanged(account, "password"))

        checked = self.authenticate(user.client, account, old)
        checked.addCallback(lambda _: self.passwords.hash(new))
        return checked.addCallback(store).addCallback(changed)

    # -- rooms --------------------------------------------------------------

    def is_member(self, user: User, room: str) -> bool:
        """
        Whether C{user} is in C{room}.
        """
        return fold(room) in user.rooms

    def join(self, user: User, name: str, key: str | None = None) -> Answer:
        """
        Put C{user} in room C{name}, creating it if needed, unless the room
        bans it, is invite-only or has another key.

        The joiner gets its own join, then the member list, then the topic
        if one is set, then the room's recent history; every other member
        gets the join.  The first to enter a new room is its operator, and
        its owner if identified: the room is then registered.
        """
        self._join(user, name, key)
        return None

    def _join(self, user: User, name: str, key: str | None) -> None:
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
            room = Room(name, self.registered.get(folded))
        self._check_entry(user, room, key)
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
        self._broadcast(room.members, Joined(room.name, user.nick))
        self._deliver(user, self._user_list(room))
        if room.topic:
            self._deliver(user, Topic(room.name, room.topic, room.topic_by))
        if self.history_on_join > 0 and self._is_local(user):
            limit = min(self.history_on_join, self.max_history_page)
            self._send_history(user, room, limit, self._last_id + 1, on_join=True)

    def _check_entry(self, user: User, room: Room, key: str | None) -> None:
        if self._rank(user, room) >= OPERATOR:
            return
        if self._banned(user, room):
            raise ChatError("banned", f"You are banned from {room.name}")
        if "i" in room.modes and fold(user.nick) not in room.invites:
            raise ChatError("invite_only", f"{room.name} is invite only; ask an operator")
        if room.key is not None and key != room.key:
            raise ChatError("bad_key", f"{room.name} needs the right key: /join {room.name} KEY")

    def part(self, user: User, name: str, reason: str | None = None) -> Answer:
        """
        Take C{user} out of room C{name}; it and the other members see it.
        """
        room = self._membership(user, name)
        self._note("part", "{nick} left {room}", nick=user.nick, room=room.name)
        self._broadcast(room.members, Parted(room.name, user.nick, reason))
        self._leave(user, room)
        return None

    def who(self, user: User, name: str) -> Answer:
        """
        Send C{user} the members of room C{name}.
        """
        self._deliver(user, self._user_list(self._existing(name)))
        return None

    def list_rooms(self, user: User) -> Answer:
        """
        Send C{user} every room, its member count and topic, by name.
        """
        rooms = sorted(self.rooms.items())
        info = tuple(RoomInfo(r.name, len(r.members), r.topic) for _, r in rooms)
        self._deliver(user, RoomList(info))
        return None

    def topic(self, user: User, name: str, text: str | None = None) -> Answer:
        """
        With no C{text}, send C{user} the topic of room C{name}; otherwise set
        it (an empty or blank text clears it) and show every member.  In a
        room with mode C{+t} only operators set it.
        """
        if text is None:
            room = self._existing(name)
            self._deliver(user, Topic(room.name, room.topic, room.topic_by))
            return None
        room = self._membership(user, name)
        if "t" in room.modes:
            self._require(user, room, OPERATOR)
        text = text.strip()
        if len(text) > MAX_TOPIC_LENGTH:
            raise ChatError(
                "text_too_long", f"The topic is longer than {MAX_TOPIC_LENGTH} characters"
            )
        room.topic = text
        room.topic_by = user.nick
        self._save(room)
        self._note("topic", "{by} set the topic of {room}", by=user.nick, room=room.name)
        self._broadcast(room.members, TopicChanged(room.name, text, user.nick))
        return None

    # -- moderation ---------------------------------------------------------

    def set_op(self, user: User, name: str, nick: str, op: bool = True) -> Answer:
        """
        Make member C{nick} an operator of room C{name} (or, with C{op}
        false, no longer one): by account if it has one and the room is
        registered, so that it lasts.
        """
        room = self._membership(user, name)
        self._require(user, room, OPERATOR)
        target = self._member(room, nick)
        if room.is_op(target) == op:
            state = "already" if op else "not"
            self._deliver(user, Notice(f"{target.nick} is {state} an operator of {room.name}"))
            return None
        if op:
            if room.owner is not None and target.account is not None:
                room.op_accounts.add(target.account)
            else:
                room.guest_ops.add(target)
        else:
            self._outrank(user, target, room)
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
        self._broadcast(room.members, OpChanged(room.name, target.nick, user.nick, op))
        self._broadcast(room.members, self._user_list(room))
        return None

    def kick(self, user: User, name: str, nick: str, reason: str | None = None) -> Answer:
        """
        Put member C{nick} out of room C{name}; every member sees it.
        """
        room = self._membership(user, name)
        self._require(user, room, OPERATOR)
        target = self._member(room, nick)
        self._outrank(user, target, room)
        self._kick(room, target, user.nick, reason)
        return None

    def _kick(self, room: Room, target: User, by: str, reason: str | None) -> None:
        self._note(
            "kick", "{by} kicked {nick} from {room}", by=by, nick=target.nick, room=room.name
        )
        self._broadcast(room.members, Kicked(room.name, target.nick, by, reason))
        self._leave(target, room)

    def ban(self, user: User, name: str, nick: str, banned: bool = True) -> Answer:
        """
        Ban C{nick} from room C{name} (or lift the ban): its account if it
        is online and identified, else the nickname.  A banned member is
        also put out.
        """
        check_nick(nick)
        room = self._membership(user, name)
        self._require(user, room, OPERATOR)
        target = self.users.get(fold(nick))
        mask = target.account if target is not None and target.account else fold(nick)
        if not banned:
            if mask not in room.bans and fold(nick) not in room.bans:
                raise ChatError("not_banned", f"{nick} is not banned from {room.name}")
            room.bans.discard(mask)
            room.bans.discard(fold(nick))
        else:
            if mask == room.owner or mask in self.admins:
                if self._rank(user, room) < ADMIN:
                    raise ChatError("not_allowed", f"You cannot ban {nick} from {room.name}")
            if target is not None and fold(room.name) in target.rooms:
                self._outrank(user, target, room)
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
        self._broadcast(room.members, BanChanged(room.name, nick, user.nick, banned))
        if banned and target is not None and fold(room.name) in target.rooms:
            self._kick(room, target, user.nick, "banned")
        return None

    def set_mode(self, user: User, name: str, change: str | None, key: str | None = None) -> Answer:
        """
        With no C{change}, send C{user} the modes of room C{name}; otherwise
        apply C{change}: C{+} or C{-} and letters among C{i}, C{k} (with
        C{key} to set), C{m} and C{t}.  Every member sees each change.
        """
        room = self._membership(user, name)
        if not change:
            self._deliver(user, Modes(room.name, room.mode_string(), room.key))
            return None
        self._require(user, room, OPERATOR)
        sign, letters = change[0], change[1:]
        if sign not in "+-" or not letters or any(c not in MODES + "k" for c in letters):
            raise ChatError("bad_mode", "Modes are + or - then letters among i, k, m, t (e.g. +mt)")
        if "k" in letters and sign == "+":
            if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable() or " " in key:
                raise ChatError(
                    "bad_key", f"A key is 1-{MAX_KEY_LENGTH} printable characters, no spaces"
                )
        changes = []
        for letter in dict.fromkeys(letters):
            if letter == "k":
                new_key = key if sign == "+" else None
                if new_key != room.key:
                    room.key = new_key
                    changes.append(f"{sign}k" + (f" {key}" if sign == "+" else ""))
            elif (letter in room.modes) != (sign == "+"):
                modes = set(room.modes) ^ {letter}
                room.modes = "".join(sorted(modes))
                changes.append(sign + letter)
        if not changes:  # nothing to change: say how things are
            self._deliver(user, Modes(room.name, room.mode_string(), room.key))
            return None
        self._save(room)
        for applied in changes:
            self._note(
                "mode", "{by} set {mode} on {room}", by=user.nick, mode=applied[:2], room=room.name
            )
            self._broadcast(room.members, ModeChanged(room.name, applied, user.nick))
        return None

    def invite(self, user: User, name: str, nick: str) -> Answer:
        """
        Let C{nick} into room C{name} past mode C{+i}, and tell it so.
        """
        room = self._membership(user, name)
        self._require(user, room, OPERATOR)
        check_nick(nick)
        target = self.users.get(fold(nick))
        if target is None:
            raise ChatError("no_such_nick", f"There is no user named {nick}")
        if fold(room.name) in target.rooms:
            raise ChatError("already_joined", f"{target.nick} is already in {room.name}")
        room.invites[fold(target.nick)] = None
        if len(room.invites) > MAX_INVITES:
            del room.invites[next(iter(room.invites))]
        self._deliver(target, Invited(room.name, user.nick))
        self._deliver(user, Notice(f"Invited {target.nick} to {room.name}"))
        return None

    def kill(self, user: User, nick: str, reason: str | None = None) -> Answer:
        """
        Disconnect C{nick} from the server (server operators only).
        """
        if user.account is None or user.account not in self.admins:
            raise ChatError("not_admin", "Only server operators can do that")
        self._drop(nick, user.nick, reason)
        return None

    def drop(self, nick: str, by: str, reason: str | None = None) -> Answer:
        """
        Disconnect C{nick}, on the word of C{by} (a server operator, or the
        admin console); it is told why and everyone sharing a room sees it
        leave.
        """
        self._drop(nick, by, reason)
        return None

    def _drop(self, nick: str, by: str, reason: str | None) -> None:
        check_nick(nick)
        target = self.users.get(fold(nick))
        if target is None:
            raise ChatError("no_such_nick", f"There is no user named {nick}")
        why = f"killed by {by}" + (f": {reason}" if reason else "")
        self._note("kill", "{by} killed {nick}", by=by, nick=target.nick)
        self._deliver(target, Error("killed", f"You were {why}"))
        self._disconnect(target, why)
        target.client.close()

    def remove(self, nick: str, name: str, by: str, reason: str | None = None) -> Answer:
        """
        Put C{nick} out of room C{name} on the word of C{by} (the admin
        console), as a kick.
        """
        check_room(name)
        room = self.rooms.get(fold(name))
        if room is None:
            raise ChatError("no_such_room", f"There is no room named {name}")
        self._kick(room, self._member(room, nick), by, reason)
        return None

    def announce(self, text: str) -> Answer:
        """
        Tell every connected user C{text}, as a notice from the server.
        """
        check_text(text)
        self._note("announce", "A server notice was sent to {count} users", count=len(self.users))
        self._broadcast(self.users.values(), Notice(text))
        return None

    # -- talking ------------------------------------------------------------

    def say(self, user: User, name: str, text: str, action: bool = False) -> Message:
        """
        Say C{text} in room C{name}: every member, sender included, gets it
        exactly once, in the order the hub accepted messages.
        """
        room = self._membership(user, name)
        check_text(text)
        if "m" in room.modes and self._rank(user, room) < OPERATOR:
            raise ChatError("moderated", f"{room.name} is moderated; only operators may speak")
        message = Message(room.name, user.nick, text, self._now(), self._next_id(), action)
        self._broadcast(room.members, message)
        self._record(message)
        return message

    def private(self, user: User, nick: str, text: str) -> Answer:
        """
        Send C{text} to C{nick} alone, and echo it back to the sender.
        """
        check_nick(nick)
        check_text(text)
        target = self.users.get(fold(nick))
        if target is None:
            raise ChatError("no_such_nick", f"There is no user named {nick}")
        ts, id = self._now(), self._next_id()
        self._deliver(target, PrivateMessage(user.nick, target.nick, text, ts, id))
        if target is not user:
            self._deliver(user, PrivateEcho(user.nick, target.nick, text, ts, id))
        self._record(PrivateMessage(user.nick, target.nick, text, ts, id))
        return None

    def history(
        self, user: User, name: str, limit: int | None = None, before: int | None = None
    ) -> Deferred[None]:
        """
        Send C{user} the newest C{limit} stored messages of room C{name}
        (older than message id C{before}, if given), oldest first.
        """
        room = self._membership(user, name)
        return self._send_history(user, room, self._page(limit), self._before(before))

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
                self._deliver(user, page, optional=True)

        fetched = self.store.fetch_private(me, nick, limit + 1, before, after)
        return fetched.addCallbacks(send, self._history_failed, errbackArgs=(user,))

    # -- internals ----------------------------------------------------------

    def _now(self) -> float:
        """
        The time stamped on a message being accepted.
        """
        return self.clock.seconds()

    def _next_id(self) -> int:
        """
        The id of a message being accepted: one more than the last.
        """
        self._last_id += 1
        self.messages += 1
        return self._last_id

    def _record(self, message: Message | PrivateMessage) -> None:
        self.store.record(message)

    def _is_local(self, user: User) -> bool:
        """
        Whether C{user} is connected to this process (always, unless the
        hub is one node of a cluster).
        """
        return True

    def _floor(self, nick: str, account: str | None) -> int:
        """
        Where the private history of C{nick} starts for a user holding
        C{account}: at the account's registration if it is the account's
        nickname, else now.
        """
        if account is not None and account == fold(nick):
            return self._floors.get(account, self._last_id)
        return self._last_id

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

    def _send_history(
        self, user: User, room: Room, limit: int, before: int | None, on_join: bool = False
    ) -> Deferred[None]:
        def send(messages: list[Message]) -> None:
            if on_join and not messages:
                return
            if user.rooms.get(fold(room.name)) is room:
                more = len(messages) > limit  # one more was asked for, to know
                page = HistoryPage(room.name, tuple(messages[-limit:]), more)
                self._deliver(user, page, optional=True)

        fetched = maybeDeferred(self.store.fetch, room.name, limit + 1, before)
        return fetched.addCallbacks(send, self._history_failed, errbackArgs=(user,))

    def _history_failed(self, failure: Failure, user: User) -> None:
        self._log_failure(failure, "fetching history")
        self._deliver(user, Error("history_unavailable", "History is unavailable"))

    def _save(self, room: Room) -> None:
        if room.owner is not None:
            record = self.registered[fold(room.name)] = room.record()
            self._keep_room(record)

    def _keep_room(self, record: RoomRecord) -> None:
        self.store.save_room(record)

    def _rank(self, user: User, room: Room) -> int:
        if user.account is not None and user.account in self.admins:
            return ADMIN
        if user.account is not None and user.account == room.owner:
            return OWNER
        return OPERATOR if room.is_op(user) else MEMBER

    def _require(self, user: User, room: Room, rank: int) -> None:
        if self._rank(user, room) < rank:
            raise ChatError("not_op", f"You are not an operator of {room.name}")

    def _outrank(self, user: User, target: User, room: Room) -> None:
        if target is not user and self._rank(target, room) > self._rank(user, room):
            raise ChatError("not_allowed", f"{target.nick} outranks you in {room.name}")

    def _banned(self, user: User, room: Room) -> bool:
        return fold(user.nick) in room.bans or (
            user.account is not None and user.account in room.bans
        )

    def _member(self, room: Room, nick: str) -> User:
        check_nick(nick)
        target = self.users.get(fold(nick))
        if target is None or fold(room.name) not in target.rooms:
            raise ChatError("no_such_nick", f"{nick} is not in {room.name}")
        return target

    def _user_list(self, room: Room) -> UserList:
        members = room.members
        ops = tuple(m.nick for m in members if self._rank(m, room) >= OPERATOR)
        return UserList(room.name, tuple(m.nick for m in members), ops)

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
        folded = fold(room.name)
        del room.members[user]
        del user.rooms[folded]
        room.guest_ops.discard(user)
        if not room.members and folded != fold(LOBBY):
            del self.rooms[folded]

    def _deliver(self, user: User, event: Event, optional: bool = False) -> None:
        client = user.client
        try:
            payload = client.encoder.encode(event)
            client.send(payload, optional)
            if isinstance(payload, bytes):
                self.bytes_out[client.encoder] += len(payload)
        except Exception:
            self._log.failure(
                "Delivering {event} to {nick} failed", event=type(event).__name__, nick=user.nick
            )

    def _broadcast(self, users: Iterable[User], event: Event) -> None:
        """
        Encode C{event} once per door and write it to each of C{users}.

        Each recipient is isolated: a failure while delivering to one is
        logged and never reaches the sender or the other recipients.

        This is the server's hot loop (one pass per recipient of every room
        message), so it does as little as it can: each client's C{push},
        while its output flows, is a write straight to its byte stream.
        """
        encoded: dict[IEncoder, object] = {}
        last_encoder: IEncoder | None = None
        payload: object = None
        run = 0  # recipients in a row given this payload, for bytes_out
        recipients = tuple(users)  # a delivery may end in someone leaving
        self.deliveries += len(recipients)
        for user in recipients:
            client = user.client
            try:
                encoder = client.encoder
                if encoder is not last_encoder:
                    if run:
                        self._sent(last_encoder, payload, run)
                        run = 0
                    payload = encoded.get(encoder)
                    if payload is None:
                        payload = encoded[encoder] = encoder.encode(event)
                    last_encoder = encoder
                client.push(payload)
                run += 1
            except Exception:
                self._log.failure(
                    "Delivering {event} to {nick} failed",
                    event=type(event).__name__,
                    nick=user.nick,
                )
        if run:
            self._sent(last_encoder, payload, run)

    def _sent(self, encoder: IEncoder | None, payload: object, times: int) -> None:
        if isinstance(payload, bytes):
            self.bytes_out[encoder] += len(payload) * times

    def _note(self, kind: str, text: str, **fields: object) -> None:
        """
        Log a change of state as one event with C{chatd_event} set to
        C{kind}: never message text, topics, keys or passwords.
        """
        _events.info(text, chatd_event=kind, **fields)

    def _log_failure(self, failure: Failure, doing: str) -> None:
        self._log.failure("Failed {doing}", failure=failure, doing=doing)


def _address(client: IClient) -> str | None:
    """
    The IP address of C{client}'s peer (the one admission counts, behind a
    trusted proxy the client it names), for the account and admission
    events: C{None} for a client with none (a user of another node).
    """
    address: str | None = getattr(client, "address", None)
    return address
