# -*- test-case-name: tests.test_bench -*-
"""
The client side of the load tool: many non-blocking sockets in one C{epoll}
loop per worker process, each signing on to one of the doors (line,
WebSocket, IRC), joining its room, and then only counting benchmark
messages in the bytes it reads.

Until a connection is in its room it parses what it gets (a few lines or
frames).  After that, two kinds of client read differently:

  - the I{sample} (every sender and a few receivers, L{Spec.sample}) is
    read as soon as data comes: it times the messages (latency), checks
    their order, and the senders send their next message from there;
  - every other client only counts the run's marker in what it reads, and
    is read in a I{sweep} of a second C{epoll} set every few milliseconds
    (L{Loop.sweep_every}), so that each read takes several of the server's
    writes at once.  On loopback most of a read's cost is per read, not per
    byte: the C{ACK} the kernel sends when the socket is emptied, and the
    server-side processing of that C{ACK}, are charged to the reader.

Nobody waits on the swept set, so data arriving there wakes nobody up; with
C{busy_poll} the loop does not sleep at all while messages flow (L{Loop.run}).

Last, a run may I{watch} its connections while the server shuts down
(L{Loop.watch}): every client still open then only counts the bytes and the
lines (or data frames) it reads, answers pings and the server's close frame
as a browser would, and notes when the server closes it.

IRC does not echo a client's own messages: a client that speaks asks for
C{echo-message} with its first message (L{Client.say}), so that a sender
gets its own copy back as on the other doors.
"""

from __future__ import annotations

import errno
import json
import re
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chatd.bench import wire
from chatd.bench.stats import Histogram

if TYPE_CHECKING:
    from chatd.bench.runner import Settings

LINE, WS, IRC = "line", "ws", "irc"
DOORS = {door: door for door in (LINE, WS, IRC)}
"""Each door's name, interned: a client's door is compared with C{is}."""
LOBBY = "#lobby"
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
READ_SIZE = 1 << 16  # 256 KiB reads cost 5x more: malloc mmaps them
MAX_BUFFER = 1 << 23
"""Bytes a client may hold back (an incomplete line or frame, unsent output)."""
SWEEP_MAX = 0.02
"""Seconds between two sweeps of the swept clients, at most: several of the
server's writes (one per connection per reactor pass) per read."""
SWEEP_MIN = 0.001
"""... and at least, when reads come back half full (a fast connection)."""
WATCH_SWEEP = 0.005
"""... and at most, while watching the server shut down: how precisely the
time of the last close is known."""
SWEEP_CHUNK = 128
"""Swept reads between two looks at the sample, which must not wait."""
BUSY_HOLD = 0.1
"""With C{busy_poll}: seconds after the last event during which the loop
keeps polling without sleeping."""
IRC_QUIET_NS = 60 * 10**9
"""Nanoseconds after joining during which a swept IRC client does not look
for C{PING} (a second search of every read): the IRC door pings a client
only after 120 s without a word from it."""
IRC_ECHO = b"CAP REQ :echo-message\r\n"
IRC_PONG = b"PONG :bench\r\n"  # any line is a sign of life: no token needed

CONNECTING, HANDSHAKE, SIGNON, READY, CLOSED, WATCHING = range(6)
_monotonic_ns = time.monotonic_ns


@dataclass(frozen=True)
class Target:
    """
    Where the doors of the server under test are.
    """

    line: tuple[str, int] | None
    ws: tuple[str, int, str] | None
    irc: tuple[str, int] | None = None

    def address(self, door: str) -> tuple[str, int] | tuple[str, int, str] | None:
        return self.ws if door == WS else self.irc if door == IRC else self.line


@dataclass(frozen=True)
class Spec:
    """
    One client to open: its global index, door, nick, room and source address.
    """

    index: int
    door: str
    nick: str
    room: str
    source: str | None
    sid: int | None = None
    sample: bool = False
    """Read at once, timed and order-checked (see the module docstring)."""


class Client:
    """
    One connection and its counters.

    @ivar got: benchmark messages seen since the start (every run's marker).
    @ivar waiting: for a sender, the key of its message in flight, if any.
    @ivar sample: read at once, timed, order-checked; else swept and counted.
    @ivar swept: registered in the loop's swept C{epoll} set.
    @ivar counting: swept and only counting (L{counted}), not parsing.
    @ivar carry: the bytes of the last read still to be looked at again
        with the next one; with C{counting}, marks that start before
        C{skip} in it were already counted.
    @ivar watched_bytes: with C{WATCHING}, bytes read since the watch began.
    @ivar watched_messages: ... and lines (line door) or data frames
        (WebSocket door) among them.
    """

    __slots__ = (
        "buf",
        "carry",
        "counting",
        "door",
        "dups",
        "echo",
        "error",
        "expect_ws_accept",
        "fd",
        "got",
        "loop",
        "missing",
        "next_seq",
        "nick",
        "out",
        "ready_at",
        "room",
        "sample",
        "sent",
        "sid",
        "skip",
        "sock",
        "state",
        "swept",
        "waiting",
        "watched_bytes",
        "watched_messages",
    )

    def __init__(self, loop: Loop, spec: Spec) -> None:
        self.loop = loop
        self.door = DOORS[spec.door]
        self.nick = spec.nick
        self.room = spec.room
        self.sid = spec.sid
        self.sample = spec.sample
        self.swept = False
        self.counting = False
        self.state = CONNECTING
        self.buf = bytearray()
        self.carry = b""
        self.skip = 0
        self.out = b""
        self.got = 0
        self.sent = 0
        self.waiting: bytes | None = None
        self.error: str | None = None
        self.ready_at = 0
        self.next_seq: dict[bytes, int] = {}
        self.missing = 0
        self.dups = 0
        self.expect_ws_accept = b""
        self.echo = False
        self.watched_bytes = 0
        self.watched_messages = 0
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if spec.source is not None:
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((spec.source, 0))
        self.sock = sock
        self.fd = sock.fileno()

    # -- output -------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.out:
            if len(self.out) + len(data) > MAX_BUFFER:
                self.fail("the server does not read what it is sent")
                return
            self.out += data
            return
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as e:
            self.fail(f"send: {e.strerror}")
            return
        if sent < len(data):
            self.out = data[sent:]
            self.loop.want_write(self, True)

    def flush(self) -> None:
        out, self.out = self.out, b""
        self.loop.want_write(self, False)
        self.write(out)

    def say(self, text: str) -> None:
        if self.door is LINE:
            self.write(wire.line(text))
        elif self.door is IRC:
            said = wire.line(f"PRIVMSG {self.room} :{text}")
            if not self.echo:  # the first time: ask for our own messages back
                self.echo = True
                said = IRC_ECHO + said
            self.write(said)
        else:
            self.write(wire.ws_json({"type": "say", "room": self.room, "text": text}))

    # -- lifecycle ----------------------------------------------------------

    def connected(self) -> None:
        """
        The TCP connection is up: sign on (pipelined) or start the upgrade.
        """
        if self.door is LINE:
            self.state = SIGNON
            greeting = wire.line(self.nick)
            if self.room != LOBBY:
                greeting += wire.line(f"/join {self.room}")
            self.write(greeting)
        elif self.door is IRC:
            self.state = HANDSHAKE  # registering; JOIN once welcomed (001)
            self.write(wire.line(f"NICK {self.nick}") + wire.line(f"USER {self.nick} 0 * :bench"))
        else:
            self.state = HANDSHAKE
            address = self.loop.settings.target.ws
            assert address is not None  # what this client connected to
            host, port, path = address
            request, self.expect_ws_accept = wire.ws_handshake(host, port, path)
            self.write(request)
        self.loop.connected += 1
        self.loop.last_connected = _monotonic_ns()

    def fail(self, why: str) -> None:
        if self.state == CLOSED:
            return
        if self.state not in (READY, WATCHING):
            self.error = why
        self.loop.closed(self, why)
        self.state = CLOSED

    def close(self) -> None:
        if self.state != CLOSED:
            self.state = CLOSED
            self.loop.forget(self)

    # -- input --------------------------------------------------------------

    def readable(self) -> None:
        try:
            data = self.sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError as e:
            self.fail(f"recv: {e.strerror}")
            return
        if not data:
            self.fail("closed by the server")
            return
        if self.swept and len(data) > READ_SIZE // 2:
            self.loop.full_reads += 1
        if self.counting:
            self.counted(data)
        elif self.state == READY:
            self.received(data)
        elif self.state == WATCHING:
            self.watched(data)
        else:
            self.setup(data)

    def counted(self, data: bytes) -> None:
        """
        The cheapest path, for swept clients: count the run's marker in
        C{data}, answer keepalive probes, keep the few bytes a marker or a
        ping could straddle.  Lines and frames are not delimited: a marker
        is only ever sent inside a message, and a ping is recognised as a
        control frame header right after the C{}} that ends every JSON
        frame (a byte that never follows C{}} in UTF-8 text).  An IRC
        C{PING} is only looked for after L{IRC_QUIET_NS}.
        """
        loop = self.loop
        if self.carry:
            data = self.carry + data
        count = data.count(loop.mark, self.skip)
        if count:
            self.got += count
            start, stop = loop.window
            if start <= _monotonic_ns() < stop:
                loop.deliveries += count
        size = len(data)
        tail = size - wire.MARK_SIZE + 1  # a marker from here on is incomplete
        if self.door is WS:
            cut, done = self._pings(data)
            if data[-1] == 0x7D:  # "}": a ping may follow in the next read
                cut = min(cut, size - 1)
        else:
            cut, done = size, 0
            if self.door is LINE or _monotonic_ns() - self.ready_at > IRC_QUIET_NS:
                self._probes(data)
                if self.door is IRC:  # "PING " may straddle two reads
                    cut = max(0, tail)
        at = data.find(b"@", max(tail, done))
        if 0 <= at < cut:
            cut = at
        if cut < size:
            self.carry = data[cut:]
            self.skip = max(0, tail - cut)
        else:
            self.carry = b""
            self.skip = 0

    def _pings(self, data: bytes) -> tuple[int, int]:
        """
        Answer every complete ping in C{data} that follows a JSON frame;
        return where an incomplete one starts (else C{len(data)}) and where
        the last one answered ends (else 0).  Searched for by its opcode
        byte alone: C{bytes.find} of one byte is C{memchr}, of two bytes
        some thirty times slower.
        """
        size = len(data)
        done = 0
        at = data.find(b"\x89", 1)
        while at > 0:
            if data[at - 1] == 0x7D:  # "}"
                if at + 2 > size:
                    return at - 1, done
                length = data[at + 1]
                if length < 126:  # else not a (server, unmasked) control frame
                    end = at + 2 + length
                    if end > size:
                        return at - 1, done
                    self.write(wire.ws_frame(data[at + 2 : end], wire.WS_PONG))
                    done = end
                    at = data.find(b"\x89", end + 1)
                    continue
            at = data.find(b"\x89", at + 1)
        return size, done

    def received(self, data: bytes) -> None:
        """
        The hot path: count the benchmark messages among complete lines or
        frames, answer keepalive probes, and keep the rest for next time.
        """
        if self.carry:
            data = self.carry + data
        if len(data) > MAX_BUFFER:
            self.fail(f"a line or frame longer than {MAX_BUFFER} bytes")
            return
        if self.door is WS:
            end = self._ws_walk(data)
        else:
            end = data.rfind(b"\n") + 1
            self._probes(data)
        self.carry = data[end:]
        if end:
            count = data.count(self.loop.mark, 0, end)
            if count:
                self.loop.delivered(self, data, end, count)

    def _probes(self, data: bytes) -> None:
        """
        Answer the line or IRC door's checks of a silent client in C{data}:
        the telnet door's C{IAC} probe, an IRC C{PING}.
        """
        if self.door is LINE:
            if b"\xff" in data:
                self.write(wire.TELNET_PROBE_ANSWER)
        elif b"PING " in data:
            self.write(IRC_PONG)

    def _ws_walk(self, data: bytes) -> int:
        """
        Where the complete frames in C{data} end; control frames (pings,
        close) are acted on.
        """
        controls, end = wire.ws_frames(data, 0, control_only=True)
        for opcode, start, stop in controls:
            self._ws_control(opcode, data[start:stop])
        return end

    def _ws_control(self, opcode: int, payload: bytes) -> None:
        if opcode == wire.WS_PING:
            self.write(wire.ws_frame(payload, wire.WS_PONG))
        elif opcode == wire.WS_CLOSE:
            self.write(wire.ws_frame(payload[:2], wire.WS_CLOSE))
            self.fail("WebSocket closed by the server")

    def watched(self, data: bytes) -> None:
        """
        While watching the server shut down: count bytes and lines (C{\\n},
        not decoded) or data frames (a walk over their headers only), and
        answer as a browser or telnet client would: pongs, and the close
        frame echoed, after which the server closes the connection.
        """
        self.watched_bytes += len(data)
        if self.door is not WS:
            self.watched_messages += data.count(b"\n")
            self._probes(data)
            return
        if self.carry:
            data = self.carry + data
        frames, end = wire.ws_frames(data, 0)
        self.carry = data[end:]
        if len(self.carry) > MAX_BUFFER:
            self.fail(f"a frame longer than {MAX_BUFFER} bytes")
            return
        for opcode, start, stop in frames:
            if not opcode & 0x08:
                self.watched_messages += 1
            elif opcode == wire.WS_PING:
                self.write(wire.ws_frame(data[start:stop], wire.WS_PONG))
            elif opcode == wire.WS_CLOSE:  # the server closes the TCP connection next
                self.write(wire.ws_frame(data[start : min(stop, start + 2)], wire.WS_CLOSE))

    def setup(self, data: bytes) -> None:
        """
        Before the client is in its room: parse what comes, watch for the
        sign-on and join confirmations and for refusals.
        """
        self.buf += data
        if len(self.buf) > MAX_BUFFER:
            self.fail(f"more than {MAX_BUFFER} bytes before being in the room")
            return
        if self.door is LINE:
            self._line_setup()
        elif self.door is IRC:
            self._irc_setup()
        elif self.state == HANDSHAKE:
            self._ws_handshake()
        else:
            self._ws_setup()

    def _line_setup(self) -> None:
        nick = self.nick.encode()
        if self.room == LOBBY:
            sentinel = b"*** Welcome, " + nick + b"!"
        else:
            sentinel = b"*** %s has joined %s\r\n" % (nick, self.room.encode())
        at = self.buf.find(sentinel)
        if at < 0:
            error = self.buf.find(b"!!! ")
            if error >= 0 and self.buf.find(b"\n", error) >= 0:
                end = self.buf.find(b"\n", error)
                self.fail(self.buf[error:end].decode("utf-8", "replace").strip())
            return
        end = self.buf.find(b"\n", at) + 1
        if end == 0:
            return
        rest = bytes(self.buf[end:])
        self._ready(rest)

    def _irc_setup(self) -> None:
        """
        Registering (C{HANDSHAKE}): C{JOIN} the room once welcomed (C{001}).
        Joining (C{SIGNON}): in the room at the end of its names (C{366}),
        after our own C{JOIN}.  An C{ERROR} or an error numeric (but 422,
        no MOTD) is a refusal.
        """
        data = bytes(self.buf)
        joined = b"%s %s " % (self.nick.encode(), self.room.encode())
        start = 0
        while stop := data.find(b"\n", start) + 1:
            line = data[start:stop]
            start = stop
            words = line.split(None, 2)
            if words[:1] and words[0][:1] == b":":
                del words[0]  # the source
            command = words[0] if words else b""
            if command == b"366" and line.find(joined) >= 0:
                self._ready(data[stop:])
                return
            if command == b"001" and self.state == HANDSHAKE:
                self.state = SIGNON
                self.write(wire.line(f"JOIN {self.room}"))
            elif command == b"PING":
                self.write(IRC_PONG)
            elif command == b"ERROR" or (
                len(command) == 3 and command[:1] in b"45" and command != b"422"
            ):
                self.fail(line.decode("utf-8", "replace").strip())
                return
        del self.buf[:start]

    def _ws_handshake(self) -> None:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).decode("latin-1")
        status = head.split("\r\n", 1)[0]
        if " 101 " not in status + " ":
            self.fail(f"handshake refused: {status}")
            return
        if self.expect_ws_accept.decode().lower() not in head.lower():
            self.fail("bad Sec-WebSocket-Accept")
            return
        del self.buf[: end + 4]
        self.state = SIGNON
        hello = wire.ws_json({"type": "hello", "nick": self.nick})
        if self.room != LOBBY:
            hello += wire.ws_json({"type": "join", "room": self.room})
        self.write(hello)
        self._ws_setup()

    def _ws_setup(self) -> None:
        data = bytes(self.buf)
        frames, end = wire.ws_frames(data, 0)
        for opcode, start, stop in frames:
            if opcode & 0x08:
                self._ws_control(opcode, data[start:stop])
                if self.state == CLOSED:
                    return
                continue
            try:
                frame = json.loads(data[start:stop])
            except ValueError:
                continue
            kind = frame.get("type") if isinstance(frame, dict) else None
            if kind == "error":
                self.fail(f"{frame.get('code')}: {frame.get('message')}")
                return
            if (self.room == LOBBY and kind == "welcome") or (
                kind == "join" and frame.get("nick") == self.nick and frame.get("room") == self.room
            ):
                self._ready(data[stop:])
                return
        del self.buf[:end]

    def _ready(self, rest: bytes) -> None:
        self.buf = bytearray()
        self.state = READY
        self.ready_at = _monotonic_ns()
        self.loop.became_ready(self)
        if not rest:
            return
        if self.counting:
            self.counted(rest)
        else:
            self.received(rest)


class Loop:
    """
    One worker's event loop: every client it owns, the counters they feed,
    and the pipe to the parent process.

    Two C{epoll} sets: C{epoll} (the pipe, clients setting up, the sample)
    is waited on; C{swept} (every other client in its room) is only polled,
    without waiting, every C{sweep_every} seconds.

    @ivar window: C{(start, end)} in C{monotonic_ns}: deliveries and round
        trips are counted, and latency sampled, only inside it.
    @ivar sending: whether senders send their next message once the last
        one came back.
    @ivar settings: the run's (its C{busy_poll}: poll without sleeping while
        messages flow, so that the server pays no loopback wake-up, at the
        cost of a full core here).
    @ivar spin_s: with C{busy_poll}, CPU time spent polling in vain (what
        the tool's CPU figure holds beyond its work).
    """

    def __init__(self, settings: Settings, pipe: Any = None) -> None:
        self.settings = settings
        self.mark = mark = settings.mark  # read for every read of every client
        self.seq_pattern = re.compile(re.escape(mark) + rb"([0-9a-f]{5}):([0-9a-f]{8})")
        self.epoll = select.epoll()
        self.swept = select.epoll()
        self.clients: dict[int, Client] = {}
        self.pending: list[Spec] = []
        self.opening = 0
        self.connected = 0
        self.last_connected = 0
        self.ready: list[Client] = []
        self.errors: dict[str, int] = {}
        self.dropped = 0
        self.window = (0, 0)
        self.sending = False
        self.deliveries = 0
        self.round_trips = 0
        self.latency = Histogram()
        self.sweep_every = self.sweep_max = SWEEP_MAX
        self.next_sweep = 0.0
        self.full_reads = 0
        self.spin_s = 0.0
        self.watching = 0
        self.watch_closed = 0
        self.watch_close_kinds: dict[str, int] = {}
        self.last_close = 0
        self.pipe = pipe
        self.inbox: list[Any] = []
        if pipe is not None:
            self.epoll.register(pipe.fileno(), select.EPOLLIN)

    # -- opening ------------------------------------------------------------

    def open(self, specs: list[Spec], concurrency: int) -> None:
        """
        Queue C{specs} to be opened, at most C{concurrency} at a time in setup.
        """
        self.pending.extend(reversed(specs))
        self.concurrency = concurrency
        self._open_more()

    def _open_more(self) -> None:
        while self.pending and self.opening < self.concurrency:
            spec = self.pending.pop()
            try:
                client = Client(self, spec)
            except OSError as e:
                self._count_error(f"socket: {e.strerror}")
                continue
            address = self.settings.target.address(spec.door)
            assert address is not None
            code = client.sock.connect_ex(address[:2])
            if code not in (0, errno.EINPROGRESS):
                self._count_error(f"connect: {errno.errorcode.get(code, code)}")
                client.sock.close()
                continue
            self.opening += 1
            self.clients[client.fd] = client
            self.epoll.register(client.fd, select.EPOLLIN | select.EPOLLOUT)

    def _count_error(self, why: str, count: int = 1) -> None:
        self.errors[why] = self.errors.get(why, 0) + count

    def want_write(self, client: Client, wanted: bool) -> None:
        mask = select.EPOLLIN | (select.EPOLLOUT if wanted else 0)
        (self.swept if client.swept else self.epoll).modify(client.fd, mask)

    def became_ready(self, client: Client) -> None:
        """
        C{client} is in its room: unless it is in the sample, it moves to
        the swept set.
        """
        self.opening -= 1
        self.ready.append(client)
        if not client.sample:
            mask = select.EPOLLIN | (select.EPOLLOUT if client.out else 0)
            self.epoll.unregister(client.fd)
            self.swept.register(client.fd, mask)
            client.swept = True
            client.counting = not self.settings.check_seq
            if client.counting and client.door is WS:
                # What comes next starts a frame: as if after a JSON frame.
                client.carry, client.skip = b"}", 1
        self._open_more()

    def closed(self, client: Client, why: str) -> None:
        if client.state == WATCHING:
            self.watching -= 1
            self.watch_closed += 1
            self.watch_close_kinds[why] = self.watch_close_kinds.get(why, 0) + 1
            self.last_close = _monotonic_ns()
            self.forget(client)
            return
        if client.state == READY:
            self.dropped += 1
        else:
            self.opening -= 1
            self._count_error(why)
        self.forget(client)
        self._open_more()

    def forget(self, client: Client) -> None:
        self.clients.pop(client.fd, None)
        try:
            (self.swept if client.swept else self.epoll).unregister(client.fd)
        except (OSError, ValueError):
            pass
        client.sock.close()

    @property
    def setting_up(self) -> bool:
        return bool(self.pending or self.opening)

    def give_up_setting_up(self) -> None:
        """
        The setup time is over: count every client not yet in its room as an
        error, and close it.
        """
        if self.pending:
            self._count_error("not opened within --setup-timeout", len(self.pending))
            self.pending.clear()
        for client in [c for c in self.clients.values() if c.state not in (READY, CLOSED)]:
            client.fail("not signed on within --setup-timeout")

    def watch(self) -> list[Client]:
        """
        Every client in its room starts watching (L{Client.watched}): from
        now on it counts what it reads, and its close is counted in
        C{watch_closed} (by why, in C{watch_close_kinds}) with its time in
        C{last_close}, known to within L{WATCH_SWEEP}: swept clients stay
        swept (a sleeping reader would cost the server a wake-up per write),
        but more often.  The clients watching.
        """
        watched = [c for c in self.clients.values() if c.state == READY]
        for client in watched:
            if client.door is not WS:
                client.carry = b""  # lines are counted by their ends alone
            elif client.counting:
                # Where counting stopped: after a frame's closing "}" (the
                # sentinel, maybe followed by the start of the next frame),
                # as nothing is in flight once every connection is idle.
                carry = client.carry
                client.carry = carry[1:] if carry[:1] == b"}" else b""
            client.counting = False
            client.skip = 0
            client.watched_bytes = client.watched_messages = 0
            client.state = WATCHING
        self.watching = len(watched)
        self.sweep_max = WATCH_SWEEP
        self.sweep_every = min(self.sweep_every, WATCH_SWEEP)
        self.next_sweep = 0.0
        return watched

    # -- counting -----------------------------------------------------------

    def delivered(self, client: Client, data: bytes, end: int, count: int) -> None:
        """
        C{count} benchmark messages arrived at C{client} in C{data[:end]}.
        Only the sample parses anything: a timestamp, its sequence numbers
        and, for a sender, whether its message in flight came back.
        """
        client.got += count
        if client.sample:
            self._sampled(client, data, end, count)
        else:
            start, stop = self.window
            if start <= _monotonic_ns() < stop:
                self.deliveries += count
            if self.settings.check_seq:
                self._check_seq(client, data, end)

    def _sampled(self, client: Client, data: bytes, end: int, count: int) -> None:
        now = _monotonic_ns()
        start, stop = self.window
        if start <= now < stop:
            self.deliveries += count
            at = data.find(self.mark, 0, end) + wire.TS_OFFSET
            sent = int(data[at : at + wire.TS_DIGITS])
            # The oldest message of the read stands for all of them: an
            # upper bound on each one's latency.
            self.latency.add(now // 1000 - sent, count)
        self._check_seq(client, data, end)
        waiting = client.waiting
        if waiting is not None and data.find(waiting, 0, end) >= 0:
            client.waiting = None
            if start <= now < stop:
                self.round_trips += 1
            if self.sending:
                self.send_next(client)

    def _check_seq(self, client: Client, data: bytes, end: int) -> None:
        expected = client.next_seq
        for sid, seq_hex in self.seq_pattern.findall(data, 0, end):
            seq = int(seq_hex, 16)
            want = expected.get(sid, 0)
            if seq < want:
                client.dups += 1
            else:
                client.missing += seq - want
                expected[sid] = seq + 1

    def send_next(self, client: Client) -> None:
        assert client.sid is not None
        seq = client.sent
        client.sent += 1
        client.waiting = wire.key(self.mark, client.sid, seq)
        client.say(
            wire.text(self.mark, client.sid, seq, _monotonic_ns() // 1000, self.settings.size)
        )

    # -- running ------------------------------------------------------------

    def run(self, done: Callable[[], bool], deadline: float) -> bool:
        """
        Serve every socket until C{done()} or C{deadline} (C{time.monotonic}),
        whichever comes first; return C{done()}.

        The loop sleeps in C{epoll_wait} until the next sweep is due, unless
        C{busy_poll} and an event came within L{BUSY_HOLD} seconds.
        """
        poll = self.epoll.poll
        busy = self.settings.busy_poll
        busy_until = 0.0
        spinning = -1.0  # this thread's CPU time when the empty polls began
        monotonic = time.monotonic
        cpu = time.thread_time
        while not done():
            now = monotonic()
            remaining = deadline - now
            if remaining <= 0:
                break
            if now >= self.next_sweep:
                if spinning >= 0:
                    self.spin_s += cpu() - spinning
                    spinning = -1.0
                if self._sweep():
                    busy_until = now + BUSY_HOLD
                now = monotonic()
                self.next_sweep = now + self.sweep_every
            if busy and now < busy_until:
                events = poll(0)
                if not events:
                    if spinning < 0:
                        spinning = cpu()
                    continue
                if spinning >= 0:
                    self.spin_s += cpu() - spinning
                    spinning = -1.0
            else:
                events = poll(max(0.0, min(remaining, self.next_sweep - now, 0.05)))
            if events:
                busy_until = now + BUSY_HOLD
                self._dispatch(events)
        if spinning >= 0:
            self.spin_s += cpu() - spinning
        return done()

    def _sweep(self) -> bool:
        """
        Read every swept client that has something, looking at the sample
        every L{SWEEP_CHUNK} reads; adapt C{sweep_every} to how full the
        reads came back.  Whether anything was read.
        """
        self.full_reads = 0
        found = False
        for _ in range(len(self.clients) // 1000 + 2):
            events = self.swept.poll(0, 1000)
            for at in range(0, len(events), SWEEP_CHUNK):
                self._dispatch(events[at : at + SWEEP_CHUNK])
                self._dispatch(self.epoll.poll(0))
            found = found or bool(events)
            if len(events) < 1000:
                break
        if self.full_reads:
            self.sweep_every = max(SWEEP_MIN, self.sweep_every / 2)
        elif self.sweep_every < self.sweep_max:
            self.sweep_every = min(self.sweep_max, self.sweep_every * 1.25)
        return found

    def _dispatch(self, events: list[tuple[int, int]]) -> None:
        clients = self.clients
        pipe_fd = self.pipe.fileno() if self.pipe is not None else -1
        out_mask = select.EPOLLOUT
        for fd, mask in events:
            if fd == pipe_fd:
                self.inbox.append(self.pipe.recv())
                continue
            client = clients.get(fd)
            if client is None:
                continue
            if mask & out_mask:
                if client.state == CONNECTING:
                    self._connect_done(client)
                elif client.out:
                    client.flush()
                else:
                    self.want_write(client, False)
                if not mask & ~out_mask:
                    continue
                if client.state == CLOSED:
                    continue
            client.readable()

    def _connect_done(self, client: Client) -> None:
        code = client.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            client.fail(f"connect: {errno.errorcode.get(code, code)}")
            return
        self.want_write(client, False)
        client.connected()

    def message(self, deadline: float) -> Any:
        """
        The next message from the parent, serving the sockets while waiting.
        """
        self.run(lambda: bool(self.inbox), deadline)
        if not self.inbox:
            raise TimeoutError("no word from the parent process")
        return self.inbox.pop(0)

    def close_all(self) -> None:
        for client in list(self.clients.values()):
            client.close()
        self.epoll.close()
        self.swept.close()
