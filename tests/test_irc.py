"""
The IRC door, line by line, on StringTransports (and twice over loopback
sockets): framing, registration, the hub shared with the other doors,
capabilities, ordering, bounds and idle clients.

irctest checks the door against the IRC specifications; these tests are
about what it does not cover: chatd's limits, accounts and doors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from argon2 import PasswordHasher
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.protocol import ClientFactory
from twisted.internet.task import Clock
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from chatd.doors.flow import Outbox
from chatd.doors.irc import IrcDoor
from chatd.doors.irc.wire import MAX_CLIENT_TAGS, MAX_LINE, parse
from chatd.doors.line import LineDoor
from chatd.doors.websocket import WebSocketDoor
from chatd.hub import Hub, User
from chatd.hub.passwords import Passwords
from chatd.limits import Limits
from chatd.store.memory import MemoryStore
from chatd.testing import LinePeer, WebSocketPeer, make_hub, register, signed_on
from tests.support.irc import IrcPeer, plain

NOW = 1700000000.25
STAMP = "2023-11-14T22:13:20.250Z"
"""The C{time} tag of a message sent at L{NOW}."""
SERVER = "irc.test"
PASSWORD = "s3cret!pw"


def make_account(hub: Hub, nick: str, password: str = PASSWORD) -> None:
    """
    Register C{nick} (as its owner would, then sign it off).
    """
    user = signed_on(hub, nick)
    done: list[object] = []
    register(hub, user, password).addBoth(done.append)
    assert done == [None], done
    hub.disconnect(user)


class Gate:
    """
    Password hashing that waits for L{release}: a check in flight.
    """

    def __init__(self) -> None:
        self.waiting: list[tuple[Deferred[Any], Callable[..., Any], tuple[Any, ...]]] = []

    def __call__(self, work: Callable[..., Any], *args: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.waiting.append((d, work, args))
        return d

    def release(self) -> None:
        waiting, self.waiting = self.waiting, []
        for d, work, args in waiting:
            d.callback(work(*args))


def paused(peer: Any) -> Outbox:
    """
    Pause C{peer}'s outbox as its transport would once its buffer is full.
    """
    outbox: Outbox = peer.transport.producer
    outbox.pauseProducing()
    return outbox


class IrcTestCase(SynchronousTestCase):
    limits = Limits(flood_rate=0)
    hub_options: dict[str, Any] = {}

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.hub = self.make_hub()
        self.door = IrcDoor(self.hub, self.clock, self.limits, server_name=SERVER)
        self.line_door = LineDoor(self.hub, self.clock, Limits(flood_rate=0))
        self.web_door = WebSocketDoor(self.hub, self.clock, Limits(flood_rate=0))

    def make_hub(self) -> Hub:
        return make_hub(self.clock, **self.hub_options)

    def irc(self, nick: str | None = None, caps: tuple[str, ...] = ()) -> IrcPeer:
        """
        A new IRC connection, registered as C{nick} if given.
        """
        peer = IrcPeer(self.door)
        if nick is not None:
            peer.sign_on(nick, caps)
        return peer

    def line(self, nick: str | None = None) -> LinePeer:
        peer = LinePeer(self.line_door)
        if nick is not None:
            peer.sign_on(nick)
        return peer

    def web(self, nick: str | None = None) -> WebSocketPeer:
        peer = WebSocketPeer(self.web_door)
        if nick is not None:
            peer.sign_on(nick)
        return peer

    def user(self, nick: str) -> User:
        return self.hub.users[nick]

    def advance(self, seconds: int) -> None:
        """
        Let C{seconds} pass, a second at a time (as the door's sweep sees it).
        """
        for _ in range(seconds):
            self.clock.advance(1)


# -- framing ---------------------------------------------------------------------


class FramingTests(IrcTestCase):
    def test_crlf_and_lf(self) -> None:
        """
        Lines end in CR LF or in a lone LF.
        """
        alice = self.irc("alice")
        alice.send(b"PING one\r\nPING two\nPING three\r\n")
        self.assertEqual(
            alice.lines(),
            [f":{SERVER} PONG {SERVER} {token}" for token in ("one", "two", "three")],
        )

    def test_line_split_across_calls(self) -> None:
        """
        A line may come in any number of pieces, one byte each at worst,
        and several lines in one piece.
        """
        alice, bob = self.irc("alice"), self.line("bob")
        bob.send("/join #den")
        alice.send("JOIN #den")
        alice.received()
        bob.received()
        for byte in b"PRIVMSG #den :one\r\nPRIVMSG #den :two\n":
            alice.send(bytes([byte]))
        for piece in [b"PRIVMSG #d", b"en :thr", b"ee\r", b"\nPRIVMSG #den :four\r\n"]:
            alice.send(piece)
        self.assertEqual(
            bob.lines(), [f"[#den] <alice> {n}" for n in ("one", "two", "three", "four")]
        )

    def test_longest_line(self) -> None:
        """
        A line of 510 bytes (512 with CR LF) is taken; one of 511 is
        refused with 417, and the connection goes on.
        """
        alice, bob = self.irc("alice"), self.line("bob")
        bob.send("/join #den")
        alice.send("JOIN #den")
        alice.received()
        bob.received()
        head = "PRIVMSG #den :"
        longest = head + "x" * (MAX_LINE - 2 - len(head))
        self.assertEqual(len(longest), 510)
        alice.send(longest)
        self.assertEqual(alice.lines(), [])
        self.assertEqual(bob.lines(), ["[#den] <alice> " + "x" * (510 - len(head))])
        alice.send(longest + "y")
        self.assertEqual(alice.lines(), [f":{SERVER} 417 alice :Input line was too long"])
        self.assertEqual(bob.lines(), [])
        alice.send("PRIVMSG #den :still here")
        self.assertEqual(bob.lines(), ["[#den] <alice> still here"])
        self.assertFalse(alice.transport.disconnecting)

    def test_longest_line_in_pieces(self) -> None:
        """
        A 510-byte line is taken however it is split, even between its CR
        and its LF.
        """
        alice = self.irc("alice")
        token = "t" * (MAX_LINE - 2 - len("PING "))
        data = f"PING {token}\r\n".encode()
        self.assertEqual(len(data), 512)
        for byte in data:
            alice.send(bytes([byte]))
        self.assertEqual(alice.lines(), [f":{SERVER} PONG {SERVER} {token}"])

    def test_tags_then_line(self) -> None:
        """
        A client's tags may take 4096 bytes (the C{@} and the space after
        them included) before the 510 bytes of the line itself; a byte more
        of either is too long.
        """
        alice = self.irc("alice")
        tags = "@+a=" + "v" * (MAX_CLIENT_TAGS - len("@+a=") - 1) + " "
        self.assertEqual(len(tags), 4096)
        token = "t" * (MAX_LINE - 2 - len("PING "))
        alice.send(tags + "PING " + token)
        self.assertEqual(alice.lines(), [f":{SERVER} PONG {SERVER} {token}"])
        too_long = f":{SERVER} 417 alice :Input line was too long"
        alice.send(tags + "PING " + token + "t")
        self.assertEqual(alice.lines(), [too_long])
        alice.send("@+b=w" + tags[1:] + "PING x")
        self.assertEqual(alice.lines(), [too_long])
        alice.send("PING ok")
        self.assertEqual(alice.lines(), [f":{SERVER} PONG {SERVER} ok"])

    def test_unfinished_long_line_discarded(self) -> None:
        """
        An unfinished line past the limit is refused once and thrown away
        as it comes, never buffered past a line's worth; the next line is
        taken.
        """
        alice = self.irc("alice")
        for _ in range(20):
            alice.send(b"x" * 1000)
            self.assertLessEqual(len(alice.protocol._buffer), MAX_LINE)
        alice.send(b"y" * 1000 + b"\r\nPING ok\r\n")
        self.assertEqual(
            alice.lines(),
            [f":{SERVER} 417 alice :Input line was too long", f":{SERVER} PONG {SERVER} ok"],
        )
        for _ in range(20):
            alice.send(b"@" + b"x" * 999)
            self.assertLessEqual(len(alice.protocol._buffer), MAX_CLIENT_TAGS + MAX_LINE)
        alice.send(b"\r\nPING ok\r\n")
        self.assertEqual(
            alice.lines(),
            [f":{SERVER} 417 alice :Input line was too long", f":{SERVER} PONG {SERVER} ok"],
        )
        self.assertFalse(alice.transport.disconnecting)

    def test_invalid_utf8(self) -> None:
        """
        A line that is not UTF-8 gets C{FAIL <command> INVALID_UTF8} and
        nothing else happens, before registration and after.
        """
        peer = self.irc()
        peer.send(b"NICK caf\xe9\r\n")
        self.assertEqual(
            peer.lines(), [f":{SERVER} FAIL NICK INVALID_UTF8 :Message rejected: not UTF-8"]
        )
        peer.send("USER alice 0 * :Alice")
        self.assertEqual(peer.lines(), [])
        self.assertEqual(self.hub.users, {})
        peer.send("NICK alice")
        self.assertIn(
            f":{SERVER} 001 alice :Welcome to the chatd IRC network alice!~alice@irc.chatd",
            peer.lines(),
        )
        bob = self.line("bob")
        bob.send("/join #den")
        peer.send("JOIN #den")
        peer.received()
        bob.received()
        peer.send(b"PRIVMSG #den :caf\xe9\r\n")
        self.assertEqual(
            peer.lines(), [f":{SERVER} FAIL PRIVMSG INVALID_UTF8 :Message rejected: not UTF-8"]
        )
        self.assertEqual(bob.lines(), [])
        self.assertFalse(peer.transport.disconnecting)

    def test_numerics_ignored(self) -> None:
        """
        Numerics are for servers to send: a client's are ignored, before
        and after registration.
        """
        peer = self.irc()
        peer.send("001 alice :Welcome")
        peer.send("433 * alice :taken")
        self.assertEqual(peer.lines(), [])
        peer.sign_on("alice")
        peer.send(":alice 401 bob :No such nick")
        peer.send("005 X=Y :are supported")
        self.assertEqual(peer.lines(), [])

    def test_empty_lines_ignored(self) -> None:
        """
        Empty lines, or lines of spaces, tags or a source alone, say nothing
        and get nothing.
        """
        peer = self.irc()
        peer.send(b"\r\n\n   \r\n@a=b\r\n:alice\r\n")
        self.assertEqual(peer.lines(), [])
        peer.sign_on("alice")
        peer.send(b"\r\n\n   \r\n@a=b \r\n:alice \r\n")
        self.assertEqual(peer.lines(), [])


# -- registration ---------------------------------------------------------------


class RegistrationTests(IrcTestCase):
    def test_welcome(self) -> None:
        """
        NICK and USER register: 001 to 005, the LUSERS numerics, and 422
        when the hub has no message of the day; the user is in no room.
        """
        peer = self.irc()
        commands = [m.command for m in _parsed(peer.register("alice"))]
        self.assertEqual(commands[:4], ["001", "002", "003", "004"])
        rest = [c for c in commands[4:] if c not in ("005", "253")]  # 253: see below
        self.assertGreater(commands.count("005"), 0)
        self.assertEqual(rest, ["251", "255", "265", "266", "422"])
        self.assertEqual(self.user("alice").rooms, {})

    def test_lusers_counts_other_unregistered(self) -> None:
        """
        LUSERS in the welcome counts connections still registering (253),
        not the one being welcomed: alone, there is no 253 at all.
        """
        lines = self.irc().register("alice")
        self.assertEqual([line for line in lines if " 253 " in line], [])
        self.irc()
        lines = self.irc().register("bob")
        self.assertIn(f":{SERVER} 253 bob 1 :unknown connection(s)", lines)

    def test_motd(self) -> None:
        """
        The hub's message of the day comes as 375, one 372 per line and
        376, not also as notices.
        """
        self.hub.motd = ("Be nice.", "Have fun.")
        lines = self.irc().register("alice")
        motd = [line for line in lines if line.split()[1] in ("372", "375", "376", "422", "NOTICE")]
        self.assertEqual(
            motd,
            [
                f":{SERVER} 375 alice :- {SERVER} Message of the day - ",
                f":{SERVER} 372 alice :- Be nice.",
                f":{SERVER} 372 alice :- Have fun.",
                f":{SERVER} 376 alice :End of /MOTD command.",
            ],
        )

    def test_cap_ls_holds_registration(self) -> None:
        """
        After C{CAP LS 302} registration waits for C{CAP END}; 302 gets the
        capabilities' values.
        """
        peer = self.irc()
        peer.send("CAP LS 302")
        (ls,) = peer.messages()
        self.assertEqual(ls.command, "CAP")
        self.assertEqual(ls.params[:2], ["*", "LS"])
        offered = ls.params[2].split()
        self.assertIn("sasl=PLAIN", offered)
        self.assertIn("server-time", offered)
        self.assertIn("echo-message", offered)
        peer.send("NICK alice")
        peer.send("USER alice 0 * :Alice")
        self.assertEqual(peer.lines(), [])
        self.assertNotIn("alice", self.hub.users)
        peer.send("CAP REQ :echo-message server-time")
        self.assertEqual(peer.lines(), [f":{SERVER} CAP alice ACK :echo-message server-time"])
        peer.send("CAP END")
        self.assertEqual(peer.commands()[0], "001")
        self.assertIn("alice", self.hub.users)

    def test_cap_req_all_or_nothing(self) -> None:
        """
        A request naming one unknown capability is refused whole.
        """
        peer = self.irc()
        peer.send("CAP REQ :echo-message no-such-cap")
        self.assertEqual(peer.lines(), [f":{SERVER} CAP * NAK :echo-message no-such-cap"])
        peer.send("CAP LIST")
        self.assertEqual(peer.lines(), [f":{SERVER} CAP * LIST :"])
        self.assertEqual(peer.protocol.caps, set())

    def test_ping_before_registration(self) -> None:
        peer = self.irc()
        peer.send("PING :early bird")
        self.assertEqual(peer.lines(), [f":{SERVER} PONG {SERVER} :early bird"])

    def test_commands_before_registration(self) -> None:
        """
        Before registration an unknown command is 421, a known one 451.
        """
        peer = self.irc()
        peer.send("FROBNICATE now")
        self.assertEqual(peer.lines(), [f":{SERVER} 421 * FROBNICATE :Unknown command"])
        peer.send("JOIN #den")
        peer.send("PRIVMSG bob :hi")
        self.assertEqual(
            peer.lines(),
            [
                f":{SERVER} 451 * :You have not registered",
                f":{SERVER} 451 * :You have not registered",
            ],
        )

    def test_taken_nick(self) -> None:
        """
        A nickname in use (on any door) is 433; another NICK registers.
        """
        self.line("alice")
        peer = self.irc()
        peer.send("NICK ALICE")
        peer.send("USER alice 0 * :Alice")
        self.assertEqual(peer.lines(), [f":{SERVER} 433 * ALICE :Nickname is already in use"])
        peer.send("NICK alice2")
        self.assertEqual(peer.commands()[0], "001")
        self.assertIn("alice2", self.hub.users)

    def test_nick_taken_meanwhile(self) -> None:
        """
        A nickname free at NICK but taken by USER is 433 too, and the next
        NICK registers.
        """
        peer = self.irc()
        peer.send("NICK bob")
        self.line("bob")
        peer.send("USER bob 0 * :Bob")
        (refusal,) = peer.messages()
        self.assertEqual((refusal.command, refusal.params[1]), ("433", "bob"))
        peer.send("NICK bobby")
        self.assertEqual(peer.commands()[0], "001")
        self.assertIsInstance(self.user("bobby").client, type(peer.protocol))

    def test_registered_nick_needs_password(self) -> None:
        """
        A registered nickname is 433 without a password; with C{PASS} it
        registers, identified.
        """
        make_account(self.hub, "alice")
        peer = self.irc()
        (refusal,) = _parsed(peer.register("alice"))
        self.assertEqual((refusal.command, refusal.params[1]), ("433", "alice"))
        self.assertNotIn("alice", self.hub.users)
        peer.send(f"PASS {PASSWORD}")
        peer.send("NICK alice")
        lines = peer.lines()
        self.assertEqual(_parsed(lines)[0].command, "001")
        self.assertIn(
            f":{SERVER} 900 alice alice!~alice@irc.chatd alice :You are now logged in as alice",
            lines,
        )
        self.assertEqual(self.user("alice").account, "alice")

    def test_wrong_pass(self) -> None:
        make_account(self.hub, "alice")
        peer = self.irc()
        lines = peer.register("alice", password="wrong-password")
        self.assertEqual([m.command for m in _parsed(lines)], ["464"])
        self.assertNotIn("alice", self.hub.users)


class SaslTests(IrcTestCase):
    def setUp(self) -> None:
        super().setUp()
        make_account(self.hub, "alice")
        self.peer = self.irc()
        self.peer.send("CAP LS 302")
        self.peer.send("CAP REQ sasl")
        self.peer.send("NICK alice")
        self.peer.send("USER alice 0 * :Alice")
        self.peer.received()

    def test_plain(self) -> None:
        """
        SASL PLAIN with the right password: 900 and 903; registering then
        makes an identified user.
        """
        self.peer.send("AUTHENTICATE PLAIN")
        self.assertEqual(self.peer.lines(), ["AUTHENTICATE +"])
        self.peer.send("AUTHENTICATE " + plain("alice", PASSWORD))
        self.assertEqual(
            self.peer.lines(),
            [
                f":{SERVER} 900 alice alice!~alice@irc.chatd alice :You are now logged in as alice",
                f":{SERVER} 903 alice :SASL authentication successful",
            ],
        )
        self.assertNotIn("alice", self.hub.users)
        self.peer.send("CAP END")
        self.assertEqual(self.peer.commands()[0], "001")
        self.assertEqual(self.user("alice").account, "alice")

    def test_wrong_password(self) -> None:
        """
        A wrong password is 904, and the nickname is still refused.
        """
        self.peer.send("AUTHENTICATE PLAIN")
        self.peer.send("AUTHENTICATE " + plain("alice", "not-the-password"))
        self.assertEqual(
            self.peer.lines(),
            ["AUTHENTICATE +", f":{SERVER} 904 alice :SASL authentication failed"],
        )
        self.peer.send("CAP END")
        self.assertEqual(self.peer.commands(), ["433"])
        self.assertNotIn("alice", self.hub.users)

    def test_abort(self) -> None:
        self.peer.send("AUTHENTICATE PLAIN")
        self.peer.send("AUTHENTICATE *")
        self.assertEqual(
            self.peer.lines(),
            ["AUTHENTICATE +", f":{SERVER} 906 alice :SASL authentication aborted"],
        )

    def test_exactly_400_bytes(self) -> None:
        """
        A message of exactly 400 bytes of base64 needs an C{AUTHENTICATE +}
        to say it is complete.
        """
        encoded = plain("alice", PASSWORD, authzid="z" * (300 - len(f"\0alice\0{PASSWORD}")))
        self.assertEqual(len(encoded), 400)
        self.peer.send("AUTHENTICATE PLAIN")
        self.peer.send("AUTHENTICATE " + encoded)
        self.assertEqual(self.peer.lines(), ["AUTHENTICATE +"])
        self.peer.send("AUTHENTICATE +")
        self.assertEqual(self.peer.commands(), ["900", "903"])

    def test_longer_than_a_chunk(self) -> None:
        """
        A PLAIN message longer than one chunk (400 bytes of base64, room
        for any nickname and a 128-character ASCII password) fails at its
        second chunk, and the client may try again.
        """
        encoded = plain("alice", PASSWORD, authzid="z" * 700)
        self.assertGreater(len(encoded), 800)
        self.peer.send("AUTHENTICATE PLAIN")
        self.peer.received()
        self.peer.send("AUTHENTICATE " + encoded[:400])
        self.peer.send("AUTHENTICATE " + encoded[400:800])
        self.assertEqual(self.peer.commands(), ["904"])
        self.peer.send("AUTHENTICATE PLAIN")
        self.assertEqual(self.peer.lines(), ["AUTHENTICATE +"])
        self.peer.send("AUTHENTICATE " + plain("alice", PASSWORD))
        self.assertEqual(self.peer.commands(), ["900", "903"])


class RegisterCommandTests(IrcTestCase):
    def test_register(self) -> None:
        """
        C{REGISTER * * password} once registered makes the nickname an
        account and identifies the user.
        """
        alice = self.irc("alice")
        alice.send(f"REGISTER * * {PASSWORD}")
        self.assertEqual(
            alice.lines(),
            [
                f":{SERVER} REGISTER SUCCESS alice :Account created",
                f":{SERVER} 900 alice alice!~alice@irc.chatd alice :You are now logged in as alice",
            ],
        )
        self.assertIn("alice", self.hub.accounts)
        self.assertEqual(self.user("alice").account, "alice")

    def test_register_refused(self) -> None:
        """
        A refused REGISTER is a C{FAIL REGISTER} with chatd's reason: a bad
        password, an account that exists, an account that is not the
        nickname.
        """
        alice = self.irc("alice")
        alice.send("REGISTER * * short")
        (fail,) = alice.messages()
        self.assertEqual(
            (fail.command, fail.params[:3]), ("FAIL", ["REGISTER", "INVALID_PASSWORD", "alice"])
        )
        alice.send(f"REGISTER bob * {PASSWORD}")
        (fail,) = alice.messages()
        self.assertEqual(fail.params[:2], ["REGISTER", "ACCOUNT_NAME_MUST_BE_NICK"])
        alice.send(f"REGISTER alice * {PASSWORD}")
        self.assertEqual(alice.commands(), ["REGISTER", "900"])
        alice.send(f"REGISTER * * {PASSWORD}")
        (fail,) = alice.messages()
        self.assertEqual(fail.params[:3], ["REGISTER", "ACCOUNT_EXISTS", "alice"])
        self.assertEqual(self.hub.accounts, {"alice"})


class TakeOverTests(IrcTestCase):
    """
    An account holder signing on again takes its nickname over from the
    old session, on whichever door each is.
    """

    def setUp(self) -> None:
        super().setUp()
        make_account(self.hub, "alice")
        self.bob = self.line("bob")
        self.bob.send("/join #den")

    def test_taken_over_session_gets_error(self) -> None:
        """
        An IRC session whose nickname is taken over is told with ERROR
        (not a mere NOTICE: clients take a close without ERROR for a
        network failure) and closed.
        """
        old = self.irc()
        old.register("alice", password=PASSWORD)
        old.send("JOIN #den")
        old.received()
        zed = self.line("zed")
        zed.send(f"/identify alice {PASSWORD}")
        lines = old.lines()
        self.assertTrue(lines and lines[-1].startswith("ERROR :"), lines)
        self.assertIn("taken over", lines[-1])
        self.assertTrue(old.transport.disconnecting)

    def test_identified_registration_takes_over(self) -> None:
        """
        Registering with the account's password (SASL) while an old
        session holds the nickname takes it over: the old session gets
        ERROR, the new one is welcomed and back in the old one's rooms.
        """
        old = self.irc()
        old.register("alice", password=PASSWORD)
        old.send("JOIN #den")
        old.received()
        self.bob.received()
        new = self.irc()
        new.send("CAP LS 302")
        new.send("CAP REQ :sasl")
        new.send("NICK alice")
        new.send("USER alice 0 * :Alice")
        new.send("AUTHENTICATE PLAIN")
        new.send("AUTHENTICATE " + plain("alice", PASSWORD))
        new.send("CAP END")
        lines = new.lines()
        self.assertIn("001", [m.command for m in _parsed(lines)], lines)
        self.assertIn(":alice!~alice@irc.chatd JOIN :#den", lines)
        self.assertIs(self.user("alice").client, new.protocol)
        self.assertTrue(old.lines()[-1].startswith("ERROR :"))
        self.assertTrue(old.transport.disconnecting)


# -- one hub, three doors -------------------------------------------------------


class SharedHubTests(IrcTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice = self.irc("alice")
        self.bob = self.line("bob")
        self.carol = self.web("carol")
        self.bob.send("/join #den")
        self.carol.send(type="join", room="#den")
        self.alice.send("JOIN #den")
        self.alice.received()
        self.bob.received()
        self.carol.received()

    def test_masks(self) -> None:
        """
        A line user is C{nick!nick@line.chatd}, a web user
        C{nick!nick@web.chatd}, an IRC user C{nick!~ident@irc.chatd}.
        """
        self.bob.send("/join #two")
        self.carol.send(type="join", room="#two")
        self.alice.send("JOIN #two")
        self.alice.received()
        self.alice.send("WHO #two")
        who = {
            m.params[5]: (m.params[2], m.params[3])
            for m in self.alice.messages()
            if m.command == "352"
        }
        self.assertEqual(
            who,
            {
                "alice": ("~alice", "irc.chatd"),
                "bob": ("bob", "line.chatd"),
                "carol": ("carol", "web.chatd"),
            },
        )
        dave, erin = self.line("dave"), self.web("erin")
        dave.send("/join #den")
        erin.send(type="join", room="#den")
        self.assertEqual(
            self.alice.lines(),
            [":dave!dave@line.chatd JOIN :#den", ":erin!erin@web.chatd JOIN :#den"],
        )

    def test_messages_every_way(self) -> None:
        self.alice.send("PRIVMSG #den :from irc")
        self.assertEqual(self.bob.lines(), ["[#den] <alice> from irc"])
        (frame,) = self.carol.received()
        self.assertEqual(
            (frame["type"], frame["from"], frame["text"]), ("message", "alice", "from irc")
        )
        self.bob.send("from line")
        self.carol.send(type="say", room="#den", text="from web")
        self.assertEqual(
            self.alice.lines(),
            [
                ":bob!bob@line.chatd PRIVMSG #den :from line",
                ":carol!carol@web.chatd PRIVMSG #den :from web",
            ],
        )
        self.assertEqual(self.alice.lines(), [])

    def test_actions_both_ways(self) -> None:
        """
        A CTCP ACTION is a C{/me}, and a C{/me} a CTCP ACTION.
        """
        self.alice.send("PRIVMSG #den :\x01ACTION waves\x01")
        self.assertEqual(self.bob.lines(), ["[#den] * alice waves"])
        (frame,) = self.carol.received()
        self.assertEqual((frame["text"], frame.get("action")), ("waves", True))
        self.bob.send("/me bows")
        self.carol.send(type="me", room="#den", text="nods")
        self.assertEqual(
            self.alice.lines(),
            [
                ":bob!bob@line.chatd PRIVMSG #den :\x01ACTION bows\x01",
                ":carol!carol@web.chatd PRIVMSG #den :\x01ACTION nods\x01",
            ],
        )

    def test_private_both_ways(self) -> None:
        self.alice.send("PRIVMSG bob :psst")
        self.alice.send("PRIVMSG Carol :hey")
        self.assertEqual(self.bob.lines(), ["*alice* psst"])
        (frame,) = self.carol.received()
        self.assertEqual((frame["type"], frame["from"], frame["text"]), ("private", "alice", "hey"))
        self.bob.send("/msg alice back")
        self.carol.send(type="msg", to="ALICE", text="hi alice")
        self.assertEqual(
            self.alice.lines(),
            [
                ":bob!bob@line.chatd PRIVMSG alice :back",
                ":carol!carol@web.chatd PRIVMSG alice :hi alice",
            ],
        )

    def test_topic(self) -> None:
        self.bob.send("/topic #den Snakes & ladders")
        self.assertEqual(self.alice.lines(), [":bob!bob@line.chatd TOPIC #den :Snakes & ladders"])
        self.alice.send("TOPIC #den")
        (topic, whotime) = self.alice.messages()
        self.assertEqual(
            (topic.command, topic.params), ("332", ["alice", "#den", "Snakes & ladders"])
        )
        self.assertEqual(whotime.params[:3], ["alice", "#den", "bob!bob@line.chatd"])

    def test_kick(self) -> None:
        self.bob.send("/kick #den alice behave")
        self.assertEqual(self.alice.lines(), [":bob!bob@line.chatd KICK #den alice :behave"])
        self.assertNotIn("#den", self.user("alice").rooms)

    def test_nick_from_old_mask(self) -> None:
        """
        A rename is C{NICK} from the old mask, user part included.
        """
        self.bob.send("/nick robert")
        self.carol.send(type="nick", nick="caroline")
        self.assertEqual(
            self.alice.lines(),
            [":bob!bob@line.chatd NICK :robert", ":carol!carol@web.chatd NICK :caroline"],
        )
        self.bob.send("after")
        self.assertEqual(self.alice.lines(), [":robert!robert@line.chatd PRIVMSG #den :after"])

    def test_quit_once_across_rooms(self) -> None:
        """
        A user leaving the server is one C{QUIT} for an IRC user sharing
        several rooms with it, not one per room.
        """
        self.bob.send("/join #two")
        self.carol.send(type="join", room="#two")
        self.alice.send("JOIN #two")
        self.alice.received()
        self.bob.send("/quit gone fishing")
        self.assertEqual(self.alice.lines(), [":bob!bob@line.chatd QUIT :Quit: gone fishing"])
        self.carol.disconnect()
        self.assertEqual(
            self.alice.lines(), [":carol!carol@web.chatd QUIT :Quit: connection closed"]
        )

    def test_two_quits_in_a_row(self) -> None:
        """
        Two users leaving one after the other, each with the same reason,
        are two C{QUIT} lines.
        """
        self.bob.send("/quit bye")
        dave = self.line("dave")
        dave.send("/join #den")
        self.alice.received()
        dave.send("/quit bye")
        self.assertEqual(self.alice.lines(), [":dave!dave@line.chatd QUIT :Quit: bye"])

    def test_no_lobby(self) -> None:
        """
        An IRC user is in no room until it joins one, and the lobby does
        not hear of it.
        """
        erin = self.line("erin")
        self.irc("frank")
        self.assertEqual(self.user("frank").rooms, {})
        self.assertEqual(erin.lines(), [])
        self.assertNotIn(self.user("frank"), self.hub.rooms["#lobby"].members)

    def test_notice_to_room(self) -> None:
        self.alice.send("NOTICE #den :heads up")
        self.assertEqual(self.bob.lines(), ["[#den] -alice- heads up"])

    def test_notice_errors_unanswered(self) -> None:
        """
        A NOTICE that cannot be delivered gets no answer, whatever the
        reason; a PRIVMSG gets the numeric.
        """
        self.alice.send("NOTICE ghost :anyone?")
        self.alice.send("NOTICE #nowhere :anyone?")
        self.alice.send("NOTICE #lobby :anyone?")
        self.alice.send("NOTICE #den :")
        self.alice.send("NOTICE")
        self.assertEqual(self.alice.lines(), [])
        self.alice.send("PRIVMSG ghost :anyone?")
        self.assertEqual(self.alice.lines(), [f":{SERVER} 401 alice ghost :No such nick/channel"])


class EchoMessageTests(IrcTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.bob = self.line("bob")
        self.bob.send("/join #den")

    def joined(self, caps: tuple[str, ...] = ()) -> IrcPeer:
        alice = self.irc("alice", caps)
        alice.send("JOIN #den")
        alice.received()
        self.bob.received()
        return alice

    def test_without(self) -> None:
        alice = self.joined()
        alice.send("PRIVMSG #den :hi")
        alice.send("PRIVMSG bob :psst")
        alice.send("NOTICE #den :note")
        self.assertEqual(alice.lines(), [])
        self.assertEqual(
            self.bob.lines(), ["[#den] <alice> hi", "*alice* psst", "[#den] -alice- note"]
        )

    def test_with(self) -> None:
        alice = self.joined(("echo-message",))
        alice.send("PRIVMSG #den :hi")
        alice.send("PRIVMSG bob :psst")
        alice.send("PRIVMSG #den :\x01ACTION waves\x01")
        self.assertEqual(
            alice.lines(),
            [
                ":alice!~alice@irc.chatd PRIVMSG #den :hi",
                ":alice!~alice@irc.chatd PRIVMSG bob :psst",
                ":alice!~alice@irc.chatd PRIVMSG #den :\x01ACTION waves\x01",
            ],
        )


class ServerTimeTests(IrcTestCase):
    def test_room_messages_tagged(self) -> None:
        bob = self.line("bob")
        bob.send("/join #den")
        alice = self.irc("alice", ("server-time",))
        plain_peer = self.irc("plain")
        for peer in (alice, plain_peer):
            peer.send("JOIN #den")
        alice.received()
        plain_peer.received()
        bob.send("hello")
        bob.send("/msg alice private")
        self.assertEqual(
            alice.lines(),
            [
                f"@time={STAMP} :bob!bob@line.chatd PRIVMSG #den :hello",
                f"@time={STAMP} :bob!bob@line.chatd PRIVMSG alice :private",
            ],
        )
        self.assertEqual(plain_peer.lines(), [":bob!bob@line.chatd PRIVMSG #den :hello"])

    def test_history_on_join(self) -> None:
        """
        Joining a room with history sends it, as tagged PRIVMSGs after the
        names, to C{server-time} clients only.
        """
        bob = self.line("bob")
        bob.send("/join #den")
        bob.send("one")
        self.clock.advance(60)
        bob.send("/me two")
        alice = self.irc("alice", ("server-time",))
        alice.send("JOIN #den")
        self.assertEqual(
            alice.lines(),
            [
                ":alice!~alice@irc.chatd JOIN :#den",
                f":{SERVER} 353 alice = #den :@bob alice",
                f":{SERVER} 366 alice #den :End of /NAMES list",
                f"@time={STAMP} :bob!bob@line.chatd PRIVMSG #den :one",
                "@time=2023-11-14T22:14:20.250Z"
                " :bob!bob@line.chatd PRIVMSG #den :\x01ACTION two\x01",
            ],
        )
        carol = self.irc("carol")
        carol.send("JOIN #den")
        self.assertEqual(carol.commands(), ["JOIN", "353", "366"])


# -- ordering -------------------------------------------------------------------


class PendingPasswordTests(IrcTestCase):
    """
    Input that comes while a password is being checked waits its turn.
    """

    def make_hub(self) -> Hub:
        store = MemoryStore()
        make_account(make_hub(self.clock, store=store), "alice")
        self.gate = Gate()
        hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
        return Hub(self.clock, store, passwords=Passwords(hasher, in_thread=self.gate))

    def test_ping_during_sasl(self) -> None:
        peer = self.irc()
        peer.send("CAP LS 302")
        peer.send("CAP REQ :sasl")
        peer.send("NICK alice")
        peer.send("USER alice 0 * :Alice")
        peer.send("AUTHENTICATE PLAIN")
        peer.received()
        peer.send(f"AUTHENTICATE {plain('alice', PASSWORD)}\r\nPING :tok\r\n".encode())
        self.assertEqual(peer.lines(), [])
        self.gate.release()
        self.assertEqual(peer.commands(), ["900", "903", "PONG"])

    def test_ping_during_pass(self) -> None:
        peer = self.irc()
        peer.send(
            f"PASS {PASSWORD}\r\nNICK alice\r\nUSER alice 0 * :Alice\r\nPING :tok\r\n".encode()
        )
        self.assertEqual(peer.lines(), [])
        self.gate.release()
        commands = peer.commands()
        self.assertEqual(commands[0], "001")
        self.assertEqual(commands[-1], "PONG")

    def test_ping_during_register(self) -> None:
        bob = self.irc("bob")
        bob.send(f"REGISTER * * {PASSWORD}\r\nPING :tok\r\n".encode())
        self.assertEqual(bob.lines(), [])
        self.gate.release()
        self.assertEqual(bob.commands(), ["REGISTER", "900", "PONG"])
        self.assertIn("bob", self.hub.accounts)


# -- leaving --------------------------------------------------------------------


class QuitTests(IrcTestCase):
    def test_quit(self) -> None:
        """
        QUIT is answered by ERROR, then the connection closes; the others
        see the reason.
        """
        alice, bob, carol = self.irc("alice"), self.line("bob"), self.irc("carol")
        for peer in (alice, carol):
            peer.send("JOIN #den")
        bob.send("/join #den")
        alice.received()
        carol.received()
        bob.received()
        alice.send("QUIT :gone fishing")
        (error,) = alice.messages()
        self.assertEqual(error.command, "ERROR")
        self.assertIn("gone fishing", error.params[0])
        self.assertTrue(alice.transport.disconnecting)
        self.assertNotIn("alice", self.hub.users)
        self.assertEqual(carol.lines(), [":alice!~alice@irc.chatd QUIT :Quit: gone fishing"])
        (left,) = bob.lines()
        self.assertIn("gone fishing", left)
        alice.send("PRIVMSG #den :too late")
        alice.disconnect()
        self.assertEqual(carol.lines(), [])

    def test_sign_on_deadline(self) -> None:
        """
        A connection that has not registered in time gets ERROR and is
        closed.
        """
        peer = self.irc()
        peer.send("NICK alice")
        self.advance(31)
        self.assertEqual(peer.lines(), ["ERROR :No nickname chosen in time; goodbye"])
        self.assertTrue(peer.transport.disconnecting)


# -- bounds ---------------------------------------------------------------------


class SlowConsumerTests(IrcTestCase):
    limits = Limits(flood_rate=0, max_sendq=4096, soft_sendq=1024)

    def setUp(self) -> None:
        super().setUp()
        self.alice = self.line("alice")
        self.bob = self.irc("bob")
        self.carol = self.irc("carol")
        self.alice.send("/join #den")
        for peer in (self.bob, self.carol):
            peer.send("JOIN #den")
            peer.received()
        self.alice.received()

    def test_non_reader_dropped(self) -> None:
        """
        An IRC client that never reads is dropped once its queue passes the
        bound, told why if it ever reads again; the others see it quit as
        a slow consumer, and get every message.
        """
        paused(self.bob)
        for n in range(200):
            self.alice.send(f"message number {n:03}")
            self.clock.advance(0.1)
        self.assertTrue(self.bob.transport.aborted)
        self.assertEqual(self.door.counters["slow_consumer"], 1)
        self.assertTrue(self.bob.received().endswith(b"ERROR :You are not reading; goodbye\r\n"))
        self.bob.disconnect()
        lines = self.carol.lines()
        self.assertIn(":bob!~bob@irc.chatd QUIT :Quit: slow consumer", lines)
        said = [line for line in lines if " PRIVMSG " in line]
        self.assertEqual(
            said,
            [f":alice!alice@line.chatd PRIVMSG #den :message number {n:03}" for n in range(200)],
        )
        self.assertNotIn("bob", self.hub.users)

    def test_paused_too_long(self) -> None:
        paused(self.bob)
        self.alice.send("hello?")
        self.clock.advance(30)
        self.assertTrue(self.bob.transport.aborted)
        self.bob.disconnect()
        self.assertIn(":bob!~bob@irc.chatd QUIT :Quit: slow consumer", self.carol.lines())


class FloodTests(IrcTestCase):
    limits = Limits(flood_burst=3, flood_rate=2, flood_backlog=10)

    def setUp(self) -> None:
        super().setUp()
        self.alice = self.irc("alice")
        self.bob = self.line("bob")
        self.bob.send("/join #den")
        self.alice.send("JOIN #den")
        self.clock.advance(10)
        self.alice.received()
        self.bob.received()

    def test_excess_delayed(self) -> None:
        """
        Past the burst, lines wait (reading paused) and go at the flood
        rate; none is lost.
        """
        self.alice.send(b"".join(b"PRIVMSG #den :%d\r\n" % n for n in range(6)))
        self.assertEqual(self.bob.lines(), [f"[#den] <alice> {n}" for n in (0, 1, 2)])
        self.assertEqual(self.alice.transport.producerState, "paused")
        self.clock.advance(0.5)
        self.assertEqual(self.bob.lines(), ["[#den] <alice> 3"])
        self.clock.advance(1.0)
        self.assertEqual(self.bob.lines(), [f"[#den] <alice> {n}" for n in (4, 5)])
        self.assertEqual(self.alice.transport.producerState, "producing")

    def test_sustained_flood(self) -> None:
        self.alice.send(b"".join(b"PRIVMSG #den :%d\r\n" % n for n in range(40)))
        self.assertEqual(self.door.counters["flood"], 1)
        self.assertIn("ERROR :Excess flood; goodbye", self.alice.lines())
        self.assertTrue(self.alice.transport.disconnecting)
        self.assertIn("excess flood", self.bob.lines()[-1])


# -- idle clients ---------------------------------------------------------------


class IdleTests(IrcTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice = self.irc("alice")
        self.bob = self.irc("bob")
        for peer in (self.alice, self.bob):
            peer.send("JOIN #den")
        self.alice.received()
        self.bob.received()

    def test_silent_client_pinged_then_dropped(self) -> None:
        """
        After 120 s of silence a client is pinged; after 120 s more it is
        dropped with ERROR, and the others see it quit.
        """
        self.advance(119)
        self.assertEqual(self.alice.lines(), [])
        self.advance(2)
        self.assertEqual(self.alice.lines(), [f"PING :{SERVER}"])
        self.assertEqual(self.bob.lines(), [f"PING :{SERVER}"])
        self.bob.send(f"PONG :{SERVER}")
        self.advance(118)
        self.assertEqual(self.alice.lines(), [])
        self.assertFalse(self.alice.transport.disconnecting)
        self.advance(2)
        self.assertEqual(self.alice.lines(), ["ERROR :Closing link: ping timeout"])
        self.assertTrue(self.alice.transport.disconnecting)
        self.assertNotIn("alice", self.hub.users)
        self.assertIn(":alice!~alice@irc.chatd QUIT :Quit: ping timeout", self.bob.lines())
        self.assertFalse(self.bob.transport.disconnecting)
        self.assertEqual(self.door.counters["ping_timeout"], 1)

    def test_answer_resets(self) -> None:
        """
        Any line, C{PONG} or other, counts as an answer and restarts the
        wait from then.
        """
        self.advance(121)
        self.assertEqual(self.alice.lines(), [f"PING :{SERVER}"])
        self.assertEqual(self.bob.lines(), [f"PING :{SERVER}"])
        self.advance(10)
        self.alice.send(f"PONG :{SERVER}")
        self.bob.send("PRIVMSG #den :talking")
        self.advance(118)
        self.assertEqual(self.alice.lines(), [":bob!~bob@irc.chatd PRIVMSG #den :talking"])
        self.assertEqual(self.bob.lines(), [])
        self.advance(3)
        self.assertEqual(self.alice.lines(), [f"PING :{SERVER}"])
        self.assertEqual(self.bob.lines(), [f"PING :{SERVER}"])
        self.alice.send("PRIVMSG #den :still here")
        self.advance(200)
        self.assertFalse(self.alice.transport.disconnecting)
        self.assertTrue(self.bob.transport.disconnecting)


# -- over loopback --------------------------------------------------------------


class Client(LineReceiver):
    """
    An IRC client over a real socket that keeps what it hears and can wait
    for a line.
    """

    delimiter = b"\r\n"

    def __init__(self) -> None:
        self.heard: list[str] = []
        self.waiting: list[tuple[Callable[[str], bool], Deferred[str]]] = []
        self.lost: Deferred[None] = Deferred()

    def lineReceived(self, line: bytes) -> None:
        text = line.decode("utf-8")
        self.heard.append(text)
        for entry in list(self.waiting):
            wanted, d = entry
            if wanted(text):
                self.waiting.remove(entry)
                d.callback(text)

    def wait_for(self, wanted: Callable[[str], bool]) -> Deferred[str]:
        for text in self.heard:
            if wanted(text):
                return succeed(text)
        d: Deferred[str] = Deferred()
        self.waiting.append((wanted, d))
        return d

    def say(self, text: str) -> None:
        self.sendLine(text.encode("utf-8"))

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.lost.callback(None)


class LoopbackTests(TestCase):
    timeout = 10

    def setUp(self) -> None:
        self.hub = make_hub(Clock())
        self.door = IrcDoor(self.hub, reactor, Limits(flood_rate=0), server_name=SERVER)
        self.port = reactor.listenTCP(0, self.door, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)

    @inlineCallbacks
    def connect(self, nick: str) -> Any:
        connected: Deferred[Client] = Deferred()

        class Connecting(ClientFactory):
            def buildProtocol(self, addr: Any) -> Client:
                client = Client()
                client.factory = self
                reactor.callLater(0, connected.callback, client)
                return client

        host = self.port.getHost()
        reactor.connectTCP(host.host, host.port, Connecting())
        client = yield connected
        client.say("CAP LS 302")
        client.say("CAP REQ :echo-message server-time")
        client.say(f"NICK {nick}")
        client.say(f"USER {nick} 0 * :{nick}")
        client.say("CAP END")
        yield client.wait_for(lambda line: line.split()[1:2] == ["422"])
        return client

    @inlineCallbacks
    def test_talk_and_quit(self) -> None:
        """
        Two clients register, join, talk (one of them in a line split over
        several writes), and quit; the server closes each connection after
        its ERROR.
        """
        alice = yield self.connect("alice")
        bob = yield self.connect("bob")
        alice.say("JOIN #den")
        yield alice.wait_for(lambda line: " 366 alice #den " in line)
        bob.say("JOIN #den")
        yield alice.wait_for(lambda line: line.startswith(":bob!~bob@irc.chatd JOIN"))
        alice.transport.write(b"PRIVMSG #den :hel")
        yield _later()
        alice.transport.write(b"lo bob\r\n")
        heard = yield bob.wait_for(lambda line: "PRIVMSG #den" in line)
        self.assertTrue(heard.startswith("@time="), heard)
        self.assertTrue(heard.endswith(":alice!~alice@irc.chatd PRIVMSG #den :hello bob"), heard)
        echo = yield alice.wait_for(lambda line: "PRIVMSG #den" in line)
        self.assertEqual(echo, heard)
        alice.say("QUIT :bye now")
        yield alice.wait_for(lambda line: line.startswith("ERROR :"))
        yield alice.lost
        quit = yield bob.wait_for(lambda line: " QUIT " in line)
        self.assertEqual(quit, ":alice!~alice@irc.chatd QUIT :Quit: bye now")
        bob.say("QUIT")
        yield bob.lost
        yield self.door.shutdown()
        self.assertEqual(self.hub.users, {})


def _later() -> Deferred[None]:
    d: Deferred[None] = Deferred()
    reactor.callLater(0.05, d.callback, None)
    return d


def _parsed(lines: list[str]) -> list[Any]:
    return [parse(line) for line in lines]
