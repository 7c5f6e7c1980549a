"""
The hub alone: nick, room and routing rules, with recording clients only.
"""

from __future__ import annotations

from twisted.internet.defer import fail
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatd.errors import ChatError, StoreBusy
from chatd.model import (
    Error,
    Event,
    HistoryPage,
    Joined,
    Message,
    NickChanged,
    Parted,
    PrivateEcho,
    PrivateHistory,
    PrivateMessage,
    RoomInfo,
    RoomList,
    Topic,
    TopicChanged,
    UserList,
    Welcome,
)
from chatd.store.memory import MemoryStore
from chatd.testing import PassThrough, RecordingClient, events, make_hub, signed_on


class Boxing(PassThrough):
    """
    An encoder whose every payload is a new object.
    """

    def encode(self, event: Event) -> list[Event]:
        self.encoded += 1
        return [event]


class BrokenClient(RecordingClient):
    """
    A client whose connection fails on every write.
    """

    def send(self, payload: object, optional: bool = False) -> None:
        raise ConnectionError("peer went away")

    def push(self, payload: object) -> None:
        self.send(payload)


class ConnectTests(SynchronousTestCase):
    def test_welcome_then_lobby(self) -> None:
        """
        A new user is welcomed, sees its own join to #lobby, then the lobby's
        member list; the lobby's members see the join.
        """
        hub = make_hub()
        bob = signed_on(hub, "bob")
        client = RecordingClient()
        hub.connect(client, "alice")
        self.assertEqual(
            client.events,
            [
                Welcome("alice", ("#lobby",)),
                Joined("#lobby", "alice"),
                UserList("#lobby", ("bob", "alice")),
            ],
        )
        self.assertEqual(events(bob), [Joined("#lobby", "alice")])

    def test_nick_unique_case_insensitively(self) -> None:
        """
        A nick differing only in case from a connected one is refused, and
        nobody hears of the attempt.
        """
        hub = make_hub()
        bob = signed_on(hub, "Bob")
        client = RecordingClient()
        error = self.assertRaises(ChatError, hub.connect, client, "bOB")
        self.assertEqual(error.code, "nick_taken")
        self.assertEqual(client.events, [])
        self.assertEqual(events(bob), [])
        self.assertEqual(list(hub.users), ["bob"])

    def test_nick_rules(self) -> None:
        """
        Nicks are 1-24 characters, a letter first, then letters, digits or
        C{_-[]\\^{}|}; anything else is C{bad_nick}.
        """
        hub = make_hub()
        for good in ["a", "Zed", "x" * 24, "a1_-[]\\^{}|"]:
            hub.connect(RecordingClient(), good)
        for bad in ["", "1abc", "_x", "x" * 25, "a b", "é", "a.b", "#room", "a\x1b"]:
            error = self.assertRaises(ChatError, hub.connect, RecordingClient(), bad)
            self.assertEqual(error.code, "bad_nick", bad)
        self.assertEqual(len(hub.users), 4)

    def test_disconnect_announced_once_per_room(self) -> None:
        """
        A user that leaves is shown leaving each of its rooms, with the
        reason; a member of two of those rooms sees one part per room.
        """
        hub = make_hub()
        alice, bob = signed_on(hub, "alice"), signed_on(hub, "bob")
        hub.join(alice, "#py")
        hub.join(bob, "#py")
        events(alice)
        hub.disconnect(bob, "gone fishing")
        self.assertEqual(
            events(alice),
            [
                Parted("#lobby", "bob", "gone fishing", True),
                Parted("#py", "bob", "gone fishing", True),
            ],
        )
        hub.disconnect(bob, "again")
        self.assertEqual(events(alice), [])
        self.assertNotIn("bob", hub.users)

    def test_nick_free_after_disconnect(self) -> None:
        """
        Once its holder has gone, a nick can be taken again.
        """
        hub = make_hub()
        hub.disconnect(signed_on(hub, "bob"))
        signed_on(hub, "BOB")
        self.assertEqual(list(hub.users), ["bob"])

    def test_closing_refuses_and_stays_quiet(self) -> None:
        """
        While the server shuts down, nobody new gets in and departures are
        not announced to the others, who are leaving too.
        """
        hub = make_hub()
        alice, bob = signed_on(hub, "alice"), signed_on(hub, "bob")
        events(alice)
        hub.close()
        error = self.assertRaises(ChatError, hub.connect, RecordingClient(), "carol")
        self.assertEqual(error.code, "shutting_down")
        hub.disconnect(bob)
        self.assertEqual(events(alice), [])


class NickTests(SynchronousTestCase):
    def test_change_seen_once_by_everyone_sharing_a_room(self) -> None:
        """
        A nick change reaches the user and each user sharing any room with
        it exactly once, and nobody else.
        """
        hub = make_hub()
        alice, bob = signed_on(hub, "alice"), signed_on(hub, "bob")
        hub.join(alice, "#a")
        hub.join(bob, "#a")
        hub.part(bob, "#lobby")
        loner = signed_on(hub, "loner")
        hub.part(loner, "#lobby")
        for user in (alice, bob, loner):
            events(user)
        hub.change_nick(alice, "alicia")
        self.assertEqual(events(alice), [NickChanged("alice", "alicia")])
        self.assertEqual(events(bob), [NickChanged("alice", "alicia")])
        self.assertEqual(events(loner), [])
        self.assertIn("alicia", hub.users)
        self.assertNotIn("alice", hub.users)

    def test_change_to_taken_nick(self) -> None:
        """
        Taking another user's nick (in any case) is refused; nothing changes.
        """
        hub = make_hub()
        alice, bob = signed_on(hub, "alice"), signed_on(hub, "bob")
        events(alice)
        error = self.assertRaises(ChatError, hub.change_nick, alice, "BOB")
        self.assertEqual(error.code, "nick_taken")
        self.assertEqual(alice.nick, "alice")
        self.assertEqual((events(alice), events(bob)), ([], []))

    def test_change_case_of_own_nick(self) -> None:
        """
        A user may change the case of its own nick.
        """
        hub = make_hub()
        alice = signed_on(hub, "alice")
        hub.change_nick(alice, "Alice")
        self.assertEqual(events(alice), [NickChanged("alice", "Alice")])
        self.assertIs(hub.users["alice"], alice)

    def test_change_to_bad_nick(self) -> None:
        """
        An invalid new nick is refused with C{bad_nick}.
        """
        hub = make_hub()
        alice = signed_on(hub, "alice")
        error = self.assertRaises(ChatError, hub.change_nick, alice, "9lives")
        self.assertEqual(error.code, "bad_nick")
        self.assertEqual(alice.nick, "alice")


class RoomTests(SynchronousTestCase):
    def test_join_order(self) -> None:
        """
        The joiner gets its own join, then the member list, then the topic;
        the other members get only the join.
        """
        hub = make_hub()
        alice, bob = signed_on(hub, "alice"), signed_on(hub, "bob")
        hub.join(alice, "#py")
        hub.topic(alice, "#py", "snakes")
        events(alice)
        hub.join(bob, "#PY")
        self.assertEqual(
            events(bob),
            [
                Joined("#py", "bob"),
                UserList("#py", ("alice", "bob"), ("alice",)),
                Topic("#py", "snakes", "alice", 0.0),
            ],
        )
        self.assertEqual(events(alice), [Joined("#py", "bob")])

    def test_join_twice(self) -> None:
        """
        Joining a room one is already in is refused.
        """
        hub = make_hub()
        alice = signed_on(hub, "alice")
        error = self.assertRaises(ChatError, hub.join, alice, "#LOBBY")
        self.assertEqual(error.code, "already_joined")
        self.assertEqual(events(alice), [])

    def test_room_rules(self) -> None:
        """
        Room names are C{#} and 1-32 letters, digits, C{_} or C{-}.
        """
        hub = make_hub(max_rooms_per_user=100)
        alice = signed_on(hub, "alice")
        for good in ["#a", "#" + "x" * 32, "#A-b_9"]:
            hub.join(alice, good)
        for bad in ["lobby", "#", "#" + "x" * 33, "#a b", "#é", "##", "#a.b"]:
            error = self.assertRaises(ChatError, hub.join, alice, bad)
            self.assertEqual(error.code, "bad_room", bad)

    def test_room_limit_per_user(self) -> None:
        """
        A user cannot be in more rooms than the hub allows.
        """
        hub = make_hub(max_rooms_per_user=2)
        alice = signed_on(hub, "alice")
        hub.join(alice, "#two")
        error = self.assertRaises(ChatError, hub.join, alice, "#three")
        self.assertEqual(error.code, "too_many_rooms")
        self.assertNotIn("#three", hub.rooms)

    def test_part(self) -> None:
        """
        Parting shows the part (with its reason) to the user and the other
        members; an emptied room disappears, but #lobby never does.
        """
        hub = make_hub()
        alice, bob = signed_on(hub, "alice"), signed_on(hub, "bob")
        hub.join(alice, "#py")
        events(alice)
        hub.part(alice, "#py", "bye")
        self.assertEqual(events(alice), [Parted("#py", "alice", "bye")])
        self.assertNotIn("#py", hub.rooms)
        hub.part(alice, "#lobby")
        self.assertEqual(events(bob), [Parted("#lobby", "alice", None)])
        hub.part(bob, "#lobby")
        self.assertIn("#lobby", hub.rooms)
        self.assertEqual(hub.rooms["#lobby"].members, {})

    def test_part_not_member(self) -> None:
        """
        Parting a room one is not in is C{not_in_room}.
        """
        hub = make_hub()
        alice = signed_on(hub, "alice")
        error = self.assertRaises(ChatError, hub.part, alice, "#py")
        self.assertEqual(error.code, "not_in_room")

    def test_who(self) -> None:
        """
        C{who} lists a room's members in join order, to the asker alone; an
        unknown room is C{no_such_room}.
        """
        hub = make_hub()
        alice, bob = signed_on(hub, "alice"), signed_on(hub, "bob")
        events(alice)
        hub.who(bob, "#lobby")
        self.assertEqual(events(bob), [UserList("#lobby", ("alice", "bob"))])
        self.assertEqual(events(alice), [])
        error = self.assertRaises(ChatError, hub.who, bob, "#nowhere")
        self.assertEqual(error.code, "no_such_room")

    def test_list_rooms(self) -> None:
        """
        The room list names every room, its member count and topic.
        """
        hub = make_hub()
        alice, bob = signed_on(hub, "alice"), signed_on(hub, "bob")
        hub.join(bob, "#py")
        hub.topic(bob, "#py", "snakes")
        events(alice)
        hub.list_rooms(alice)
        self.assertEqual(
            events(alice),
            [RoomList((RoomInfo("#lobby", 2, ""), RoomInfo("#py", 1, "snakes")))],
        )

    def test_topic(self) -> None:
        """
        Any member may set a topic, which every member sees with its setter;
        anyone may ask for it; an empty text clears it.
        """
        hub = make_hub()
        alice, bob = signed_on(hub, "alice"), signed_on(hub, "bob")
        events(alice)
        hub.topic(alice, "#lobby", " welcome all ")
        change = TopicChanged("#lobby", "welcome all", "alice", 0.0)
        self.assertEqual((events(alice), events(bob)), ([change], [change]))
        hub.part(bob, "#lobby")
        events(alice)
        events(bob)
        hub.topic(bob, "#lobby")
        self.assertEqual(events(bob), [Topic("#lobby", "welcome all", "alice", 0.0)])
        error = self.assertRaises(ChatError, hub.topic, bob, "#lobby", "mine")
        self.assertEqual(error.code, "not_in_room")
        hub.topic(alice, "#lobby", "")
        self.assertEqual(events(alice), [TopicChanged("#lobby", "", "alice", 0.0)])
        self.assertEqual(hub.rooms["#lobby"].topic, "")

    def test_topic_too_long(self) -> None:
        """
        An over-long topic is refused and the old one stays.
        """
        hub = make_hub()
        alice = signed_on(hub, "alice")
        hub.topic(alice, "#lobby", "old")
        error = self.assertRaises(ChatError, hub.topic, alice, "#lobby", "x" * 391)
        self.assertEqual(error.code, "text_too_long")
        self.assertEqual(hub.rooms["#lobby"].topic, "old")


class TalkTests(SynchronousTestCase):
    def test_say_reaches_every_member_once(self) -> None:
        """
        A message reaches each member, sender included, once, stamped with
        the clock's time and an increasing id; non-members get nothing.
        """
        clock = Clock()
        clock.advance(1700000000.5)
        hub = make_hub(clock)
        alice, bob, carol = (signed_on(hub, n) for n in ("alice", "bob", "carol"))
        hub.join(alice, "#py")
        hub.join(bob, "#py")
        for user in (alice, bob, carol):
            events(user)
        first = hub.say(alice, "#PY", "hello")
        second = hub.say(bob, "#py", "waves", action=True)
        expected = [
            Message("#py", "alice", "hello", 1700000000.5, first.id),
            Message("#py", "bob", "waves", 1700000000.5, second.id, action=True),
        ]
        self.assertEqual(events(alice), expected)
        self.assertEqual(events(bob), expected)
        self.assertEqual(events(carol), [])
        self.assertLess(first.id, second.id)

    def test_encoded_once_per_door(self) -> None:
        """
        Recipients sharing an encoder get the very same payload object: the
        event is encoded once per door, not once per recipient.
        """
        hub = make_hub()
        door_a, door_b = Boxing(), Boxing()
        users = [
            signed_on(hub, f"u{i}", RecordingClient(door_a if i % 2 else door_b)) for i in range(6)
        ]
        for user in users:
            events(user)
        door_a.encoded = door_b.encoded = 0
        hub.say(users[0], "#lobby", "hi")
        self.assertEqual((door_a.encoded, door_b.encoded), (1, 1))
        payloads = [events(u)[0] for u in users]
        self.assertEqual(payloads[0], payloads[1])
        self.assertIsNot(payloads[0], payloads[1])
        for i, payload in enumerate(payloads):
            self.assertIs(payload, payloads[i % 2])

    def test_failing_recipient_isolated(self) -> None:
        """
        A recipient whose delivery fails does not stop delivery to the
        others, and the sender sees no error.
        """
        hub = make_hub()
        alice = signed_on(hub, "alice")
        hub.connect(BrokenClient(), "broken")
        bob = signed_on(hub, "bob")
        events(alice)
        self.flushLoggedErrors(ConnectionError)
        hub.say(alice, "#lobby", "still here")
        self.assertEqual([e.text for e in events(alice)], ["still here"])
        self.assertEqual([e.text for e in events(bob)], ["still here"])
        self.assertEqual(len(self.flushLoggedErrors(ConnectionError)), 1)

    def test_say_needs_membership(self) -> None:
        """
        Saying something in a room one is not in is refused, unheard.
        """
        hub = make_hub()
        alice, bob = signed_on(hub, "alice"), signed_on(hub, "bob")
        hub.join(bob, "#py")
        events(bob)
        error = self.assertRaises(ChatError, hub.say, alice, "#py", "psst")
        self.assertEqual(error.code, "not_in_room")
        self.assertEqual(events(bob), [])

    def test_say_text_rules(self) -> None:
        """
        Empty, blank and over-long messages are refused.
        """
        hub = make_hub()
        alice = signed_on(hub, "alice")
        for text, code in [("", "empty_text"), ("  ", "empty_text"), ("x" * 2001, "text_too_long")]:
            error = self.assertRaises(ChatError, hub.say, alice, "#lobby", text)
            self.assertEqual(error.code, code)
        hub.say(alice, "#lobby", "x" * 2000)

    def test_private(self) -> None:
        """
        A private message goes to its recipient, whatever the case of the
        nick given, and is echoed to its sender.
        """
        hub = make_hub()
        alice, bob, carol = (signed_on(hub, n) for n in ("alice", "bob", "carol"))
        events(alice)
        events(bob)
        hub.private(alice, "BOB", "psst")
        self.assertEqual(events(bob), [PrivateMessage("alice", "bob", "psst", 0.0, 1)])
        self.assertEqual(events(alice), [PrivateEcho("alice", "bob", "psst", 0.0, 1)])
        self.assertEqual(events(carol), [])

    def test_private_unknown_nick(self) -> None:
        """
        Messaging a nick nobody has is C{no_such_nick}.
        """
        hub = make_hub()
        alice = signed_on(hub, "alice")
        error = self.assertRaises(ChatError, hub.private, alice, "ghost", "boo")
        self.assertEqual(error.code, "no_such_nick")
        self.assertEqual(events(alice), [])


class HistoryTests(SynchronousTestCase):
    def test_newest_page_oldest_first(self) -> None:
        """
        History returns the newest N messages, oldest first, and pages back
        with C{before}.
        """
        hub = make_hub()
        alice = signed_on(hub, "alice")
        said = [hub.say(alice, "#lobby", str(n)) for n in range(10)]
        events(alice)
        hub.history(alice, "#lobby", 3)
        self.assertEqual(events(alice), [HistoryPage("#lobby", tuple(said[7:]), more=True)])
        hub.history(alice, "#lobby", 3, before=said[7].id)
        self.assertEqual(events(alice), [HistoryPage("#lobby", tuple(said[4:7]), more=True)])
        hub.history(alice, "#lobby", 5, before=said[3].id)
        self.assertEqual(events(alice), [HistoryPage("#lobby", tuple(said[:3]), more=False)])

    def test_no_more_when_the_page_takes_the_last(self) -> None:
        """
        A page that ends exactly at the oldest message says there is no
        more, so a client does not ask for an empty page.
        """
        hub = make_hub()
        alice = signed_on(hub, "alice")
        said = [hub.say(alice, "#lobby", str(n)) for n in range(6)]
        events(alice)
        hub.history(alice, "#lobby", 3, before=said[3].id)
        self.assertEqual(events(alice), [HistoryPage("#lobby", tuple(said[:3]), more=False)])
        hub.history(alice, "#lobby", 6)
        self.assertEqual(events(alice), [HistoryPage("#lobby", tuple(said), more=False)])

    def test_default_and_maximum(self) -> None:
        """
        Without a limit the hub's default page size applies; a larger limit
        is capped; a non-positive one is refused.
        """
        hub = make_hub(history_page=2, max_history_page=4)
        alice = signed_on(hub, "alice")
        said = [hub.say(alice, "#lobby", str(n)) for n in range(6)]
        events(alice)
        hub.history(alice, "#lobby")
        self.assertEqual(events(alice)[0].messages, tuple(said[4:]))
        hub.history(alice, "#lobby", 100)
        self.assertEqual(events(alice)[0].messages, tuple(said[2:]))
        error = self.assertRaises(ChatError, hub.history, alice, "#lobby", 0)
        self.assertEqual(error.code, "bad_request")

    def test_ring_is_bounded(self) -> None:
        """
        The memory store keeps only the configured number of messages.
        """
        hub = make_hub(store=MemoryStore(per_room=5))
        alice = signed_on(hub, "alice")
        said = [hub.say(alice, "#lobby", str(n)) for n in range(8)]
        events(alice)
        hub.history(alice, "#lobby", 50)
        self.assertEqual(events(alice)[0].messages, tuple(said[3:]))

    def test_needs_membership(self) -> None:
        """
        Only members may read a room's history.
        """
        hub = make_hub()
        alice = signed_on(hub, "alice")
        error = self.assertRaises(ChatError, hub.history, alice, "#secret")
        self.assertEqual(error.code, "not_in_room")

    def test_store_failure(self) -> None:
        """
        A failing store gives the asker an error, logged, and nothing else.
        """

        class BrokenStore(MemoryStore):
            def fetch(self, room: str, limit: int, before: int | None):  # type: ignore[no-untyped-def]
                return fail(OSError("disk on fire"))

        hub = make_hub(store=BrokenStore(), history_on_join=0)
        alice = signed_on(hub, "alice")
        hub.history(alice, "#lobby")
        self.assertEqual(events(alice), [Error("history_unavailable", "History is unavailable")])
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)

    def test_store_busy(self) -> None:
        """
        A store refusing reads in a reconnect storm (it warns once a minute)
        gives the asker an error that says to retry, and logs nothing per
        read.
        """

        class BusyStore(MemoryStore):
            def fetch(self, room: str, limit: int, before: int | None):  # type: ignore[no-untyped-def]
                return fail(StoreBusy("Too many history reads are waiting"))

        hub = make_hub(store=BusyStore(), history_on_join=0)
        alice = signed_on(hub, "alice")
        hub.history(alice, "#lobby")
        busy = Error("history_unavailable", "History is busy; try again in a moment")
        self.assertEqual(events(alice), [busy])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_sent_on_join(self) -> None:
        """
        A joiner gets the room's newest messages after its join, member list
        and topic; nothing when there are none.
        """
        hub = make_hub(history_on_join=2)
        alice, bob = signed_on(hub, "alice"), signed_on(hub, "bob")
        hub.join(alice, "#py")
        said = [hub.say(alice, "#py", str(n)) for n in range(3)]
        hub.join(bob, "#py")
        self.assertEqual(
            events(bob),
            [
                Joined("#py", "bob"),
                UserList("#py", ("alice", "bob"), ("alice",)),
                HistoryPage("#py", tuple(said[1:]), more=True),
            ],
        )
        carol = RecordingClient()
        hub.connect(carol, "carol")
        self.assertNotIn(HistoryPage, [type(e) for e in carol.events])

    def test_private_history(self) -> None:
        """
        Private messages are kept and can be fetched by either party, newest
        page first; a later holder of a guest's nickname does not see what
        was said to the earlier one.
        """
        hub = make_hub()
        alice, bob = signed_on(hub, "alice"), signed_on(hub, "bob")
        hub.private(alice, "bob", "one")
        hub.private(bob, "alice", "two")
        events(alice)
        events(bob)
        hub.private_history(alice, "BOB")
        page = events(alice)[0]
        self.assertIsInstance(page, PrivateHistory)
        self.assertEqual([m.text for m in page.messages], ["one", "two"])
        self.assertEqual((page.nick, page.other, page.more), ("alice", "BOB", False))
        hub.private_history(bob, "alice", 1)
        page = events(bob)[0]
        self.assertEqual(([m.text for m in page.messages], page.more), (["two"], True))
        hub.disconnect(bob)
        impostor = signed_on(hub, "bob")
        hub.private_history(impostor, "alice")
        self.assertEqual(events(impostor)[0].messages, ())
