"""
What goes over the wire in fuzz runs: the fuzzer's client frames
(L{Frame}, well-formed or not), and the checks that what the server sends
is well-formed: whole, terminal-safe lines on the line door
(L{parse_line_output}), whole frames of typed JSON on the WebSocket door
(L{parse_server_frames}, L{check_server_json}, L{check_close_payload}),
whole IRC lines within IRC's limits on the IRC door (L{parse_irc_output}).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from chatd.limits import Limits
from chatd.testing import CLOSE, PING, PONG, TEXT, client_frame
from tests.fuzz.invariants import FuzzFailure, expect

# Telnet's command bytes.
IAC, SB, SE, WILL, WONT, DO, DONT = 0xFF, 0xFA, 0xF0, 0xFB, 0xFC, 0xFD, 0xFE
PROBE = bytes([IAC, DO, 6])  # DO TIMING-MARK: is a silent telnet peer there?
# Why the server may close a connection whatever it was sent (quit, kill,
# takeover, flood, slow consumer, sign-on timeout, shutdown), as each door
# says it: a line's start; a WebSocket's error code or notice.
LINE_FAREWELLS = (
    "*** Bye!",
    "!!! You were killed by ",
    "!!! Your nickname was taken over",
    "!!! Excess flood; goodbye",
    "!!! You are not reading; goodbye",
    "!!! No nickname chosen in time; goodbye",
    "*** server shutting down",
)
WEBSOCKET_FAREWELLS = ("killed", "taken_over", "flood", "slow_consumer", "sign_on_timeout")
WEBSOCKET_NOTICES = ("server shutting down",)
NORMAL_CLOSURE, GOING_AWAY = 1000, 1001
SERVER_TYPES = frozenset(
    "welcome message history private join part nick topic users rooms server error "
    "kick ban unban op voice mode modes invite registered identified password".split()
)
MAX_FRAME = Limits().max_frame
"""The longest message the WebSocket door takes."""


# -- what the server may send ---------------------------------------------------

# Anything a terminal acts on (chatd.doors.line.safe should leave none).
_UNSAFE = frozenset(
    [c for c in range(32) if c != 9]
    + [0x7F, *range(0x80, 0xA0), 0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F)]
    + [*range(0x2066, 0x206A), 0x2028, 0x2029]
)


# What a line's text may not hold once edited: C0 controls but tab, DEL, C1.
_CONTROLS = frozenset([c for c in range(32) if c != 9] + [0x7F, *range(0x80, 0xA0)])


def parse_line_output(buffer: bytearray, commands: list[bytes] | None = None) -> list[str]:
    """
    Take everything out of C{buffer}, which must be whole telnet commands
    (skipped, or added to C{commands} if given) and UTF-8 lines ended by CR
    LF with nothing in them that a terminal would act on (returned).
    """
    lines = []
    while buffer:
        if buffer[0] == IAC:
            expect(len(buffer) >= 2, "a telnet command cut short", bytes(buffer))
            if buffer[1] in (WILL, WONT, DO, DONT):
                expect(len(buffer) >= 3, "a telnet negotiation cut short", bytes(buffer))
                size = 3
            elif buffer[1] == SB:
                end = buffer.find(bytes([IAC, SE]))
                expect(end > 0, "a telnet subnegotiation cut short", bytes(buffer))
                size = end + 2
            else:
                expect(buffer[1] != IAC, "an escaped 0xFF in line output", bytes(buffer))
                size = 2
            if commands is not None:
                commands.append(bytes(buffer[:size]))
            del buffer[:size]
            continue
        end = buffer.find(b"\r\n")
        expect(end >= 0, "line output that does not end with CR LF", bytes(buffer))
        raw = bytes(buffer[:end])
        del buffer[: end + 2]
        expect(IAC not in raw, "a telnet command inside a line", raw)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise FuzzFailure(f"line output that is not UTF-8: {raw[:200]!r}") from None
        unsafe = [c for c in text if ord(c) in _UNSAFE]
        expect(not unsafe, "characters a terminal acts on:", unsafe, text)
        lines.append(text)
    return lines


def parse_server_frames(buffer: bytearray) -> list[tuple[int, bytes]]:
    """
    Take every frame out of C{buffer}, leaving no partial one (the server
    writes whole frames).  Server frames are final and unmasked, use no
    reserved bit or opcode, and give their length minimally.
    """
    frames = []
    while buffer:
        expect(len(buffer) >= 2, "a frame header cut short", bytes(buffer))
        first, second = buffer[0], buffer[1]
        opcode = first & 0x0F
        expect(first & 0x80, "a non-final server frame", bytes(buffer[:20]))
        expect(not first & 0x70, "reserved bits set on a server frame", bytes(buffer[:20]))
        expect(opcode in (TEXT, CLOSE, PING, PONG), "a server frame with opcode", opcode)
        expect(not second & 0x80, "a masked server frame", bytes(buffer[:20]))
        size, offset = second & 0x7F, 2
        if size == 126:
            expect(len(buffer) >= 4, "a frame header cut short", bytes(buffer))
            (size,) = struct.unpack("!H", buffer[2:4])
            expect(size >= 126, "a 16-bit length for a short frame", size)
            offset = 4
        elif size == 127:
            expect(len(buffer) >= 10, "a frame header cut short", bytes(buffer))
            (size,) = struct.unpack("!Q", buffer[2:10])
            expect(size >= 1 << 16, "a 64-bit length for a short frame", size)
            offset = 10
        expect(len(buffer) >= offset + size, "a frame cut short", bytes(buffer[:40]))
        expect(opcode == TEXT or size <= 125, "a control frame over 125 bytes", size)
        frames.append((opcode, bytes(buffer[offset : offset + size])))
        del buffer[: offset + size]
    return frames


def _not_json(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def check_server_json(payload: bytes) -> dict[str, Any]:
    """
    A text frame's payload must be a strict JSON object (no NaN) in UTF-8,
    with a C{type} the contract knows.
    """
    try:
        frame = json.loads(payload.decode("utf-8"), parse_constant=_not_json)
    except ValueError:
        raise FuzzFailure(f"a text frame that is not strict JSON: {payload[:200]!r}") from None
    expect(isinstance(frame, dict), "a text frame that is not an object", frame)
    expect(frame.get("type") in SERVER_TYPES, "a frame of unknown type", frame)
    return frame


def check_close_payload(payload: bytes) -> None:
    """
    A close frame is empty or a status code we may send and a UTF-8 reason.
    """
    if not payload:
        return
    expect(len(payload) >= 2, "a one-byte close payload", payload)
    (code,) = struct.unpack("!H", payload[:2])
    sendable = (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011)
    expect(code in sendable or 3000 <= code <= 4999, "a close frame with status", code)
    try:
        payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise FuzzFailure(f"a close reason that is not UTF-8: {payload!r}") from None


@dataclass(frozen=True)
class Frame:
    """
    A client frame, well-formed or not.
    """

    payload: bytes
    opcode: int = TEXT
    fin: bool = True
    rsv: int = 0
    masked: bool = True

    def encode(self) -> bytes:
        """
        The frame's bytes (masked with a fixed key, so runs repeat exactly).
        """
        return client_frame(
            self.payload, self.opcode, fin=self.fin, rsv=self.rsv, masked=self.masked
        )

    @property
    def well_formed(self) -> bool:
        """
        Whether this is a whole text message as RFC 6455 has clients send
        them (if the previous frames were).
        """
        return (
            self.masked
            and self.fin
            and not self.rsv
            and self.opcode == TEXT
            and len(self.payload) <= MAX_FRAME
        )

    def __repr__(self) -> str:
        payload = self.payload if len(self.payload) <= 80 else self.payload[:80] + b"..."
        return f"Frame({payload!r}, {self.opcode}, {self.fin}, {self.rsv}, {self.masked})"


# -- the IRC door ---------------------------------------------------------------

IRC_MAX_LINE = 512
"""Bytes of an IRC line after its tags, CR LF included."""
IRC_MAX_TAGS = 8191
"""Bytes of an IRC line's tag section, the C{@} and the space after it
included."""
# Why the server may close an IRC connection whatever it was sent, as an
# C{ERROR} line's text starts (quit, ping timeout, kill, takeover, flood,
# slow consumer, sign-on timeout) or a server C{NOTICE}'s (takeover,
# shutdown).
IRC_FAREWELLS = (
    "Closing link: ",
    "You were killed by ",
    "Your nickname was taken over",
    "Excess flood; goodbye",
    "You are not reading; goodbye",
    "No nickname chosen in time; goodbye",
)
IRC_NOTICES = ("Your nickname was taken over", "server shutting down")


@dataclass(frozen=True)
class IrcLine:
    """
    One line the IRC door sent, as the fuzzer reads it: its tag section
    (without the C{@} and the space), its source (without the C{:}), its
    command and its parameters (the trailing one last, without its C{:}).
    """

    tags: str
    source: str
    command: str
    params: tuple[str, ...]


def parse_irc_output(buffer: bytearray) -> list[IrcLine]:
    """
    Take every line out of C{buffer}, which must hold whole IRC lines: each
    ended by CR LF, with no other CR, LF or NUL, in UTF-8, at most
    L{IRC_MAX_LINE} bytes after a tag section of at most L{IRC_MAX_TAGS},
    and with a command and no empty parameter but the trailing one.
    """
    lines = []
    while buffer:
        end = buffer.find(b"\r\n")
        expect(end >= 0, "IRC output that does not end with CR LF", bytes(buffer[-600:]))
        raw = bytes(buffer[:end])
        del buffer[: end + 2]
        for byte in (b"\r", b"\n", b"\0"):
            expect(byte not in raw, "an IRC line with a", byte, raw[:600])
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise FuzzFailure(f"an IRC line that is not UTF-8: {raw[:600]!r}") from None
        tags, rest = "", raw
        if raw.startswith(b"@"):
            head, space, rest = raw.partition(b" ")
            expect(space, "an IRC line of tags alone", raw[:600])
            expect(len(head) + 1 <= IRC_MAX_TAGS, "IRC tags over 8191 bytes", len(head), raw[:600])
            tags = head[1:].decode()
        words = rest.decode().split(" ")
        source = words.pop(0)[1:] if rest.startswith(b":") else ""
        expect(words and words[0], "an IRC line without a command", text[:600])
        params: list[str] = []
        for i, word in enumerate(words[1:], 1):
            if word.startswith(":"):
                params.append(" ".join(words[i:])[1:])
                break
            expect(word, "an IRC line with an empty parameter (two spaces)", text[:600])
            params.append(word)
        line = IrcLine(tags, source, words[0], tuple(params))
        size = len(rest) + 2
        expect(size <= IRC_MAX_LINE or relayed(line), "an IRC line over 512 bytes", size, rest)
        lines.append(line)
    return lines


def relayed(line: IrcLine) -> bool:
    """
    Whether C{line} is a user's C{PRIVMSG} or C{NOTICE} whose command,
    target and text a client could have sent in one line: the door relays
    it whole even when its source (the sender's mask) takes it past 512
    bytes, as Ergo does (see C{chatd.doors.irc.wire.text_lines}).  Longer
    texts (from chatd's other doors) must be cut into lines that fit.
    """
    if line.command not in ("PRIVMSG", "NOTICE") or "!" not in line.source:
        return False
    if len(line.params) != 2:
        return False
    target, text = line.params
    return len(text.encode()) <= IRC_MAX_LINE - 2 - len(f"{line.command} {target} ")
