"""
A message storm against a real C{twistd chatd} over loopback: one client
that never reads among fifty that do.  The readers get every message, the
non-reader is dropped once it crosses its bound, and the server's memory
stays flat.
"""

from __future__ import annotations

import socket
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial.unittest import TestCase

from chatd.testing import LineDoorReceiver
from tests.support.processes import LOCAL_TCP0, LOCALHOST, TwistdProcess, checkout_env, scratch_dir

READERS = 50
SENDERS = 5
MESSAGES = 1000
TEXT = "x" * 1000
MAX_RSS_GROWTH_KIB = 16 * 1024


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """
    A memory figure (VmRSS, VmHWM) of process C{pid}, in KiB.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


class Reader(LineDoorReceiver):
    """
    A client that reads everything, keeping what each sender said in order.
    """

    MAX_LENGTH = 1 << 20

    def __init__(self, nick: str, expected: int) -> None:
        self.nick = nick
        self.expected = expected
        self.heard: dict[str, list[int]] = {}
        self.lines: list[str] = []
        self.done: Deferred[None] = Deferred()
        self.ready: Deferred[None] = Deferred()
        self.count = 0

    def connectionMade(self) -> None:
        self.sendLine(self.nick.encode())

    def lineReceived(self, line: bytes) -> None:
        text = line.decode()
        if text.startswith("[#lobby] <"):
            sender, _, rest = text[len("[#lobby] <") :].partition("> ")
            self.heard.setdefault(sender, []).append(int(rest.split(" ", 1)[0]))
            self.count += 1
            if self.count == self.expected:
                self.done.callback(None)
        else:
            self.lines.append(text)
            if text.startswith("*** Users in #lobby") and not self.ready.called:
                self.ready.callback(None)


class StormTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.server = TwistdProcess(
            self,
            [
                "-n", "--pidfile=", "chatd", "--line", LOCAL_TCP0, "--web", "none",
                "--irc", "none",
                "--flood-rate", "0", "--max-per-ip", "0", "--connect-rate", "0",
            ],
            cwd=scratch_dir(self),
            env=checkout_env(),
        )  # fmt: skip
        self.port = self.server.port("line")

    async def connect(self, nick: str) -> Reader:
        reader = Reader(nick, SENDERS * MESSAGES)
        endpoint = TCP4ClientEndpoint(reactor, LOCALHOST, self.port)
        await connectProtocol(endpoint, reader)
        self.addCleanup(self._close, reader)
        await reader.ready.addTimeout(10, reactor)
        return reader

    async def _close(self, reader: Reader) -> None:
        lost: Deferred[None] = Deferred()
        reader.connectionLost = lambda reason=None: lost.callback(None)  # type: ignore[method-assign]
        reader.transport.loseConnection()
        await lost.addTimeout(10, reactor)

    def non_reader(self) -> socket.socket:
        """
        A client that signs on, then never reads a byte.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((LOCALHOST, self.port))
        self.addCleanup(sock.close)
        sock.sendall(b"sloth\r\n")
        return sock

    async def test_non_reader_dropped_readers_get_everything(self) -> None:
        """
        Under a storm of 5,000 messages of 1 KB to 51 clients (5 MB each), the 50 readers each get
        all of them in order, the non-reader is dropped as a slow consumer,
        and the server's peak memory grows by less than 16 MiB.
        """
        readers = [await self.connect(f"reader{i}") for i in range(READERS)]
        self.non_reader()
        before = rss_kib(self.server.pid)
        payload = {
            reader: b"".join(b"%d %s\r\n" % (n, TEXT.encode()) for n in range(MESSAGES))
            for reader in readers[:SENDERS]
        }
        for reader, data in payload.items():
            reader.transport.write(data)
        await gatherResults([r.done for r in readers]).addTimeout(90, reactor)
        peak = rss_kib(self.server.pid, "VmHWM")
        for reader in readers:
            self.assertEqual(
                reader.heard,
                {f"reader{i}": list(range(MESSAGES)) for i in range(SENDERS)},
                reader.nick,
            )
        self.assertIn("*** sloth has left #lobby (slow consumer)", readers[-1].lines)
        growth = peak - before
        print(f"\nstorm: server RSS {before} KiB before, peak {peak} KiB (+{growth} KiB)")
        self.assertLess(growth, MAX_RSS_GROWTH_KIB)
        self.assertNotIn("Traceback", self.server.output())
