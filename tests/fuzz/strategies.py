"""
Hypothesis strategies that make fuzz runs: names, texts, commands and
requests (well-formed, mutated, garbled), telnet commands and high-bit
text, WebSocket frames of every kind, IRC lines of every kind (whole,
mutated, overlong, tagged, out of order), network events, and the lists of
L{actions} they add up to; and the well-formed telnet streams of
L{typed_streams}, with what the line protocol should make of them.
"""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from chatd.doors.line.telnet import TelnetServer
from chatd.limits import Limits
from chatd.testing import BINARY, CLOSE, CONT, HANDSHAKE, PING, PONG, TEXT
from tests.fuzz.actions import (
    Advance,
    Connect,
    Disconnect,
    IrcInput,
    IrcSecret,
    LineInput,
    Moderate,
    Reading,
    SecretFrame,
    SecretLine,
    Storm,
    WebSocketBytes,
    WebSocketInput,
)
from tests.fuzz.wire import DO, DONT, IAC, MAX_FRAME, SB, SE, WILL, WONT, Frame
from tests.fuzz.world import IRC_CAPS, MARK, MARK_BYTES

# -- strategies -----------------------------------------------------------------


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """
    Draw from one of C{choices}, each C{(weight, strategy)}.
    """
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


# Mostly names that exist or collide (so that users meet in rooms, take
# each other's nicks and message each other), some odd or invalid ones.
NICKS = ("alice", "bob", "carol", "dave", "Alice", "BOB")
ODD_NICKS = ("x", "a" * 24, "a" * 25, "9lives", "two words", "", "w[x]y{z}|^-_\\")
ROOMS = ("#a", "#b", "#c", "#lobby", "#A", "#LOBBY")
ODD_ROOMS = ("#", "a", "lobby", "##", "#a b", "#" + "r" * 32, "#" + "r" * 33, "#-", "#\u212a")
# Characters that break naive code: non-ASCII digits (isdigit() but not
# int()), case folds that change length or leave ASCII, controls, bidi and
# line separators, a lone surrogate, and command-like fragments.
TRICKY = [
    *"\u00b2 \u2460 \u0663 \uff11 \u202e \u2066 \u2028 \u0085 \x1b[2J \x00 \x07 \t \x7f "
    "\u0130 \u212a \u00df \ufb00 \uff03 \ufeff \U0001f600 \ud800 / // # \r \n".split(" "),
    " ",
]
# The control keys a terminal sends that chatd acts on: Ctrl-C, Ctrl-D,
# Backspace, Ctrl-T, Ctrl-U, Ctrl-W, Ctrl-Z, Ctrl-\\ and DEL.
KEYS = tuple(bytes([key]) for key in b"\x03\x04\x08\x14\x15\x17\x1a\x1c\x7f")
# Escape sequences: arrow keys (CSI and SS3), a window title (OSC), a
# control function and a paste's bracket, a lone ESC, cut-short ones, and
# an 8-bit CSI (U+009B in UTF-8), which terminals act on too.
ESCAPES = (
    b"\x1b[A",
    b"\x1bOA",
    b"\x1b]0;title\x07",
    b"\x1b[1;5C",
    b"\x1b[200~",
    b"\x1bPq#0\x1b\\",
    b"\x1b",
    b"\x1b[",
    b"\x1b]2;cut",
    b"\xc2\x9b",
    b"\xc2\x9bA",
)
# Telnet's two-byte commands: RFC 1184's EOF, SUSP and ABORT, RFC 885's EOR,
# and RFC 854's SE (outside a subnegotiation), NOP, DM, BRK, IP, AO, AYT,
# EC, EL and GA; and the control key each NVT function stands for.
EOF, SUSP, ABORT = 0xEC, 0xED, 0xEE
BRK, IP, AO, AYT, EC, EL = 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8
FUNCTIONS = range(0xEC, 0xFA)
KEY_OF = {IP: 0x03, EOF: 0x04, SUSP: 0x1A, ABORT: 0x1C, BRK: 0x1C, EC: 0x08, EL: 0x15, AYT: 0x14}
# Telnet options chatd takes part in: TRANSMIT-BINARY, TIMING-MARK, LINEMODE.
TRANSMIT_BINARY, TIMING_MARK, LINEMODE = 0, 6, 34
TELNET = [
    *b"\xff \xff\xff \xff\xfb \xff\xfc \xff\xfd \xff\xfe \xff\xfa \xff\xf0 \xff\xf4 \xff\xf1 "
    b"\xff\xf6 \x06 \x18 \x01 \x1f \r \n \r\n \r\x00 \x00 a / # \xc3 \xa9 \xed\xa0\x80 "
    b"\xe2\x80\xae /join #a /quit \x1b[2J".split(b" "),
    b" ",
    *(bytes([IAC, function]) for function in FUNCTIONS),
    *(
        bytes([IAC, verb, option])
        for verb in (WILL, WONT, DO, DONT)
        for option in (TRANSMIT_BINARY, TIMING_MARK, LINEMODE)
    ),
    *KEYS,
    *ESCAPES,
]
ENDINGS = (b"\r\n", b"\n", b"\r", b"", b"\r\r\n", b"\n\r", b"\r\x00", b"\xff\xf4")

# Any text but the password sign (st.text()'s own alphabet otherwise).
_chars = st.characters(codec="utf-8", exclude_characters=MARK)


def _text(max_size: int) -> st.SearchStrategy[str]:
    return st.text(_chars, max_size=max_size)


nicks = weighted(
    (6, st.sampled_from(NICKS)),
    (1, st.sampled_from(ODD_NICKS)),
    (1, st.builds(str.__add__, st.sampled_from("abAB"), st.text("abAB09_-[]\\^{}|", max_size=24))),
    (1, _text(max_size=8)),
)
rooms = weighted(
    (6, st.sampled_from(ROOMS)),
    (1, st.sampled_from(ODD_ROOMS)),
    (1, st.text("abcAB09_-", max_size=33).map(lambda s: "#" + s)),
    (1, _text(max_size=6).map(lambda s: "#" + s)),
)
texts = weighted(
    (4, st.sampled_from(("hi", "hello world", "/not a command"))),
    (1, st.sampled_from(("", " ", "\t"))),
    (1, st.builds(lambda n: "x" * n, st.sampled_from((390, 391, 2000, 2001)))),
    (2, _text(max_size=30)),
    (2, st.lists(st.one_of(st.sampled_from(TRICKY), _text(max_size=3)), max_size=6).map("".join)),
)
# Counts: ASCII ones, and digits that are not ASCII (some of which int()
# takes, some not).
NUMBERS = (
    "0",
    "1",
    "007",
    "-1",
    "+3",
    "3 4",
    "9" * 30,
    "\u00b2",
    "\u2460",
    "3\u00b2",
    "\u0663",
    "\uff11",
)
numbers = weighted(
    (1, st.integers(-3, 300).map(str)),
    (1, st.sampled_from(NUMBERS)),
    (1, st.text("0123456789 -+x\u00b2\u2460\u0663\uff11", min_size=1, max_size=5)),
)


def _command(template: str, *parts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(*parts).map(lambda values: template.format(*values))


# Passwords without the password sign, for requests that may be mutated,
# mistyped or garbled (and may then put them anywhere): any text, and some
# that chatd refuses (short, long, spaced).
plain_passwords = weighted(
    (1, st.sampled_from(("", "short", "pass word", "x" * 129, "\u00b2" * 6, "tab\tword"))),
    (2, _text(max_size=12)),
)
nick_and_password = _command("{} {}", nicks, plain_passwords)
# Passwords with the sign: mostly a few (so that a registered one is given
# again, right), some random, some refused.  None has a space in it, to
# stand as one word; spaced ones go where a space cannot split them off.
SECRETS = (f"{MARK}s3cret", f"hunter2{MARK}", MARK * 6)
secrets = weighted(
    (6, st.sampled_from(SECRETS)),
    (1, st.text(f"ab1!\u00e9{MARK}", max_size=8).map(lambda s: MARK + s)),
    (1, st.sampled_from((MARK, MARK * 128, MARK * 129, f"{MARK}\u202e\u0663\U0001f600"))),
)
spaced_secrets = weighted(
    (4, secrets),
    (1, st.sampled_from((f"{MARK}two words", f"two {MARK}", f"{MARK}\ttab", f" {MARK}pad "))),
)
# Nicknames next to a password: no empty one, nor line breaks.
secret_nicks = st.sampled_from((*NICKS, "x", "9lives", "a" * 25, "two words", "w[x]y{z}|^-_\\"))
keys = weighted(
    (3, st.sampled_from(("sesame", "k3y"))),
    (1, st.sampled_from(("", " ", "x" * 23, "x" * 24, "\u202e", "a b", "\x00", "\u00e9"))),
    (1, _text(max_size=6)),
)
mode_changes = weighted(
    (4, st.sampled_from(("+i", "-i", "+m", "-m", "+t", "-t", "+k", "-k", "+imt", "-imt", "+mk"))),
    (2, st.sampled_from(("+l", "-l", "+n", "-n", "+s", "-s", "+kl", "+lk", "-ln"))),
    (1, st.sampled_from(("", "+", "-", "i", "+x", "++i", "+kk", "+I", "+\u0130", "*"))),
    (1, st.text("+-iklmnstx", max_size=5)),
)
mode_args = weighted(
    (1, rooms),
    (1, mode_changes),
    (2, _command("{} {}", rooms, mode_changes)),
    (2, _command("{} {} {}", rooms, mode_changes, keys)),
    (1, _command("{} {}", mode_changes, keys)),
)
targets = st.one_of(nicks, _command("{} {}", rooms, nicks))
recalls = weighted((1, st.none()), (1, st.integers(0, 3)))
# What Moderate needs after its door and slot.
moderations = (
    st.integers(0, 7),
    st.sampled_from(
        "op deop voice devoice kick ban unban mode mode invite kill kill topic".split()
    ),
    st.one_of(st.sampled_from(("", "spam", "bye now")), texts),
    mode_changes,
    keys,
)


_BARE_COMMANDS = (
    "/register /identify /password /op /deop /voice /devoice /kick /ban /unban /mode".split()
)
"""Commands sent without their arguments."""

commands = weighted(
    (2, nicks),
    (3, texts),
    (3, _command("/join {}", rooms)),
    (1, _command("/join {} {}", rooms, rooms)),
    (2, _command("/part {} {}", rooms, texts)),
    (2, _command("/part {}", st.one_of(rooms, texts))),
    (2, _command("/msg {} {}", nicks, texts)),
    (2, _command("/nick {}", nicks)),
    (1, _command("/topic {} {}", rooms, texts)),
    (1, _command("/topic {}", st.one_of(rooms, texts))),
    (2, _command("/history {}", numbers)),
    (1, _command("/who {}", rooms)),
    (1, _command("/me {}", texts)),
    (1, _command("//{}", texts)),
    (1, _command("/quit {}", texts)),
    (1, _command("/{} {}", _text(max_size=6), texts)),
    (2, st.sampled_from("/part /msg /nick /topic /history /who /rooms /help /quit".split())),
    # Accounts (with unmarked passwords: see SecretLine) and moderation.
    (1, _command("/register {}", plain_passwords)),
    (1, _command("/identify {}", st.one_of(plain_passwords, nick_and_password))),
    (1, _command("/password {} {}", plain_passwords, plain_passwords)),
    (1, _command("/join {} {}", rooms, keys)),
    (1, _command("/history {} {}", st.one_of(rooms, nicks), numbers)),
    (1, _command("/history {} {} {}", st.one_of(rooms, nicks), numbers, numbers)),
    (3, _command("/{} {}", st.sampled_from(("op", "deop", "ban", "unban")), targets)),
    (2, _command("/kick {} {}", targets, texts)),
    (2, _command("/mode {}", mode_args)),
    (1, _command("/invite {} {}", nicks, st.one_of(rooms, texts))),
    (1, _command("/kill {} {}", nicks, texts)),
    (1, st.sampled_from(_BARE_COMMANDS)),
    (1, st.sampled_from("/invite /kill /mode #a +k /history #a 1 2 3 /identify a b c".split())),
)
mutations = weighted(
    (3, st.just([])),
    (
        2,
        st.lists(
            st.tuples(
                st.sampled_from(("insert", "delete", "replace", "swapcase", "repeat", "truncate")),
                st.integers(0, 1 << 16),
                st.one_of(st.binary(min_size=1, max_size=4), st.sampled_from(TELNET)),
            ),
            min_size=1,
            max_size=2,
        ),
    ),
)


def mutate(data: bytes, changes: list[tuple[str, int, bytes]]) -> bytes:
    """
    Apply byte-level C{changes} to C{data}.
    """
    for op, at, blob in changes:
        i = at % (len(data) + 1)
        if op == "insert":
            data = data[:i] + blob + data[i:]
        elif op == "delete":
            data = data[:i] + data[i + len(blob) :]
        elif op == "replace":
            data = data[:i] + blob + data[i + len(blob) :]
        elif op == "swapcase":
            data = data[:i] + data[i:].swapcase()
        elif op == "repeat":
            data = data[:i] + data[i:] * (1 + len(blob))
        else:
            data = data[:i]
    return data


def _line(command: str, changes: list[tuple[str, int, bytes]], ending: bytes) -> bytes:
    return mutate(command.encode("utf-8", "surrogatepass"), changes) + ending


def _long_line(prefix: str, size: int, fill: bytes, ending: bytes) -> bytes:
    head = prefix.encode()
    return head + (fill * size)[: max(size - len(head), 0)] + ending


MAX_LINE = Limits().max_line
slots = st.integers(0, 5)
cuts = weighted((2, st.just(())), (1, st.lists(st.integers(0, 1 << 20), max_size=3).map(tuple)))
endings = weighted((4, st.just(b"\r\n")), (1, st.sampled_from(ENDINGS)))
command_lines = st.builds(_line, commands, mutations, endings)
long_lines = st.builds(
    _long_line,
    st.sampled_from(("", "/topic #a ", "/msg bob ", "//", "/join #")),
    st.sampled_from((MAX_LINE - 1, MAX_LINE, MAX_LINE + 1, MAX_LINE + 2, 2 * MAX_LINE + 3)),
    st.sampled_from((b"x", b"\xc3\xa9", b"\xff", b"\r", b" ", b"\xff\xff")),
    st.sampled_from(ENDINGS),
)
# What telnet clients put in subnegotiations: LINEMODE's MODE (EDIT,
# TRAPSIG, ACK), SLC (function, modifiers, character; a character of 0xFF is
# doubled on the wire) and FORWARDMASK, window size, terminal type.
SUBNEGOTIATIONS = (
    bytes([LINEMODE, 1, 3]),
    bytes([LINEMODE, 1, 7]),
    bytes([LINEMODE, 3, 1, 3, 0, 3, 0x62, 3, 4, 2, 0x1C, 5, 0x62, 0x1A, 10, 2, 0x7F]),
    bytes([LINEMODE, 3, 8, 2, 0xFF, 0x11, 1, 0, 0x12, 0x80, 0xFF]),
    bytes([LINEMODE, DO, 2, 0x11, 0x22]),
    bytes([LINEMODE, WILL, 2]),
    bytes([31, 0, 80, 0, 24]),
    bytes([31, 0, 0xFF, 0, 0xFF]),
    bytes([24, 0]) + b"XTERM-256COLOR",
    bytes([24, 1]),
)


def _escaped(data: bytes) -> bytes:
    """
    C{data} as telnet sends it: each 0xFF doubled.
    """
    return data.replace(bytes([IAC]), bytes([IAC, IAC]))


# Telnet commands, well-formed or not: negotiations, subnegotiations of 0
# to 3 bytes or as clients send them (terminated or not), other commands,
# and stray bytes after IAC.
sb_ends = st.sampled_from((bytes([IAC, SE]), b"", bytes([SE]), bytes([IAC, IAC])))
telnet_commands = st.one_of(
    st.builds(
        lambda verb, option: bytes([IAC, verb, option]),
        st.sampled_from((WILL, WONT, DO, DONT)),
        st.sampled_from((TRANSMIT_BINARY, 1, 3, TIMING_MARK, 24, 31, LINEMODE, 255)),
    ),
    st.builds(
        lambda payload, end: bytes([IAC, SB]) + payload + end, st.binary(max_size=3), sb_ends
    ),
    st.builds(
        lambda payload, end: bytes([IAC, SB]) + _escaped(payload) + end,
        st.sampled_from(SUBNEGOTIATIONS),
        sb_ends,
    ),
    st.builds(
        lambda byte: bytes([IAC, byte]), st.one_of(st.sampled_from(FUNCTIONS), st.integers(0, 255))
    ),
)
# Text with the high bit set, as people type it: some languages' (the
# issue's examples) whole, or with bytes cut out or repeated; random bytes,
# mostly 0x80 and up; any characters past ASCII.  (None is the password
# sign, which could otherwise come up.)
HIGH_BIT_TEXTS = (
    "smile 😃 ok",
    "café naïve 日本語 Bună ziua",
    "안녕하세요 world",
    "Ελληνικά и русский",
)


def _garble(text: str, changes: list[tuple[bool, int]]) -> bytes:
    """
    C{text} in UTF-8 with, for each change, the byte at a place repeated
    (C{True}) or cut out.
    """
    data = text.encode()
    for repeat, at in changes:
        if data:
            i = at % len(data)
            data = data[: i + 1] + data[i:] if repeat else data[:i] + data[i + 1 :]
    return data


def _high(data: bytes) -> bytes:
    """
    Random bytes, most of them with the high bit set.
    """
    return bytes(byte if byte % 5 == 0 else byte | 0x80 for byte in data)


def _unmarked(data: bytes) -> bytes:
    while MARK_BYTES in data:
        data = data.replace(MARK_BYTES, b"")
    return data


high_bit = (
    st.lists(
        st.one_of(
            st.sampled_from(HIGH_BIT_TEXTS).map(str.encode),
            st.builds(
                _garble,
                st.sampled_from(HIGH_BIT_TEXTS),
                st.lists(st.tuples(st.booleans(), st.integers(0, 255)), min_size=1, max_size=3),
            ),
            st.binary(max_size=16).map(_high),
            st.text(
                st.characters(min_codepoint=0x80, codec="utf-8", exclude_characters=MARK),
                max_size=6,
            ).map(str.encode),
        ),
        min_size=1,
        max_size=5,
    )
    .map(b"".join)
    .map(_unmarked)
)
# Keys and escape sequences typed in a line, high-bit text, and telnet
# commands, among mutated commands.
telnet_mix = st.lists(
    st.one_of(
        telnet_commands,
        st.sampled_from(TELNET),
        st.sampled_from(KEYS),
        st.sampled_from(ESCAPES),
        high_bit,
        command_lines,
    ),
    min_size=1,
    max_size=8,
).map(b"".join)
line_inputs = weighted(
    (
        6,
        st.builds(
            LineInput,
            slots,
            st.lists(command_lines, min_size=1, max_size=3).map(b"".join),
            cuts,
            st.just("commands"),
        ),
    ),
    (1, st.builds(LineInput, slots, st.binary(max_size=100), cuts, st.just("random"))),
    (
        1,
        st.builds(
            LineInput,
            slots,
            telnet_mix,
            cuts,
            st.just("telnet"),
        ),
    ),
    (1, st.builds(LineInput, slots, long_lines, cuts, st.just("long"))),
    (
        1,
        st.builds(
            LineInput, slots, st.builds(bytes.__add__, high_bit, endings), cuts, st.just("high-bit")
        ),
    ),
    (
        1,
        st.builds(
            SecretLine,
            slots,
            st.sampled_from(
                ("register", "identify", "identify_nick", "password", "password_half", "sign_on")
            ),
            secret_nicks,
            secrets,
            spaced_secrets,
            recalls,
        ),
    ),
    (1, st.builds(Moderate, st.just("line"), slots, *moderations)),
)

# Well-formed telnet streams (TelnetStreamFuzzTests).


@dataclass(frozen=True)
class Typed:
    """
    A piece of what a telnet client sends: C{wire}, its bytes, stands for
    C{text}, the data (control keys included) that the line protocol gets;
    C{marks} counts the C{DO TIMING-MARK}s in it.
    """

    wire: bytes
    text: bytes = b""
    marks: int = 0

    def __add__(self, other: Typed) -> Typed:
        return Typed(self.wire + other.wire, self.text + other.text, self.marks + other.marks)


def _typed_data(data: bytes) -> Typed:
    """
    Data bytes as a client sends them (0xFF doubled), without any C{/}: a
    line that starts with one (maybe once editing keys erased what came
    before it) is a command, and C{/nick}, C{/part}, C{/join} or C{/quit}
    would change who says the marker, where, or whether.
    """
    data = data.replace(b"/", b"")
    return Typed(_escaped(data), data)


def _plain(data: bytes) -> Typed:
    """
    Bytes sent as they are (keys, escape sequences, line ends: no 0xFF).
    """
    return Typed(data, data)


def _negotiation(verb: int, option: int) -> Typed:
    return Typed(bytes([IAC, verb, option]), marks=int(verb == DO and option == TIMING_MARK))


def _subnegotiation(payload: bytes) -> Typed:
    """
    C{IAC SB}, C{payload} (the option, then its parameters) and C{IAC SE}.
    """
    return Typed(bytes([IAC, SB]) + _escaped(payload) + bytes([IAC, SE]))


def _function(byte: int) -> Typed:
    """
    A two-byte command, which stands for the control key of its NVT
    function (L{KEY_OF}), if it has one.
    """
    key = KEY_OF.get(byte)
    return Typed(bytes([IAC, byte]), b"" if key is None else bytes([key]))


def _inserted(line: bytes, inserts: list[tuple[int, Typed]]) -> Typed:
    """
    C{line}, with each command of C{inserts} put in at its place (any of
    the line's byte boundaries).
    """
    typed, start = Typed(b""), 0
    for at, command in sorted(inserts, key=lambda insert: insert[0] % (len(line) + 1)):
        i = at % (len(line) + 1)
        typed, start = typed + _plain(line[start:i]) + command, i
    return typed + _plain(line[start:])


SB_CAP = TelnetServer._MAX_SUBNEGOTIATION_LENGTH
LINE_ENDS = (b"\r\n", b"\n", b"\r", b"\r\x00")
MARKER = "marker 안녕 😃 ok"
verbs = st.sampled_from((WILL, WONT, DO, DONT))
telnet_options = st.one_of(
    st.sampled_from((TRANSMIT_BINARY, TIMING_MARK, LINEMODE)), st.integers(0, 255)
)
# Subnegotiations under the cap (which counts the option byte): as clients
# send them, random, and long ones (up to a byte short of the cap, an
# escaped 0xFF counting once).
sb_payloads = st.one_of(
    st.sampled_from(SUBNEGOTIATIONS),
    st.builds(
        bytes.__add__, telnet_options.map(lambda option: bytes([option])), st.binary(max_size=12)
    ),
    st.builds(
        lambda option, size, fill: bytes([option]) + (fill * size)[:size],
        telnet_options,
        st.sampled_from((100, SB_CAP - 2)),
        st.sampled_from((b"x", b"\xff", b"\xff\xf0", b"ab\xff\xfa")),
    ),
)
# Every command a client may send: negotiations of any option,
# subnegotiations, and IAC with any other byte but SB and IAC.
two_byte_commands = st.one_of(st.sampled_from(FUNCTIONS), st.integers(0, SB - 1))
# Those that stand for no key: they must leave the line they come in as it
# was typed.
silent_commands = st.one_of(
    st.builds(_negotiation, verbs, telnet_options),
    st.builds(_subnegotiation, sb_payloads),
    two_byte_commands.filter(lambda byte: byte not in KEY_OF).map(_function),
)
# What real clients send for a key that raises a signal, in LINEMODE with
# TRAPSIG: the function, then a TIMING-MARK to wait for.
signals = st.sampled_from((IP, SUSP, ABORT, EOF, BRK, AYT, AO)).map(
    lambda byte: _function(byte) + _negotiation(DO, TIMING_MARK)
)
typed_pieces = weighted(
    (3, st.binary(max_size=20).map(_typed_data)),
    (2, high_bit.map(_typed_data)),
    (1, _text(max_size=8).map(lambda text: _typed_data(text.encode("utf-8", "surrogatepass")))),
    (1, st.just(_typed_data(b"y" * (MAX_LINE + 1)))),
    (2, st.sampled_from(KEYS).map(_plain)),
    (1, st.sampled_from(ESCAPES).map(_plain)),
    (2, st.sampled_from(LINE_ENDS).map(_plain)),
    (2, st.builds(_negotiation, verbs, telnet_options)),
    (1, st.builds(_subnegotiation, sb_payloads)),
    (2, two_byte_commands.map(_function)),
    (1, signals),
)
typed_streams = st.lists(typed_pieces, max_size=30).map(lambda pieces: sum(pieces, Typed(b"")))
# A line end (mostly CR LF) to end the line the stream left unfinished,
# then the marker line, with commands that stand for no key anywhere in
# them.
line_ends = weighted((3, st.just(b"\r\n")), (1, st.sampled_from(LINE_ENDS)))
marker_tails = st.builds(
    _inserted,
    st.builds(lambda first, last: first + MARKER.encode() + last, line_ends, line_ends),
    st.lists(st.tuples(st.integers(0, 64), silent_commands), max_size=2),
)
packet_cuts = st.lists(st.integers(0, 1 << 16), max_size=10)
tail_cuts = st.lists(st.integers(0, 64), max_size=3)


def ends_session(text: bytes) -> bool:
    """
    Whether C{text}, the data a client sent (keys included), has a Ctrl-D
    at the start of a line, where it means end of input, as C{/quit}: after
    nothing, or after a line end (LF, CR, CR LF, CR NUL) or a Ctrl-C, with
    nothing in between but the keys that act at once (Ctrl-T, Ctrl-Z,
    Ctrl-\\).
    """
    typed = 0
    after_cr = False
    for byte in text:
        if after_cr and byte in (0x0A, 0x00):
            after_cr = False
            continue
        after_cr = byte == 0x0D
        if byte in (0x0A, 0x0D, 0x03):
            typed = 0
        elif byte == 0x04:
            if not typed:
                return True
        elif byte not in (0x14, 0x1A, 0x1C):
            typed += 1
    return False


# WebSocket requests: every type, with well-typed fields or any JSON at all.
# (A kind is a type, maybe followed by which form of it.)
REQUESTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "hello": (("nick",), ("password",)),
    "say": (("room", "text"), ()),
    "me": (("room", "text"), ()),
    "nick": (("nick",), ()),
    "join": (("room",), ("key",)),
    "part": (("room",), ("reason",)),
    "msg": (("to", "text"), ()),
    "who": (("room",), ()),
    "rooms": ((), ()),
    "topic": (("room",), ("text",)),
    "history": (("room",), ("limit", "before")),
}
# Accounts and moderation.
MORE_REQUESTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "history with": (("with",), ("limit", "before")),
    "register": (("password",), ()),
    "identify": (("password",), ("nick",)),
    "password": (("old", "new"), ()),
    "op": (("room", "nick"), ()),
    "deop": (("room", "nick"), ()),
    "voice": (("room", "nick"), ()),
    "devoice": (("room", "nick"), ()),
    "kick": (("room", "nick"), ("reason",)),
    "ban": (("room", "nick"), ()),
    "unban": (("room", "nick"), ()),
    "mode": (("room",), ("mode", "key", "limit")),
    "invite": (("room", "nick"), ()),
    "kill": (("nick",), ("reason",)),
}
TYPES = sorted({kind.split()[0] for kind in [*REQUESTS, *MORE_REQUESTS]})
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        _text(max_size=6),
        st.sampled_from(TRICKY),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(_text(max_size=4), children, max_size=3),
    ),
    max_leaves=5,
)
counts = weighted((3, st.integers(-3, 250)), (1, st.integers()), (1, st.none()))
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "nick": nicks,
    "room": rooms,
    "text": texts,
    "to": nicks,
    "reason": st.one_of(texts, st.none()),
    "limit": counts,
    "before": counts,
    "with": nicks,
    "password": plain_passwords,
    "old": plain_passwords,
    "new": plain_passwords,
    "key": weighted((3, keys), (1, st.none())),
    "mode": weighted((3, mode_changes), (1, st.none())),
}


def _request(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    required, optional = REQUESTS.get(kind) or MORE_REQUESTS[kind]
    return st.fixed_dictionaries(
        {"type": st.just(kind.split()[0]), **{name: FIELDS[name] for name in required}},
        optional={name: FIELDS[name] for name in optional},
    )


def _json(request: object, ascii_only: bool) -> bytes:
    return json.dumps(request, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


valid_requests = weighted(
    (3, st.sampled_from(sorted(REQUESTS))), (2, st.sampled_from(sorted(MORE_REQUESTS)))
).flatmap(_request)
mistyped_requests = st.builds(
    lambda kind, fields: {**fields, "type": kind},
    st.one_of(st.sampled_from(TYPES), json_values),
    st.dictionaries(
        st.one_of(st.sampled_from(sorted(FIELDS)), _text(max_size=4)),
        st.one_of(json_values, *FIELDS.values()),
        max_size=3,
    ),
)
requests = st.builds(_json, weighted((3, valid_requests), (1, mistyped_requests)), st.booleans())


# Requests with passwords (marked) in their places, for SecretFrame.
secret_requests = st.one_of(
    st.builds(
        lambda n, p: (("type", "hello"), ("nick", n), ("password", p)), secret_nicks, spaced_secrets
    ),
    st.builds(lambda p: (("type", "register"), ("password", p)), spaced_secrets),
    st.builds(lambda p: (("type", "identify"), ("password", p)), spaced_secrets),
    st.builds(
        lambda n, p: (("type", "identify"), ("nick", n), ("password", p)), nicks, spaced_secrets
    ),
    st.builds(
        lambda o, n: (("type", "password"), ("old", o), ("new", n)), spaced_secrets, spaced_secrets
    ),
)


def _nested(depth: int, opener: str, closed: bool) -> bytes:
    inner = "[" * depth + ('"x"' + "]" * depth if closed else "")
    return (opener + inner + ("}" if closed and opener else "")).encode()


nested = st.builds(
    _nested,
    st.sampled_from((10, 500, 900, 999, 1000, 1001, 3000, 60000)),
    st.sampled_from(("", '{"a":', '{"type":"say","room":"#a","text":')),
    st.booleans(),
)


def _fragments(payload: bytes, cuts: tuple[int, ...], ping: bool, opcode: int) -> tuple[Frame, ...]:
    points = sorted({c % (len(payload) + 1) for c in cuts})
    pieces = [payload[a:b] for a, b in zip([0, *points], [*points, len(payload)], strict=True)]
    frames = [
        Frame(piece, opcode if i == 0 else CONT, fin=i == len(pieces) - 1)
        for i, piece in enumerate(pieces)
    ]
    if ping and len(frames) > 1:
        frames.insert(1, Frame(b"mid", PING))
    return tuple(frames)


def _oversized(size: int, pieces: int) -> tuple[Frame, ...]:
    payload = b'"' + b"x" * (size - 2) + b'"'
    return _fragments(payload, tuple(size * i // pieces for i in range(1, pieces)), False, TEXT)


fragmented = st.builds(
    _fragments,
    st.one_of(requests, st.binary(max_size=50)),
    st.lists(st.integers(0, 1 << 16), min_size=1, max_size=3).map(tuple),
    st.booleans(),
    st.sampled_from((TEXT, TEXT, CONT, BINARY)),
)
oversized = st.builds(
    _oversized,
    st.sampled_from((MAX_FRAME - 1, MAX_FRAME + 1, 2 * MAX_FRAME)),
    st.sampled_from((1, 2, 3)),
)
close_payloads = st.one_of(
    st.just(b""),
    st.builds(
        lambda code, reason: struct.pack("!H", code) + reason,
        st.sampled_from((1000, 1001, 1002, 1005, 1006, 1015, 999, 3000, 4999, 5000, 0, 65535)),
        st.one_of(st.just(b""), st.binary(max_size=20), st.just(b"\xed\xa0\x80")),
    ),
    st.binary(max_size=3),
)
odd_frames = st.builds(
    Frame,
    st.one_of(requests, st.binary(max_size=130)),
    st.sampled_from((CONT, TEXT, BINARY, 3, 7, CLOSE, PING, PONG, 11, 15)),
    st.booleans(),
    st.integers(0, 7),
    st.booleans(),
)


def _frames(kind: str, frames: st.SearchStrategy[tuple[Frame, ...]]) -> st.SearchStrategy[Any]:
    return st.builds(WebSocketInput, slots, frames, cuts, st.just(kind))


def _one(payloads: st.SearchStrategy[bytes], opcode: int = TEXT) -> st.SearchStrategy[Any]:
    return payloads.map(lambda payload: (Frame(payload, opcode),))


websocket_inputs = weighted(
    (8, _frames("request", _one(requests))),
    (
        2,
        _frames(
            "requests", st.lists(st.builds(Frame, requests), min_size=2, max_size=4).map(tuple)
        ),
    ),
    (2, _frames("mutated", _one(st.builds(mutate, requests, mutations)))),
    (1, _frames("random", _one(st.binary(max_size=60)))),
    (1, _frames("nested", _one(nested))),
    (1, _frames("binary", _one(st.binary(max_size=20), BINARY))),
    (
        1,
        _frames(
            "control",
            st.one_of(
                _one(close_payloads, CLOSE),
                _one(st.binary(max_size=125), PING),
                _one(st.binary(max_size=125), PONG),
            ),
        ),
    ),
    (2, _frames("fragmented", fragmented)),
    (1, _frames("oversized", oversized)),
    (1, _frames("odd", st.lists(odd_frames, min_size=1, max_size=3).map(tuple))),
    (1, st.builds(WebSocketBytes, slots, st.binary(max_size=40), cuts)),
    (2, st.builds(SecretFrame, slots, secret_requests, recalls)),
    (2, st.builds(Moderate, st.just("websocket"), slots, *moderations)),
)


def _handshake(changes: list[tuple[str, int, bytes]], origin: str | None) -> bytes:
    handshake = HANDSHAKE
    if origin is not None:
        handshake = handshake[:-2] + b"Origin: " + origin.encode() + b"\r\n\r\n"
    return mutate(handshake, changes)


handshakes = weighted(
    (3, st.just(HANDSHAKE)),
    (
        1,
        st.builds(
            _handshake,
            mutations,
            st.sampled_from((None, "http://127.0.0.1:8080", "https://evil.example", "null", "x")),
        ),
    ),
)
# -- the IRC door ---------------------------------------------------------------

IRC_NICKS = (*NICKS, "erin", "frank", "Erin")
ODD_IRC_NAMES = ("*", "0", "-x", "a,b", ":x", "@op", "nick!u@h", "a\x01", "$*", "#*")
irc_nicks = weighted(
    (6, st.sampled_from(IRC_NICKS)), (1, nicks), (1, st.sampled_from(ODD_IRC_NAMES))
)
irc_rooms = weighted(
    (6, rooms),
    (1, st.sampled_from(("0", "&a", "#a,#b", "#a,,#b", ",", "#a\x07", "#a:b", "@#a", "+#lobby"))),
)
room_lists = st.lists(irc_rooms, min_size=1, max_size=5).map(",".join)
key_lists = st.lists(keys, min_size=1, max_size=5).map(",".join)
target_lists = st.lists(st.one_of(irc_nicks, irc_rooms), min_size=1, max_size=6).map(",".join)
CTCPS = (
    "\x01ACTION\x01",
    "\x01ACTION",
    "\x01ACTION \x01",
    "\x01VERSION\x01",
    "\x01PING 1700000000\x01",
    "\x01TIME\x01",
    "\x01DCC SEND x 0 0 0\x01",
    "\x01\x01",
    "\x01",
    "\x01action lower\x01",
)
ctcps = weighted((3, texts.map(lambda text: f"\x01ACTION {text}\x01")), (2, st.sampled_from(CTCPS)))
irc_texts = weighted((4, texts), (2, ctcps), (1, st.sampled_from((":", " ", "::x", "a :b"))))
cap_names = st.sampled_from(
    (*IRC_CAPS, "bogus", "-echo-message", "-sasl", "-", "sasl=PLAIN", "=", "SASL")
)
cap_lists = st.lists(cap_names, max_size=5).map(" ".join)
cap_commands = weighted(
    (3, st.sampled_from(("CAP LS", "CAP LS 302", "CAP END", "CAP LIST", "CAP REQ :sasl"))),
    (3, _command("CAP REQ :{}", cap_lists)),
    (1, _command("CAP REQ {}", cap_names)),
    (1, _command("CAP LS {}", numbers)),
    (1, st.sampled_from(("CAP", "CAP FOO", "CAP ls 301", "CAP LS 99999", "CAP NEW :x", "CAP ACK"))),
)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _plain_message(parts: tuple[str, str, str]) -> str:
    return _b64("\0".join(parts).encode("utf-8", "surrogatepass"))


SASL_CHUNKS = (
    "+",
    "*",
    "=",
    "PLAIN",
    "EXTERNAL",
    "A" * 399,
    "A" * 400,
    "A" * 401,
    "QUFB" * 100,
    "!!!!",
    _b64(b"\0alice\0"),
    _b64(b"alice\0alice\0pw\0x"),
    _b64(b"\xff\0dave\0pw"),
)
sasl_chunks = weighted(
    (2, st.sampled_from(SASL_CHUNKS)),
    (1, st.binary(max_size=60).map(_b64)),
    (
        2,
        st.tuples(st.sampled_from(("", "dave", "x")), irc_nicks, plain_passwords).map(
            _plain_message
        ),
    ),
)
authenticate_commands = weighted(
    (2, st.just("AUTHENTICATE PLAIN")),
    (3, _command("AUTHENTICATE {}", sasl_chunks)),
    (1, st.sampled_from(("AUTHENTICATE", "AUTHENTICATE :", "AUTHENTICATE plain"))),
)
LIST_FILTERS = (">1", "<5", "!#x*", ">0", "<1", "#a*", "#*", ">\u00b2", "<-1", ">", "!", "*", "[")
list_filters = st.lists(
    st.one_of(st.sampled_from(LIST_FILTERS), rooms), min_size=1, max_size=4
).map(",".join)
IRC_MODE_CHANGES = (
    "+o", "-o", "+v", "-v", "+b", "-b", "b", "+ov", "-ov", "+bb", "+kl", "+lk", "+ovkl",
    "-k", "+I", "+e", "+q", "+imnst", "-imnst", "+x", "+o-o", "-l+l",
)  # fmt: skip
irc_mode_changes = weighted(
    (3, mode_changes),
    (3, st.sampled_from(IRC_MODE_CHANGES)),
    (1, st.text("+-ovbklimnstxIe", max_size=6)),
)
MODE_ARGS = ("*!*@*", "bob!*@*", "a!b!c", "!", "bob*", "0", "2147483648", "2147483647", "-1")
mode_arg_lists = st.lists(
    st.one_of(irc_nicks, keys, numbers, st.sampled_from(MODE_ARGS)), max_size=4
).map(" ".join)
irc_reasons = weighted((3, texts), (1, st.just("")))
IRC_BARE = (
    "NICK", "USER", "PASS", "JOIN", "PART", "PRIVMSG", "NOTICE", "TOPIC", "NAMES", "LIST",
    "MODE", "KICK", "INVITE", "WHO", "WHOIS", "AWAY", "USERHOST", "ISON", "OPER", "KILL",
    "TAGMSG", "QUIT", "PING", "PONG", "REGISTER", "WHOWAS", "HELP", "TIME", "LINKS",
    "VERSION", "LUSERS", "MOTD", "PRIVMSG #a", "KICK #a", "INVITE bob", "REGISTER * *",
    "USER a b c", "JOIN :", "PART :", "MODE :", "WHOIS :", "PING :", "HELP :",
)  # fmt: skip
IRC_QUERIES = ("HELP", "TIME", "LINKS", "VERSION", "LUSERS", "MOTD", "WHOWAS")
NUMERICS = ("001 x", "433 * a", "005", "999 :x", "0", "1234567", "001", ":irc.fuzz 001 x :hi")
irc_commands = weighted(
    (3, cap_commands),
    (2, _command("NICK {}", irc_nicks)),
    (1, _command("USER {} 0 * :{}", irc_nicks, texts)),
    (1, _command("USER {} {} {} {}", irc_nicks, irc_nicks, irc_nicks, irc_nicks)),
    (1, _command("PASS {}", plain_passwords)),
    (2, authenticate_commands),
    (1, _command("REGISTER * * {}", plain_passwords)),
    (1, _command("REGISTER {} {} {}", irc_nicks, st.sampled_from(("*", "a@b.c")), plain_passwords)),
    (1, _command("PING :{}", texts)),
    (1, _command("PONG :{}", texts)),
    (4, _command("JOIN {}", room_lists)),
    (2, _command("JOIN {} {}", room_lists, key_lists)),
    (1, st.just("JOIN 0")),
    (2, _command("PART {} :{}", room_lists, irc_reasons)),
    (1, _command("PART {}", room_lists)),
    (6, _command("PRIVMSG {} :{}", target_lists, irc_texts)),
    (2, _command("NOTICE {} :{}", target_lists, irc_texts)),
    (1, _command("PRIVMSG {} {}", target_lists, irc_texts)),
    (2, _command("TOPIC {} :{}", irc_rooms, irc_reasons)),
    (1, _command("TOPIC {}", irc_rooms)),
    (1, _command("NAMES {}", room_lists)),
    (1, _command("LIST {}", list_filters)),
    (1, st.just("LIST")),
    (4, _command("MODE {} {} {}", irc_rooms, irc_mode_changes, mode_arg_lists)),
    (2, _command("MODE {}", st.one_of(irc_rooms, irc_nicks))),
    (2, _command("MODE {} {}", irc_nicks, st.sampled_from(("+i", "-i", "+o", "+iw", "i")))),
    (2, _command("KICK {} {} :{}", irc_rooms, target_lists, irc_reasons)),
    (2, _command("INVITE {} {}", irc_nicks, irc_rooms)),
    (2, _command("WHO {}", st.one_of(irc_rooms, irc_nicks, st.sampled_from(("*", "a*", "*!*@*"))))),
    (1, _command("WHOIS {}", st.one_of(irc_nicks, _command("irc.fuzz {}", irc_nicks)))),
    (1, _command("AWAY :{}", irc_reasons)),
    (1, st.just("AWAY")),
    (1, _command("USERHOST {}", st.lists(irc_nicks, max_size=6).map(" ".join))),
    (1, _command("ISON {}", st.lists(irc_nicks, max_size=6).map(" ".join))),
    (1, _command("OPER {} {}", irc_nicks, plain_passwords)),
    (1, _command("KILL {} :{}", irc_nicks, irc_reasons)),
    (1, _command("@+typing=active;+draft/reply=x TAGMSG {}", target_lists)),
    (1, _command("QUIT :{}", irc_reasons)),
    (2, _command("{} {}", st.sampled_from(IRC_QUERIES), irc_texts)),
    (2, st.sampled_from(IRC_BARE)),
    (1, st.sampled_from(NUMERICS)),
    (1, _command("{} {}", _text(max_size=6), irc_texts)),
)  # fmt: skip
# What a client may put before the command: message tags (escaped values,
# escapes cut short or unknown, empty keys and values, client-only ones),
# and a source.
TAG_VALUES = ("", "x", "a\\sb", "\\:\\\\\\r\\n", "\\", "\\x", "a;b", "\u00e9", "\\s\\")
tag_sections = st.lists(
    st.tuples(
        st.sampled_from(("+typing", "label", "msgid", "+draft/reply", "time", "a", "", "=", "+")),
        st.one_of(st.sampled_from(TAG_VALUES), _text(max_size=6)),
    ),
    min_size=1,
    max_size=4,
).map(lambda tags: "@" + ";".join(f"{k}={v}" if v else k for k, v in tags) + " ")
prefixes = weighted(
    (8, st.just("")),
    (2, tag_sections),
    (1, st.sampled_from((":bob!b@h ", ":irc.fuzz ", ": ", ":", "@", "@ ", " ", "  "))),
)
IRC_BYTES = (
    b"\r", b"\n", b"\0", b"\r\n", b" ", b":", b" :", b"@", b",", b";", b"\\", b"\x01",
    b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xe2\x80\xae", b"\xc0\x80",
)  # fmt: skip
irc_mutations = weighted(
    (4, st.just([])),
    (
        2,
        st.lists(
            st.tuples(
                st.sampled_from(("insert", "delete", "replace", "swapcase", "repeat", "truncate")),
                st.integers(0, 1 << 16),
                st.one_of(st.binary(min_size=1, max_size=4), st.sampled_from(IRC_BYTES)),
            ),
            min_size=1,
            max_size=3,
        ),
    ),
)
IRC_ENDINGS = (b"\r\n", b"\n", b"\r", b"", b"\r\r\n", b"\n\r", b"\0\r\n", b" \r\n", b"\n\n")
irc_endings = weighted((6, st.just(b"\r\n")), (1, st.sampled_from(IRC_ENDINGS)))
irc_lines = st.builds(
    lambda prefix, command, changes, ending: _line(prefix + command, changes, ending),
    prefixes,
    irc_commands,
    irc_mutations,
    irc_endings,
)


def _long_irc_line(prefix: str, size: int, fill: bytes, ending: bytes) -> bytes:
    """
    A line of C{size} bytes without its ending, C{prefix} then C{fill};
    with tags, C{size} counts from the command.
    """
    head = prefix.encode()
    tags, space, rest = head.partition(b" ") if head.startswith(b"@") else (b"", b"", head)
    return tags + space + rest + (fill * size)[: max(size - len(rest), 0)] + ending


# Lines just under and over the limit (510 bytes and CR LF), with
# characters cut at the limit, of commands whose text other clients get
# (after the sender's mask); tags just under and over the client's 4096
# bytes (and the server's 8191).
LONG_IRC_PREFIXES = (
    "PRIVMSG #lobby :",
    "PRIVMSG bob :",
    "NOTICE #lobby :",
    "@a=b PRIVMSG #a :",
    "TOPIC #lobby :",
    "PART #lobby :",
    "QUIT :",
    "AWAY :",
    "KICK #lobby bob :",
)
long_irc_lines = st.one_of(
    st.builds(
        _long_irc_line,
        st.sampled_from(LONG_IRC_PREFIXES),
        st.sampled_from((508, 509, 510, 511, 512, 1025)),
        st.sampled_from((b"x", b"\xc3\xa9", b"\xf0\x9f\x98\x80", b" ", b"\xff")),
        irc_endings,
    ),
    st.builds(
        lambda size, fill, rest, ending: b"@a=" + (fill * size)[: size - 4] + b" " + rest + ending,
        st.sampled_from((4094, 4095, 4096, 4097, 8191, 8192, 9000)),
        st.sampled_from((b"x", b"\\s", b"\xc3\xa9", b";b=")),
        st.sampled_from((b"PRIVMSG #lobby :tagged", b"TAGMSG #lobby", b"PING :t", b"")),
        irc_endings,
    ),
)
# Registration and SASL in any order, and cut short.
IRC_REGISTRATION = (
    "CAP LS 302", "CAP REQ :sasl", "CAP REQ :echo-message server-time", "CAP END",
    "AUTHENTICATE PLAIN", "AUTHENTICATE +", "AUTHENTICATE *", "AUTHENTICATE " + "A" * 400,
    "AUTHENTICATE " + _b64(b"\0dave\0wrong"), "NICK gina", "NICK alice", "USER gina 0 * :G",
    "PASS wrong", "REGISTER * * pw", "PING :x", "QUIT",
)  # fmt: skip
registration_orders = st.lists(st.sampled_from(IRC_REGISTRATION), min_size=2, max_size=8).map(
    lambda lines: "".join(line + "\r\n" for line in lines).encode()
)
irc_cuts = weighted(
    (2, st.just(())), (2, st.lists(st.integers(0, 1 << 20), min_size=1, max_size=6).map(tuple))
)
probes = weighted((3, st.just(True)), (1, st.just(False)))


def _irc(data: st.SearchStrategy[bytes], kind: str, fresh: bool = False) -> st.SearchStrategy[Any]:
    return st.builds(IrcInput, slots, data, irc_cuts, st.just(kind), probes, st.just(fresh))


irc_inputs = weighted(
    (8, _irc(st.lists(irc_lines, min_size=1, max_size=4).map(b"".join), "commands")),
    (1, _irc(long_irc_lines, "long")),
    (1, _irc(registration_orders, "registration", fresh=True)),
    (1, _irc(st.binary(max_size=80), "random")),
    (1, _irc(st.builds(bytes.__add__, high_bit, irc_endings), "high-bit")),
    (
        2,
        st.builds(
            IrcSecret,
            slots,
            st.sampled_from(("pass", "sasl", "sasl", "register", "oper")),
            secret_nicks,
            weighted((3, secrets), (1, st.just(MARK * 200))),
            recalls,
            st.sampled_from(("", "", "dave", "x")),
            st.booleans(),
        ),
    ),
    (2, st.builds(Moderate, st.just("irc"), slots, *moderations)),
)

nick_or_none = weighted((3, nicks), (1, st.none()))


def _network(names: tuple[str, ...]) -> st.SearchStrategy[Any]:
    """
    Network events for connections of the doors C{names}.
    """
    doors = st.sampled_from(names)
    irc = (
        [(1, st.builds(Connect, st.just("irc"), slots, nick_or_none, st.just(HANDSHAKE), caps))]
        if "irc" in names
        else []
    )
    return weighted(
        (
            3,
            st.builds(
                Advance, st.sampled_from((0, 0, 0.01, 0.25, 0.5, 1, 2.5, 10, 25, 31, 60, 121, 151))
            ),
        ),
        (1, st.builds(Disconnect, doors, slots)),
        (1, st.builds(Connect, st.just("line"), slots, nick_or_none)),
        (1, st.builds(Connect, st.just("websocket"), slots, nick_or_none, handshakes)),
        (
            2,
            st.builds(
                Reading, doors, slots, st.booleans(), st.sampled_from((None, None, 0, 100, 1000))
            ),
        ),
        (
            1,
            st.builds(
                Storm,
                doors,
                slots,
                st.sampled_from((3, 8, 20, 60)),
                st.sampled_from((10, 200, 1000)),
            ),
        ),
        *irc,
    )


# Which capabilities a new IRC connection asks for (see Connect).
caps = st.integers(0, len(IRC_CAPS) + 1)
network = _network(("line", "websocket"))
irc_network = _network(("line", "websocket", "irc"))


def actions(line: int, websocket: int, other: int, irc: int = 0) -> st.SearchStrategy[list[Any]]:
    """
    Lists of actions: line inputs, WebSocket inputs, network events and IRC
    inputs in the proportions given (IRC ones only for worlds with IRC
    connections: see L{runner.FuzzTestCase.irc}).
    """
    # Network events first: the simplest action, that a failing run shrinks
    # its padding to, is then Advance(0).
    kinds = weighted(
        (other, irc_network if irc else network),
        (line, line_inputs),
        (websocket, websocket_inputs),
        (irc, irc_inputs),
    )
    return st.lists(kinds, min_size=20, max_size=60)
