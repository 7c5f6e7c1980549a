"""
Real terminal clients of the line door (issue #12): GNU inetutils telnet,
netkit telnet (Debian's C{telnet-ssl}), BusyBox telnet, PuTTY's C{plink},
C{nc} and C{socat}, each run on a pseudo-terminal against a real
C{twistd -n chatd}, typed at as a person would, with a WebSocket user in
the same room checking that the room got exactly the text typed: UTF-8
intact, no terminal control in it, no session gone deaf after Ctrl-C or
Ctrl-Z, and keys that do what people expect.

The clients are Debian packages (C{inetutils-telnet}, C{telnet-ssl},
C{busybox}, C{putty-tools}, C{netcat-openbsd}, C{socat}), which C{.ci/run}
installs.  A test whose client is missing is skipped, saying so, unless
C{CHATD_REQUIRE_CLIENTS=1} (which C{.ci/run} sets) or C{CI=true}: there it
fails.

What the clients do with keys (and so what each test types):

  - inetutils and netkit agree to TRANSMIT-BINARY and LINEMODE with
    TRAPSIG: the terminal edits the line, and Ctrl-C, Ctrl-Z and Ctrl-\\
    reach the client as signals, which it sends on as IAC IP, SUSP and
    ABORT (or BRK), each followed by DO TIMING-MARK; until that is answered
    the client throws away all it receives.  Ctrl-D on an empty line is
    IAC EOF, which chatd takes as /quit.
  - PuTTY's plink agrees to binary only and leaves the terminal as it is:
    Ctrl-C and Ctrl-Z would kill or stop plink itself, so the tests do not
    type them; Ctrl-D on an empty line is IAC EOF too.
  - BusyBox telnet refuses binary; Ctrl-C would kill it, and it exits by
    itself on Ctrl-D.
  - C{nc} and C{socat} are no telnet clients: they send each line as the
    terminal hands it over (and show the door's three-byte telnet request
    as it is); Ctrl-C would kill them.  C{socat} ends the connection at
    Ctrl-D (the end of its input); C{nc} does not, so the test hangs it up
    (SIGHUP), as closing its terminal window would.

With all of them the terminal is in canonical mode, as a shell leaves it:
the terminal itself echoes what is typed and applies Backspace, and an
arrow key reaches the client, and chatd, as its escape sequence.

A limitation of netkit telnet that no server can help, and so no test
covers: it takes any byte whose low seven bits are its escape character
Ctrl-] (0x9d, as in U+275D ❝, E2 9D 9D) for the escape character itself and
drops into its C{telnet>} command prompt.  The issue's strings hold no such
byte.
"""

from __future__ import annotations

import enum
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.support.processes import (
    LOCAL_TCP0,
    LOCALHOST,
    TwistdProcess,
    WebSocketClient,
    checkout_env,
    clean_env,
    scratch_dir,
)
from tests.support.terminal import (
    BACKSPACE,
    CTRL_BACKSLASH,
    CTRL_C,
    CTRL_D,
    CTRL_Z,
    ENTER,
    LEFT,
    UP,
    Terminal,
)

REQUIRE = "CHATD_REQUIRE_CLIENTS"
"""Set to 1 to make tests fail, rather than skip, when a client is missing."""

LINES = (
    "smile 😃 ok",
    "café naïve 日本語 Bună ziua",
    "안녕하세요 world",
    "Ελληνικά и русский",
)
"""What the issue types in every client, each line on its own."""

NOTICES = {
    CTRL_C: "*** Interrupted: the line you were typing was thrown away",
    CTRL_Z: "*** Ctrl-Z (suspend) does nothing here; type /quit to leave",
    CTRL_BACKSLASH: "*** Ctrl-\\ (break) does nothing here; type /quit to leave",
}
"""What the line door says, on a line of its own, for each key it traps."""

WATCHER = "watcher"
"""The nickname of the WebSocket user in the room."""

ROOM = "#lobby"
"""Where everyone is once signed on."""

TERMINAL_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
"""What must never reach a message: C0 controls (ESC among them), DEL, C1."""


class Leaving(enum.Enum):
    """
    How a user leaves with a client.
    """

    QUIT = "Ctrl-D on an empty line reaches chatd, which says bye and closes"
    EOF = "Ctrl-D on an empty line ends the client's input: it closes"
    HANG_UP = "Ctrl-D does not end the session: the terminal is closed (SIGHUP)"


@dataclass(frozen=True)
class Client:
    """
    A terminal client of the line door, and what it does with keys.

    @ivar nick: the nickname its user signs on with.
    @ivar command: its command line, with C{{host}} and C{{port}} standing
        for the door's address and port.
    @ivar package: the Debian package it comes in.
    @ivar sends_signals: whether Ctrl-C, Ctrl-Z and Ctrl-\\ reach chatd as
        telnet commands (with other clients, they stop or kill the client).
    @ivar leaving: what happens at Ctrl-D.
    """

    nick: str
    command: Sequence[str]
    package: str
    sends_signals: bool
    leaving: Leaving

    def argv(self, port: int) -> list[str]:
        """
        The command line that connects to the line door on C{port}.
        """
        return [arg.format(host=LOCALHOST, port=port) for arg in self.command]


INETUTILS = Client(
    "inetutils",
    ("inetutils-telnet", "{host}", "{port}"),
    "inetutils-telnet",
    sends_signals=True,
    leaving=Leaving.QUIT,
)
NETKIT = Client(
    "netkit",
    ("telnet-ssl", "{host}", "{port}"),
    "telnet-ssl",
    sends_signals=True,
    leaving=Leaving.QUIT,
)
BUSYBOX = Client(
    "busybox",
    ("busybox", "telnet", "{host}", "{port}"),
    "busybox",
    sends_signals=False,
    leaving=Leaving.EOF,
)
PLINK = Client(
    "plink",
    ("plink", "-telnet", "-P", "{port}", "{host}"),
    "putty-tools",
    sends_signals=False,
    leaving=Leaving.QUIT,
)
NC = Client(
    "nc",
    ("nc", "{host}", "{port}"),
    "netcat-openbsd",
    sends_signals=False,
    leaving=Leaving.HANG_UP,
)
SOCAT = Client(
    "socat",
    ("socat", "-", "TCP:{host}:{port}"),
    "socat",
    sends_signals=False,
    leaving=Leaving.EOF,
)


class Conversation:
    """
    A user at a terminal client signed on in L{ROOM}, and a WebSocket user
    there watching what the room gets.

    @ivar said: what the terminal user meant to say so far, in order.
    """

    def __init__(
        self,
        case: SynchronousTestCase,
        client: Client,
        terminal: Terminal,
        watcher: WebSocketClient,
    ) -> None:
        self.case = case
        self.client = client
        self.nick = client.nick
        self.terminal = terminal
        self.watcher = watcher
        self.said: list[str] = []

    def sign_on(self) -> None:
        """
        Answer the nickname prompt; the watcher sees the user join.
        """
        self.terminal.expect("Choose a nickname:")
        self.terminal.type(self.nick, ENTER)
        self.terminal.expect(f"*** Welcome, {self.nick}!")
        self.watcher.expect("join", room=ROOM, nick=self.nick)

    def say(self, *keys: str | bytes, meaning: str) -> None:
        """
        Type C{keys} and Enter, which says C{meaning}: the room gets exactly
        that (the watcher's next message from the user), and it comes back
        to the terminal.
        """
        self.terminal.type(*keys, ENTER)
        self.said.append(meaning)
        self.case.assertEqual(self.message_from(self.nick)["text"], meaning, f"typed {keys!r}")
        self.terminal.expect(f"[{ROOM}] <{self.nick}> {meaning}\n")

    def message_from(self, nick: str) -> dict[str, Any]:
        """
        The next message the watcher gets from C{nick} in L{ROOM}.
        """
        fields: dict[str, Any] = {"room": ROOM, "from": nick}
        return self.watcher.expect("message", **fields)

    def press(self, key: bytes) -> None:
        """
        Type C{key}, which chatd answers with its notice on a line of its
        own.
        """
        self.terminal.type(key)
        self.terminal.expect(f"\n{NOTICES[key]}\n")

    def hear(self, text: str) -> None:
        """
        The watcher says C{text}, which shows on the terminal.
        """
        self.watcher.send_json({"type": "say", "room": ROOM, "text": text})
        self.case.assertEqual(self.message_from(WATCHER)["text"], text)
        self.terminal.expect(f"[{ROOM}] <{WATCHER}> {text}\n")

    def leave(self) -> None:
        """
        Leave as the client's user would; the watcher sees the user part,
        and the client exits.
        """
        if self.client.leaving is Leaving.HANG_UP:
            self.terminal.hang_up()
        else:
            self.terminal.type(CTRL_D)
        if self.client.leaving is Leaving.QUIT:
            self.terminal.expect("*** Bye!\n")
        self.watcher.expect("part", room=ROOM, nick=self.nick)
        self.terminal.wait()

    def check_room(self) -> None:
        """
        The room got what the user meant to say, all of it and nothing
        else, in order; and no message anyone got held terminal control.
        """
        messages = [frame for frame in self.watcher.seen if frame.get("type") == "message"]
        texts = [frame["text"] for frame in messages if frame["from"] == self.nick]
        self.case.assertEqual(texts, self.said)
        for frame in messages:
            self.case.assertIsNone(TERMINAL_CONTROL.search(frame["text"]), frame)


class RealClientTests(SynchronousTestCase):
    """
    One conversation per client, against a server of its own.
    """

    def require(self, client: Client) -> None:
        """
        Skip, or under CI fail, unless C{client}'s program is installed.
        """
        if shutil.which(client.command[0]) is not None:
            return
        why = f"{client.command[0]} is not installed (apt-get install {client.package})"
        for name, value in ((REQUIRE, "1"), ("CI", "true")):
            if os.environ.get(name) == value:
                self.fail(f"{why}, and {name}={value} says the client tests must run")
        raise SkipTest(why)

    def start_server(self) -> TwistdProcess:
        """
        A C{twistd -n chatd} with both doors on loopback, history in memory
        and no flood limit (the tests type faster than people do).
        """
        return TwistdProcess(
            self,
            [
                "-n", "--pidfile=", "chatd", "--line", LOCAL_TCP0, "--web", LOCAL_TCP0,
                "--irc", "none", "--db", ":memory:", "--flood-rate", "0",
            ],
            cwd=scratch_dir(self),
            env=checkout_env(),
        )  # fmt: skip

    def start_client(self, client: Client, port: int) -> Terminal:
        """
        C{client} on a UTF-8 xterm of its own, connected to C{port}, with a
        home of its own (no C{~/.telnetrc} or PuTTY settings of the user's).
        """
        env = clean_env(LANG="C.UTF-8", LC_ALL="C.UTF-8", TERM="xterm", HOME=str(scratch_dir(self)))
        return Terminal(self, client.argv(port), env=env)

    def converse(self, client: Client) -> None:
        """
        The issue's conversation with C{client}: sign on, type the issue's
        lines, the keys the client can send (Ctrl-C mid-line, Ctrl-Z,
        Ctrl-\\, an arrow key alone, Left arrow, Backspace), hear the other
        user, and leave.
        """
        self.require(client)
        server = self.start_server()
        watcher = WebSocketClient(self, server.port("web"))
        watcher.sign_on(WATCHER)
        terminal = self.start_client(client, server.port("line"))
        user = Conversation(self, client, terminal, watcher)

        user.sign_on()
        for line in LINES:
            user.say(line, meaning=line)
        if client.sends_signals:
            # Each key waits for what came before it to be back on the screen:
            # until chatd answers the key's DO TIMING-MARK, the client throws
            # away what it receives (as RFC 854 has it), a line on its way too.
            terminal.type("half")
            user.press(CTRL_C)
            user.say(" rest", meaning=" rest")
            user.press(CTRL_Z)
            user.hear("still there after Ctrl-Z?")
            user.press(CTRL_BACKSLASH)
        user.say("yes", BACKSPACE * 3, "no", meaning="no")
        # A line that is only an arrow key says nothing: the next message the
        # watcher gets is the next line's.
        terminal.type(UP, ENTER)
        user.say("abc", LEFT, meaning="abc")
        user.hear(f"bye, {client.nick} 👋")
        user.leave()

        user.check_room()
        self.assertNotIn("Traceback", server.output())

    def test_inetutils_telnet(self) -> None:
        """
        GNU inetutils telnet, in LINEMODE: UTF-8 lines arrive intact;
        Ctrl-C throws the line being typed away, Ctrl-Z and Ctrl-\\ get a
        notice and the session still hears the room; arrow keys say
        nothing; Ctrl-D leaves.
        """
        self.converse(INETUTILS)

    def test_netkit_telnet(self) -> None:
        """
        netkit telnet (C{telnet-ssl}), in LINEMODE: as inetutils telnet --
        in particular Hangul, whose UTF-8 holds 0x85 bytes, arrives intact.
        """
        self.converse(NETKIT)

    def test_busybox_telnet(self) -> None:
        """
        BusyBox telnet, which refuses binary: UTF-8 lines arrive intact,
        arrow keys say nothing, and the room sees its user go when Ctrl-D
        ends it.
        """
        self.converse(BUSYBOX)

    def test_plink(self) -> None:
        """
        PuTTY's plink in telnet mode: UTF-8 lines arrive intact, arrow keys
        say nothing, Ctrl-D leaves.
        """
        self.converse(PLINK)

    def test_nc(self) -> None:
        """
        C{nc}, no telnet client: the door's opening telnet request does not
        get in the way of UTF-8 lines, and arrow keys typed into a plain
        terminal say nothing.
        """
        self.converse(NC)

    def test_socat(self) -> None:
        """
        C{socat} between the terminal and the door: as C{nc}, and Ctrl-D
        (end of its input) closes the connection.
        """
        self.converse(SOCAT)
