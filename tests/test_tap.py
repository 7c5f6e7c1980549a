"""
C{twistd chatd}'s options, the service they build, and plugin discovery.
"""

from __future__ import annotations

import errno
import io
import json
import socket
import sys
from pathlib import Path
from typing import Any

from twisted.application.service import IServiceMaker
from twisted.copyright import version as twisted_version
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock
from twisted.plugin import IPlugin, getPlugins
from twisted.python.usage import UsageError
from twisted.scripts.twistd import ServerOptions
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from chatd import __version__
from chatd.app import tap
from chatd.app.reload import LISTEN_BACKLOG, TLSEndpoint, with_backlog
from chatd.app.tap import CannotListen, Options, makeService, private_socket, unix_path
from chatd.doors.admission import AdmittingFactory
from chatd.doors.irc import IrcDoor
from chatd.doors.line import LineDoor
from chatd.doors.origin import ProxyHeaderFactory
from chatd.doors.websocket import WebSocketDoor
from chatd.store.sqlite import SQLiteStore
from chatd.testing import CLOSE, LinePeer, RecordingClient, WebSocketPeer
from tests.support.certs import make_self_signed
from tests.support.processes import scratch_dir


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


class OptionsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """
        With no options the line door is on tcp:1234 and the web door on
        tcp:8080, keeping 100 messages per room.
        """
        options = parse()
        self.assertEqual(
            (options["line"], options["web"], options["history-size"]),
            ("tcp:1234", "tcp:8080", 100),
        )

    def test_endpoints(self) -> None:
        """
        Doors take any endpoint description, or C{none}.
        """
        options = parse("--line", "unix:/tmp/chatd.sock", "--web", "none")
        self.assertEqual((options["line"], options["web"]), ("unix:/tmp/chatd.sock", "none"))

    def test_bad_endpoint(self) -> None:
        """
        A description Twisted cannot parse is a usage error naming the door.
        """
        error = self.assertRaises(UsageError, parse, "--line", "tcp:notaport")
        self.assertIn("--line", str(error))
        error = self.assertRaises(UsageError, parse, "--web", "bogus:1")
        self.assertIn("--web", str(error))
        error = self.assertRaises(UsageError, parse, "--irc", "tcp:notaport")
        self.assertIn("--irc", str(error))

    def test_every_door_off(self) -> None:
        """
        Turning every door off is refused; any one door on is enough.
        """
        error = self.assertRaises(
            UsageError, parse, "--line", "none", "--web", "none", "--irc", "none"
        )
        self.assertIn("off", str(error))
        self.assertEqual(parse("--line", "none", "--web", "none")["irc"], "tcp:6667")
        self.assertEqual(parse("--line", "none", "--irc", "none")["web"], "tcp:8080")
        self.assertEqual(parse("--web", "none", "--irc", "none")["line"], "tcp:1234")

    def test_irc(self) -> None:
        """
        The IRC door is on tcp:6667 unless told otherwise; C{none} turns it
        off, and it takes any endpoint description, C{ssl:} ones too.
        """
        self.assertEqual(parse()["irc"], "tcp:6667")
        self.assertEqual(parse("--irc", "none")["irc"], "none")
        self.assertEqual(
            parse("--irc", "tcp:6668:interface=127.0.0.1")["irc"], "tcp:6668:interface=127.0.0.1"
        )
        tls = make_self_signed(scratch_dir(self)).endpoint(6697)
        self.assertEqual(parse("--irc", tls)["irc"], tls)

    def test_irc_server_name(self) -> None:
        """
        C{--irc-server-name} takes 1 to 63 letters, digits, dots and
        hyphens, the first a letter or a digit; anything else is a usage
        error naming the option.
        """
        for name in ("irc.example.org", "chat-1", "Chat", "1chat", "a", "a" * 63):
            self.assertEqual(parse("--irc-server-name", name)["irc-server-name"], name)
        for name in (
            "",
            "irc example",
            " irc",
            "-irc",
            ".irc",
            "irc_1",
            "irc.example.org:6667",
            "irc\u00e9",
            "a" * 64,
        ):
            error = self.assertRaises(UsageError, parse, "--irc-server-name", name)
            self.assertIn("--irc-server-name", str(error), name)

    def test_irc_server_name_default(self) -> None:
        """
        By default the IRC door is named after this machine, or
        C{irc.chatd} if its host name cannot be a server name.
        """
        self.assertEqual(parse()["irc-server-name"], tap.default_irc_server_name())
        for host, expected in (
            ("chat-1.example.org", "chat-1.example.org"),
            ("chat", "chat"),
            ("chat_1", "irc.chatd"),
            ("", "irc.chatd"),
            ("a" * 64, "irc.chatd"),
        ):
            self.patch(socket, "gethostname", lambda host=host: host)
            self.assertEqual(parse()["irc-server-name"], expected, host)

        def fails() -> str:
            raise OSError(errno.EFAULT, "Bad address")

        self.patch(socket, "gethostname", fails)
        self.assertEqual(parse()["irc-server-name"], "irc.chatd")
        self.assertEqual(parse("--irc", "none")["irc-server-name"], "irc.chatd")

    def test_history_size(self) -> None:
        """
        The history size must be a positive whole number.
        """
        self.assertEqual(parse("--history-size", "7")["history-size"], 7)
        self.assertRaises(UsageError, parse, "--history-size", "0")
        self.assertRaises(UsageError, parse, "--history-size", "lots")

    def test_admins(self) -> None:
        """
        C{--admins} takes comma-separated nicknames, and only valid ones.
        """
        self.assertEqual(parse("--admins", "alice, Bob")["admin-list"], ["alice", "Bob"])
        self.assertEqual(parse()["admin-list"], [])
        error = self.assertRaises(UsageError, parse, "--admins", "alice,#ops")
        self.assertIn("--admins", str(error))

    def test_version(self) -> None:
        """
        C{--version} prints chatd's version, with Twisted's and Python's,
        and exits with status 0.
        """
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        exit = self.assertRaises(SystemExit, parse, "--version")
        self.assertIn(exit.code, (None, 0))
        self.assertTrue(
            out.getvalue().startswith(f"chatd {__version__} (Twisted {twisted_version}, Python "),
            out.getvalue(),
        )

    def test_mistake_under_twistd(self) -> None:
        """
        Run by C{twistd}, a wrong option stops it with the synopsis, a
        pointer to C{--help} and the error, not with the whole help text.
        """
        error = self.assertRaises(
            SystemExit, ServerOptions().parseOptions, ["-n", "chatd", "--line", "bogus:1"]
        )
        message = str(error.code)
        first, last = message.splitlines()
        self.assertTrue(first.startswith("Usage: twistd [options] chatd [options]"), message)
        self.assertIn("twistd chatd --help", first)
        self.assertTrue(last.startswith("chatd: --line: 'bogus:1'"), message)


class AdminSocketTests(SynchronousTestCase):
    """
    A unix socket for the admin console is for chatd's own user only,
    unless its description says otherwise.
    """

    def test_private_socket(self) -> None:
        """
        C{:mode=0600} is added to a C{unix:} description that has no
        C{mode=}, however the address is written; nothing else changes.
        """
        for description in (
            "unix:/run/chatd/admin.sock",
            "unix:address=/run/chatd/admin.sock:lockfile=0",
            r"unix:/tmp/odd\:name.sock",
        ):
            self.assertEqual(private_socket(description), f"{description}:mode=0600")
        for description in (
            "unix:/run/chatd/admin.sock:mode=0660",
            "unix:mode=644:address=/run/chatd/admin.sock",
            "tcp:9999:interface=127.0.0.1",
            "tcp6:9999:interface=\\:\\:1",
            "ssl:9999:privateKey=unix.pem",
        ):
            self.assertEqual(private_socket(description), description)

    def test_unix_path(self) -> None:
        """
        L{unix_path} finds the socket's path in a C{unix:} (or
        C{haproxy:unix:}) description, escaped colons and all.
        """
        self.assertEqual(unix_path("unix:/run/chatd/admin.sock:mode=600"), "/run/chatd/admin.sock")
        self.assertEqual(unix_path("unix:lockfile=0:address=/a/b.sock"), "/a/b.sock")
        self.assertEqual(unix_path(r"haproxy:unix:/tmp/a\:b.sock"), "/tmp/a:b.sock")
        self.assertIsNone(unix_path("tcp:1234"))

    def listened_mode(self, admin: str) -> int:
        reactor = MemoryReactorClock()
        options = parse("--db", ":memory:", "--web", "none", "--irc", "none", "--admin", admin)
        makeService(options, reactor).startService()
        ((_, _, _, mode, _),) = reactor.unixServers
        return int(mode)

    def test_mode(self) -> None:
        """
        The console listens with mode 0600 by default, and with the mode
        the operator gives if any.
        """
        self.assertEqual(self.listened_mode("unix:/run/chatd/admin.sock"), 0o600)
        self.assertEqual(self.listened_mode("unix:/run/chatd/admin.sock:mode=0660"), 0o660)

    def test_doors_keep_their_mode(self) -> None:
        """
        A door on a unix socket is left as Twisted makes it: a reverse proxy
        running as another user has to reach it.
        """
        reactor = MemoryReactorClock()
        service = makeService(
            parse(
                "--db",
                ":memory:",
                "--line",
                "none",
                "--web",
                "unix:/run/chatd/web.sock",
                "--irc",
                "none",
            ),
            reactor,
        )
        service.startService()
        ((_, _, _, mode, _),) = reactor.unixServers
        self.assertEqual(mode, 0o666)


class _Refusing(MemoryReactorClock):
    """
    A reactor on which listening fails as it does on a real one when the
    port is taken, or the directory of a unix socket does not exist.
    """

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:
        if port == 4322:
            raise CannotListenError(
                interface, port, OSError(errno.EADDRINUSE, "Address already in use")
            )
        return super().listenTCP(port, factory, backlog, interface)

    def listenUNIX(self, address: str, factory: Any, *args: Any, **kwargs: Any) -> Any:
        raise CannotListenError(None, address, OSError(errno.ENOENT, "No such file or directory"))


class ListenFailureTests(SynchronousTestCase):
    """
    A port that cannot be listened on stops the server with one line that
    names the door, the address and the reason.
    """

    def failure(self, *argv: str) -> CannotListen:
        service = makeService(parse("--db", ":memory:", "--irc", "none", *argv), _Refusing())
        error = self.assertRaises(CannotListen, service.privilegedStartService)
        return error

    def test_port_taken(self) -> None:
        """
        A taken port: which door, where, and that the address is in use;
        a L{SystemExit} (one line, status 1) that is also an L{Exception}
        (so that twistd removes its pid file).
        """
        error = self.failure("--line", "tcp:4321", "--web", "tcp:4322")
        self.assertEqual(
            str(error), "chatd: cannot listen for the web door on tcp:4322: Address already in use"
        )
        self.assertIsInstance(error, SystemExit)
        self.assertIsInstance(error, Exception)
        self.assertEqual(error.code, str(error))

    def test_irc_port_taken(self) -> None:
        """
        The IRC door's port taken: the line names the IRC door.
        """
        error = self.failure("--line", "tcp:4321", "--web", "none", "--irc", "tcp:4322")
        self.assertEqual(
            str(error), "chatd: cannot listen for the IRC door on tcp:4322: Address already in use"
        )

    def test_missing_directory(self) -> None:
        """
        A unix socket in a directory that does not exist: the line says
        which directory to create.
        """
        missing = scratch_dir(self) / "run" / "chatd"
        error = self.failure("--web", "none", "--admin", f"unix:{missing}/admin.sock")
        self.assertEqual(
            str(error),
            f"chatd: cannot listen for the admin console on unix:{missing}/admin.sock: "
            f"the directory {missing} does not exist; create it first",
        )


class ServiceTests(SynchronousTestCase):
    def start(self, *argv: str) -> tuple[MemoryReactorClock, Any]:
        """
        Start the service of C{argv}, with C{--db :memory:} and the IRC door
        off unless they say otherwise, on a memory reactor.
        """
        reactor = MemoryReactorClock()
        if "--db" not in argv:
            argv = ("--db", ":memory:", *argv)
        if "--irc" not in argv:
            argv = ("--irc", "none", *argv)
        service = makeService(parse(*argv), reactor)
        service.startService()
        return reactor, service

    def test_listens_where_told(self) -> None:
        """
        The line door and the web site listen on the given endpoints, and
        share one hub.
        """
        reactor, service = self.start(
            "--line", "tcp:4321:interface=127.0.0.1", "--web", r"tcp:4322:interface=\:\:1"
        )
        (line_port, line, _, line_iface), (web_port, site, _, web_iface) = reactor.tcpServers
        self.assertEqual((line_port, line_iface), (4321, "127.0.0.1"))
        self.assertEqual((web_port, web_iface), (4322, "::1"))
        self.assertIsInstance(line, LineDoor)
        self.assertIsInstance(site, AdmittingFactory)
        self.assertIsInstance(site.wrappedFactory, Site)
        (websocket,) = [d for d in service.doors if isinstance(d, WebSocketDoor)]
        self.assertIs(line.hub, websocket.hub)

    def test_door_off(self) -> None:
        """
        C{--web none} runs the line door alone.
        """
        reactor, service = self.start("--line", "tcp:4321", "--web", "none")
        self.assertEqual(len(reactor.tcpServers), 1)
        self.assertEqual([d.name for d in service.doors], ["line"])

    def test_irc_door(self) -> None:
        """
        C{--irc} runs the IRC door where it is told, onto the same hub as
        the other doors, with the same limits, throttle and admission, and
        named C{--irc-server-name}.
        """
        made: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

        def recording(*args: Any, **kwargs: Any) -> IrcDoor:
            made.append((args, kwargs))
            return IrcDoor(*args, **kwargs)

        self.patch(tap, "IrcDoor", recording)
        reactor, service = self.start(
            "--line", "tcp:4321", "--web", "none",
            "--irc", "tcp:6697:interface=127.0.0.1", "--irc-server-name", "irc.example.org",
        )  # fmt: skip
        (_, line, _, _), (irc_port, irc, _, irc_iface) = reactor.tcpServers
        self.assertEqual((irc_port, irc_iface), (6697, "127.0.0.1"))
        self.assertIsInstance(irc, IrcDoor)
        self.assertEqual([d.name for d in service.doors], ["line", "irc"])
        self.assertIs(service.doors[1], irc)
        ((args, kwargs),) = made
        (gateway, clock, limits, throttle, admission), server_name = args, kwargs["server_name"]
        self.assertEqual(server_name, "irc.example.org")
        self.assertIs(clock, reactor)
        self.assertIs(gateway, service.gateway)
        self.assertIs(irc.hub, line.hub)
        self.assertIs(limits, line.limits)
        self.assertIs(throttle, line.throttle)
        self.assertIs(admission, line.admission)

    def test_irc_door_by_default(self) -> None:
        """
        With no options the IRC door listens on port 6667 beside the line
        and web doors.
        """
        reactor = MemoryReactorClock()
        service = makeService(parse("--db", ":memory:"), reactor)
        service.startService()
        self.assertEqual([port for port, *_ in reactor.tcpServers], [1234, 8080, 6667])
        self.assertIsInstance(reactor.tcpServers[2][1], IrcDoor)
        self.assertEqual([d.name for d in service.doors], ["line", "websocket", "irc"])

    def test_irc_door_alone(self) -> None:
        """
        C{--line none --web none} runs the IRC door alone.
        """
        reactor, service = self.start("--line", "none", "--web", "none", "--irc", "tcp:6667")
        ((port, door, _, _),) = reactor.tcpServers
        self.assertEqual(port, 6667)
        self.assertIsInstance(door, IrcDoor)
        self.assertEqual([d.name for d in service.doors], ["irc"])

    def test_irc_door_over_tls(self) -> None:
        """
        An C{ssl:} IRC door listens over TLS, and a SIGHUP rereads its
        certificate as for the other doors.
        """
        tls = make_self_signed(scratch_dir(self)).endpoint(6697)
        reactor, service = self.start("--line", "none", "--web", "none", "--irc", tls)
        ((port, door, _, _, _),) = reactor.sslServers
        self.assertEqual(port, 6697)
        self.assertIsInstance(door, IrcDoor)
        (endpoint,) = service._tls_endpoints()
        self.assertIsInstance(endpoint, TLSEndpoint)
        self.assertEqual(endpoint.name, "irc")

    def test_irc_door_behind_proxy(self) -> None:
        """
        A C{haproxy:} IRC door takes the PROXY protocol header first.
        """
        reactor, _ = self.start("--line", "none", "--web", "none", "--irc", "haproxy:tcp:6667")
        ((_, factory, _, _),) = reactor.tcpServers
        self.assertIsInstance(factory, ProxyHeaderFactory)
        self.assertIsInstance(factory.wrappedFactory, IrcDoor)
        self.assertEqual(factory.door, "irc")

    def test_history_size_used(self) -> None:
        """
        C{--history-size} sizes the hub's history store.
        """
        _, service = self.start("--history-size", "3")
        self.assertEqual(service.hub.store.per_room, 3)

    def test_history_days_prunes_hourly(self) -> None:
        """
        With C{--history-days}, messages older than that are pruned when
        the service starts and every hour after.
        """
        reactor = MemoryReactorClock()
        service = makeService(
            parse("--db", ":memory:", "--irc", "none", "--history-days", "1"), reactor
        )
        hub = service.hub
        user = hub.connect(RecordingClient(), "alice")
        hub.say(user, "#lobby", "old")
        reactor.advance(2 * 86400)
        hub.say(user, "#lobby", "new")
        service.startService()
        texts = [m.text for m in self.successResultOf(hub.store.fetch("#lobby", 10, None))]
        self.assertEqual(texts, ["new"])
        reactor.advance(86400 - 60)
        hub.say(user, "#lobby", "newer")
        reactor.advance(3600)
        texts = [m.text for m in self.successResultOf(hub.store.fetch("#lobby", 10, None))]
        self.assertEqual(texts, ["newer"])
        self.successResultOf(service.stopService())

    def test_database(self) -> None:
        """
        C{--db PATH} keeps state in that SQLite file; a file that is no
        database stops chatd with a message saying so, and is left as it was.
        """
        path = scratch_dir(self) / "state.sqlite"
        _, service = self.start("--db", str(path))
        self.assertIsInstance(service.hub.store, SQLiteStore)
        self.successResultOf(service.stopService())
        garbage = scratch_dir(self) / "notes.txt"
        garbage.write_bytes(b"not a database at all" * 100)
        error = self.assertRaises(SystemExit, self.start, "--db", str(garbage))
        self.assertIn(str(garbage), str(error))
        self.assertEqual(garbage.read_bytes(), b"not a database at all" * 100)

    def test_stop_tells_everyone(self) -> None:
        """
        Stopping the service stops listening, then tells users of both
        doors the server is going down and closes them; it finishes once the
        connections are gone.
        """
        _, service = self.start("--line", "tcp:4321", "--web", "tcp:4322")
        line_door, ws_door = service.doors
        line, ws = LinePeer(line_door), WebSocketPeer(ws_door)
        line.sign_on("alice")
        ws.sign_on("bob")
        line.received()
        done = service.stopService()
        self.assertTrue(service.hub.closing)
        self.assertEqual(line.lines(), ["*** server shutting down"])
        (_, notice), (opcode, _) = ws.frames()
        self.assertEqual(json.loads(notice), {"type": "server", "text": "server shutting down"})
        self.assertEqual(opcode, CLOSE)
        self.assertNoResult(done)
        line.disconnect()
        ws.disconnect()
        self.successResultOf(done)
        self.assertEqual(service.hub.users, {})


class PluginTests(SynchronousTestCase):
    def test_discovered(self) -> None:
        """
        C{twistd} finds the C{chatd} plugin and its options.
        """
        import twisted.plugins

        makers = {p.tapname: p for p in getPlugins(IServiceMaker, twisted.plugins)}
        self.assertIn("chatd", makers)
        self.assertTrue(IPlugin.providedBy(makers["chatd"]))
        self.assertIsInstance(makers["chatd"].options(), Options)


class DocumentationTests(SynchronousTestCase):
    def test_readme_lists_every_option(self) -> None:
        """
        README.rst documents every option of C{twistd chatd}.
        """
        readme = (Path(__file__).parent.parent / "README.rst").read_text()
        for name, *_ in Options.optParameters:
            self.assertIn(f"``--{name}``", readme, name)


class BacklogTests(SynchronousTestCase):
    """
    The doors listen with a backlog that a reconnect storm does not overflow.
    """

    def test_added_where_missing(self) -> None:
        self.assertEqual(
            with_backlog("tcp:0:interface=127.0.0.1"),
            f"tcp:0:interface=127.0.0.1:backlog={LISTEN_BACKLOG}",
        )
        self.assertEqual(
            with_backlog("unix:/tmp/x.sock"), f"unix:/tmp/x.sock:backlog={LISTEN_BACKLOG}"
        )

    def test_given_backlog_kept(self) -> None:
        self.assertEqual(with_backlog("tcp:1234:backlog=10"), "tcp:1234:backlog=10")
        self.assertEqual(with_backlog("systemd:domain=INET:index=0"), "systemd:domain=INET:index=0")
