# -*- test-case-name: tests.test_tls -*-
"""
Both doors over TLS: a real C{twistd -n chatd} process listening on C{ssl:}
endpoints, talked to over real sockets on 127.0.0.1 by clients that verify
its certificate.

Each test makes a throwaway self-signed certificate (L{tests.support.certs}) in a
temporary directory; no key is ever stored in the checkout.
"""

from __future__ import annotations

import http.client
import re
import ssl

from twisted.trial.unittest import SynchronousTestCase

from chatd.testing import CLOSE
from tests.support.certs import HOSTNAME, SelfSigned, make_self_signed
from tests.support.processes import (
    LOCAL_TCP0,
    LOCALHOST,
    TIMEOUT,
    LineClient,
    TwistdProcess,
    WebSocketClient,
    _Connection,
    checkout_env,
    close_code,
    http_get,
    run_twistd,
    scratch_dir,
    terminated_by_sigterm,
)

GOING_AWAY = 1001

_TLS_PORT_LINES = {
    # An ssl: port logs "<factory> (TLS) starting on N", the factory's name
    # followed by those of any factories it wraps ("Site (AdmittingFactory)
    # (TLS) ..."): the patterns of tests.support.processes are for TCP ports only.
    door: re.compile(rf"{factory}(?: \(\w+\))* \(TLS\) starting on (\d+)")
    for door, factory in (("line", "LineDoor"), ("web", "Site"), ("irc", "IrcDoor"))
}


def tls_port(server: TwistdProcess, door: str) -> int:
    """
    The port on which C{door} (C{"line"}, C{"web"} or C{"irc"}) of C{server} listens
    for TLS, read from its log once it has been logged.
    """
    return int(server.wait_for_log(_TLS_PORT_LINES[door]).group(1))


class _OverTLS(_Connection):
    """
    A connection of L{tests.support.processes} run over TLS: the TCP connection is
    wrapped (the handshake done, the server's certificate checked against
    the test's own certificate and host name) before anything is sent.

    Listed after the client class (C{class C(LineClient, _OverTLS)}), so
    that the client's own set-up, such as the WebSocket handshake, already
    runs over TLS.

    @cvar alpn: the application protocols offered in the handshake.
    """

    alpn: tuple[str, ...] = ()
    sock: ssl.SSLSocket

    def __init__(self, case: TLSTestCase, port: int) -> None:
        super().__init__(case, port)
        context = case.certificate.client_context(*self.alpn)
        self.sock = context.wrap_socket(self.sock, server_hostname=HOSTNAME)
        case.addCleanup(self.sock.close)

    def _fill(self, deadline: float) -> None:
        """
        Read more, taking a TCP close without TLS's close_notify (an abort)
        for what it is: the TLS form of a reset.
        """
        try:
            super()._fill(deadline)
        except ssl.SSLEOFError as e:
            raise ConnectionResetError(f"TCP closed without TLS close_notify: {e}") from e


class TLSLineClient(LineClient, _OverTLS):
    """
    A client of the line door over TLS, as C{openssl s_client} is: it offers
    no application protocol.
    """


class SecureWebSocketClient(WebSocketClient, _OverTLS):
    """
    A C{wss://} client of the web door that offers HTTP/1.1 by ALPN, as
    browsers do for WebSocket connections.
    """

    alpn = ("http/1.1",)


class TLSTestCase(SynchronousTestCase):
    """
    A test with its own self-signed certificate, which its clients trust
    and nothing else.

    @ivar certificate: the certificate (and key) the server is given.
    """

    def setUp(self) -> None:
        self.directory = scratch_dir(self)
        self.certificate: SelfSigned = make_self_signed(self.directory)

    def start(self) -> TwistdProcess:
        """
        Start C{twistd -n --pidfile= chatd} with both doors on free TLS ports
        of 127.0.0.1, serving L{certificate}.
        """
        endpoint = self.certificate.endpoint()
        return TwistdProcess(
            self,
            ["-n", "--pidfile=", "chatd", "--line", endpoint, "--web", endpoint, "--irc", "none"],
            cwd=self.directory,
            env=checkout_env(),
        )

    def assertCleanLog(self, server: TwistdProcess) -> None:
        """
        Nothing went wrong inside C{server}: no traceback in its log.
        """
        log = server.output()
        self.assertNotIn("Traceback", log)
        self.assertNotIn("Unhandled Error", log)


class TLSChatTests(TLSTestCase):
    """
    Line and WebSocket users on TLS doors: the same chat as over TCP.
    """

    def test_line_and_wss_users_chat(self) -> None:
        """
        A TLS line client gets the banner and the nickname prompt, signs on,
        and chats with a C{wss://} client: each sees the other's message.
        """
        server = self.start()
        line_port, web_port = tls_port(server, "line"), tls_port(server, "web")

        alice = TLSLineClient(self, line_port)
        peer = alice.sock.getpeercert()
        assert peer is not None
        self.assertEqual(peer["subject"], ((("commonName", HOSTNAME),),))
        banner = alice.read_until(b"nickname:\r\n")
        self.assertTrue(banner.startswith(b"Welcome to chatd!\r\n"), banner)
        alice.send_line("alice")
        alice.read_until(b"*** Welcome, alice!")

        bob = SecureWebSocketClient(self, web_port)
        self.assertEqual(bob.sign_on("bob")["rooms"], ["#lobby"])
        alice.read_until(b"*** bob has joined #lobby\r\n")

        alice.send_line("hi bob, this is encrypted")
        said = bob.expect("message", text="hi bob, this is encrypted")
        self.assertEqual((said["room"], said["from"]), ("#lobby", "alice"))

        bob.send_json({"type": "say", "room": "#lobby", "text": "hello alice"})
        alice.read_until(b"[#lobby] <bob> hello alice\r\n")

        self.assertCleanLog(server)

    def test_browser_client_over_https(self) -> None:
        """
        The web door serves the browser client over HTTPS to a client that
        offers HTTP/2 and HTTP/1.1 by ALPN, as browsers do, choosing
        HTTP/1.1 (the WebSocket needs it); and the client opens its
        WebSocket with C{wss:} when its page came over HTTPS.
        """
        server = self.start()
        # By IP address: the certificate names 127.0.0.1 too.
        connection = http.client.HTTPSConnection(
            LOCALHOST,
            tls_port(server, "web"),
            timeout=TIMEOUT,
            context=self.certificate.client_context("h2", "http/1.1"),
        )
        self.addCleanup(connection.close)
        pages = {}
        for path in ("/", "/chat.js"):
            connection.request("GET", path)
            response = connection.getresponse()
            pages[path] = (response.status, response.read())
        assert isinstance(connection.sock, ssl.SSLSocket)
        self.assertEqual(connection.sock.selected_alpn_protocol(), "http/1.1")
        self.assertEqual(pages["/"][0], 200)
        self.assertIn(b"<html", pages["/"][1])
        self.assertEqual(pages["/chat.js"][0], 200)
        self.assertIn(b"'https:' ? 'wss:'", pages["/chat.js"][1])
        self.assertCleanLog(server)

    def test_quit_closes_the_tls_connection(self) -> None:
        """
        C{/quit} over TLS says goodbye and then closes the connection, as
        over TCP, instead of leaving the client hanging.
        """
        server = self.start()
        alice = TLSLineClient(self, tls_port(server, "line"))
        alice.sign_on("alice")
        alice.send_line("/quit")
        alice.read_until(b"*** Bye!\r\n")
        self.assertEqual(alice.read_to_eof(), b"")

    def test_sigterm_closes_tls_connections(self) -> None:
        """
        On SIGTERM, TLS clients of both doors get the shutdown notice and
        are closed promptly (none is left for the drain timeout to drop),
        and the process exits cleanly.
        """
        server = self.start()
        alice = TLSLineClient(self, tls_port(server, "line"))
        alice.sign_on("alice")
        bob = SecureWebSocketClient(self, tls_port(server, "web"))
        bob.sign_on("bob")
        alice.read_until(b"*** bob has joined #lobby\r\n")

        server.sigterm()

        self.assertEqual(bob.expect("server"), {"type": "server", "text": "server shutting down"})
        opcode, payload = bob.receive()
        self.assertEqual((opcode, close_code(payload)), (CLOSE, GOING_AWAY), payload)
        self.assertEqual(bob.finish_close(GOING_AWAY), b"")
        alice.read_until(b"*** server shutting down\r\n")
        self.assertEqual(alice.read_to_eof(), b"")
        # Clients answer the server's close_notify by closing, and only then
        # is the server's end of the connection gone.
        alice.close()
        bob.close()
        status = server.wait()
        self.assertTrue(terminated_by_sigterm(status), f"exit status {status}")
        self.assertNotIn("still draining", server.output())
        self.assertCleanLog(server)


class PlainClientTests(TLSTestCase):
    """
    A client that does not speak TLS gets nothing from a TLS door, and does
    not disturb it.
    """

    def test_plain_line_client_gets_no_session(self) -> None:
        """
        A plain-TCP client of the TLS line door gets no prompt and no
        session (its nickname is not taken); its connection is closed, and
        the door goes on serving TLS clients.
        """
        server = self.start()
        line_port = tls_port(server, "line")
        plain = LineClient(self, line_port)
        plain.send_line("mallory")
        try:
            received = plain.read_to_eof()
        except ConnectionResetError:
            received = plain.buffer
        self.assertNotIn(b"nickname", received)
        self.assertNotIn(b"Welcome", received)

        mallory = TLSLineClient(self, line_port)
        mallory.sign_on("mallory")
        mallory.send_line("still here")
        mallory.read_until(b"[#lobby] <mallory> still here\r\n")
        self.assertCleanLog(server)

    def test_plain_http_client_gets_no_page(self) -> None:
        """
        A plain HTTP request to the TLS web door gets no page and no
        WebSocket; the door goes on serving C{wss://} clients.
        """
        server = self.start()
        web_port = tls_port(server, "web")
        with self.assertRaises((http.client.HTTPException, ConnectionError)):
            http_get(web_port, "/")
        with self.assertRaises((AssertionError, ConnectionError)):
            WebSocketClient(self, web_port)

        SecureWebSocketClient(self, web_port).sign_on("bob")
        self.assertCleanLog(server)


class TLSStartupFailureTests(TLSTestCase):
    """
    TLS settings that cannot work stop twistd before it serves anything.
    """

    def assertUsageError(self, door_args: list[str], *fragments: str) -> None:
        """
        twistd refuses C{door_args} with the usage text, an error line that
        holds every one of C{fragments}, a non-zero status and no traceback.
        """
        result = run_twistd(
            ["-n", "--pidfile=", "chatd", *door_args], cwd=self.directory, env=checkout_env()
        )
        output = result.stdout
        self.assertNotEqual(result.returncode, 0, output)
        self.assertIn("Usage: twistd", output)
        self.assertNotIn("Traceback", output)
        last = output.strip().splitlines()[-1]
        for fragment in fragments:
            self.assertIn(fragment, last, output)

    def test_missing_key_file_line(self) -> None:
        """
        A line door whose key file does not exist is refused up front,
        naming the option and the missing file.
        """
        self.certificate.key.unlink()
        self.assertUsageError(
            ["--line", self.certificate.endpoint(), "--web", LOCAL_TCP0],
            "--line",
            "No such file or directory",
            str(self.certificate.key),
        )

    def test_missing_key_file_web(self) -> None:
        """
        A web door whose key file does not exist is refused up front,
        naming the option and the missing file.
        """
        self.certificate.key.unlink()
        self.assertUsageError(
            ["--line", LOCAL_TCP0, "--web", self.certificate.endpoint()],
            "--web",
            "No such file or directory",
            str(self.certificate.key),
        )

    def test_key_of_another_certificate(self) -> None:
        """
        A key that does not belong to the certificate is refused up front.
        """
        other = make_self_signed(scratch_dir(self))
        mismatched = SelfSigned(key=other.key, cert=self.certificate.cert)
        self.assertUsageError(
            ["--line", mismatched.endpoint(), "--web", "none"],
            "--line",
            "do not match",
        )
