# -*- test-case-name: tests.test_line -*-
"""
The line door: plain UTF-8 lines over TCP, friendly to C{telnet} and C{nc}.

A connection is a L{LineChatProtocol} (a C{LineReceiver}) running inside a
telnet transport, which consumes the option negotiation real telnet clients
send.  The first line is the nickname; after that a line is either a
C{/command} or something to say in the current room.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from typing import Any, cast

from twisted.conch.telnet import TelnetProtocol
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from chatd.doors.admission import Admission, Refusal
from chatd.doors.base import Door, no_delay, tcp_socket
from chatd.doors.flow import Throttle
from chatd.doors.line.commands import LineCommands
from chatd.doors.line.rendering import LineEncoder, as_lines
from chatd.doors.line.telnet import (
    CTRL_BACKSLASH,
    CTRL_C,
    CTRL_D,
    CTRL_T,
    CTRL_Z,
    TelnetServer,
    edit,
)
from chatd.errors import ChatError
from chatd.hub import Hub
from chatd.interfaces import IDoor, IGateway
from chatd.limits import Limits
from chatd.model import (
    LOBBY,
    Error,
)

BANNER = (
    "Welcome to chatd!",
    "Type a nickname to start chatting, then /help for the commands.",
    "A registered nickname: type it and its password on one line.",
)
PROMPT = "Choose a nickname:"
KEY_NOTICES = {
    CTRL_C: "*** Interrupted: the line you were typing was thrown away",
    CTRL_Z: "*** Ctrl-Z (suspend) does nothing here; type /quit to leave",
    CTRL_BACKSLASH: "*** Ctrl-\\ (break) does nothing here; type /quit to leave",
    CTRL_T: "*** Yes, chatd is here",
}
"""What each key that acts at once says, on a line of its own (the client
has echoed the key on the line being typed)."""

_LINE_ENDS = re.compile(rb"\r[\n\x00]?")
_KEYS = re.compile(rb"([\x03\x04\x14\x1a\x1c])")


def _keep_alive(transport: Any, idle: float) -> None:
    """
    Turn on TCP keepalive, probing after C{idle} seconds of silence where the
    platform lets us choose, so that vanished peers are noticed even when
    the telnet probe is off.  Under TLS the socket is a layer further down;
    unix sockets have no keepalive.
    """
    handle = tcp_socket(transport)
    if handle is None:
        return
    handle.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (
        ("TCP_KEEPIDLE", max(int(idle), 60) if idle > 0 else 120),
        ("TCP_KEEPINTVL", 30),
        ("TCP_KEEPCNT", 4),
    ):
        if hasattr(socket, option):
            handle.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


class LineChatProtocol(LineCommands, LineReceiver, TelnetProtocol):
    """
    One telnet-style connection: a nickname prompt, then commands and talk.

    Lines end with LF, CR LF, CR NUL or a lone CR.  A line longer than the
    door's C{max_line} bytes is refused and discarded as it arrives; the
    connection stays up.  Ctrl-C, Ctrl-D, Ctrl-Z, Ctrl-\\ and Ctrl-T act as
    they arrive (see L{KEY_NOTICES}); a line's other control keys are
    applied when it ends (L{edit}).
    """

    delimiter = b"\n"
    door: LineDoor
    factory: LineDoor

    def __init__(self) -> None:
        # Every attribute a connection ever sets is set as it starts (here
        # and in started()): CPython then keeps them in a compact form shared
        # by the instances of the class, where a name first set later, once
        # many instances exist, gives each a dictionary of its own (0.6 KiB).
        self._current = None
        self._buffer = b""
        self._discarding = False
        self._after_cr = False  # the last input ended with CR: an LF or NUL next is part of it
        self.user = None
        self._closing = False
        self._reading_paused = False
        self._pending = None

    @property
    def telnet(self) -> TelnetServer:
        return cast(TelnetServer, self.transport)

    # -- connection ---------------------------------------------------------

    def connectionMade(self) -> None:
        self.stream = self.telnet.transport
        self.address = self.telnet.ticket.host
        outbox = self.started(self.factory)
        self.stream.registerProducer(outbox, True)
        _keep_alive(self.stream, self.door.limits.probe_idle)
        no_delay(self.stream)
        self.telnet.offer()
        self.send(as_lines(*BANNER, PROMPT))

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.ended()

    def write(self, payload: bytes) -> None:
        if self.batch is not None:
            self.batch.push(payload)
        else:
            self.telnet.write(payload)

    def direct(self) -> Callable[[bytes], None]:
        """
        Straight to the byte stream: L{TelnetServer} passes the line
        door's payloads through unchanged, so fan-out skips it.  On a plain
        TCP connection, into this pass's L{Batch}.
        """
        if self.batch is not None:
            return self.batch.push
        return cast(Callable[[bytes], None], self.stream.write)

    def payload_size(self, payload: bytes) -> int:
        return len(payload)

    def watch(self, now: float) -> float:
        return self.telnet.check_silence(now)

    def finish(self) -> None:
        if self.batch is not None:
            self.batch.flush()
        # TLS will not close while a producer is registered.
        self.stream.unregisterProducer()
        self.telnet.loseConnection()

    # -- input --------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """
        Split C{data} (from which the telnet layer took its commands) into
        lines, acting on the keys that act at once on the way.
        """
        if self._after_cr:
            self._after_cr = False
            if data[:1] in (b"\n", b"\x00"):
                data = data[1:]
        if b"\r" in data:
            self._after_cr = data.endswith(b"\r")
            data = _LINE_ENDS.sub(b"\n", data)
        if _KEYS.search(data) is None:
            self._take(data)
            return
        told = set()
        for index, piece in enumerate(_KEYS.split(data)):
            if index % 2 == 0:
                self._take(piece)
            elif self._closing:
                return
            elif piece == CTRL_D:
                if not self._buffer and not self._discarding:
                    self.received(CTRL_D)  # end of input: in turn, after the lines before
            else:
                if piece == CTRL_C:
                    self._buffer = b""
                    self._discarding = False
                if piece not in told:
                    told.add(piece)
                    self.send(as_lines("", KEY_NOTICES[piece]))

    def _take(self, data: bytes) -> None:
        """
        Add C{data} to the line being typed, taking the lines it ends, and
        never holding more than C{max_line} bytes of an unfinished one.
        """
        limit = self.door.limits.max_line
        lines = (self._buffer + data).split(self.delimiter)
        self._buffer = lines.pop()
        for line in lines:
            if self._discarding:
                self._discarding = False
            elif len(line) > limit:
                self.lineLengthExceeded(line)
            else:
                self.received(line)
        if len(self._buffer) > limit:
            self._buffer = b""
            if not self._discarding:
                self._discarding = True
                self.lineLengthExceeded(b"")

    def lineLengthExceeded(self, line: bytes) -> None:
        if self._closing:  # after /quit or Ctrl-D in the same packet: not heard
            return
        limit = self.door.limits.max_line
        self.refuse("line_too_long", f"line too long (over {limit} bytes); ignored")

    def handle(self, line: bytes) -> None:
        self.lineReceived(line)

    def lineReceived(self, line: bytes) -> None:
        if line == CTRL_D:
            self.do_quit("")
            return
        try:
            typed = line.decode("utf-8")
        except UnicodeDecodeError:
            self.refuse("bad_utf8", "That line is not valid UTF-8; ignored")
            return
        text = edit(typed)
        if text != typed and not text.strip():
            return  # only keys, escape sequences or control characters
        if self.user is None:
            self.choose_nick(text.strip())
        elif text.startswith("//"):
            self.say(text[1:])
        elif text.startswith("/"):
            command, _, args = text[1:].partition(" ")
            self.attempt(self.command, command.lower(), args.strip())
        elif text.strip():
            self.say(text)

    def choose_nick(self, text: str) -> None:
        """
        The line typed at the nickname prompt: C{NICK}, or C{NICK PASSWORD}
        for a registered nickname.
        """
        if text.lower() == "/quit" or text.lower().startswith("/quit "):
            self.send(as_lines("*** Bye!"))
            self.close()
            return
        nick, _, password = text.partition(" ")
        self.attempt(self._sign_on, nick, password.strip() or None)

    def _sign_on(self, nick: str, password: str | None) -> Deferred[None]:
        def entered(signed_on: bool) -> None:
            if signed_on:
                self._current = LOBBY

        def refused(failure: Failure) -> None:
            failure.trap(ChatError)
            error = failure.value
            assert isinstance(error, ChatError)
            self.deliver(Error.from_exception(error))
            self.send(as_lines(PROMPT))

        return self.sign_on(nick, password).addCallbacks(entered, refused)

    def refuse(self, code: str, message: str) -> None:
        self.deliver(Error(code, message))


@implementer(IDoor)
class LineDoor(Door, ServerFactory):
    """
    The factory of the line door: every connection shares one hub.
    """

    name = "line"

    def __init__(
        self,
        hub: Hub | IGateway,
        clock: IReactorTime,
        limits: Limits | None = None,
        throttle: Throttle | None = None,
        admission: Admission | None = None,
    ) -> None:
        Door.__init__(self, hub, LineEncoder(), clock, limits, throttle)
        self.admission = Admission(self.limits, clock) if admission is None else admission

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        ticket = self.admission.admit(addr)
        if isinstance(ticket, str):
            return Refusal(as_lines(f"!!! {ticket}"))
        transport = TelnetServer(LineChatProtocol())
        transport.factory = self
        transport.ticket = ticket
        return transport
