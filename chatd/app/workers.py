# -*- test-case-name: tests.test_workers -*-
"""
C{--workers N}: one host, all its cores, one address.

The process started as C{twistd -n chatd --workers N --redis ...} serves no
chat itself.  L{WorkerPool} opens the doors' listening sockets once, never
accepts on them, and runs N copies of C{twistd -n chatd} (the workers) that
inherit those sockets: the kernel hands each new connection to whichever
worker accepts it first.  The workers share their chat state through Redis,
so to users they are one server.

A worker is told which inherited descriptor serves which door with the
internal option C{--inherit irc=3,line=4,web=5,parent=0}; L{door_listener} then
adopts the socket (L{InheritedPort}) instead of listening, and
L{watch_parent} stops the worker when its pool is gone.
"""

from __future__ import annotations

import getopt
import os
import re
import signal
import socket
import stat
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from twisted.application.service import IService, Service
from twisted.internet import endpoints, error, fdesc, tcp, unix
from twisted.internet.abstract import FileDescriptor
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import (
    IDelayedCall,
    IFileDescriptor,
    IListeningPort,
    IProcessTransport,
    IProtocolFactory,
    IReactorCore,
    IReactorProcess,
    IReactorSocket,
    IReactorTime,
)
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol, ServerFactory
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from chatd.app.reload import Hangup, listener, sighup_blocked, with_backlog
from chatd.doors.admission import Admission
from chatd.doors.origin import ProxyHeaderFactory

FIRST_DELAY = 1.0
"""Seconds before a worker that exited is started again, the first time."""

MAX_DELAY = 30.0
"""The restart delay doubles after each quick exit, up to this."""

STABLE_RUN = 60.0
"""A worker that ran this long before exiting is restarted after L{FIRST_DELAY} again."""

STOP_TIMEOUT = 15.0
"""
Seconds the pool waits for SIGTERMed workers to exit before it SIGKILLs
them: more than a worker's own shutdown (5 s for its connections to close,
then its store's last commit).
"""

KILL_TIMEOUT = 5.0
"""Seconds the pool waits for SIGKILLed workers to be reaped."""

RUN_TWISTD = "from twisted.scripts.twistd import run; run()"
"""C{python -c} code that runs twistd (C{twisted.scripts.twistd} has no C{__main__})."""

DOORS = ("line", "web", "irc")
"""The doors a pool shares; the other listeners cannot be shared (L{check_options})."""

TITLES = {"line": "line", "web": "web", "irc": "IRC"}
"""How messages name each door: C{the IRC door}."""

PROXIED = "haproxy:"
"""The endpoint prefix of a door behind the PROXY protocol (as Twisted's)."""

PARENT = "parent"
"""The C{--inherit} key naming the pipe whose end of file means the pool is gone."""

CHILD_FD_BASE = 3
"""A worker's first inherited listening socket; 0 is the pipe from its parent."""

SHAREABLE = (
    endpoints.TCP4ServerEndpoint,
    endpoints.TCP6ServerEndpoint,
    endpoints.UNIXServerEndpoint,
)

_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?[+-]\d{4} ")
"""The timestamp twistd starts each log line with; the pool's own log has one."""


# -- options ---------------------------------------------------------------


def parse_inherit(value: str) -> dict[str, int]:
    """
    Parse C{--inherit line=FD,web=FD,irc=FD,parent=FD} into C{{name: fd}}.
    """
    inherited: dict[str, int] = {}
    for item in value.split(","):
        name, sep, number = item.strip().partition("=")
        if not sep or name not in (*DOORS, PARENT):
            names = ", ".join(f"{door}=FD" for door in DOORS)
            raise ValueError(f"{item!r} is not {names} or {PARENT}=FD")
        if name in inherited:
            raise ValueError(f"{name} is given twice")
        fd = int(number)
        if fd < 0:
            raise ValueError(f"{number} is not a file descriptor")
        inherited[name] = fd
    return inherited


def check_options(options: Mapping[str, Any], reactor: Any) -> None:
    """
    Refuse C{--workers} and C{--inherit} where they cannot work.

    @param options: the parsed chatd options.
    @param reactor: what endpoint descriptions are parsed with.
    @raise usage.UsageError: saying why.
    """
    if options.get("inherit") is not None and options.get("workers") is not None:
        raise usage.UsageError("--inherit is for the workers that --workers starts, not with it")
    if options.get("workers") is None:
        return
    if options.get("redis") is None:
        raise usage.UsageError(
            "--workers needs --redis: without Redis to share their state, each worker "
            "would be a separate chat server, with its own users and rooms"
        )
    for name, why in (
        ("metrics", "each worker counts only its own connections"),
        ("admin", "each connection would reach an arbitrary worker"),
    ):
        if options.get(name, "none") != "none":
            raise usage.UsageError(
                f"--{name} cannot be used with --workers ({why}); run it on a "
                "node without --workers"
            )
    for door in DOORS:
        description = options.get(door, "none")
        if description == "none":
            continue
        endpoint = endpoints.serverFromString(reactor, description)
        if not isinstance(endpoint, SHAREABLE):
            raise usage.UsageError(
                f"--{door}: {description!r}: --workers can share only tcp:, tcp6: and "
                "unix: endpoints for now (for TLS, put a TLS-terminating proxy in front)"
            )


def worker_args(argv: Sequence[str], short_opts: str, long_opts: Sequence[str]) -> list[str]:
    """
    The chatd options C{argv} again, without C{--workers} (and C{--inherit}):
    what each worker is started with.

    C{argv} is parsed as C{usage.Options} does (with C{getopt}), so that
    abbreviations (C{--work 2}) and C{--workers=2} are recognised too.
    """
    pairs, rest = getopt.getopt(list(argv), short_opts, list(long_opts))
    args: list[str] = []
    for option, value in pairs:
        if option in ("--workers", "--inherit"):
            continue
        if option.startswith("--"):
            takes_value = f"{option[2:]}=" in long_opts
        else:
            takes_value = short_opts[short_opts.index(option[1]) + 1 :][:1] == ":"
        args += [option, value] if takes_value else [option]
    return [*args, *rest]


def worker_command(args: Sequence[str]) -> list[str]:
    """
    The command line of a worker running chatd with C{args}: this Python,
    C{twistd -n} (so that the pool sees its log), no pid file.
    """
    return [sys.executable, "-c", RUN_TWISTD, "-n", "--pidfile=", "chatd", *args]


# -- the worker's side -----------------------------------------------------


class _SharedUNIXPort(unix.Port):
    """
    A unix listening socket adopted from the pool.  Twisted's own adopted
    unix port chmods the path to its default mode and unlinks it when it
    stops; this one keeps the mode the pool gave it, and leaves the path to
    the pool, which still serves it through the other workers.  Nor does
    it shut the socket down as it stops (as Twisted's adopted TCP ports do
    not): that would stop every other worker's accepting too.
    """

    _shouldShutdown = False

    def connectionLost(self, reason: Failure) -> None:
        tcp.Port.connectionLost(self, reason)


def adopt_port(reactor: IReactorSocket, fd: int, factory: IProtocolFactory) -> IListeningPort:
    """
    Accept connections for C{factory} on the inherited listening socket
    C{fd}, whatever its address family.
    """
    probe = socket.socket(fileno=fd)
    try:
        family, name = probe.family, probe.getsockname()
    finally:
        probe.detach()
    if family != socket.AF_UNIX:
        return reactor.adoptStreamPort(fd, family, cast(ServerFactory, factory))
    port = _SharedUNIXPort._fromListeningDescriptor(reactor, fd, factory)
    if isinstance(name, str) and name and not name.startswith("\0"):
        port.mode = stat.S_IMODE(os.stat(name).st_mode)
    port.startListening()
    return port


class InheritedPort(Service):
    """
    Serve C{factory} on a listening socket inherited from the pool, in
    place of C{strports.service}: a worker must not bind the door's address
    itself, since the pool holds it.
    """

    def __init__(self, reactor: IReactorSocket, fd: int, factory: IProtocolFactory) -> None:
        self.reactor = reactor
        self.fd = fd
        self.factory = factory
        self.port: IListeningPort | None = None

    def startService(self) -> None:
        super().startService()
        self.port = adopt_port(self.reactor, self.fd, self.factory)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        port, self.port = self.port, None
        return _stop_listening(port)


def _stop_listening(port: IListeningPort | None) -> Deferred[None]:
    stopping = None if port is None else port.stopListening()
    return stopping if isinstance(stopping, Deferred) else succeed(None)


def door_listener(
    options: Mapping[str, Any],
    door: str,
    factory: IProtocolFactory,
    reactor: Any,
    admission: Admission,
) -> IService:
    """
    The service that listens for C{door} (C{"line"}, C{"web"} or C{"irc"}): on the
    socket the pool handed down if this is a worker (C{--inherit}), else
    on the door's endpoint; behind the PROXY protocol if that is
    C{haproxy:...}, taking the header from the proxies C{admission} trusts.
    """
    description = options[door]
    if description.startswith(PROXIED):
        # Twisted's own haproxy: wrapper connects the door's protocol before
        # the header names the client, so admission would see the proxy.
        description = description[len(PROXIED) :]
        factory = ProxyHeaderFactory(factory, admission, door)
    fd = (options.get("inherit") or {}).get(door)
    if fd is None:
        # Like strports.service; SIGHUP rereads the certificate of an ssl: one.
        return listener(description, factory, reactor, door)
    return InheritedPort(reactor, fd, factory)


class _Lifeline(FileDescriptor):
    """
    The read end of a pipe whose write end only the pool holds: the kernel
    closes it when the pool exits, however it exits, which this sees as
    end of file.
    """

    def __init__(self, reactor: Any, fd: int, gone: Callable[[], None]) -> None:
        super().__init__(reactor)
        self._fd = fd
        self._gone = gone
        fdesc.setNonBlocking(fd)

    def fileno(self) -> int:
        return self._fd

    def doRead(self) -> Any:
        return fdesc.readFromFD(self._fd, lambda data: None)

    def connectionLost(self, reason: Failure) -> None:
        # The reactor also disconnects every reader as it stops, with
        # ConnectionLost: only the end of the pipe is ConnectionDone.
        super().connectionLost(reason)
        if reason.check(error.ConnectionDone):
            self._gone()


class _WorkerStop:
    """
    Stops a worker once, whichever comes first: SIGTERM or SIGINT, or the
    end of its pipe from the pool.

    A worker is often signalled twice: systemd (by default) and a
    terminal's Ctrl-C signal every process of the service, and the pool
    then SIGTERMs its workers too.  Twisted would stop the reactor twice and
    log a traceback for the second time, so later signals are ignored.
    """

    _log = Logger(namespace="chatd.workers")

    def __init__(self, reactor: IReactorCore) -> None:
        self.reactor = reactor
        self.stopping = False
        self._handlers: dict[int, Callable[[int, Any], Any]] = {}

    def take_signals(self) -> None:
        """
        Stand in front of the reactor's SIGTERM and SIGINT handlers (call it
        once the reactor runs, when they are installed).
        """
        for number in (signal.SIGTERM, signal.SIGINT):
            handler = signal.getsignal(number)
            if callable(handler):
                self._handlers[number] = handler
                signal.signal(number, self._signalled)

    def _signalled(self, number: int, frame: Any) -> None:
        if not self.stopping:
            self.stopping = True
            self._handlers[number](number, frame)

    def parent_gone(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self._log.warn("The worker pool is gone; stopping")
        try:
            self.reactor.stop()
        except error.ReactorNotRunning:
            pass


def watch_parent(reactor: IReactorCore, fd: int) -> None:
    """
    Stop this worker (cleanly, as SIGTERM would) once C{fd}, its pipe from
    the pool, reaches end of file: the pool was killed without stopping its
    workers.  Take only the first stop signal (L{_WorkerStop}).

    This starts at once rather than with the chat service, which starts
    listening only once its hub is ready: a worker whose hub never gets
    ready must still notice that its pool is gone.
    """
    stop = _WorkerStop(reactor)
    _Lifeline(reactor, fd, stop.parent_gone).startReading()
    reactor.callWhenRunning(stop.take_signals)


# -- the pool's side -------------------------------------------------------


class _Held(Factory):
    """
    The factory of the pool's own listening ports, which never accept: the
    workers do.
    """

    def buildProtocol(self, addr: Any) -> Protocol | None:
        return None

    def logPrefix(self) -> str:
        return "WorkerPool"


def _describe(port: IListeningPort) -> str:
    host = port.getHost()
    if isinstance(host, IPv6Address):
        return f"[{host.host}]:{host.port}"
    if isinstance(host, IPv4Address):
        return f"{host.host}:{host.port}"
    if isinstance(host, UNIXAddress):
        name = host.name
        return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
    return str(host)


def _how(reason: Failure) -> str:
    """
    How a worker ended, for the log: C{exit status 1}, C{signal 9 (SIGKILL)}.
    """
    value = reason.value
    number = getattr(value, "signal", None)
    if number is not None:
        try:
            return f"signal {number} ({signal.Signals(number).name})"
        except ValueError:
            return f"signal {number}"
    return f"exit status {getattr(value, 'exitCode', None)}"


@dataclass
class _Worker:
    """
    One worker slot: its current process, if any, and its restart delay.
    """

    index: int
    process: IProcessTransport | None = None
    pid: int | None = None
    started: float = 0.0
    delay: float = FIRST_DELAY
    restart: IDelayedCall | None = None


MAX_LOG_LINE = 65536
"""Bytes of a worker's unfinished output line held before it is logged anyway."""


class _WorkerProtocol(ProcessProtocol):
    """
    The pool's end of one worker process: its output lines go to the pool's
    log, prefixed with the worker's index.
    """

    def __init__(self, pool: WorkerPool, worker: _Worker) -> None:
        self.pool = pool
        self.worker = worker
        self.buffers: dict[int, bytes] = {}

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        lines = (self.buffers.pop(childFD, b"") + data).split(b"\n")
        rest = lines.pop()
        if len(rest) > MAX_LOG_LINE:  # bounded: a line that never ends is logged in pieces
            lines.append(rest)
        elif rest:
            self.buffers[childFD] = rest
        for line in lines:
            self.pool._output(self.worker, childFD, line)

    def processEnded(self, reason: Failure) -> None:
        for childFD, rest in sorted(self.buffers.items()):
            self.pool._output(self.worker, childFD, rest)
        self.buffers.clear()
        self.pool._exited(self.worker, reason)


class WorkerPool(Service):
    """
    Runs C{count} worker processes that share the pool's listening sockets,
    restarts those that exit, and stops them all when it stops.  It passes
    SIGHUP on to them (L{hangup}).

    @ivar doors: endpoint description of each shared door, by door name.
    @ivar command: a worker's command line, to which the pool adds
        C{--inherit ...}: with L{worker_command} for C{twistd chatd}, or any
        command that takes that option (tests give C{twistd chatd} without
        C{--redis}).
    """

    _log = Logger()

    def __init__(
        self,
        reactor: IReactorProcess,
        doors: Mapping[str, str],
        command: Sequence[str],
        count: int,
        *,
        env: Mapping[str, str] | None = None,
        stop_timeout: float = STOP_TIMEOUT,
    ) -> None:
        """
        @param env: the workers' environment; by default the pool's own.
        """
        self.reactor = reactor
        self.clock = IReactorTime(reactor)
        self.doors = dict(doors)
        self.command = list(command)
        self.count = count
        self.env = None if env is None else dict(env)
        self.stop_timeout = stop_timeout
        self.ports: dict[str, IListeningPort] = {}
        self._workers = [_Worker(index) for index in range(count)]
        self._waiting: list[tuple[Deferred[None], IDelayedCall]] = []
        self._hangup = Hangup(reactor, self.hangup)

    @property
    def pids(self) -> dict[int, int]:
        """
        The pid of each running worker, by index.
        """
        return {w.index: w.pid for w in self._workers if w.process and w.pid is not None}

    def privilegedStartService(self) -> None:
        """
        Open the listening sockets before twistd gives up its privileges
        (C{--uid}), as C{strports.service} would; a port that cannot be
        opened stops twistd at once.
        """
        super().privilegedStartService()
        self._open()

    def _open(self) -> None:
        for door, description in self.doors.items():
            if door in self.ports:
                continue
            endpoint = endpoints.serverFromString(self.reactor, with_backlog(description))
            if not isinstance(endpoint, SHAREABLE):
                raise ValueError(f"{door}: {description!r} cannot be shared by workers")
            listening = endpoint.listen(_Held())
            result: list[Any] = []
            listening.addBoth(result.append)
            (outcome,) = result  # these endpoints listen synchronously
            if isinstance(outcome, Failure):
                from chatd.app.tap import cannot_listen  # the tap imports this module

                assert outcome.value is not None
                raise cannot_listen(
                    f"the {TITLES.get(door, door)} door", description, outcome.value
                )
            assert isinstance(outcome, FileDescriptor)
            outcome.stopReading()  # the workers accept, not the pool
            port = self.ports[door] = IListeningPort(outcome)
            self._log.info(
                "The {door} door listens on {address} for {count} workers",
                door=TITLES.get(door, door),
                address=_describe(port),
                count=self.count,
            )

    def startService(self) -> None:
        super().startService()
        self._hangup.install()
        self._open()
        for worker in self._workers:
            self._start(worker)

    def hangup(self) -> None:
        """
        SIGHUP: pass it on to every worker, which rereads its files
        (L{chatd.app.reload}); the pool itself reads none.
        """
        self._log.info(
            "SIGHUP: passing it on to the workers (pids {pids})",
            pids=", ".join(str(pid) for _, pid in sorted(self.pids.items())) or "none",
        )
        self._signal("HUP")

    def _start(self, worker: _Worker) -> None:
        worker.restart = None
        if not self.running:
            return
        child_fds: dict[int, int | str] = {0: "w", 1: "r", 2: "r"}
        inherit = []
        for number, (door, port) in enumerate(sorted(self.ports.items())):
            fd = CHILD_FD_BASE + number
            child_fds[fd] = IFileDescriptor(port).fileno()
            inherit.append(f"{door}={fd}")
        inherit.append(f"{PARENT}=0")
        args = [*self.command, "--inherit", ",".join(inherit)]
        protocol = _WorkerProtocol(self, worker)
        try:
            # A worker passed SIGHUP (hangup) before it takes it must not die of it.
            with sighup_blocked():
                process = self.reactor.spawnProcess(
                    protocol, args[0], args, env=self.env, childFDs=child_fds
                )
        except Exception:
            self._log.failure("Could not start worker {index}", index=worker.index)
            self._schedule(worker, 0.0)
            return
        worker.process, worker.pid = process, process.pid
        worker.started = self.clock.seconds()
        self._log.info("Worker {index} started (pid {pid})", index=worker.index, pid=worker.pid)

    def _output(self, worker: _Worker, childFD: int, line: bytes) -> None:
        text = _TIMESTAMP.sub("", line.decode("utf-8", "replace").rstrip("\r"))
        if childFD == 2:
            self._log.warn("worker {index}: {line}", index=worker.index, line=text)
        else:
            self._log.info("worker {index}: {line}", index=worker.index, line=text)

    def _exited(self, worker: _Worker, reason: Failure) -> None:
        ran = self.clock.seconds() - worker.started
        worker.process = None
        self._log.info(
            "Worker {index} (pid {pid}) exited: {how}, after {ran:.1f} s",
            index=worker.index,
            pid=worker.pid,
            how=_how(reason),
            ran=ran,
        )
        if self.running:
            self._schedule(worker, ran)
        elif not any(w.process for w in self._workers):
            waiting, self._waiting = self._waiting, []
            for done, timer in waiting:
                if timer.active():
                    timer.cancel()
                    done.callback(None)

    def _schedule(self, worker: _Worker, ran: float) -> None:
        """
        Start C{worker} again after its backoff delay: 1 s, doubling after
        each quick exit up to 30 s, back to 1 s after a run of a minute.
        """
        if ran >= STABLE_RUN:
            worker.delay = FIRST_DELAY
        delay, worker.delay = worker.delay, min(worker.delay * 2, MAX_DELAY)
        self._log.info("Restarting worker {index} in {delay:g} s", index=worker.index, delay=delay)
        worker.restart = self.clock.callLater(delay, self._start, worker)

    def _signal(self, name: str) -> None:
        for worker in self._workers:
            if worker.process is not None:
                try:
                    worker.process.signalProcess(name)
                except error.ProcessExitedAlready:
                    pass

    def _all_exited(self, timeout: float) -> Deferred[None]:
        """
        Fires once no worker runs, or after C{timeout} seconds.
        """
        done: Deferred[None] = Deferred()
        if not any(w.process for w in self._workers):
            done.callback(None)
        else:
            self._waiting.append((done, self.clock.callLater(timeout, done.callback, None)))
        return done

    def stopService(self) -> Deferred[None]:
        """
        SIGTERM every worker and wait for them to exit; SIGKILL those still
        running after C{stop_timeout}; then close the listening sockets.
        """
        super().stopService()
        self._hangup.uninstall()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        for worker in self._workers:
            if worker.restart is not None and worker.restart.active():
                worker.restart.cancel()
            worker.restart = None
        self._signal("TERM")
        await self._all_exited(self.stop_timeout)
        if any(w.process for w in self._workers):
            self._log.warn(
                "Workers {pids} still running after {timeout:g} s; killing them",
                pids=sorted(self.pids.values()),
                timeout=self.stop_timeout,
            )
            self._signal("KILL")
            await self._all_exited(KILL_TIMEOUT)
        ports, self.ports = self.ports, {}
        for port in ports.values():
            await _stop_listening(port)


def make_pool(options: usage.Options, reactor: IReactorProcess) -> WorkerPool:
    """
    The L{WorkerPool} that C{twistd chatd --workers N ...} runs: N workers
    running chatd with the same options, sharing the line, web and IRC doors.

    @param options: parsed chatd options, with C{argv}, the arguments they
        were parsed from.
    """
    args = worker_args(options["argv"], options.shortOpt, options.longOpt)
    doors = {door: options[door] for door in DOORS if options[door] != "none"}
    return WorkerPool(reactor, doors, worker_command(args), options["workers"])
