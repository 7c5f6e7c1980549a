# -*- test-case-name: tests.test_store_redis -*-
"""
A real C{redis-server} for tests, on 127.0.0.1 and a free port, in a
scratch directory, stopped by the test that started it.

Tests that need one call L{redis_server}, which skips the test (saying why)
when Debian's C{redis-server} is not installed, unless C{CHATD_REQUIRE_REDIS=1}
is set, as CI does: there a missing Redis is a failure, not a quiet skip.

Everything here blocks, with deadlines: it only starts and stops a process
(a few milliseconds) and sends it a command or two over loopback.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.support.certs import HOSTNAME, SelfSigned
from tests.support.processes import LOCALHOST, TIMEOUT, scratch_dir

REQUIRE = "CHATD_REQUIRE_REDIS"
"""Set to 1 to make tests fail, rather than skip, without C{redis-server}."""


def redis_server_binary() -> str | None:
    """
    The path of C{redis-server}, or None if it is not installed.
    """
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCALHOST, 0))
        return int(s.getsockname()[1])


def _tied_to_us(args: list[str]) -> list[str]:
    """
    C{args} run so that Linux SIGTERMs the server if the test process dies,
    so that none outlives a crashed or killed test run.  (util-linux's
    C{setpriv} execs the server, so the pid we hold is the server's.)
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", *args] if setpriv else args


class RedisServer:
    """
    One C{redis-server} process of our own.

    @ivar directory: its working directory (data, AOF, log, socket).
    @ivar port: its TCP port on 127.0.0.1, kept across L{restart}.
    @ivar unix: the path of its unix socket, if it has one.
    @ivar aof: whether it keeps an append-only file (fsynced every second,
        and on a clean stop), so that data survives L{stop} and L{restart}.
    @ivar tls: a certificate to serve TLS with, on C{tls_port} (as well as
        plain TCP on C{port}), not asking clients for one.
    """

    def __init__(
        self,
        directory: Path,
        *,
        aof: bool = False,
        unix: bool = False,
        password: str | None = None,
        tls: SelfSigned | None = None,
        binary: str | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        found = binary or redis_server_binary()
        if found is None:
            raise FileNotFoundError("redis-server is not installed")
        self.binary = found
        self.directory = directory
        self.aof = aof
        self.password = password
        self.unix: Path | None = directory / "redis.sock" if unix else None
        self.tls = tls
        self.extra = extra
        self.port = 0
        self.tls_port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """
        C{redis://} URL of the server's TCP port, with its password.
        """
        secret = f":{self.password}@" if self.password else ""
        return f"redis://{secret}{LOCALHOST}:{self.port}/0"

    @property
    def tls_url(self) -> str:
        """
        C{rediss://} URL of the server's TLS port, by the certificate's name.
        """
        secret = f":{self.password}@" if self.password else ""
        return f"rediss://{secret}{HOSTNAME}:{self.tls_port}/0"

    @property
    def unix_url(self) -> str:
        assert self.unix is not None
        secret = f":{self.password}@" if self.password else ""
        return f"unix://{secret}{self.unix}?db=0"

    @property
    def log(self) -> str:
        """
        What the server logged, for failure messages.
        """
        try:
            return (self.directory / "redis.log").read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def _arguments(self) -> list[str]:
        args = [
            self.binary,
            "--bind",
            LOCALHOST,
            "--port",
            str(self.port),
            "--dir",
            str(self.directory),
            "--logfile",
            str(self.directory / "redis.log"),
            "--daemonize",
            "no",
            "--save",
            "",
            "--appendonly",
            "yes" if self.aof else "no",
            "--appendfsync",
            "everysec",
        ]
        if self.unix is not None:
            args += ["--unixsocket", str(self.unix), "--unixsocketperm", "700"]
        if self.password:
            args += ["--requirepass", self.password]
        if self.tls is not None:
            args += [
                "--tls-port",
                str(self.tls_port),
                "--tls-cert-file",
                str(self.tls.cert),
                "--tls-key-file",
                str(self.tls.key),
                "--tls-auth-clients",
                "no",
            ]
        return [*args, *self.extra]

    def start(self, timeout: float = TIMEOUT) -> None:
        """
        Start the server (on a new free port the first time, on the same
        one after that) and wait until it answers PING.
        """
        if self.process is not None:
            raise RuntimeError("This redis-server is running already")
        tries = 1 if self.port else 5
        for _ in range(tries):
            if tries > 1:
                self.port = _free_port()
                self.tls_port = _free_port() if self.tls else 0
            self.process = subprocess.Popen(
                _tied_to_us(self._arguments()),
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if self._answering(timeout):
                return
            self.kill()
            if "Address already in use" not in self.log:
                break
        raise RuntimeError(f"redis-server did not start on port {self.port}:\n{self.log}")

    def _answering(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            try:
                if self.command("PING") == "PONG":
                    return True
            except (OSError, RuntimeError):
                pass
            time.sleep(0.01)
        return False

    def stop(self, timeout: float = TIMEOUT) -> None:
        """
        SIGTERM the server (which then writes out its AOF) and wait for it
        to exit; SIGKILL it (its own pid only) if it does not in time.
        """
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def kill(self) -> None:
        """
        SIGKILL the server (its own pid only), as a crash would, and reap it.
        """
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(TIMEOUT)

    def restart(self, timeout: float = TIMEOUT) -> None:
        """
        Stop the server if it runs, then start it again on the same port
        and in the same directory.
        """
        self.stop(timeout)
        self.start(timeout)

    def command(self, *args: str | int | float) -> Any:
        """
        Send one command on a new connection and return its answer, as
        Python values: str, int, None, or lists of those; an error reply
        raises L{RuntimeError}.
        """
        with socket.create_connection((LOCALHOST, self.port), timeout=TIMEOUT) as s:
            if self.password:
                s.sendall(_encode(("AUTH", self.password)))
            s.sendall(_encode(args))
            reader = s.makefile("rb")
            if self.password:
                _decode(reader)
            return _decode(reader)


def _encode(args: tuple[str | int | float, ...]) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _decode(reader: Any) -> Any:
    line = reader.readline()
    if not line.endswith(b"\r\n"):
        raise OSError("The connection to redis-server was closed")
    kind, rest = line[:1], line[1:-2].decode()
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RuntimeError(rest)
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else reader.read(size + 2)[:-2].decode()
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [_decode(reader) for _ in range(count)]
    raise OSError(f"Unexpected reply from redis-server: {line[:80]!r}")


def redis_server(case: SynchronousTestCase, **kw: Any) -> RedisServer:
    """
    A started L{RedisServer} in a scratch directory, stopped after C{case}.

    @raise SkipTest: if C{redis-server} is not installed and
        C{CHATD_REQUIRE_REDIS} is not 1; then the test fails instead.
    """
    if redis_server_binary() is None:
        why = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get(REQUIRE) == "1":
            case.fail(f"{why}, and {REQUIRE}=1 says the Redis tests must run")
        raise SkipTest(why)
    server = RedisServer(scratch_dir(case), **kw)
    case.addCleanup(server.kill)
    server.start()
    return server
