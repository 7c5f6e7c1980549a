"""
Accounts in the hub: registering a nickname, proving it, changing its
password, taking it back from an old session, and limits on guessing.
"""

from __future__ import annotations

from typing import Any

from argon2 import PasswordHasher
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatd.accounts import Attempts, Passwords
from chatd.errors import ChatError
from chatd.hub import Hub, User
from chatd.model import AccountChanged, Error, Joined, Parted, Welcome
from chatd.store.memory import MemoryStore
from tests.helpers import RecordingClient, events, make_hub, signed_on


def refusal(case: SynchronousTestCase, d: Deferred[Any]) -> str:
    """
    The code of the L{ChatError} that C{d} failed with.
    """
    return case.failureResultOf(d, ChatError).value.code


def registered(hub: Hub, nick: str, password: str = "s3cret!") -> User:
    user = signed_on(hub, nick)
    done: list[object] = []
    hub.register(user, password).addBoth(done.append)
    assert done == [None], done
    events(user)
    return user


class RegisterTests(SynchronousTestCase):
    def test_register_identifies(self) -> None:
        """
        Registering keeps a hash (never the password) and identifies the
        user as the account.
        """
        store = MemoryStore()
        hub = make_hub(store=store)
        alice = signed_on(hub, "Alice")
        self.assertIsNone(self.successResultOf(hub.register(alice, "s3cret!")))
        self.assertEqual(events(alice), [AccountChanged("alice", "registered")])
        self.assertEqual(alice.account, "alice")
        self.assertIn("alice", hub.accounts)
        account = self.successResultOf(store.account("ALICE"))
        assert account is not None
        self.assertEqual(account.name, "Alice")
        self.assertTrue(account.password_hash.startswith("$argon2id$"))
        self.assertNotIn("s3cret!", account.password_hash)

    def test_register_twice(self) -> None:
        hub = make_hub()
        alice = registered(hub, "alice")
        self.assertEqual(refusal(self, hub.register(alice, "other-pass")), "nick_registered")

    def test_password_rules(self) -> None:
        """
        Too short, too long, or with spaces: refused, nothing registered.
        """
        hub = make_hub()
        alice = signed_on(hub, "alice")
        for bad in ("short", "x" * 129, "has space"):
            self.assertEqual(refusal(self, hub.register(alice, bad)), "bad_password")
        self.assertEqual(hub.accounts, set())
        self.assertIsNone(alice.account)

    def test_survives_a_new_hub(self) -> None:
        """
        A hub started on the same store knows the account.
        """
        store = MemoryStore()
        registered(make_hub(store=store), "alice")
        hub = make_hub(store=store)
        error = self.assertRaises(ChatError, hub.connect, RecordingClient(), "ALICE")
        self.assertEqual(error.code, "nick_registered")


class SignOnTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = MemoryStore()
        registered(make_hub(store=self.store), "alice")
        self.hub = make_hub(store=self.store)

    def test_guest_refused(self) -> None:
        """
        Without its password a registered nickname is refused, clearly, and
        nobody hears of it.
        """
        bob = signed_on(self.hub, "bob")
        error = self.assertRaises(ChatError, self.hub.connect, RecordingClient(), "alice")
        self.assertEqual(error.code, "nick_registered")
        self.assertEqual(events(bob), [])

    def test_guest_cannot_rename_to_it(self) -> None:
        bob = signed_on(self.hub, "bob")
        error = self.assertRaises(ChatError, self.hub.change_nick, bob, "Alice")
        self.assertEqual(error.code, "nick_registered")
        self.assertEqual(bob.nick, "bob")

    def test_with_password(self) -> None:
        client = RecordingClient()
        account = self.successResultOf(self.hub.authenticate(client, "ALICE", "s3cret!"))
        self.assertEqual(account, "alice")
        user = self.hub.connect(client, "Alice", account)
        self.assertEqual(user.account, "alice")
        self.assertEqual(client.events[0], Welcome("Alice", ("#lobby",), "alice"))

    def test_wrong_password(self) -> None:
        client = RecordingClient()
        d = self.hub.authenticate(client, "alice", "wrong-one")
        self.assertEqual(refusal(self, d), "bad_password")
        self.assertNotIn("alice", self.hub.users)

    def test_unregistered(self) -> None:
        d = self.hub.authenticate(RecordingClient(), "carol", "whatever")
        self.assertEqual(refusal(self, d), "not_registered")

    def test_takes_over_old_session(self) -> None:
        """
        The account holder signing on again closes the old session, which
        is told why; the new one is back in the old one's rooms.
        """
        bob = signed_on(self.hub, "bob")
        old_client = RecordingClient()
        old = self.hub.connect(old_client, "alice", "alice")
        self.hub.join(old, "#den")
        self.hub.join(bob, "#den")
        old_client.take()
        events(bob)
        new_client = RecordingClient()
        new = self.hub.connect(new_client, "alice", "alice")
        self.assertIn(
            Error("taken_over", "Your nickname was taken over: signed on again"), old_client.events
        )
        self.assertTrue(old_client.closed)
        self.assertIs(self.hub.users["alice"], new)
        self.assertEqual(list(new.rooms), ["#lobby", "#den"])
        seen = events(bob)
        self.assertIn(Parted("#den", "alice", "signed on again"), seen)
        self.assertIn(Joined("#den", "alice"), seen)

    def test_identify_renames(self) -> None:
        """
        A guest that proves an account takes its nickname.
        """
        guest = signed_on(self.hub, "alice_")
        self.hub.identify(guest, "Alice", "alice")
        self.assertEqual((guest.nick, guest.account), ("Alice", "alice"))
        self.assertIn(AccountChanged("alice", "identified"), events(guest))

    def test_identified_user_may_leave_and_return(self) -> None:
        """
        An identified user may wear another nickname and take its own back.
        """
        alice = self.hub.connect(RecordingClient(), "alice", "alice")
        self.hub.change_nick(alice, "alice_away")
        bob = signed_on(self.hub, "bob")
        self.assertEqual(
            self.assertRaises(ChatError, self.hub.change_nick, bob, "alice").code,
            "nick_registered",
        )
        self.hub.change_nick(alice, "alice")
        self.assertEqual(alice.nick, "alice")


class PasswordChangeTests(SynchronousTestCase):
    def test_change(self) -> None:
        hub = make_hub()
        alice = registered(hub, "alice")
        self.successResultOf(hub.change_password(alice, "s3cret!", "n3w-secret"))
        self.assertEqual(events(alice), [AccountChanged("alice", "password")])
        self.assertEqual(
            self.successResultOf(hub.authenticate(RecordingClient(), "alice", "n3w-secret")),
            "alice",
        )
        d = hub.authenticate(RecordingClient(), "alice", "s3cret!")
        self.assertEqual(refusal(self, d), "bad_password")

    def test_wrong_old_password(self) -> None:
        hub = make_hub()
        alice = registered(hub, "alice")
        d = hub.change_password(alice, "not-it!", "n3w-secret")
        self.assertEqual(refusal(self, d), "bad_password")
        self.successResultOf(hub.authenticate(RecordingClient(), "alice", "s3cret!"))

    def test_guest(self) -> None:
        hub = make_hub()
        bob = signed_on(hub, "bob")
        self.assertEqual(refusal(self, hub.change_password(bob, "a", "bbbbbbbb")), "not_identified")


class GuessingTests(SynchronousTestCase):
    def test_per_nickname(self) -> None:
        """
        After five wrong passwords for one nickname in a minute, even the
        right one is refused, from any connection, until the minute ends.
        """
        clock = Clock()
        store = MemoryStore()
        registered(make_hub(clock, store=store), "alice")
        hub = make_hub(clock, store=store)
        for attempt in range(5):
            d = hub.authenticate(RecordingClient(), "alice", f"wrong-{attempt}")
            self.assertEqual(refusal(self, d), "bad_password")
        d = hub.authenticate(RecordingClient(), "alice", "s3cret!")
        self.assertEqual(refusal(self, d), "too_many_attempts")
        clock.advance(61)
        self.successResultOf(hub.authenticate(RecordingClient(), "alice", "s3cret!"))

    def test_per_connection(self) -> None:
        """
        One connection guessing at many nicknames is stopped too.
        """
        hub = make_hub()
        for nick in ("alice", "bob", "carol", "dave", "erin", "frank"):
            registered(hub, nick)
            hub.disconnect(hub.users[nick])
        guesser = RecordingClient()
        for nick in ("alice", "bob", "carol", "dave", "erin"):
            self.assertEqual(
                refusal(self, hub.authenticate(guesser, nick, "guess!")), "bad_password"
            )
        d = hub.authenticate(guesser, "frank", "s3cret!")
        self.assertEqual(refusal(self, d), "too_many_attempts")
        self.successResultOf(hub.authenticate(RecordingClient(), "frank", "s3cret!"))

    def test_attempts_bounded(self) -> None:
        attempts = Attempts(Clock(), max_keys=3)
        for name in "abcde":
            attempts.failed(name, RecordingClient())
        self.assertEqual(list(attempts._names), ["c", "d", "e"])


class PasswordsTests(SynchronousTestCase):
    def test_busy_when_too_many_wait(self) -> None:
        """
        Hashes run a few at a time; past the bounded line of waiting ones
        the server says it is busy instead of queueing more.
        """
        started: list[Deferred[str]] = []

        def in_thread(work: Any, *args: Any) -> Deferred[str]:
            started.append(Deferred())
            return started[-1]

        passwords = Passwords(PasswordHasher(), in_thread=in_thread, parallel=2, max_waiting=1)
        first, _, third = (passwords.hash("pw-pw-pw") for _ in range(3))
        self.assertEqual(len(started), 2)
        error = self.assertRaises(ChatError, passwords.hash, "pw-pw-pw")
        self.assertEqual(error.code, "busy")
        started[0].callback("h1")
        self.assertEqual(self.successResultOf(first), "h1")
        self.assertEqual(len(started), 3)
        self.assertNoResult(third)

    def test_real_hash_in_thread_shape(self) -> None:
        """
        The default hasher makes argon2id hashes that verify.
        """
        passwords = Passwords(in_thread=lambda work, *args: succeed(work(*args)))
        hashed = self.successResultOf(passwords.hash("correct horse"))
        self.assertTrue(hashed.startswith("$argon2id$"))
        self.assertTrue(self.successResultOf(passwords.verify(hashed, "correct horse")))
        self.assertFalse(self.successResultOf(passwords.verify(hashed, "wrong horse")))
        self.assertFalse(self.successResultOf(passwords.verify("not a hash", "x")))


class ErrorShapeTests(SynchronousTestCase):
    def test_errors_never_show_the_password(self) -> None:
        hub = make_hub()
        registered(hub, "alice")
        for d in (
            hub.authenticate(RecordingClient(), "alice", "hunter2-guess"),
            hub.register(signed_on(hub, "bob"), "has space in it"),
        ):
            failure = self.failureResultOf(d, ChatError)
            self.assertNotIn("hunter2", failure.value.message)
            self.assertNotIn("space in it", failure.value.message)


class PrivateHistoryOwnershipTests(SynchronousTestCase):
    def test_registering_does_not_reveal_earlier_holders(self) -> None:
        """
        Private messages to a nickname before its registrant took it stay
        hidden from the account; those since are the account's, also after
        signing on again.
        """
        store = MemoryStore()
        hub = make_hub(store=store)
        bob = signed_on(hub, "bob")
        first = signed_on(hub, "alice")
        hub.private(bob, "alice", "to the first alice")
        hub.disconnect(first)
        alice = signed_on(hub, "alice")
        hub.private(bob, "alice", "to the second alice")
        self.successResultOf(hub.register(alice, "s3cret!"))
        hub.private(bob, "alice", "to the account")
        events(alice)
        hub.private_history(alice, "bob")
        (page,) = events(alice)
        self.assertEqual([m.text for m in page.messages], ["to the second alice", "to the account"])
        hub.disconnect(alice)
        hub = make_hub(store=store)
        client = RecordingClient()
        account = self.successResultOf(hub.authenticate(client, "alice", "s3cret!"))
        again = hub.connect(client, "alice", account)
        client.take()
        hub.private_history(again, "bob")
        (page,) = client.take()
        self.assertEqual([m.text for m in page.messages], ["to the second alice", "to the account"])

    def test_identify_takes_the_old_sessions_rooms(self) -> None:
        store = MemoryStore()
        hub = make_hub(store=store)
        registered(hub, "alice")
        hub.join(hub.users["alice"], "#den")
        guest = signed_on(hub, "alice_")
        hub.identify(guest, "alice", "alice")
        self.assertEqual(list(guest.rooms), ["#lobby", "#den"])
