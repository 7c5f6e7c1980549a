# -*- test-case-name: tests.test_proxies -*-
"""
Real nginx and HAProxy processes in front of a real C{twistd chatd}, for
tests, run from the deployment files in C{docs/deploy/} themselves.

A deployment file names production values (ports 80 and 443, certificate
paths); L{deployed} reads it and swaps exactly those for a test's own, each
of which must still be in the file, so that what the tests run is what the
README shows.  The rest of the setup that a Debian server already has (the
main C{nginx.conf}, HAProxy's C{global} section) is written here, as small
as it can be: no user switch, no daemon, everything in a scratch directory.

Each proxy is one process of our own, in the foreground, on free loopback
ports, killed by its pid after the test (and, through util-linux's
C{setpriv --pdeathsig}, if the test process dies).  A test that needs a
missing program is skipped, saying what to install, unless
C{CHATD_REQUIRE_PROXIES=1} (which C{.ci/run} sets) or C{CI=true}: there it
fails.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.support.certs import SelfSigned
from tests.support.processes import CHECKOUT, LOCALHOST, TIMEOUT, _Connection

REQUIRE = "CHATD_REQUIRE_PROXIES"
"""Set to 1 to make tests fail, rather than skip, when nginx or HAProxy is missing."""

DEPLOY = CHECKOUT / "docs" / "deploy"
"""The deployment files the README shows."""

_SBIN = "/usr/local/sbin:/usr/sbin:/sbin"
"""Where Debian puts nginx and haproxy, often not on a user's PATH."""


def require_program(case: SynchronousTestCase, program: str, package: str) -> str:
    """
    The path of C{program}; if it is not installed, skip C{case} saying
    which Debian C{package} has it, or fail it under CI.
    """
    path = shutil.which(program) or shutil.which(program, path=_SBIN)
    if path is not None:
        return path
    why = f"{program} is not installed (apt-get install --no-install-recommends {package})"
    for name, value in ((REQUIRE, "1"), ("CI", "true")):
        if os.environ.get(name) == value:
            case.fail(f"{why}, and {name}={value} says the proxy tests must run")
    raise SkipTest(why)


def free_port() -> int:
    """
    A port on 127.0.0.1 that nothing listens on (as of now).
    """
    with socket.socket() as s:
        s.bind((LOCALHOST, 0))
        return int(s.getsockname()[1])


_LISTEN = re.compile(r"^\s*(?:listen|bind)\s+(\S+)", re.MULTILINE)
"""Where an nginx server or a HAProxy frontend listens."""


def deployed(name: str, values: Mapping[str, str]) -> str:
    """
    C{docs/deploy/NAME} with every occurrence of each key of C{values}
    replaced by its value.

    @raise AssertionError: if a key is no longer in the file (the file has
        changed: the test must follow it), or if the result still listens
        on anything but loopback.
    """
    text = (DEPLOY / name).read_text("utf-8")
    for old, new in values.items():
        if old not in text:
            raise AssertionError(
                f"{old!r} is no longer in docs/deploy/{name}; tests/test_proxies.py "
                "replaces it with a test value, and must be told what replaced it"
            )
        text = text.replace(old, new)
    for address in _LISTEN.findall(text):
        if not address.startswith(f"{LOCALHOST}:"):
            raise AssertionError(f"docs/deploy/{name} would listen beyond loopback: {address!r}")
    return text


def _tied_to_us(args: list[str]) -> list[str]:
    """
    C{args} run so that Linux SIGTERMs the program if the test process dies
    (util-linux's C{setpriv} execs it, so the pid we hold is the program's).
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", *args] if setpriv else args


def _listening(port: int) -> bool:
    try:
        with socket.create_connection((LOCALHOST, port), timeout=TIMEOUT):
            return True
    except ConnectionRefusedError:
        return False


class Proxy:
    """
    One proxy process of our own, in the foreground, its output going to
    C{NAME.out} in C{directory}.
    """

    def __init__(
        self, case: SynchronousTestCase, name: str, args: Sequence[str], directory: Path
    ) -> None:
        self.name = name
        self.args = list(args)
        self.directory = directory
        self.log_path = directory / f"{name}.out"
        with self.log_path.open("wb") as out:
            self.process = subprocess.Popen(
                _tied_to_us(self.args),
                cwd=directory,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.pid = self.process.pid
        case.addCleanup(self.kill)

    def output(self) -> str:
        """
        What the process has written so far, and its error log if it has one.
        """
        text = self.log_path.read_text("utf-8", "replace")
        error_log = self.directory / "error.log"
        if error_log.exists():
            text += "\n--- error.log ---\n" + error_log.read_text("utf-8", "replace")
        return text

    def failure(self, why: str) -> AssertionError:
        return AssertionError(f"{why}\n{self.name} {self.args}\n--- output ---\n{self.output()}")

    def wait_listening(self, ports: Sequence[int], timeout: float = TIMEOUT) -> None:
        """
        Wait until the process accepts connections on every one of C{ports}.
        """
        deadline = time.monotonic() + timeout
        waiting = list(ports)
        while waiting:
            if self.process.poll() is not None:
                raise self.failure(f"{self.name} exited ({self.process.returncode})")
            if _listening(waiting[0]):
                waiting.pop(0)
                continue
            if time.monotonic() > deadline:
                raise self.failure(f"{self.name} not listening on {waiting} after {timeout}s")
            time.sleep(0.05)

    def kill(self) -> None:
        """
        Kill the process by its pid if it is still running, and reap it.
        """
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self.process.wait(TIMEOUT)


NGINX_MAIN = """\
# The part of /etc/nginx/nginx.conf that the site needs, for a test: one
# process in the foreground, every file in {prefix}.
master_process off;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{
    worker_connections 256;
}}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/chatd.conf;
}}
"""


class Nginx(Proxy):
    """
    nginx serving C{docs/deploy/nginx.conf} in front of the web door on
    C{upstream}: plain HTTP (which redirects) on L{http_port}, TLS with
    C{certificate} on L{https_port}.
    """

    def __init__(
        self, case: SynchronousTestCase, directory: Path, upstream: int, certificate: SelfSigned
    ) -> None:
        binary = require_program(case, "nginx", "nginx")
        self.http_port, self.https_port = free_port(), free_port()
        site = deployed(
            "nginx.conf",
            {
                "listen 80;": f"listen {LOCALHOST}:{self.http_port};",
                "listen 443 ": f"listen {LOCALHOST}:{self.https_port} ",
                "server 127.0.0.1:8080;": f"server {LOCALHOST}:{upstream};",
                "/etc/letsencrypt/live/chat.example/fullchain.pem": str(certificate.cert),
                "/etc/letsencrypt/live/chat.example/privkey.pem": str(certificate.key),
            },
        )
        (directory / "chatd.conf").write_text(site, "utf-8")
        (directory / "nginx.conf").write_text(NGINX_MAIN.format(prefix=directory), "utf-8")
        args = [binary, "-p", f"{directory}/", "-c", f"{directory}/nginx.conf"]
        # -e: the error log until the configuration's is open (nginx 1.19.5+).
        super().__init__(case, "nginx", [*args, "-e", f"{directory}/error.log"], directory)
        self.wait_listening([self.http_port, self.https_port])


HAPROXY_GLOBAL = """\
# HAProxy's "global" section, for a test: no chroot, no user switch, no
# daemon; the log on standard error; a stats socket to read the health
# checks from.
global
    log stderr format short local0 info
    stats socket {directory}/haproxy.sock mode 600 level admin
"""


class HAProxy(Proxy):
    """
    HAProxy running C{docs/deploy/haproxy.cfg} in front of the line door on
    C{line}, the IRC door on C{irc} and the web door on C{web}, all three
    behind the PROXY protocol: the line door plain on L{line_port} and over
    TLS on L{line_tls_port} (992 in the file), the IRC door plain on
    L{irc_port} (6667) and over TLS on L{irc_tls_port} (6697), the web door
    over TLS on L{web_port} (443).
    """

    def __init__(
        self,
        case: SynchronousTestCase,
        directory: Path,
        line: int,
        irc: int,
        web: int,
        certificate: SelfSigned,
    ) -> None:
        binary = require_program(case, "haproxy", "haproxy")
        self.line_port, self.line_tls_port = free_port(), free_port()
        self.irc_port, self.irc_tls_port = free_port(), free_port()
        self.web_port = free_port()
        pem = directory / "chat.pem"  # HAProxy wants the certificate and key in one file
        descriptor = os.open(pem, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(certificate.cert.read_bytes() + certificate.key.read_bytes())
        config = deployed(
            "haproxy.cfg",
            {
                "bind :1234\n": f"bind {LOCALHOST}:{self.line_port}\n",
                "bind :992 ": f"bind {LOCALHOST}:{self.line_tls_port} ",
                "bind :6667\n": f"bind {LOCALHOST}:{self.irc_port}\n",
                "bind :6697 ": f"bind {LOCALHOST}:{self.irc_tls_port} ",
                "bind :443 ": f"bind {LOCALHOST}:{self.web_port} ",
                "127.0.0.1:1235 ": f"{LOCALHOST}:{line} ",
                "127.0.0.1:6668 ": f"{LOCALHOST}:{irc} ",
                "127.0.0.1:8080 ": f"{LOCALHOST}:{web} ",
                "/etc/haproxy/certs/chat.example.pem": str(pem),
            },
        )
        (directory / "global.cfg").write_text(HAPROXY_GLOBAL.format(directory=directory), "utf-8")
        (directory / "chatd.cfg").write_text(config, "utf-8")
        args = [binary, "-db", "-f", f"{directory}/global.cfg", "-f", f"{directory}/chatd.cfg"]
        super().__init__(case, "haproxy", args, directory)
        self.wait_stats()

    def stats(self) -> list[dict[str, str]]:
        """
        HAProxy's C{show stat}: a row per frontend, backend and server.
        """
        with socket.socket(socket.AF_UNIX) as stats:
            stats.settimeout(TIMEOUT)
            stats.connect(str(self.directory / "haproxy.sock"))
            stats.sendall(b"show stat\n")
            data = b""
            while chunk := stats.recv(65536):
                data += chunk
        header, *rows = data.decode("utf-8").strip().splitlines()
        names = header.lstrip("# ").split(",")
        return [dict(zip(names, row.split(","), strict=False)) for row in rows]

    def wait_stats(self, timeout: float = TIMEOUT) -> None:
        """
        Wait until HAProxy answers on its stats socket (it has bound its
        ports by then).
        """
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise self.failure(f"haproxy exited ({self.process.returncode})")
            try:
                self.stats()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise self.failure(f"no haproxy stats socket after {timeout}s") from None
                time.sleep(0.05)

    def wait_checked(self, backend: str, status: str, timeout: float = TIMEOUT) -> dict[str, str]:
        """
        Wait until the server of C{backend} has been health-checked, and
        return its row; fail unless the check says C{status} (C{L4OK},
        C{L7OK}...), the server is up, and no check has failed.
        """
        deadline = time.monotonic() + timeout
        while True:
            (row,) = [r for r in self.stats() if r["pxname"] == backend and r["svname"] == "chatd"]
            checked = row["check_status"].lstrip("* ")  # "* ": a check under way
            if checked not in ("", "INI"):
                # "UP 2/3": up, and on the way to the full count of good checks.
                if checked != status or row["chkfail"] != "0" or row["status"][:2] != "UP":
                    raise self.failure(f"{backend}'s health check: {row}")
                return row
            if time.monotonic() > deadline:
                raise self.failure(f"{backend} not checked after {timeout}s: {row}")
            time.sleep(0.1)


def upgrade(
    case: SynchronousTestCase,
    port: int,
    *,
    source: str,
    tls: ssl.SSLContext | None = None,
    headers: Sequence[tuple[str, str]] = (),
) -> tuple[int, str]:
    """
    Ask for a WebSocket on C{/ws} from C{source}, expecting no session:
    the status code and the status line of the answer.
    """
    connection = _Connection(case, port, source=source, tls=tls)
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
    connection.sock.sendall(
        "GET /ws HTTP/1.1\r\n"
        f"Host: {LOCALHOST}:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        f"{extra}\r\n".encode()
    )
    head = connection.read_until(b"\r\n\r\n").decode("latin-1")
    connection.close()
    status_line = head.split("\r\n", 1)[0]
    return int(status_line.split(" ")[1]), status_line


def get(
    port: int, path: str, *, source: str, tls: ssl.SSLContext | None = None
) -> tuple[int, dict[str, str], bytes]:
    """
    C{GET path} on 127.0.0.1:C{port} from C{source} (over TLS with C{tls}):
    the status, the headers (lower-cased names) and the body.
    """
    bind = (source, 0)
    connection: http.client.HTTPConnection
    if tls is None:
        connection = http.client.HTTPConnection(
            LOCALHOST, port, timeout=TIMEOUT, source_address=bind
        )
    else:
        connection = http.client.HTTPSConnection(
            LOCALHOST, port, timeout=TIMEOUT, source_address=bind, context=tls
        )
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, body
    finally:
        connection.close()


def console_users(path: Path) -> dict[str, str]:
    """
    The users chatd's admin console (on the unix socket at C{path}) lists,
    each with the address it counts them under.
    """
    with socket.socket(socket.AF_UNIX) as console:
        console.settimeout(TIMEOUT)
        console.connect(str(path))
        console.sendall(b"users\nquit\n")
        data = b""
        while chunk := console.recv(65536):
            data += chunk
    # The greeting, the list, "bye": each answer ends in a line holding ".".
    answers = data.decode("utf-8").replace("\r\n", "\n").split("\n.\n")
    users = {}
    for line in answers[1].splitlines():
        if line == "no users":
            break
        nick, *fields = line.split(" ")
        users[nick] = dict(field.partition("=")[::2] for field in fields)["from"]
    return users
