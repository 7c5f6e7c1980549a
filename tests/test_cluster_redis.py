"""
Cluster mode for real: a real C{redis-server} on an ephemeral port and
several real C{twistd chatd --redis} nodes, with telnet-style and WebSocket
clients spread over them.

Without C{redis-server} these tests skip, saying why; with
C{CHATD_REQUIRE_REDIS=1} (as in CI) they fail instead.
"""

from __future__ import annotations

import re
import threading
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.support.processes import (
    LOCAL_TCP0,
    TIMEOUT,
    LineClient,
    TwistdProcess,
    WebSocketClient,
    checkout_env,
    http_get,
    scratch_dir,
    terminated_by_sigterm,
)
from tests.support.redisserver import redis_server

JOINED = re.compile(r"Node \w+ joined the cluster")


class ClusterCase(SynchronousTestCase):
    aof = False

    def setUp(self) -> None:
        self.redis = redis_server(self, aof=self.aof)

    def node(self, *args: str) -> TwistdProcess:
        home = scratch_dir(self)
        process = TwistdProcess(
            self,
            [
                "-n",
                "--pidfile=",
                "chatd",
                "--redis",
                self.redis.url,
                "--line",
                LOCAL_TCP0,
                "--web",
                LOCAL_TCP0,
                "--irc",
                "none",
                "--flood-rate",
                "0",
                *args,
            ],
            cwd=home,
            env=checkout_env(),
        )
        process.wait_for_log(JOINED)
        return process

    def line(self, node: TwistdProcess, nick: str) -> LineClient:
        client = LineClient(self, node.port("line"))
        try:
            client.sign_on(nick)
            client.read_until(b"#lobby (")
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- node log ---\n{node.output()}") from None
        return client

    def ws(self, node: TwistdProcess, nick: str) -> WebSocketClient:
        client = WebSocketClient(self, node.port("web"))
        client.sign_on(nick)
        return client


class CrossNodeTests(ClusterCase):
    def test_three_nodes_one_server(self) -> None:
        a, b, c = self.node(), self.node(), self.node()
        alice = self.line(a, "alice")
        bob = self.ws(b, "bob")
        carol = self.line(c, "carol")

        # One nickname per name, cluster-wide.
        clash = LineClient(self, b.port("line"))
        clash.read_until(b"nickname:\r\n")
        clash.send_line("ALICE")
        clash.read_until(b"!!! The nickname ALICE is already in use")

        alice.send_line("/join #den")
        alice.read_until(b"Users in #den (1): @alice")
        bob.send_json({"type": "join", "room": "#den"})
        bob.expect("users", room="#den", nicks=["alice", "bob"])
        carol.send_line("/join #den")
        carol.read_until(b"Users in #den (3): @alice, bob, carol")

        alice.send_line("hello-everyone")
        said = bob.expect("message", room="#den", text="hello-everyone")
        self.assertEqual(said["from"], "alice")
        carol.read_until(b"[#den] <alice> hello-everyone\r\n")

        bob.send_json({"type": "say", "room": "#den", "text": "hi-from-b"})
        alice.read_until(b"[#den] <bob> hi-from-b\r\n")
        carol.read_until(b"[#den] <bob> hi-from-b\r\n")

        # Private messages both ways across nodes.
        carol.send_line("/msg bob psst")
        self.assertEqual(bob.expect("private", text="psst")["from"], "carol")
        bob.send_json({"type": "msg", "to": "carol", "text": "yes?"})
        carol.read_until(b"*bob* yes?\r\n")

        # who and rooms are cluster-wide.
        carol.send_line("/rooms")
        carol.read_until(b"#den  3 users")
        bob.send_json({"type": "who", "room": "#lobby"})
        bob.expect("users", room="#lobby", nicks=["alice", "bob", "carol"])

        # History said on one node is read on another.
        self.assertEqual(history(bob, "#den", until="hi-from-b"), ["hello-everyone", "hi-from-b"])

        # Moderation reaches members on every node.
        alice.send_line("/kick carol enough")
        carol.read_until(b"kicked by alice: enough")
        bob.expect("part", room="#den", nick="carol")

    def test_accounts_are_cluster_wide(self) -> None:
        a, b = self.node(), self.node()
        alice = self.line(a, "alice")
        alice.send_line("/register s3cret-pw")
        alice.read_until(b"you are identified\r\n")
        alice.send_line("/quit")
        alice.read_to_eof()

        guest = LineClient(self, b.port("line"))
        guest.read_until(b"nickname:\r\n")
        guest.send_line("alice")
        guest.read_until(b"registered")
        guest.send_line("alice s3cret-pw")
        guest.read_until(b"*** Welcome, alice!")

    def test_one_order_for_concurrent_senders_on_different_nodes(self) -> None:
        a, b = self.node(), self.node()
        readers = [self.ws(a, "reada"), self.ws(b, "readb")]
        senders = [self.line(a, "senda"), self.line(b, "sendb")]
        count = 100

        def send(client: LineClient, name: str) -> None:
            burst = b"".join(f"{name}-{i}\r\n".encode() for i in range(count))
            client.sock.sendall(burst)

        threads = [
            threading.Thread(target=send, args=(s, n))
            for s, n in zip(senders, ("senda", "sendb"), strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seen = []
        for reader in readers:
            messages = []
            while len(messages) < 2 * count:
                frame = reader.expect("message", timeout=30)
                messages.append((frame["from"], frame["text"], frame["id"]))
            seen.append(messages)
        # Every member, on either node, saw every message once, in one
        # order, with ids in that order.
        self.assertEqual(seen[0], seen[1])
        self.assertEqual(len(set(seen[0])), 2 * count)
        ids = [id for _, _, id in seen[0]]
        self.assertEqual(ids, sorted(ids))
        for name in ("senda", "sendb"):
            mine = [text for who, text, _ in seen[0] if who == name]
            self.assertEqual(mine, [f"{name}-{i}" for i in range(count)])


class FaultTests(ClusterCase):
    aof = True

    def test_a_killed_node_s_users_are_gone_within_15_s(self) -> None:
        a, b = self.node(), self.node()
        alice = self.line(a, "alice")
        self.line(b, "bob")
        alice.read_until(b"bob has joined #lobby")
        started = time.monotonic()
        b.kill()
        alice.read_until(b"bob has left #lobby (connection lost)", timeout=15)
        self.assertLess(time.monotonic() - started, 15)
        self.line(a, "bob")  # the nickname is free again

    def test_redis_restart_is_survived(self) -> None:
        a, b = self.node(), self.node()
        alice = self.line(a, "alice")
        bob = self.ws(b, "bob")
        alice.send_line("before-outage")
        bob.expect("message", text="before-outage")
        time.sleep(1.2)  # the AOF is fsynced every second

        self.redis.stop()
        alice.read_until(b"!!! Cross-node delivery is interrupted", timeout=5)
        bob.expect("error", code="degraded", timeout=5)
        alice.send_line("during-outage")
        alice.read_until(b"!!! Cross-node delivery is interrupted; try again shortly")

        self.redis.restart()
        alice.read_until(b"*** Cross-node delivery is back", timeout=10)
        bob.expect("server", text="Cross-node delivery is back", timeout=10)
        alice.send_line("after-outage")
        bob.expect("message", text="after-outage")
        # alice's node stores what it accepted within its commit window.
        self.assertEqual(
            history(bob, "#lobby", until="after-outage"), ["before-outage", "after-outage"]
        )
        # Nobody was reaped meanwhile: both are still there.
        bob.send_json({"type": "who", "room": "#lobby"})
        bob.expect("users", room="#lobby", nicks=["alice", "bob"])

    def test_a_clean_stop_tells_the_others(self) -> None:
        a, b = self.node(), self.node()
        alice = self.line(a, "alice")
        self.line(b, "bob")
        alice.read_until(b"bob has joined #lobby")
        b.sigterm()
        alice.read_until(b"bob has left #lobby (server shutting down)", timeout=5)
        self.assertTrue(terminated_by_sigterm(b.wait()) or b.wait() == 0)


class StartOrderTests(SynchronousTestCase):
    def test_a_node_started_before_its_redis_joins_when_it_comes(self) -> None:
        """
        A node whose Redis is not up yet listens, answers /healthz, says
        why it is not ready, refuses sign-ons with a clear error (the
        connections stay up: both one that was waiting when its first
        attempt failed and one that came after), keeps trying, and joins
        once Redis starts.
        """
        redis = redis_server(self)
        redis.stop()  # its port is ours, and nobody answers on it
        node = TwistdProcess(
            self,
            [
                "-n",
                "--pidfile=",
                "chatd",
                "--redis",
                redis.url,
                "--line",
                LOCAL_TCP0,
                "--web",
                LOCAL_TCP0,
                "--irc",
                "none",
            ],
            cwd=scratch_dir(self),
            env=checkout_env(),
        )
        web = node.port("web")
        # Most likely while the first attempt is still waiting for Redis.
        line = LineClient(self, node.port("line"))
        line.read_until(b"nickname:\r\n")
        line.send_line("early")
        self.assertEqual(http_get(web, "/healthz")[0], 200)
        line.read_until(
            b"!!! Not ready: the server cannot reach its cluster yet; try again in a moment\r\n"
            b"Choose a nickname:\r\n"
        )
        self.assertEqual(
            readiness(web, until="cannot reach"), (503, "cannot reach the cluster's Redis")
        )

        browser = WebSocketClient(self, web)
        browser.send_json({"type": "hello", "nick": "webby"})
        refusal = browser.expect("error", code="degraded")
        self.assertIn("Not ready", refusal["message"])
        line.send_line("again")
        line.read_until(b"!!! Not ready: the server cannot reach its cluster yet")
        line.read_until(b"Choose a nickname:\r\n")

        redis.start()
        started = time.monotonic()
        self.assertEqual(readiness(web, until="ready"), (200, "ready"), node.output())
        self.assertLess(time.monotonic() - started, 8)

        # The same connections, trying again, get in and talk.
        line.send_line("early")
        line.read_until(b"*** Welcome, early!")
        browser.sign_on("webby")
        line.send_line("hello-from-telnet")
        said = browser.expect("message", room="#lobby", text="hello-from-telnet")
        self.assertEqual(said["from"], "early")
        browser.send_json({"type": "say", "room": "#lobby", "text": "hello-from-the-web"})
        line.read_until(b"[#lobby] <webby> hello-from-the-web\r\n")
        # The failure was logged once, not at every attempt.
        output = node.output()
        self.assertEqual(output.count("could not start; trying again"), 1, output)
        self.assertIn("started after", output)


def readiness(port: int, until: str) -> tuple[int, str]:
    """
    C{/readyz}'s status and text, asked again until the text has C{until}
    (or L{TIMEOUT} has passed).
    """
    deadline = time.monotonic() + TIMEOUT
    while True:
        status, _, body = http_get(port, "/readyz")
        text = body.decode().strip()
        if until in text or time.monotonic() > deadline:
            return status, text
        time.sleep(0.05)


def history(client: WebSocketClient, room: str, until: str) -> list[str]:
    """
    The texts of C{room}'s history, asked again until it has C{until}.
    """
    deadline = time.monotonic() + 5
    while True:
        client.send_json({"type": "history", "room": room})
        texts = [m["text"] for m in client.expect("history", room=room)["messages"]]
        if until in texts or time.monotonic() > deadline:
            return texts
        time.sleep(0.1)
