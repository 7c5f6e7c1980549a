"""
A smoke run of the load tool (C{python -m chatd.bench}) against a real
C{twistd chatd} on loopback: a few clients for about a second on each door,
so that the tool keeps working as the server changes.  Nothing here is timed.
And its exit status: a run in which clients could not connect or sign on, or
that measured nothing, fails.  And, without a server, the counting path of
the clients that are not in the sample, over every way a read can split, and
what a client watching the server shut down counts.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from chatd.bench import idle, wire
from chatd.bench.__main__ import main as bench_main
from chatd.bench.client import (
    HANDSHAKE,
    IRC,
    IRC_ECHO,
    IRC_PONG,
    IRC_QUIET_NS,
    LINE,
    READY,
    WATCHING,
    WS,
    Client,
    Loop,
    Spec,
    Target,
)
from chatd.bench.runner import Settings
from tests.support.processes import (
    CHECKOUT,
    LOCAL_TCP0,
    LOCALHOST,
    TIMEOUT,
    TwistdProcess,
    busy_port,
    checkout_env,
    scratch_dir,
    terminated_by_sigterm,
)

RUN_TIMEOUT = 60.0


def run_bench(
    case: SynchronousTestCase, args: Sequence[str], server: TwistdProcess | None = None
) -> tuple[int, dict[str, Any], str]:
    """
    Run the tool with C{args} and C{--json}: its exit status, its JSON
    result and what it wrote on standard error.
    """
    command = [sys.executable, "-m", "chatd.bench", *args, "--json"]
    process = subprocess.Popen(
        command,
        cwd=CHECKOUT,
        env=checkout_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    case.addCleanup(_kill, process)
    try:
        out, err = process.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{command} still running after {RUN_TIMEOUT}s") from None
    try:
        result: dict[str, Any] = json.loads(out)
    except ValueError:
        server_log = "" if server is None else f"--- server ---\n{server.output()}"
        raise AssertionError(
            f"{command} printed no JSON (status {process.returncode}):\n{out}\n{err}\n" + server_log
        ) from None
    return process.returncode, result, err


def closed_port() -> int:
    """
    A loopback port that nothing listens on: one just bound and closed
    again (connecting to it is refused).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOCALHOST, 0))
        port: int = probe.getsockname()[1]
    return port


class BenchSmokeTests(SynchronousTestCase):
    """
    C{chatd-bench fanout} and C{idle}, a few clients each, on both doors.
    """

    def setUp(self) -> None:
        self.server = TwistdProcess(
            self,
            [
                "-n",
                "--pidfile=",
                "chatd",
                "--line",
                LOCAL_TCP0,
                "--web",
                LOCAL_TCP0,
                "--irc",
                LOCAL_TCP0,
                "--flood-rate",
                "0",
                "--max-per-ip",
                "0",
                "--connect-rate",
                "0",
            ],
            cwd=scratch_dir(self),
            env=checkout_env(),
        )
        self.doors = [
            "--line",
            f"{LOCALHOST}:{self.server.port('line')}",
            "--ws",
            f"ws://{LOCALHOST}:{self.server.port('web')}/ws",
            "--irc",
            f"{LOCALHOST}:{self.server.port('irc')}",
        ]

    def bench(self, *args: str) -> dict[str, Any]:
        """
        Run the tool with C{args} and the server's doors; its JSON result,
        after checking that it exited with 0 and found no problem.
        """
        status, result, err = run_bench(self, [*args, *self.doors], self.server)
        self.assertEqual((status, result["problems"], err), (0, [], ""), result)
        return result

    def assert_clean_fanout(self, door: str, *args: str) -> dict[str, Any]:
        result = self.bench(
            "fanout",
            "--door",
            door,
            "--clients",
            "6",
            "--senders",
            "3",
            "--rooms",
            "2",
            "--workers",
            "2",
            "--warmup",
            "0.2",
            "--duration",
            "1",
            *(args or ("--check", "seq")),
        )
        self.assertEqual(result["connected"], 6, result)
        self.assertEqual(result["connect_errors"], 0, result)
        self.assertGreater(result["deliveries"], 0, result)
        self.assertGreater(result["messages"], 0, result)
        self.assertEqual(result["missing"], 0, result)
        self.assertEqual(result["duplicates"], 0, result)
        self.assertIsNotNone(result["latency_ms"]["p50"], result)
        self.assertEqual(len(result["tool_cpu"]["workers"]), 2, result)
        return result

    def test_fanout_line(self) -> None:
        """
        Line clients in two rooms: every message reaches every member of its
        room exactly once.
        """
        self.assert_clean_fanout("line")

    def test_fanout_websocket(self) -> None:
        """
        The same over the WebSocket door (masked frames, hello, join).
        """
        self.assert_clean_fanout("ws")

    def test_fanout_irc(self) -> None:
        """
        The same over the IRC door (NICK, USER, JOIN; the senders ask for
        C{echo-message}), with every delivery parsed, then with the
        receivers outside the sample only counted.
        """
        self.assert_clean_fanout("irc")
        result = self.assert_clean_fanout("irc", "--sample", "0", "--check", "count")
        self.assertEqual(result["sample"], 3, result)

    def test_fanout_mixed(self) -> None:
        """
        Both doors in the same rooms.
        """
        result = self.assert_clean_fanout("mix")
        self.assertEqual((result["poll"], result["sample"]), ("sleep", 6), result)

    def test_fanout_swept(self) -> None:
        """
        Receivers outside the sample are read in sweeps and only counted
        (C{--check count}), or parsed in full (C{--check seq}); with
        C{--busy-poll} the result says so and how much of the tool's CPU
        went into polls that found nothing.
        """
        for check in ("count", "seq"):
            result = self.assert_clean_fanout("mix", "--sample", "0", "--check", check)
            self.assertEqual((result["check"], result["sample"]), (check, 3), result)
        result = self.assert_clean_fanout("mix", "--sample", "1", "--busy-poll")
        self.assertEqual((result["poll"], result["sample"]), ("busy", 4), result)
        self.assertIn("spin_pct", result["tool_cpu"], result)

    def test_idle(self) -> None:
        """
        Idle connections from several source addresses all get the probe,
        and the server's memory is reported when its pid is given.
        """
        result = self.bench(
            "idle",
            "--door",
            "mix",
            "--connections",
            "8",
            "--hold",
            "0.2",
            "--workers",
            "2",
            "--pid",
            str(self.server.pid),
        )
        self.assertEqual(result["signed_on"], 8, result)
        self.assertEqual(result["probe_received"], 8, result)
        self.assertIsNotNone(result["server_rss_kib_per_connection"], result)

    def test_idle_irc(self) -> None:
        """
        IRC clients join C{#lobby} themselves: every one gets the probe (its
        sender too, by C{echo-message}); with C{--sigterm}, every one is
        closed by the server and gets at least one line meanwhile.
        """
        result = self.bench(
            "idle",
            "--door",
            "irc",
            "--connections",
            "20",
            "--hold",
            "0.2",
            "--workers",
            "2",
            "--pid",
            str(self.server.pid),
            "--sigterm",
        )
        self.assertTrue(terminated_by_sigterm(self.server.wait()), self.server.output())
        self.assertEqual((result["signed_on"], result["probe_received"]), (20, 20), result)
        self.assertIsNotNone(result["server_rss_kib_per_connection"], result)
        self.assertEqual((result["sigterm_watched"], result["sigterm_closed"]), (20, 20), result)
        self.assertGreaterEqual(result["sigterm_messages_per_connection"], 1, result)
        self.assertIn(" lines per connection", idle.render(result))

    def test_idle_sigterm(self) -> None:
        """
        With C{--sigterm}, once the probe is through the tool sends SIGTERM
        to the server while every connection is open, sees the process exit
        and every connection closed by the server, and counts what each
        received meanwhile: at least the shutdown notice.
        """
        result = self.bench(
            "idle",
            "--door",
            "mix",
            "--connections",
            "50",
            "--hold",
            "0.2",
            "--pid",
            str(self.server.pid),
            "--sigterm",
        )
        self.assertTrue(terminated_by_sigterm(self.server.wait()), self.server.output())
        self.assertEqual(result["signed_on"], 50, result)
        self.assertEqual((result["sigterm_watched"], result["sigterm_closed"]), (50, 50), result)
        self.assertEqual(sum(result["sigterm_close_kinds"].values()), 50, result)
        self.assertIsInstance(result["sigterm_exit_s"], float, result)
        self.assertLessEqual(result["sigterm_exit_s"], result["sigterm_timeout_s"], result)
        self.assertIsInstance(result["sigterm_last_close_s"], float, result)
        self.assertGreater(result["sigterm_bytes_per_connection"], 0, result)
        self.assertGreaterEqual(result["sigterm_messages_per_connection"], 1, result)
        self.assertGreaterEqual(result["sigterm_messages_max"], 1, result)
        text = idle.render(result)
        self.assertIn("SIGTERM -> exit", text)
        self.assertRegex(text, r"closed by the server +50 of 50, the last ")
        self.assertIn("received after SIGTERM", text)

    def test_idle_sigterm_ignored(self) -> None:
        """
        A process that outlives the SIGTERM timeout, leaving the connections
        open, fails the run with both reasons.  (The pid given is not the
        server's but a process of this test's that ignores SIGTERM.)
        """
        code = (
            "import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n"
        )
        stubborn = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
        )
        self.addCleanup(_kill_by_pid, stubborn)
        assert stubborn.stdout is not None
        self.assertEqual(stubborn.stdout.readline(), b"ready\n")
        args = ["idle", "--door", "mix", "--connections", "4", "--hold", "0", "--sigterm"]
        args += ["--pid", str(stubborn.pid), "--sigterm-timeout", "0.3", *self.doors]
        status, result, err = run_bench(self, args, self.server)
        self.assertEqual(status, 1, (result, err))
        self.assertIsNone(stubborn.poll())
        self.assertEqual((result["sigterm_watched"], result["sigterm_closed"]), (4, 0), result)
        self.assertIsNone(result["sigterm_exit_s"], result)
        self.assertEqual(
            result["problems"],
            [
                "the server did not exit within 0.3 s of SIGTERM",
                "4 of 4 connections were left open after SIGTERM",
            ],
        )
        self.assertRegex(idle.render(result), r"SIGTERM -> exit +not within 0\.3 s")

    def test_nothing_measured(self) -> None:
        """
        A fan-out run without senders measures nothing: although every
        client connected, it exits with 1 and says why.
        """
        args = ["fanout", "--door", "mix", "--clients", "4", "--senders", "0"]
        args += ["--warmup", "0", "--duration", "0.2", *self.doors]
        status, result, err = run_bench(self, args, self.server)
        self.assertEqual((result["connected"], result["messages"]), (4, 0), result)
        self.assertEqual(status, 1, err)
        self.assertEqual(
            result["problems"], ["nothing was measured: no message made a round trip in 0.2 s"]
        )
        self.assertIn("chatd-bench: FAILED: nothing was measured", err)


class BenchFailureTests(SynchronousTestCase):
    """
    The tool fails, rather than report a result, when its clients cannot
    connect or sign on.  No server is started.
    """

    def test_closed_port(self) -> None:
        """
        Against a closed port, both scenarios exit with 1 at once, count
        the refused connections, and say on standard error that no client
        connected and that nothing was measured.
        """
        port = closed_port()
        doors = ["--line", f"{LOCALHOST}:{port}", "--ws", f"ws://{LOCALHOST}:{port}/ws"]
        for scenario, size in (("fanout", "--clients"), ("idle", "--connections")):
            args = [scenario, "--door", "mix", size, "10", "--workers", "2", *doors]
            status, result, err = run_bench(self, args)
            self.assertEqual(status, 1, (scenario, result, err))
            self.assertEqual(result["connect_errors"], 10, result)
            self.assertEqual(result["connect_error_kinds"], {"connect: ECONNREFUSED": 10}, result)
            self.assertEqual(len(result["problems"]), 2, result)
            self.assertRegex(result["problems"][0], r"^10 of 10 (clients|connections) did not")
            self.assertRegex(result["problems"][1], r"^nothing was measured")
            self.assertIn("chatd-bench: FAILED: 10 of 10", err)
            self.assertIn("chatd-bench: FAILED: nothing was measured", err)

    def test_sigterm_needs_pid(self) -> None:
        """
        C{--sigterm} without C{--pid} is a usage error: the tool would not
        know whom to stop.
        """
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), self.assertRaises(SystemExit) as raised:
            bench_main(["idle", "--sigterm", "--line", f"{LOCALHOST}:{closed_port()}"])
        self.assertEqual(raised.exception.code, 2)
        self.assertIn("--sigterm needs --pid", stderr.getvalue())

    def test_no_sign_on(self) -> None:
        """
        Against a port that accepts connections but never answers, the
        clients that did not sign on within C{--setup-timeout} count as
        errors, and the run fails.
        """
        port = busy_port(self)
        args = ["idle", "--door", "line", "--connections", "3", "--setup-timeout", "0.5"]
        status, result, err = run_bench(self, [*args, "--line", f"{LOCALHOST}:{port}"])
        self.assertEqual(status, 1, (result, err))
        self.assertEqual((result["tcp_connected"], result["signed_on"]), (3, 0), result)
        self.assertEqual(
            result["connect_error_kinds"], {"not signed on within --setup-timeout": 3}, result
        )
        self.assertIn("chatd-bench: FAILED: 3 of 3 connections did not connect and sign on", err)


class Recorder(Client):
    """
    A client in its room that is only fed bytes: what it writes is kept.
    """

    def __init__(self, loop: Loop, door: str) -> None:
        super().__init__(loop, Spec(0, door, "bBCDFn0", "#bench0", None))
        self.sock.close()
        self.written: list[bytes] = []
        self.state = READY

    def write(self, data: bytes) -> None:
        self.written.append(data)


def server_frame(payload: bytes, opcode: int = wire.WS_TEXT) -> bytes:
    """
    An unmasked frame, as the server sends them.
    """
    size = len(payload)
    if size < 126:
        return struct.pack("!BB", 0x80 | opcode, size) + payload
    return struct.pack("!BBH", 0x80 | opcode, 126, size) + payload


class CountingTests(SynchronousTestCase):
    """
    L{Client.counted}, the path of swept clients: however the stream is cut
    into reads, every marker is counted once, and every probe or ping is
    answered once.
    """

    mark = b"@BCDF:"

    def setUp(self) -> None:
        settings = Settings(Target(None, None), LINE, 1, 1, 1, 1, 1.0, self.mark)
        self.loop = Loop(settings)
        self.addCleanup(self.loop.close_all)

    def message(self, seq: int) -> str:
        return wire.text(self.mark, 1, seq, 12345678901234, 64)

    def feed(
        self, door: str, stream: bytes, cuts: Sequence[int], ready_at: int | None = None
    ) -> Recorder:
        """
        A fresh swept client of C{door} given C{stream} in reads cut at
        C{cuts}, in its room since C{ready_at} (C{monotonic_ns}, default
        now).
        """
        client = Recorder(self.loop, door)
        client.ready_at = time.monotonic_ns() + (ready_at or 0)
        client.swept = client.counting = True
        if door == WS:
            client.carry, client.skip = b"}", 1
        for start, end in itertools.pairwise([0, *cuts, len(stream)]):
            if end > start:
                client.counted(stream[start:end])
        return client

    def cuts(self, stream: bytes) -> list[list[int]]:
        """
        No cut, then one or two cuts everywhere.
        """
        found: list[list[int]] = [[]]
        for first in range(1, len(stream)):
            found += [[first], [first, first + 1], [first, first + 7]]
        return found

    def test_line(self) -> None:
        """
        Lines: markers straddling reads count once; a telnet probe (IAC) is
        answered; another run's marker is not counted.
        """
        lines = [
            f"[#bench0] <bBCDFn1> {self.message(0)}",
            "*** bXYZWn9 has joined #bench0",
            f"[#bench0] <bBCDFn1> {self.message(1)}",
            "[#bench0] <bXYZWn1> @XYZW:00001:00000000:12345678901234:xx",
        ]
        stream = b"".join(wire.line(text) for text in lines)
        probe = b"\xff\xfd\x06"
        stream = stream[:40] + probe + stream[40:]
        for cuts in self.cuts(stream):
            client = self.feed(LINE, stream, cuts)
            self.assertEqual(client.got, 2, cuts)
            self.assertEqual(client.written, [wire.TELNET_PROBE_ANSWER], cuts)
            self.assertLessEqual(len(client.carry), wire.MARK_SIZE - 1, cuts)

    def test_websocket(self) -> None:
        """
        Frames: markers straddling reads count once; a ping, first or after
        a JSON frame, is answered once with its payload, whatever the
        payload holds.
        """

        def message(seq: int) -> bytes:
            body = {"type": "message", "room": "#bench0", "from": "bBCDFn1"}
            body["text"] = self.message(seq)
            return server_frame(json.dumps(body).encode())

        ping1, ping2 = b"}\x89\x00\xff\x89}", b"12345678abcd"
        stream = (
            server_frame(ping1, wire.WS_PING)
            + message(0)
            + server_frame(b'{"type":"join","nick":"b\xc3\xa9"}')
            + message(1)
            + server_frame(ping2, wire.WS_PING)
            + message(2)
        )
        for cuts in self.cuts(stream):
            client = self.feed(WS, stream, cuts)
            self.assertEqual(client.got, 3, cuts)
            self.assertEqual([unmask(w) for w in client.written], [ping1, ping2], cuts)
            self.assertLessEqual(len(client.carry), 2 + 125 + 1, cuts)

    def test_irc(self) -> None:
        """
        IRC lines: markers straddling reads count once; a C{PING} is not
        looked for in the first L{IRC_QUIET_NS} after joining, and is
        answered after that, however it is cut (an answer too many is
        harmless: any line is a sign of life).
        """
        lines = [
            f":bBCDFn1!~bBCDFn1@irc.chatd PRIVMSG #bench0 :{self.message(0)}",
            "PING :irc.example",
            ":bXYZWn1!~bXYZWn1@irc.chatd PRIVMSG #bench0 :@XYZW:00001:00000000:1234:xx",
            f":bBCDFn1!~bBCDFn1@irc.chatd PRIVMSG #bench0 :{self.message(1)}",
        ]
        stream = b"".join(wire.line(text) for text in lines)
        for cuts in self.cuts(stream):
            client = self.feed(IRC, stream, cuts)
            self.assertEqual((client.got, client.written), (2, []), cuts)
            client = self.feed(IRC, stream, cuts, ready_at=-IRC_QUIET_NS)
            self.assertEqual(client.got, 2, cuts)
            self.assertIn(len(client.written), (1, 2), cuts)
            self.assertEqual(set(client.written), {IRC_PONG}, cuts)

    def test_token(self) -> None:
        """
        A run's marker: C{@}, four capitals (no vowel, no J or M), C{:}.
        """
        mark = wire.new_token()
        self.assertRegex(mark, rb"^@[BCDFGHKLNPQRSTVWXZ]{4}:$")
        self.assertEqual(len(mark), wire.MARK_SIZE)


class IrcSetupTests(SynchronousTestCase):
    """
    L{Client.setup} on the IRC door: JOIN once welcomed, in the room at the
    end of its names, refused by an error; its first message asks for
    C{echo-message}.
    """

    def setUp(self) -> None:
        settings = Settings(Target(None, None), IRC, 1, 1, 1, 1, 1.0, b"@BCDF:")
        self.loop = Loop(settings)
        self.addCleanup(self.loop.close_all)

    def test_joined(self) -> None:
        """
        After 001 the client joins its room; after the 366 of that room
        (whatever comes between, cut anywhere) it is ready, and what
        follows is its room's traffic.
        """
        welcome = (
            b":irc.example 001 bBCDFn0 :Welcome bBCDFn0!~bBCDFn0@irc.chatd\r\n"
            b":irc.example 422 bBCDFn0 :MOTD File is missing\r\n"
        )
        joined = (
            b":bBCDFn0!~bBCDFn0@irc.chatd JOIN :#bench0\r\n"
            b":irc.example 353 bBCDFn0 = #bench0 :@bBCDFn0\r\n"
            b":irc.example 366 bBCDFn0 #bench0 :End of /NAMES list\r\n"
        )
        said = b":bBCDFn1!~bBCDFn1@irc.chatd PRIVMSG #bench0 :@BCDF:00001:00000000:1:x\r\n"
        for cut in range(1, len(joined + said)):
            client = Recorder(self.loop, IRC)
            client.state, client.sample = HANDSHAKE, True
            client.setup(welcome)
            self.assertEqual(client.written, [wire.line("JOIN #bench0")])
            client.setup((joined + said)[:cut])
            if client.state == READY:
                client.received((joined + said)[cut:])
            else:
                client.setup((joined + said)[cut:])
            self.assertEqual((client.state, client.got, client.error), (READY, 1, None), cut)
        client.written.clear()
        client.say("hello")
        client.say("again")
        self.assertEqual(
            client.written,
            [IRC_ECHO + b"PRIVMSG #bench0 :hello\r\n", b"PRIVMSG #bench0 :again\r\n"],
        )

    def test_refused(self) -> None:
        """
        An error numeric or an C{ERROR} line is the client's error.
        """
        for refusal in (
            b":irc.example 433 * bBCDFn0 :Nickname is already in use\r\n",
            b"ERROR :Closing link: too many connections\r\n",
        ):
            client = Recorder(self.loop, IRC)
            client.state = HANDSHAKE
            client.setup(b":irc.example NOTICE * :hello\r\n" + refusal)
            self.assertEqual(client.error, refusal.decode().strip())


class WatchingTests(SynchronousTestCase):
    """
    L{Client.watched}, what a client counts while the server shuts down:
    bytes, and lines or data frames, however the stream is cut into reads;
    pings and the close frame are answered, and the client waits for the
    server to close the connection.
    """

    def setUp(self) -> None:
        settings = Settings(Target(None, None), LINE, 1, 1, 1, 1, 1.0, b"@BCDF:")
        self.loop = Loop(settings)
        self.addCleanup(self.loop.close_all)

    def feed(self, door: str, stream: bytes, cuts: Sequence[int]) -> Recorder:
        client = Recorder(self.loop, door)
        client.state = WATCHING
        for start, end in itertools.pairwise([0, *cuts, len(stream)]):
            if end > start:
                client.watched(stream[start:end])
        return client

    def test_line(self) -> None:
        """
        Lines are counted by their ends.
        """
        stream = b"*** server shutting down\r\n*** bBCDFn1 has quit\r\n"
        for cut in range(len(stream)):
            client = self.feed(LINE, stream, [cut])
            self.assertEqual((client.watched_bytes, client.watched_messages), (len(stream), 2))
            self.assertEqual(client.written, [])

    def test_websocket(self) -> None:
        """
        Data frames are counted, control frames are not; a ping is answered
        with a pong, the close frame with a close frame (its status code),
        and the client stays open.
        """
        notice = server_frame(b'{"type":"notice","text":"server shutting down"}')
        close = server_frame(b"\x03\xe9server shutting down", wire.WS_CLOSE)
        stream = notice + server_frame(b"p", wire.WS_PING) + notice + close
        for cut in range(len(stream)):
            client = self.feed(WS, stream, [cut])
            self.assertEqual((client.watched_bytes, client.watched_messages), (len(stream), 2))
            self.assertEqual([unmask(w) for w in client.written], [b"p", b"\x03\xe9"], cut)
            self.assertEqual((client.state, client.carry), (WATCHING, b""), cut)

    def test_watch(self) -> None:
        """
        L{Loop.watch} turns the clients in their room into watchers with
        their counts at zero; a close then counts as closed by the server.
        """
        clients = [Recorder(self.loop, door) for door in (LINE, WS)]
        for fd, client in enumerate(clients, 1000):  # theirs are closed, maybe reused
            client.fd = fd
            self.loop.clients[fd] = client
            client.counting = True
            client.carry = b"}\x89"
        self.assertEqual(self.loop.watch(), clients)
        self.assertEqual([c.state for c in clients], [WATCHING, WATCHING])
        self.assertEqual([c.carry for c in clients], [b"", b"\x89"])
        self.assertEqual(self.loop.watching, 2)
        clients[1].fail("closed by the server")
        self.assertEqual((self.loop.watching, self.loop.watch_closed), (1, 1))
        self.assertEqual(self.loop.watch_close_kinds, {"closed by the server": 1})
        self.assertGreater(self.loop.last_close, 0)
        self.assertIsNone(clients[1].error)


def unmask(frame: bytes) -> bytes:
    """
    The payload of a short masked client frame.
    """
    size = frame[1] & 0x7F
    key = frame[2:6]
    return bytes(b ^ key[i % 4] for i, b in enumerate(frame[6 : 6 + size]))


def _kill(process: subprocess.Popen[str]) -> None:
    """
    Kill the tool by its pid if it is still running (its workers exit when
    their pipes close), and reap it.
    """
    if process.poll() is None:
        process.kill()
        process.wait(RUN_TIMEOUT)


def _kill_by_pid(process: subprocess.Popen[bytes]) -> None:
    """
    Kill a helper process of a test by its pid if it is still running, and
    reap it.
    """
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(TIMEOUT)
    if process.stdout is not None:
        process.stdout.close()
