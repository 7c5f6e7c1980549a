"""
C{--workers N}: the options, the pool's restart and stop policy (in
memory), and the mechanism with real processes on 127.0.0.1: workers
sharing one port, a killed worker restarted, the pool's stop, and workers
that outlive a killed pool stopping by themselves.

The process tests run the pool from a C{.tac} file that gives it the
worker command directly: C{twistd chatd --db :memory:} without C{--redis},
so that each worker is its own chat server and a nickname shows which
worker a connection reached.  The whole C{twistd chatd --workers 2 --redis
...} is L{EndToEndTests}.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import stat
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IReactorProcess
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from chatd.app.tap import Options, makeService
from chatd.app.workers import (
    FIRST_DELAY,
    KILL_TIMEOUT,
    MAX_DELAY,
    MAX_LOG_LINE,
    STABLE_RUN,
    InheritedPort,
    WorkerPool,
    _WorkerProtocol,
    parse_inherit,
    worker_args,
    worker_command,
)
from chatd.doors.irc import IrcDoor
from chatd.doors.line import LineDoor
from tests.support.certs import make_self_signed
from tests.support.processes import (
    LOCAL_TCP0,
    LOCALHOST,
    TIMEOUT,
    LineClient,
    TwistdProcess,
    checkout_env,
    http_get,
    scratch_dir,
    terminated_by_sigterm,
)
from tests.support.redisserver import redis_server

REDIS = "redis://127.0.0.1:6379/0"
"""A Redis URL for option tests; nothing connects to it."""


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


class OptionTests(SynchronousTestCase):
    """
    Where C{--workers} is refused, and what the workers are started with.
    """

    def assertRefused(self, *argv: str) -> str:
        """
        Parsing C{argv} is a usage error; return its message.
        """
        return str(self.assertRaises(UsageError, parse, *argv))

    def test_needs_redis(self) -> None:
        """
        Without C{--redis}, C{--workers} is refused, saying why.
        """
        message = self.assertRefused("--workers", "2")
        self.assertIn("--redis", message)
        self.assertIn("separate chat server", message)
        self.assertEqual(parse("--workers", "2", "--redis", REDIS)["workers"], 2)

    def test_positive(self) -> None:
        """
        The number of workers is a positive whole number; by default there
        is no pool.
        """
        self.assertRefused("--workers", "0", "--redis", REDIS)
        self.assertRefused("--workers", "many", "--redis", REDIS)
        self.assertIsNone(parse()["workers"])

    def test_metrics_and_admin_refused(self) -> None:
        """
        C{--metrics} and C{--admin} cannot be shared by workers: refused.
        """
        for option in ("--metrics", "--admin"):
            message = self.assertRefused(
                "--workers", "2", "--redis", REDIS, option, "tcp:9100:interface=127.0.0.1"
            )
            self.assertIn(option, message)
            self.assertIn("--workers", message)
        # Off, they are fine.
        parse("--workers", "2", "--redis", REDIS, "--metrics", "none", "--admin", "none")

    def test_only_tcp_and_unix_shared(self) -> None:
        """
        C{tcp:}, C{tcp6:} and C{unix:} doors can be shared; C{ssl:} is
        refused with C{--workers} (and still fine without).
        """
        socket_path = str(scratch_dir(self) / "line.sock")
        parse(
            "--workers",
            "2",
            "--redis",
            REDIS,
            "--line",
            f"unix:{socket_path}:mode=600",
            "--web",
            r"tcp6:0:interface=\:\:1",
        )
        tls = make_self_signed(scratch_dir(self)).endpoint()
        for door in ("web", "irc"):
            message = self.assertRefused("--workers", "2", "--redis", REDIS, f"--{door}", tls)
            self.assertIn(f"--{door}", message)
            self.assertIn("ssl:", message)
            self.assertEqual(parse(f"--{door}", tls)[door], tls)

    def test_inherit_is_internal(self) -> None:
        """
        C{--inherit} names which descriptor serves which door; it is not
        for the pool itself.
        """
        self.assertEqual(parse_inherit("line=3,web=4,parent=0"), {"line": 3, "web": 4, "parent": 0})
        self.assertEqual(
            parse_inherit("irc=3,line=4,web=5,parent=0"),
            {"irc": 3, "line": 4, "web": 5, "parent": 0},
        )
        for bad in ("line", "line=x", "line=-1", "admin=3", "line=3,line=4", "irc=3,irc=4"):
            self.assertRaises(ValueError, parse_inherit, bad)
        self.assertRefused("--inherit", "door=3")
        self.assertRefused("--workers", "2", "--redis", REDIS, "--inherit", "line=3")

    def test_worker_args(self) -> None:
        """
        Workers get the pool's options without C{--workers}, however it was
        spelled.
        """
        options = Options()
        for argv in (
            ["--workers", "2", "-l", "tcp:1", "--redis", REDIS],
            ["--workers=2", "-ltcp:1", "--redis=" + REDIS],
            ["-l", "tcp:1", "--work", "2", "--redis", REDIS],
        ):
            self.assertEqual(
                worker_args(argv, options.shortOpt, options.longOpt),
                ["-l", "tcp:1", "--redis", REDIS],
            )

    def test_makes_a_pool(self) -> None:
        """
        With C{--workers} the service is a L{WorkerPool} of that many
        twistd chatd workers, run with the same options, sharing the doors
        that are on.
        """
        options = parse(
            "--workers",
            "3",
            "--redis",
            REDIS,
            "--line",
            "tcp:1234",
            "--web",
            "none",
            "--history-size=7",
        )
        pool = makeService(options, MemoryReactorClock())
        assert isinstance(pool, WorkerPool)
        self.assertEqual((pool.count, pool.doors), (3, {"line": "tcp:1234", "irc": "tcp:6667"}))
        self.assertEqual(
            pool.command,
            worker_command(
                ["--redis", REDIS, "--line", "tcp:1234", "--web", "none", "--history-size", "7"]
            ),
        )
        self.assertEqual(pool.command[:2], [sys.executable, "-c"])

    def test_pool_shares_the_irc_door(self) -> None:
        """
        The pool shares the IRC door as it does the others, unless it is
        off.
        """
        options = parse(
            "--workers", "2", "--redis", REDIS, "--line", "none", "--web", "none",
            "--irc", "tcp:6668",
        )  # fmt: skip
        pool = makeService(options, MemoryReactorClock())
        assert isinstance(pool, WorkerPool)
        self.assertEqual(pool.doors, {"irc": "tcp:6668"})
        options = parse("--workers", "2", "--redis", REDIS, "--irc", "none")
        pool = makeService(options, MemoryReactorClock())
        assert isinstance(pool, WorkerPool)
        self.assertEqual(pool.doors, {"line": "tcp:1234", "web": "tcp:8080"})

    def test_worker_adopts_its_doors(self) -> None:
        """
        A worker (C{--inherit}) serves a door on the descriptor named for it
        instead of listening on the door's endpoint; other doors listen as
        usual.
        """
        held = socket.socket()
        self.addCleanup(held.close)
        held.bind((LOCALHOST, 0))
        held.listen()
        reactor = MemoryReactorClock()
        options = parse(
            "--db", ":memory:", "--web", "tcp:4322", "--irc", "none",
            "--inherit", f"line={held.fileno()}",
        )  # fmt: skip
        service = makeService(options, reactor)
        service.startService()
        self.assertEqual([port for port, *_ in reactor.tcpServers], [4322])
        ((fd, family, factory),) = reactor.adoptedPorts
        self.assertEqual((fd, family), (held.fileno(), socket.AF_INET))
        self.assertIsInstance(factory, LineDoor)
        self.assertTrue(any(isinstance(s, InheritedPort) for s in service))

    def test_worker_adopts_the_irc_door(self) -> None:
        """
        A worker serves the IRC door on the descriptor named C{irc=} too.
        """
        held = socket.socket()
        self.addCleanup(held.close)
        held.bind((LOCALHOST, 0))
        held.listen()
        reactor = MemoryReactorClock()
        options = parse(
            "--db", ":memory:", "--line", "tcp:4321", "--web", "none",
            "--irc", "tcp:0", "--inherit", f"irc={held.fileno()}",
        )  # fmt: skip
        service = makeService(options, reactor)
        service.startService()
        self.assertEqual([port for port, *_ in reactor.tcpServers], [4321])
        ((fd, family, factory),) = reactor.adoptedPorts
        self.assertEqual((fd, family), (held.fileno(), socket.AF_INET))
        self.assertIsInstance(factory, IrcDoor)


class FakeProcess:
    """
    What the pool holds of a worker: its pid and the signals it was sent.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: list[str] = []

    def signalProcess(self, name: str) -> None:
        self.signals.append(name)


@implementer(IReactorProcess)
class ProcessReactor(MemoryReactorClock):
    """
    A memory reactor that records the processes it is asked to spawn.
    """

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[tuple[Any, list[str], dict[int, Any], FakeProcess]] = []

    def spawnProcess(self, protocol: Any, executable: str, args: Any, **kw: Any) -> FakeProcess:
        process = FakeProcess(1000 + len(self.spawned))
        self.spawned.append((protocol, list(args), kw["childFDs"], process))
        protocol.makeConnection(process)
        return process


def ended(code: int | None = None, sig: int | None = None) -> Failure:
    if code == 0:
        return Failure(ProcessDone(0))
    return Failure(ProcessTerminated(code, sig))


class PoolPolicyTests(SynchronousTestCase):
    """
    The pool's restarts and stop, on a memory reactor.
    """

    def pool(self, count: int = 2, **kw: Any) -> tuple[ProcessReactor, WorkerPool]:
        reactor = ProcessReactor()
        pool = WorkerPool(reactor, {}, ["worker", "--db", ":memory:"], count, **kw)
        pool.startService()
        return reactor, pool

    def test_starts_workers(self) -> None:
        """
        The pool starts C{count} workers with the command given, telling
        each which descriptor is its pipe from the pool.
        """
        reactor, pool = self.pool()
        self.assertEqual(len(reactor.spawned), 2)
        for _, args, child_fds, _ in reactor.spawned:
            self.assertEqual(args, ["worker", "--db", ":memory:", "--inherit", "parent=0"])
            self.assertEqual(child_fds, {0: "w", 1: "r", 2: "r"})
        self.assertEqual(pool.pids, {0: 1000, 1: 1001})

    def test_backoff(self) -> None:
        """
        A worker that exits is restarted after 1 s, then 2, 4... up to 30 s
        while it keeps exiting quickly, and after 1 s again once it ran a
        minute.
        """
        reactor, pool = self.pool(count=1)
        delays = []
        for _ in range(7):
            protocol = reactor.spawned[-1][0]
            reactor.advance(5)
            protocol.processEnded(ended(1))
            before = len(reactor.spawned)
            waited = 0.0
            while len(reactor.spawned) == before:
                reactor.advance(0.5)
                waited += 0.5
            delays.append(waited)
        self.assertEqual(delays, [FIRST_DELAY, 2, 4, 8, 16, MAX_DELAY, MAX_DELAY])
        reactor.advance(STABLE_RUN)
        reactor.spawned[-1][0].processEnded(ended(sig=signal.SIGKILL))
        self.assertEqual(pool.pids, {})
        reactor.advance(FIRST_DELAY)
        self.assertEqual(pool.pids, {0: reactor.spawned[-1][3].pid})

    def test_stop_terms_then_kills(self) -> None:
        """
        Stopping the pool SIGTERMs every worker and finishes once they have
        exited; one still running after C{stop_timeout} is SIGKILLed, and
        none is restarted.
        """
        reactor, pool = self.pool(stop_timeout=10)
        (first, _, _, one), (second, _, _, two) = reactor.spawned
        stopping = pool.stopService()
        self.assertEqual((one.signals, two.signals), (["TERM"], ["TERM"]))
        first.processEnded(ended(sig=signal.SIGTERM))
        reactor.advance(9)
        self.assertNoResult(stopping)
        reactor.advance(1)
        self.assertEqual((one.signals, two.signals), (["TERM"], ["TERM", "KILL"]))
        self.assertNoResult(stopping)
        second.processEnded(ended(sig=signal.SIGKILL))
        self.successResultOf(stopping)
        reactor.advance(60)
        self.assertEqual(len(reactor.spawned), 2)

    def test_stop_gives_up_on_unkillable(self) -> None:
        """
        The stop is bounded even if a SIGKILLed worker is never reaped.
        """
        reactor, pool = self.pool(count=1, stop_timeout=10)
        stopping = pool.stopService()
        reactor.advance(10)
        self.assertNoResult(stopping)
        reactor.advance(KILL_TIMEOUT)
        self.successResultOf(stopping)

    def test_pending_restart_cancelled(self) -> None:
        """
        A worker waiting to be restarted is not restarted once the pool
        stops.
        """
        reactor, pool = self.pool(count=1)
        reactor.spawned[0][0].processEnded(ended(1))
        self.successResultOf(pool.stopService())
        reactor.advance(60)
        self.assertEqual(len(reactor.spawned), 1)


# -- real processes ----------------------------------------------------------

STARTED = re.compile(r"Worker (\d+) started \(pid (\d+)\)")

POOL_TAC = """\
from twisted.application.service import Application
from twisted.internet import reactor

from chatd.app.workers import WorkerPool, worker_command

application = Application("chatd pool test")
WorkerPool(reactor, {doors!r}, worker_command({args!r}), {count}).setServiceParent(application)
"""


def running(pid: int) -> bool:
    """
    Whether process C{pid} runs (an exited one not yet reaped does not).
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def eventually(check: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout}s: {what}")
        time.sleep(0.05)


def irc_register(case: SynchronousTestCase, port: int, nick: str) -> bytes:
    """
    Register on the IRC door on C{port} as C{nick} (C{NICK} and C{USER},
    answering any C{PING} on the way) and return what the server sent up to
    its welcome (C{001}).  The connection is closed after C{case}.
    """
    sock = socket.create_connection((LOCALHOST, port), timeout=TIMEOUT)
    case.addCleanup(sock.close)
    sock.sendall(f"NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n".encode())
    transcript = buffer = b""
    deadline = time.monotonic() + TIMEOUT
    while True:
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            transcript += line + b"\n"
            words = line.rstrip(b"\r").split(b" ")
            if words[0] == b"PING":
                sock.sendall(b"PONG " + b" ".join(words[1:]) + b"\r\n")
            elif len(words) > 2 and words[0].startswith(b":") and words[1] == b"001":
                return transcript
        data = sock.recv(4096) if time.monotonic() < deadline else b""
        if not data:
            raise AssertionError(f"no IRC welcome (001) for {nick}: {transcript + buffer!r}")
        buffer += data


class OutputTests(SynchronousTestCase):
    def test_lines_are_logged_whole_and_a_line_without_end_is_bounded(self) -> None:
        logged: list[tuple[int, bytes]] = []
        pool = SimpleNamespace(_output=lambda worker, fd, line: logged.append((fd, line)))
        protocol = _WorkerProtocol(pool, None)  # type: ignore[arg-type]
        protocol.childDataReceived(1, b"one\ntw")
        protocol.childDataReceived(1, b"o\n")
        self.assertEqual(logged, [(1, b"one"), (1, b"two")])
        del logged[:]
        protocol.childDataReceived(2, b"x" * (MAX_LOG_LINE + 1))
        self.assertEqual(logged, [(2, b"x" * (MAX_LOG_LINE + 1))])
        self.assertEqual(protocol.buffers, {})


class PoolProcessTests(SynchronousTestCase):
    """
    A real pool of two real workers, started by C{twistd -y} from a
    C{.tac} file, on 127.0.0.1.
    """

    def start_pool(
        self, doors: dict[str, str] | None = None, count: int = 2
    ) -> tuple[TwistdProcess, dict[int, int]]:
        """
        Start a pool of C{count} workers sharing C{doors} (by default both
        doors, on free ports), and wait until every worker serves.

        @return: the pool's process and each worker's pid, by index.
        """
        if doors is None:
            doors = {"line": LOCAL_TCP0, "web": LOCAL_TCP0}
        home = scratch_dir(self)
        args = [
            "--db",
            ":memory:",
            "--line",
            "tcp:0",
            "--web",
            "tcp:0" if "web" in doors else "none",
            "--irc",
            "tcp:0" if "irc" in doors else "none",
        ]
        (home / "pool.tac").write_text(POOL_TAC.format(doors=doors, args=args, count=count))
        pool = TwistdProcess(
            self, ["-n", "--pidfile=", "-y", "pool.tac"], cwd=home, env=checkout_env()
        )
        pids: dict[int, int] = {}
        for index in range(count):
            pool.wait_for_log(re.compile(rf"worker {index}: .*LineDoor starting on"))
        for match in STARTED.finditer(pool.output()):
            pids[int(match.group(1))] = int(match.group(2))
        self.assertEqual(sorted(pids), list(range(count)))
        self.addCleanup(self.reap_leftovers, pool)
        return pool, pids

    def reap_leftovers(self, pool: TwistdProcess) -> None:
        """
        After the test (the pool has been killed by now): any worker of
        this pool still running has failed to stop by itself.  Kill it, by
        its pid, and fail.
        """
        pool.kill()
        pids = {int(m.group(2)) for m in STARTED.finditer(pool.output())}
        deadline = time.monotonic() + TIMEOUT
        while any(running(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        leftovers = [pid for pid in pids if running(pid)]
        for pid in leftovers:
            os.kill(pid, signal.SIGKILL)
        self.assertEqual(leftovers, [], "workers outlived their pool")

    def served_by(self, pool: TwistdProcess, pids: dict[int, int], index: int, nick: str) -> None:
        """
        Connect to the line door with every other worker stopped (SIGSTOP),
        sign on as C{nick}, and check that worker C{index} served it.
        """

        def sign_ons() -> dict[str, int]:
            found = re.findall(rf"worker (\d+): .*\b{nick} signed on", pool.output())
            return {i: found.count(i) for i in set(found)}

        before = sign_ons()
        others = [pid for i, pid in pids.items() if i != index]
        for pid in others:
            os.kill(pid, signal.SIGSTOP)
        try:
            client = LineClient(self, pool.port("line"))
            client.sign_on(nick)
        finally:
            for pid in others:
                os.kill(pid, signal.SIGCONT)
        expected = {**before, str(index): before.get(str(index), 0) + 1}
        eventually(lambda: sign_ons() == expected, f"worker {index} signed {nick} on")

    def test_workers_share_the_port(self) -> None:
        """
        Both workers accept connections on the one line port (each is a
        separate chat server here, without Redis), and the web port answers.
        """
        pool, pids = self.start_pool()
        self.assertNotEqual(pids[0], pids[1])
        self.served_by(pool, pids, 0, "alice")
        self.served_by(pool, pids, 1, "bob")
        # Worker 1 is another server: "alice" is free there.
        self.served_by(pool, pids, 1, "alice")
        status, _, _ = http_get(pool.port("web"), "/healthz")
        self.assertEqual(status, 200)

    def test_workers_share_the_irc_port(self) -> None:
        """
        The IRC door's port is shared too: each worker registers IRC
        clients on it.
        """
        pool, pids = self.start_pool({"line": LOCAL_TCP0, "irc": LOCAL_TCP0})
        port = pool.port("irc")

        def signed_on(index: int, nick: str) -> bool:
            return re.search(rf"worker {index}: .*\b{nick} signed on", pool.output()) is not None

        for index, nick in ((0, "alice"), (1, "bob")):
            others = [pid for i, pid in pids.items() if i != index]
            for pid in others:
                os.kill(pid, signal.SIGSTOP)
            try:
                irc_register(self, port, nick)
            finally:
                for pid in others:
                    os.kill(pid, signal.SIGCONT)
            eventually(partial(signed_on, index, nick), f"worker {index} signed {nick} on")

    def test_killed_worker_is_restarted(self) -> None:
        """
        A worker killed with SIGKILL is logged with its index, pid and
        status, and started again after a second; the port keeps working
        meanwhile, and the new worker serves it too.
        """
        pool, pids = self.start_pool()
        port = pool.port("line")
        os.kill(pids[0], signal.SIGKILL)
        pool.wait_for_log(re.compile(rf"Worker 0 \(pid {pids[0]}\) exited: signal 9 \(SIGKILL\)"))
        LineClient(self, port).sign_on("carol")  # worker 1 serves meanwhile
        pool.wait_for_log(re.compile(r"Restarting worker 0 in 1 s"))
        match = pool.wait_for_log(re.compile(rf"Worker 0 started \(pid (?!{pids[0]}\))(\d+)\)"))
        new = int(match.group(1))
        eventually(
            lambda: len(re.findall(r"worker 0: .*LineDoor starting on", pool.output())) == 2,
            "the new worker 0 serves",
        )
        self.served_by(pool, {0: new, 1: pids[1]}, 0, "dave")

    def test_stop_stops_every_worker(self) -> None:
        """
        SIGTERM stops the pool cleanly: each worker gets SIGTERM and exits,
        then the pool exits and the port is closed.
        """
        pool, pids = self.start_pool()
        port = pool.port("line")
        status = pool.terminate()
        self.assertTrue(terminated_by_sigterm(status), f"exit status {status}")
        for index, pid in pids.items():
            self.assertFalse(running(pid))
            self.assertRegex(pool.output(), rf"Worker {index} \(pid {pid}\) exited: signal 15")
        self.assertNotIn("Traceback", pool.output())
        self.assertRaises(ConnectionRefusedError, socket.create_connection, (LOCALHOST, port))

    def test_signalled_all_at_once(self) -> None:
        """
        As systemd does by default, SIGTERM the pool and every worker at
        once: all stop cleanly, without a traceback for the second signal a
        worker then gets from the pool.
        """
        pool, pids = self.start_pool()
        for pid in (pool.pid, *pids.values()):
            # A worker the pool's own SIGTERM stopped first may be gone already.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        status = pool.wait()
        self.assertTrue(terminated_by_sigterm(status), f"exit status {status}")
        self.assertNotIn("Traceback", pool.output())
        for pid in pids.values():
            self.assertFalse(running(pid))

    def test_workers_stop_when_the_pool_is_killed(self) -> None:
        """
        When the pool dies without stopping them (SIGKILL), the workers see
        their pipe from it close and stop by themselves.
        """
        pool, pids = self.start_pool()
        port = pool.port("line")
        pool.kill()
        for pid in pids.values():
            eventually(lambda pid=pid: not running(pid), f"worker {pid} stopped")  # type: ignore[misc]
        self.assertRaises(ConnectionRefusedError, socket.create_connection, (LOCALHOST, port))

    def test_unix_socket_shared(self) -> None:
        """
        A unix socket is shared too: it keeps the pool's mode, and a worker
        that stops leaves it in place for the others.
        """
        path = Path(scratch_dir(self)) / "line.sock"
        pool, pids = self.start_pool({"line": f"unix:{path}:mode=600"})
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)

        def sign_on(nick: str) -> None:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(TIMEOUT)
                s.connect(str(path))
                received = b""
                while b"nickname:" not in received:
                    received += s.recv(4096)
                s.sendall(nick.encode() + b"\r\n")
                while b"Welcome" not in received:
                    received += s.recv(4096)

        sign_on("alice")
        os.kill(pids[0], signal.SIGTERM)
        pool.wait_for_log(re.compile(r"Worker 0 \(pid \d+\) exited: signal 15"))
        self.assertTrue(path.exists())
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        sign_on("bob")
        pool.terminate()
        self.assertFalse(path.exists())


class EndToEndTests(SynchronousTestCase):
    """
    C{twistd -n chatd --workers 2 --redis ...}: the whole thing, on a real
    Redis.
    """

    def test_workers_with_redis_are_one_server(self) -> None:
        """
        Two workers behind one line port and one web port are one chat
        server: users on different workers see each other and what they
        say, a nickname is taken across workers, and SIGTERM stops the
        whole pool cleanly.
        """
        redis = redis_server(self)
        pool = TwistdProcess(
            self,
            [
                "-n",
                "--pidfile=",
                "chatd",
                "--workers",
                "2",
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
        for index in (0, 1):
            pool.wait_for_log(re.compile(rf"worker {index}: .*LineDoor starting on"))
        pids = {int(m.group(1)): int(m.group(2)) for m in STARTED.finditer(pool.output())}
        port = pool.port("line")

        def on_worker(index: int, nick: str) -> LineClient:
            others = [pid for i, pid in pids.items() if i != index]
            for pid in others:
                os.kill(pid, signal.SIGSTOP)
            try:
                client = LineClient(self, port)
                client.read_until(b"nickname:\r\n")
            finally:
                for pid in others:
                    os.kill(pid, signal.SIGCONT)
            client.send_line(nick)
            return client

        alice = on_worker(0, "alice")
        alice.read_until(b"*** Welcome, alice!")
        bob = on_worker(1, "bob")
        bob.read_until(b"*** Welcome, bob!")
        alice.read_until(b"*** bob has joined #lobby\r\n")
        alice.send_line("hi bob")
        bob.read_until(b"[#lobby] <alice> hi bob\r\n")
        # The nickname is in use, on worker 0.
        on_worker(1, "ALICE").read_until(b"!!! The nickname ALICE is already in use")
        status, _, _ = http_get(pool.port("web"), "/readyz")
        self.assertEqual(status, 200)

        status = pool.terminate()
        self.assertTrue(terminated_by_sigterm(status), f"exit status {status}")
        self.assertNotIn("Traceback", pool.output())
        for pid in pids.values():
            self.assertFalse(running(pid))
