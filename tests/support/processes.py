# -*- test-case-name: tests.test_twistd,tests.test_install -*-
"""
Blocking helpers for tests that run a real C{twistd chatd} process and talk
to it over real sockets on 127.0.0.1.

Everything here waits with a deadline (L{TIMEOUT} seconds unless told), so
a server that hangs makes a test fail instead of blocking the run, and every
process is registered for a kill (by its pid) in the test's cleanup.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from chatd.testing import CLOSE, DO_BINARY, PING, PONG, TEXT, client_frame, mask

CHECKOUT = Path(__file__).resolve().parents[2]
"""The root of the checkout these tests belong to."""

TWISTD = "from twisted.scripts.twistd import run; run()"
"""C{python -c} code that runs twistd (C{twisted.scripts.twistd} has no C{__main__})."""

TIMEOUT = 10.0
"""How long any single wait may take, in seconds."""

LOCALHOST = "127.0.0.1"
LOCAL_TCP0 = f"tcp:0:interface={LOCALHOST}"
"""An endpoint description for a free port on the loopback interface."""

_PORT_LINES = {
    "line": re.compile(r"LineDoor starting on (\d+)"),
    "web": re.compile(r"Site(?: \(\w+\))? starting on (\d+)"),
    "irc": re.compile(r"IrcDoor starting on (\d+)"),
    # The doors behind the PROXY protocol (haproxy:tcp:...):
    "line (PROXY)": re.compile(r"LineDoor \(PROXY\) starting on (\d+)"),
    "web (PROXY)": re.compile(r"Site(?: \(\w+\))? \(PROXY\) starting on (\d+)"),
    "irc (PROXY)": re.compile(r"IrcDoor \(PROXY\) starting on (\d+)"),
}

_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def scratch_dir(case: SynchronousTestCase) -> Path:
    """
    A new empty directory outside the checkout, removed after C{case}.

    (C{case.mktemp()} is relative to the working directory, which under
    pytest is the checkout itself.)
    """
    path = Path(tempfile.mkdtemp(prefix="chatd-test-"))
    case.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path


def clean_env(**overrides: str) -> dict[str, str]:
    """
    This process's environment without any Python path settings, plus
    C{overrides}.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH")
    }
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(overrides)
    return env


def checkout_env() -> dict[str, str]:
    """
    An environment in which C{sys.executable} imports chatd (and finds its
    twistd plugin) from this checkout.
    """
    return clean_env(PYTHONPATH=str(CHECKOUT))


def run_twistd(
    args: Sequence[str], *, cwd: Path, env: dict[str, str], python: str = sys.executable
) -> subprocess.CompletedProcess[str]:
    """
    Run twistd with C{args} to completion (at most L{TIMEOUT} seconds) and
    return the result, stdout and stderr merged into C{stdout}.
    """
    try:
        return subprocess.run(
            [python, "-c", TWISTD, *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired as e:
        # subprocess.run has already killed (by pid) and reaped the child.
        raise AssertionError(f"twistd {list(args)} still running after {TIMEOUT}s") from e


class TwistdProcess:
    """
    A C{twistd -n} process running in the background, its output (log)
    going to a file in its working directory.
    """

    def __init__(
        self,
        case: SynchronousTestCase,
        args: Sequence[str],
        *,
        cwd: Path,
        env: dict[str, str],
        python: str = sys.executable,
    ) -> None:
        self.args = list(args)
        self.log_path = cwd / "twistd.out"
        with self.log_path.open("wb") as out:
            self.process = subprocess.Popen(
                [python, "-c", TWISTD, *self.args],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.pid = self.process.pid
        case.addCleanup(self.kill)

    def output(self) -> str:
        """
        Everything the process has written so far.
        """
        return self.log_path.read_text("utf-8", "replace")

    def _failure(self, why: str) -> AssertionError:
        return AssertionError(f"{why}\ntwistd {self.args}\n--- output ---\n{self.output()}")

    def wait_for_log(self, pattern: re.Pattern[str], timeout: float = TIMEOUT) -> re.Match[str]:
        """
        Wait for a line matching C{pattern} in the output and return its match.
        """
        deadline = time.monotonic() + timeout
        while True:
            match = pattern.search(self.output())
            if match is not None:
                return match
            if self.process.poll() is not None:
                raise self._failure(
                    f"twistd exited ({self.process.returncode}) before logging {pattern.pattern!r}"
                )
            if time.monotonic() > deadline:
                raise self._failure(f"no {pattern.pattern!r} in the log after {timeout}s")
            time.sleep(0.05)

    def port(self, door: str) -> int:
        """
        The port on which C{door} (C{"line"}, C{"web"} or C{"irc"}, or
        C{"line (PROXY)"}... on a C{haproxy:} endpoint) listens, read from the
        log once it has been logged.
        """
        return int(self.wait_for_log(_PORT_LINES[door]).group(1))

    def logged(self, door: str) -> bool:
        """
        Whether the log says that C{door} started listening.
        """
        return _PORT_LINES[door].search(self.output()) is not None

    def wait(self, timeout: float = TIMEOUT) -> int:
        """
        Wait for the process to exit and return its status.
        """
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise self._failure(f"twistd still running after {timeout}s") from None

    def sigterm(self) -> None:
        """
        Ask the process to shut down, as a service manager would.
        """
        os.kill(self.pid, signal.SIGTERM)

    def terminate(self, timeout: float = TIMEOUT) -> int:
        """
        Send SIGTERM, wait for the exit, and return the exit status.
        """
        self.sigterm()
        return self.wait(timeout)

    def kill(self) -> None:
        """
        Kill the process by its pid if it is still running, and reap it.
        """
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self.process.wait(TIMEOUT)


def terminated_by_sigterm(status: int) -> bool:
    """
    Whether C{status} is what twistd exits with after a clean SIGTERM
    shutdown: it re-raises the signal, so -15 (or 143 through a shell).
    """
    return status in (-signal.SIGTERM, 128 + signal.SIGTERM)


class _Connection:
    """
    A blocking TCP connection to 127.0.0.1 with a read buffer, whose reads
    all have deadlines: from C{source} (another loopback address, such as
    C{127.0.0.2}, to act as another person) if given, and over TLS if given
    a client C{tls} context.
    """

    def __init__(
        self,
        case: SynchronousTestCase,
        port: int,
        *,
        source: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        bind = None if source is None else (source, 0)
        sock = socket.create_connection((LOCALHOST, port), timeout=TIMEOUT, source_address=bind)
        case.addCleanup(sock.close)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=LOCALHOST)
        self.sock = sock
        self.buffer = b""
        self.eof = False
        case.addCleanup(self.sock.close)

    def _fill(self, deadline: float) -> None:
        """
        Read some more bytes into the buffer, or note end of file.
        """
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out; received so far: {self.buffer!r}")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"timed out; received so far: {self.buffer!r}") from None
        if not data:
            self.eof = True
        self.buffer += data

    def _take(self, size: int, deadline: float) -> bytes:
        while len(self.buffer) < size:
            if self.eof:
                raise AssertionError(f"connection closed; received so far: {self.buffer!r}")
            self._fill(deadline)
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_until(self, marker: bytes, timeout: float = TIMEOUT) -> bytes:
        """
        Everything up to and including the first C{marker}.
        """
        deadline = time.monotonic() + timeout
        while marker not in self.buffer:
            if self.eof:
                raise AssertionError(f"connection closed before {marker!r}: {self.buffer!r}")
            self._fill(deadline)
        end = self.buffer.index(marker) + len(marker)
        data, self.buffer = self.buffer[:end], self.buffer[end:]
        return data

    def read_to_eof(self, timeout: float = TIMEOUT) -> bytes:
        """
        Everything until the peer closes the connection.
        """
        deadline = time.monotonic() + timeout
        while not self.eof:
            self._fill(deadline)
        data, self.buffer = self.buffer, b""
        return data

    def close(self) -> None:
        self.sock.close()


class LineClient(_Connection):
    """
    A client of the line door, as C{nc} would be, but for the door's opening
    request to telnet clients (L{DO_BINARY}), which it checks for and drops.
    """

    _opened = False

    def _fill(self, deadline: float) -> None:
        super()._fill(deadline)
        if not self._opened and (len(self.buffer) >= len(DO_BINARY) or self.eof):
            self._opened = True
            if self.buffer.startswith(DO_BINARY):
                self.buffer = self.buffer[len(DO_BINARY) :]

    def send_line(self, text: str) -> None:
        self.sock.sendall(text.encode("utf-8") + b"\r\n")

    def sign_on(self, nick: str) -> None:
        """
        Answer the nickname prompt with C{nick} and wait for the welcome.
        """
        self.read_until(b"nickname:\r\n")
        self.send_line(nick)
        self.read_until(f"*** Welcome, {nick}!".encode())


class WebSocketClient(_Connection):
    """
    A minimal RFC 6455 client: handshake, masked frames out, unmasked frames
    in, pings answered.  Enough to hold a conversation with the web door.
    """

    def __init__(
        self,
        case: SynchronousTestCase,
        port: int,
        path: str = "/ws",
        *,
        source: str | None = None,
        tls: ssl.SSLContext | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        if source is None and tls is None:
            # As before, for subclasses whose next __init__ takes no more
            # (tests/test_tls.py's _OverTLS).
            super().__init__(case, port)
        else:
            super().__init__(case, port, source=source, tls=tls)
        key = base64.b64encode(os.urandom(16))
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\n"
            f"Host: {LOCALHOST}:{port}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            f"{extra}"
            "\r\n".encode()
        )
        head = self.read_until(b"\r\n\r\n").decode("latin-1")
        if not head.startswith("HTTP/1.1 101"):
            raise AssertionError(f"WebSocket handshake refused:\n{head}")
        accept = base64.b64encode(hashlib.sha1(key + _WS_GUID).digest()).decode()
        if f"sec-websocket-accept: {accept}".lower() not in head.lower():
            raise AssertionError(f"bad Sec-WebSocket-Accept in:\n{head}")
        self.seen: list[dict[str, Any]] = []

    def send_frame(self, opcode: int, payload: bytes) -> None:
        """
        Send one final frame, masked with a random key as RFC 6455 requires.
        """
        self.sock.sendall(client_frame(payload, opcode, key=os.urandom(4)))

    def send_json(self, frame: dict[str, Any]) -> None:
        self.send_frame(TEXT, json.dumps(frame).encode("utf-8"))

    def send_close(self, code: int) -> None:
        self.send_frame(CLOSE, struct.pack("!H", code))

    def finish_close(self, code: int, timeout: float = TIMEOUT) -> bytes:
        """
        Answer the server's close frame with C{code} and return whatever
        arrives until the server drops the connection.

        Autobahn, as a server, aborts the TCP connection (a reset) once the
        closing handshake is complete, so a reset counts as the end here.
        """
        self.send_close(code)
        try:
            return self.read_to_eof(timeout)
        except ConnectionResetError:
            data, self.buffer = self.buffer, b""
            return data

    def _frame(self, deadline: float) -> tuple[bool, int, bytes]:
        first, second = self._take(2, deadline)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", self._take(2, deadline))
        elif size == 127:
            (size,) = struct.unpack("!Q", self._take(8, deadline))
        key = self._take(4, deadline) if second & 0x80 else None
        payload = self._take(size, deadline)
        if key is not None:
            payload = mask(payload, key)
        return bool(first & 0x80), first & 0x0F, payload

    def receive(self, timeout: float = TIMEOUT) -> tuple[int, bytes]:
        """
        The next message or close frame as C{(opcode, payload)}; pings are
        answered and pongs skipped on the way.
        """
        deadline = time.monotonic() + timeout
        while True:
            fin, opcode, payload = self._frame(deadline)
            if opcode == PING:
                self.send_frame(PONG, payload)
                continue
            if opcode == PONG:
                continue
            while not fin:
                fin, _, more = self._frame(deadline)
                payload += more
            return opcode, payload

    def receive_json(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """
        The next message, which must be a JSON text frame.
        """
        opcode, payload = self.receive(timeout)
        if opcode != TEXT:
            raise AssertionError(f"expected a text frame, got opcode {opcode}: {payload!r}")
        frame: dict[str, Any] = json.loads(payload.decode("utf-8"))
        self.seen.append(frame)
        return frame

    def expect(self, kind: str, timeout: float = TIMEOUT, **fields: Any) -> dict[str, Any]:
        """
        Skip frames until one of type C{kind} whose C{fields} have the given
        values, and return it.
        """
        deadline = time.monotonic() + timeout
        while True:
            frame = self.receive_json(deadline - time.monotonic())
            if frame.get("type") == kind and all(frame.get(k) == v for k, v in fields.items()):
                return frame

    def sign_on(self, nick: str) -> dict[str, Any]:
        """
        Say hello as C{nick} and return the welcome.
        """
        self.send_json({"type": "hello", "nick": nick})
        return self.expect("welcome", nick=nick)


def close_code(payload: bytes) -> int | None:
    """
    The status code of a close frame's C{payload}, if it has one.
    """
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


def http_get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    """
    C{GET path} on 127.0.0.1:C{port}: the status, the headers (lower-cased
    names) and the body.
    """
    connection = http.client.HTTPConnection(LOCALHOST, port, timeout=TIMEOUT)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, body
    finally:
        connection.close()


def busy_port(case: SynchronousTestCase) -> int:
    """
    A port on 127.0.0.1 that something is listening on until C{case} ends.
    """
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    case.addCleanup(holder.close)
    holder.bind((LOCALHOST, 0))
    holder.listen()
    port: int = holder.getsockname()[1]
    return port
