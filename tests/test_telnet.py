"""
The line door's telnet layer and keys, byte for byte, on StringTransports:
what it negotiates, every telnet command and option sequence (whole and
split across reads), what each key does, and how typed lines are edited.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatd.doors.line import LineDoor
from chatd.doors.line.telnet import edit
from chatd.hub import Hub
from chatd.limits import Limits
from chatd.testing import DO_BINARY, PEER, LinePeer, TCPLikeTransport

IAC, DO, WILL, WONT, DONT, SB, SE = 255, 253, 251, 252, 254, 250, 240
NOP, DM, BRK, IP, AO, AYT, EC, EL, GA, EOR = 241, 242, 243, 244, 245, 246, 247, 248, 249, 239
EOF, SUSP, ABORT = 236, 237, 238
BINARY, ECHO, SGA, TM, TTYPE, NAWS, LINEMODE = 0, 1, 3, 6, 24, 31, 34
MODE, SLC = 1, 3

INTERRUPTED = "*** Interrupted: the line you were typing was thrown away"
SUSPEND = "*** Ctrl-Z (suspend) does nothing here; type /quit to leave"
BREAK = "*** Ctrl-\\ (break) does nothing here; type /quit to leave"
HERE = "*** Yes, chatd is here"

# What the users typed: emoji, CJK, Romanian, Hangul, Greek and
# Cyrillic, whose UTF-8 bytes hold 0x83, 0x9a, 0x9c and 0x85 (Ctrl-C, Ctrl-Z,
# Ctrl-\ and Ctrl-E once their top bit is stripped).
TYPED = ("smile 😃 ok", "café naïve 日本語 Bună ziua", "안녕하세요 world", "Ελληνικά и русский")


def tm_answer() -> bytes:
    return bytes([IAC, WILL, TM])


def without_telnet(data: bytes) -> bytes:
    """
    C{data} without the telnet negotiation chatd sends (three bytes each).
    """
    while (at := data.find(bytes([IAC]))) >= 0:
        data = data[:at] + data[at + 3 :]
    return data


class TelnetTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.hub = Hub(self.clock)
        self.door = LineDoor(self.hub, self.clock, Limits(flood_rate=0))

    def peer(self, nick: str | None = None) -> LinePeer:
        peer = LinePeer(self.door)
        if nick is not None:
            peer.sign_on(nick)
        return peer

    def pair(self) -> tuple[LinePeer, LinePeer]:
        """
        A watcher (alice) and a typist (bob) in #lobby, their output so far
        read.
        """
        alice, bob = self.peer("alice"), self.peer("bob")
        alice.received()
        return alice, bob

    def send_split(self, peer: LinePeer, data: bytes) -> None:
        """
        Send C{data} one byte a read, as a slow link might.
        """
        for i in range(len(data)):
            peer.send(data[i : i + 1])


class NegotiationTests(TelnetTestCase):
    def test_asks_for_binary_first(self) -> None:
        """
        The first bytes of a connection ask the client to send binary
        (C{IAC DO TRANSMIT-BINARY}); nothing else is asked of a client that
        does not answer, such as C{nc}.
        """
        transport = TCPLikeTransport(peerAddress=PEER)
        self.door.buildProtocol(PEER).makeConnection(transport)
        data = transport.value()
        self.assertTrue(data.startswith(DO_BINARY + b"Welcome to chatd!\r\n"), data)
        self.assertEqual(data.count(bytes([IAC])), 1)
        transport.clear()
        self.clock.advance(Limits().sign_on_timeout - 1)
        self.assertEqual(transport.value(), b"")

    def test_binary_then_linemode(self) -> None:
        """
        A client that agrees to send binary is a telnet client: it is asked
        for LINEMODE, and once it agrees, told to edit lines itself and trap
        signals (C{MODE EDIT|TRAPSIG}).  Its answers to that (an ACK, its
        special characters) are consumed silently.
        """
        peer = self.peer()
        peer.received()
        peer.send(bytes([IAC, WILL, BINARY]))
        self.assertEqual(peer.received(), bytes([IAC, DO, LINEMODE]))
        peer.send(bytes([IAC, WILL, LINEMODE]))
        self.assertEqual(peer.received(), bytes([IAC, SB, LINEMODE, MODE, 3, IAC, SE]))
        slc = bytes([IAC, SB, LINEMODE, SLC, 3, 0x62, 3, 4, 2, 0x0F, IAC, SE])
        peer.send(slc + bytes([IAC, SB, LINEMODE, MODE, 7, IAC, SE]) + b"bob\r\n")
        self.assertTrue(peer.lines()[0].startswith("*** Welcome, bob!"))

    def test_refusals_end_negotiation(self) -> None:
        """
        A client that refuses binary (BusyBox) is asked nothing more; one
        that refuses LINEMODE (PuTTY) is left in its own mode.
        """
        busybox = self.peer()
        busybox.received()
        busybox.send(bytes([IAC, WONT, BINARY]))
        self.assertEqual(busybox.received(), b"")
        putty = self.peer()
        putty.received()
        putty.send(bytes([IAC, WILL, BINARY]))
        self.assertEqual(putty.received(), bytes([IAC, DO, LINEMODE]))
        putty.send(bytes([IAC, WONT, LINEMODE]))
        self.assertEqual(putty.received(), b"")

    def test_binary_accepted_both_ways(self) -> None:
        """
        A client may ask chatd to send binary too, and take it back; each
        request that changes something is answered once, and one that
        changes nothing is not answered (no negotiation loops).
        """
        peer = self.peer()
        peer.received()
        peer.send(bytes([IAC, DO, BINARY]))
        self.assertEqual(peer.received(), bytes([IAC, WILL, BINARY]))
        peer.send(bytes([IAC, DO, BINARY]))
        self.assertEqual(peer.received(), b"")
        peer.send(bytes([IAC, DONT, BINARY]))
        self.assertEqual(peer.received(), bytes([IAC, WONT, BINARY]))
        peer.send(bytes([IAC, DONT, BINARY]))
        self.assertEqual(peer.received(), b"")

    def test_other_options_refused(self) -> None:
        """
        Every other option is refused, as RFC 854 says (PuTTY's opening
        offers here), and a refusal of what chatd does not do anyway is not
        answered.
        """
        peer = self.peer()
        peer.received()
        offers = [(WILL, NAWS), (WILL, 32), (WILL, TTYPE), (WILL, 39), (DO, ECHO), (WILL, SGA)]
        offers += [(DO, SGA)]
        peer.send(b"".join(bytes([IAC, verb, option]) for verb, option in offers))
        answers = {WILL: DONT, DO: WONT}
        expected = b"".join(bytes([IAC, answers[verb], option]) for verb, option in offers)
        self.assertEqual(peer.received(), expected)
        peer.send(bytes([IAC, WONT, ECHO, IAC, DONT, SGA]))
        self.assertEqual(peer.received(), b"")

    def test_every_timing_mark_answered(self) -> None:
        """
        Every C{DO TIMING-MARK} is answered with C{WILL TIMING-MARK}, however
        many come (a telnet client shows nothing until its mark is answered),
        and the answers to chatd's own probe are consumed.
        """
        alice, bob = self.pair()
        for _ in range(3):
            bob.send(bytes([IAC, DO, TM]))
            self.assertEqual(bob.received(), tm_answer())
        bob.send(bytes([IAC, WILL, TM, IAC, WONT, TM, IAC, DONT, TM]))
        self.assertEqual(bob.received(), b"")
        bob.send("still here")
        self.assertEqual(alice.lines(), ["[#lobby] <bob> still here"])

    def test_negotiation_answered_before_the_data_after_it(self) -> None:
        """
        Negotiation in a packet is answered before the lines in the packet
        are, so that a client waiting for its timing mark shows the answers.
        """
        _alice, bob = self.pair()
        bob.send(b"/topic\r\n" + bytes([IAC, DO, TM]))
        self.assertEqual(bob.received(), tm_answer() + b"*** No topic is set for #lobby\r\n")

    def test_negotiation_never_shown(self) -> None:
        """
        Option negotiation and subnegotiation in the middle of a line never
        reach the chat as text.
        """
        alice, bob = self.pair()
        negotiation = bytes([IAC, DO, ECHO, IAC, WILL, NAWS, IAC, SB, NAWS, 0, 80, 0, 24, IAC, SE])
        bob.send(b"hi" + negotiation + bytes([IAC, NOP]) + b" there\r\n")
        self.assertEqual(alice.lines(), ["[#lobby] <bob> hi there"])


class CommandTests(TelnetTestCase):
    def test_interrupt_discards_typed_line(self) -> None:
        """
        Ctrl-C in telnet (IAC IP, then IAC DO TIMING-MARK) throws away the
        line being typed, and the TIMING-MARK is answered, before the
        notice, so that the client resumes showing output in time to show
        it; the notice starts a line of its own, after the echoed C{^C}.
        """
        alice, bob = self.pair()
        bob.send(b"oops, not th")
        bob.send(bytes([IAC, IP, IAC, DO, TM]))
        self.assertEqual(bob.received(), tm_answer() + f"\r\n{INTERRUPTED}\r\n".encode())
        bob.send(b"fine\r\n")
        self.assertEqual(alice.lines(), ["[#lobby] <bob> fine"])

    def test_suspend_break_abort_harmless(self) -> None:
        """
        Ctrl-Z (SUSP) and Ctrl-\\ (BRK, or ABORT in LINEMODE) each get a
        notice and change nothing: the line being typed is kept, and the
        session goes on showing output.
        """
        alice, bob = self.pair()
        bob.send(b"keep ")
        bob.send(bytes([IAC, SUSP, IAC, DO, TM]))
        self.assertEqual(bob.received(), tm_answer() + f"\r\n{SUSPEND}\r\n".encode())
        bob.send(bytes([IAC, BRK, IAC, DO, TM, IAC, ABORT, IAC, DO, TM]))
        self.assertEqual(bob.received(), 2 * tm_answer() + f"\r\n{BREAK}\r\n".encode())
        bob.send(b"this\r\n")
        self.assertEqual(alice.lines(), ["[#lobby] <bob> keep this"])
        bob.received()
        alice.send("still hear me?")
        self.assertEqual(bob.lines(), ["[#lobby] <alice> still hear me?"])

    def test_are_you_there(self) -> None:
        """
        AYT gets a visible answer, on a line of its own.
        """
        _alice, bob = self.pair()
        bob.send(bytes([IAC, AYT]))
        self.assertEqual(bob.lines(), ["", HERE])

    def test_end_of_file_on_empty_line_quits(self) -> None:
        """
        EOF (Ctrl-D in LINEMODE, or in PuTTY) on an empty line leaves, as
        /quit does; the lines before it in the same packet are said first.
        """
        alice, bob = self.pair()
        bob.send(b"last words\r\n" + bytes([IAC, EOF]))
        self.assertEqual(bob.lines(), ["[#lobby] <bob> last words", "*** Bye!"])
        self.assertEqual(alice.lines(), ["[#lobby] <bob> last words", "*** bob has left #lobby"])
        self.assertTrue(bob.transport.disconnecting)

    def test_end_of_file_mid_line_ignored(self) -> None:
        """
        EOF in the middle of a line (a terminal flushing what was typed so
        far) does nothing.
        """
        alice, bob = self.pair()
        bob.send(b"par" + bytes([IAC, EOF]) + b"tial\r\n")
        self.assertEqual(alice.lines(), ["[#lobby] <bob> partial"])
        self.assertFalse(bob.transport.disconnecting)

    def test_end_of_file_at_prompt(self) -> None:
        """
        EOF at the nickname prompt says goodbye and closes.
        """
        peer = self.peer()
        peer.received()
        peer.send(bytes([IAC, EOF]))
        self.assertEqual(peer.lines(), ["*** Bye!"])
        self.assertTrue(peer.transport.disconnecting)

    def test_erase_character_and_line(self) -> None:
        """
        NVT Erase Character and Erase Line edit the line being typed.
        """
        alice, bob = self.pair()
        bob.send(b"helpp" + bytes([IAC, EC]) + b"! oops" + bytes([IAC, EL]) + b"hello\r\n")
        self.assertEqual(alice.lines(), ["[#lobby] <bob> hello"])
        bob.send(b"a\xc3\xa9" + bytes([IAC, EC]) + b"b\r\n")
        self.assertEqual(alice.lines(), ["[#lobby] <bob> ab"])

    def test_other_commands_ignored(self) -> None:
        """
        NOP, Data Mark, Go Ahead, End of Record, Abort Output, a stray SE and
        bytes that are no command at all are ignored; the data around them
        is kept, and nothing is reported.
        """
        alice, bob = self.pair()
        for command in (NOP, DM, GA, EOR, AO, SE, 7, 0, 200, 235):
            bob.send(b"o" + bytes([IAC, command]) + b"k\r\n")
            self.assertEqual(alice.lines(), ["[#lobby] <bob> ok"], command)
            self.assertEqual(bob.lines(), ["[#lobby] <bob> ok"], command)

    def test_line_before_bad_command_answered(self) -> None:
        """
        A complete line followed, in the same read, by a byte that is no
        telnet command is handled (issue #14, item 17).
        """
        _alice, bob = self.pair()
        bob.send(b"/topic #lobby\r\n" + bytes([IAC, 7]))
        self.assertEqual(bob.lines(), ["*** No topic is set for #lobby"])

    def test_escaped_iac(self) -> None:
        """
        A doubled IAC is one 0xFF byte of data (which is not UTF-8, so the
        line is refused, not relayed); the connection stays up.
        """
        alice, bob = self.pair()
        bob.send(bytes([IAC, IAC]) + b"\r\n")
        self.assertEqual(bob.lines(), ["!!! That line is not valid UTF-8; ignored"])
        self.assertEqual(alice.lines(), [])
        self.assertFalse(bob.transport.disconnecting)

    def test_every_sequence_split_across_reads(self) -> None:
        """
        The same stream, fed one byte a read, has the same effect: commands,
        options, subnegotiation, CR LF and UTF-8 cut anywhere.
        """
        stream = (
            bytes([IAC, WILL, BINARY, IAC, WILL, LINEMODE])
            + bytes([IAC, SB, LINEMODE, SLC, 3, 0x62, 3, IAC, IAC, IAC, SE])
            + "안녕 ".encode()
            + bytes([IAC, NOP, IAC, DO, TM, IAC, 7])
            + "😃 x".encode()
            + bytes([IAC, EC, IAC, AYT])
            + b"ok\r\n"
            + bytes([IAC, IP, IAC, DO, TM])
            + "café\r\n".encode()
        )
        whole_alice, whole_bob = self.pair()
        whole_bob.send(stream)
        expected_alice, expected_bob = whole_alice.received(), whole_bob.received()
        self.setUp()
        alice, bob = self.pair()
        self.send_split(bob, stream)
        self.assertEqual(alice.received(), expected_alice)
        self.assertEqual(
            expected_alice,
            "[#lobby] <bob> 안녕 😃 ok\r\n[#lobby] <bob> café\r\n".encode(),
        )
        # Bob gets the same answers and lines; only the answers to his
        # negotiation come earlier from a whole packet.
        received = bob.received()
        for answer in (bytes([IAC, DO, LINEMODE]), tm_answer()):
            self.assertEqual(received.count(answer), expected_bob.count(answer))
        self.assertEqual(without_telnet(received), without_telnet(expected_bob))


class SubnegotiationTests(TelnetTestCase):
    def test_split_and_escaped(self) -> None:
        """
        Subnegotiation, with an escaped IAC in it and cut at every byte, is
        consumed and never shown as text.
        """
        alice, bob = self.pair()
        self.send_split(bob, b"he" + bytes([IAC, SB, TTYPE, 0, IAC, IAC, IAC, SE]) + b"llo\r\n")
        self.assertEqual(alice.lines(), ["[#lobby] <bob> hello"])

    def test_forgotten_end(self) -> None:
        """
        A subnegotiation that ends with a command other than SE ends there,
        and that command is acted on: the client's data after it is kept.
        """
        _alice, bob = self.pair()
        bob.send(bytes([IAC, SB, NAWS, 0, 80, IAC, DO, TM]) + b"after\r\n")
        self.assertEqual(bob.received(), tm_answer() + b"[#lobby] <bob> after\r\n")

    def test_too_long_is_told(self) -> None:
        """
        An unterminated telnet subnegotiation past Twisted's 4 KiB cap ends
        the connection, with a reason; the lines before it are handled.
        """
        peer = self.peer("alice")
        peer.send(b"first\r\n" + bytes([IAC, SB, 24]) + b"x" * 5000)
        self.assertEqual(
            peer.lines(),
            ["[#lobby] <alice> first", "!!! Telnet subnegotiation too long; goodbye"],
        )
        self.assertTrue(peer.transport.disconnecting)
        self.flushLoggedErrors()


class KeyTests(TelnetTestCase):
    def test_utf8_intact(self) -> None:
        """
        The issue's lines reach the room exactly, whole or cut at every byte.
        """
        alice, bob = self.pair()
        for text in TYPED:
            bob.send(text.encode() + b"\n")
            self.assertEqual(alice.lines(), [f"[#lobby] <bob> {text}"])
            self.send_split(bob, text.encode() + b"\r\n")
            self.assertEqual(alice.lines(), [f"[#lobby] <bob> {text}"])

    def test_raw_interrupt(self) -> None:
        """
        A raw Ctrl-C (from a client in raw mode, such as C{socat} with
        C{raw}) throws away the line being typed, as IAC IP does.
        """
        alice, bob = self.pair()
        bob.send(b"not this\x03but this\r\n")
        self.assertEqual(bob.lines(), ["", INTERRUPTED, "[#lobby] <bob> but this"])
        self.assertEqual(alice.lines(), ["[#lobby] <bob> but this"])

    def test_raw_end_of_file(self) -> None:
        """
        A raw Ctrl-D on an empty line (inetutils and netkit telnet send one
        outside LINEMODE) quits; within a line it is ignored.
        """
        alice, bob = self.pair()
        bob.send(b"a\x04b\r\n")
        self.assertEqual(alice.lines(), ["[#lobby] <bob> ab"])
        bob.received()
        bob.send(b"\x04")
        self.assertEqual(bob.lines(), ["*** Bye!"])
        self.assertEqual(alice.lines(), ["*** bob has left #lobby"])

    def test_end_of_file_after_cr_nul(self) -> None:
        """
        A Ctrl-D right after a line ended by CR NUL, in the same read, is on
        an empty line: it quits.
        """
        _alice, bob = self.pair()
        bob.send(b"hi\r\x00\x04")
        self.assertEqual(bob.lines(), ["[#lobby] <bob> hi", "*** Bye!"])

    def test_nothing_heard_after_goodbye(self) -> None:
        """
        What comes after /quit or Ctrl-D in the same read is not heard, not
        even to be refused.
        """
        for goodbye in (b"\x04", b"/quit\r\n"):
            peer = self.peer("bob")
            peer.send(goodbye + b"x" * (Limits().max_line + 10) + b"\r\n/who\r\n")
            self.assertEqual(peer.lines(), ["*** Bye!"], goodbye)
            peer.disconnect()

    def test_raw_keys_with_notices(self) -> None:
        """
        Raw Ctrl-Z, Ctrl-\\ and Ctrl-T get their notices, once a read each
        at most, and keep the line being typed.
        """
        _alice, bob = self.pair()
        bob.send(b"a\x1a\x1a\x1cb\x14c\r\n")
        self.assertEqual(bob.lines(), ["", SUSPEND, "", BREAK, "", HERE, "[#lobby] <bob> abc"])

    def test_editing_keys(self) -> None:
        """
        Backspace and DEL erase the character before them, Ctrl-U the line
        so far, Ctrl-W the word before it.
        """
        alice, bob = self.pair()
        for typed, said in [
            (b"helo\x08lo\r\n", "hello"),
            (b"caf\xc3\xa9\x7f\x7fe\r\n", "cae"),
            (b"junk\x15fresh\r\n", "fresh"),
            (b"one two\x17three\r\n", "one three"),
            (b"\x08\x7fstart\r\n", "start"),
        ]:
            bob.send(typed)
            self.assertEqual(alice.lines(), [f"[#lobby] <bob> {said}"], typed)

    def test_escape_sequences_removed(self) -> None:
        """
        Arrow and function keys (CSI, SS3), OSC strings and 8-bit C1
        controls never reach the room; what remains is said.
        """
        alice, bob = self.pair()
        bob.send("abc\x1b[D\x1bOA\x1b[1;5C\x1b]0;title\x07\x1b[15~d\u009b2Je\r\n".encode())
        self.assertEqual(alice.lines(), ["[#lobby] <bob> abcde"])

    def test_only_escapes_is_ignored(self) -> None:
        """
        A line that was only escape sequences or controls (an arrow key and
        Enter) says nothing and gets no error, at the prompt too.
        """
        alice, bob = self.pair()
        bob.send(b"\x1b[A\r\n")
        self.assertEqual(bob.received(), b"")
        self.assertEqual(alice.received(), b"")
        newcomer = self.peer()
        newcomer.received()
        newcomer.send(b"\x1b[A\x07\r\n")
        self.assertEqual(newcomer.received(), b"")
        newcomer.send(b"carol\r\n")
        self.assertTrue(newcomer.lines()[0].startswith("*** Welcome, carol!"))

    def test_line_endings(self) -> None:
        """
        LF, CR LF, CR NUL and a lone CR each end a line, once, even when the
        CR ends one read and its LF or NUL starts the next.
        """
        alice, bob = self.pair()
        bob.send(b"one\ntwo\r\nthree\r\x00four\rfive\r")
        bob.send(b"\nsix\r")
        bob.send(b"\x00seven\n")
        said = [f"[#lobby] <bob> {w}" for w in "one two three four five six seven".split()]
        self.assertEqual(alice.lines(), said)


class EditTests(SynchronousTestCase):
    def test_plain_text_untouched(self) -> None:
        """
        Text with no control character is returned as it is, tabs included.
        """
        for text in (*TYPED, "tab\tkept", ""):
            self.assertEqual(edit(text), text)

    def test_controls_removed(self) -> None:
        """
        Every C0 control but tab, DEL and every C1 control are removed, and
        escape sequences whole; unfinished ones at the end of a line too.
        """
        editing = "\x08\x15\x17"
        controls = "".join(chr(c) for c in range(0x20) if chr(c) not in editing)
        self.assertEqual(edit(f"ab\x7f{controls}c"), "a\tc")
        self.assertEqual(edit("a\u0080\u0085\u0091b"), "ab")
        self.assertEqual(edit("a\x1b[1;2"), "a")
        self.assertEqual(edit("a\x1b]unterminated title"), "a")
        self.assertEqual(edit("a\x1bPdcs\x1b\\b"), "ab")
        self.assertEqual(edit("a\x1b"), "a")

    def test_editing(self) -> None:
        """
        Erasing never goes past the start of the line, and Ctrl-W erases
        spaces, then a word.
        """
        self.assertEqual(edit("\x08\x08a"), "a")
        self.assertEqual(edit("a  \x17"), "")
        self.assertEqual(edit("a b  \x17c"), "a c")
