"""
The fuzz tests of both doors (see L{tests.fuzz} for what they send and
check), and the smallest inputs for bugs the fuzzer found.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatd.doors.irc import IrcDoor
from chatd.doors.line import LineDoor
from chatd.doors.websocket import WebSocketDoor
from chatd.hub import Hub
from chatd.limits import Limits
from chatd.testing import (
    PEER,
    TEXT,
    LinePeer,
    TCPLikeTransport,
    WebSocketPeer,
    quick_passwords,
)
from tests.fuzz.actions import Action
from tests.fuzz.invariants import check_hub, expect
from tests.fuzz.runner import FuzzTestCase, fuzz
from tests.fuzz.strategies import (
    MARKER,
    TIMING_MARK,
    Typed,
    actions,
    ends_session,
    marker_tails,
    packet_cuts,
    tail_cuts,
    typed_streams,
)
from tests.fuzz.wire import (
    _CONTROLS,
    IAC,
    SB,
    SE,
    WILL,
    check_server_json,
    parse_line_output,
    parse_server_frames,
)


class LineDoorFuzzTests(FuzzTestCase):
    @fuzz(100)
    @given(actions(line=6, websocket=1, other=2), st.booleans(), st.booleans())
    def test_line_door(self, actions: list[Action], shutdown: bool, web: bool) -> None:
        """
        Random bytes, telnet commands, mutated commands (accounts, history
        and moderation among them), passwords and overlong lines on the
        line connections (with some WebSocket traffic alongside) leave the
        hub consistent, raise nothing, log no error and leak no password;
        line connections only ever receive whole, terminal-safe lines, and
        are closed only for a reason they are told.
        """
        self.play(actions, shutdown, web)


class WebSocketDoorFuzzTests(FuzzTestCase):
    @fuzz(100)
    @given(actions(line=1, websocket=10, other=2), st.booleans(), st.booleans())
    def test_websocket_door(self, actions: list[Action], shutdown: bool, web: bool) -> None:
        """
        Requests of every type (accounts, history and moderation among
        them), passwords, mistyped and mutated JSON, deep nesting, and
        random, binary, control, fragmented, oversized and malformed frames
        on the WebSocket connections (with some line traffic alongside)
        leave the hub consistent, raise nothing, log no error and leak no
        password; WebSockets only ever receive whole frames whose text
        frames are typed JSON objects, and are closed only for a reason
        they are told or for breaking the protocol.
        """
        self.play(actions, shutdown, web)


class IrcDoorFuzzTests(FuzzTestCase):
    irc = True

    @fuzz(150)
    @given(actions(line=1, websocket=1, other=2, irc=8), st.booleans(), st.booleans())
    def test_irc_door(self, actions: list[Action], shutdown: bool, web: bool) -> None:
        """
        Commands of every kind the IRC door knows (registration, CAP, SASL
        in chunks, channels, messages and CTCPs, modes, queries), out of
        order, mutated, overlong, tagged, cut anywhere and with CR, LF, NUL
        and bad UTF-8 in odd places, on the IRC connections (with some line
        and WebSocket traffic alongside) leave the hub consistent, raise
        nothing, log no error and leak no password; IRC connections only
        ever receive whole, well-formed IRC lines, answer every C{PING}
        probe, and are closed only for a reason they are told.
        """
        self.play(actions, shutdown, web)


class FlowFuzzTests(FuzzTestCase):
    limits = Limits(
        flood_burst=5,
        flood_rate=4,
        flood_backlog=5,
        max_sendq=4096,
        soft_sendq=1024,
        max_per_ip=6,
        connect_rate=(12, 60.0),
    )
    buffer_size = 256
    irc = True

    @fuzz(80)
    @given(actions(line=3, websocket=3, other=4, irc=3), st.booleans(), st.booleans())
    def test_both_doors_with_flow_control(
        self, actions: list[Action], shutdown: bool, web: bool
    ) -> None:
        """
        With flood control on, small send queues, peers that stop and start
        reading and the clock advancing, input held back is handled later
        from timers without raising, send queues stay bounded, and no input
        is left waiting for a wake-up that never comes.
        """
        self.play(actions, shutdown, web)


class TelnetStreamFuzzTests(SynchronousTestCase):
    """
    The promise of issue #12, on one signed-on line connection and a
    WebSocket watcher in #lobby: no byte sequence a telnet client can send
    leaves a session deaf or corrupts the text of the next line.
    """

    def setUp(self) -> None:
        self.tally: Counter[str] = Counter()

    def tearDown(self) -> None:
        tally = self.tally
        print(
            f"\n{self.id()}: {tally['streams']} telnet streams ({tally['bytes']} bytes in "
            f"{tally['packets']} packets, {tally['marks']} DO TIMING-MARKs; "
            f"{tally['quits']} ended by Ctrl-D)"
        )

    @fuzz(300)
    @given(typed_streams, packet_cuts, marker_tails, tail_cuts)
    def test_next_line_intact(
        self, stream: Typed, cuts: list[int], tail: Typed, more_cuts: list[int]
    ) -> None:
        """
        A well-formed telnet stream (data with 0xFF escaped, with keys,
        escape sequences and high-bit text in it; negotiations of any
        option, subnegotiations under the cap, every other command), cut
        into any packets, then a line end and a marker line (cut anywhere,
        and with commands that stand for no key anywhere in it): either a
        Ctrl-D at the start of a line ended the session (and nothing was
        said after it), or the watcher's last message from the connection
        is exactly the marker, the connection is open and got its own copy
        last, and it answered every C{DO TIMING-MARK} with C{WILL
        TIMING-MARK}.  Nothing is raised or logged as an error, and what
        the connection said holds no control character.
        """
        clock = Clock()
        hub = Hub(clock)
        limits = Limits(flood_rate=0)
        watcher = WebSocketPeer(WebSocketDoor(hub, clock, limits))
        watcher.sign_on("carol")
        peer = LinePeer(LineDoor(hub, clock, limits))
        peer.sign_on("alice")
        watcher.frames()
        data = stream.wire + tail.wire
        points = {c % (len(stream.wire) + 1) for c in cuts}
        points |= {len(stream.wire) + c % (len(tail.wire) + 1) for c in more_cuts}
        start = 0
        for point in sorted(points | {len(data)}):
            if point > start and not peer.transport.disconnecting:
                peer.send(data[start:point])
                self.tally["packets"] += 1
            start = point
        self.tally.update(streams=1, bytes=len(data), marks=stream.marks + tail.marks)

        errors = self.flushLoggedErrors()
        expect(not errors, "errors were logged:", *(e.getTraceback() for e in errors))
        check_hub(hub)
        commands: list[bytes] = []
        lines = parse_line_output(bytearray(peer.received()), commands)
        frames = [
            check_server_json(payload)
            for opcode, payload in parse_server_frames(bytearray(watcher.transport.value()))
            if opcode == TEXT
        ]
        said = [f["text"] for f in frames if f["type"] == "message" and f["from"] == "alice"]
        echo = f"[#lobby] <alice> {MARKER}"
        copies = [line for line in lines if line.startswith("[#lobby] <alice> ")]
        expect(len(copies) == len(said), "the watcher and the sender saw", said, copies)
        for text in said:
            controls = [c for c in text if ord(c) in _CONTROLS]
            expect(not controls, "control characters were said:", controls, text)
        if "*** Bye!" in lines:
            self.tally["quits"] += 1
            expect(ends_session(stream.text), "a session ended with no Ctrl-D to end it", lines)
            expect(peer.transport.disconnecting, "a session said goodbye but stays", lines)
            after = lines[lines.index("*** Bye!") + 1 :]
            expect(not any(line.startswith("[#lobby] <") for line in after), "said after", after)
            expect(MARKER not in said, "the marker was said after goodbye", said)
            return
        expect(not ends_session(stream.text), "a Ctrl-D did not end it", lines)
        expect(not peer.transport.disconnecting, "a session was closed", lines[-5:])
        expect(said[-1:] == [MARKER], "the marker came out as", said[-3:], lines[-5:])
        expect(lines[-1:] == [echo], "the sender's own copy came out as", lines[-5:])
        expect(said.count(MARKER) == 1, "the marker was said more than once", said)
        answered = commands.count(bytes([IAC, WILL, TIMING_MARK]))
        marks = stream.marks + tail.marks
        expect(answered == marks, "WILL TIMING-MARK answers for DO:", answered, marks)


class RegressionTests(SynchronousTestCase):
    """
    The smallest inputs for bugs this fuzzer found (since fixed).
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.hub = Hub(self.clock)
        self.door = LineDoor(self.hub, self.clock, Limits(flood_rate=0))
        self.peer = LinePeer(self.door)
        self.peer.sign_on("alice")

    def test_empty_telnet_subnegotiation(self) -> None:
        """
        An empty telnet subnegotiation (IAC SB IAC SE) is ignored like any
        other: nothing is raised, and the rest of the packet is read.

        (C{twisted.conch.telnet.Telnet.negotiate} raises C{IndexError} for
        it, which dropped the connection.)
        """
        self.peer.send(bytes([IAC, SB, IAC, SE]) + b"hello\r\n")
        self.assertEqual(self.peer.lines(), ["[#lobby] <alice> hello"])

    def test_history_non_ascii_digits(self) -> None:
        """
        C{/history} with a count in digits that C{str.isdigit} accepts but
        C{int} does not (superscript two) is an error, not a bug: as a first
        word it is no count, so it names a nickname, an invalid one; as a
        second word it is a usage error.

        (C{do_history} checked C{isdigit()}, then called C{int()}.)
        """
        self.peer.send("/history \u00b2")
        (line,) = self.peer.lines()
        self.assertTrue(line.startswith("!!! Invalid nickname '\u00b2'"), line)
        self.peer.send("/history #lobby \u00b2")
        self.assertEqual(self.peer.lines(), ["!!! Usage: /history [#room|NICK] [N] [BEFORE]"])

    def test_takeover_past_the_room_limit(self) -> None:
        """
        Signing on with a password takes over a session that is in as many
        rooms as allowed (none of them #lobby): the new session is in those
        rooms, and the hub and the session agree that it is signed on.

        (C{Hub.connect} joined #lobby first, then the old rooms, and the
        last join's C{too_many_rooms} escaped from C{connect} after the
        user was added: the session went back to the prompt while the hub
        kept a user for it.)
        """
        hub = Hub(self.clock, max_rooms_per_user=3, passwords=quick_passwords())
        door = LineDoor(hub, self.clock, Limits(flood_rate=0))
        old = LinePeer(door)
        for line in ("alice", "/register s3cret!", "/join #a", "/join #b", "/part #lobby"):
            old.send(line)
        old.send("/join #c")
        new = LinePeer(door)
        new.received()
        new.send("alice s3cret!")
        lines = new.lines()
        self.assertNotIn("Choose a nickname:", lines)
        self.assertFalse(any(line.startswith("!!!") for line in lines), lines)
        user = hub.users["alice"]
        self.assertIs(user, new.protocol.protocol.user)
        self.assertEqual(list(user.rooms), ["#a", "#b", "#c"])
        self.assertTrue(old.transport.disconnecting)


class IrcRegressionTests(SynchronousTestCase):
    """
    The smallest IRC inputs for bugs this fuzzer found (since fixed).
    """

    def test_cap_ls_non_ascii_version(self) -> None:
        """
        C{CAP LS} with a version in digits that C{str.isdigit} accepts but
        C{int} does not (superscript two) is answered as a C{CAP LS} without
        a version, not a bug.

        (C{irc_CAP} checked C{isdigit()}, then called C{int()}.)
        """
        clock = Clock()
        door = IrcDoor(Hub(clock), clock, Limits(flood_rate=0), server_name="irc.fuzz")
        protocol = door.buildProtocol(PEER)
        transport = TCPLikeTransport(peerAddress=PEER, lenient=True)
        protocol.makeConnection(transport)
        protocol.dataReceived("CAP LS \u00b2\r\n".encode())
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertTrue(transport.value().startswith(b":irc.fuzz CAP * LS :"), transport.value())


class ClusterFuzzTests(FuzzTestCase):
    """
    The same, on one node of a cluster: every request waits for the log to
    apply it (a tick later), so sessions wait on Deferreds, close while
    one is pending, and sign on while their connection goes away.
    """

    cluster = True
    irc = True

    @fuzz(40)
    @given(actions(line=4, websocket=4, other=2, irc=3), st.booleans(), st.booleans())
    def test_cluster_node(self, actions: list[Action], shutdown: bool, web: bool) -> None:
        """
        Both doors' fuzzed input on a cluster node keeps every invariant
        the lone hub keeps.
        """
        self.play(actions, shutdown, web)
