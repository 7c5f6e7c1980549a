"""
The IRC door in a cluster, for real: a real C{redis-server} on an ephemeral
port and two real C{twistd chatd --redis} nodes, an IRC client of node A's
IRC door talking with WebSocket and telnet-style users of node B.

Without C{redis-server} these tests skip, saying why; with
C{CHATD_REQUIRE_REDIS=1} (as in CI) they fail instead.
"""

from __future__ import annotations

import re

from twisted.trial.unittest import SynchronousTestCase

from tests.support.processes import (
    LOCAL_TCP0,
    TIMEOUT,
    LineClient,
    TwistdProcess,
    _Connection,
    checkout_env,
    scratch_dir,
)
from tests.support.redisserver import redis_server
from tests.test_cluster_redis import ClusterCase, readiness

REMOTE = "chatd"
"""The host part of the mask of a user connected to another node."""


class IrcClient(_Connection):
    """
    A raw IRC client, as C{nc} would be: lines out, lines in, each read
    with a deadline, the server's C{PING}s answered on the way.

    @ivar seen: every line read so far, for failure messages.
    """

    def __init__(self, case: SynchronousTestCase, port: int) -> None:
        super().__init__(case, port)
        self.seen: list[str] = []

    def send_line(self, text: str) -> None:
        self.sock.sendall(text.encode("utf-8") + b"\r\n")

    def line(self, timeout: float = TIMEOUT) -> str:
        """
        The next line from the server (without its CR LF).
        """
        try:
            raw = self.read_until(b"\r\n", timeout)
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- lines so far ---\n" + "\n".join(self.seen)) from None
        text = raw[:-2].decode("utf-8")
        self.seen.append(text)
        if text.startswith("PING "):
            self.send_line("PONG " + text[5:])
        return text

    def expect(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        """
        Read lines until one matches the regular expression C{pattern}
        (from its start) and return the match.
        """
        return self.lines_until(pattern, timeout)[1]

    def lines_until(
        self, pattern: str, timeout: float = TIMEOUT
    ) -> tuple[list[str], re.Match[str]]:
        """
        Every line read until one matches C{pattern} (that one included),
        and its match.
        """
        wanted = re.compile(pattern)
        lines = []
        while True:
            text = self.line(timeout)
            lines.append(text)
            match = wanted.match(text)
            if match is not None:
                return lines, match

    def sync(self, token: str) -> list[str]:
        """
        Every line that arrives before the node answers C{PING token}: what
        the node had to send when it read the C{PING}.
        """
        self.send_line(f"PING :{token}")
        lines, _ = self.lines_until(rf":\S+ PONG \S+ :?{re.escape(token)}$")
        return lines[:-1]

    def register(self, nick: str) -> None:
        """
        Register as C{nick} (C{USER nick}) and read the welcome to its end
        (the end of the message of the day, or 422).
        """
        self.send_line(f"NICK {nick}")
        self.send_line(f"USER {nick} 0 * :{nick} the tester")
        self.expect(rf":\S+ 001 {nick} ")
        self.expect(rf":\S+ (376|422) {nick} ")


class IrcAcrossNodesTests(ClusterCase):
    """
    An IRC user on node A and a WebSocket user on node B share rooms,
    messages, actions, private messages and topics, through Redis.
    """

    def irc_node(self) -> TwistdProcess:
        return self.node("--irc", LOCAL_TCP0, "--irc-server-name", "irc.test")

    def irc(self, node: TwistdProcess, nick: str) -> IrcClient:
        client = IrcClient(self, node.port("irc"))
        try:
            client.register(nick)
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- node log ---\n{node.output()}") from None
        return client

    def assert_lobby_without(self, client: LineClient, nick: str) -> None:
        """
        C{/who #lobby} and C{/rooms}, asked by C{client}, do not list C{nick}
        (nor, for C{/rooms}, count it).
        """
        client.send_line("/who #lobby")
        client.read_until(b"Users in #lobby (")
        users = client.read_until(b"\r\n").decode()
        self.assertNotIn(nick, users.split(": ", 1)[1].replace(",", " ").split())

    def test_irc_and_web_users_on_two_nodes(self) -> None:
        a, b = self.irc_node(), self.irc_node()
        ann = self.irc(a, "ann")
        bea = self.ws(b, "bea")
        # The IRC user is in no room, on either node: not in #lobby.
        bea.send_json({"type": "who", "room": "#lobby"})
        bea.expect("users", room="#lobby", nicks=["bea"])
        bea.send_json({"type": "rooms"})
        rooms = {r["room"]: r["users"] for r in bea.expect("rooms")["rooms"]}
        self.assertEqual(rooms.get("#lobby"), 1, rooms)
        watcher = self.line(b, "cy")
        watcher.send_line("/who #lobby")
        watcher.read_until(b"Users in #lobby (2): bea, cy\r\n")
        local = self.line(a, "dee")
        local.send_line("/who #lobby")
        local.read_until(b"Users in #lobby (3): bea, cy, dee\r\n")
        ann.send_line("NAMES #lobby")
        names = ann.expect(r":irc\.test 353 ann = #lobby :(.*)$").group(1).split()
        self.assertEqual(sorted(names), ["bea", "cy", "dee"])
        self.assertNotIn(":ann!", "\n".join(ann.sync("lobby")))

        # Both join #den (and #nook), each seeing the other.
        ann.send_line("JOIN #den,#nook")
        ann.expect(r":ann!~ann@irc\.chatd JOIN :?#den$")
        ann.expect(r":irc\.test 366 ann #nook ")
        bea.send_json({"type": "join", "room": "#den"})
        bea.expect("users", room="#den", nicks=["ann", "bea"])
        bea.send_json({"type": "join", "room": "#nook"})
        bea.expect("users", room="#nook", nicks=["ann", "bea"])
        ann.expect(rf":bea!bea@{REMOTE} JOIN :?#den$")
        ann.expect(rf":bea!bea@{REMOTE} JOIN :?#nook$")

        # Messages both ways.
        bea.send_json({"type": "say", "room": "#den", "text": "hi"})
        ann.expect(rf":bea!bea@{REMOTE} PRIVMSG #den :hi$")
        ann.send_line("PRIVMSG #den :hello from irc")
        said = bea.expect("message", room="#den", text="hello from irc")
        self.assertEqual(said["from"], "ann")
        self.assertFalse(said.get("action"))

        # /me is a CTCP ACTION, both ways.
        bea.send_json({"type": "me", "room": "#den", "text": "waves"})
        ann.expect(rf":bea!bea@{REMOTE} PRIVMSG #den :\x01ACTION waves\x01$")
        ann.send_line("PRIVMSG #den :\x01ACTION nods\x01")
        action = bea.expect("message", room="#den", text="nods")
        self.assertEqual((action["from"], action.get("action")), ("ann", True))

        # Private messages both ways.
        bea.send_json({"type": "msg", "to": "ann", "text": "psst"})
        ann.expect(rf":bea!bea@{REMOTE} PRIVMSG ann :psst$")
        ann.send_line("PRIVMSG bea :yes?")
        private = bea.expect("private", text="yes?")
        self.assertEqual((private["from"], private["to"]), ("ann", "bea"))

        # A topic set on the web is a TOPIC line on IRC.
        bea.send_json({"type": "topic", "room": "#den", "text": "all about dens"})
        bea.expect("topic", room="#den", topic="all about dens")
        ann.expect(rf":bea!bea@{REMOTE} TOPIC #den :all about dens$")
        ann.send_line("TOPIC #den")
        ann.expect(r":irc\.test 332 ann #den :all about dens$")
        ann.expect(rf":irc\.test 333 ann #den bea!bea@{REMOTE} \d+$")

        # Still in no #lobby, seen from node B.
        self.assert_lobby_without(watcher, "ann")
        watcher.send_line("/rooms")
        listing = watcher.read_until(b"#nook").decode() + watcher.read_until(b"\r\n").decode()
        self.assertRegex(listing, r"#lobby\s+3 users")
        self.assertRegex(listing, r"#den\s+2 users")

        # The web user's departure, from two shared rooms, is one QUIT.
        bea.close()
        before, quit = ann.lines_until(rf":bea!bea@{REMOTE} QUIT :(.*)$")
        after = ann.sync("after-quit")
        self.assertEqual(
            [t for t in before + after if " QUIT " in t or " PART " in t], [quit.string]
        )
        watcher.read_until(b"bea has left #lobby")
        ann.send_line("NAMES #den")
        self.assertEqual(ann.expect(r":irc\.test 353 ann = #den :(.*)$").group(1), "@ann")

    def test_names_and_whois_of_a_remote_user(self) -> None:
        a, b = self.irc_node(), self.irc_node()
        ann = self.irc(a, "ann")
        ann.send_line("JOIN #den")
        ann.expect(r":irc\.test 366 ann #den ")
        bea = self.ws(b, "bea")
        bea.send_json({"type": "join", "room": "#den"})
        bea.expect("users", room="#den", nicks=["ann", "bea"])
        ann.expect(rf":bea!bea@{REMOTE} JOIN :?#den$")

        # NAMES: the remote user by its nickname alone.
        ann.send_line("NAMES #den")
        names = ann.expect(r":irc\.test 353 ann = #den :(.*)$").group(1)
        self.assertEqual(sorted(names.split()), ["@ann", "bea"])
        ann.expect(r":irc\.test 366 ann #den :End of /NAMES list$")

        # WHOIS: a user of another node, at host "chatd".
        ann.send_line("WHOIS bea")
        whois, _ = ann.lines_until(r":irc\.test 318 ann bea ")
        self.assertRegex(whois[0], rf"^:irc\.test 311 ann bea bea {REMOTE} \* :bea$")
        self.assertIn(":irc.test 319 ann bea :#lobby #den", whois)
        self.assertIn(":irc.test 312 ann bea irc.test :chatd cluster", whois)
        # No idle time: only this node's IRC users have one.
        self.assertFalse([t for t in whois if " 317 " in t], whois)

        # And the other way round, from node B: a remote IRC user, in #den.
        bea.send_json({"type": "who", "room": "#den"})
        bea.expect("users", room="#den", nicks=["ann", "bea"])


class IrcBeforeRedisTests(SynchronousTestCase):
    def test_irc_sign_on_before_redis_is_refused_then_works(self) -> None:
        """
        A node started before its Redis refuses an IRC sign-on with
        C{ERROR :Not ready...} (IRC's way: the connection then closes; the
        client reconnects) instead of a welcome; once Redis is up, IRC
        clients register and talk.
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
                "none",
                "--web",
                LOCAL_TCP0,
                "--irc",
                LOCAL_TCP0,
                "--irc-server-name",
                "irc.test",
            ],
            cwd=scratch_dir(self),
            env=checkout_env(),
        )
        web = node.port("web")
        self.assertEqual(
            readiness(web, until="cannot reach"), (503, "cannot reach the cluster's Redis")
        )
        early = IrcClient(self, node.port("irc"))
        early.send_line("NICK early")
        early.send_line("USER early 0 * :early")
        refusal = early.expect(r"(ERROR|:\S+ \d{3}) ")
        self.assertEqual(
            refusal.string,
            "ERROR :Not ready: the server cannot reach its cluster yet; try again in a moment",
        )
        self.assertEqual(early.read_to_eof(), b"")

        redis.start()
        self.assertEqual(readiness(web, until="ready"), (200, "ready"), node.output())
        early = IrcClient(self, node.port("irc"))
        early.register("early")
        early.send_line("JOIN #den")
        early.expect(r":irc\.test 366 early #den ")
        late = IrcClient(self, node.port("irc"))
        late.register("late")
        late.send_line("JOIN #den")
        late.expect(r":irc\.test 366 late #den ")
        early.send_line("PRIVMSG #den :we made it")
        late.expect(r":early!~early@irc\.chatd PRIVMSG #den :we made it$")
