"""
Fuzzing both doors: thousands of random and mutated inputs go through the
line door (inside its telnet transport) and the WebSocket door (through
the web site's HTTP upgrade, or straight to the door's factory), while the
hub's invariants are checked after every step.

Each run is one hub with three line connections and two WebSocket
connections on a shared C{Clock}, driven by a Hypothesis-generated list of
actions: raw bytes and mutated commands for the line door, frames and raw
bytes for the WebSocket door, clock advances, peers that stop reading (so
that their transport's buffer fills and pauses the server's output) or
vanish, and new ones that connect.  A run ends either with a shutdown or
with every peer falling silent; either way every connection must then be
gone and the hub empty.

After every action:

  - no exception escaped a protocol (it would reach the test) and nothing
    was logged as an error (e.g. by the hub's per-recipient isolation);
  - the hub's indexes agree with each other (L{check_hub});
  - the doors' connections agree with the hub's users, no send queue is
    over its bound, and no input waits without something to wake it
    (L{World.check_doors});
  - everything a line connection was sent is complete, terminal-safe CR LF
    lines (telnet commands apart), and everything a WebSocket was sent
    parses as whole frames whose text frames are JSON objects with a
    C{type} (L{parse_line_output}, L{parse_server_frames}).

Runs are derandomised, so CI always tries the same inputs (for a longer
fuzz, or other inputs, see L{fuzz}).  Each test prints how many inputs it
fed each door (see them with C{pytest -s}, or under trial); an input is one
fuzzed chunk of bytes for a line connection (up to three lines, maybe cut
into packets), or one sequence of frames or chunk of raw bytes for a
WebSocket; the storms that fill buffers are not counted.  A full run of
this module feeds about 3,800 inputs to the line door and 3,300 to the
WebSocket door, in 20-25 s.  A failing run is shrunk, and printed.
"""

from __future__ import annotations

import json
import os
import struct
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar, cast

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from hypothesis.control import current_build_context
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from chatd.doors.admission import Admission, AdmittedConnection, AdmittingFactory, http_refusal
from chatd.doors.base import Door, Session
from chatd.doors.flow import Throttle
from chatd.doors.line import LineDoor, LineTelnetTransport
from chatd.doors.web import make_site
from chatd.doors.websocket import WebSocketDoor
from chatd.hub import Hub
from chatd.limits import Limits
from chatd.model import LOBBY, MAX_TOPIC_LENGTH, check_nick, check_room, fold
from tests.helpers import HANDSHAKE, PEER, LinePeer, TCPLikeTransport

START = 1700000000.0
MAX_ROOMS = 3
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0, 1, 2, 8, 9, 10
IAC, SB, SE, WILL, WONT, DO, DONT = 0xFF, 0xFA, 0xF0, 0xFB, 0xFC, 0xFD, 0xFE
BAD_TELNET = "!!! Invalid telnet command; input dropped"
SERVER_TYPES = frozenset(
    "welcome message history private join part nick topic users rooms server error".split()
)
# For a longer or a different fuzz than CI's: CHATD_FUZZ_SCALE=10 runs ten
# times as many examples; CHATD_FUZZ_SEED=N draws other inputs than CI's.
SCALE = float(os.environ.get("CHATD_FUZZ_SCALE", "1"))
SEED = os.environ.get("CHATD_FUZZ_SEED")
FUZZ = settings(
    derandomize=SEED is None,
    database=None,
    deadline=None,
    print_blob=False,
    report_multiple_bugs=False,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
Test = TypeVar("Test", bound=Callable[..., None])


def fuzz(examples: int) -> Callable[[Test], Test]:
    """
    Settings for a fuzz test of C{examples} runs (scaled by
    C{$CHATD_FUZZ_SCALE}): derandomised, so that CI always tries the same
    inputs, unless C{$CHATD_FUZZ_SEED} picks a seed.
    """
    chosen = settings(FUZZ, max_examples=max(1, round(examples * SCALE)))

    def decorate(test: Test) -> Test:
        test = chosen(test)
        return test if SEED is None else seed(int(SEED))(test)

    return decorate


class FuzzFailure(AssertionError):
    """
    An invariant of the hub or of a door's output was broken.
    """


def expect(condition: object, message: str, *details: object) -> None:
    """
    Raise L{FuzzFailure} with C{message} (and C{details}) unless C{condition}.
    """
    if not condition:
        raise FuzzFailure(" ".join([message, *(repr(d)[:500] for d in details)]))


# -- what the server may send ---------------------------------------------------

# Anything a terminal acts on (chatd.doors.line.safe should leave none).
_UNSAFE = frozenset(
    [c for c in range(32) if c != 9]
    + [0x7F, *range(0x80, 0xA0), 0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F)]
    + [*range(0x2066, 0x206A), 0x2028, 0x2029]
)


def parse_line_output(buffer: bytearray) -> list[str]:
    """
    Take everything out of C{buffer}, which must be whole telnet commands
    (skipped) and UTF-8 lines ended by CR LF with nothing in them that a
    terminal would act on (returned).
    """
    lines = []
    while buffer:
        if buffer[0] == IAC:
            expect(len(buffer) >= 2, "a telnet command cut short", bytes(buffer))
            if buffer[1] in (WILL, WONT, DO, DONT):
                expect(len(buffer) >= 3, "a telnet negotiation cut short", bytes(buffer))
                del buffer[:3]
            elif buffer[1] == SB:
                end = buffer.find(bytes([IAC, SE]))
                expect(end > 0, "a telnet subnegotiation cut short", bytes(buffer))
                del buffer[: end + 2]
            else:
                expect(buffer[1] != IAC, "an escaped 0xFF in line output", bytes(buffer))
                del buffer[:2]
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


def check_hub(hub: Hub) -> None:
    """
    The hub's indexes agree: users by folded nick, rooms by folded name;
    each user's rooms and each room's members mirror each other; no room
    is empty but the lobby, and nobody is in more rooms than allowed.
    """
    lobby = hub.rooms.get(fold(LOBBY))
    expect(lobby is not None and lobby.name == LOBBY, "#lobby is missing", hub.rooms)
    for key, user in hub.users.items():
        expect(key == fold(user.nick), "a user under the wrong key", key, user)
        check_nick(user.nick)
        expect(len(user.rooms) <= hub.max_rooms_per_user, "a user in too many rooms", user)
        for name, room in user.rooms.items():
            expect(hub.rooms.get(name) is room, "a user in a room the hub lost", user, name)
            expect(user in room.members, "a user's room without the user", user, name)
    for key, room in hub.rooms.items():
        expect(key == fold(room.name), "a room under the wrong key", key, room.name)
        check_room(room.name)
        expect(room.members or key == fold(LOBBY), "an empty room", room.name)
        expect(len(room.topic) <= MAX_TOPIC_LENGTH, "an overlong topic", room.name)
        for member in room.members:
            expect(hub.users.get(fold(member.nick)) is member, "a member who left", member)
            expect(member.rooms.get(key) is room, "a member without the room", member, key)


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
        self.output += data
        self.check_output()

    def check_output(self) -> None:
        raise NotImplementedError


class LineConnection(Connection):
    """
    A line-door connection, built by the door's factory as a real listening
    port would (the telnet transport, or a refusal from admission).
    """

    door_name = "line"
    telnet: LineTelnetTransport | None = None
    chat: Session | None = None
    telnet_packets = 0
    telnet_errors = 0

    def build(self) -> TwistedProtocol:
        protocol = self.world.line.buildProtocol(PEER)
        if isinstance(protocol, LineTelnetTransport):
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

    def deliver(self, packet: bytes) -> None:
        if IAC in packet or self.telnet_busy():
            self.telnet_packets += 1
        super().deliver(packet)

    def telnet_busy(self) -> bool:
        """
        Whether the telnet parser is inside a command, which the next
        packet may go on with.
        """
        return self.telnet is not None and self.telnet.state != "data"

    def check_output(self) -> None:
        lines = parse_line_output(self.output)
        # The door blames telnet (once a packet at most) only for packets
        # that had some telnet in them.
        self.telnet_errors += lines.count(BAD_TELNET)
        expect(
            self.telnet_errors <= self.telnet_packets,
            "bad telnet blamed on a packet without any:",
            lines,
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
        self.last_id = 0
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
            elif opcode == TEXT:
                frame = check_server_json(payload)
                if frame["type"] == "message":
                    expect(frame["id"] > self.last_id, "messages out of order", frame)
                    self.last_id = frame["id"]


def _mask(payload: bytes, key: bytes) -> bytes:
    size = len(payload)
    stream = (key * (size // 4 + 1))[:size]
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")
    return masked.to_bytes(size, "big")


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
        size = len(self.payload)
        first = (0x80 if self.fin else 0) | (self.rsv & 7) << 4 | (self.opcode & 0x0F)
        mask = 0x80 if self.masked else 0
        if size < 126:
            header = struct.pack("!BB", first, mask | size)
        elif size < 1 << 16:
            header = struct.pack("!BBH", first, mask | 126, size)
        else:
            header = struct.pack("!BBQ", first, mask | 127, size)
        if not self.masked:
            return header + self.payload
        key = b"\x37\xfa\x21\x3d"
        return header + key + _mask(self.payload, key)

    def __repr__(self) -> str:
        payload = self.payload if len(self.payload) <= 80 else self.payload[:80] + b"..."
        return f"Frame({payload!r}, {self.opcode}, {self.fin}, {self.rsv}, {self.masked})"


# -- the world ------------------------------------------------------------------


class World:
    """
    One hub, both doors (sharing a throttle and an admission, as in
    C{chatd.tap}), three line and two WebSocket connections, one clock;
    with C{web}, WebSockets connect through the web site.
    """

    def __init__(self, test: FuzzTestCase, web: bool) -> None:
        self.test = test
        self.limits = test.limits
        self.buffer_size = test.buffer_size
        self.tally = test.tally
        self.clock = Clock()
        self.clock.advance(START)
        self.hub = Hub(self.clock, max_rooms_per_user=MAX_ROOMS, history_page=5)
        self.throttle = Throttle()
        self.admission = Admission(self.limits, self.clock)
        self.line = LineDoor(self.hub, self.clock, self.limits, self.throttle, self.admission)
        self.websocket = WebSocketDoor(self.hub, self.clock, self.limits, self.throttle)
        self.site: AdmittingFactory | None = None
        if web:
            site = make_site(self.websocket)
            deadline = self.limits.sign_on_timeout
            self.site = AdmittingFactory(site, self.admission, http_refusal, self.clock, deadline)
        self.doors: dict[str, Door] = {"line": self.line, "websocket": self.websocket}
        self.slots: dict[str, list[Connection]] = {"line": [], "websocket": []}
        self.everyone: list[Connection] = []
        self.last_input = self.clock.seconds()
        for nick in ("alice", "bob", None):
            self.connect("line", len(self.slots["line"]), nick)
        for nick in ("carol", None):
            self.connect("websocket", len(self.slots["websocket"]), nick)
        self.settle()
        self.check()

    # -- connections --------------------------------------------------------

    def connect(
        self, door: str, slot: int, nick: str | None = None, handshake: bytes = HANDSHAKE
    ) -> Connection:
        """
        Put a new connection in C{slot} (the one there goes away) or, past
        the last slot, in a new one; signed on as C{nick} if given.
        """
        slots = self.slots[door]
        connection: Connection
        if door == "line":
            connection = LineConnection(self)
            if nick is not None:
                connection.feed(nick.encode("utf-8", "surrogatepass") + b"\r\n")
        else:
            connection = WebSocketConnection(self, handshake)
            if nick is not None:
                hello = json.dumps({"type": "hello", "nick": nick}).encode()
                connection.feed(Frame(hello).encode())
        if slot < len(slots):
            slots[slot].lose()
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
    ) -> None:
        """
        One fuzz input for C{door} (C{counted} in the tally), from a
        connection that is open: the one in C{slot}, or a new one there if
        that one is closing.
        """
        self.tally[door] += counted
        connection = self.peer(door, slot)
        if connection.closing:
            connection = self.connect(door, slot % len(self.slots[door]))
        connection.feed(data, cuts)

    def live(self) -> list[Connection]:
        return [c for c in self.everyone if not c.lost]

    def settle(self) -> None:
        """
        Deliver input held back while reading was paused, for every
        connection whose reading has resumed.
        """
        for _ in range(100):
            if not any([c.pump() for c in self.live()]):
                return
        raise FuzzFailure("input keeps being held back and released")

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
        for connection in self.everyone:
            if not connection.lost:
                connection.read()
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
                if user is not None:
                    expect(self.hub.users.get(fold(user.nick)) is user, "user gone", user)
                    expect(user.client is session, "a user with another client", user)
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
        # the sign-on and web deadlines, keepalive pings and the telnet probe
        # end every connection in bounded time (measured from the last input
        # or from now, whichever is later: a big clock advance delays the
        # timers set while it ran).
        limits = self.limits
        quiet = max(
            limits.probe_idle + limits.probe_timeout,
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


# -- actions --------------------------------------------------------------------


class Action(Protocol):
    """
    One step of a run.
    """

    def run(self, world: World) -> None: ...


@dataclass(frozen=True)
class LineInput:
    """
    Bytes from a line peer (C{kind} says how they were made), in packets
    cut at C{cuts}.
    """

    slot: int
    data: bytes
    cuts: tuple[int, ...] = ()
    kind: str = "random"

    def run(self, world: World) -> None:
        world.send("line", self.slot, self.data, self.cuts)


@dataclass(frozen=True)
class WebSocketInput:
    """
    Frames from a WebSocket peer, in packets cut at C{cuts}.
    """

    slot: int
    frames: tuple[Frame, ...]
    cuts: tuple[int, ...] = ()
    kind: str = "request"

    def run(self, world: World) -> None:
        data = b"".join(frame.encode() for frame in self.frames)
        world.send("websocket", self.slot, data, self.cuts)


@dataclass(frozen=True)
class WebSocketBytes:
    """
    Raw bytes from a WebSocket peer, frames or not.
    """

    slot: int
    data: bytes
    cuts: tuple[int, ...] = ()

    def run(self, world: World) -> None:
        world.send("websocket", self.slot, self.data, self.cuts)


@dataclass(frozen=True)
class Connect:
    """
    A new connection in C{slot} (the old one goes away), signing on as
    C{nick} if given; a WebSocket one sends C{handshake}.
    """

    door: str
    slot: int
    nick: str | None = None
    handshake: bytes = HANDSHAKE

    def run(self, world: World) -> None:
        slot = self.slot % len(world.slots[self.door])
        world.connect(self.door, slot, self.nick, self.handshake)


@dataclass(frozen=True)
class Disconnect:
    """
    The peer in C{slot} goes away (or the network finishes closing it).
    """

    door: str
    slot: int

    def run(self, world: World) -> None:
        world.peer(self.door, self.slot).lose()


@dataclass(frozen=True)
class Reading:
    """
    The peer in C{slot} stops reading (its transport's buffer fills, which
    pauses the server's output) or reads again (which resumes it), maybe
    for only C{budget} bytes.
    """

    door: str
    slot: int
    reading: bool
    budget: int | None = None

    def run(self, world: World) -> None:
        connection = world.peer(self.door, self.slot)
        if not connection.lost:
            connection.transport.peer_reads(self.reading, self.budget)


@dataclass(frozen=True)
class Storm:
    """
    The peer in C{slot} says C{count} things of about C{size} bytes in
    #lobby, all in one packet (to fill other peers' buffers; not counted
    as fuzz inputs).
    """

    door: str
    slot: int
    count: int
    size: int

    def run(self, world: World) -> None:
        texts = [f"{n} " + "x" * self.size for n in range(self.count)]
        if self.door == "line":
            data = b"".join(text.encode() + b"\r\n" for text in texts)
        else:
            requests = [{"type": "say", "room": LOBBY, "text": text} for text in texts]
            data = b"".join(Frame(json.dumps(r).encode()).encode() for r in requests)
        world.tally["storm messages"] += self.count
        world.send(self.door, self.slot, data, counted=False)


@dataclass(frozen=True)
class Advance:
    """
    C{seconds} pass.
    """

    seconds: float

    def run(self, world: World) -> None:
        world.advance(self.seconds)


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
TELNET = [
    *b"\xff \xff\xff \xff\xfb \xff\xfc \xff\xfd \xff\xfe \xff\xfa \xff\xf0 \xff\xf4 \xff\xf1 "
    b"\xff\xf6 \x06 \x18 \x01 \x1f \r \n \r\n \r\x00 \x00 a / # \xc3 \xa9 \xed\xa0\x80 "
    b"\xe2\x80\xae /join #a /quit \x1b[2J".split(b" "),
    b" ",
]
ENDINGS = (b"\r\n", b"\n", b"\r", b"", b"\r\r\n", b"\n\r", b"\r\x00", b"\xff\xf4")

nicks = weighted(
    (6, st.sampled_from(NICKS)),
    (1, st.sampled_from(ODD_NICKS)),
    (1, st.builds(str.__add__, st.sampled_from("abAB"), st.text("abAB09_-[]\\^{}|", max_size=24))),
    (1, st.text(max_size=8)),
)
rooms = weighted(
    (6, st.sampled_from(ROOMS)),
    (1, st.sampled_from(ODD_ROOMS)),
    (1, st.text("abcAB09_-", max_size=33).map(lambda s: "#" + s)),
    (1, st.text(max_size=6).map(lambda s: "#" + s)),
)
texts = weighted(
    (4, st.sampled_from(("hi", "hello world", "/not a command"))),
    (1, st.sampled_from(("", " ", "\t"))),
    (1, st.builds(lambda n: "x" * n, st.sampled_from((390, 391, 2000, 2001)))),
    (2, st.text(max_size=30)),
    (2, st.lists(st.one_of(st.sampled_from(TRICKY), st.text(max_size=3)), max_size=6).map("".join)),
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
    (1, _command("/{} {}", st.text(max_size=6), texts)),
    (2, st.sampled_from("/part /msg /nick /topic /history /who /rooms /help /quit".split())),
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
# Telnet commands, well-formed or not: negotiations, subnegotiations of 0
# to 3 bytes (terminated or not), other commands, and stray bytes after IAC.
telnet_commands = st.one_of(
    st.builds(
        lambda verb, option: bytes([IAC, verb, option]),
        st.sampled_from((WILL, WONT, DO, DONT)),
        st.sampled_from((1, 3, 6, 24, 31, 34, 255)),
    ),
    st.builds(
        lambda payload, end: bytes([IAC, SB]) + payload + end,
        st.binary(max_size=3),
        st.sampled_from((bytes([IAC, SE]), b"", bytes([SE]), bytes([IAC, IAC]))),
    ),
    st.builds(lambda byte: bytes([IAC, byte]), st.integers(0, 255)),
)
telnet_mix = st.lists(
    st.one_of(telnet_commands, st.sampled_from(TELNET), command_lines), min_size=1, max_size=8
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
)

# WebSocket requests: every type, with well-typed fields or any JSON at all.
REQUESTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "hello": (("nick",), ()),
    "say": (("room", "text"), ()),
    "me": (("room", "text"), ()),
    "nick": (("nick",), ()),
    "join": (("room",), ()),
    "part": (("room",), ("reason",)),
    "msg": (("to", "text"), ()),
    "who": (("room",), ()),
    "rooms": ((), ()),
    "topic": (("room",), ("text",)),
    "history": (("room",), ("limit", "before")),
}
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(max_size=6),
        st.sampled_from(TRICKY),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.text(max_size=4), children, max_size=3),
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
}


def _request(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    required, optional = REQUESTS[kind]
    return st.fixed_dictionaries(
        {"type": st.just(kind), **{name: FIELDS[name] for name in required}},
        optional={name: FIELDS[name] for name in optional},
    )


def _json(request: object, ascii_only: bool) -> bytes:
    return json.dumps(request, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


valid_requests = st.sampled_from(sorted(REQUESTS)).flatmap(_request)
mistyped_requests = st.builds(
    lambda kind, fields: {**fields, "type": kind},
    st.one_of(st.sampled_from(sorted(REQUESTS)), json_values),
    st.dictionaries(
        st.one_of(st.sampled_from(sorted(FIELDS)), st.text(max_size=4)),
        st.one_of(json_values, *FIELDS.values()),
        max_size=3,
    ),
)
requests = st.builds(_json, weighted((3, valid_requests), (1, mistyped_requests)), st.booleans())


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


MAX_FRAME = Limits().max_frame


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
doors = st.sampled_from(("line", "websocket"))
nick_or_none = weighted((3, nicks), (1, st.none()))
network = weighted(
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
            Storm, doors, slots, st.sampled_from((3, 8, 20, 60)), st.sampled_from((10, 200, 1000))
        ),
    ),
)


def actions(line: int, websocket: int, other: int) -> st.SearchStrategy[list[Any]]:
    """
    Lists of actions: line inputs, WebSocket inputs and network events in
    the proportions given.
    """
    # Network events first: the simplest action, that a failing run shrinks
    # its padding to, is then Advance(0).
    kinds = weighted((other, network), (line, line_inputs), (websocket, websocket_inputs))
    return st.lists(kinds, min_size=20, max_size=60)


# -- the tests ------------------------------------------------------------------


class FuzzTestCase(SynchronousTestCase):
    """
    Plays action lists in fresh worlds, and says how many inputs each door
    was fed.

    @cvar limits: the server's limits (flood control off by default).
    @cvar buffer_size: bytes a transport buffers for a peer that is not
        reading before it pauses the server's output.
    """

    limits = Limits(flood_rate=0)
    buffer_size = 4096

    def setUp(self) -> None:
        self.tally: Counter[str] = Counter()

    def tearDown(self) -> None:
        tally = self.tally
        print(
            f"\n{self.id()}: {tally['line']} line-door inputs and {tally['websocket']} "
            f"WebSocket-door inputs ({tally['actions']} actions in {tally['runs']} runs)"
        )

    def play(self, actions: list[Action], shutdown: bool, web: bool) -> None:
        """
        Run C{actions}, checking everything after each, then end the run
        with a shutdown or with silence; WebSockets connect through the web
        site if C{web}.
        """
        self.tally["runs"] += 1
        try:
            world = World(self, web)
            for action in actions:
                self.tally["actions"] += 1
                action.run(world)
                world.settle()
                world.check()
            world.finish(shutdown)
        except Exception:
            if current_build_context().is_final:
                # Hypothesis notes the failing run only where pytest shows it.
                print(f"\nFailing run (shutdown={shutdown}, web={web}):")
                for action in actions:
                    print(f"  {action!r}"[:300])
            raise


class LineDoorFuzzTests(FuzzTestCase):
    @fuzz(100)
    @given(actions(line=6, websocket=1, other=2), st.booleans(), st.booleans())
    def test_line_door(self, actions: list[Action], shutdown: bool, web: bool) -> None:
        """
        Random bytes, telnet commands, mutated commands and overlong lines
        on the line connections (with some WebSocket traffic alongside)
        leave the hub consistent, raise nothing and log no error; line
        connections only ever receive whole, terminal-safe lines.
        """
        self.play(actions, shutdown, web)


class WebSocketDoorFuzzTests(FuzzTestCase):
    @fuzz(100)
    @given(actions(line=1, websocket=10, other=2), st.booleans(), st.booleans())
    def test_websocket_door(self, actions: list[Action], shutdown: bool, web: bool) -> None:
        """
        Requests of every type, mistyped and mutated JSON, deep nesting, and
        random, binary, control, fragmented, oversized and malformed frames
        on the WebSocket connections (with some line traffic alongside)
        leave the hub consistent, raise nothing and log no error;
        WebSockets only ever receive whole frames whose text frames are
        typed JSON objects.
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

    @fuzz(80)
    @given(actions(line=3, websocket=3, other=4), st.booleans(), st.booleans())
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
