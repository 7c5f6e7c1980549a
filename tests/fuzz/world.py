"""
The world of a fuzz run: one hub (or one node of a cluster), both doors,
their connections and the network under them, on one clock (L{World});
and the checks, after every step, that the doors' connections agree with
the hub and that what each connection was sent is well-formed
(L{World.check}).
"""

from __future__ import annotations

import gc
import json
import struct
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar, cast

from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.python.failure import Failure

from chatd.cluster.node import ClusterGateway
from chatd.doors.admission import Admission, AdmittedConnection, AdmittingFactory, http_refusal
from chatd.doors.base import Door, Session
from chatd.doors.flow import Throttle
from chatd.doors.irc import IrcDoor, IrcProtocol
from chatd.doors.irc.protocol import PING_AFTER
from chatd.doors.line import LineDoor
from chatd.doors.line.telnet import TelnetServer
from chatd.doors.web import make_site
from chatd.doors.websocket import WebSocketDoor
from chatd.hub import Hub, LocalGateway
from chatd.hub.passwords import Passwords
from chatd.interfaces import IGateway
from chatd.model import LOBBY, Account, RoomRecord, fold
from chatd.store.memory import MemoryStore
from chatd.testing import (
    CLOSE,
    HANDSHAKE,
    PEER,
    PING,
    TEXT,
    MemoryLog,
    SharedLog,
    TCPLikeTransport,
    quick_passwords,
)
from tests.fuzz.invariants import FuzzFailure, check_hub, expect
from tests.fuzz.wire import (
    GOING_AWAY,
    IRC_FAREWELLS,
    IRC_NOTICES,
    LINE_FAREWELLS,
    NORMAL_CLOSURE,
    PROBE,
    WEBSOCKET_FAREWELLS,
    WEBSOCKET_NOTICES,
    Frame,
    check_close_payload,
    check_server_json,
    parse_irc_output,
    parse_line_output,
    parse_server_frames,
)

if TYPE_CHECKING:
    from tests.fuzz.runner import FuzzTestCase


# When runs start, by the clock; how many rooms a user may be in; the IRC
# door's name for itself.
START = 1700000000.0
MAX_ROOMS = 3
SERVER_NAME = "irc.fuzz"
# How long a probed IRC connection may take to answer (flood control may
# hold the probe back), and the longest step the clock takes meanwhile.
PROBE_PATIENCE = 20.0
PROBE_STEP = 0.5
PROBE_STEPS = 200
# The capabilities an IRC peer may ask for (all the door offers, and one it
# does not).
IRC_CAPS = (
    "account-tag",
    "message-tags",
    "userhost-in-names",
    "away-notify",
    "cap-notify",
    "draft/account-registration",
    "echo-message",
    "multi-prefix",
    "sasl",
    "server-time",
)
# The IRC connections a world starts with, by nickname and capabilities:
# one asks for none, one for all, one is yet to sign on.
IRC_PEERS: tuple[tuple[str | None, tuple[str, ...]], ...] = (
    ("erin", ()),
    ("frank", IRC_CAPS),
    (None, ()),
)
# Every password the fuzzer gives chatd (in a password's place) holds this
# sign, and nothing else it sends does: it must never come back, to anyone,
# nor be logged.
MARK = "\u2318"
MARK_BYTES = MARK.encode()
# Accounts from before the run, by nickname and password; server operators
# (alice becomes one if she registers her nickname); a registered room.
ACCOUNTS = {"dave": f"{MARK}s3cret"}
ADMINS = ("alice", "dave")
OWNED = RoomRecord(
    "#c", "dave", "dave's", "dave", "t", None, frozenset(["alice"]), frozenset(["carol"])
)


def old_store(passwords: Passwords) -> MemoryStore:
    """
    A store holding L{ACCOUNTS} and L{OWNED}, as left by an earlier run.
    """
    store = MemoryStore()
    for nick, password in ACCOUNTS.items():
        store.create_account(Account(nick, passwords.hasher.hash(password), START))
    store.save_room(OWNED)
    return store


# -- the network ----------------------------------------------------------------


class FuzzTransport(TCPLikeTransport):
    """
    A TCP connection's server end, with a send buffer: while the peer is not
    reading, what the server writes piles up, and past C{buffer_size}
    bytes the transport pauses its producer (inside C{write}, as Twisted's
    transports do); once the peer reads again it resumes it.  Like a real
    transport it lets a protocol resume or pause reading while closing.
    """

    def __init__(self, buffer_size: int) -> None:
        super().__init__(peerAddress=PEER, lenient=True)
        self.buffer_size = buffer_size
        self.reading = True
        self.unread = 0
        self.producer_paused = False

    def write(self, data: bytes) -> None:
        super().write(data)
        if self.reading:
            return
        self.unread += len(data)
        if self.unread > self.buffer_size and self.producer is not None:
            if not self.producer_paused:
                self.producer_paused = True
                self.producer.pauseProducing()

    def peer_reads(self, reading: bool, budget: int | None = None) -> None:
        """
        The peer stops reading, or reads everything buffered and then goes
        on reading (C{budget} None) or stops again after C{budget} more
        bytes, so that the transport pauses the producer again while it is
        still writing out its queue.
        """
        self.reading = reading and budget is None
        if reading:
            self.unread = 0 if budget is None else self.buffer_size - budget
            if self.producer_paused and self.producer is not None:
                self.producer_paused = False
                self.producer.resumeProducing()


class Connection:
    """
    One fuzzed connection and the network under it: input waits while the
    server has paused reading, a closing transport reads nothing more, and
    the connection is lost (producer stopped, then C{connectionLost}) when
    time passes or the peer goes away.
    """

    door_name: ClassVar[str]

    def __init__(self, world: World) -> None:
        self.world = world
        self.transport = FuzzTransport(world.buffer_size)
        self.lost = False
        self.peer_gone = False
        self.farewell_checked = False
        self.farewells: set[str] = set()
        self.pending = b""
        self.output = bytearray()
        self.protocol: TwistedProtocol = self.build()
        self.protocol.makeConnection(self.transport)
        self.session()  # found now: the telnet layer forgets it when closed

    def build(self) -> TwistedProtocol:
        raise NotImplementedError

    def session(self) -> Session | None:
        raise NotImplementedError

    @property
    def admitted(self) -> bool:
        """
        Whether the connection holds an admission ticket (line connections
        and web ones do; refused ones and WebSockets straight to the door's
        factory do not).
        """
        raise NotImplementedError

    @property
    def closing(self) -> bool:
        return self.lost or bool(self.transport.disconnecting)

    def feed(self, data: bytes, cuts: Iterable[int] = ()) -> None:
        """
        Send C{data} from the peer, in packets cut at C{cuts}.
        """
        start = 0
        for cut in sorted({c % (len(data) + 1) for c in cuts} | {len(data)}):
            packet, start = data[start:cut], cut
            if not packet or self.closing:
                continue
            if self.transport.producerState != "producing" or self.pending:
                self.pending += packet
            else:
                self.deliver(packet)

    def deliver(self, packet: bytes) -> None:
        self.world.last_input = self.world.clock.seconds()
        self.protocol.dataReceived(packet)

    def pump(self) -> bool:
        """
        Deliver input held back while reading was paused, if it resumed.
        """
        if not self.pending or self.closing or self.transport.producerState != "producing":
            return False
        data, self.pending = self.pending, b""
        self.deliver(data)
        return True

    def leave(self) -> None:
        """
        The peer goes away.
        """
        self.peer_gone = True
        self.lose()

    def lose(self) -> None:
        """
        The connection is gone, as the network reports it.
        """
        if self.lost:
            return
        self.read()
        self.lost = True
        self.pending = b""
        producer, self.transport.producer = self.transport.producer, None
        if producer is not None:
            producer.stopProducing()
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.transport.clear()

    def read(self) -> None:
        """
        Take and check what the server wrote since the last call.
        """
        data = self.transport.value()
        self.transport.clear()
        expect(not (data and self.lost), "output after the connection was lost", data)
        expect(MARK_BYTES not in data, "a password in the output", data)
        self.output += data
        self.check_output()

    def check_output(self) -> None:
        raise NotImplementedError

    def check_farewell(self) -> None:
        """
        If the server is closing the connection, it must be for a reason
        that does not depend on the input being bad (L{explained}), or for
        input that breaks the wire protocol itself.
        """
        if self.farewell_checked or self.peer_gone or not self.closing:
            return
        self.farewell_checked = True
        expect(self.explained(), "a connection closed for no reason given", self, self.farewells)

    def explained(self) -> bool:
        raise NotImplementedError


class LineConnection(Connection):
    """
    A line-door connection, built by the door's factory as a real listening
    port would (the telnet transport, or a refusal from admission).
    """

    door_name = "line"
    telnet: TelnetServer | None = None
    chat: Session | None = None

    def build(self) -> TwistedProtocol:
        protocol = self.world.line.buildProtocol(PEER)
        if isinstance(protocol, TelnetServer):
            self.telnet = protocol
        return protocol

    def session(self) -> Session | None:
        if self.telnet is None:
            return None
        if self.chat is None:
            self.chat = self.telnet.protocol
        return self.chat

    @property
    def admitted(self) -> bool:
        return self.telnet is not None

    def check_output(self) -> None:
        if PROBE in self.output:
            self.farewells.add("probe")
        lines = parse_line_output(self.output)
        self.farewells.update(f for f in LINE_FAREWELLS for line in lines if line.startswith(f))

    def explained(self) -> bool:
        # Refused by admission, said goodbye (and why), probed a silent
        # telnet peer, or (Twisted's telnet) a subnegotiation over its cap.
        return not self.admitted or bool(self.farewells) or self.overlong_subnegotiation()

    def overlong_subnegotiation(self) -> bool:
        telnet = self.telnet
        return (
            telnet is not None
            and telnet.state.startswith("subnegotiation")
            and telnet._sb_length > telnet._MAX_SUBNEGOTIATION_LENGTH
        )


class WebSocketConnection(Connection):
    """
    A WebSocket-door connection, which starts with a (maybe mutated) HTTP
    upgrade request: to the web site, which hands the connection over to
    the door once it upgrades (as C{twistd chatd} serves it), or straight
    to the door's own factory.
    """

    door_name = "websocket"
    web: AdmittedConnection | None = None
    chat: Session | None = None

    def __init__(self, world: World, handshake: bytes = HANDSHAKE) -> None:
        self.upgraded: bool | None = None
        self.closed = False
        self.close_code: int | None = None
        self.last_id = 0
        # Whether the peer sent something that breaks RFC 6455 (or may
        # have: raw bytes, a mutated handshake), or a close frame.
        self.malformed = handshake != HANDSHAKE
        self.peer_closed = False
        super().__init__(world)
        self.feed(handshake)

    def build(self) -> TwistedProtocol:
        if self.world.site is None:
            return cast(TwistedProtocol, self.world.websocket.buildProtocol(PEER))
        protocol = cast(TwistedProtocol, self.world.site.buildProtocol(PEER))
        if isinstance(protocol, AdmittedConnection):
            self.web = protocol
        return protocol

    @property
    def admitted(self) -> bool:
        return self.web is not None

    def session(self) -> Session | None:
        if self.chat is None:
            protocol = self.protocol if self.web is None else self.web.wrappedProtocol
            if isinstance(protocol, Session):
                self.chat = protocol
        return self.chat

    def check_output(self) -> None:
        if self.upgraded is None:
            end = self.output.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.output[: end + 4])
            del self.output[: end + 4]
            expect(head.startswith(b"HTTP/1."), "an upgrade answered with", head)
            self.upgraded = head.startswith(b"HTTP/1.1 101 ")
        if not self.upgraded:
            self.output.clear()  # the body of a refusal
            return
        for opcode, payload in parse_server_frames(self.output):
            expect(not self.closed, "a frame after the close frame", opcode, payload)
            if opcode == CLOSE:
                check_close_payload(payload)
                self.closed = True
                self.close_code = struct.unpack("!H", payload[:2])[0] if payload else 0
            elif opcode == PING:
                self.farewells.add("ping")
            elif opcode == TEXT:
                frame = check_server_json(payload)
                kind = frame["type"]
                if kind == "message":
                    expect(frame["id"] > self.last_id, "messages out of order", frame)
                    self.last_id = frame["id"]
                elif kind == "error" and frame.get("code") in WEBSOCKET_FAREWELLS:
                    self.farewells.add(frame["code"])
                elif kind == "server" and frame.get("text", "").startswith(WEBSOCKET_NOTICES):
                    self.farewells.add("notice")

    def explained(self) -> bool:
        if not self.upgraded:
            return True  # an upgrade refused or never finished (HTTP's business)
        if self.close_code is None:
            # Dropped: a keepalive ping went unanswered, or a slow consumer.
            return bool(self.farewells & {"ping", "slow_consumer"})
        if self.peer_closed:
            return True  # the close handshake, whatever the code
        if self.close_code in (NORMAL_CLOSURE, GOING_AWAY):
            return bool(self.farewells - {"ping"})  # the error or notice said why
        return self.malformed  # a protocol error, a binary or oversized message


def irc_greeting(nick: str, caps: tuple[str, ...] = (), join: bool = True) -> bytes:
    """
    What an IRC client sends to sign on as C{nick}: C{NICK} and C{USER},
    inside a C{CAP LS 302} ... C{CAP END} negotiation asking for C{caps}
    if any; then C{JOIN #lobby} (IRC users start in no room) if C{join}.
    """
    lines = [f"NICK {nick}", f"USER {nick[:10] or 'u'} 0 * :{nick} the fuzzer"]
    if caps:
        lines = ["CAP LS 302", *lines, f"CAP REQ :{' '.join(caps)}", "CAP END"]
    if join:
        lines.append(f"JOIN {LOBBY}")
    return "".join(line + "\r\n" for line in lines).encode("utf-8", "surrogatepass")


class IrcConnection(Connection):
    """
    An IRC-door connection, built by the door's factory as a real listening
    port would (an L{IrcProtocol}, or a refusal from admission).

    @ivar awaiting: the token of the C{PING} probe (L{World.probe}) whose
        C{PONG} has not come yet, if any.
    """

    door_name = "irc"
    chat: IrcProtocol | None = None
    awaiting: str | None = None

    def build(self) -> TwistedProtocol:
        protocol = self.world.irc.buildProtocol(PEER)
        if isinstance(protocol, IrcProtocol):
            self.chat = protocol
        return protocol

    def session(self) -> Session | None:
        return self.chat

    @property
    def admitted(self) -> bool:
        return self.chat is not None

    def check_output(self) -> None:
        for line in parse_irc_output(self.output):
            text = line.params[-1] if line.params else ""
            if line.command == "PONG" and self.awaiting in line.params:
                expect(line.source == SERVER_NAME, "a PONG from", line)
                self.awaiting = None
            elif line.command == "ERROR" and text.startswith(IRC_FAREWELLS):
                self.farewells.add(text)
            elif line.command == "NOTICE" and line.source == SERVER_NAME:
                self.farewells.update(n for n in IRC_NOTICES if text.startswith(n))

    def explained(self) -> bool:
        # Refused by admission, or said goodbye (and why).
        return not self.admitted or bool(self.farewells)

    def answering(self) -> bool:
        """
        Whether the connection should answer a C{PING} soon: it is open, its
        session takes input, its peer reads, and no reader is saturated
        (which holds back everyone's input until it drains or is dropped).
        Input held back by flood control, or waiting for a request (a
        cluster's log) does not excuse it.
        """
        chat = self.chat
        return (
            chat is not None
            and not self.closing
            and not chat._closing
            and self.transport.reading
            and not self.transport.producer_paused
            and not self.world.throttle.active
        )


# -- the world ------------------------------------------------------------------


class World:
    """
    One hub, the three doors (sharing a throttle and an admission, as in
    C{chatd.app.tap}), three line and two WebSocket connections and, if the
    test asks for them, three IRC ones (one of them asking for every
    capability), one clock; with C{web}, WebSockets connect through the web
    site.
    """

    def __init__(self, test: FuzzTestCase, web: bool) -> None:
        self.test = test
        self.limits = test.limits
        self.buffer_size = test.buffer_size
        self.tally = test.tally
        self.clock = Clock()
        self.clock.advance(START)
        passwords = quick_passwords()
        options: dict[str, Any] = {
            "passwords": passwords,
            "admins": ADMINS,
            "max_rooms_per_user": MAX_ROOMS,
            "history_page": 5,
        }
        if test.cluster:
            # One node of a cluster whose log answers at the next tick.
            self.hub = Hub(self.clock, store=old_store(passwords), **options)
            node = ClusterGateway(self.hub, MemoryLog(SharedLog(self.clock)), self.clock)
            started = node.start()
            self.clock.advance(0)
            test.successResultOf(started)
            self.gateway: IGateway = node
        else:
            self.hub = Hub(self.clock, store=old_store(passwords), **options)
            self.gateway = LocalGateway(self.hub)
        self.ending = False
        self.throttle = Throttle()
        self.admission = Admission(self.limits, self.clock)
        self.line = LineDoor(self.gateway, self.clock, self.limits, self.throttle, self.admission)
        self.websocket = WebSocketDoor(self.gateway, self.clock, self.limits, self.throttle)
        self.site: AdmittingFactory | None = None
        if web:
            site = make_site(self.websocket)
            deadline = self.limits.sign_on_timeout
            self.site = AdmittingFactory(site, self.admission, http_refusal, self.clock, deadline)
        self.irc = IrcDoor(
            self.gateway, self.clock, self.limits, self.throttle, self.admission, SERVER_NAME
        )
        self.doors: dict[str, Door] = {
            "line": self.line,
            "websocket": self.websocket,
            "irc": self.irc,
        }
        self.slots: dict[str, list[Connection]] = {"line": [], "websocket": [], "irc": []}
        self.probes = 0
        self.everyone: list[Connection] = []
        self.last_input = self.clock.seconds()
        self.leaks: list[str] = []
        self.secrets = {fold(nick): (nick, password) for nick, password in ACCOUNTS.items()}
        globalLogPublisher.addObserver(cast(ILogObserver, self.observe))
        for nick in ("alice", "bob", None):
            self.connect("line", len(self.slots["line"]), nick)
        for nick in ("carol", None):
            self.connect("websocket", len(self.slots["websocket"]), nick)
        for nick, caps in IRC_PEERS if test.irc else ():
            self.connect("irc", len(self.slots["irc"]), nick, caps=caps)
        self.settle()
        self.check()

    def observe(self, event: LogEvent) -> None:
        """
        Note every log event that holds a password (in its text, its
        string fields, or its traceback).
        """
        texts = [formatEvent(event), *(v for v in event.values() if isinstance(v, str))]
        failure = event.get("log_failure")
        if isinstance(failure, Failure):
            texts.append(failure.getTraceback())
        self.leaks.extend(text for text in texts if MARK in text)

    def stop(self) -> None:
        globalLogPublisher.removeObserver(cast(ILogObserver, self.observe))

    def remember(self, nick: str, password: str) -> None:
        """
        A peer asked to register C{nick}, or to change its password, with
        C{password}.
        """
        self.secrets[fold(nick)] = (nick, password)

    def recall(self, pick: int | None) -> tuple[str, str] | None:
        """
        The C{pick}th account this run has registered and the password it
        was last given, if C{pick} is not None and there is one.
        """
        known = [self.secrets[key] for key in sorted(self.secrets) if key in self.hub.accounts]
        return None if pick is None or not known else known[pick % len(known)]

    # -- connections --------------------------------------------------------

    def connect(
        self,
        door: str,
        slot: int,
        nick: str | None = None,
        handshake: bytes = HANDSHAKE,
        caps: tuple[str, ...] = (),
    ) -> Connection:
        """
        Put a new connection in C{slot} (the one there goes away) or, past
        the last slot, in a new one; signed on as C{nick} if given (on IRC,
        asking for C{caps}).
        """
        slots = self.slots[door]
        connection: Connection
        if door == "line":
            connection = LineConnection(self)
            if nick is not None:
                connection.feed(nick.encode("utf-8", "surrogatepass") + b"\r\n")
        elif door == "irc":
            connection = IrcConnection(self)
            if nick is not None:
                connection.feed(irc_greeting(nick, caps))
        else:
            connection = WebSocketConnection(self, handshake)
            if nick is not None:
                hello = json.dumps({"type": "hello", "nick": nick}).encode()
                connection.feed(Frame(hello).encode())
        if slot < len(slots):
            slots[slot].leave()
            slots[slot] = connection
        else:
            slots.append(connection)
        self.everyone.append(connection)
        return connection

    def peer(self, door: str, slot: int) -> Connection:
        """
        The connection in C{slot}.
        """
        slots = self.slots[door]
        return slots[slot % len(slots)]

    def send(
        self, door: str, slot: int, data: bytes, cuts: Iterable[int] = (), counted: bool = True
    ) -> Connection:
        """
        One fuzz input for C{door} (C{counted} in the tally), from a
        connection that is open: the one in C{slot}, or a new one there if
        that one is closing.  Return that connection.
        """
        self.tally[door] += counted
        connection = self.open_peer(door, slot)
        connection.feed(data, cuts)
        return connection

    def open_peer(self, door: str, slot: int) -> Connection:
        """
        The connection in C{slot}, or a new one there if it is closing (on
        IRC, one that signs on as the first one there did: most commands
        need it).
        """
        connection = self.peer(door, slot)
        if connection.closing:
            slot %= len(self.slots[door])
            nick, caps = IRC_PEERS[slot % len(IRC_PEERS)] if door == "irc" else (None, ())
            connection = self.connect(door, slot, nick, caps=caps)
        return connection

    def probe(self, connection: Connection) -> None:
        """
        An IRC connection that should answer (L{IrcConnection.answering})
        is sent C{PING :probe<N>} (after a line end, if it holds part of a
        line) and must answer with a C{PONG} naming C{probe<N>}, or close
        for a reason it gives, as the clock advances (for flood control) by
        at most L{PROBE_PATIENCE} seconds.
        """
        if not isinstance(connection, IrcConnection):
            return
        self.settle()
        self.check()
        if not connection.answering():
            return
        chat = connection.chat
        assert chat is not None
        if chat._buffer or chat._discarding or connection.pending:
            connection.feed(b"\r\n")
            self.settle()
            self.check()
            if not connection.answering():
                return
        self.probes += 1
        token = f"probe{self.probes}"
        connection.awaiting = token
        connection.feed(f"PING :{token}\r\n".encode())
        self.tally["probes"] += 1
        waited = 0.0
        for steps in range(PROBE_STEPS + 1):
            self.settle()
            self.check()
            if connection.awaiting is None or connection.closing:
                connection.awaiting = None
                return
            expect(
                waited < PROBE_PATIENCE and steps < PROBE_STEPS,
                "an IRC connection went deaf: no PONG for",
                token,
                chat,
                chat.user,
                chat._inbox,
                chat._pending,
                chat._buffer[-200:],
            )
            now = self.clock.seconds()
            soonest = min((c.getTime() for c in self.clock.getDelayedCalls()), default=now)
            step = min(max(soonest - now, 0.0), PROBE_STEP)
            self.advance(step)
            waited += step

    def live(self) -> list[Connection]:
        return [c for c in self.everyone if not c.lost]

    def settle(self) -> None:
        """
        Deliver input held back while reading was paused, for every
        connection whose reading has resumed (and, for a cluster node,
        let its log apply what was asked meanwhile).
        """
        for _ in range(100):
            ticked = self._tick()
            if not any([c.pump() for c in self.live()]) and not ticked:
                return
        raise FuzzFailure("input keeps being held back and released")

    def _tick(self) -> bool:
        """
        Run what is due now (a cluster log's answers); whether anything was.
        """
        if not self.test.cluster:
            return False
        due = [c for c in self.clock.getDelayedCalls() if c.getTime() <= self.clock.seconds()]
        if due:
            self.clock.advance(0)
        return bool(due)

    def advance(self, seconds: float) -> None:
        """
        Time passes: timers fire and closing connections finish closing.
        """
        self.clock.advance(seconds)
        for connection in self.live():
            if connection.transport.disconnecting:
                connection.lose()

    # -- checks -------------------------------------------------------------

    def check(self) -> None:
        """
        Every invariant of the hub, the doors and what they sent.
        """
        errors = self.test.flushLoggedErrors()
        expect(not errors, "errors were logged:", *(e.getTraceback() for e in errors))
        expect(not self.leaks, "a password was logged:", *self.leaks)
        for connection in self.everyone:
            if not connection.lost:
                connection.read()
            if not self.ending:
                connection.check_farewell()
        check_hub(self.hub)
        self.check_doors()

    def check_doors(self) -> None:
        """
        Doors and hub agree on who is signed on; send queues are bounded;
        no input waits without something to wake it; no admission ticket
        leaks.
        """
        signed_on: list[Session] = []
        outboxes = set()
        for door in self.doors.values():
            for session in door.connections:
                outbox = session.outbox
                outboxes.add(outbox)
                expect(0 <= outbox.queued <= self.limits.max_sendq, "sendq over", outbox.queued)
                queued = sum(size for _, size in outbox._queue)
                expect(outbox.queued == queued, "sendq miscounted", outbox.queued, queued)
                user = session.user
                # A user the hub put out (killed, taken over) stays with its
                # session, which takes no more input, until it has closed.
                if user is not None:
                    held = self.hub.users.get(fold(user.nick)) is user
                    expect(held or session._closing, "user gone", user)
                    expect(user.client is session, "a user with another client", user)
                    if held:
                        signed_on.append(session)
                if not session._closing:
                    self.check_not_stuck(session)
        clients = [user.client for user in self.hub.users.values()]
        expect(len(clients) == len(signed_on), "users and sessions differ", clients, signed_on)
        expect(set(clients) == set(signed_on), "users and sessions differ", clients, signed_on)
        for outbox in self.throttle.saturated:
            expect(outbox in outboxes, "a gone connection holds back input", outbox)
            expect(outbox.saturated and not outbox.closed, "a drained outbox holds back input")
            expect(outbox.paused_since is not None, "a flowing outbox holds back input")
        for connection in self.everyone:
            chat = connection.session()
            if chat is not None:
                tracked = chat in self.doors[connection.door_name].connections
                expect(tracked != connection.lost, "the door mistracks", chat, connection.lost)
        admitted = [c for c in self.live() if c.admitted]
        expect(self.admission.total == len(admitted), "admission tickets leak", admitted)

    def check_not_stuck(self, session: Session) -> None:
        """
        Input that waits has something to wake it: a timer, or a place in
        the throttle's queue while some reader is saturated; reading is
        paused only while input waits.
        """
        wake = session._wake
        waking = wake is not None and wake.active()
        queued = session in self.throttle._waiting and self.throttle.active
        if session._inbox:
            expect(waking or queued, "input waits with nothing to wake it", session)
        expect(
            not session._reading_paused or session._inbox or waking,
            "reading paused with no input waiting",
            session,
        )

    # -- endings ------------------------------------------------------------

    def run_for(self, seconds: float, step: float) -> None:
        """
        Let C{seconds} pass, C{step} at a time, checking as it goes, until
        every connection is gone.
        """
        for _ in range(int(seconds / step)):
            if not self.live():
                return
            self.advance(step)
            self.settle()
            self.check()

    def finish(self, shutdown: bool) -> None:
        """
        Shut the server down, or let every peer fall silent (but read what
        it is sent), and check that every connection is then gone and the
        hub is empty.
        """
        self.ending = True
        if shutdown:
            self.hub.closing = True
            done = [door.shutdown() for door in self.doors.values()]
            self.run_for(self.limits.drain_timeout + 1, 0.5)
            for d in done:
                self.test.successResultOf(d)
            # Web connections that never became WebSocket sessions are no
            # door's: they go with the listening port, or at their deadline.
            stayed = [c for c in self.live() if c.session() is not None]
            expect(not stayed, "sessions outlived the shutdown", stayed)
        for connection in self.live():
            connection.transport.peer_reads(True)
        # Input held back by flood control still arrives for a while; then
        # the sign-on and web deadlines, keepalive pings (WebSocket and IRC)
        # and the telnet probe end every connection in bounded time
        # (measured from the last input or from now, whichever is later: a
        # big clock advance delays the timers set while it ran).
        limits = self.limits
        quiet = max(
            limits.probe_idle + limits.probe_timeout,
            2 * PING_AFTER,
            limits.ping_interval + limits.ping_timeout,
            limits.sign_on_timeout,
        )
        start = self.clock.seconds()
        while self.live() and self.clock.seconds() < max(self.last_input, start) + quiet + 10:
            self.run_for(5, 5)
        stayed = self.live()
        expect(not stayed, "connections outlived silence", stayed)
        for door in self.doors.values():
            expect(not door.connections, "a door still tracks", door.connections)
        expect(not self.hub.users, "users outlived their connections", self.hub.users)
        expect(list(self.hub.rooms) == [fold(LOBBY)], "rooms outlived", self.hub.rooms)
        expect(not self.throttle.saturated and not self.throttle._waiting, "throttle not empty")
        if self.test.cluster:
            # A Deferred that failed with nobody to handle it says so when it
            # is collected: in this run, not in whichever comes next.  (Only
            # a cluster node's requests wait on Deferreds; a collection costs
            # some 60 ms.)
            gc.collect()
            errors = self.test.flushLoggedErrors()
            expect(not errors, "unhandled errors:", *(e.getTraceback() for e in errors))
