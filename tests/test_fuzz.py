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

What a line peer sends is also telnet-heavy and high-bit: telnet commands
(L{TELNET}, L{telnet_commands}): every two-byte command, RFC 1184's EOF,
SUSP and ABORT and the NVT functions chatd maps to keys among them;
negotiations of TRANSMIT-BINARY, TIMING-MARK and LINEMODE among other
options; subnegotiations as clients send them (LINEMODE MODE, SLC and
FORWARDMASK, window size, terminal type) and garbled ones; the control
keys chatd acts on (L{KEYS}) and escape sequences (L{ESCAPES}, 7- and
8-bit); and high-bit text (L{high_bit}): the issue's sentences in several
languages, whole or with bytes cut out or repeated, random bytes mostly
0x80 and up, any characters past ASCII.

Commands and requests cover accounts, history and moderation too, with
well-formed, half-formed and garbage arguments.  The hub starts with an
account (dave, a server operator) and a room (#c) registered, as after a
restart, and hashes passwords quickly (L{quick_passwords}).  Passwords
given in a password's place (L{SecretLine}, L{SecretFrame}) all hold the
sign L{MARK}, which nothing else the fuzzer sends does; requests with
passwords that may be mutated use unmarked ones.  Operators' requests come
from L{Moderate}, which finds a peer that is one (random requests seldom
do).

After every action:

  - no exception escaped a protocol (it would reach the test) and nothing
    was logged as an error (e.g. by the hub's per-recipient isolation);
  - no password was logged (L{World.observe}), nor sent to anyone;
  - the hub's indexes agree with each other, and so do its accounts, its
    rooms' operators, modes, keys and bans, and its registrations (with
    each other and with the store) (L{check_hub});
  - the doors' connections agree with the hub's users, no send queue is
    over its bound, and no input waits without something to wake it
    (L{World.check_doors});
  - everything a line connection was sent is complete, terminal-safe CR LF
    lines (telnet commands apart), and everything a WebSocket was sent
    parses as whole frames whose text frames are JSON objects with a
    C{type} (L{parse_line_output}, L{parse_server_frames});
  - a connection the server closes was told why (quit, by C{/quit} or a
    Ctrl-D at the start of a line; kill, takeover, flood, slow consumer,
    sign-on timeout, shutdown), or was silent too
    long, refused at the door, or broke the telnet or WebSocket protocol
    itself: bad input to chatd never closes one
    (L{Connection.check_farewell}).

L{ClusterFuzzTests} plays the same on one node of a cluster
(L{chatd.cluster.ClusterHub} on a log that answers at the next tick), where
every request waits for its operation to come back.

L{TelnetStreamFuzzTests} checks the promise of issue #12, "no byte
sequence a telnet client can send leaves a session deaf or corrupts the
text of the next line", on one signed-on line connection with a WebSocket
watcher in #lobby.  It sends a well-formed telnet stream (L{typed_streams}:
data with 0xFF escaped, control keys, escape sequences and high-bit text;
negotiations of any option, subnegotiations under the cap, every other
command, and signals as LINEMODE clients send them), cut into any packets,
then a line end and a marker line (L{marker_tails}: cut anywhere, with
commands that stand for no key anywhere in it).  Unless a Ctrl-D at the
start of a line ended the session (L{ends_session}), the watcher must get
exactly the marker as the connection's last message, the connection must
still be open and have its own copy last, and every C{DO TIMING-MARK} must
have been answered with C{WILL TIMING-MARK}.  No C{/} is ever typed: a
command could change who says the marker, where, or whether.

Runs are derandomised, so CI always tries the same inputs (for a longer
fuzz, or other inputs, see L{fuzz}).  Each test prints how many inputs it
fed each door (see them with C{pytest -s}, or under trial); an input is one
fuzzed chunk of bytes for a line connection (up to three lines, maybe cut
into packets), or one sequence of frames or chunk of raw bytes for a
WebSocket; the storms that fill buffers are not counted.
L{TelnetStreamFuzzTests} prints how many streams, bytes, packets and
C{DO TIMING-MARK}s it sent, and how many sessions a Ctrl-D ended.  A full
run of this module feeds about 4,100 inputs to the line door and 3,800 to
the WebSocket door, and 300 telnet streams (some 1,000 packets) to one
line connection each, in 20-30 s.  A failing run is shrunk, and printed.
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
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from chatd.accounts import Passwords
from chatd.cluster import ClusterHub
from chatd.doors.admission import Admission, AdmittedConnection, AdmittingFactory, http_refusal
from chatd.doors.base import Door, Session
from chatd.doors.flow import Throttle
from chatd.doors.line import LineChatProtocol, LineDoor
from chatd.doors.telnet import TelnetServer
from chatd.doors.web import make_site
from chatd.doors.websocket import WebSocketDoor
from chatd.hub import ADMIN, MAX_BANS, MAX_INVITES, MAX_KEY_LENGTH, MODES, OPERATOR, Hub, Room
from chatd.limits import Limits
from chatd.model import (
    LOBBY,
    MAX_TOPIC_LENGTH,
    Account,
    RoomRecord,
    check_nick,
    check_room,
    fold,
)
from chatd.store.memory import MemoryStore
from tests.helpers import (
    HANDSHAKE,
    PEER,
    LinePeer,
    LoopbackLog,
    TCPLikeTransport,
    WebSocketPeer,
    quick_passwords,
)

START = 1700000000.0
MAX_ROOMS = 3
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0, 1, 2, 8, 9, 10
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
    "kick ban unban op mode modes invite registered identified password".split()
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


def check_hub(hub: Hub) -> None:
    """
    The hub's indexes agree: users by folded nick, rooms by folded name;
    each user's rooms and each room's members mirror each other; no room
    is empty but the lobby, and nobody is in more rooms than allowed.

    Accounts and moderation too: whoever holds a registered nickname is
    identified for it, and every account a user holds exists; a room's
    guest operators are members; its modes, key, bans and invitations are
    well-formed and bounded; a room has an owner exactly if it is
    registered, and then its settings are the registered ones (and the
    hub's registrations and accounts are the store's).
    """
    lobby = hub.rooms.get(fold(LOBBY))
    expect(lobby is not None and lobby.name == LOBBY, "#lobby is missing", hub.rooms)
    for key, user in hub.users.items():
        expect(key == fold(user.nick), "a user under the wrong key", key, user)
        check_nick(user.nick)
        expect(len(user.rooms) <= hub.max_rooms_per_user, "a user in too many rooms", user)
        if key in hub.accounts:
            expect(user.account == key, "a registered nick held without its account", user)
        expect(user.account is None or user.account in hub.accounts, "no such account", user)
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
        check_room_rules(hub, key, room)
    store: Any = hub.store  # a MemoryStore
    expect(hub.registered == store._records, "registrations differ from the store's")
    expect(hub.accounts == set(store._accounts), "accounts differ from the store's")


def check_room_rules(hub: Hub, key: str, room: Room) -> None:
    """
    One room's operators, modes, key, bans and registration (L{check_hub}).
    """
    expect(room.guest_ops <= room.members.keys(), "a guest operator not in the room", room.name)
    expect(room.modes == "".join(sorted(set(room.modes))), "unsorted modes", room.modes)
    expect(set(room.modes) <= set(MODES), "an unknown mode", room.modes)
    key_ok = room.key is None or (
        0 < len(room.key) <= MAX_KEY_LENGTH and room.key.isprintable() and " " not in room.key
    )
    expect(key_ok, "a bad room key", room.key)
    expect(len(room.bans) <= MAX_BANS and len(room.invites) <= MAX_INVITES, "too many bans")
    record = hub.registered.get(key)
    if room.owner is None:
        expect(record is None, "a registered room without its owner", room.name)
        expect(not room.op_accounts, "operators by account in an unregistered room", room.name)
    else:
        expect(key != fold(LOBBY), "#lobby has an owner", room.owner)
        expect(room.owner in hub.accounts, "a room owned by no account", room.owner)
        expect(record == room.record(), "a room unlike its registration", record, room.record())


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
        passwords = quick_passwords()
        options: dict[str, Any] = {
            "passwords": passwords,
            "admins": ADMINS,
            "max_rooms_per_user": MAX_ROOMS,
            "history_page": 5,
        }
        if test.cluster:
            # One node of a cluster whose log answers at the next tick.
            self.hub = ClusterHub(
                self.clock, old_store(passwords), LoopbackLog(self.clock), **options
            )
            started = self.hub.start()
            self.clock.advance(0)
            test.successResultOf(started)
        else:
            self.hub = Hub(self.clock, store=old_store(passwords), **options)
        self.ending = False
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
        self.leaks: list[str] = []
        self.secrets = {fold(nick): (nick, password) for nick, password in ACCOUNTS.items()}
        globalLogPublisher.addObserver(cast(ILogObserver, self.observe))
        for nick in ("alice", "bob", None):
            self.connect("line", len(self.slots["line"]), nick)
        for nick in ("carol", None):
            self.connect("websocket", len(self.slots["websocket"]), nick)
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
        The connection in C{slot}, or a new one there if it is closing.
        """
        connection = self.peer(door, slot)
        if connection.closing:
            connection = self.connect(door, slot % len(self.slots[door]))
        return connection

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
        connection = cast(WebSocketConnection, world.send("websocket", self.slot, data, self.cuts))
        connection.malformed |= not all(frame.well_formed for frame in self.frames)
        connection.peer_closed |= any(frame.opcode == CLOSE for frame in self.frames)


@dataclass(frozen=True)
class WebSocketBytes:
    """
    Raw bytes from a WebSocket peer, frames or not.
    """

    slot: int
    data: bytes
    cuts: tuple[int, ...] = ()

    def run(self, world: World) -> None:
        connection = cast(
            WebSocketConnection, world.send("websocket", self.slot, self.data, self.cuts)
        )
        connection.malformed = True


@dataclass(frozen=True)
class SecretLine:
    """
    A line from a line peer that gives passwords (every one with L{MARK}
    in it) in a password's place, whole: C{form} is C{register},
    C{identify} (C{/identify PASSWORD}), C{identify_nick}, C{password}
    (C{/password OLD NEW}), C{password_half} (C{/password OLD}), or
    C{sign_on} (C{NICK PASSWORD} at the nickname prompt, if the peer is
    there, else C{identify_nick}; and the other way round).  With
    C{recall}, the nickname and the
    first password are those of an account the run registered (if any).

    Passwords are never mutated, and come on a line of their own (after a
    CR LF if the peer left a line, or a telnet command, unfinished), so
    that the server cannot take them for a nickname or for text to say.
    """

    slot: int
    form: str
    nick: str
    password: str
    other: str
    recall: int | None = None

    def run(self, world: World) -> None:
        connection = cast(LineConnection, world.open_peer("line", self.slot))
        chat = connection.session()
        telnet = connection.telnet
        fresh = (
            isinstance(chat, LineChatProtocol)
            and telnet is not None
            and telnet.state == "data"
            and not connection.pending
            and not chat._buffer
            and not chat._discarding
        )
        at_prompt = (
            fresh
            and isinstance(chat, LineChatProtocol)
            and chat.user is None
            and not chat._closing
            and not chat._inbox
            and chat._pending is None
        )
        user = None if chat is None else chat.user
        nick, password = world.recall(self.recall) or (self.nick, self.password)
        form = self.form
        if at_prompt and form.startswith("identify"):
            form = "sign_on"
        elif form == "sign_on" and not at_prompt:
            form = "identify_nick"
        line = {
            "register": f"/register {self.other}",
            "identify": f"/identify {password}",
            "identify_nick": f"/identify {nick} {password}",
            "password": f"/password {password} {self.other}",
            "password_half": f"/password {password}",
            "sign_on": f"{nick} {password}",
        }[form]
        if user is not None and form == "register":
            world.remember(user.nick, self.other.strip())
        elif user is not None and user.account and form == "password":
            world.remember(user.account, self.other.strip())
        world.tally["line"] += 1
        connection.feed(b"" if fresh else b"\r\n")
        connection.feed(line.encode() + b"\r\n")


@dataclass(frozen=True)
class SecretFrame:
    """
    A request from a WebSocket peer with passwords (marked) in their
    places: C{hello}, C{register}, C{identify} (a C{hello} from a peer
    yet to say it) or C{password}.  With C{recall}, its nickname (if it
    has one) and its first password are those of an account the run
    registered (if any).
    """

    slot: int
    request: tuple[tuple[str, str], ...]
    recall: int | None = None

    def run(self, world: World) -> None:
        request = dict(self.request)
        known = world.recall(self.recall)
        if known is not None:
            first = "old" if "old" in request else "password"
            if "nick" in request:
                request["nick"] = known[0]
            request[first] = known[1]
        connection = world.open_peer("websocket", self.slot)
        session = connection.session()
        user = None if session is None else session.user
        if user is None and request["type"] == "identify":
            request = {**request, "type": "hello", "nick": request.get("nick", "alice")}
        if user is not None and request["type"] == "register":
            world.remember(user.nick, request["password"])
        elif user is not None and user.account and request["type"] == "password":
            world.remember(user.account, request["new"])
        world.send("websocket", self.slot, Frame(json.dumps(request).encode()).encode())


@dataclass(frozen=True)
class Moderate:
    """
    A moderation request from a peer of C{door} that is an operator of a
    room (the C{pick}th such pair, if any; else from C{slot}), about
    another member (or, for C{invite} and C{ban}, another user): C{verb}
    is C{op}, C{deop}, C{kick}, C{ban}, C{unban}, C{mode}, C{invite},
    C{kill} or C{topic}, with C{text} as its reason or topic and C{change}
    and C{key} for C{mode}.  Random requests seldom come from an operator.
    """

    door: str
    slot: int
    pick: int
    verb: str
    text: str
    change: str
    key: str

    def run(self, world: World) -> None:
        hub = world.hub
        candidates = [
            (connection, room)
            for connection in world.slots[self.door]
            if not connection.closing
            for session in [connection.session()]
            if session is not None and session.user is not None and not session._closing
            for room in session.user.rooms.values()
            if hub._rank(session.user, room) >= (ADMIN if self.verb == "kill" else OPERATOR)
        ]
        if not candidates:
            connection = world.open_peer(self.door, self.slot)
            session = connection.session()
            user = None if session is None else session.user
            room_name = LOBBY if user is None or not user.rooms else next(iter(user.rooms))
            room = hub.rooms.get(fold(room_name))
        else:
            connection, room = candidates[self.pick % len(candidates)]
        members = [] if room is None else [m.nick for m in room.members]
        others = [nick for nick in (u.nick for u in hub.users.values()) if nick not in members]
        pool = others if self.verb in ("invite", "ban") and others else members or ["nobody"]
        target = pool[self.pick % len(pool)]
        name = LOBBY if room is None else room.name
        if self.door == "line":
            line = {
                "kick": f"/kick {name} {target} {self.text}",
                "mode": f"/mode {name} {self.change} {self.key}",
                "invite": f"/invite {target} {name}",
                "kill": f"/kill {target} {self.text}",
                "topic": f"/topic {name} {self.text}",
            }.get(self.verb, f"/{self.verb} {name} {target}")
            data = line.encode("utf-8", "surrogatepass") + b"\r\n"
        else:
            request = {"type": self.verb, "room": name, "nick": target}
            if self.verb in ("kick", "kill", "topic"):
                request["reason" if self.verb != "topic" else "text"] = self.text
            elif self.verb == "mode":
                request.update(mode=self.change, key=self.key)
            data = Frame(json.dumps(request).encode()).encode()
        world.tally[self.door] += 1
        connection.feed(data)


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
        world.peer(self.door, self.slot).leave()


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
    (1, st.sampled_from(("", "+", "-", "i", "+x", "++i", "+kk", "+I", "+\u0130", "*"))),
    (1, st.text("+-ikmtx", max_size=5)),
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
    st.sampled_from("op deop kick ban unban mode mode invite kill kill topic".split()),
    st.one_of(st.sampled_from(("", "spam", "bye now")), texts),
    mode_changes,
    keys,
)


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
    (1, st.sampled_from("/register /identify /password /op /deop /kick /ban /unban /mode".split())),
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
    "kick": (("room", "nick"), ("reason",)),
    "ban": (("room", "nick"), ()),
    "unban": (("room", "nick"), ()),
    "mode": (("room",), ("mode", "key")),
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
    cluster = False

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
        world = None
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
        finally:
            if world is not None:
                world.stop()


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


class ClusterFuzzTests(FuzzTestCase):
    """
    The same, on one node of a cluster: every request waits for the log to
    apply it (a tick later), so sessions wait on Deferreds, close while
    one is pending, and sign on while their connection goes away.
    """

    cluster = True

    @fuzz(40)
    @given(actions(line=4, websocket=4, other=2), st.booleans(), st.booleans())
    def test_cluster_node(self, actions: list[Action], shutdown: bool, web: bool) -> None:
        """
        Both doors' fuzzed input on a cluster node keeps every invariant
        the lone hub keeps.
        """
        self.play(actions, shutdown, web)
