"""
C{kill -HUP}: the TLS certificates and the message of the day reread
without a restart (L{chatd.app.reload}).

In memory: what Twisted's C{ssl:} endpoint listens with (which chatd relies
on to swap certificates), new TLS connections made with whatever
certificate is current, reloads good and bad, and the SIGHUP plumbing.
Then with real C{twistd chatd} processes on 127.0.0.1: a certificate
replaced under a running TLS door, a broken one refused, the message of
the day of a server without TLS, and a worker pool passing SIGHUP on.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from OpenSSL import SSL, crypto
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IOpenSSLContextFactory, IReactorThreads
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.internet.testing import MemoryReactor, MemoryReactorClock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from chatd.app.reload import (
    Hangup,
    ReloadableTLS,
    Reloader,
    TLSEndpoint,
    listener,
    read_ssl,
    sighup_blocked,
)
from chatd.app.service import ChatService
from chatd.app.tap import Options, makeService
from chatd.app.workers import WorkerPool
from chatd.testing import make_hub
from tests.support.certs import HOSTNAME, SelfSigned, make_self_signed
from tests.support.processes import (
    LOCAL_TCP0,
    LOCALHOST,
    TIMEOUT,
    LineClient,
    TwistdProcess,
    checkout_env,
    scratch_dir,
)
from tests.test_tls import tls_port
from tests.test_workers import POOL_TAC, STARTED, ProcessReactor, eventually


def sync_read(function: Callable[..., Any], *args: Any) -> Deferred[Any]:
    """
    A L{Reloader}'s C{read} that runs C{function} at once, on this thread.
    """
    return maybeDeferred(function, *args)


def reload_lines(case: SynchronousTestCase) -> list[str]:
    """
    The text of every L{Reloader} and L{WorkerPool} log event from now on
    until C{case} ends (the list grows).
    """
    lines: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        namespace = event.get("log_namespace")
        if namespace in ("chatd.app.reload.Reloader", "chatd.app.workers.WorkerPool"):
            lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    case.addCleanup(globalLogPublisher.removeObserver, observe)
    return lines


def handshake(server: SSL.Connection) -> crypto.X509:
    """
    Do a TLS handshake in memory between C{server} and a client that
    checks nothing, and return the certificate the client was shown.
    """
    client = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
    client.set_connect_state()
    server.set_accept_state()
    for _ in range(10):
        for one, other in ((client, server), (server, client)):
            try:
                one.do_handshake()
            except SSL.WantReadError:
                pass
            try:
                other.bio_write(one.bio_read(65536))
            except SSL.WantReadError:
                pass
    certificate = client.get_peer_certificate()
    assert certificate is not None, "no handshake"
    return certificate


def der(certificate: crypto.X509 | Path) -> bytes:
    """
    A certificate (or a PEM certificate file) in DER form, to compare.
    """
    if isinstance(certificate, Path):
        return ssl.PEM_cert_to_DER_cert(certificate.read_text())
    return crypto.dump_certificate(crypto.FILETYPE_ASN1, certificate)


def served_file(directory: Path, source: SelfSigned) -> SelfSigned:
    """
    Copy C{source}'s key and certificate to C{key.pem} and C{cert.pem} in
    C{directory}, each replaced in one step, and return those files.
    """
    served = SelfSigned(key=directory / "key.pem", cert=directory / "cert.pem")
    replace(served.key, source.key.read_bytes())
    replace(served.cert, source.cert.read_bytes())
    return served


def replace(path: Path, data: bytes) -> None:
    """
    Give C{path} the content C{data} in one step, as deployment tools do.
    """
    new = path.with_name(path.name + ".new")
    new.write_bytes(data)
    os.replace(new, path)


class TLSCase(SynchronousTestCase):
    """
    Two certificates, A and B, and the files served: A's to begin with.
    """

    def setUp(self) -> None:
        home = scratch_dir(self)
        (home / "a").mkdir()
        (home / "b").mkdir()
        self.home = home
        self.a = make_self_signed(home / "a")
        self.b = make_self_signed(home / "b")
        self.served = served_file(home, self.a)
        self.description = self.served.endpoint(4443) + ":backlog=7"


class TwistedSSLEndpointTests(TLSCase):
    """
    What chatd relies on of Twisted's C{ssl:} endpoint (no private
    attribute): C{serverFromString} makes an C{SSL4ServerEndpoint} that
    listens with C{listenSSL} and a C{CertificateOptions} read from the
    files, and TLS asks the object given to C{listenSSL} for every
    connection.  If a new Twisted changes that, these fail.
    """

    def test_read_ssl(self) -> None:
        """
        L{read_ssl} returns the port, backlog, interface and TLS settings
        that the C{ssl:} description's endpoint listens with, its
        certificate read from the file.
        """
        settings = read_ssl(self.description)
        assert settings is not None
        self.assertEqual(
            (settings.port, settings.backlog, settings.interface), (4443, 7, "127.0.0.1")
        )
        self.assertIsInstance(settings.options, CertificateOptions)
        self.assertTrue(IOpenSSLContextFactory.providedBy(settings.options))
        self.assertEqual(der(settings.options.certificate), der(self.a.cert))

    def test_read_ssl_other_endpoints(self) -> None:
        """
        L{read_ssl} says C{None} of endpoints that are not C{ssl:}.
        """
        self.assertIsNone(read_ssl("tcp:0:interface=127.0.0.1"))
        self.assertIsNone(read_ssl(f"unix:{self.home / 'sock'}"))

    def test_listener(self) -> None:
        """
        L{listener} listens on an C{ssl:} endpoint as Twisted would, but with
        a L{ReloadableTLS}; on any other endpoint exactly as Twisted would.
        """
        reactor = MemoryReactor()
        factory = Factory.forProtocol(Protocol)
        listener(self.description, factory, reactor, "line").startService()
        listener("tcp:4444:interface=127.0.0.1", factory, reactor, "web").startService()
        ((port, listening, tls, backlog, interface),) = reactor.sslServers
        self.assertEqual((port, listening, backlog, interface), (4443, factory, 7, "127.0.0.1"))
        self.assertIsInstance(tls, ReloadableTLS)
        self.assertEqual(der(tls.options.certificate), der(self.a.cert))
        self.assertEqual([port for port, *_ in reactor.tcpServers], [4444])

    def test_new_connections_use_the_current_options(self) -> None:
        """
        A TLS factory given a L{ReloadableTLS} makes each connection with its
        options of the moment: after they are replaced, new handshakes show
        the new certificate.
        """
        a, b = read_ssl(self.description), read_ssl(self.b.endpoint())
        assert a is not None and b is not None
        tls = ReloadableTLS(a.options)
        factory = TLSMemoryBIOFactory(tls, False, Factory.forProtocol(Protocol))
        protocol = factory.buildProtocol(None)
        self.assertEqual(der(handshake(tls.serverConnectionForTLS(protocol))), der(self.a.cert))
        tls.options = b.options
        self.assertEqual(der(handshake(tls.serverConnectionForTLS(protocol))), der(self.b.cert))
        self.assertIs(tls.getContext(), b.options.getContext())

    def test_context_factory_only(self) -> None:
        """
        TLS settings that are only a context factory (as C{CertificateOptions}
        was before Twisted 25) still make the connections, from their context.
        """
        settings = read_ssl(self.description)
        assert settings is not None

        @implementer(IOpenSSLContextFactory)
        class Old:
            def getContext(self) -> SSL.Context:
                return settings.options.getContext()

        connection = ReloadableTLS(Old()).serverConnectionForTLS(None)
        self.assertEqual(der(handshake(connection)), der(self.a.cert))


class ReloadTests(TLSCase):
    """
    L{Reloader.reload}, its files read at once (C{read} is synchronous here).
    """

    def setUp(self) -> None:
        super().setUp()
        self.hub = make_hub()
        self.motd = self.home / "motd.txt"
        self.motd.write_text("first\n")
        self.hub.motd = ("first",)
        settings = read_ssl(self.description)
        assert settings is not None
        self.old = settings.options
        self.endpoints = [
            TLSEndpoint(MemoryReactor(), self.description, name, settings)
            for name in ("line", "web")
        ]
        self.reloader = Reloader(
            MemoryReactorClock(), self.hub, str(self.motd), lambda: self.endpoints, sync_read
        )
        self.logged = reload_lines(self)

    def reload(self) -> None:
        self.successResultOf(self.reloader.reload())
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_good(self) -> None:
        """
        New files are swapped in, once for all the listeners that share
        them; each thing reloaded logs one line.
        """
        served_file(self.home, self.b)
        self.motd.write_text("second\nthird\n")
        self.reload()
        (line, web) = self.endpoints
        self.assertIs(line.tls.options, web.tls.options)
        self.assertIsNot(line.tls.options, self.old)
        self.assertEqual(der(line.tls.options.certificate), der(self.b.cert))
        self.assertEqual(self.hub.motd, ("second", "third"))
        tls_line, motd_line = self.logged
        self.assertRegex(
            tls_line,
            r"^SIGHUP: reloaded the TLS certificate for --line and --web: CN=localhost, "
            r"valid until \d{4}-\d\d-\d\d \d\d:\d\d UTC$",
        )
        self.assertEqual(
            motd_line, f"SIGHUP: reloaded the message of the day from {self.motd} (2 lines)"
        )

    def assertKept(self, why: str) -> None:
        """
        After a reload, the old certificate is still served, and one line
        says why (as C{why}, a regular expression, tells).
        """
        self.reload()
        for endpoint in self.endpoints:
            self.assertIs(endpoint.tls.options, self.old)
        (line, _) = self.logged
        self.assertRegex(line, "^SIGHUP: kept the old TLS certificate for --line and --web: " + why)

    def test_not_pem(self) -> None:
        """
        A certificate file that is not PEM is not used.
        """
        replace(self.served.cert, b"not a certificate\n")
        self.assertKept(r"not a valid PEM certificate and key \(PEM routines: no start line\)$")

    def test_truncated(self) -> None:
        """
        A certificate file cut short (as by a full disk) is not used.
        """
        replace(self.served.cert, self.b.cert.read_bytes()[:300])
        self.assertKept(r"not a valid PEM certificate and key \(.+\)$")

    def test_missing(self) -> None:
        """
        A key file that is gone is not used.
        """
        self.served.key.unlink()
        missing = re.escape(str(self.served.key))
        self.assertKept(f"cannot read {missing}: No such file or directory$")

    def test_unreadable(self) -> None:
        """
        A key file that cannot be read (a directory here: these tests may
        run as root, whom file modes do not stop) is not used.
        """
        self.served.key.unlink()
        self.served.key.mkdir()
        self.assertKept(f"cannot read {re.escape(str(self.served.key))}: Is a directory$")

    def test_key_of_another_certificate(self) -> None:
        """
        A new certificate whose key is not (yet) the new one is not used.
        """
        replace(self.served.cert, self.b.cert.read_bytes())
        self.assertKept("Certificate public and private keys do not match$")

    def test_motd_kept(self) -> None:
        """
        A message of the day that cannot be read, or is not UTF-8, leaves
        the old one, and one line says why; the certificates reload all the
        same.
        """
        self.motd.unlink()
        self.reload()
        self.assertEqual(self.hub.motd, ("first",))
        self.assertEqual(
            self.logged[1],
            f"SIGHUP: kept the old message of the day: cannot read {self.motd}: "
            "No such file or directory",
        )
        self.motd.write_bytes(b"caf\xe9\n")
        self.reload()
        self.assertEqual(self.hub.motd, ("first",))
        self.assertRegex(self.logged[3], "is not UTF-8 text .* at byte 3")
        self.assertIn("reloaded the TLS certificate", self.logged[2])

    def test_nothing_to_reload(self) -> None:
        """
        Without C{ssl:} listeners or a message of the day, a reload says so.
        """
        reloader = Reloader(MemoryReactorClock(), self.hub, None, list, sync_read)
        self.successResultOf(reloader.reload())
        self.assertEqual(self.logged, ["SIGHUP: nothing to reload (no ssl: endpoint, no --motd)"])

    def test_signals_while_reloading(self) -> None:
        """
        SIGHUPs during a reload make one more reload after it, not one each
        at the same time.
        """
        reads: list[Deferred[Any]] = []

        def read(function: Callable[..., Any], *args: Any) -> Deferred[Any]:
            reads.append(Deferred())
            return reads[-1]

        reloader = Reloader(MemoryReactorClock(), self.hub, str(self.motd), list, read)
        reloader.hangup()
        reloader.hangup()
        reloader.hangup()
        self.assertEqual(len(reads), 1)
        reads[0].callback(("one",))
        self.assertEqual(len(reads), 2)
        reads[1].callback(("two",))
        self.assertEqual(len(reads), 2)
        self.assertEqual(self.hub.motd, ("two",))


@implementer(IReactorThreads)
class SignalledReactor(MemoryReactorClock):
    """
    A memory reactor that can be called from a signal handler: it records
    what C{callFromThread} is given.
    """

    def __init__(self) -> None:
        super().__init__()
        self.from_threads: list[Callable[[], object]] = []

    def callFromThread(self, callable: Callable[..., object], *args: Any, **kw: Any) -> None:
        self.from_threads.append(callable)


class HangupTests(SynchronousTestCase):
    """
    The SIGHUP handler: installed, called, and given back.
    """

    def test_signal(self) -> None:
        """
        While installed, each SIGHUP hands C{hangup} to the reactor thread;
        uninstalled, the handler from before is back.
        """
        before = signal.getsignal(signal.SIGHUP)
        self.addCleanup(signal.signal, signal.SIGHUP, before)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        reactor = SignalledReactor()
        called: list[object] = []
        hangup = Hangup(reactor, lambda: called.append(None))
        self.assertTrue(hangup.install())
        self.assertNotEqual(signal.getsignal(signal.SIGHUP), signal.SIG_IGN)  # else no kill
        os.kill(os.getpid(), signal.SIGHUP)
        # Python runs the handler between bytecodes of this thread, soon.
        eventually(lambda: len(reactor.from_threads) == 1, "the handler ran", 2)
        self.assertEqual(called, [])
        reactor.from_threads[0]()
        self.assertEqual(called, [None])
        hangup.uninstall()
        self.assertEqual(signal.getsignal(signal.SIGHUP), signal.SIG_IGN)

    def test_blocked_until_installed(self) -> None:
        """
        A SIGHUP that comes while it is blocked (as in a worker just started
        by the pool, L{sighup_blocked}) waits, and is taken on install.
        """
        before = signal.getsignal(signal.SIGHUP)
        self.addCleanup(signal.signal, signal.SIGHUP, before)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        reactor = SignalledReactor()
        hangup = Hangup(reactor, lambda: None)
        self.addCleanup(hangup.uninstall)
        with sighup_blocked():
            os.kill(os.getpid(), signal.SIGHUP)
            self.assertIn(signal.SIGHUP, signal.sigpending())
            self.assertTrue(hangup.install())
            eventually(lambda: len(reactor.from_threads) == 1, "the handler ran", 2)
        self.assertNotIn(signal.SIGHUP, signal.sigpending())

    def test_not_with_a_memory_reactor(self) -> None:
        """
        With a reactor that cannot be called from a signal handler (the
        memory reactors of tests), SIGHUP is left alone.
        """
        before = signal.getsignal(signal.SIGHUP)
        hangup = Hangup(MemoryReactorClock(), lambda: None)
        self.assertFalse(hangup.install())
        hangup.uninstall()
        self.assertEqual(signal.getsignal(signal.SIGHUP), before)


class ServiceTests(TLSCase):
    """
    What C{twistd chatd} builds: every C{ssl:} listener and the C{--motd}
    file are reloaded; the worker pool passes SIGHUP on.
    """

    def test_every_ssl_listener(self) -> None:
        """
        The line and web doors and the admin console on C{ssl:} endpoints
        all get the new certificate; C{--motd} is reread.
        """
        motd = self.home / "motd.txt"
        motd.write_text("first\n")
        tls = self.served.endpoint()
        options = Options()
        options.parseOptions(
            [
                "--db",
                ":memory:",
                "--line",
                tls,
                "--web",
                tls,
                "--irc",
                "none",
                "--admin",
                tls,
                "--motd",
                str(motd),
            ]
        )
        reactor = MemoryReactorClock()
        service = makeService(options, reactor)
        assert isinstance(service, ChatService)
        service.reloader.read = sync_read
        service.startService()
        self.assertEqual(len(reactor.sslServers), 3)
        for _, _, listening_tls, _, _ in reactor.sslServers:
            self.assertIsInstance(listening_tls, ReloadableTLS)
        logged = reload_lines(self)
        served_file(self.home, self.b)
        motd.write_text("second\n")
        self.successResultOf(service.reloader.reload())
        for _, _, listening_tls, _, _ in reactor.sslServers:
            self.assertEqual(der(listening_tls.options.certificate), der(self.b.cert))
        self.assertEqual(service.hub.motd, ("second",))
        self.assertEqual(len(logged), 2)
        self.assertIn("for --line, --web and --admin: CN=localhost", logged[0])
        self.successResultOf(service.stopService())

    def test_pool_passes_sighup_on(self) -> None:
        """
        The worker pool sends SIGHUP to each of its workers, and logs it.
        """
        reactor = ProcessReactor()
        pool = WorkerPool(reactor, {}, ["worker"], 2)
        pool.startService()
        logged = reload_lines(self)
        pool.hangup()
        self.assertEqual([p.signals for *_, p in reactor.spawned], [["HUP"], ["HUP"]])
        self.assertEqual(logged, ["SIGHUP: passing it on to the workers (pids 1000, 1001)"])


# -- real processes ----------------------------------------------------------


def takes_sighup(pid: int) -> bool:
    """
    Whether process C{pid} has a handler for SIGHUP (from C{/proc}): a
    server that has one is ready for C{kill -HUP}.
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    match = re.search(r"^SigCgt:\s*([0-9a-f]+)$", status, re.MULTILINE)
    return match is not None and bool(int(match.group(1), 16) >> (signal.SIGHUP - 1) & 1)


def hang_up(server: TwistdProcess) -> None:
    """
    C{kill -HUP} C{server}, once it takes SIGHUP.
    """
    eventually(lambda: takes_sighup(server.pid), "the server takes SIGHUP")
    os.kill(server.pid, signal.SIGHUP)


class TLSLineClient(LineClient):
    """
    A line client over TLS that trusts the certificates in C{trust}.
    """

    sock: ssl.SSLSocket

    def __init__(self, case: SynchronousTestCase, port: int, trust: Path) -> None:
        super().__init__(case, port)
        context = ssl.create_default_context(cafile=str(trust))
        self.sock = context.wrap_socket(self.sock, server_hostname=HOSTNAME)
        case.addCleanup(self.sock.close)

    def certificate(self) -> bytes:
        """
        The server's certificate, in DER form.
        """
        certificate = self.sock.getpeercert(binary_form=True)
        assert certificate is not None
        return certificate


def web_certificate(port: int, trust: Path) -> bytes:
    """
    The certificate the TLS web door on C{port} shows a new connection.
    """
    context = ssl.create_default_context(cafile=str(trust))
    with socket.create_connection((LOCALHOST, port), timeout=TIMEOUT) as raw:
        with context.wrap_socket(raw, server_hostname=HOSTNAME) as tls:
            certificate = tls.getpeercert(binary_form=True)
            assert certificate is not None
            return certificate


class ProcessTests(TLSCase):
    """
    C{kill -HUP} on a real C{twistd -n chatd}.
    """

    def test_certificate_replaced(self) -> None:
        """
        After new certificate files and a SIGHUP, new TLS connections to
        both doors get the new certificate while an open session goes on.
        A broken certificate file and another SIGHUP change nothing: one
        line in the log says why, and the server serves on.
        """
        trust = self.home / "trust.pem"
        trust.write_bytes(self.a.cert.read_bytes() + self.b.cert.read_bytes())
        tls = self.served.endpoint()
        server = TwistdProcess(
            self,
            [
                "-n",
                "--pidfile=",
                "chatd",
                "--db",
                ":memory:",
                "--line",
                tls,
                "--web",
                tls,
                "--irc",
                "none",
            ],
            cwd=self.home,
            env=checkout_env(),
        )
        line_port, web_port = tls_port(server, "line"), tls_port(server, "web")
        alice = TLSLineClient(self, line_port, trust)
        alice.sign_on("alice")
        self.assertEqual(alice.certificate(), der(self.a.cert))

        served_file(self.home, self.b)
        hang_up(server)
        server.wait_for_log(
            re.compile(r"SIGHUP: reloaded the TLS certificate for --line and --web: CN=localhost")
        )
        bob = TLSLineClient(self, line_port, trust)
        self.assertEqual(bob.certificate(), der(self.b.cert))
        self.assertEqual(web_certificate(web_port, trust), der(self.b.cert))
        bob.sign_on("bob")
        alice.read_until(b"*** bob has joined #lobby\r\n")
        alice.send_line("still here")
        alice.read_until(b"[#lobby] <alice> still here\r\n")
        bob.read_until(b"[#lobby] <alice> still here\r\n")

        replace(self.served.cert, b"-----BEGIN CERTIFICATE-----\nbroken\n")
        hang_up(server)
        kept = server.wait_for_log(re.compile(r"SIGHUP: kept the old TLS certificate for (.*)"))
        self.assertRegex(kept.group(1), "^--line and --web: not a valid PEM certificate and key")
        self.assertEqual(TLSLineClient(self, line_port, trust).certificate(), der(self.b.cert))
        self.assertEqual(web_certificate(web_port, trust), der(self.b.cert))
        alice.send_line("and still")
        alice.read_until(b"[#lobby] <alice> and still\r\n")
        self.assertIsNone(server.process.poll())
        log = server.output()
        self.assertEqual(log.count("SIGHUP:"), 2)
        self.assertNotIn("Traceback", log)

    def test_motd_without_tls(self) -> None:
        """
        SIGHUP to a server without any C{ssl:} door (which used to kill it)
        rereads its message of the day: the next sign-on sees the new one,
        and sessions already open go on.
        """
        motd = self.home / "motd.txt"
        motd.write_text("first motd\n")
        doors = ["--line", LOCAL_TCP0, "--web", "none", "--irc", "none"]
        server = TwistdProcess(
            self,
            ["-n", "--pidfile=", "chatd", "--db", ":memory:", *doors, "--motd", str(motd)],
            cwd=self.home,
            env=checkout_env(),
        )
        carol = LineClient(self, server.port("line"))
        carol.sign_on("carol")
        carol.read_until(b"*** first motd\r\n")

        replace(motd, b"second motd\nline two\n")
        hang_up(server)
        server.wait_for_log(re.compile(r"SIGHUP: reloaded the message of the day .* \(2 lines"))
        dave = LineClient(self, server.port("line"))
        dave.sign_on("dave")
        motd_lines = dave.read_until(b"*** line two\r\n")
        self.assertIn(b"*** second motd\r\n", motd_lines)
        self.assertNotIn(b"first motd", motd_lines)
        carol.send_line("hello")
        carol.read_until(b"[#lobby] <carol> hello\r\n")
        self.assertIsNone(server.process.poll())
        self.assertNotIn("Traceback", server.output())


class PoolProcessTests(SynchronousTestCase):
    """
    C{kill -HUP} on a real worker pool (run from a C{.tac} file, as in
    L{tests.test_workers}).
    """

    def test_pool_passes_sighup_on(self) -> None:
        """
        The pool passes SIGHUP on, and each worker rereads its message of
        the day; a SIGHUP while the workers are still starting kills none,
        and each rereads it once ready.
        """
        home = scratch_dir(self)
        motd = home / "motd.txt"
        motd.write_text("first motd\n")
        args = ["--db", ":memory:", "--line", "tcp:0", "--web", "none", "--irc", "none"]
        args += ["--motd", str(motd)]
        doors = {"line": LOCAL_TCP0}
        (home / "pool.tac").write_text(POOL_TAC.format(doors=doors, args=args, count=2))
        pool = TwistdProcess(
            self, ["-n", "--pidfile=", "-y", "pool.tac"], cwd=home, env=checkout_env()
        )
        self.addCleanup(self.kill_workers, pool)
        pool.wait_for_log(re.compile(r"Worker 1 started"))
        hang_up(pool)  # the workers have only just been started: they reload once ready
        for index in (0, 1):
            pool.wait_for_log(
                re.compile(rf"worker {index}: .*SIGHUP: reloaded the message of the day .*1 line\)")
            )
        pids = [int(pid) for _, pid in STARTED.findall(pool.output())]
        self.assertEqual(len(pids), 2)

        replace(motd, b"second motd\nline two\n")
        hang_up(pool)
        for index in (0, 1):
            pool.wait_for_log(
                re.compile(rf"worker {index}: .*SIGHUP: reloaded the message of the day .*2 lines")
            )
        client = LineClient(self, pool.port("line"))
        client.sign_on("erin")
        client.read_until(b"*** second motd\r\n")
        log = pool.output()
        self.assertEqual(log.count("SIGHUP: passing it on to the workers"), 2)
        self.assertNotIn("exited", log)
        self.assertEqual([int(pid) for _, pid in STARTED.findall(log)], pids)

    def kill_workers(self, pool: TwistdProcess) -> None:
        """
        Stop the pool (by its pid) and its workers with it, by SIGTERM.
        """
        if pool.process.poll() is None:
            pool.terminate()
