"""
chatd deployed the way chat servers are run (issue #13): behind nginx (the
web door) and HAProxy (the line, IRC and web doors, PROXY protocol), on
localhost, each run from the files in C{docs/deploy/} that the README shows,
against a real C{twistd -n chatd}.

Linux routes all of 127.0.0.0/8 on the loopback interface, so clients that
bind 127.0.0.2, 127.0.0.3... before connecting are different people to
chatd and to the proxies.  The proxies connect to chatd from 127.0.0.1, the
default trusted proxy; chatd runs with C{--exempt 127.0.0.1} (or C{none}) so
that no client is exempt from the per-address limits.

The nginx and HAProxy tests need the Debian packages C{nginx} (which
C{nginx-light} brings) and C{haproxy}; without them they are skipped,
saying so, unless C{CHATD_REQUIRE_PROXIES=1} (which C{.ci/run} sets) or
C{CI=true}: there they fail.  The tests of the forwarding headers sent straight to chatd, and
of the deployment files themselves, need neither.
"""

from __future__ import annotations

import re
import shlex
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from twisted.trial.unittest import SynchronousTestCase

from tests.support.certs import make_self_signed
from tests.support.processes import (
    CHECKOUT,
    LOCAL_TCP0,
    LOCALHOST,
    TIMEOUT,
    LineClient,
    TwistdProcess,
    WebSocketClient,
    _Connection,
    checkout_env,
    scratch_dir,
    terminated_by_sigterm,
)
from tests.support.proxies import (
    DEPLOY,
    HAProxy,
    Nginx,
    console_users,
    get,
    require_program,
    upgrade,
)

T = TypeVar("T")

REFUSED = "Connection refused: too many connections from your address; try again later"
"""Why chatd refuses a connection over a per-address limit."""

PAGE = ("/", "/chat.js", "/chat.css", "/healthz")
"""What a browser loads (and a load balancer checks) before its WebSocket."""


def person(n: int) -> str:
    """
    The loopback address of client number C{n} (2 and up; 127.0.0.1 is the
    proxies').
    """
    return f"127.0.0.{n}"


def start_chatd(case: SynchronousTestCase, *args: str) -> TwistdProcess:
    """
    A C{twistd -n chatd} with nothing stored, its admin console on
    C{admin.sock} in its directory (L{users}), and C{args}.
    """
    directory = scratch_dir(case)
    admin = f"unix:{directory / 'admin.sock'}"
    return TwistdProcess(
        case,
        ["-n", "--pidfile=", "chatd", "--db", ":memory:", "--admin", admin, "--irc", "none", *args],
        cwd=directory,
        env=checkout_env(),
    )


def users(server: TwistdProcess) -> dict[str, str]:
    """
    The users of C{server} by nickname, each with the address chatd counts
    them under, as its admin console says.
    """
    return console_users(server.log_path.with_name("admin.sock"))


def eventually(attempt: Callable[[], T], timeout: float = TIMEOUT) -> T:
    """
    The result of C{attempt()} once it stops failing an assertion, retried
    for at most C{timeout} seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return attempt()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def dropped(connection: _Connection) -> None:
    """
    Assert that the peer closes C{connection} (or resets it) without
    sending a byte.
    """
    try:
        data = connection.read_to_eof()
    except ConnectionResetError:
        data = connection.buffer
    if data:
        raise AssertionError(f"expected the connection dropped, got {data!r}")


class IrcClient(_Connection):
    """
    A client of the IRC door, as a bot would be: lines out, lines in, the
    server's C{PING}s answered.
    """

    def send_line(self, text: str) -> None:
        self.sock.sendall(text.encode("utf-8") + b"\r\n")

    def expect(self, needle: str, timeout: float = TIMEOUT) -> str:
        """
        The first line from the server holding C{needle} (the lines before
        it read and dropped).
        """
        deadline = time.monotonic() + timeout
        while True:
            remaining = max(deadline - time.monotonic(), 0.001)
            line = self.read_until(b"\r\n", remaining).decode("utf-8").rstrip("\r\n")
            if line.startswith("PING "):
                self.send_line("PONG " + line[len("PING ") :])
            if needle in line:
                return line

    def sign_on(self, nick: str) -> None:
        """
        Register as C{nick} and wait for the welcome (001).
        """
        self.send_line(f"NICK {nick}")
        self.send_line(f"USER {nick} 0 * :{nick} the tester")
        self.expect(f" 001 {nick} ")


class ServerLogMixin:
    """
    Checks on a chatd's log.
    """

    chatd: TwistdProcess

    def assertCleanLog(self) -> None:
        """
        Nothing in chatd's log is a traceback or an unhandled error.
        """
        output = self.chatd.output()
        for bad in ("Traceback", "Unhandled"):
            if bad in output:
                raise AssertionError(f"{bad!r} in chatd's log:\n{output}")

    def assertLoggedOnce(self, line: str) -> None:
        """
        C{line} appears in chatd's log (waiting for it a while), exactly once.
        """
        self.chatd.wait_for_log(re.compile(re.escape(line)))
        count = self.chatd.output().count(line)
        if count != 1:
            raise AssertionError(f"{line!r} logged {count} times:\n{self.chatd.output()}")


class NginxTests(ServerLogMixin, SynchronousTestCase):
    """
    nginx (C{docs/deploy/nginx.conf}) in front of the web door: TLS there,
    C{X-Forwarded-For} to chatd, which caps people at 2 sessions each.
    """

    def setUp(self) -> None:
        require_program(self, "nginx", "nginx")
        self.certificate = make_self_signed(scratch_dir(self))
        self.tls = self.certificate.client_context()
        self.chatd = start_chatd(
            self, "--line", "none", "--web", LOCAL_TCP0, "--exempt", LOCALHOST, "--max-per-ip", "2"
        )
        self.nginx = Nginx(self, scratch_dir(self), self.chatd.port("web"), self.certificate)

    def session(self, n: int, *headers: tuple[str, str]) -> WebSocketClient:
        """
        A WebSocket session of client C{n} through nginx, as a page served
        there would open it (with its C{Origin}).
        """
        origin = f"https://{LOCALHOST}:{self.nginx.https_port}"
        return WebSocketClient(
            self,
            self.nginx.https_port,
            source=person(n),
            tls=self.tls,
            headers=[("Origin", origin), *headers],
        )

    def test_distinct_clients(self) -> None:
        """
        Twenty people with a session each through nginx all get in and
        chat, with C{--max-per-ip 2}: chatd counts each under the address
        nginx names, not nginx's own.  (With the proxy counted, the 17th
        was refused even at the default limit.)
        """
        clients = [self.session(n) for n in range(2, 22)]
        for n, client in enumerate(clients, 2):
            client.sign_on(f"user{n}")
        clients[0].send_json({"type": "say", "room": "#lobby", "text": "hello from .2"})
        said = clients[-1].expect("message", text="hello from .2")
        self.assertEqual(said["from"], "user2")
        self.assertEqual(users(self.chatd), {f"user{n}": person(n) for n in range(2, 22)})
        self.assertCleanLog()

    def test_one_client_capped(self) -> None:
        """
        A third session from one address is refused through nginx with 503
        and the reason, claiming another address in C{X-Forwarded-For} or
        not (nginx appends the address it saw, and that is what chatd
        reads); others still get in; closing a session frees its place.
        """
        first = self.session(2)
        self.session(2, ("X-Forwarded-For", "10.9.9.9"))
        for headers in ([], [("X-Forwarded-For", "10.9.9.9")]):
            status, line = upgrade(
                self, self.nginx.https_port, source=person(2), tls=self.tls, headers=headers
            )
            self.assertEqual((status, REFUSED in line), (503, True), line)
        self.session(3).sign_on("other")
        first.close()
        eventually(lambda: self.session(2)).sign_on("back")
        self.assertCleanLog()

    def test_forged_header_straight_to_chatd(self) -> None:
        """
        A WebSocket upgrade sent straight to chatd from 127.0.0.5, which is
        no trusted proxy, counts as 127.0.0.5 whatever its
        C{X-Forwarded-For} or C{Forwarded} claims: its third session is
        refused though each claimed another address, and so is one through
        nginx from the same address.
        """
        web = self.chatd.port("web")
        for i, header in enumerate(["X-Forwarded-For: 10.9.9.1", "Forwarded: for=10.9.9.2"]):
            name, _, value = header.partition(": ")
            forger = WebSocketClient(self, web, source=person(5), headers=[(name, value)])
            forger.sign_on(f"forger{i}")
        self.assertEqual(users(self.chatd), {"forger0": person(5), "forger1": person(5)})
        status, line = upgrade(
            self, web, source=person(5), headers=[("X-Forwarded-For", "10.9.9.3")]
        )
        self.assertEqual((status, REFUSED in line), (503, True), line)
        status, line = upgrade(self, self.nginx.https_port, source=person(5), tls=self.tls)
        self.assertEqual((status, REFUSED in line), (503, True), line)
        self.session(6).sign_on("honest")
        self.assertCleanLog()

    def test_garbage_forwarded_for_through_nginx(self) -> None:
        """
        A client's own unreadable C{X-Forwarded-For} is harmless through
        nginx: nginx appends the address it saw, which is all chatd reads;
        no refusal, no warning.
        """
        client = self.session(7, ("X-Forwarded-For", "garbage, <script>"))
        client.sign_on("sneaky")
        self.assertNotIn("bad forwarding header", self.chatd.output())
        self.assertCleanLog()

    def test_page_over_tls_and_redirect(self) -> None:
        """
        nginx serves chatd's page and files over TLS, and redirects plain
        HTTP to https.
        """
        for path in PAGE:
            status, _, body = get(self.nginx.https_port, path, source=person(2), tls=self.tls)
            self.assertEqual(status, 200, (path, body))
        status, headers, _ = get(self.nginx.http_port, "/", source=person(2))
        self.assertEqual(status, 301)
        self.assertTrue(headers["location"].startswith("https://"), headers)
        self.assertCleanLog()


class PageLoadTests(ServerLogMixin, SynchronousTestCase):
    """
    Page loads against chatd's limits on chat connections: with
    C{--connect-rate 3/600}, loading the page many times leaves a person
    their three sessions.  Nobody is exempt (C{--exempt none}); plain HTTP
    is capped at 4 connections at once per address.
    """

    def setUp(self) -> None:
        self.chatd = start_chatd(
            self,
            "--line",
            "none",
            "--web",
            LOCAL_TCP0,
            "--exempt",
            "none",
            "--connect-rate",
            "3/600",
            "--max-http-per-ip",
            "4",
        )
        self.web = self.chatd.port("web")

    def assertPageLoadsThenThreeSessions(
        self, port: int, n: int, tls: ssl.SSLContext | None = None
    ) -> None:
        """
        Client C{n} loads the page thirty times on C{port}, then has three
        sessions and is refused a fourth; the page still loads.
        """
        for i in range(30):
            status, _, body = get(port, PAGE[i % len(PAGE)], source=person(n), tls=tls)
            self.assertEqual(status, 200, body)
        for i in range(3):
            WebSocketClient(self, port, source=person(n), tls=tls).sign_on(f"user{n}x{i}")
        status, line = upgrade(self, port, source=person(n), tls=tls)
        self.assertEqual((status, REFUSED in line), (503, True), line)
        self.assertEqual(get(port, "/", source=person(n), tls=tls)[0], 200)

    def test_page_loads_straight(self) -> None:
        """
        Straight to chatd: thirty page loads use up nothing of the connect
        rate; three sessions do, and the fourth is refused with 503.
        """
        self.assertPageLoadsThenThreeSessions(self.web, 2)
        self.assertCleanLog()

    def test_page_loads_through_nginx(self) -> None:
        """
        The same through nginx, with the proxy itself not exempt: its page
        loads are not capped (it is a trusted proxy), each session counts
        for the client nginx names, and another client still gets in.
        """
        require_program(self, "nginx", "nginx")
        certificate = make_self_signed(scratch_dir(self))
        nginx = Nginx(self, scratch_dir(self), self.web, certificate)
        tls = certificate.client_context()
        self.assertPageLoadsThenThreeSessions(nginx.https_port, 3, tls)
        WebSocketClient(self, nginx.https_port, source=person(4), tls=tls).sign_on("next")
        self.assertCleanLog()

    def test_http_cap_per_address(self) -> None:
        """
        C{--max-http-per-ip 4}: a fifth plain HTTP connection open at once
        from one address gets 503; a trusted proxy (127.0.0.1) is not
        capped however many it holds; closing connections frees places.
        """
        held = [_Connection(self, self.web, source=person(2)) for _ in range(4)]
        fifth = _Connection(self, self.web, source=person(2))
        answer = fifth.read_to_eof().decode("utf-8")
        self.assertTrue(answer.startswith("HTTP/1.1 503 "), answer)
        self.assertIn(REFUSED, answer)
        proxy = [_Connection(self, self.web, source=LOCALHOST) for _ in range(8)]
        self.assertEqual(get(self.web, "/", source=LOCALHOST)[0], 200)
        self.assertEqual(get(self.web, "/", source=person(3))[0], 200)
        for connection in held + proxy:
            connection.close()

        def load() -> None:
            status = get(self.web, "/", source=person(2))[0]
            if status != 200:
                raise AssertionError(status)

        eventually(load)
        self.assertCleanLog()


class HAProxyTests(ServerLogMixin, SynchronousTestCase):
    """
    HAProxy (C{docs/deploy/haproxy.cfg}, mode tcp) in front of all three
    doors on C{haproxy:tcp:} endpoints: PROXY v1 (C{send-proxy}) to the
    line and IRC doors, v2 (C{send-proxy-v2}) to the web door; chatd caps
    people at 2 connections each.
    """

    def setUp(self) -> None:
        require_program(self, "haproxy", "haproxy")
        self.certificate = make_self_signed(scratch_dir(self))
        self.tls = self.certificate.client_context()
        proxied = f"haproxy:{LOCAL_TCP0}"
        self.chatd = start_chatd(
            self,
            "--line",
            proxied,
            "--web",
            proxied,
            "--irc",
            proxied,
            "--exempt",
            LOCALHOST,
            "--max-per-ip",
            "2",
        )
        self.line, self.web = self.chatd.port("line (PROXY)"), self.chatd.port("web (PROXY)")
        self.irc = self.chatd.port("irc (PROXY)")
        self.haproxy = HAProxy(
            self, scratch_dir(self), self.line, self.irc, self.web, self.certificate
        )

    def line_client(self, n: int, tls: bool = False) -> LineClient:
        """
        A line connection of client C{n} through HAProxy, on its plain or
        its TLS port.
        """
        if tls:
            return LineClient(self, self.haproxy.line_tls_port, source=person(n), tls=self.tls)
        return LineClient(self, self.haproxy.line_port, source=person(n))

    def irc_client(self, n: int, tls: bool = False) -> IrcClient:
        """
        An IRC connection of client C{n} through HAProxy, on its plain or
        its TLS port.
        """
        if tls:
            return IrcClient(self, self.haproxy.irc_tls_port, source=person(n), tls=self.tls)
        return IrcClient(self, self.haproxy.irc_port, source=person(n))

    def test_line_clients(self) -> None:
        """
        Twenty people on the line door through HAProxy, half of them over
        TLS, all get in and talk: chatd counts each under the address the
        PROXY header names.
        """
        clients = [self.line_client(n, tls=n % 2 == 0) for n in range(2, 22)]
        for n, client in enumerate(clients, 2):
            client.sign_on(f"user{n}")
        clients[0].send_line("hello over the line")
        clients[-1].read_until(b"[#lobby] <user2> hello over the line")
        self.assertEqual(users(self.chatd), {f"user{n}": person(n) for n in range(2, 22)})
        self.assertCleanLog()

    def test_line_client_capped(self) -> None:
        """
        A third line connection from one address, through either of
        HAProxy's ports, gets the refusal line through HAProxy and is
        closed; others still get in; closing one frees its place.
        """
        first = self.line_client(2)
        first.read_until(b"nickname:\r\n")
        self.line_client(2, tls=True).read_until(b"nickname:\r\n")
        for tls in (False, True):
            third = self.line_client(2, tls=tls)
            self.assertEqual(third.read_to_eof(), f"!!! {REFUSED}\r\n".encode())
        self.line_client(3).sign_on("other")
        first.close()

        def again() -> None:
            client = self.line_client(2)
            client.read_until(b"nickname:\r\n")

        eventually(again)
        self.assertCleanLog()

    def test_irc_clients(self) -> None:
        """
        Ten people on the IRC door through HAProxy, half of them over TLS,
        all get in, each signed on under the address the PROXY header names
        (as chatd's console lists them), and hear a line user in
        C{#lobby}; HAProxy's health check of the IRC door passes.
        """
        clients = [self.irc_client(n, tls=n % 2 == 0) for n in range(2, 12)]
        for n, client in enumerate(clients, 2):
            client.sign_on(f"irc{n}")
            client.send_line("JOIN #lobby")
            client.expect(f" 366 irc{n} #lobby ")
        liner = self.line_client(12)
        liner.sign_on("liner")
        liner.send_line("hello over IRC")
        for client in clients:
            client.expect(":liner!")
        expected = {f"irc{n}": person(n) for n in range(2, 12)}
        self.assertEqual(users(self.chatd), {**expected, "liner": person(12)})
        self.haproxy.wait_checked("chatd_irc", "L4OK")
        self.assertNotIn("Refused a connection", self.chatd.output())
        self.assertCleanLog()

    def test_irc_client_capped(self) -> None:
        """
        A third IRC connection from one address, through either of
        HAProxy's IRC ports, gets chatd's C{ERROR} line through HAProxy and
        is closed; others still get in.
        """
        self.irc_client(2).sign_on("first")
        self.irc_client(2, tls=True).sign_on("second")
        for tls in (False, True):
            third = self.irc_client(2, tls=tls)
            self.assertEqual(third.read_to_eof(), f"ERROR :Closing link: {REFUSED}\r\n".encode())
        self.irc_client(3).sign_on("other")
        self.assertEqual(
            users(self.chatd), {"first": person(2), "second": person(2), "other": person(3)}
        )
        self.assertCleanLog()

    def test_websockets_through_haproxy(self) -> None:
        """
        On the web door behind HAProxy (TLS there, PROXY v2 to chatd),
        people get sessions under their own addresses: two from one
        address, the third refused with 503; the page loads; HAProxy's
        health checks (v2 LOCAL, C{GET /readyz}; v1 on the line door) pass.
        """
        port = self.haproxy.web_port
        for n in range(2, 8):
            WebSocketClient(self, port, source=person(n), tls=self.tls).sign_on(f"web{n}")
        WebSocketClient(self, port, source=person(2), tls=self.tls).sign_on("web2b")
        expected = {f"web{n}": person(n) for n in range(2, 8)}
        self.assertEqual(users(self.chatd), {**expected, "web2b": person(2)})
        status, line = upgrade(self, port, source=person(2), tls=self.tls)
        self.assertEqual((status, REFUSED in line), (503, True), line)
        for path in PAGE:
            self.assertEqual(get(port, path, source=person(2), tls=self.tls)[0], 200, path)
        self.haproxy.wait_checked("chatd_web", "L7OK")
        self.haproxy.wait_checked("chatd_line", "L4OK")
        self.assertNotIn("Refused a connection", self.chatd.output())
        self.assertCleanLog()

    def test_without_header_dropped(self) -> None:
        """
        Straight to chatd's C{haproxy:} ports: a connection without a PROXY
        header is dropped, with one log line saying why; so is one whose
        header comes from an address that is no trusted proxy, and a broken
        header from the trusted one.
        """
        bare = _Connection(self, self.line, source=LOCALHOST)
        bare.sock.sendall(b"alice\r\n")
        dropped(bare)
        self.assertLoggedOnce(
            "Refused a connection from 127.0.0.1 to the line door: no PROXY protocol header"
        )
        untrusted = _Connection(self, self.line, source=person(3))
        untrusted.sock.sendall(b"PROXY TCP4 10.1.2.3 127.0.0.1 5555 1234\r\nalice\r\n")
        dropped(untrusted)
        self.assertLoggedOnce(
            "Refused a connection from 127.0.0.3 to the line door: "
            "a PROXY header from 127.0.0.3, which is no trusted proxy"
        )
        broken = _Connection(self, self.line, source=LOCALHOST)
        broken.sock.sendall(b"PROXY TCP4 999.1.2.3 127.0.0.1 5555 1234\r\n")
        dropped(broken)
        self.assertLoggedOnce(
            "Refused a connection from 127.0.0.1 to the line door: "
            "a PROXY v1 header with a bad address"
        )
        irc = _Connection(self, self.irc, source=LOCALHOST)
        irc.sock.sendall(b"NICK alice\r\nUSER alice 0 * :alice\r\n")
        dropped(irc)
        self.assertLoggedOnce(
            "Refused a connection from 127.0.0.1 to the irc door: no PROXY protocol header"
        )
        page = _Connection(self, self.web, source=LOCALHOST)
        page.sock.sendall(b"GET / HTTP/1.1\r\nHost: chat.example\r\n\r\n")
        dropped(page)
        self.assertLoggedOnce(
            "Refused a connection from 127.0.0.1 to the web door: no PROXY protocol header"
        )
        self.assertCleanLog()


class ForwardingHeaderTests(ServerLogMixin, SynchronousTestCase):
    """
    Forwarding headers sent straight to chatd's web door, from the trusted
    proxy (127.0.0.1, by default) and from elsewhere.
    """

    def setUp(self) -> None:
        self.chatd = start_chatd(self, "--line", "none", "--web", LOCAL_TCP0, "--exempt", LOCALHOST)
        self.web = self.chatd.port("web")

    def test_malformed_from_trusted_proxy(self) -> None:
        """
        A WebSocket upgrade from the trusted proxy whose forwarding header
        names no address where the client should be is refused with 400 and
        one warning saying why, never a traceback.
        """
        for header, value, why in (
            ("X-Forwarded-For", "not-an-address", "'not-an-address' is no IP address"),
            ("X-Forwarded-For", "192.0.2.7, 10.0.0.1:80:90", "'10.0.0.1:80:90' is no IP address"),
            ("Forwarded", "for=bogus;proto=https", "'bogus' is no IP address"),
        ):
            status, line = upgrade(self, self.web, source=LOCALHOST, headers=[(header, value)])
            self.assertEqual(status, 400, line)
            self.assertLoggedOnce(
                f"Refused a WebSocket session from proxy 127.0.0.1: bad forwarding header ({why})"
            )
        self.assertCleanLog()

    def test_wellformed_from_trusted_proxy(self) -> None:
        """
        Well-formed headers from the trusted proxy are taken: the right-most
        address that is not a trusted proxy is the client.
        """
        expected = {}
        for i, (header, value, client) in enumerate(
            (
                ("X-Forwarded-For", "10.9.9.9, 192.0.2.7", "192.0.2.7"),
                ("X-Forwarded-For", "192.0.2.8, 127.0.0.1", "192.0.2.8"),
                ("Forwarded", 'for="[2001:db8::1]:4711";proto=https', "2001:db8::1"),
                ("Forwarded", "for=192.0.2.9, for=127.0.0.1", "192.0.2.9"),
            )
        ):
            session = WebSocketClient(self, self.web, source=LOCALHOST, headers=[(header, value)])
            session.sign_on(f"viaproxy{i}")
            expected[f"viaproxy{i}"] = client
        self.assertEqual(users(self.chatd), expected)
        self.assertNotIn("bad forwarding header", self.chatd.output())
        self.assertCleanLog()

    def test_ignored_from_elsewhere(self) -> None:
        """
        From an address that is no trusted proxy, even an unreadable
        forwarding header is ignored: the session is that address's.
        """
        for header in ("X-Forwarded-For", "Forwarded"):
            garbage = [(header, "garbage")]
            session = WebSocketClient(self, self.web, source=person(5), headers=garbage)
            session.sign_on(f"from{header[0]}")
        self.assertEqual(users(self.chatd), {"fromX": person(5), "fromF": person(5)})
        self.assertNotIn("bad forwarding header", self.chatd.output())
        self.assertCleanLog()


README = CHECKOUT / "README.rst"


def readme_block(name: str) -> str:
    """
    The literal block the README shows after naming C{docs/deploy/NAME} in
    the paragraph that introduces it, without its indentation.
    """
    text = README.read_text("utf-8")
    pattern = re.compile(
        rf"``docs/deploy/{re.escape(name)}``(?:(?!\n\n)[\s\S])*::\n\n((?:    [^\n]*\n|\n)+)"
    )
    match = pattern.search(text)
    if match is None:
        raise AssertionError(f"README.rst shows no ``docs/deploy/{name}``:: block")
    lines = match.group(1).rstrip("\n").split("\n")
    return "\n".join(line[4:] for line in lines) + "\n"


def unit_entries(text: str) -> dict[str, dict[str, list[str]]]:
    """
    A systemd unit file's entries, by section and key (continued lines
    joined), as systemd reads them.
    """
    sections: dict[str, dict[str, list[str]]] = {}
    section = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            sections.setdefault(section, {})
            continue
        if section is None or "=" not in line:
            raise AssertionError(f"not a unit file line: {line!r}")
        key, _, value = line.partition("=")
        sections[section].setdefault(key.strip(), []).append(value.strip())
    if pending:
        raise AssertionError("the unit file ends in a continued line")
    return sections


class DeployFilesTests(SynchronousTestCase):
    """
    The deployment files in C{docs/deploy/}: what the README shows, and a
    systemd unit that systemd takes and whose command runs chatd.
    """

    def test_readme_shows_deploy_files(self) -> None:
        """
        The README shows every file of C{docs/deploy/} exactly as it is,
        so that the two cannot drift apart.
        """
        names = sorted(path.name for path in DEPLOY.iterdir())
        self.assertEqual(names, ["chatd.service", "haproxy.cfg", "nginx.conf"])
        for name in names:
            self.assertEqual(readme_block(name), (DEPLOY / name).read_text("utf-8"), name)

    def test_systemd_unit_structure(self) -> None:
        """
        The unit runs twistd in the foreground as a simple service, as a
        user of its own, with its runtime directory, reloads with SIGHUP,
        and is wanted at boot.
        """
        unit = unit_entries((DEPLOY / "chatd.service").read_text("utf-8"))
        self.assertEqual(sorted(unit), ["Install", "Service", "Unit"])
        service = unit["Service"]
        self.assertEqual(service["Type"], ["simple"])
        self.assertEqual(service["ExecReload"], ["/bin/kill -HUP $MAINPID"])
        self.assertEqual(service["RuntimeDirectory"], ["chatd"])
        self.assertNotIn(service["User"][0], ("", "root"))
        (command,) = service["ExecStart"]
        args = shlex.split(command)
        self.assertTrue(args[0].startswith("/") and args[0].endswith("/twistd"), args)
        self.assertEqual(args[1:4], ["-n", "--pidfile=", "chatd"])
        self.assertEqual(unit["Install"]["WantedBy"], ["multi-user.target"])

    def test_systemd_analyze_verify(self) -> None:
        """
        C{systemd-analyze verify} takes the unit without a complaint (its
        twistd path pointed at this one, which exists).
        """
        analyze = require_program(self, "systemd-analyze", "systemd")
        twistd = Path(sys.executable).with_name("twistd")
        unit = (DEPLOY / "chatd.service").read_text("utf-8")
        self.assertIn("/opt/chatd/bin/twistd", unit)
        if twistd.exists():
            unit = unit.replace("/opt/chatd/bin/twistd", str(twistd))
        else:
            unit = unit.replace("/opt/chatd/bin/twistd", sys.executable)
        path = scratch_dir(self) / "chatd.service"
        path.write_text(unit, "utf-8")
        result = subprocess.run(
            [analyze, "verify", str(path)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        self.assertEqual((result.returncode, result.stdout + result.stderr), (0, ""))

    def test_systemd_unit_loopback_only(self) -> None:
        """
        The unit gives every door (and the admin console, on a unix socket)
        an endpoint of its own on 127.0.0.1, so that no door falls back on
        its default, which listens on every interface; the line and IRC
        doors take the PROXY protocol, and HAProxy's backends point at
        their ports, nginx's upstream at the web door's.
        """
        unit = unit_entries((DEPLOY / "chatd.service").read_text("utf-8"))
        (command,) = unit["Service"]["ExecStart"]
        args = shlex.split(command)
        options = dict(zip(args[4::2], args[5::2], strict=True))
        endpoint = re.compile(r"((?:haproxy:)?)tcp:(\d+):interface=127\.0\.0\.1")
        ports = {}
        for door, proxied in (("--web", ""), ("--line", "haproxy:"), ("--irc", "haproxy:")):
            match = endpoint.fullmatch(options.get(door, ""))
            self.assertIsNotNone(match, (door, options.get(door)))
            assert match is not None
            self.assertEqual(match.group(1), proxied, door)
            ports[door] = match.group(2)
        self.assertTrue(options["--admin"].startswith("unix:"), options)
        haproxy = (DEPLOY / "haproxy.cfg").read_text("utf-8")
        for backend, door in (("chatd_line", "--line"), ("chatd_irc", "--irc")):
            server = f"server chatd 127.0.0.1:{ports[door]} send-proxy check"
            self.assertRegex(haproxy, rf"\nbackend {backend}\n(?:    [^\n]*\n)*    {server}\n")
        nginx = (DEPLOY / "nginx.conf").read_text("utf-8")
        self.assertIn(f"server 127.0.0.1:{ports['--web']};", nginx)

    def test_systemd_unit_command_runs(self) -> None:
        """
        The unit's command line starts chatd with its three doors listening
        (on free ports, its directories and files in a scratch directory),
        the line and IRC doors behind the PROXY protocol, the admin console
        on its socket, no twistd.pid; SIGTERM stops it cleanly.
        """
        unit = unit_entries((DEPLOY / "chatd.service").read_text("utf-8"))
        (command,) = unit["Service"]["ExecStart"]
        root = scratch_dir(self)
        for directory in ("state", "run", "etc"):
            (root / directory).mkdir()
        (root / "etc" / "motd").write_text("Welcome to the test server.\n", "utf-8")
        for old, new in (
            ("tcp:8080:", "tcp:0:"),
            ("tcp:1235:", "tcp:0:"),
            ("tcp:6668:", "tcp:0:"),
            ("/var/lib/chatd", str(root / "state")),
            ("/run/chatd", str(root / "run")),
            ("/etc/chatd/motd", str(root / "etc" / "motd")),
        ):
            self.assertIn(old, command)
            command = command.replace(old, new)
        state = root / "state"
        self.assertEqual(unit["Service"]["WorkingDirectory"], ["/var/lib/chatd"])
        args = shlex.split(command)[1:]
        self.assertIn("--irc", args)  # its default, 0.0.0.0:6667, is no test's to take
        server = TwistdProcess(self, args, cwd=state, env=checkout_env())
        server.port("web")
        server.port("line (PROXY)")
        server.port("irc (PROXY)")
        self.assertTrue((root / "run" / "admin.sock").exists())
        self.assertFalse((state / "twistd.pid").exists())
        self.assertTrue(terminated_by_sigterm(server.terminate()), server.output())
        self.assertNotIn("Traceback", server.output())
