# -*- test-case-name: tests.test_accounts -*-
"""
Accounts: proving, registering and identifying nicknames.

Password checks and the store wait, so these return Deferreds; what they
change in the shared state (a user now holds an account) is a change of its
own, L{chatd.requests.Identified} or L{chatd.requests.Registered}, that the
gateway applies like any other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, fail

from chatd.errors import ChatError
from chatd.hub.passwords import Attempts, Passwords, check_password
from chatd.hub.state import Place, User
from chatd.interfaces import IClient, IRunner, IStore
from chatd.model import Account, AccountChanged, check_nick, fold
from chatd.requests import Identified, Opered, Registered

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from chatd.hub.fanout import Fanout


class Accounts:
    """
    The account rules of the hub (a mixin of L{chatd.hub.Hub}).

    @ivar accounts: folded names of every registered nickname.
    """

    clock: IReactorTime
    store: IStore
    runner: IRunner
    fanout: Fanout
    passwords: Passwords
    attempts: Attempts
    accounts: set[str]
    users: dict[str, User]
    admins: frozenset[str]
    _floors: dict[str, int]
    _last_id: int

    if TYPE_CHECKING:  # the hub's own

        def _note(self, kind: str, text: str, **fields: object) -> None: ...
        def _take_over(self, nick: str, why: str) -> list[Place]: ...
        def _rename(self, user: User, new: str) -> None: ...
        def _inherit(self, heir: User, places: list[Place]) -> None: ...

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
                    address=address(client),
                )
                self.attempts.failed(key, client)
                raise ChatError("bad_password", f"Wrong password for {nick}")
            self.attempts.succeeded(key)
            return key

        return self.store.account(nick).addCallback(verify).addCallback(checked)

    def prove_oper(self, user: User, name: str, password: str) -> Deferred[Opered | None]:
        """
        Check C{user}'s claim to the admin account C{name}; fire with the
        change that makes it a server operator (C{None} if it signed off
        meanwhile), or fail with C{not_admin} for an account that is none.
        """

        def proven(account: str) -> Opered | None:
            if account not in self.admins:
                raise ChatError("not_admin", f"{name} is not a server operator's account")
            if self.users.get(fold(user.nick)) is not user:
                return None
            return Opered(account=account)

        return self.authenticate(user.client, name, password).addCallback(proven)

    def opered(self, user: User, account: str) -> None:
        """
        Make C{user} a server operator, having proved C{account}.
        """
        user.oper = True
        self._note(
            "oper", "{nick} is a server operator as {account}", nick=user.nick, account=account
        )
        self.fanout.deliver(user, AccountChanged(account, "oper"))

    def prove(self, user: User, nick: str, password: str) -> Deferred[Identified | None]:
        """
        Check C{user}'s claim to the account C{nick}; fire with the change
        that makes it hold it, or with C{None} if it signed off meanwhile.
        """

        def proven(account: str) -> Identified | None:
            if self.users.get(fold(user.nick)) is not user:
                return None
            return Identified(nick=nick, account=account)

        return self.authenticate(user.client, nick, password).addCallback(proven)

    def identify(self, user: User, nick: str, account: str) -> None:
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
            address=address(user.client),
        )
        places: list[Place] = []
        if fold(nick) != fold(user.nick):
            places = self._take_over(nick, f"{user.nick} identified for it")
            self._rename(user, nick)
        else:
            user.since = self._floor(nick, account)
        self.fanout.deliver(user, AccountChanged(account, "identified"))
        self._inherit(user, places)

    def register(self, user: User, password: str) -> Deferred[Registered]:
        """
        Store an account for C{user}'s nickname with C{password}; fire with
        the change that makes it registered (L{account_created}).
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

        def created(new: bool) -> Registered:
            if not new:
                raise ChatError("nick_registered", f"The nickname {nick} is already registered")
            self._floors[fold(nick)] = user.since
            return Registered(nick=nick)

        return hashed.addCallback(create).addCallback(created)

    def account_created(self, user: User | None, nick: str) -> None:
        """
        The account C{nick} now exists: C{user}, if it is still there and
        holds the nickname, is identified for it.
        """
        self.accounts.add(fold(nick))
        if user is None:
            return
        self._note("register", "{nick} registered", nick=nick, address=address(user.client))
        if self.users.get(fold(nick)) is user:
            user.account = fold(nick)
            self.fanout.deliver(user, AccountChanged(fold(nick), "registered"))

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
            self.fanout.deliver(user, AccountChanged(account, "password"))

        checked = self.authenticate(user.client, account, old)
        checked.addCallback(lambda _: self.passwords.hash(new))
        return checked.addCallback(store).addCallback(changed)

    def _floor(self, nick: str, account: str | None) -> int:
        """
        Where the private history of C{nick} starts for a user holding
        C{account}: at the account's registration if it is the account's
        nickname, else now.
        """
        if account is not None and account == fold(nick):
            return self._floors.get(account, self._last_id)
        return self._last_id


def address(client: IClient) -> str | None:
    """
    The IP address of C{client}'s peer (the one admission counts, behind a
    trusted proxy the client it names), for the account and admission
    events: C{None} for a client with none (a user of another node).
    """
    peer: str | None = getattr(client, "address", None)
    return peer
