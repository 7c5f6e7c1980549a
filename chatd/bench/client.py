# -*- test-case-name: tests.test_bench -*-
"""
The client side of the load tool: many non-blocking sockets in one C{epoll}
loop per worker process, each signing on to either door, joining its room,
and then only counting benchmark messages in the bytes it reads.

Until a connection is in its room it parses what it gets (a few lines or
frames).  After that, a read costs a search for the last complete line or
frame, one C{bytes.count} of the run's marker and, for one delivery per read,
a timestamp parse: the cheapest way found to keep up with a fast server.
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
from typing import Any

from chatd.bench import wire
from chatd.bench.stats import Histogram

LINE, WS = "line", "ws"
LOBBY = "#lobby"
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
READ_SIZE = 1 << 16  # 256 KiB reads cost 5x more: malloc mmaps them

CONNECTING, HANDSHAKE, SIGNON, READY, CLOSED = range(5)
_monotonic_ns = time.monotonic_ns


@dataclass(frozen=True)
class Target:
    """
    Where the doors of the server under test are.
    """

    line: tuple[str, int] | None
    ws: tuple[str, int, str] | None


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


class Client:
    """
    One connection and its counters.

    @ivar got: benchmark messages seen since the start (every run's marker).
    @ivar waiting: for a sender, the key of its message in flight, if any.
    """

    __slots__ = (
        "buf",
        "carry",
        "door",
        "dups",
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
        "sent",
        "sid",
        "sock",
        "state",
        "waiting",
    )

    def __init__(self, loop: Loop, spec: Spec) -> None:
        self.loop = loop
        self.door = LINE if spec.door == LINE else WS  # interned: compared with "is"
        self.nick = spec.nick
        self.room = spec.room
        self.sid = spec.sid
        self.state = CONNECTING
        self.buf = bytearray()
        self.carry = b""
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
        else:
            self.state = HANDSHAKE
            address = self.loop.target.ws
            assert address is not None  # what this client connected to
            host, port, path = address
            request, self.expect_ws_accept = wire.ws_handshake(host, port, path)
            self.write(request)
        self.loop.connected += 1
        self.loop.last_connected = _monotonic_ns()

    def fail(self, why: str) -> None:
        if self.state == CLOSED:
            return
        if self.state != READY:
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
        elif self.state == READY:
            self.received(data)
        else:
            self.setup(data)

    def received(self, data: bytes) -> None:
        """
        The hot path: count the benchmark messages among complete lines or
        frames, answer keepalive probes, and keep the rest for next time.
        """
        if self.carry:
            data = self.carry + data
        if self.door is LINE:
            end = data.rfind(b"\n") + 1
            if b"\xff" in data:  # IAC: the telnet door checks silent clients
                self.write(wire.TELNET_PROBE_ANSWER)
        else:
            end = self._ws_walk(data)
        self.carry = data[end:]
        if end:
            count = data.count(self.loop.mark, 0, end)
            if count:
                self.loop.delivered(self, data, end, count)

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

    def setup(self, data: bytes) -> None:
        """
        Before the client is in its room: parse what comes, watch for the
        sign-on and join confirmations and for refusals.
        """
        self.buf += data
        if self.door is LINE:
            self._line_setup()
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
        if rest:
            self.received(rest)


class Loop:
    """
    One worker's event loop: every client it owns, the counters they feed,
    and the pipe to the parent process.

    @ivar window: C{(start, end)} in C{monotonic_ns}: deliveries and round
        trips are counted, and latency sampled, only inside it.
    @ivar sending: whether senders send their next message once the last
        one came back.
    """

    def __init__(
        self, target: Target, mark: bytes, size: int, check_seq: bool, pipe: Any = None
    ) -> None:
        self.target = target
        self.mark = mark
        self.size = size
        self.check_seq = check_seq
        self.seq_pattern = re.compile(re.escape(mark) + rb"([0-9a-f]{5}):([0-9a-f]{8})")
        self.epoll = select.epoll()
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
            address = self.target.line if spec.door == LINE else self.target.ws
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
        self.epoll.modify(client.fd, mask)

    def became_ready(self, client: Client) -> None:
        self.opening -= 1
        self.ready.append(client)
        self._open_more()

    def closed(self, client: Client, why: str) -> None:
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
            self.epoll.unregister(client.fd)
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

    # -- counting -----------------------------------------------------------

    def delivered(self, client: Client, data: bytes, end: int, count: int) -> None:
        """
        C{count} benchmark messages arrived at C{client} in C{data[:end]}.
        """
        now = _monotonic_ns()
        client.got += count
        start, stop = self.window
        if start <= now < stop:
            self.deliveries += count
            at = data.find(self.mark, 0, end) + wire.TS_OFFSET
            sent = int(data[at : at + wire.TS_DIGITS])
            # The oldest message of the read stands for all of them: an
            # upper bound on each one's latency.
            self.latency.add(now // 1000 - sent, count)
        if self.check_seq:
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
        client.say(wire.text(self.mark, client.sid, seq, _monotonic_ns() // 1000, self.size))

    # -- running ------------------------------------------------------------

    def run(self, done: Callable[[], bool], deadline: float) -> bool:
        """
        Serve every socket until C{done()} or C{deadline} (C{time.monotonic}),
        whichever comes first; return C{done()}.
        """
        poll = self.epoll.poll
        clients = self.clients
        pipe_fd = self.pipe.fileno() if self.pipe is not None else -1
        out_mask = select.EPOLLOUT
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            for fd, events in poll(min(remaining, 0.05)):
                if fd == pipe_fd:
                    self.inbox.append(self.pipe.recv())
                    continue
                client = clients.get(fd)
                if client is None:
                    continue
                if events & out_mask:
                    if client.state == CONNECTING:
                        self._connect_done(client)
                    elif client.out:
                        client.flush()
                    else:
                        self.want_write(client, False)
                    if not events & ~out_mask:
                        continue
                    if client.state == CLOSED:
                        continue
                client.readable()
        return True

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
