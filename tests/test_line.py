"""
The line door, byte for byte, on StringTransports.
"""

from __future__ import annotations

import time

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatd.doors.line import LineDoor
from chatd.doors.line.commands import HELP
from chatd.doors.line.rendering import safe
from chatd.doors.websocket import WebSocketDoor
from chatd.hub import Hub
from chatd.limits import Limits
from chatd.testing import LinePeer, WebSocketPeer


class LineDoorTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.hub = Hub(self.clock)
        self.door = LineDoor(self.hub, self.clock, Limits(flood_rate=0))

    def peer(self, nick: str | None = None) -> LinePeer:
        """
        A new connection, signed on as C{nick} if given.
        """
        peer = LinePeer(self.door)
        if nick is not None:
            peer.sign_on(nick)
        return peer


class SignOnTests(LineDoorTestCase):
    def test_welcome_and_prompt(self) -> None:
        """
        A new connection gets a welcome text, then a line ending in
        C{nickname:}, each ended by CR LF.
        """
        peer = self.peer()
        lines = peer.lines()
        self.assertIn("Welcome to chatd!", lines[0])
        self.assertTrue(lines[-1].endswith("nickname:"))

    def test_accepted_nick(self) -> None:
        """
        The first line is the nickname; the user is welcomed into #lobby.
        """
        peer = self.peer()
        peer.received()
        peer.send("alice")
        self.assertEqual(
            peer.lines(),
            [
                "*** Welcome, alice! You are in #lobby. Type /help for commands.",
                "*** alice has joined #lobby",
                "*** Users in #lobby (1): alice",
            ],
        )
        self.assertIn("alice", self.hub.users)

    def test_bad_and_taken_nick(self) -> None:
        """
        A bad or taken nick gets an error line and a new prompt; the next
        line is tried as a nick again.
        """
        self.peer("alice")
        peer = self.peer()
        peer.received()
        peer.send("ALICE")
        error, prompt = peer.lines()
        self.assertEqual(error, "!!! The nickname ALICE is already in use")
        self.assertTrue(prompt.endswith("nickname:"))
        peer.send("2bad")
        error, prompt = peer.lines()
        self.assertTrue(error.startswith("!!! Invalid nickname '2bad'"))
        self.assertTrue(prompt.endswith("nickname:"))
        peer.send("bob")
        self.assertIn("*** bob has joined #lobby", peer.lines())

    def test_quit_at_prompt(self) -> None:
        """
        C{/quit} at the prompt closes the connection politely.
        """
        peer = self.peer()
        peer.received()
        peer.send("/quit")
        self.assertEqual(peer.lines(), ["*** Bye!"])
        self.assertTrue(peer.transport.disconnecting)

    def test_lf_crlf_and_split_packets(self) -> None:
        """
        Lines may end in LF or CR LF and arrive in any number of pieces.
        """
        alice, bob = self.peer("alice"), self.peer("bob")
        alice.received()
        for piece in [b"o", b"ne\n", b"two\r", b"\nthr", b"ee\r\nfour\n"]:
            bob.send(piece)
        self.assertEqual(
            alice.lines(),
            [
                "[#lobby] <bob> one",
                "[#lobby] <bob> two",
                "[#lobby] <bob> three",
                "[#lobby] <bob> four",
            ],
        )


class BadInputTests(LineDoorTestCase):
    def test_invalid_utf8(self) -> None:
        """
        A line that is not UTF-8 gets an error; the connection stays up.
        """
        alice = self.peer("alice")
        alice.send(b"caf\xe9\r\n")
        self.assertEqual(alice.lines(), ["!!! That line is not valid UTF-8; ignored"])
        alice.send("café")
        self.assertEqual(alice.lines(), ["[#lobby] <alice> café"])

    def test_long_line_discarded(self) -> None:
        """
        A line over the limit is refused once and discarded as it arrives,
        however long it grows; the next line works.
        """
        alice, bob = self.peer("alice"), self.peer("bob")
        alice.received()
        for _ in range(10):
            bob.send(b"x" * 1000)
        self.assertLessEqual(len(bob.protocol.protocol._buffer), 4096)
        bob.send(b"y" * 1000 + b"\r\nok\r\n")
        self.assertEqual(
            bob.lines(),
            ["!!! line too long (over 4096 bytes); ignored", "[#lobby] <bob> ok"],
        )
        self.assertEqual(alice.lines(), ["[#lobby] <bob> ok"])
        bob.send(b"z" * 5000 + b"\r\n")
        self.assertEqual(bob.lines(), ["!!! line too long (over 4096 bytes); ignored"])
        self.assertFalse(bob.transport.disconnecting)

    def test_unknown_command(self) -> None:
        """
        An unknown command is named in the error.
        """
        alice = self.peer("alice")
        alice.send("/frobnicate now")
        self.assertEqual(alice.lines(), ["!!! Unknown command /frobnicate; try /help"])

    def test_missing_arguments(self) -> None:
        """
        Commands missing their arguments answer with their usage.
        """
        alice = self.peer("alice")
        for command, usage in [
            ("/nick", "/nick NEW"),
            ("/join", "/join #room [KEY]"),
            ("/msg", "/msg NICK TEXT"),
            ("/msg bob", "/msg NICK TEXT"),
            ("/me", "/me ACTION"),
            ("/history 1 2 3", "/history [#room|NICK] [N] [BEFORE]"),
        ]:
            alice.send(command)
            self.assertEqual(alice.lines(), [f"!!! Usage: {usage}"], command)

    def test_terminal_control_removed_from_input(self) -> None:
        """
        Escape sequences and control characters typed or pasted into a line
        never reach the room; characters a terminal would act on that
        remain (a bidirectional override) are made visible.
        """
        alice, bob = self.peer("alice"), self.peer("bob")
        alice.received()
        bob.send("\x1b[2Jgotcha\x07 \u202eevil\u0085")
        self.assertEqual(alice.lines(), ["[#lobby] <bob> gotcha \ufffdevil"])

    def test_control_characters_made_visible(self) -> None:
        """
        Terminal control sequences in what others say (from a door that does
        not remove them) are made visible, so nobody can drive another
        user's terminal.
        """
        web = WebSocketDoor(self.hub, self.clock, Limits(flood_rate=0))
        alice, bob = self.peer("alice"), WebSocketPeer(web)
        bob.sign_on("bob")
        alice.received()
        bob.send(type="say", room="#lobby", text="\x1b[2Jgotcha\x07 \u202eevil\u0085")
        self.assertEqual(alice.lines(), ["[#lobby] <bob> ^[[2Jgotcha^G \ufffdevil\ufffd"])
        self.assertEqual(safe("tab\tkept"), "tab\tkept")


class CommandTests(LineDoorTestCase):
    def test_say_in_current_room(self) -> None:
        """
        Plain text goes to the room most recently joined or switched to;
        C{/join} of a room one is in switches to it.
        """
        alice, bob = self.peer("alice"), self.peer("bob")
        alice.send("/join #py")
        bob.send("/join #py")
        alice.received()
        bob.received()
        alice.send("in py")
        alice.send("/join #LOBBY")
        alice.send("in lobby")
        self.assertEqual(
            alice.lines(),
            ["[#py] <alice> in py", "*** Now talking in #lobby", "[#lobby] <alice> in lobby"],
        )
        self.assertEqual(bob.lines(), ["[#py] <alice> in py", "[#lobby] <alice> in lobby"])

    def test_join_without_hash(self) -> None:
        """
        C{/join py} means C{/join #py}.
        """
        alice = self.peer("alice")
        alice.send("/join py")
        self.assertEqual(alice.lines()[0], "*** alice has joined #py")

    def test_part_falls_back(self) -> None:
        """
        After parting the current room, text goes to the most recently
        joined room still held; with none left, text is refused.
        """
        alice = self.peer("alice")
        alice.send("/join #a")
        alice.send("/join #b")
        alice.send("/part")
        alice.received()
        alice.send("where")
        self.assertEqual(alice.lines(), ["[#a] <alice> where"])
        alice.send("/part #a")
        alice.send("/part #lobby see you")
        self.assertEqual(
            alice.lines(),
            ["*** alice has left #a", "*** alice has left #lobby (see you)"],
        )
        alice.send("anyone?")
        self.assertEqual(alice.lines(), ["!!! You are not in any room; /join #room first"])

    def test_part_not_in_room(self) -> None:
        """
        Parting a room one is not in is an error.
        """
        alice = self.peer("alice")
        alice.send("/part #nowhere")
        self.assertEqual(alice.lines(), ["!!! You are not in #nowhere"])

    def test_commands_case_insensitive(self) -> None:
        """
        Command names are case-insensitive.
        """
        alice = self.peer("alice")
        alice.send("/WHO")
        self.assertEqual(alice.lines(), ["*** Users in #lobby (1): alice"])

    def test_private_messages(self) -> None:
        """
        C{/msg} shows C{*nick* text} to the recipient and C{-> *nick* text} to
        the sender; an unknown nick is an error.
        """
        alice, bob = self.peer("alice"), self.peer("bob")
        alice.received()
        alice.send("/msg BOB psst, over here")
        self.assertEqual(bob.lines(), ["*alice* psst, over here"])
        self.assertEqual(alice.lines(), ["-> *bob* psst, over here"])
        alice.send("/msg ghost boo")
        self.assertEqual(alice.lines(), ["!!! There is no user named ghost"])

    def test_me(self) -> None:
        """
        C{/me} is shown as C{[#room] * nick action}.
        """
        alice, bob = self.peer("alice"), self.peer("bob")
        alice.received()
        bob.send("/me waves")
        self.assertEqual(alice.lines(), ["[#lobby] * bob waves"])

    def test_double_slash(self) -> None:
        """
        C{//text} says C{/text} literally.
        """
        alice = self.peer("alice")
        alice.send("//shrug")
        self.assertEqual(alice.lines(), ["[#lobby] <alice> /shrug"])

    def test_nick(self) -> None:
        """
        C{/nick} is shown to everyone sharing a room, and to the user.
        """
        alice, bob = self.peer("alice"), self.peer("bob")
        alice.received()
        bob.send("/nick robert")
        self.assertEqual(alice.lines(), ["*** bob is now known as robert"])
        self.assertEqual(bob.lines(), ["*** bob is now known as robert"])
        alice.send("/nick Robert")
        self.assertEqual(alice.lines(), ["!!! The nickname Robert is already in use"])

    def test_who_rooms_topic(self) -> None:
        """
        C{/who}, C{/rooms} and C{/topic} answer with informational lines;
        a topic change is pushed to every member.
        """
        alice, bob = self.peer("alice"), self.peer("bob")
        alice.send("/join #py")
        alice.received()
        bob.received()
        alice.send("/who #lobby")
        self.assertEqual(alice.lines(), ["*** Users in #lobby (2): alice, bob"])
        alice.send("/topic")
        self.assertEqual(alice.lines(), ["*** No topic is set for #py"])
        alice.send("/topic #lobby All welcome")
        self.assertEqual(bob.lines(), ["*** alice changed the topic of #lobby to: All welcome"])
        alice.received()
        bob.send("/topic #lobby")
        self.assertEqual(bob.lines(), ["*** Topic for #lobby: All welcome (set by alice)"])
        bob.send("/rooms")
        self.assertEqual(
            bob.lines(),
            ["*** 2 rooms:", "***   #lobby  2 users  All welcome", "***   #py  1 user"],
        )

    def test_topic_dash_clears(self) -> None:
        """
        C{/topic [#room] -} clears the topic: every member sees it cleared,
        a WebSocket member too, and the room then has none.
        """
        alice, bob = self.peer("alice"), self.peer("bob")
        web = WebSocketPeer(WebSocketDoor(self.hub, self.clock, Limits(flood_rate=0)))
        web.sign_on("carol")
        alice.send("/topic #lobby All welcome")
        alice.received()
        bob.received()
        web.received()
        alice.send("/topic #lobby -")
        self.assertEqual(bob.lines(), ["*** alice cleared the topic of #lobby"])
        self.assertEqual(
            web.received(), [{"type": "topic", "room": "#lobby", "topic": "", "by": "alice"}]
        )
        alice.received()
        bob.send("/topic -")
        self.assertEqual(bob.lines(), ["*** bob cleared the topic of #lobby"])
        bob.send("/topic")
        self.assertEqual(bob.lines(), ["*** No topic is set for #lobby"])
        self.assertEqual(self.hub.rooms["#lobby"].topic, "")

    def test_join_shows_topic(self) -> None:
        """
        Joining a room with a topic shows the join, the users, then the topic.
        """
        alice, bob = self.peer("alice"), self.peer("bob")
        alice.send("/join #py")
        alice.send("/topic snakes")
        bob.received()
        bob.send("/join #py")
        self.assertEqual(
            bob.lines(),
            [
                "*** bob has joined #py",
                "*** Users in #py (2): @alice, bob",
                "*** Topic for #py: snakes (set by alice)",
            ],
        )

    def test_history(self) -> None:
        """
        C{/history N} shows the newest N messages of the current room,
        oldest first, stamped with their local time (and date, when not
        today), and how to page back; C{/history #room N BEFORE} pages.
        """
        now = time.time()
        self.clock.advance(now - 2 * 86400)
        alice = self.peer("alice")
        alice.send("message 0")
        self.clock.advance(2 * 86400)
        for n in range(1, 5):
            alice.send(f"message {n}")
        alice.received()
        alice.send("/history 2")
        stamp = time.strftime("[%H:%M]", time.localtime(now))
        self.assertEqual(
            alice.lines(),
            [
                "*** Last 2 messages of #lobby:",
                f"{stamp} [#lobby] <alice> message 3",
                f"{stamp} [#lobby] <alice> message 4",
                "*** End of history; older: /history #lobby 2 4",
            ],
        )
        alice.send("/history #lobby 2 2")
        dated = time.strftime("[%Y-%m-%d %H:%M]", time.localtime(now - 2 * 86400))
        self.assertEqual(
            alice.lines(),
            [
                "*** Last 1 message of #lobby:",
                f"{dated} [#lobby] <alice> message 0",
                "*** End of history",
            ],
        )
        alice.send("/join #empty")
        alice.received()
        alice.send("/history")
        self.assertEqual(alice.lines(), ["*** No history for #empty"])

    def test_help(self) -> None:
        """
        C{/help} lists the commands.
        """
        alice = self.peer("alice")
        alice.send("/help")
        self.assertEqual(alice.lines(), list(HELP))

    def test_quit(self) -> None:
        """
        C{/quit REASON} says goodbye, closes the connection, and shows the
        others the reason once per room.
        """
        alice, bob = self.peer("alice"), self.peer("bob")
        alice.send("/join #py")
        bob.send("/join #py")
        alice.received()
        bob.received()
        bob.send("/quit off to lunch")
        self.assertEqual(bob.lines(), ["*** Bye!"])
        self.assertTrue(bob.transport.disconnecting)
        bob.disconnect()
        self.assertEqual(
            alice.lines(),
            ["*** bob has left #lobby (off to lunch)", "*** bob has left #py (off to lunch)"],
        )
        self.assertNotIn("bob", self.hub.users)

    def test_nothing_after_quit(self) -> None:
        """
        Lines that arrive after C{/quit} in the same packet are ignored: the
        connection is closing.
        """
        alice, bob = self.peer("alice"), self.peer("bob")
        alice.received()
        bob.send(b"/quit\r\nbob2\r\nhello\r\n")
        self.assertEqual(bob.lines(), ["*** Bye!"])
        self.assertEqual(alice.lines(), ["*** bob has left #lobby"])
        self.assertEqual(sorted(self.hub.users), ["alice"])

    def test_dropped_connection_is_a_quit(self) -> None:
        """
        A connection that drops leaves every room, seen by the others.
        """
        alice, bob = self.peer("alice"), self.peer("bob")
        alice.received()
        bob.disconnect()
        self.assertEqual(alice.lines(), ["*** bob has left #lobby (connection closed)"])
        self.assertNotIn("bob", self.hub.users)
        self.assertNotIn(bob.protocol.protocol, self.door.connections)


class FaultTests(LineDoorTestCase):
    def test_bug_costs_one_request_only(self) -> None:
        """
        An exception while handling one user's request is logged once, with
        its traceback; that user gets an error and stays connected, and
        nobody else notices.
        """
        alice, bob = self.peer("alice"), self.peer("bob")
        alice.received()

        def broken(*args: object) -> None:
            raise ZeroDivisionError("a bug")

        self.patch(self.hub, "list_rooms", broken)
        bob.send("/rooms")
        self.assertEqual(bob.lines(), ["!!! Something went wrong; the error was logged"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        bob.send("still here")
        self.assertEqual(alice.lines(), ["[#lobby] <bob> still here"])
        self.assertFalse(bob.transport.disconnecting)


class ShutdownTests(LineDoorTestCase):
    def test_everyone_told_then_closed(self) -> None:
        """
        On shutdown every connection, named or still at the prompt, is told
        the server is going down and closed; the door's Deferred fires once
        all are gone.
        """
        named, prompting = self.peer("alice"), self.peer()
        prompting.received()
        self.hub.closing = True
        done = self.door.shutdown()
        for peer in (named, prompting):
            self.assertEqual(peer.lines(), ["*** server shutting down"])
            self.assertTrue(peer.transport.disconnecting)
        self.assertNoResult(done)
        named.disconnect()
        prompting.disconnect()
        self.successResultOf(done)

    def test_gives_up_waiting(self) -> None:
        """
        A connection that never finishes closing is dropped after the drain
        timeout (5 s by default).
        """
        alice = self.peer("alice")
        done = self.door.shutdown()
        self.clock.advance(4.9)
        self.assertFalse(alice.transport.aborted)
        self.clock.advance(0.1)
        self.assertTrue(alice.transport.aborted)
        alice.disconnect()
        self.successResultOf(done)
