"""
The admin console, and the message of the day it reloads.
"""

from __future__ import annotations

import os
import re
import socket
import stat
import time

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from chatd.app.tap import Options, makeService
from chatd.console import ConsoleFactory, ConsoleProtocol
from chatd.model import Error, Kicked, Notice
from chatd.testing import RecordingClient, events, make_hub, signed_on
from tests.support.processes import (
    LOCAL_TCP0,
    TIMEOUT,
    TwistdProcess,
    checkout_env,
    scratch_dir,
    terminated_by_sigterm,
)

LOCAL = IPv4Address("TCP", "127.0.0.1", 50000)


class Console:
    """
    One console connection on a StringTransport.
    """

    def __init__(self, factory: ConsoleFactory, address: object = LOCAL) -> None:
        self.protocol = factory.buildProtocol(address)  # type: ignore[arg-type]
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.transport.clear()

    def ask(self, line: str) -> list[str]:
        """
        Send one command; return its answer's lines (without the final C{.}).
        """
        self.protocol.dataReceived(line.encode() + b"\r\n")
        lines = self.transport.value().decode().split("\r\n")
        self.transport.clear()
        assert lines[-2:] == [".", ""], lines
        return lines[:-2]


class ConsoleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hub = make_hub(Clock())
        self.alice = signed_on(self.hub, "alice")
        self.bob = signed_on(self.hub, "bob")
        self.hub.join(self.bob, "#den")
        events(self.alice)
        events(self.bob)
        self.motd = ["first", "second"]
        self.factory = ConsoleFactory(
            self.hub, "motd.txt", read=lambda read, path: succeed(tuple(self.motd))
        )
        self.console = Console(self.factory)

    def test_lists(self) -> None:
        """
        C{users} lists every user with account, rooms and address; C{rooms}
        every room; C{help} the commands.  Commands are case-insensitive.
        """
        self.alice.client.address = "192.0.2.1"  # type: ignore[attr-defined]
        self.assertEqual(
            self.console.ask("users"),
            [
                "alice account=- rooms=#lobby from=192.0.2.1",
                "bob account=- rooms=#lobby,#den from=-",
            ],
        )
        self.assertEqual(
            self.console.ask("ROOMS"),
            ["#den members=1 owner=- modes=+n", "#lobby members=2 owner=- modes=+n"],
        )
        self.assertIn("kill NICK [REASON]         disconnect NICK", self.console.ask("help"))

    def test_kick_kill_notice(self) -> None:
        """
        C{kick} puts a user out of a room, C{notice} tells every user, and
        C{kill} disconnects a user with the reason.
        """
        self.assertEqual(self.console.ask("kick bob #den spam"), ["kicked bob from #den"])
        self.assertEqual(events(self.bob), [Kicked("#den", "bob", "console", "spam")])
        self.assertEqual(self.console.ask("notice back in 5"), ["told 2 users"])
        self.assertEqual(events(self.alice), [Notice("back in 5")])
        self.assertEqual(self.console.ask("kill bob flooding"), ["killed bob"])
        client = self.bob.client
        assert isinstance(client, RecordingClient)
        self.assertIn(Error("killed", "You were killed by console: flooding"), client.events)
        self.assertTrue(client.closed)
        self.assertNotIn("bob", self.hub.users)

    def test_errors_keep_the_console(self) -> None:
        """
        Mistakes are answered with an error, and the console stays open.
        """
        self.assertEqual(self.console.ask("kill ghost"), ["error: There is no user named ghost"])
        self.assertEqual(self.console.ask("kick bob"), ["error: usage: kick NICK #ROOM [REASON]"])
        self.assertEqual(self.console.ask("frobnicate"), ["unknown command 'frobnicate'; try help"])
        self.assertEqual(self.console.ask("notice"), ["error: Empty message"])
        self.assertFalse(self.console.transport.disconnecting)

    def test_motd_reload(self) -> None:
        """
        C{motd} rereads the file (off the reactor thread); new sign-ons see
        the new lines after joining the lobby.
        """
        self.assertEqual(self.console.ask("motd"), ["message of the day reloaded: 2 lines"])
        client = RecordingClient()
        self.hub.connect(client, "carol")
        self.assertEqual(client.events[-2:], [Notice("first"), Notice("second")])

    def test_waits_for_the_reload(self) -> None:
        """
        Commands after a reload that is still reading are answered after it.
        """
        reading: Deferred[tuple[str, ...]] = Deferred()
        factory = ConsoleFactory(self.hub, "motd.txt", read=lambda read, path: reading)
        console = Console(factory)
        console.protocol.dataReceived(b"motd\r\nusers\r\n")
        self.assertEqual(console.transport.value(), b"")
        reading.callback(("hello",))
        self.assertTrue(
            console.transport.value().startswith(b"message of the day reloaded: 1 lines\r\n.\r\n")
        )
        self.assertIn(b"alice account=-", console.transport.value())

    def test_no_motd_file(self) -> None:
        """
        Without C{--motd}, C{motd} says there is no file to reload.
        """
        console = Console(ConsoleFactory(self.hub))
        self.assertEqual(console.ask("motd"), ["no message of the day file (--motd)"])

    def test_loopback_only(self) -> None:
        """
        TCP connections from the loopback interface (and unix socket ones)
        get the console; others are told why and closed.
        """
        for address in (
            IPv4Address("TCP", "127.0.0.2", 1),
            IPv6Address("TCP", "::1", 1),
            IPv6Address("TCP", "::ffff:127.0.0.1", 1),
            UNIXAddress(b"/run/chatd/admin.sock"),
        ):
            self.assertIsInstance(self.factory.buildProtocol(address), ConsoleProtocol)
        for address in (IPv4Address("TCP", "10.0.0.1", 1), IPv6Address("TCP", "2001:db8::1", 1)):
            refused = self.factory.buildProtocol(address)
            self.assertNotIsInstance(refused, ConsoleProtocol)
            transport = StringTransport()
            refused.makeConnection(transport)
            self.assertEqual(
                transport.value(), b"the admin console takes local connections only\r\n"
            )
            self.assertTrue(transport.disconnecting)
        self.flushLoggedErrors()


class OptionTests(SynchronousTestCase):
    def test_motd_and_admin(self) -> None:
        """
        C{--motd} gives the hub its lines; C{--admin} listens for the console.
        """
        motd = scratch_dir(self) / "motd.txt"
        motd.write_text("Welcome to our server\nBe nice\n")
        options = Options()
        options.parseOptions(
            [
                "--db",
                ":memory:",
                "--web",
                "none",
                "--irc",
                "none",
                "--motd",
                str(motd),
                "--admin",
                "tcp:9999",
            ]
        )
        reactor = MemoryReactorClock()
        service = makeService(options, reactor)
        service.startService()
        self.assertEqual(service.hub.motd, ("Welcome to our server", "Be nice"))
        self.assertEqual([port for port, *_ in reactor.tcpServers], [1234, 9999])
        self.assertIsInstance(reactor.tcpServers[1][1], ConsoleFactory)

    def test_missing_motd(self) -> None:
        """
        A C{--motd} file that cannot be read is a usage error naming the option.
        """
        options = Options()
        error = self.assertRaises(
            UsageError, options.parseOptions, ["--motd", "/nonexistent/motd.txt"]
        )
        self.assertIn("--motd", str(error))


class SocketTests(SynchronousTestCase):
    """
    C{twistd chatd --admin unix:PATH} as an operator starts it: the socket
    is for chatd's own user unless the operator says otherwise.
    """

    def serve(self, admin: str) -> tuple[TwistdProcess, str]:
        """
        Start twistd with the console on C{admin} (C{{dir}} standing for a
        scratch directory); return it, once the console listens, and the
        socket's path.
        """
        directory = scratch_dir(self)
        server = TwistdProcess(
            self,
            ["-n", "--pidfile=", "chatd", "--db", ":memory:", "--line", LOCAL_TCP0,
             "--web", "none", "--irc", "none", "--admin", admin.format(dir=directory)],
            cwd=directory,
            env=checkout_env(),
        )  # fmt: skip
        match = server.wait_for_log(re.compile(r"ConsoleFactory starting on '([^']+)'"))
        # Twisted logs "starting on" before it binds the socket: wait for it.
        path = match.group(1)
        deadline = time.monotonic() + TIMEOUT
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.01)
        return server, path

    def test_only_chatds_user(self) -> None:
        """
        Without C{mode=} the socket is C{srw-------}, not Twisted's
        C{srw-rw-rw-}; chatd's own user gets the console.
        """
        server, path = self.serve("unix:{dir}/admin.sock")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(TIMEOUT)
            client.connect(path)
            banner = b""
            while not banner.endswith(b".\r\n"):
                data = client.recv(1024)
                self.assertTrue(data, banner)
                banner += data
        self.assertEqual(banner, b"chatd admin console; 'help' lists the commands\r\n.\r\n")
        self.assertTrue(terminated_by_sigterm(server.terminate()), server.output())
        self.assertFalse(os.path.exists(path))

    def test_operators_mode(self) -> None:
        """
        A C{mode=} in the description is kept (here, for a group of
        operators).
        """
        server, path = self.serve("unix:{dir}/admin.sock:mode=0660")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o660)
        self.assertTrue(terminated_by_sigterm(server.terminate()), server.output())
