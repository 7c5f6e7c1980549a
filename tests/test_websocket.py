"""
The WebSocket door, frame by frame, on StringTransports.
"""

from __future__ import annotations

import json
import struct

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatd.doors.line import LineDoor
from chatd.doors.websocket import WebSocketDoor
from chatd.hub import Hub
from chatd.limits import Limits
from chatd.testing import BINARY, CLOSE, PING, PONG, LinePeer, WebSocketPeer


class WebSocketTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1700000000.25)
        self.hub = Hub(self.clock)
        self.door = WebSocketDoor(self.hub, self.clock, Limits(flood_rate=0))

    def peer(self, nick: str | None = None) -> WebSocketPeer:
        peer = WebSocketPeer(self.door)
        if nick is not None:
            peer.sign_on(nick)
        return peer

    def assertError(self, peer: WebSocketPeer, code: str) -> None:
        """
        C{peer} got exactly one error frame, with C{code}, and is still open.
        """
        frames = peer.received()
        self.assertEqual(len(frames), 1, frames)
        self.assertEqual(frames[0]["type"], "error")
        self.assertEqual(frames[0]["code"], code)
        self.assertIsInstance(frames[0]["message"], str)
        self.assertFalse(peer.transport.disconnecting)


class HelloTests(WebSocketTestCase):
    def test_hello(self) -> None:
        """
        C{hello} is answered by C{welcome}, then the user's join to #lobby
        and the lobby's member list.
        """
        peer = self.peer()
        peer.send(type="hello", nick="alice")
        self.assertEqual(
            peer.received(),
            [
                {"type": "welcome", "nick": "alice", "rooms": ["#lobby"]},
                {"type": "join", "room": "#lobby", "nick": "alice"},
                {"type": "users", "room": "#lobby", "nicks": ["alice"], "ops": [], "voiced": []},
            ],
        )

    def test_an_error_names_its_request(self) -> None:
        """
        An error answering a request says which request type it answers;
        one about the frame itself (not JSON) names none.
        """
        peer = self.peer("alice")
        peer.received()
        peer.send(type="say", room="#nowhere", text="hi")
        (frame,) = peer.received()
        self.assertEqual((frame["code"], frame["request"]), ("not_in_room", "say"))
        peer.send_raw(b"{")
        (frame,) = peer.received()
        self.assertEqual(frame["code"], "bad_json")
        self.assertNotIn("request", frame)

    def test_bad_then_good_hello(self) -> None:
        """
        A bad or taken nick gets an error and the client may say hello again.
        """
        self.peer("alice")
        peer = self.peer()
        peer.send(type="hello", nick="Alice")
        self.assertError(peer, "nick_taken")
        peer.send(type="hello", nick="no spaces")
        self.assertError(peer, "bad_nick")
        peer.send(type="hello", nick="bob")
        self.assertEqual(peer.received()[0]["type"], "welcome")

    def test_nick_unique_across_doors(self) -> None:
        """
        A nick held on the line door is taken on the WebSocket door too.
        """
        line = LinePeer(LineDoor(self.hub, self.clock))
        line.sign_on("carol")
        peer = self.peer()
        peer.send(type="hello", nick="CAROL")
        self.assertError(peer, "nick_taken")

    def test_requests_before_hello(self) -> None:
        """
        Any request but C{hello} before a nick is chosen is refused.
        """
        peer = self.peer()
        peer.send(type="say", room="#lobby", text="hi")
        self.assertError(peer, "hello_first")

    def test_second_hello(self) -> None:
        """
        A second C{hello} is refused; the nick stays.
        """
        peer = self.peer("alice")
        peer.send(type="hello", nick="other")
        self.assertError(peer, "already_welcomed")
        self.assertIn("alice", self.hub.users)


class BadInputTests(WebSocketTestCase):
    def test_each_refused_and_connection_stays(self) -> None:
        """
        Non-JSON, invalid UTF-8, non-objects, unknown types, missing and
        mistyped fields each get an error frame; the
        connection stays up and still works.
        """
        peer = self.peer("alice")
        cases = [
            (b"not json", "bad_json"),
            (b"[" * 60000, "bad_json"),
            (b"\xff\xfe{}", "bad_utf8"),
            (b"[1, 2]", "bad_request"),
            (b'{"no": "type"}', "bad_request"),
            (b'{"type": 7}', "bad_request"),
            (b'{"type": "dance"}', "unknown_type"),
            (b'{"type": "say", "room": "#lobby"}', "bad_request"),
            (b'{"type": "say", "room": 5, "text": "x"}', "bad_request"),
            (b'{"type": "say", "room": "#lobby", "text": ["x"]}', "bad_request"),
            (b'{"type": "history", "room": "#lobby", "limit": true}', "bad_request"),
            (b'{"type": "history", "room": "#lobby", "limit": "5"}', "bad_request"),
            (b'{"type": "say", "room": "#lobby", "text": "\\ud800"}', "bad_request"),
            (b'{"type": "say", "room": "#elsewhere", "text": "x"}', "not_in_room"),
            (b'{"type": "say", "room": "lobby", "text": "x"}', "bad_room"),
            (b'{"type": "msg", "to": "ghost", "text": "x"}', "no_such_nick"),
            (b'{"type": "say", "room": "#lobby", "text": ""}', "empty_text"),
        ]
        for payload, code in cases:
            peer.send_raw(payload)
            self.assertError(peer, code)
        peer.send(type="say", room="#lobby", text="still here")
        self.assertEqual(peer.received()[0]["text"], "still here")

    def test_binary_frame_closed_1003(self) -> None:
        """
        A binary frame gets close code 1003 (unsupported data).
        """
        peer = self.peer("alice")
        peer.send_raw(b"\x00\x01", BINARY)
        ((opcode, payload),) = peer.frames()
        self.assertEqual(opcode, CLOSE)
        self.assertEqual(struct.unpack("!H", payload[:2])[0], 1003)

    def test_oversized_message_closed_1009(self) -> None:
        """
        A message over the size limit gets close code 1009 (too big), not a
        dropped connection.
        """
        peer = self.peer("alice")
        peer.send_raw(b'"' + b"x" * (64 * 1024) + b'"')
        (opcode, payload), *_ = peer.frames()
        self.assertEqual(opcode, CLOSE)
        self.assertEqual(struct.unpack("!H", payload[:2])[0], 1009)


class ChatTests(WebSocketTestCase):
    def test_say_and_me(self) -> None:
        """
        C{say} and C{me} reach every member, sender included, as C{message}
        frames with the time and increasing ids.
        """
        alice, bob = self.peer("alice"), self.peer("bob")
        alice.received()
        alice.send(type="say", room="#LOBBY", text="hello ✓")
        bob.send(type="me", room="#lobby", text="waves")
        frames = alice.received()
        self.assertEqual(frames, bob.received())
        first, second = frames
        self.assertEqual(
            first,
            {
                "type": "message",
                "room": "#lobby",
                "from": "alice",
                "text": "hello ✓",
                "ts": 1700000000.25,
                "id": first["id"],
            },
        )
        self.assertEqual(second["action"], True)
        self.assertGreater(second["id"], first["id"])

    def test_private(self) -> None:
        """
        C{msg} sends a C{private} frame to both ends.
        """
        alice, bob = self.peer("alice"), self.peer("bob")
        alice.received()
        alice.send(type="msg", to="bob", text="psst")
        expected = {
            "type": "private",
            "from": "alice",
            "to": "bob",
            "text": "psst",
            "ts": 1700000000.25,
            "id": 1,
        }
        self.assertEqual(bob.received(), [expected])
        self.assertEqual(alice.received(), [expected])

    def test_rooms(self) -> None:
        """
        C{join}, C{part} (with reason), C{who}, C{rooms} and C{topic} map
        onto the contract's frames.
        """
        alice, bob = self.peer("alice"), self.peer("bob")
        alice.send(type="join", room="#py")
        alice.send(type="topic", room="#py", text="snakes")
        alice.received()
        bob.send(type="join", room="#py")
        self.assertEqual(
            bob.received(),
            [
                {"type": "join", "room": "#py", "nick": "bob"},
                {
                    "type": "users",
                    "room": "#py",
                    "nicks": ["alice", "bob"],
                    "ops": ["alice"],
                    "voiced": [],
                },
                {"type": "topic", "room": "#py", "topic": "snakes", "by": "alice"},
            ],
        )
        self.assertEqual(alice.received(), [{"type": "join", "room": "#py", "nick": "bob"}])
        bob.send(type="who", room="#lobby")
        self.assertEqual(
            bob.received(),
            [
                {
                    "type": "users",
                    "room": "#lobby",
                    "nicks": ["alice", "bob"],
                    "ops": [],
                    "voiced": [],
                }
            ],
        )
        bob.send(type="rooms")
        self.assertEqual(
            bob.received(),
            [
                {
                    "type": "rooms",
                    "rooms": [
                        {"room": "#lobby", "users": 2, "topic": ""},
                        {"room": "#py", "users": 2, "topic": "snakes"},
                    ],
                }
            ],
        )
        bob.send(type="topic", room="#py")
        self.assertEqual(
            bob.received(), [{"type": "topic", "room": "#py", "topic": "snakes", "by": "alice"}]
        )
        bob.send(type="part", room="#py", reason="bored")
        part = {"type": "part", "room": "#py", "nick": "bob", "reason": "bored"}
        self.assertEqual((bob.received(), alice.received()), ([part], [part]))
        alice.send(type="part", room="#py")
        self.assertEqual(alice.received(), [{"type": "part", "room": "#py", "nick": "alice"}])

    def test_nick(self) -> None:
        """
        C{nick} renames the user, shown to it and its room-mates.
        """
        alice, bob = self.peer("alice"), self.peer("bob")
        alice.received()
        bob.send(type="nick", nick="robert")
        change = {"type": "nick", "old": "bob", "new": "robert"}
        self.assertEqual((alice.received(), bob.received()), ([change], [change]))

    def test_history(self) -> None:
        """
        C{history} returns the newest C{limit} messages oldest first, and
        pages back with C{before}.
        """
        alice = self.peer("alice")
        for n in range(5):
            alice.send(type="say", room="#lobby", text=str(n))
        ids = [frame["id"] for frame in alice.received()]
        alice.send(type="history", room="#lobby", limit=2)
        (page,) = alice.received()
        self.assertEqual(page["type"], "history")
        self.assertEqual(page["room"], "#lobby")
        self.assertEqual([m["text"] for m in page["messages"]], ["3", "4"])
        self.assertEqual(page["messages"][0]["type"], "message")
        alice.send(type="history", room="#lobby", limit=2, before=ids[3])
        (page,) = alice.received()
        self.assertEqual([m["id"] for m in page["messages"]], ids[1:3])

    def test_cross_door(self) -> None:
        """
        A line user and a WebSocket user in one room see each other's
        messages, each in its own door's form.
        """
        line = LinePeer(LineDoor(self.hub, self.clock))
        line.sign_on("carol")
        alice = self.peer("alice")
        line.received()
        line.send("hi from telnet")
        alice.send(type="say", room="#lobby", text="hi from the web")
        self.assertEqual(
            line.lines(), ["[#lobby] <carol> hi from telnet", "[#lobby] <alice> hi from the web"]
        )
        self.assertEqual(
            [(f["from"], f["text"]) for f in alice.received()],
            [("carol", "hi from telnet"), ("alice", "hi from the web")],
        )

    def test_json_is_compact_utf8(self) -> None:
        """
        Frames are compact JSON in UTF-8, not ASCII escapes.
        """
        alice = self.peer("alice")
        alice.send(type="say", room="#lobby", text="héllo")
        ((_, payload),) = alice.frames()
        self.assertIn("héllo".encode(), payload)
        self.assertNotIn(b": ", payload)
        self.assertEqual(json.loads(payload)["text"], "héllo")


class ConnectionTests(WebSocketTestCase):
    def test_close_is_a_quit(self) -> None:
        """
        A WebSocket that closes leaves the hub, seen by the others.
        """
        alice, bob = self.peer("alice"), self.peer("bob")
        alice.received()
        bob.disconnect()
        self.assertEqual(
            alice.received(),
            [{"type": "part", "room": "#lobby", "nick": "bob", "reason": "connection closed"}],
        )
        self.assertNotIn("bob", self.hub.users)
        self.assertEqual(list(self.door.connections), [alice.protocol])

    def test_shutdown(self) -> None:
        """
        On shutdown every connection gets a C{server} frame, then a close
        with code 1001 (going away).
        """
        alice, anonymous = self.peer("alice"), self.peer()
        done = self.door.shutdown()
        for peer in (alice, anonymous):
            (_, notice), (close, payload) = peer.frames()
            self.assertEqual(json.loads(notice), {"type": "server", "text": "server shutting down"})
            self.assertEqual(close, CLOSE)
            self.assertEqual(struct.unpack("!H", payload[:2])[0], 1001)
            peer.disconnect()
        self.successResultOf(done)

    def test_keepalive_pings(self) -> None:
        """
        An idle connection is pinged every 25 s and dropped if no pong comes
        within 10 s.
        """
        alice = self.peer("alice")
        self.clock.advance(25)
        ((opcode, _),) = alice.frames()
        self.assertEqual(opcode, PING)
        self.assertFalse(alice.transport.disconnecting)
        self.clock.advance(10)
        self.assertTrue(alice.transport.disconnecting)

    def test_answered_pings_keep_the_connection(self) -> None:
        """
        A peer that answers each ping is pinged again after the next 25 s of
        silence, and kept.
        """
        alice = self.peer("alice")
        for _ in range(5):
            self.clock.advance(25)
            ((opcode, payload),) = alice.frames()
            self.assertEqual(opcode, PING)
            self.clock.advance(5)
            alice.send_raw(payload, PONG)
        self.clock.advance(20)
        self.assertEqual(alice.frames(), [])
        self.assertFalse(alice.transport.disconnecting)

    def test_talking_peer_not_pinged(self) -> None:
        """
        Whatever a peer sends shows it is there: one that talks more often
        than every 25 s is never pinged.
        """
        alice = self.peer("alice")
        for _ in range(10):
            self.clock.advance(20)
            alice.send(type="say", room="#lobby", text="still here")
        self.assertNotIn(PING, [opcode for opcode, _ in alice.frames()])
        self.assertFalse(alice.transport.disconnecting)


class MemoryTests(WebSocketTestCase):
    def test_no_timer_per_connection(self) -> None:
        """
        Connections have no timers of their own: however many are open, the
        door's sweep is its only one, and it stops with the last connection.
        """
        before = len(self.clock.getDelayedCalls())
        peers = [self.peer(f"user{n}") for n in range(20)]
        self.assertEqual(len(self.clock.getDelayedCalls()), before + 1)
        for peer in peers:
            peer.disconnect()
        self.assertEqual(len(self.clock.getDelayedCalls()), before)

    def test_handshake_forgotten(self) -> None:
        """
        An open connection keeps nothing of its opening handshake, and none
        of Autobahn's state that an idle connection has by default, after
        the handshake and after each message.
        """
        alice = self.peer("alice")
        dropped = {"http_headers", "http_request_data", "http_response_data", "send_queue"}
        dropped |= {"trafficStats", "is_open", "current_frame", "wasClean", "autoPingInterval"}
        self.assertEqual(dropped & vars(alice.protocol).keys(), set())
        alice.send(type="say", room="#lobby", text="hello")
        self.assertEqual(dropped & vars(alice.protocol).keys(), set())
        self.assertEqual(alice.received()[0]["text"], "hello")
