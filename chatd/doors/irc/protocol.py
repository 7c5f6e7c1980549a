# -*- test-case-name: tests.test_irc -*-
"""
The IRC door's connections: framing (lines of at most 512 bytes, after
at most 4096 of tags), registration (C{CAP}, C{NICK}/C{USER}, C{PASS}, SASL
C{PLAIN}) and the output path, on the door-independent L{Session}.

What a registered client may ask is in L{chatd.doors.irc.commands}; how
the hub's room events look on IRC is in L{chatd.doors.irc.rendering}.
"""

from __future__ import annotations

import base64
import binascii
import socket
from collections.abc import Callable
from math import inf
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from chatd.doors.admission import Admission, Refusal, Ticket
from chatd.doors.base import Door, no_delay
from chatd.doors.flow import Throttle
from chatd.doors.irc import wire
from chatd.doors.irc.commands import IrcCommands
from chatd.doors.irc.rendering import IrcEncoder, QuitLine, SaidLine
from chatd.doors.irc.wire import IrcMessage
from chatd.errors import ChatError
from chatd.hub import Hub
from chatd.interfaces import IDoor, IGateway
from chatd.limits import Limits
from chatd.model import check_nick, fold

CAPABILITIES = {
    "account-tag": None,
    "away-notify": None,
    "cap-notify": None,
    "draft/account-registration": None,
    "echo-message": None,
    "message-tags": None,
    "multi-prefix": None,
    "sasl": "PLAIN",
    "server-time": None,
    "userhost-in-names": None,
}
"""What the door offers in C{CAP LS}, with each one's value (for 302)."""
REGISTRATION_COMMANDS = frozenset(
    {"CAP", "NICK", "USER", "PASS", "AUTHENTICATE", "PING", "PONG", "QUIT"}
)
SASL_CHUNK = 400
MAX_SASL = 400
"""Bytes of base64 a SASL PLAIN message may take: one full chunk, 300
bytes, room for chatd's nicknames and a password of 128 ASCII characters
(a longer one goes by C{PASS}); a client that sends more is told at once,
before flood control has to step in."""
PING_AFTER = 120.0
"""Seconds of silence after which the server pings a client."""


class IrcProtocol(IrcCommands, Protocol):
    """
    One IRC client.

    Output goes through the session's outbox like any door's; the hub's
    fan-out writes room events as lines shared by every connection with the
    same capabilities (L{IrcEncoder}), which L{push} filters for this one
    (its own messages without C{echo-message}, a second C{QUIT} of the
    same user), and events for this user alone are rendered here, as
    numerics to its nickname (L{render}).
    """

    door: IrcDoor
    factory: IrcDoor
    ticket: Ticket
    greets_itself = True

    def __init__(self) -> None:
        self._buffer = b""
        self._discarding = False
        self._heard = 0.0
        self._pinged = False
        self._push_to: Callable[[Any], None] = _nowhere
        self._last_quit: tuple[str, str | None] | None = None
        self.user = None
        self._closing = False
        self._reading_paused = False
        self._pending = None
        # registration
        self._nick = "*"  # until signed on: the NICK given
        self.ident: str | None = None
        self.realname = ""
        self.caps: set[str] = set()
        self._echo = False  # whether it asked for echo-message
        self._counted = False  # whether the door counts it among the registered
        self._negotiating = False
        self._password: str | None = None
        self._account: str | None = None  # proven by SASL before sign-on
        self._sasl: bytes | None = None  # the SASL message being received
        self._context: IrcMessage | None = None
        self._target: str | None = None
        self.away: str | None = None
        self._joining: str | None = None
        self.signed_on_at = 0.0
        self.spoke_at = 0.0

    @property
    def nick(self) -> str:
        """
        The nickname numerics are addressed to (C{*} before one is chosen).
        """
        user = self.user
        return user.nick if user is not None else self._nick

    # -- connection ---------------------------------------------------------

    def connectionMade(self) -> None:
        self.stream = self.transport
        self.address = self.ticket.host
        outbox = self.started(self.factory)
        self.stream.registerProducer(outbox, True)
        no_delay(self.stream)
        self._heard = self.door.clock.seconds()

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.ticket.release()
        if self._counted:
            self.door.registered -= 1
        self.door.invisible.discard(self)
        self.ended()

    def started(self, door: Door) -> Any:
        outbox = super().started(door)
        self.encoder = self.door.encoder_for(self.caps)
        return outbox

    def write(self, payload: Any) -> None:
        if not isinstance(payload, bytes):  # a door's own event: an error, a notice
            payload = self.render(payload)
        if self.batch is not None:
            self.batch.push(payload)
        else:
            self.stream.write(payload)

    def direct(self) -> Callable[[bytes], None]:
        if self.batch is not None:
            return self.batch.push
        return self.stream.write

    def payload_size(self, payload: bytes) -> int:
        return len(payload)

    def finish(self) -> None:
        if self.batch is not None:
            self.batch.flush()
        self.stream.unregisterProducer()
        self.stream.loseConnection()

    def watch(self, now: float) -> float:
        """
        Ping a client silent for L{PING_AFTER} seconds; drop it if it is
        still silent as long again.
        """
        if self.user is None:
            return inf  # the sign-on deadline covers it
        due = self._heard + PING_AFTER
        if now < due:
            return due
        if not self._pinged:
            self._pinged = True
            self.send(f"PING :{self.door.server_name}\r\n".encode())
            return now + PING_AFTER
        self.door.count("ping_timeout")
        self.send(b"ERROR :Closing link: ping timeout\r\n")
        self.sign_off("ping timeout")
        self.close()
        return inf

    # -- output -------------------------------------------------------------

    @property
    def push(self) -> Callable[[Any], None]:
        return self._push

    @push.setter
    def push(self, target: Callable[[Any], None]) -> None:
        self._push_to = target

    def _push(self, payload: Any) -> None:
        """
        The fan-out's way in: room events for everyone with this
        connection's capabilities, filtered and finished for this one.
        """
        kind = payload.__class__
        if kind is SaidLine:
            if payload.sender is self.user and not self._echo:
                return
        elif kind is QuitLine:
            if payload.key == self._last_quit:
                return
            self._last_quit = payload.key
            self._push_to(payload)
            return
        elif kind is not bytes:
            payload = self.render(payload, shared=True)
            if not payload:
                return
        self._last_quit = None
        self._push_to(payload)

    def send(self, payload: Any, optional: bool = False) -> None:
        if not isinstance(payload, bytes):
            payload = self.render(payload)
            if not payload:
                return
        self.outbox.put(payload, optional)

    def reply(self, numeric: str, *params: str) -> None:
        """
        Send a numeric (or a command) from the server, to this client.
        """
        self.send(wire.line(self.door.server_name, numeric, self.nick, *params).encode())

    def reply_text(self, numeric: str, *params: str) -> None:
        """
        L{reply}, with the last parameter always written as trailing text.
        """
        self.send(wire.text_line(self.door.server_name, numeric, self.nick, *params).encode())

    # -- input --------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """
        Split C{data} into lines (CR LF, or a lone LF), never holding more
        than one line's worth of an unfinished one.
        """
        self._heard = self.door.clock.seconds()
        self._pinged = False
        lines = (self._buffer + data).split(b"\n")
        self._buffer = lines.pop()
        for raw in lines:
            if self._discarding:
                self._discarding = False
                continue
            raw = raw.rstrip(b"\r")
            if len(raw) > _limit(raw):
                self._too_long()
            elif raw:
                self.received(raw)
        if len(self._buffer.rstrip(b"\r")) > _limit(self._buffer):
            self._buffer = b""
            if not self._discarding:
                self._discarding = True
                self._too_long()

    def _too_long(self) -> None:
        if not self._closing:
            self.door.count("line_too_long")
            self.reply_text(wire.ERR_INPUTTOOLONG, "Input line was too long")

    def handle(self, raw: bytes) -> None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", "replace")
            message = wire.parse(text)
            command = message.command if message else "*"
            self.send(
                wire.text_line(
                    self.door.server_name,
                    "FAIL",
                    command,
                    "INVALID_UTF8",
                    "Message rejected: not UTF-8",
                ).encode()
            )
            return
        message = wire.parse(text.replace("\0", ""))
        if message is None:
            return
        self._context = message
        self._target = None
        if message.command.isdigit():
            return  # numerics are for servers to send; a client's is ignored
        if self.user is None:
            self.register(message)
        else:
            self.dispatch(message)

    # -- registration -------------------------------------------------------

    def register(self, message: IrcMessage) -> None:
        command, params = message.command, message.params
        if command not in REGISTRATION_COMMANDS:
            if self.handler(command) is not None:
                self.reply_text(wire.ERR_NOTREGISTERED, "You have not registered")
            else:
                self.reply_text(wire.ERR_UNKNOWNCOMMAND, command[:32], "Unknown command")
            return
        if command in ("PING", "PONG", "QUIT", "CAP", "AUTHENTICATE"):
            self.dispatch(message)
            return
        if command == "PASS":
            if not params:
                self.reply_text(wire.ERR_NEEDMOREPARAMS, "PASS", "Not enough parameters")
                return
            self._password = params[0]
            return
        if command == "NICK":
            if not params or not params[0]:
                self.reply_text(wire.ERR_NONICKNAMEGIVEN, "No nickname given")
                return
            nick = params[0]
            try:
                check_nick(nick)
            except ChatError:
                self.reply_text(wire.ERR_ERRONEUSNICKNAME, nick, "Erroneous nickname")
                return
            if fold(nick) in self.hub.users and fold(nick) not in self.hub.accounts:
                # (a registered nickname is the hub's to give, to its owner)
                self.reply_text(wire.ERR_NICKNAMEINUSE, nick, "Nickname is already in use")
                return
            self._nick = nick
        elif command == "USER":
            if len(params) < 4 or not params[0] or not params[3]:
                self.reply_text(wire.ERR_NEEDMOREPARAMS, "USER", "Not enough parameters")
                return
            self.ident = "~" + _ident(params[0])
            self.realname = wire.clean(params[3])[:100]
        self._try_register()

    def _try_register(self) -> None:
        if self.nick == "*" or self.ident is None or self._negotiating or self.user is not None:
            return
        self.attempt(self._sign_on, self.nick)

    def _sign_on(self, nick: str) -> Deferred[None]:
        if self._account is not None:
            entering: Deferred[bool] = maybeDeferred(self._enter, nick, self._account)  # type: ignore[call-overload]
        elif self._password is not None and fold(nick) in self.hub.accounts:
            entering = self.sign_on(nick, self._password)
        else:
            entering = self.sign_on(nick)

        def entered(signed_on: bool) -> None:
            if signed_on:
                self._counted = True
                self.door.registered += 1
                now = self.door.clock.seconds()
                self.signed_on_at = self.spoke_at = now
                self._heard = now

        def refused(failure: Failure) -> None:
            failure.trap(ChatError)
            error = failure.value
            assert isinstance(error, ChatError)
            self._nick = "*"
            if error.code in ("nick_taken", "nick_registered"):
                self.reply_text(wire.ERR_NICKNAMEINUSE, nick, error.message)
            elif error.code == "bad_nick":
                self.reply_text(wire.ERR_ERRONEUSNICKNAME, nick, "Erroneous nickname")
            elif error.code in ("bad_password", "too_many_attempts"):
                self.reply_text(wire.ERR_PASSWDMISMATCH, error.message)
            else:
                self.send(f"ERROR :{wire.clean(error.message)}\r\n".encode())
                self.close()

        return entering.addCallbacks(entered, refused)

    # -- CAP ----------------------------------------------------------------

    def irc_CAP(self, params: list[str]) -> None:
        if not params:
            self.reply_text(wire.ERR_NEEDMOREPARAMS, "CAP", "Not enough parameters")
            return
        sub = params[0].upper()
        if sub == "LS":
            if self.user is None:
                self._negotiating = True
            version = (
                params[1]
                if len(params) > 1 and params[1].isascii() and params[1].isdigit()
                else "0"
            )
            if int(version[:4]) >= 302:
                self.caps.add("cap-notify")
                offered = [f"{c}={v}" if v else c for c, v in CAPABILITIES.items()]
            else:
                offered = list(CAPABILITIES)
            self._cap("LS", " ".join(offered))
        elif sub == "LIST":
            self._cap("LIST", " ".join(sorted(self.caps)))
        elif sub == "REQ":
            if self.user is None:
                self._negotiating = True
            wanted = params[1] if len(params) > 1 else ""
            changes = wanted.split()
            names = [c[1:] if c.startswith("-") else c for c in changes]
            if not changes or any(n not in CAPABILITIES for n in names):
                self._cap("NAK", wanted)
                return
            for change, name in zip(changes, names, strict=True):
                if change.startswith("-"):
                    self.caps.discard(name)
                else:
                    self.caps.add(name)
            self.encoder = self.door.encoder_for(self.caps)
            self._echo = "echo-message" in self.caps
            self._cap("ACK", wanted)
        elif sub == "END":
            if self.user is None and self._negotiating:
                self._negotiating = False
                self._sasl = None
                self._try_register()
        else:
            self.reply_text(wire.ERR_INVALIDCAPCMD, params[0], "Invalid CAP command")

    def _cap(self, sub: str, text: str) -> None:
        self.send(wire.text_line(self.door.server_name, "CAP", self.nick, sub, text).encode())

    # -- SASL ---------------------------------------------------------------

    def irc_AUTHENTICATE(self, params: list[str]) -> Deferred[None] | None:
        if not params:
            self.reply_text(wire.ERR_NEEDMOREPARAMS, "AUTHENTICATE", "Not enough parameters")
            return None
        if "sasl" not in self.caps:
            self.reply_text(
                wire.ERR_SASLFAIL, "SASL authentication failed: enable the sasl capability first"
            )
            return None
        argument = params[0]
        if argument == "*":
            self._sasl = None
            self.reply_text(wire.ERR_SASLABORTED, "SASL authentication aborted")
            return None
        if self.user is not None:
            self.reply_text(wire.ERR_ALREADYREGISTRED, "You may not reregister")
            return None
        if self._account is not None:
            self.reply_text(wire.ERR_SASLALREADY, "You have already authenticated using SASL")
            return None
        if self._sasl is None:
            if argument.upper() != "PLAIN":
                self.reply(wire.RPL_SASLMECHS, "PLAIN", "are available SASL mechanisms")
                self.reply_text(wire.ERR_SASLFAIL, "SASL authentication failed")
                return None
            self._sasl = b""
            self.send(b"AUTHENTICATE +\r\n")
            return None
        if len(argument) > SASL_CHUNK:
            self._sasl = None
            self.reply_text(wire.ERR_SASLTOOLONG, "SASL message too long")
            return None
        if argument != "+":
            self._sasl += argument.encode()
            if len(self._sasl) > MAX_SASL:
                self._sasl = None
                self.reply_text(wire.ERR_SASLFAIL, "SASL authentication failed: message too long")
                return None
        if len(argument) == SASL_CHUNK:
            return None  # more to come
        data, self._sasl = self._sasl, None
        return self._sasl_plain(data)

    def _sasl_plain(self, data: bytes) -> Deferred[None] | None:
        try:
            _authzid, authcid, password = base64.b64decode(data, validate=True).decode().split("\0")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            self.reply_text(
                wire.ERR_SASLFAIL, "SASL authentication failed: malformed PLAIN message"
            )
            return None
        if not authcid or not password:
            self.reply_text(wire.ERR_SASLFAIL, "SASL authentication failed")
            return None
        proving = self.hub.authenticate(self, authcid, password)

        def proven(account: str) -> None:
            self._account = account
            source = f"{self.nick}!{self.ident or '*'}@irc.chatd"
            self.reply(wire.RPL_LOGGEDIN, source, account, f"You are now logged in as {account}")
            self.reply_text(wire.RPL_SASLSUCCESS, "SASL authentication successful")

        def failed(failure: Failure) -> None:
            failure.trap(ChatError)
            self.reply_text(wire.ERR_SASLFAIL, "SASL authentication failed")

        return proving.addCallbacks(proven, failed)


def _nowhere(payload: object) -> None:
    pass


def _limit(raw: bytes) -> int:
    """
    The most bytes C{raw} (a line without its CR LF, or the start of one)
    may have: 510, after at most L{wire.MAX_CLIENT_TAGS} of tags.
    """
    if not raw.startswith(b"@"):
        return wire.MAX_LINE - 2
    tags = raw.find(b" ")
    if tags < 0:
        return wire.MAX_CLIENT_TAGS - 1 if len(raw) >= wire.MAX_CLIENT_TAGS else len(raw)
    if tags + 1 > wire.MAX_CLIENT_TAGS:
        return 0  # its tags alone are too long
    return tags + 1 + wire.MAX_LINE - 2


def _ident(username: str) -> str:
    """
    The user part of a mask from what C{USER} gave: at most 10 letters,
    digits, C{-}, C{_} and C{.}.
    """
    ident = "".join(c for c in username if c.isascii() and (c.isalnum() or c in "-_."))
    return ident[:10] or "user"


@implementer(IDoor)
class IrcDoor(Door, ServerFactory):
    """
    The factory of the IRC door: every connection shares one hub.

    @ivar server_name: the name the door gives itself in numerics.
    """

    name = "irc"

    def __init__(
        self,
        hub: Hub | IGateway,
        clock: IReactorTime,
        limits: Limits | None = None,
        throttle: Throttle | None = None,
        admission: Admission | None = None,
        server_name: str | None = None,
    ) -> None:
        gateway = IGateway(hub)
        self.server_name = server_name or socket.gethostname()
        self._encoders = {
            (t, a): IrcEncoder(gateway.hub, self.server_name, t, a)
            for t in (False, True)
            for a in (False, True)
        }
        Door.__init__(self, hub, self._encoders[False, False], clock, limits, throttle)
        self.admission = Admission(self.limits, clock) if admission is None else admission
        self.created = clock.seconds()
        self.peak = self.peak_here = 0  # the most users (on this node) there were, for LUSERS
        self.registered = 0  # connections signed on, for LUSERS
        self.invisible: set[IrcCommands] = set()  # those with user mode +i

    def encoder_for(self, caps: set[str]) -> IrcEncoder:
        """
        The encoder for connections with C{caps}: those that change how
        room events are written have one per combination, so that the
        fan-out encodes each event once per combination in use.
        """
        return self._encoders["server-time" in caps, "account-tag" in caps]

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        ticket = self.admission.admit(addr)
        if isinstance(ticket, str):
            return Refusal(f"ERROR :Closing link: {ticket}\r\n".encode())
        protocol = IrcProtocol()
        protocol.factory = self
        protocol.ticket = ticket
        return protocol

    def refusal_line(self, message: str) -> bytes:
        return f"ERROR :{wire.clean(message)}\r\n".encode()
