"""
Accounts, history and moderation through both doors, on StringTransports:
the commands and frames, their answers, and their refusals.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatd.doors.line import LineDoor
from chatd.doors.websocket import WebSocketDoor
from chatd.hub.passwords import Passwords
from chatd.limits import Limits
from chatd.store.memory import MemoryStore
from chatd.testing import CLOSE, LinePeer, WebSocketPeer, make_hub, quick_passwords


class DoorsTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1700000000)
        self.store = MemoryStore()
        self.restart()

    def restart(self, **kwargs: Any) -> None:
        """
        A new hub (and doors) on the same store, as after a restart.
        """
        kwargs.setdefault("passwords", quick_passwords())
        self.hub = make_hub(self.clock, store=self.store, **kwargs)
        self.line_door = LineDoor(self.hub, self.clock, Limits(flood_rate=0))
        self.ws_door = WebSocketDoor(self.hub, self.clock, Limits(flood_rate=0))

    def line(self, nick: str | None = None) -> LinePeer:
        peer = LinePeer(self.line_door)
        peer.received()
        if nick is not None:
            peer.sign_on(nick)
        return peer

    def ws(self, nick: str | None = None) -> WebSocketPeer:
        peer = WebSocketPeer(self.ws_door)
        if nick is not None:
            peer.sign_on(nick)
        return peer

    def registered_line(self, nick: str, password: str = "s3cret!") -> LinePeer:
        peer = self.line(nick)
        peer.send(f"/register {password}")
        self.assertEqual(peer.lines(), [f"*** {nick} is now registered to you; you are identified"])
        return peer


class LineAccountTests(DoorsTestCase):
    def test_register_then_sign_on_with_password(self) -> None:
        """
        After C{/register}, the nickname needs its password: at the prompt
        C{NICK PASSWORD} signs on at once, identified; C{NICK} alone is
        refused with a new prompt.  The password is never written back.
        """
        self.registered_line("alice").disconnect()
        peer = self.line()
        peer.send("alice")
        self.assertEqual(
            peer.lines(),
            [
                "!!! The nickname alice is registered; give its password to use it",
                "Choose a nickname:",
            ],
        )
        peer.send("alice wrong-pass")
        self.assertEqual(peer.lines(), ["!!! Wrong password for alice", "Choose a nickname:"])
        peer.send("alice s3cret!")
        lines = peer.lines()
        self.assertEqual(
            lines[0],
            "*** Welcome, alice! You are in #lobby. Type /help for commands. You are identified.",
        )
        self.assertNotIn("s3cret", "".join(lines))

    def test_input_waits_for_password_check(self) -> None:
        """
        Lines sent while a password is being checked (in a thread) are
        handled after it, in order: not taken as another nickname.
        """
        self.registered_line("alice").disconnect()
        checks: list[Deferred[Any]] = []
        passwords = Passwords(in_thread=lambda work, *args: checks.append(Deferred()) or checks[-1])
        self.restart(passwords=passwords)
        peer = self.line()
        peer.send(b"alice s3cret!\r\n/join #later\r\nhello\r\n")
        self.assertEqual(peer.lines(), [])
        self.assertEqual(len(checks), 1)
        self.assertTrue(peer.transport.producerState == "paused")
        checks[0].callback(True)
        lines = peer.lines()
        self.assertIn("*** alice has joined #later", lines)
        self.assertEqual(lines[-1], "[#later] <alice> hello")
        self.assertEqual(peer.transport.producerState, "producing")

    def test_identify_and_password(self) -> None:
        """
        C{/identify NICK PASSWORD} takes a registered nickname from a guest
        session (closing the old one); C{/password OLD NEW} changes it.
        """
        old = self.registered_line("alice")
        peer = self.line("alice_")
        peer.send("/identify alice bad-pass")
        self.assertEqual(peer.lines(), ["!!! Wrong password for alice"])
        peer.send("/identify alice s3cret!")
        lines = peer.lines()
        self.assertIn("*** alice_ is now known as alice", lines)
        self.assertIn("*** You are now identified as alice", lines)
        self.assertIn("!!! Your nickname was taken over: alice_ identified for it", old.lines())
        self.assertTrue(old.transport.disconnecting)
        peer.send("/password s3cret! n3w-pass")
        self.assertEqual(peer.lines(), ["*** The password of alice was changed"])
        peer.send("/password s3cret! again-pass")
        self.assertEqual(peer.lines(), ["!!! Wrong password for alice"])

    def test_usage(self) -> None:
        """
        Account and moderation commands missing their arguments answer
        with their usage; a short password with what a password must be.
        """
        peer = self.line("bob")
        for command, usage in (
            ("/register", "/register PASSWORD"),
            ("/identify", "/identify [NICK] PASSWORD"),
            ("/password onlyone", "/password OLD NEW"),
            ("/kick", "/kick [#room] NICK [REASON]"),
            ("/op", "/op NICK"),
            ("/kill", "/kill NICK [REASON]"),
        ):
            peer.send(command)
            self.assertEqual(peer.lines(), [f"!!! Usage: {usage}"], command)
        peer.send("/register short")
        self.assertEqual(peer.lines(), ["!!! A password must be 6-128 characters long"])


class LineHistoryTests(DoorsTestCase):
    def test_history_on_join_and_private(self) -> None:
        """
        Signing on shows the lobby's recent history; C{/history NICK}
        shows private messages with NICK, both ways.
        """
        alice, bob = self.line("alice"), self.line("bob")
        alice.send("hi all")
        alice.send("/msg bob psst")
        bob.send("/msg alice yes?")
        alice.received()
        bob.received()
        carol = self.line()
        carol.send("carol")
        lines = carol.lines()
        self.assertEqual(lines[-3], "*** Last 1 message of #lobby:")
        self.assertTrue(lines[-2].endswith("[#lobby] <alice> hi all"), lines)
        self.assertEqual(lines[-1], "*** End of history")
        bob.received()
        bob.send("/history alice")
        lines = bob.lines()
        self.assertEqual(lines[0], "*** Last 2 private messages with alice:")
        self.assertTrue(lines[1].endswith("] *alice* psst"), lines)
        self.assertTrue(lines[2].endswith("] -> *alice* yes?"), lines)


class LineModerationTests(DoorsTestCase):
    def test_room_operations(self) -> None:
        """
        The owner of a room moderates it with commands; everyone sees it.
        """
        alice = self.registered_line("alice")
        bob = self.line("bob")
        alice.send("/join #den")
        bob.send("/join #den")
        alice.received()
        bob.received()
        alice.send("/mode +m")
        self.assertEqual(bob.lines(), ["*** alice set mode +m on #den"])
        bob.send("can I talk?")
        self.assertEqual(
            bob.lines(), ["!!! #den is moderated; only operators and voiced members may speak"]
        )
        alice.send("/op bob")
        self.assertEqual(
            bob.lines(),
            ["*** alice made bob an operator of #den", "*** Users in #den (2): @alice, @bob"],
        )
        bob.send("/kick alice")
        self.assertEqual(bob.lines(), ["!!! alice outranks you in #den"])
        alice.send("/mode")
        self.assertEqual(alice.lines()[-1], "*** Modes of #den: +mn")
        alice.send("/ban #den bob")
        self.assertEqual(
            bob.lines(),
            ["*** alice banned bob from #den", "*** bob has left #den (kicked by alice: banned)"],
        )
        bob.send("/join #den")
        self.assertEqual(bob.lines(), ["!!! You are banned from #den"])
        alice.received()
        alice.send("/mode +k sesame")
        alice.send("/unban bob")
        alice.send("/invite bob")
        self.assertEqual(bob.lines(), ["*** alice invites you to #den; type /join #den"])
        bob.send("/join #den nope")
        self.assertEqual(bob.lines(), ["!!! #den needs the right key: /join #den KEY"])
        bob.send("/join #den sesame")
        self.assertIn("*** bob has joined #den", bob.lines())

    def test_voice_and_limit(self) -> None:
        """
        C{/voice} lets a member talk in a C{+m} room, C{/who} marks it with
        C{+}, C{/devoice} takes it back; C{/mode +l N} fills a room,
        C{/mode} shows the limit, and a bad number is refused.
        """
        alice = self.registered_line("alice")
        bob = self.line("bob")
        alice.send("/join #den")
        bob.send("/join #den")
        alice.send("/mode +m")
        alice.received()
        bob.received()
        alice.send("/voice bob")
        self.assertEqual(
            bob.lines(),
            ["*** alice gave voice to bob in #den", "*** Users in #den (2): @alice, +bob"],
        )
        bob.send("now I talk")
        self.assertEqual(alice.lines()[-1], "[#den] <bob> now I talk")
        bob.received()
        alice.send("/devoice #den bob")
        self.assertEqual(bob.lines()[0], "*** alice took voice in #den from bob")
        bob.send("/who")
        self.assertEqual(bob.lines(), ["*** Users in #den (2): @alice, bob"])
        alice.send("/mode +lk 2 sesame")
        self.assertEqual(
            bob.lines(), ["*** alice set mode +lk 2 sesame on #den"]
        )
        alice.send("/mode")
        self.assertEqual(alice.lines()[-1], "*** Modes of #den: +klmn (key: sesame, limit: 2)")
        carol = self.line("carol")
        carol.send("/join #den sesame")
        self.assertEqual(carol.lines(), ["!!! #den is full"])
        alice.received()
        for bad in ("/mode +l", "/mode +l many", "/mode +l 0"):
            alice.send(bad)
            self.assertEqual(
                alice.lines(), ["!!! A room's limit is a whole number from 1 to 2147483648"]
            )
        alice.send("/mode +l 3 extra")
        self.assertEqual(alice.lines(), ["!!! Usage: /mode [#room] [+|-FLAGS [KEY] [N]]"])
        alice.send("/mode -l")
        carol.send("/join #den sesame")
        self.assertIn("*** carol has joined #den", carol.lines())


class WebSocketAccountTests(DoorsTestCase):
    def test_hello_with_password(self) -> None:
        """
        A registered nickname needs its password on C{hello}: without it
        C{nick_registered}, a wrong one C{bad_password}; the right one
        welcomes the account.
        """
        self.registered_line("alice").disconnect()
        peer = self.ws()
        peer.send(type="hello", nick="alice")
        (error,) = peer.received()
        self.assertEqual(error["code"], "nick_registered")
        peer.send(type="hello", nick="alice", password="wrong-pass")
        (error,) = peer.received()
        self.assertEqual(error["code"], "bad_password")
        peer.send(type="hello", nick="alice", password="s3cret!")
        frames = peer.received()
        self.assertEqual(
            frames[0], {"type": "welcome", "nick": "alice", "rooms": ["#lobby"], "account": "alice"}
        )

    def test_register_identify_password_frames(self) -> None:
        """
        C{register}, C{password} and C{identify} frames and their answers;
        C{register} without a password is C{bad_request}.
        """
        peer = self.ws("bob")
        peer.send(type="register", password="s3cret!")
        self.assertEqual(peer.received(), [{"type": "registered", "account": "bob"}])
        peer.send(type="password", old="s3cret!", new="n3w-pass")
        self.assertEqual(peer.received(), [{"type": "password", "account": "bob"}])
        other = self.ws("guest")
        other.send(type="identify", nick="bob", password="n3w-pass")
        frames = other.received()
        self.assertIn({"type": "nick", "old": "guest", "new": "bob"}, frames)
        self.assertIn({"type": "identified", "account": "bob"}, frames)
        other.send(type="register")
        (error,) = other.received()
        self.assertEqual(error["code"], "bad_request")


class WebSocketModerationTests(DoorsTestCase):
    def test_frames(self) -> None:
        """
        Every moderation request as a WebSocket frame, and what the other
        member sees of each.
        """
        alice = self.ws("alice")
        alice.send(type="register", password="s3cret!")
        bob = self.ws("bob")
        alice.send(type="join", room="#den")
        bob.send(type="join", room="#den")
        alice.received()
        bob.received()
        alice.send(type="mode", room="#den", mode="+k", key="sesame")
        self.assertEqual(
            bob.received(), [{"type": "mode", "room": "#den", "mode": "+k sesame", "by": "alice"}]
        )
        bob.send(type="mode", room="#den")
        self.assertEqual(
            bob.received(), [{"type": "modes", "room": "#den", "modes": "+kn", "key": "sesame"}]
        )
        bob.send(type="kick", room="#den", nick="alice")
        (error,) = bob.received()
        self.assertEqual(error["code"], "not_op")
        alice.send(type="op", room="#den", nick="bob")
        frames = bob.received()
        self.assertEqual(
            frames[0], {"type": "op", "room": "#den", "nick": "bob", "by": "alice", "op": True}
        )
        self.assertEqual(frames[1]["ops"], ["alice", "bob"])
        alice.send(type="deop", room="#den", nick="bob")
        alice.send(type="kick", room="#den", nick="bob", reason="bye")
        self.assertEqual(
            bob.received()[-1],
            {
                "type": "part",
                "room": "#den",
                "nick": "bob",
                "reason": "kicked by alice: bye",
                "kicked_by": "alice",
            },
        )
        alice.send(type="ban", room="#den", nick="bob")
        bob.send(type="join", room="#den", key="sesame")
        self.assertEqual(bob.received()[-1]["code"], "banned")
        alice.send(type="unban", room="#den", nick="bob")
        alice.send(type="mode", room="#den", mode="+i")
        bob.send(type="join", room="#den", key="sesame")
        self.assertEqual(bob.received()[-1]["code"], "invite_only")
        alice.send(type="invite", room="#den", nick="bob")
        self.assertEqual(bob.received(), [{"type": "invite", "room": "#den", "by": "alice"}])
        bob.send(type="join", room="#den", key="sesame")
        self.assertEqual(bob.received()[0], {"type": "join", "room": "#den", "nick": "bob"})
        bob.send(type="kill", nick="alice")
        self.assertEqual(bob.received()[-1]["code"], "not_admin")

    def test_voice_and_limit_frames(self) -> None:
        """
        C{voice} and C{devoice} frames, the C{voice} frame every member
        sees and C{voiced} in C{users}; C{mode} with a C{limit}, and the
        refusals of a full room and of a bad limit.
        """
        alice = self.ws("alice")
        bob = self.ws("bob")
        alice.send(type="join", room="#den")
        bob.send(type="join", room="#den")
        alice.received()
        bob.received()
        alice.send(type="voice", room="#den", nick="bob")
        frames = bob.received()
        self.assertEqual(
            frames[0],
            {"type": "voice", "room": "#den", "nick": "bob", "by": "alice", "voiced": True},
        )
        self.assertEqual((frames[1]["type"], frames[1]["voiced"]), ("users", ["bob"]))
        bob.send(type="devoice", room="#den", nick="alice")
        self.assertEqual(bob.received()[-1]["code"], "not_op")
        alice.send(type="devoice", room="#den", nick="bob")
        self.assertFalse(bob.received()[0]["voiced"])
        alice.send(type="mode", room="#den", mode="+l", limit=2)
        self.assertEqual(
            bob.received(), [{"type": "mode", "room": "#den", "mode": "+l 2", "by": "alice"}]
        )
        bob.send(type="mode", room="#den")
        self.assertEqual(
            bob.received(), [{"type": "modes", "room": "#den", "modes": "+ln", "limit": 2}]
        )
        carol = self.ws("carol")
        carol.send(type="join", room="#den")
        self.assertEqual(
            carol.received(),
            [
                {
                    "type": "error",
                    "code": "room_full",
                    "message": "#den is full",
                    "request": "join",
                }
            ],
        )
        alice.send(type="mode", room="#den", mode="+l", limit=2**31 + 1)
        self.assertEqual(alice.received()[-1]["code"], "bad_limit")
        alice.send(type="mode", room="#den", mode="+l", limit="3")
        self.assertEqual(alice.received()[-1]["code"], "bad_request")
        alice.send(type="mode", room="#den", mode="+l")
        self.assertEqual(alice.received()[-1]["code"], "bad_limit")

    def test_history_frames(self) -> None:
        """
        C{history} frames page back through a room's messages and a
        private conversation.
        """
        alice, bob = self.ws("alice"), self.ws("bob")
        for n in range(3):
            alice.send(type="say", room="#lobby", text=f"m{n}")
        alice.send(type="msg", to="bob", text="psst")
        alice.received()
        bob.received()
        bob.send(type="history", room="#lobby", limit=2)
        (page,) = bob.received()
        self.assertEqual([m["text"] for m in page["messages"]], ["m1", "m2"])
        self.assertTrue(page["more"])
        bob.send(type="history", room="#lobby", before=page["messages"][0]["id"])
        (page,) = bob.received()
        self.assertEqual(([m["text"] for m in page["messages"]], page["more"]), (["m0"], False))
        bob.send(type="history", **{"with": "alice"})
        (page,) = bob.received()
        self.assertEqual(page["with"], "alice")
        self.assertEqual(
            [(m["type"], m["from"], m["to"], m["text"]) for m in page["messages"]],
            [("private", "alice", "bob", "psst")],
        )
        carol = self.ws()
        carol.send(type="hello", nick="carol")
        history = [f for f in carol.received() if f["type"] == "history"]
        self.assertEqual([m["text"] for m in history[0]["messages"]], ["m0", "m1", "m2"])


class RefusalMatrixTests(DoorsTestCase):
    """
    Every moderation and account refusal, through both doors: the same code
    on the WebSocket, the same sentence after C{!!!} on the line door, and
    the connection stays up.
    """

    def setUp(self) -> None:
        super().setUp()
        self.owner = self.registered_line("owner")
        for line in ("/join #open", "/join #den", "/mode +ik sesame", "/ban mallory"):
            self.owner.send(line)
        self.line_guest = self.line("guest1")
        self.ws_guest = self.ws("guest2")
        self.line_guest.send("/join #open")
        self.ws_guest.send(type="join", room="#open")

    CASES = [
        ("/op owner", {"type": "op", "room": "#open", "nick": "owner"}, "not_op"),
        ("/deop owner", {"type": "deop", "room": "#open", "nick": "owner"}, "not_op"),
        ("/kick owner", {"type": "kick", "room": "#open", "nick": "owner"}, "not_op"),
        ("/ban owner", {"type": "ban", "room": "#open", "nick": "owner"}, "not_op"),
        ("/unban zed", {"type": "unban", "room": "#open", "nick": "zed"}, "not_op"),
        ("/invite zed", {"type": "invite", "room": "#open", "nick": "zed"}, "not_op"),
        ("/mode +m", {"type": "mode", "room": "#open", "mode": "+m"}, "not_op"),
        ("/kick #den owner", {"type": "kick", "room": "#den", "nick": "owner"}, "not_in_room"),
        ("/kill owner", {"type": "kill", "nick": "owner"}, "not_admin"),
        ("/join #den", {"type": "join", "room": "#den"}, "invite_only"),
        ("/nick owner", {"type": "nick", "nick": "owner"}, "nick_registered"),
        ("/register short", {"type": "register", "password": "short"}, "bad_password"),
        ("/password old-pass new-pass", {"type": "password", "old": "old-pass", "new": "new-pass"},
         "not_identified"),
        ("/identify owner wrong-pw",
         {"type": "identify", "nick": "owner", "password": "wrong-pw"}, "bad_password"),
        ("/identify nobody any-pass",
         {"type": "identify", "nick": "nobody", "password": "any-pass"}, "not_registered"),
    ]  # fmt: skip

    def test_each_refusal_on_both_doors(self) -> None:
        """
        Each refusal in L{CASES} has the same code on both doors and the
        same message, and closes no connection.
        """
        for command, frame, code in self.CASES:
            self.line_guest.received()
            self.ws_guest.received()
            self.line_guest.send(command)
            self.ws_guest.send(**frame)
            (answer,) = self.ws_guest.received()
            self.assertEqual((answer["type"], answer["code"]), ("error", code), command)
            self.assertEqual(self.line_guest.lines(), [f"!!! {answer['message']}"], command)
            self.assertFalse(self.line_guest.transport.disconnecting)
            self.assertFalse(self.ws_guest.transport.disconnecting)

    def test_refusals_to_operators(self) -> None:
        """
        What even an operator is refused: a key without a value, an unknown
        mode, lifting a ban that is not there, deopping the owner.
        """
        self.owner.received()
        for command, expected in (
            ("/mode +k", "!!! A key is 1-23 printable characters, no spaces"),
            ("/mode +q", "!!! Modes are + or - then letters among i, k, l, m, n, s, t (e.g. +mt)"),
            ("/unban zed", "!!! zed is not banned from #den"),
            ("/deop owner", "!!! owner owns #den"),
        ):
            self.owner.send(command)
            self.assertEqual(self.owner.lines(), [expected], command)

    def test_entry_and_talk_refusals(self) -> None:
        """
        Bans, keys and C{+m} refusals as the line door shows them.
        """
        mallory = self.line("mallory")
        mallory.send("/join #den sesame")
        self.assertEqual(mallory.lines(), ["!!! You are banned from #den"])
        self.owner.send("/mode -i")
        self.line_guest.received()
        self.line_guest.send("/join #den wrong")
        self.assertEqual(self.line_guest.lines(), ["!!! #den needs the right key: /join #den KEY"])
        self.line_guest.send("/join #den sesame")
        self.owner.send("/mode +m")
        self.line_guest.received()
        self.line_guest.send("hello")
        self.assertEqual(
            self.line_guest.lines(),
            ["!!! #den is moderated; only operators and voiced members may speak"],
        )


class ClosingTests(DoorsTestCase):
    def test_killed_websocket_closes_normally(self) -> None:
        """
        A killed WebSocket user is told why, then closed with 1000 (1001 is
        for the server going away).
        """
        self.restart(admins=["root"])
        root = self.registered_line("root")
        victim = self.ws("victim")
        root.send("/kill victim spam")
        frames = victim.frames()
        self.assertEqual(
            json.loads(frames[-2][1]),
            {"type": "error", "code": "killed", "message": "You were killed by root: spam"},
        )
        self.assertEqual(frames[-1][0], CLOSE)
        self.assertEqual(struct.unpack("!H", frames[-1][1][:2])[0], 1000)


class NewUserTests(DoorsTestCase):
    """
    Issue #14, "What a new user hit", through both doors.
    """

    def test_signing_on_again_keeps_the_room(self) -> None:
        """
        The issue's steps: as a guest gus opens #gusroom, sets its topic
        and C{+t}, registers; signing on again from a new connection
        (a takeover) finds the topic, the mode and gus's operator status
        as they were.
        """
        gus = self.line("gus")
        for line in ("/join #gusroom", "/topic #gusroom gus was here", "/mode #gusroom +t"):
            gus.send(line)
        gus.send("/register gus-pass1")
        gus.received()
        again = self.line()
        again.send("gus gus-pass1")
        lines = again.lines()
        self.assertEqual(
            lines[0],
            "*** Welcome, gus! You are in #lobby, #gusroom. Type /help for commands."
            " You are identified.",
        )
        self.assertIn("*** Topic for #gusroom: gus was here (set by gus)", lines)
        self.assertIn("!!! Your nickname was taken over: signed on again", gus.lines())
        again.send("/topic #gusroom")
        self.assertEqual(again.lines(), ["*** Topic for #gusroom: gus was here (set by gus)"])
        again.send("/mode #gusroom")
        self.assertEqual(again.lines(), ["*** Modes of #gusroom: +nt"])
        again.send("/topic #gusroom new topic")
        self.assertEqual(again.lines(), ["*** gus changed the topic of #gusroom to: new topic"])

    def test_invite_only_lobby_line(self) -> None:
        """
        With #lobby C{+i}, a new line user is welcomed to no room and told
        why; talking then says to join a room, and joining one works.
        """
        self.restart(admins=["root"])
        root = self.registered_line("root")
        root.send("/mode #lobby +i")
        newbie = self.line()
        newbie.send("newbie")
        self.assertEqual(
            newbie.lines(),
            [
                "*** Welcome, newbie! You are in no room. Type /help for commands.",
                "!!! #lobby is invite only; ask an operator",
            ],
        )
        newbie.send("hello?")
        self.assertEqual(newbie.lines(), ["!!! You are not in any room; /join #room first"])
        newbie.send("/join #newbies")
        self.assertIn("*** newbie has joined #newbies", newbie.lines())
        newbie.send("hello!")
        self.assertEqual(newbie.lines(), ["[#newbies] <newbie> hello!"])

    def test_invite_only_lobby_websocket(self) -> None:
        """
        On the WebSocket: a C{welcome} with no rooms, then the error.
        """
        self.restart(admins=["root"])
        self.registered_line("root").send("/mode #lobby +i")
        peer = self.ws()
        peer.send(type="hello", nick="newbie")
        self.assertEqual(
            peer.received(),
            [
                {"type": "welcome", "nick": "newbie", "rooms": []},
                {
                    "type": "error",
                    "code": "invite_only",
                    "message": "#lobby is invite only; ask an operator",
                },
            ],
        )

    def test_register_again(self) -> None:
        """
        C{/register} by a registered user says it is registered already,
        whatever the password looks like.
        """
        alice = self.registered_line("alice")
        alice.send("/register short")
        self.assertEqual(alice.lines(), ["!!! The nickname alice is already registered"])
        peer = self.ws()
        peer.send(type="hello", nick="bob")
        peer.received()
        peer.send(type="register", password="bob-pass-1")
        peer.received()
        peer.send(type="register", password="x")
        self.assertEqual(peer.received()[0]["code"], "nick_registered")
