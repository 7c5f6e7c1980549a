# -*- test-case-name: tests.test_twistd -*-
"""
Integration tests of C{twistd -n chatd} run from this checkout as a real
process, talked to over real sockets on 127.0.0.1.

Each server runs in a temporary directory (so C{twistd.pid} and logs never
land in the checkout) with C{PYTHONPATH} set to the checkout, so that the
checkout's code and plugin are what run.
"""

from __future__ import annotations

import time

from twisted.trial.unittest import SynchronousTestCase

from chatd.testing import CLOSE
from tests.support.processes import (
    LOCAL_TCP0,
    LineClient,
    TwistdProcess,
    WebSocketClient,
    busy_port,
    checkout_env,
    close_code,
    http_get,
    run_twistd,
    scratch_dir,
    terminated_by_sigterm,
)

GOING_AWAY = 1001


class RunningServerTests(SynchronousTestCase):
    """
    A started server: its doors, its users, and its shutdown on SIGTERM.
    """

    def start(self, *door_args: str) -> TwistdProcess:
        """
        Start C{twistd -n --pidfile= chatd} with C{door_args}.
        """
        return TwistdProcess(
            self,
            ["-n", "--pidfile=", "chatd", "--irc", "none", *door_args],
            cwd=scratch_dir(self),
            env=checkout_env(),
        )

    def assertStopsCleanly(self, server: TwistdProcess) -> None:
        """
        SIGTERM stops C{server} promptly, with twistd's usual status and no
        traceback in its log.
        """
        status = server.terminate()
        self.assertTrue(terminated_by_sigterm(status), f"exit status {status}")
        self.assertNotIn("Traceback", server.output())

    def test_line_and_websocket_users_chat_in_lobby(self) -> None:
        """
        With both doors on free ports, a line user and a WebSocket user meet
        in #lobby and each sees what the other says, from either door.
        """
        server = self.start("--line", LOCAL_TCP0, "--web", LOCAL_TCP0)
        line_port, web_port = server.port("line"), server.port("web")
        self.assertNotEqual(line_port, web_port)

        alice = LineClient(self, line_port)
        alice.sign_on("alice")
        bob = WebSocketClient(self, web_port)
        welcome = bob.sign_on("bob")
        self.assertEqual(welcome["rooms"], ["#lobby"])
        alice.read_until(b"*** bob has joined #lobby\r\n")

        alice.send_line("hi bob")
        said = bob.expect("message", **{"from": "alice"})
        self.assertEqual((said["room"], said["text"]), ("#lobby", "hi bob"))
        alice.read_until(b"[#lobby] <alice> hi bob\r\n")

        bob.send_json({"type": "say", "room": "#lobby", "text": "hello alice"})
        alice.read_until(b"[#lobby] <bob> hello alice\r\n")
        said = bob.expect("message", **{"from": "bob"})
        self.assertEqual((said["room"], said["text"]), ("#lobby", "hello alice"))

        # One user list across doors: the line user's nick is taken for the web.
        carol = WebSocketClient(self, web_port)
        carol.send_json({"type": "hello", "nick": "ALICE"})
        self.assertEqual(carol.expect("error")["code"], "nick_taken")

        self.assertStopsCleanly(server)

    def test_sigterm_tells_every_connection_and_exits(self) -> None:
        """
        On SIGTERM every line client gets the shutdown notice and then end
        of file, every WebSocket client gets a C{server} frame and then a
        close with code 1001, and the process exits promptly and cleanly.
        """
        server = self.start("--line", LOCAL_TCP0, "--web", LOCAL_TCP0)
        line_port, web_port = server.port("line"), server.port("web")
        named = LineClient(self, line_port)
        named.sign_on("alice")
        anonymous = LineClient(self, line_port)
        anonymous.read_until(b"nickname:\r\n")
        websockets = [WebSocketClient(self, web_port), WebSocketClient(self, web_port)]
        websockets[0].sign_on("bob")
        # Both WebSocket connections are open once the second one answers.
        websockets[1].send_json({"type": "rooms"})
        websockets[1].expect("error", code="hello_first")

        server.sigterm()

        for client in (named, anonymous):
            client.read_until(b"*** server shutting down\r\n")
            self.assertEqual(client.read_to_eof(), b"")
        for ws in websockets:
            self.assertEqual(
                ws.expect("server"), {"type": "server", "text": "server shutting down"}
            )
            opcode, payload = ws.receive()
            self.assertEqual((opcode, close_code(payload)), (CLOSE, GOING_AWAY), payload)
            self.assertEqual(ws.finish_close(GOING_AWAY), b"")
        status = server.wait()
        self.assertTrue(terminated_by_sigterm(status), f"exit status {status}")
        log = server.output()
        self.assertNotIn("Traceback", log)
        # Every connection closed in time; none was left for the door's timeout.
        self.assertNotIn("still draining", log)

    def test_web_none_runs_the_line_door_only(self) -> None:
        """
        C{--web none} serves the line door and listens for nothing else.
        """
        server = self.start("--line", LOCAL_TCP0, "--web", "none")
        client = LineClient(self, server.port("line"))
        client.sign_on("alice")
        # The reactor is running, so every port there is has been bound.
        self.assertFalse(server.logged("web"), server.output())
        self.assertStopsCleanly(server)

    def test_line_none_runs_the_web_door_only(self) -> None:
        """
        C{--line none} serves the web door (page and WebSocket) and listens
        for nothing else.
        """
        server = self.start("--line", "none", "--web", LOCAL_TCP0)
        web_port = server.port("web")
        status, headers, body = http_get(web_port, "/")
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("text/html"), headers)
        self.assertIn(b"<html", body)
        WebSocketClient(self, web_port).sign_on("bob")
        self.assertFalse(server.logged("line"), server.output())
        self.assertStopsCleanly(server)

    def test_connection_cap_per_address_across_doors(self) -> None:
        """
        With C{--max-per-ip 2} and 127.0.0.1 not exempt, a third chat
        connection from it is refused with a reason, on either door, until
        one of the first two closes; loading the page is no chat connection
        and still works.
        """
        server = self.start(
            "--line", LOCAL_TCP0, "--web", LOCAL_TCP0, "--max-per-ip", "2", "--exempt", "none"
        )  # fmt: skip
        line_port, web_port = server.port("line"), server.port("web")
        first = LineClient(self, line_port)
        first.sign_on("alice")
        WebSocketClient(self, web_port).sign_on("bob")
        refused = LineClient(self, line_port)
        self.assertEqual(
            refused.read_to_eof(),
            b"!!! Connection refused: too many connections from your address; try again later\r\n",
        )
        with self.assertRaises(AssertionError) as refusal:
            WebSocketClient(self, web_port)
        self.assertIn("HTTP/1.1 503", str(refusal.exception))
        self.assertIn("too many connections", str(refusal.exception))
        self.assertEqual(http_get(web_port, "/")[0], 200)
        first.close()
        # The server frees the place when it sees the close; allow it a moment.
        for _ in range(50):
            client = LineClient(self, line_port)
            if client.read_until(b"\r\n").startswith(b"Welcome"):
                break
            time.sleep(0.05)
        else:
            self.fail("the closed connection's place was never freed")
        self.assertStopsCleanly(server)

    def test_localhost_never_refused(self) -> None:
        """
        By default this machine is exempt: a developer reloading the page
        and opening many sessions from 127.0.0.1 is never refused, even
        with tight limits (issue #13).
        """
        server = self.start(
            "--line", LOCAL_TCP0, "--web", LOCAL_TCP0, "--max-per-ip", "1",
            "--connect-rate", "2/600", "--max-http-per-ip", "1",
        )  # fmt: skip
        line_port, web_port = server.port("line"), server.port("web")
        for _ in range(10):
            self.assertEqual(http_get(web_port, "/")[0], 200)
        held = [WebSocketClient(self, web_port) for _ in range(5)]
        lines = [LineClient(self, line_port) for _ in range(5)]
        for i, client in enumerate(lines):
            client.sign_on(f"dev{i}")
        self.assertEqual(len(held), 5)
        self.assertStopsCleanly(server)


class StartupFailureTests(SynchronousTestCase):
    """
    Options or ports that cannot work stop twistd before it serves anything.
    """

    def run_chatd(self, *door_args: str) -> tuple[int, str]:
        """
        Run C{twistd -n --pidfile= chatd} with C{door_args} until it exits;
        return its status and output.
        """
        result = run_twistd(
            ["-n", "--pidfile=", "chatd", "--irc", "none", *door_args],
            cwd=scratch_dir(self),
            env=checkout_env(),
        )
        return result.returncode, result.stdout

    def assertUsageError(self, door_args: list[str], *fragments: str) -> None:
        """
        twistd refuses C{door_args} with a non-zero status, no traceback and
        two lines: the synopsis with a pointer to C{--help} (not the whole
        help text), then the error, holding every one of C{fragments}.
        """
        status, output = self.run_chatd(*door_args)
        self.assertNotEqual(status, 0, output)
        self.assertNotIn("Traceback", output)
        lines = output.strip().splitlines()
        self.assertEqual(len(lines), 2, output)
        synopsis, error = lines
        self.assertTrue(synopsis.startswith("Usage: twistd [options] chatd [options]"), output)
        self.assertIn("'twistd chatd --help'", synopsis)
        self.assertTrue(error.startswith("chatd: "), output)
        for fragment in fragments:
            self.assertIn(fragment, error, output)

    def test_unknown_option(self) -> None:
        """
        An option chatd does not have is refused the same way, naming it.
        """
        self.assertUsageError(["--lien", LOCAL_TCP0], "--lien")

    def test_version(self) -> None:
        """
        C{twistd chatd --version} shows chatd's version (and Twisted's).
        """
        status, output = self.run_chatd("--version")
        self.assertEqual(status, 0, output)
        self.assertEqual(len(output.strip().splitlines()), 1, output)
        self.assertRegex(output, r"^chatd \d+\.\d+\S* \(Twisted \d+\.\d+\S*, Python \S+\)$")

    def test_every_door_off(self) -> None:
        """
        With every door off nobody could connect, so chatd refuses to start.
        """
        self.assertUsageError(["--line", "none", "--web", "none", "--irc", "none"], "off")

    def test_bad_line_endpoint(self) -> None:
        """
        A line door address that is no endpoint description is refused up
        front, naming the option and the value.
        """
        self.assertUsageError(["--line", "bogus:1", "--web", LOCAL_TCP0], "--line", "bogus:1")

    def test_bad_web_endpoint(self) -> None:
        """
        A web door address that is no endpoint description is refused up
        front, naming the option and the value.
        """
        self.assertUsageError(["--line", LOCAL_TCP0, "--web", "bogus:1"], "--web", "bogus:1")

    def assertCannotListen(self, door_args: list[str], expected: str) -> str:
        """
        Starting with C{door_args} exits with status 1, no traceback and
        one line saying which door cannot listen where, and why: the
        C{expected} line (after the log prefix).  Returns the output.
        """
        status, output = self.run_chatd(*door_args)
        self.assertEqual(status, 1, output)
        self.assertNotIn("Traceback", output)
        (line,) = [line for line in output.splitlines() if "cannot listen" in line]
        self.assertTrue(line.endswith(f" {expected}"), output)
        self.assertEqual(output.strip().splitlines()[-1], line, output)
        return output

    def test_line_port_in_use(self) -> None:
        """
        A busy line door port makes startup fail in one line.
        """
        door = f"tcp:{busy_port(self)}:interface=127.0.0.1"
        self.assertCannotListen(
            ["--line", door, "--web", LOCAL_TCP0],
            f"chatd: cannot listen for the line door on {door}: Address already in use",
        )

    def test_web_port_in_use(self) -> None:
        """
        A busy web door port makes startup fail in one line, after the
        line door has started listening.
        """
        door = f"tcp:{busy_port(self)}:interface=127.0.0.1"
        output = self.assertCannotListen(
            ["--line", LOCAL_TCP0, "--web", door],
            f"chatd: cannot listen for the web door on {door}: Address already in use",
        )
        self.assertIn("LineDoor starting on", output)

    def test_worker_pool_port_in_use(self) -> None:
        """
        A C{--workers} pool, which opens the shared ports itself, fails in
        one line too when a port is busy (before it ever needs its Redis).
        """
        door = f"tcp:{busy_port(self)}:interface=127.0.0.1"
        self.assertCannotListen(
            ["--redis", "redis://127.0.0.1:1/0", "--workers", "2", "--line", door, "--web", "none"],
            f"chatd: cannot listen for the line door on {door}: Address already in use",
        )

    def test_pid_file_removed(self) -> None:
        """
        With twistd's default C{--pidfile}, a busy port leaves no
        C{twistd.pid} behind, as any other failure to start.
        """
        cwd = scratch_dir(self)
        door = f"tcp:{busy_port(self)}:interface=127.0.0.1"
        result = run_twistd(
            ["-n", "chatd", "--db", ":memory:", "--line", door, "--web", "none", "--irc", "none"],
            cwd=cwd,
            env=checkout_env(),
        )
        self.assertEqual(result.returncode, 1, result.stdout)
        self.assertIn("Address already in use", result.stdout)
        self.assertNotIn("Traceback", result.stdout)
        self.assertFalse((cwd / "twistd.pid").exists())

    def test_missing_socket_directory(self) -> None:
        """
        A unix socket in a directory that does not exist (the README's
        C{/run/chatd/...} before anyone made C{/run/chatd}): one line naming
        the directory, for the admin console as for a door.
        """
        missing = scratch_dir(self) / "run" / "chatd"
        admin = f"unix:{missing}/admin.sock"
        self.assertCannotListen(
            ["--db", ":memory:", "--line", LOCAL_TCP0, "--web", "none", "--admin", admin],
            f"chatd: cannot listen for the admin console on {admin}: "
            f"the directory {missing} does not exist; create it first",
        )
        line = f"unix:{missing}/line.sock:lockfile=0"
        self.assertCannotListen(
            ["--db", ":memory:", "--line", line, "--web", "none"],
            f"chatd: cannot listen for the line door on {line}: "
            f"the directory {missing} does not exist; create it first",
        )
