# -*- test-case-name: tests.test_bench -*-
"""
What the load tool puts on the wire and how it recognises it coming back.

A benchmark message's text is::

    @TTTT:SSSSS:QQQQQQQQ:UUUUUUUUUUUUUU:xxxx...

C{@TTTT:} is the run's marker (C{TTTT} a random token of capital letters, so
messages of other runs, e.g. in a C{history} frame, are never counted; C{@}
cannot occur in a nick or a room name), C{S} the sender id (hex), C{Q} its
sequence number (hex), C{U} the send time in microseconds of C{time.monotonic_ns()} (the same
clock in every process of the machine), padded with C{x} to the requested
size.  The text is plain ASCII without quotes or backslashes, so it reaches
every client verbatim: inside C{[#room] <nick> ...} on the line door,
inside the C{"text"} string of a JSON frame on the WebSocket door and
after C{:nick!user@host PRIVMSG #room :} on the IRC door.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import struct

SID_DIGITS = 5
SEQ_DIGITS = 8
TS_DIGITS = 14
MARK_SIZE = 6  # "@" + 4 letters + ":"
TOKEN_LETTERS = "BCDFGHKLNPQRSTVWXZ"
"""Capitals, no vowels: CPython's C{bytes.count} skips ahead on bytes its
64-bit bloom filter of the marker rejects (slot: the byte's low 6 bits), and
these share no slot with the lower-case letters, digits, punctuation and
line ends of the traffic (C{J} and C{M} would share those of LF and CR; a
hex token such as C{8f3e} makes counting twice as slow: C{8} shares the slot
of the C{x} padding)."""
KEY_SIZE = MARK_SIZE + SID_DIGITS + 1 + SEQ_DIGITS
"""Bytes from the marker up to the end of the sequence number."""
TS_OFFSET = KEY_SIZE + 1
"""Where the timestamp starts, counted from the marker."""
HEADER_SIZE = TS_OFFSET + TS_DIGITS + 1
"""The smallest possible message text."""

WS_TEXT, WS_CLOSE, WS_PING, WS_PONG = 0x1, 0x8, 0x9, 0xA
TELNET_PROBE_ANSWER = b"\xff\xfb\x06"  # IAC WILL TIMING-MARK


def new_token() -> bytes:
    """
    A random marker for one run: C{@}, four of L{TOKEN_LETTERS} and C{:}.
    """
    return ("@" + "".join(random.choices(TOKEN_LETTERS, k=4)) + ":").encode("ascii")


def key(mark: bytes, sid: int, seq: int) -> bytes:
    """
    The prefix that identifies message C{seq} of sender C{sid}.
    """
    return mark + b"%05x:%08x" % (sid, seq)


def text(mark: bytes, sid: int, seq: int, now_us: int, size: int) -> str:
    """
    The text of message C{seq} of sender C{sid}, sent at C{now_us}.
    """
    head = f"{mark.decode('ascii')}{sid:05x}:{seq:08x}:{now_us:014d}:"
    return head + "x" * (size - len(head))


def line(nick_or_text: str) -> bytes:
    """
    One line for the line door.
    """
    return nick_or_text.encode("utf-8") + b"\r\n"


def ws_frame(payload: bytes, opcode: int = WS_TEXT) -> bytes:
    """
    One final client frame, masked with a random key as RFC 6455 requires.
    """
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    mask = random.getrandbits(32)
    if not size:
        return header + struct.pack("!I", mask)
    repeated = mask.to_bytes(4, "big") * (size // 4 + 1)
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(repeated[:size], "big")
    return header + struct.pack("!I", mask) + masked.to_bytes(size, "big")


def ws_json(obj: dict[str, object]) -> bytes:
    """
    One masked text frame holding C{obj} as JSON.
    """
    return ws_frame(json.dumps(obj, separators=(",", ":")).encode("utf-8"))


def ws_handshake(host: str, port: int, path: str) -> tuple[bytes, bytes]:
    """
    An Origin-less upgrade request and the C{Sec-WebSocket-Accept} value the
    server must answer with.
    """
    nonce = base64.b64encode(os.urandom(16))
    request = (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {nonce.decode()}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode("ascii")
    accept = base64.b64encode(
        hashlib.sha1(nonce + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
    )
    return request, accept


def ws_frames(
    buf: bytes, pos: int, control_only: bool = False
) -> tuple[list[tuple[int, int, int]], int]:
    """
    The complete server (unmasked) frames in C{buf} from C{pos}: a list of
    C{(opcode, payload start, payload end)} and where the first incomplete
    frame starts.  With C{control_only}, only control frames (pings,
    close) are listed: what a client in its room acts on, at about the
    cost of the walk alone.
    """
    frames = []
    size = len(buf)
    while pos + 2 <= size:
        length = buf[pos + 1] & 0x7F
        if length < 126:
            start = pos + 2
        elif length == 126:
            if pos + 4 > size:
                break
            length = (buf[pos + 2] << 8) | buf[pos + 3]
            start = pos + 4
        else:
            if pos + 10 > size:
                break
            (length,) = struct.unpack_from("!Q", buf, pos + 2)
            start = pos + 10
        end = start + length
        if end > size:
            break
        if not control_only or buf[pos] & 0x08:
            frames.append((buf[pos] & 0x0F, start, end))
        pos = end
    return frames, pos
