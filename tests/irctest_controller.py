"""
The irctest controller for chatd's IRC door: lets the IRC conformance suite
irctest (https://github.com/progval/irctest) start and stop chatd.

Not one of chatd's own tests (pytest collects only C{test_*.py} here) and
not imported by them: it imports C{irctest}, which only the irctest run has
on its path.  C{.ci/irctest} runs it, from irctest's own directory::

    PYTHONPATH=<this checkout> python -m pytest -p no:cacheprovider \\
        --controller tests.irctest_controller ... irctest/server_tests/...

Each test case starts its own C{twistd chatd} with only the IRC door, on
a free loopback port, and kills it (and its process group) at the end of
the test.  Its database (C{--db}) is a copy, in the test's directory, of
one seeded once per process with the operator account C{operuser}
(password C{operpassword}, named in C{--admins}) that irctest's OPER
commands use: seeded offline, so no client has connected for it (LUSERS
tests count users and their peaks).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

from irctest import patma
from irctest.basecontrollers import BaseServerController, DirectoryBasedController
from irctest.cases import BaseServerTestCase
from irctest.runner import NotImplementedByController
from irctest.specifications import Capabilities, OptionalBehaviors

from chatd.errors import ChatError
from chatd.hub.passwords import MAX_PASSWORD, MIN_PASSWORD, check_password
from chatd.model import check_nick

SERVER_NAME = "My.Little.Server"
"""
The server name irctest's tests expect (in PONG, 004, WHO, WHOIS, TIME...).
"""

REGISTER_CAP = "draft/account-registration"

OPER_NAME = "operuser"
OPER_PASSWORD = "operpassword"
"""
The operator irctest's tests become with C{OPER operuser operpassword}: a
chatd account that is one of the server's C{--admins}.
"""

DB_NAME = "chatd.sqlite"

SEED_SCRIPT = """
import sqlite3
import sys
import time

from argon2 import PasswordHasher
from twisted.internet.defer import Deferred
from twisted.internet.task import react

from chatd.model import Account
from chatd.store.sqlite import SQLiteStore

path, name, password = sys.argv[1:4]
# A cheap argon2id hash: its PHC string carries its parameters, so the
# server's hasher verifies it all the same.
hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


async def main(reactor):
    store = SQLiteStore(path, reactor)
    store.load()
    try:
        made = await store.create_account(Account(name, hasher.hash(password), time.time()))
    finally:
        await store.close()
    if not made:
        raise RuntimeError(f"account {name} already exists in {path}")
    # One self-contained file to copy: no write-ahead log beside it.
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode = DELETE")
    db.close()


react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
"""
"""
Run as C{python -c SEED_SCRIPT path name password}: create the chatd
database C{path} holding only the account C{name}.
"""

_template: Path | None = None


def seeded_database() -> Path:
    """
    The database every server of this process starts from a copy of (made
    on first use, removed at exit): chatd's schema and the operator account.
    """
    global _template
    if _template is None:
        directory = tempfile.mkdtemp(prefix="chatd-irctest-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        path = Path(directory) / DB_NAME
        done = subprocess.run(
            [sys.executable, "-c", SEED_SCRIPT, str(path), OPER_NAME, OPER_PASSWORD],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0 or not path.is_file():
            raise RuntimeError(
                f"Seeding the chatd database {path} failed (exit status"
                f" {done.returncode}):\n{done.stdout}{done.stderr}"
            )
        _template = path
    return _template


def twistd_command() -> list[str]:
    """
    How to run C{twistd} with the interpreter running irctest (the active
    virtualenv's): its C{twistd} script beside C{sys.executable}, or,
    without one, Twisted's C{twistd} entry point through C{-c}.
    """
    script = Path(sys.executable).parent / "twistd"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


class ChatdController(BaseServerController, DirectoryBasedController):
    software_name = "chatd"
    supports_sts = False
    supported_sasl_mechanisms = {"PLAIN"}
    _port_wait_interval = 0.05

    # What claiming a capability means to irctest (Capabilities, checked by
    # supports_cap): when a test asks for it with skip_if_cap_nak=True and the
    # server NAKs it, the test FAILS instead of being skipped.  Caps missing
    # from irctest's Capabilities enum (sasl, cap-notify,
    # draft/account-registration) cannot be claimed: a NAK of them always
    # skips.  Claimed here: the caps of irctest's enum that the door is meant
    # to implement.  NOT claimed (so a NAK skips): account-notify, batch,
    # extended-join, extended-monitor, labeled-response, draft/multiline,
    # draft/message-redaction, draft/read-marker, setname, sts.
    capabilities = frozenset(
        (
            Capabilities.ACCOUNT_TAG,  # account-tag
            Capabilities.AWAY_NOTIFY,  # away-notify
            Capabilities.ECHO_MESSAGE,  # echo-message
            Capabilities.MESSAGE_TAGS,  # message-tags
            Capabilities.MULTI_PREFIX,  # multi-prefix
            Capabilities.SERVER_TIME,  # server-time
        )
    )

    # What claiming an optional behaviour means (irctest's conftest.py): when
    # a test finds the server lacks it (raises OptionalBehaviorNotSupported),
    # the test FAILS with "Software chatd must support behavior ..." instead
    # of being skipped.  None is claimed yet; candidates, by the test files
    # .ci/irctest runs, once the door is known to do them:
    #   MULTI_JOIN               JOIN #a,#b (join.py; skipped anyway if
    #                            TARGMAX says JOIN:1)
    #   MULTI_KICK               KICK #chan a,b (kick.py)
    #   MULTI_NAMES_COMMAND      NAMES #a,#b (names.py)
    #   CAP_REQ_MINUS            CAP REQ -cap disables cap (cap.py)
    #   SASL_AFTER_REGISTRATION  AUTHENTICATE after 001, not 462 (sasl.py)
    #   SASL_REAUTHENTICATION    AUTHENTICATE again once logged in, not 907
    #   INVITE_LIST              INVITE with no arguments lists invites (336/337)
    #   ELIST_M/N/U/C/T          LIST filters advertised in ELIST= (list.py)
    #   BAN_EXCEPTION_MODE       channel mode +e (chmodes/ban.py)
    #   INVITE_EXCEPTION_MODE    channel mode +I (chmodes/invite_exception.py)
    #   INVITE_OVERRIDES_LIMIT   INVITE lets one join past +l (chmodes/limit.py)
    #   NO_CTCP                  channel mode +C (chmodes/no_ctcp.py)
    optional_behaviors: frozenset[OptionalBehaviors] = frozenset(
        (
            OptionalBehaviors.MULTI_KICK,  # KICK #chan a,b (TARGMAX KICK:4)
            OptionalBehaviors.MULTI_NAMES_COMMAND,  # NAMES #a,#b (TARGMAX NAMES:4)
        )
    )

    # What a key here means (isupport.py testValues): the token MUST appear in
    # 005 with a value matching the given one (None: no value; patma.ANYSTR:
    # any).  Left empty, testValues is skipped.  Candidates once the door is
    # known to send them: "CASEMAPPING": "ascii" (or "rfc1459"),
    # "PREFIX": "(ov)@+", "UTF8ONLY": None, "TARGMAX": patma.ANYSTR.
    isupport: dict[str, str | patma.Operator | None] = {
        "CASEMAPPING": "ascii",
        "CHANTYPES": "#",
        "PREFIX": "(ov)@+",
        "UTF8ONLY": None,
        "TARGMAX": patma.ANYSTR,
    }

    def run(
        self,
        hostname: str,
        port: int,
        *,
        password: str | None,
        ssl: bool,
        run_services: bool,
        faketime: str | None,
        websocket_hostname: str | None = None,
        websocket_port: int | None = None,
    ) -> None:
        if password is not None:
            self._unsupported("server password (PASS)")
        if ssl:
            self._unsupported("TLS")
        if websocket_hostname is not None or websocket_port is not None:
            self._unsupported("WebSocket listener")
        if faketime is not None:
            self._unsupported("faketime")
        assert self.proc is None
        self.create_config()
        assert self.directory
        self.hostname = hostname
        self.port = port
        db = Path(self.directory) / DB_NAME
        shutil.copy(seeded_database(), db)
        # irctest picks the port by binding 0.0.0.0 and connects to the
        # hostname it got (0.0.0.0, i.e. this host) or to localhost: loopback
        # serves both.
        self.proc = self.execute(
            [
                *twistd_command(),
                "-n",
                "--pidfile=",
                "chatd",
                "--irc",
                f"tcp:{port}:interface=127.0.0.1",
                "--line",
                "none",
                "--web",
                "none",
                "--metrics",
                "none",
                "--admin",
                "none",
                "--db",
                str(db),
                "--admins",
                OPER_NAME,
                "--irc-server-name",
                SERVER_NAME,
            ],
            proc_name="chatd",
            cwd=self.directory,
        )

    def _unsupported(self, what: str) -> NoReturn:
        """
        Skip the test: chatd cannot be run with C{what}.  Gives back the
        port irctest reserved for it first, since a test whose C{setUp}
        raises never runs its C{tearDown}.
        """
        self.kill()
        self.directory = None
        raise NotImplementedByController(what)

    def wait_for_services(self) -> None:
        # No services: accounts are the door's own (draft/account-registration).
        pass

    def registerUser(
        self,
        case: BaseServerTestCase,
        username: str,
        password: str | None = None,
    ) -> None:
        """
        Register the account C{username} with C{password}, as a client of
        the door would: C{REGISTER * * password} under
        draft/account-registration, after connection registration.

        Skips the test if chatd would refuse C{username} or C{password}
        by policy (as some SASL tests' are).
        """
        try:
            check_password(password or "")
        except ChatError as e:
            raise NotImplementedByController(
                f"chatd's account passwords are {MIN_PASSWORD}-{MAX_PASSWORD}"
                f" characters with no spaces: {e}"
            ) from None
        try:
            check_nick(username)
        except ChatError as e:
            raise NotImplementedByController(f"chatd's account names are nicknames: {e}") from None
        if not case.run_services:
            # chatd does not need this, but other controllers do: tests that
            # register accounts must say so (cases.mark_services).
            raise ValueError("Attempted to register a nick, but `run_services` it not True.")
        assert password
        client = case.addClient(show_io=False)
        case.sendLine(client, "CAP LS 302")
        case.sendLine(client, f"CAP REQ :{REGISTER_CAP}")
        case.sendLine(client, "NICK " + username)
        case.sendLine(client, "USER r e g :user")
        case.sendLine(client, "CAP END")
        while case.getRegistrationMessage(client).command != "001":
            pass
        case.getMessages(client)
        case.sendLine(client, f"REGISTER * * {password}")
        replies = [m for m in case.getMessages(client) if m.command in ("REGISTER", "FAIL")]
        assert replies, f"no REGISTER reply while registering {username}"
        case.assertMessageMatch(
            replies[0],
            command="REGISTER",
            params=["SUCCESS", patma.ANYSTR, patma.ANYSTR],
            fail_msg="Registering {}: expected REGISTER SUCCESS, got {msg}",
            extra_format=(username,),
        )
        case.sendLine(client, "QUIT")
        case.assertDisconnected(client)


def get_irctest_controller_class() -> type[ChatdController]:
    return ChatdController
