"""
Accounts in the hub: registering a nickname, proving it, changing its
password, taking it back from an old session, and limits on guessing.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from argon2 import PasswordHasher
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorCore, IReactorFromThreads
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from chatd.errors import ChatError
from chatd.hub import Hub, User
from chatd.hub.passwords import Attempts, HashingPool, Passwords
from chatd.model import (
    AccountChanged,
    Error,
    Joined,
    ModeChanged,
    Parted,
    Topic,
    TopicChanged,
    UserList,
    Welcome,
)
from chatd.requests import Join, Mode, Register
from chatd.requests import Topic as TopicRequest
from chatd.store.memory import MemoryStore
from chatd.testing import RecordingClient, events, make_hub, register, signed_on
from tests.test_cluster import Cluster


def refusal(case: SynchronousTestCase, d: Deferred[Any]) -> str:
    """
    The code of the L{ChatError} that C{d} failed with.
    """
    return case.failureResultOf(d, ChatError).value.code


def registered(hub: Hub, nick: str, password: str = "s3cret!") -> User:
    user = signed_on(hub, nick)
    done: list[object] = []
    register(hub, user, password).addBoth(done.append)
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
        self.assertIsNone(self.successResultOf(register(hub, alice, "s3cret!")))
        self.assertEqual(events(alice), [AccountChanged("alice", "registered")])
        self.assertEqual(alice.account, "alice")
        self.assertIn("alice", hub.accounts)
        account = self.successResultOf(store.account("ALICE"))
        assert account is not None
        self.assertEqual(account.name, "Alice")
        self.assertTrue(account.password_hash.startswith("$argon2id$"))
        self.assertNotIn("s3cret!", account.password_hash)

    def test_register_twice(self) -> None:
        """
        Registering a nickname that is registered already is refused.
        """
        hub = make_hub()
        alice = registered(hub, "alice")
        self.assertEqual(refusal(self, register(hub, alice, "other-pass")), "nick_registered")

    def test_register_twice_with_a_bad_password(self) -> None:
        """
        What is wrong with the state comes first: registering again with a
        password that would not do is still "already registered", not a
        lesson about passwords.
        """
        hub = make_hub()
        alice = registered(hub, "alice")
        for password in ("short", "has space", "x" * 129):
            error = self.failureResultOf(register(hub, alice, password), ChatError).value
            self.assertEqual(
                (error.code, error.message),
                ("nick_registered", "The nickname alice is already registered"),
            )

    def test_password_rules(self) -> None:
        """
        Too short, too long, or with spaces: refused, nothing registered.
        """
        hub = make_hub()
        alice = signed_on(hub, "alice")
        for bad in ("short", "x" * 129, "has space"):
            self.assertEqual(refusal(self, register(hub, alice, bad)), "bad_password")
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
        """
        A guest cannot change its nickname to a registered one.
        """
        bob = signed_on(self.hub, "bob")
        error = self.assertRaises(ChatError, self.hub.change_nick, bob, "Alice")
        self.assertEqual(error.code, "nick_registered")
        self.assertEqual(bob.nick, "bob")

    def test_with_password(self) -> None:
        """
        The right password proves the account (named in any case); the user
        signed on with it is identified, and its welcome says so.
        """
        client = RecordingClient()
        account = self.successResultOf(self.hub.authenticate(client, "ALICE", "s3cret!"))
        self.assertEqual(account, "alice")
        user = self.hub.connect(client, "Alice", account)
        self.assertEqual(user.account, "alice")
        self.assertEqual(client.events[0], Welcome("Alice", ("#lobby",), "alice"))

    def test_wrong_password(self) -> None:
        """
        A wrong password is C{bad_password}, and nobody is signed on.
        """
        client = RecordingClient()
        d = self.hub.authenticate(client, "alice", "wrong-one")
        self.assertEqual(refusal(self, d), "bad_password")
        self.assertNotIn("alice", self.hub.users)

    def test_unregistered(self) -> None:
        """
        A password for a nickname nobody registered is C{not_registered}.
        """
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
        self.assertIn(Parted("#den", "alice", "signed on again", quit=True), seen)
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
        """
        Given the current password, the password changes: the new one
        proves the account, the old one no longer does.
        """
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
        """
        With a wrong current password nothing changes.
        """
        hub = make_hub()
        alice = registered(hub, "alice")
        d = hub.change_password(alice, "not-it!", "n3w-secret")
        self.assertEqual(refusal(self, d), "bad_password")
        self.successResultOf(hub.authenticate(RecordingClient(), "alice", "s3cret!"))

    def test_guest(self) -> None:
        """
        A guest has no password to change: C{not_identified}.
        """
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
        """
        Failures are remembered for the C{max_keys} most recent nicknames
        only.
        """
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


@implementer(IReactorFromThreads, IReactorCore)
class ThreadsReactor:
    """
    Just enough reactor for L{HashingPool}: calls from its threads wait in
    a queue until L{run_until} runs them on the test's thread, and system
    event triggers are recorded.
    """

    def __init__(self) -> None:
        self.calls: queue.Queue[tuple[Callable[..., object], tuple[Any, ...]]] = queue.Queue()
        self.triggers: list[tuple[str, str, Callable[..., object]]] = []

    def callFromThread(self, f: Callable[..., object], *args: Any) -> None:
        self.calls.put((f, args))

    def addSystemEventTrigger(
        self, phase: str, eventType: str, callable: Callable[..., object], *args: Any
    ) -> None:
        self.triggers.append((phase, eventType, callable))

    def run_until(self, done: Callable[[], bool]) -> None:
        while not done():
            f, args = self.calls.get(timeout=60)  # only against a hang
            f(*args)


class ThreadRecordingHasher(PasswordHasher):
    """
    A cheap hasher that notes the thread of each hash.
    """

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.threads: set[threading.Thread] = set()

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        self.threads.add(threading.current_thread())
        return super().hash(password, salt=salt)


class HashingPoolTests(SynchronousTestCase):
    def test_hashes_only_in_parallel_threads_of_its_own(self) -> None:
        """
        By default hashes run in a pool of their own with at most
        C{parallel} threads, however many are asked for at once, so at most
        that many threads' memory ever holds argon2's blocks; the pool
        starts on the first hash and stops with the reactor.
        """
        reactor = ThreadsReactor()
        hasher = ThreadRecordingHasher()
        passwords = Passwords(hasher, parallel=2, max_waiting=100, reactor=reactor)
        assert passwords.threads is not None
        self.addCleanup(passwords.threads.stop)
        self.assertIsNone(passwords.threads.pool)
        self.assertEqual(reactor.triggers, [])

        results: dict[int, object] = {}

        def keep(result: object, i: int) -> None:
            results[i] = result

        for i in range(30):
            passwords.hash(f"password-{i}").addBoth(keep, i)
        pool = passwords.threads.pool
        assert pool is not None
        self.assertEqual(reactor.triggers, [("during", "shutdown", passwords.threads.stop)])
        reactor.run_until(lambda: len(results) == 30)

        self.assertTrue(all(str(r).startswith("$argon2id$") for r in results.values()), results)
        self.assertLessEqual(len(hasher.threads), 2)
        self.assertLessEqual(len(pool.threads), 2)
        self.assertTrue(hasher.threads <= set(pool.threads))
        self.assertNotIn(threading.current_thread(), hasher.threads)
        verified: list[object] = []
        passwords.verify(str(results[0]), "password-0").addBoth(verified.append)
        reactor.run_until(lambda: bool(verified))
        self.assertEqual(verified, [True])

        reactor.triggers[0][2]()  # the reactor shuts down
        self.assertTrue(pool.joined)
        self.assertFalse(any(thread.is_alive() for thread in pool.threads))
        self.assertIsNone(passwords.threads.pool)

    def test_errors_arrive_as_failures(self) -> None:
        """
        What the work raises in the pool's thread fails its L{Deferred}.
        """
        reactor = ThreadsReactor()
        threads = HashingPool(1, reactor)
        self.addCleanup(threads.stop)
        results: list[object] = []
        threads.run(lambda: 1 // 0).addErrback(lambda f: f.trap(ZeroDivisionError)).addBoth(
            results.append
        )
        reactor.run_until(lambda: bool(results))
        self.assertEqual(results, [ZeroDivisionError])
        threads.stop()
        threads.stop()  # twice is fine

    def test_in_thread_replaces_the_pool(self) -> None:
        """
        Given C{in_thread}, L{Passwords} runs hashes with it and has no pool.
        """
        self.assertIsNone(Passwords(in_thread=lambda work, *args: succeed(work(*args))).threads)


class ErrorShapeTests(SynchronousTestCase):
    def test_errors_never_show_the_password(self) -> None:
        """
        Refusals of a password, wrong or unacceptable, never repeat it.
        """
        hub = make_hub()
        registered(hub, "alice")
        for d in (
            hub.authenticate(RecordingClient(), "alice", "hunter2-guess"),
            register(hub, signed_on(hub, "bob"), "has space in it"),
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
        self.successResultOf(register(hub, alice, "s3cret!"))
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
        """
        Identifying takes over the session holding the nickname, and its
        rooms.
        """
        store = MemoryStore()
        hub = make_hub(store=store)
        registered(hub, "alice")
        hub.join(hub.users["alice"], "#den")
        guest = signed_on(hub, "alice_")
        hub.identify(guest, "alice", "alice")
        self.assertEqual(list(guest.rooms), ["#lobby", "#den"])


class TakeoverKeepsRoomsTests(SynchronousTestCase):
    """
    Taking over a session moves it: the new session takes the old one's
    place in each of its rooms, and a room the old one opened as a guest
    keeps its topic, modes and operator even though its leaving emptied it.
    """

    def setUp(self) -> None:
        self.hub = make_hub()
        self.gus = self.opened(self.hub, signed_on(self.hub, "gus"))

    def opened(self, hub: Hub, gus: User) -> User:
        """
        The issue's steps: as a guest, gus opens #gusroom, sets its topic
        and C{+t}, then registers.
        """
        hub.join(gus, "#gusroom")
        hub.topic(gus, "#gusroom", "gus's own room")
        hub.set_mode(gus, "#gusroom", "+t")
        done: list[object] = []
        register(hub, gus, "gus-password").addBoth(done.append)
        assert done == [None], done
        events(gus)
        return gus

    def check_room(self, hub: Hub, heir: User) -> None:
        """
        #gusroom is as gus left it, with C{heir} as its operator.
        """
        room = hub.rooms["#gusroom"]
        self.assertEqual((room.topic, room.topic_by, room.modes), ("gus's own room", "gus", "nt"))
        self.assertEqual(list(room.members), [heir])
        self.assertEqual(room.guest_ops, {heir})
        self.assertIs(heir.rooms["#gusroom"], room)

    def test_signing_on_again(self) -> None:
        """
        gus signs on again with its password: the old session is closed,
        the new one is welcomed to both rooms and shown #gusroom's topic,
        which C{/topic} still shows, and may set it in spite of C{+t}.
        """
        room = self.hub.rooms["#gusroom"]
        client = RecordingClient()
        account = self.successResultOf(self.hub.authenticate(client, "gus", "gus-password"))
        new = self.hub.connect(client, "gus", account)
        self.assertTrue(self.gus.client.closed)  # type: ignore[attr-defined]
        self.assertEqual(
            client.take(),
            [
                Welcome("gus", ("#lobby", "#gusroom"), "gus"),
                Joined("#lobby", "gus"),
                UserList("#lobby", ("gus",)),
                Joined("#gusroom", "gus"),
                UserList("#gusroom", ("gus",), ("gus",)),
                Topic("#gusroom", "gus's own room", "gus", 0.0),
            ],
        )
        self.assertIs(self.hub.rooms["#gusroom"], room)
        self.check_room(self.hub, new)
        self.hub.topic(new, "#gusroom")
        self.assertEqual(client.take(), [Topic("#gusroom", "gus's own room", "gus", 0.0)])
        self.hub.topic(new, "#gusroom", "still mine")
        self.assertEqual(client.take(), [TopicChanged("#gusroom", "still mine", "gus", 0.0)])

    def test_other_members_see_it_leave_and_come_back(self) -> None:
        """
        A member of the room sees the old session leave (with the reason)
        and the new one come; the member list ends the same.
        """
        bob = signed_on(self.hub, "bob")
        self.hub.join(bob, "#gusroom")
        events(self.gus)
        events(bob)
        client = RecordingClient()
        new = self.hub.connect(client, "gus", "gus")
        self.assertEqual(
            events(bob),
            [
                Parted("#lobby", "gus", "signed on again", quit=True),
                Parted("#gusroom", "gus", "signed on again", quit=True),
                Joined("#lobby", "gus"),
                Joined("#gusroom", "gus"),
            ],
        )
        self.assertEqual(list(self.hub.rooms["#gusroom"].members), [bob, new])
        self.assertEqual(self.hub.rooms["#gusroom"].guest_ops, {new})

    def test_identify(self) -> None:
        """
        Identifying from another session (a guest nickname) takes over the
        same way: the room is kept, its operator moves.
        """
        guest = signed_on(self.hub, "gus_")
        self.hub.identify(guest, "gus", "gus")
        self.assertEqual(guest.nick, "gus")
        self.assertEqual(list(guest.rooms), ["#lobby", "#gusroom"])
        self.check_room(self.hub, guest)

    def test_nick(self) -> None:
        """
        An identified session taking its nickname back with C{/nick} takes
        the old session's rooms too, kept as they were.
        """
        other = self.hub.connect(RecordingClient(), "gus_away", "gus")
        self.hub.change_nick(other, "gus")
        self.assertTrue(self.gus.client.closed)  # type: ignore[attr-defined]
        self.assertEqual(list(other.rooms), ["#lobby", "#gusroom"])
        self.check_room(self.hub, other)

    def test_room_limit(self) -> None:
        """
        An heir already in as many rooms as allowed is told so for each
        room it cannot take, and a room the old session left empty then
        goes, as any room that empties.
        """
        hub = make_hub(max_rooms_per_user=2)
        gus = self.opened(hub, signed_on(hub, "gus"))
        guest = signed_on(hub, "gus_")
        hub.join(guest, "#elsewhere")
        events(guest)
        hub.identify(guest, "gus", "gus")
        seen = events(guest)
        self.assertIn(Error("too_many_rooms", "You cannot be in more than 2 rooms"), seen)
        self.assertEqual(list(guest.rooms), ["#lobby", "#elsewhere"])
        self.assertNotIn("#gusroom", hub.rooms)
        self.assertTrue(gus.client.closed)  # type: ignore[attr-defined]

    def test_across_nodes(self) -> None:
        """
        In a cluster, gus signing on again on another node keeps the room
        on every node's replica, alike.
        """
        cluster = Cluster()
        a, b = cluster.node("a"), cluster.node("b")
        gus = cluster.connect(a, "gus")
        for request in (
            lambda: a.submit(gus, Join(room="#gusroom")),
            lambda: a.submit(gus, TopicRequest(room="#gusroom", text="gus's own room")),
            lambda: a.submit(gus, Mode(room="#gusroom", mode="+t")),
            lambda: a.submit(gus, Register(password="gus-password")),
        ):
            done = request()
            cluster.pump()
            cluster.successResultOf(done)
        client = RecordingClient()
        again = b.connect(client, "gus", "gus")
        cluster.pump()
        new = cluster.successResultOf(again)
        self.assertIn(Topic("#gusroom", "gus's own room", "gus", 0.0), client.take())
        self.check_room(b.hub, new)
        self.check_room(a.hub, a.hub.users["gus"])
        self.assertEqual(a.snapshot(), b.snapshot())
        b.submit(new, Mode(room="#gusroom", mode="+m"))
        cluster.pump()
        self.assertIn(ModeChanged("#gusroom", "+m", "gus"), client.take())
