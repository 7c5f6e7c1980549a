"""
Presence in big rooms: joins and parts told once a second as one event,
member lists in pages; small rooms as before.  The hub alone, then each
door's rendering and the line door's C{/who PAGE}, then a cluster.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatd.doors.line import LineDoor
from chatd.doors.websocket import WebSocketDoor
from chatd.hub import Hub, User
from chatd.hub.presence import PRESENCE_INTERVAL
from chatd.limits import Limits
from chatd.model import (
    MEMBERS_PAGE,
    PRESENCE_NAMES,
    Joined,
    Kicked,
    OpChanged,
    Parted,
    Presence,
    Topic,
    UserList,
)
from chatd.requests import Members, Say
from chatd.testing import LinePeer, RecordingClient, WebSocketPeer, events, make_hub, signed_on
from tests.test_cluster import Cluster, taken

BIG = 5


def fill(hub: Hub, count: int, prefix: str = "u") -> list[User]:
    """
    Sign on C{count} users (all in the lobby) and forget what they saw.
    """
    users = [signed_on(hub, f"{prefix}{i}") for i in range(count)]
    hub.presence.flush()
    for user in hub.users.values():
        if isinstance(user.client, RecordingClient):
            events(user)
    return users


class SmallRoomTests(SynchronousTestCase):
    """
    Up to C{big_room} members, every join and part is told at once.
    """

    def test_join_told_at_once(self) -> None:
        hub = make_hub(big_room=BIG)
        (first,) = fill(hub, 1)
        hub.rooms["#lobby"].topic = "hi"
        second = signed_on(hub, "second")
        self.assertEqual(events(first), [Joined("#lobby", "second")])
        hub.part(second, "#lobby")
        self.assertEqual(events(first), [Parted("#lobby", "second")])

    def test_joiner_sees_everyone(self) -> None:
        hub = make_hub(big_room=BIG)
        fill(hub, BIG - 1)
        last = signed_on(hub, "last")
        hub.part(last, "#lobby")
        events(last)
        hub.join(last, "#lobby")
        self.assertEqual(
            events(last)[:2],
            [
                Joined("#lobby", "last"),
                UserList("#lobby", (*(f"u{i}" for i in range(BIG - 1)), "last")),
            ],
        )

    def test_zero_makes_no_room_big(self) -> None:
        hub = make_hub(big_room=0)
        (first, *_) = fill(hub, 30)
        signed_on(hub, "late")
        self.assertEqual(events(first), [Joined("#lobby", "late")])


class BigRoomTests(SynchronousTestCase):
    """
    Above C{big_room} members, the others learn of joins and parts from one
    L{Presence} a second; joiners get the first page of members.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.hub = make_hub(self.clock, big_room=BIG)
        self.users = fill(self.hub, BIG + 1)
        self.first = self.users[0]

    def test_join_waits_for_presence(self) -> None:
        """
        The joiner gets its join, a page of members with the count, then
        the topic; the others nothing until the next presence event, which
        names it.
        """
        self.hub.rooms["#lobby"].topic = "busy"
        late = signed_on(self.hub, "late")
        self.assertEqual(events(self.first), [])
        self.clock.advance(PRESENCE_INTERVAL)
        self.assertEqual(events(self.first), [Presence("#lobby", 1, 0, BIG + 2, ("late",), ())])
        self.assertEqual(events(late), [Presence("#lobby", 1, 0, BIG + 2, ("late",), ())])
        self.hub.part(late, "#lobby")
        events(late)
        self.hub.join(late, "#lobby")
        joined = events(late)
        self.assertEqual(joined[0], Joined("#lobby", "late"))
        page = joined[1]
        self.assertIsInstance(page, UserList)
        self.assertEqual((page.count, page.page, page.pages), (BIG + 2, 1, 1))
        self.assertEqual(joined[2], Topic("#lobby", "busy", None, 0.0))

    def test_one_event_for_many(self) -> None:
        """
        Changes within an interval come as one event; past L{PRESENCE_NAMES}
        nicks, as counts only.
        """
        fill(self.hub, PRESENCE_NAMES, prefix="new")
        self.clock.advance(PRESENCE_INTERVAL)
        self.assertEqual(events(self.first), [])  # fill flushed them: a fresh start
        for user in list(self.hub.users.values())[-PRESENCE_NAMES:]:
            self.hub.disconnect(user)
        signed_on(self.hub, "one")
        self.clock.advance(PRESENCE_INTERVAL)
        count = BIG + 2
        self.assertEqual(
            events(self.first), [Presence("#lobby", 1, PRESENCE_NAMES, count, None, None)]
        )

    def test_net_change_only(self) -> None:
        """
        Who came and went (or went and came back) between two events is in
        neither list; with no net change there is no event.
        """
        brief = signed_on(self.hub, "brief")
        self.hub.disconnect(brief)
        self.hub.disconnect(self.users[1])
        signed_on(self.hub, "u1")
        self.clock.advance(PRESENCE_INTERVAL)
        self.assertEqual(events(self.first), [])

    def test_part_told_to_the_parting_at_once(self) -> None:
        leaving = self.users[-1]
        self.hub.part(leaving, "#lobby", "bye")
        self.assertEqual(events(leaving), [Parted("#lobby", leaving.nick, "bye")])
        self.assertEqual(events(self.first), [])
        self.clock.advance(PRESENCE_INTERVAL)
        # Now BIG members: no longer big, but this change was waiting.
        self.assertEqual(events(self.first), [Presence("#lobby", 0, 1, BIG, (), ("u5",))])
        self.assertEqual(events(leaving), [])
        self.hub.part(self.users[-2], "#lobby")
        self.assertEqual(events(self.first), [Parted("#lobby", "u4")])

    def test_shrinking_keeps_order(self) -> None:
        """
        A room that is no longer big still coalesces while changes wait, so
        that a per-event part cannot overtake a waiting join.
        """
        late = signed_on(self.hub, "late")
        self.hub.disconnect(self.users[-1])
        self.hub.disconnect(self.users[-2])
        self.assertFalse(self.hub.presence.is_big(self.hub.rooms["#lobby"]))
        self.hub.disconnect(late)
        self.assertEqual(events(self.first), [])
        self.clock.advance(PRESENCE_INTERVAL)
        self.assertEqual(events(self.first), [Presence("#lobby", 0, 2, BIG - 1, (), ("u5", "u4"))])

    def test_kick_is_told_at_once(self) -> None:
        """
        A kick is for everyone to see, at once; a join not yet told is then
        never told.
        """
        hub = self.hub
        hub.join(self.first, "#den")
        for user in self.users[1:]:
            hub.join(user, "#den")
        hub.presence.flush()
        late = signed_on(hub, "late")
        hub.join(late, "#den")
        for user in hub.users.values():
            events(user)
        hub.kick(self.first, "#den", "late")
        kicked = Kicked("#den", "late", self.first.nick)
        self.assertEqual(events(self.users[1]), [kicked])
        self.clock.advance(PRESENCE_INTERVAL)
        self.assertEqual(events(self.users[1]), [Presence("#lobby", 1, 0, BIG + 2, ("late",), ())])

    def test_op_change_without_member_lists(self) -> None:
        """
        An op change in a big room is the op event alone: not a list of
        every member to every member.
        """
        hub = self.hub
        hub.join(self.first, "#den")
        for user in self.users[1:]:
            hub.join(user, "#den")
        signed_on(hub, "late")
        hub.join(hub.users["late"], "#den")
        hub.presence.flush()
        for user in hub.users.values():
            events(user)
        hub.set_op(self.first, "#den", "u1")
        self.assertEqual(events(self.users[2]), [OpChanged("#den", "u1", "u0", True)])

    def test_who_and_members_pages(self) -> None:
        hub = make_hub(big_room=BIG)
        users = fill(hub, MEMBERS_PAGE + 3)
        asker = users[0]
        hub.who(asker, "#lobby")
        (first,) = events(asker)
        self.assertEqual(first.nicks, tuple(f"u{i}" for i in range(MEMBERS_PAGE)))
        self.assertEqual((first.count, first.page, first.pages), (MEMBERS_PAGE + 3, 1, 2))
        hub.apply(asker, Members(room="#lobby", page=2))
        (second,) = events(asker)
        self.assertEqual(
            second.nicks, tuple(f"u{i}" for i in range(MEMBERS_PAGE, MEMBERS_PAGE + 3))
        )
        hub.members(asker, "#lobby", 3)
        (past,) = events(asker)
        self.assertEqual((past.nicks, past.page, past.pages), ((), 3, 2))
        with self.assertRaises(Exception) as caught:
            hub.members(asker, "#lobby", 0)
        self.assertEqual(getattr(caught.exception, "code", None), "bad_request")

    def test_members_of_a_small_room(self) -> None:
        """
        A page of a small room is all of it, with the count.
        """
        hub = make_hub(big_room=BIG)
        (asker, *_) = fill(hub, 2)
        hub.members(asker, "#lobby", 1)
        self.assertEqual(events(asker), [UserList("#lobby", ("u0", "u1"), (), 2, 1, 1)])

    def test_shutdown_tells_nothing(self) -> None:
        signed_on(self.hub, "late")
        self.hub.close()
        for user in list(self.hub.users.values()):
            self.hub.disconnect(user)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(events(self.first), [])


class DoorTests(SynchronousTestCase):
    """
    How each door shows big rooms.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.hub = make_hub(self.clock, big_room=BIG)
        self.line = LineDoor(self.hub, self.clock, Limits(flood_rate=0))
        self.web = WebSocketDoor(self.hub, self.clock, Limits(flood_rate=0))

    def test_line(self) -> None:
        fill(self.hub, BIG)
        watcher = LinePeer(self.line)
        watcher.sign_on("watcher")
        self.clock.advance(PRESENCE_INTERVAL)
        watcher.lines()
        late = LinePeer(self.line)
        late.send("late")
        lines = late.lines()
        self.assertIn("*** late has joined #lobby", lines)
        self.assertIn(
            "*** Users in #lobby (7), page 1 of 1: u0, u1, u2, u3, u4, watcher, late", lines
        )
        self.clock.advance(PRESENCE_INTERVAL)
        self.assertEqual(watcher.lines(), ["*** 1 joined, 0 left #lobby (7 users): +late"])
        late.send("/quit")
        self.clock.advance(PRESENCE_INTERVAL)
        self.assertEqual(watcher.lines(), ["*** 0 joined, 1 left #lobby (6 users): -late"])
        fill(self.hub, MEMBERS_PAGE, prefix="v")
        watcher.lines()
        watcher.send("/who")
        (line,) = watcher.lines()
        self.assertTrue(line.startswith("*** Users in #lobby (106), page 1 of 2: u0, u1,"), line)
        self.assertTrue(line.endswith(", v93 (more: /who #lobby 2)"), line)
        watcher.send("/who #lobby 2")
        self.assertEqual(
            watcher.lines(),
            ["*** Users in #lobby (106), page 2 of 2: v94, v95, v96, v97, v98, v99"],
        )
        watcher.send("/who 3")
        self.assertEqual(watcher.lines(), ["*** Users in #lobby (106), page 3 of 2: -"])
        watcher.send("/who #lobby 0")
        self.assertEqual(
            watcher.lines(), ["!!! The page must be a whole number from 1 to 9223372036854775807"]
        )
        watcher.send("/who #lobby 99999999999999999999")
        (refused,) = watcher.lines()
        self.assertTrue(refused.startswith("!!! Usage: /who [#room] [PAGE]"), refused)

    def test_websocket(self) -> None:
        fill(self.hub, BIG)
        watcher = WebSocketPeer(self.web)
        watcher.sign_on("watcher")
        self.clock.advance(PRESENCE_INTERVAL)
        watcher.received()
        late = WebSocketPeer(self.web)
        late.send(type="hello", nick="late")
        frames = late.received()
        users = next(f for f in frames if f["type"] == "users")
        self.assertEqual((users["count"], users["page"], users["pages"]), (BIG + 2, 1, 1))
        self.assertNotIn("join", [f["type"] for f in watcher.received()])
        self.clock.advance(PRESENCE_INTERVAL)
        presence: dict[str, Any] = {
            "type": "presence",
            "room": "#lobby",
            "joins": 1,
            "parts": 0,
            "count": BIG + 2,
            "joined": ["late"],
            "left": [],
        }
        self.assertEqual(watcher.received(), [presence])
        fill(self.hub, PRESENCE_NAMES + 1, prefix="v")
        self.clock.advance(PRESENCE_INTERVAL)
        watcher.received()  # fill flushed it
        for nick in [f"v{i}" for i in range(PRESENCE_NAMES + 1)]:
            self.hub.disconnect(self.hub.users[nick])
        self.clock.advance(PRESENCE_INTERVAL)
        counts = {"type": "presence", "room": "#lobby", "joins": 0, "parts": 21, "count": 7}
        self.assertEqual(watcher.received(), [counts])
        watcher.send(type="members", room="#lobby", page=1)
        (page,) = watcher.received()
        self.assertEqual(page["nicks"], ["u0", "u1", "u2", "u3", "u4", "watcher", "late"])
        self.assertEqual((page["count"], page["page"], page["pages"]), (7, 1, 1))
        watcher.send(type="members", room="#lobby", page="2")
        (refused,) = watcher.received()
        self.assertEqual(refused["code"], "bad_request")
        watcher.send(type="who", room="#lobby")
        (small,) = watcher.received()
        self.assertIn("count", small)  # still big: 7 members


class ClusterTests(SynchronousTestCase):
    """
    Every node tells its own users of a big room's presence, once.
    """

    def test_presence_across_nodes(self) -> None:
        cluster = Cluster()
        a = cluster.node("a", big_room=2)
        b = cluster.node("b", big_room=2)
        alice = cluster.connect(a, "alice")
        bob = cluster.connect(b, "bob")
        carol = cluster.connect(a, "carol")
        cluster.pump()
        cluster.clock.advance(PRESENCE_INTERVAL)
        for user in (alice, bob, carol):
            taken(user)
        dave = cluster.connect(b, "dave")
        cluster.pump()
        self.assertEqual([e for e in taken(alice) if isinstance(e, Joined)], [])
        cluster.clock.advance(PRESENCE_INTERVAL)
        told = Presence("#lobby", 1, 0, 4, ("dave",), ())
        self.assertEqual(taken(alice), [told])
        self.assertEqual(taken(bob), [told])
        self.assertEqual(taken(dave), [told])
        a.submit(alice, Say(room="#lobby", text="hi"))
        cluster.pump()
        self.assertEqual(len(taken(dave)), 1)
