# -*- test-case-name: tests.test_telnet -*-
"""
The telnet layer of the line door, and what a terminal's keys mean there.

Real telnet clients (GNU inetutils, netkit, BusyBox, PuTTY) talk NVT: they
negotiate options and send keys such as Ctrl-C as telnet commands.  Unless
TRANSMIT-BINARY is agreed, inetutils looks for control keys in the low seven
bits of every byte it sends, so that UTF-8 bytes act as Ctrl-C or Ctrl-Z;
netkit always does, and in its default "kludge" line mode a byte whose low
bits are Ctrl-E (0x85, as in many Hangul and CJK characters) toggles its
local echo and is lost.  L{TelnetServer} therefore asks every client to send
binary and, when it agrees (it is a telnet client), to use real LINEMODE
(RFC 1184) with local editing and signals trapped; it answers every
TIMING-MARK (clients stop showing output until it is answered), and turns
each NVT function into the control key it stands for (IP into Ctrl-C, EC
into Backspace, ...), so that the line protocol gives a key one meaning
whether a client sends it raw (C{nc}, C{socat} in raw mode) or as a telnet
command.  L{edit} then applies a finished line's editing keys and removes
what remains of terminal control: escape sequences (arrow keys) and other
control characters.
"""

from __future__ import annotations

import re
from math import inf
from typing import TYPE_CHECKING

from twisted.conch.telnet import (
    AYT,
    BRK,
    DO,
    DONT,
    EC,
    EDIT,
    EL,
    IAC,
    IP,
    LINEMODE,
    MODE,
    SB,
    SE,
    TRAPSIG,
    WILL,
    WONT,
    TelnetTransport,
)
from twisted.internet.interfaces import ITCPTransport
from twisted.python.failure import Failure

if TYPE_CHECKING:
    from chatd.doors.admission import Ticket
    from chatd.doors.line import LineChatProtocol, LineDoor

BINARY = b"\x00"  # TRANSMIT-BINARY (RFC 856)
TIMING_MARK = b"\x06"  # RFC 860
EOF = b"\xec"  # RFC 1184 (LINEMODE) adds these three functions to RFC 854's
SUSP = b"\xed"
ABORT = b"\xee"

CTRL_C, CTRL_D, CTRL_H, CTRL_T, CTRL_U, CTRL_Z, CTRL_BACKSLASH = (
    b"\x03",
    b"\x04",
    b"\x08",
    b"\x14",
    b"\x15",
    b"\x1a",
    b"\x1c",
)

KEY_OF_FUNCTION = {
    IP: CTRL_C,  # Interrupt Process
    ABORT: CTRL_BACKSLASH,  # what Ctrl-\\ sends in LINEMODE
    EOF: CTRL_D,
    SUSP: CTRL_Z,
    BRK: CTRL_BACKSLASH,
    EC: CTRL_H,  # Erase Character
    EL: CTRL_U,  # Erase Line
    AYT: CTRL_T,  # Are You There (BSD's ^T asks for status)
}
"""Each NVT function a client may send, as the control key it stands for."""

_WILL, _WONT, _DO, _DONT = WILL[0], WONT[0], DO[0], DONT[0]
_NEGOTIATION = {_WILL, _WONT, _DO, _DONT}
_IAC, _SB, _SE = IAC[0], SB[0], SE[0]

# The options chatd agrees to, as bits of TelnetServer._enabled and _asked:
# the client sends binary, chatd sends binary, the client does LINEMODE.
_BINARY_IN, _BINARY_OUT, _LINEMODE = 1, 2, 4
_SENDS = {BINARY: _BINARY_IN, LINEMODE: _LINEMODE}  # what WILL and WONT are about
_RECEIVES = {BINARY: _BINARY_OUT}  # what DO and DONT are about

# Escape sequences a terminal sends for keys (CSI and SS3: arrows, function
# keys) or that a paste may hold (OSC and other strings, two-byte escapes),
# in their 7-bit and 8-bit forms.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[NO][\x20-\x7e]?"
    r"|\x1b[\x20-\x2f]*[\x30-\x7e]?"
)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def edit(text: str) -> str:
    """
    A typed line as its user meant it: Backspace or DEL erases the character
    before it, Ctrl-U the whole line so far, Ctrl-W the word before it;
    escape sequences and every other control character (but tab) are
    removed.
    """
    if _CONTROL.search(text) is None:
        return text
    kept: list[str] = []
    for char in _ESCAPES.sub("", text):
        if char in "\x08\x7f":
            if kept:
                kept.pop()
        elif char == "\x15":
            kept.clear()
        elif char == "\x17":
            while kept and kept[-1].isspace():
                kept.pop()
            while kept and not kept[-1].isspace():
                kept.pop()
        elif char == "\t" or _CONTROL.match(char) is None:
            kept.append(char)
    return "".join(kept)


class TelnetServer(TelnetTransport):
    """
    The telnet side of one line connection, between the byte stream and a
    L{LineChatProtocol}.

      - It asks the client to send binary (C{DO BINARY}), and once the
        client agrees, to do LINEMODE with local editing (C{DO LINEMODE},
        then C{MODE EDIT|TRAPSIG}): a client that is no telnet client only
        ever sees the first three bytes.  It accepts BINARY in either
        direction when the client asks; every other option is refused, as
        RFC 854 says.  (Offering to I{send} binary would make inetutils
        telnet switch its terminal's output processing off, so that the echo
        of Enter no longer returns the cursor.)
      - Every C{DO TIMING-MARK} is answered with C{WILL TIMING-MARK}: after
        Ctrl-C, Ctrl-Z or Ctrl-\\, clients send one and discard everything
        they receive until it is answered.  Negotiation in a packet is
        answered before the packet's data is acted on, so the notice a key
        gets is shown.
      - NVT functions reach the protocol as control keys (L{KEY_OF_FUNCTION});
        unknown commands are ignored.  Nothing drops data the client sent.
      - A peer silent too long is probed with C{DO TIMING-MARK}, which telnet
        clients answer by themselves, and dropped if nothing comes back
        (L{check_silence}, which the door's sweep calls).

    It writes the protocol's bytes unchanged: the stock class rewrites every
    LF as CR LF and doubles 0xFF in each write, but the line door's payloads
    already end lines with CR LF, contain no bare LF, and are UTF-8 (which
    never holds 0xFF), so one encoded payload serves every recipient.

    All its attributes are set as a connection starts, so that CPython
    keeps them in the compact form it shares between the instances of a
    class, not in a dictionary per connection.
    """

    factory: LineDoor
    transport: ITCPTransport  # from makeConnection on: TCP, TLS or a unix socket
    ticket: Ticket

    def __init__(self, protocol: LineChatProtocol) -> None:
        # Not Telnet.__init__: its option and command tables (0.8 KiB for
        # each connection) serve the stock negotiation this class replaces.
        self.protocol: LineChatProtocol = protocol
        self._heard = 0.0  # when the peer last sent anything
        self._probe_sent = False
        self.state = "data"  # or "command", "option", "subnegotiation", "subnegotiation-command"
        self._verb = 0  # the negotiation verb whose option byte comes next
        self._sb_length = 0  # how much subnegotiation was skipped so far
        self._enabled = 0  # options in force (_BINARY_IN, _BINARY_OUT, _LINEMODE bits)
        self._asked = 0  # options chatd asked the client for, not yet answered

    def connectionMade(self) -> None:
        self._heard = self.factory.clock.seconds()
        self.protocol.factory = self.factory
        self.protocol.makeConnection(self)

    def offer(self) -> None:
        """
        Ask the client to send binary (and, once it agrees, to do LINEMODE).
        A client that is no telnet client shows these three bytes; one that
        is agrees or refuses.
        """
        self._asked |= _BINARY_IN
        self._write(IAC + DO + BINARY)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.ticket.release()
        try:
            self.protocol.connectionLost(reason)
        finally:
            del self.protocol

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def _write(self, data: bytes) -> None:
        """
        Telnet's own output (negotiation) goes through the protocol's
        output, in order with its lines and within its bounds.
        """
        self.protocol.send(data)

    # -- input --------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        self._heard = self.factory.clock.seconds()
        self._probe_sent = False
        if self.state == "data" and IAC not in data:
            self.protocol.dataReceived(data)
            return
        text = bytearray()
        pos, size = 0, len(data)
        while pos < size:
            state = self.state
            if state in ("data", "subnegotiation"):
                found = data.find(IAC, pos)
                end = size if found < 0 else found
                if state == "data":
                    text += data[pos:end]
                else:
                    self._sb_length += end - pos
                    if self._sb_length > self._MAX_SUBNEGOTIATION_LENGTH:
                        self._deliver(text)
                        self._subnegotiationLengthExceeded()
                        return
                if found < 0:
                    break
                self.state = "command" if state == "data" else "subnegotiation-command"
                pos = found + 1
                continue
            byte = data[pos]
            pos += 1
            if state == "command":
                self.state = "data"
                if byte == _IAC:
                    text.append(_IAC)  # an escaped 0xFF data byte
                elif byte in _NEGOTIATION:
                    self._verb, self.state = byte, "option"
                elif byte == _SB:
                    self._sb_length = 0
                    self.state = "subnegotiation"
                else:
                    text += KEY_OF_FUNCTION.get(bytes([byte]), b"")
            elif state == "option":
                self.state = "data"
                self._negotiate(self._verb, bytes([byte]))
            elif byte == _SE:  # "subnegotiation-command": after an IAC inside SB
                self.state = "data"  # about an option chatd refused: ignored
            elif byte == _IAC:
                self._sb_length += 1
                self.state = "subnegotiation"
            else:
                # A client that forgot IAC SE: the subnegotiation is over, and
                # this is the command after the IAC.
                self.state = "command"
                pos -= 1
        self._deliver(text)

    def _deliver(self, text: bytearray) -> None:
        if text and self.protocol is not None:
            self.protocol.dataReceived(bytes(text))

    def _subnegotiationLengthExceeded(self) -> None:
        """
        Twisted drops a peer whose telnet subnegotiation runs past 4 KiB
        unterminated; say so before it does.
        """
        if not self.transport.disconnecting:  # type: ignore[attr-defined]  # in no interface
            self.protocol.refuse("bad_telnet", "Telnet subnegotiation too long; goodbye")
        super()._subnegotiationLengthExceeded()

    # -- options ------------------------------------------------------------

    def _negotiate(self, verb: int, option: bytes) -> None:
        """
        Answer one option negotiation.  Only a request that changes an
        option's state is answered (RFC 854), so negotiation never loops.
        """
        if option == TIMING_MARK:
            if verb == _DO:  # each one marks a new point: always answer
                self._write(IAC + WILL + TIMING_MARK)
            return  # WILL or WONT: a probe's answer
        flag = _SENDS.get(option, 0) if verb in (_WILL, _WONT) else _RECEIVES.get(option, 0)
        enabled = bool(self._enabled & flag)
        if verb in (_WILL, _DO):
            if not flag:
                self._write(IAC + (DONT if verb == _WILL else WONT) + option)
            elif not enabled:
                self._enabled |= flag
                if not self._asked & flag:  # the client's request: agree
                    self._write(IAC + (DO if verb == _WILL else WILL) + option)
                self._asked &= ~flag
                self._enabled_now(flag)
        elif enabled or self._asked & flag:  # WONT or DONT
            self._enabled &= ~flag
            if not self._asked & flag:  # the client's request: acknowledge
                self._write(IAC + (DONT if verb == _WONT else WONT) + option)
            self._asked &= ~flag

    def _enabled_now(self, flag: int) -> None:
        if flag == _BINARY_IN and not self._enabled & _LINEMODE:
            # A telnet client: have it edit lines itself, and send IP, SUSP,
            # ABORT and EOF for the keys that would raise signals.
            self._asked |= _LINEMODE
            self._write(IAC + DO + LINEMODE)
        elif flag == _LINEMODE:
            self._write(IAC + SB + LINEMODE + MODE + bytes([EDIT | TRAPSIG]) + IAC + SE)

    # -- probing silent peers -----------------------------------------------

    def check_silence(self, now: float) -> float:
        """
        Probe a peer silent for C{probe_idle} seconds, and drop it if the
        probe is not answered within C{probe_timeout}; return when to check
        again (C{inf}: never, the probe is off).
        """
        limits = self.factory.limits
        if limits.probe_idle <= 0:
            return inf
        if now - self._heard < limits.probe_idle:
            return self._heard + limits.probe_idle
        if not self._probe_sent:
            self._probe_sent = True
            self._write(IAC + DO + TIMING_MARK)
            return now + limits.probe_timeout
        self.factory.count("dead_peer")
        self.protocol.sign_off("ping timeout")
        self.transport.abortConnection()
        return inf
