# -*- test-case-name: tests.test_tap -*-
"""
C{twistd chatd}: command-line options and the service they describe.
"""

from __future__ import annotations

import errno
import os
import platform
import re
import resource
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any

from twisted.application.service import IService, Service
from twisted.copyright import version as twisted_version
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IReactorCore, IReactorTime
from twisted.python import usage

from chatd import __version__
from chatd.app.reload import listener
from chatd.app.service import ChatService
from chatd.app.workers import (
    PROXIED,
    WorkerPool,
    check_options,
    door_listener,
    make_pool,
    parse_inherit,
    watch_parent,
)
from chatd.cluster.node import ClusterGateway
from chatd.console import ConsoleFactory, read_motd
from chatd.doors.admission import (
    LOCALHOST,
    LOCALHOST_PROXIES,
    Admission,
    AdmittingFactory,
    http_refusal,
)
from chatd.doors.flow import Throttle
from chatd.doors.irc import IrcDoor
from chatd.doors.line import LineDoor
from chatd.doors.origin import Networks
from chatd.doors.web import WEBSOCKET_PATH, make_site
from chatd.doors.websocket import OriginPolicy, WebSocketDoor
from chatd.errors import ChatError, StoreError
from chatd.hub import Hub, LocalGateway
from chatd.interfaces import IGateway, IStore
from chatd.limits import Limits, format_rate, parse_rate
from chatd.metrics import make_metrics_site
from chatd.model import StoreState, check_nick
from chatd.redis.connection import lazy_connection, parse_redis_url
from chatd.redis.oplog import COMMAND_TIMEOUT, RedisLog
from chatd.redis.store import RedisStore
from chatd.store.memory import MemoryStore
from chatd.store.sqlite import SQLiteStore

OFF = "none"

DOORS = ("line", "web", "irc")
"""The doors, by option; at least one must be on."""

IRC_SERVER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*\Z")
MAX_IRC_SERVER_NAME = 63
FALLBACK_IRC_SERVER_NAME = "irc.chatd"
"""The IRC door's server name when the host name cannot be one."""


def check_irc_server_name(name: str) -> str | None:
    """
    Why C{name} cannot be the IRC door's server name (what it calls itself
    in every reply, and clients show), or C{None} if it can: 1 to 63
    letters, digits, dots and hyphens, starting with a letter or a digit.
    """
    if not name:
        return "it is empty"
    if len(name) > MAX_IRC_SERVER_NAME:
        return f"it is longer than {MAX_IRC_SERVER_NAME} characters"
    if IRC_SERVER_NAME.match(name) is None:
        return "only letters, digits, dots and hyphens, first a letter or a digit"
    return None


def default_irc_server_name() -> str:
    """
    The default C{--irc-server-name}: this machine's host name, or
    L{FALLBACK_IRC_SERVER_NAME} if that cannot be one.
    """
    try:
        name = socket.gethostname()
    except OSError:
        return FALLBACK_IRC_SERVER_NAME
    return FALLBACK_IRC_SERVER_NAME if check_irc_server_name(name) else name


class _Positive:
    """
    An option's coerce function (L{usage.Options}): a positive whole number,
    with the C{coerceDoc} that C{--help} shows.
    """

    coerceDoc = "Must be a positive whole number."

    def __call__(self, value: str) -> int:
        number = int(value)
        if number < 1:
            raise ValueError(f"{value} is not a positive number")
        return number


_positive = _Positive()


def _not_negative(kind: type) -> Callable[[str], Any]:
    def coerce(value: str) -> Any:
        number = kind(value)
        if number < 0:
            raise ValueError(f"{value} is negative")
        return number

    return coerce


def _open_file_budget() -> int:
    """
    The default C{--max-clients}: what the process's open-file limit allows,
    leaving room for listening sockets, logs and the like.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 0 if soft == resource.RLIM_INFINITY else max(soft - 100, 1)


def _limit_options() -> list[list[Any]]:
    """
    One option per field of L{Limits}, named after it, with its help.
    """
    options: list[list[Any]] = []
    for limit in fields(Limits):
        default: Any = limit.default
        coerce: Callable[[str], Any]
        if limit.name == "connect_rate":
            default, coerce = format_rate(default), parse_rate
        elif limit.name == "max_clients":
            default, coerce = _open_file_budget(), _not_negative(int)
        else:
            coerce = _not_negative(type(default))
        name = limit.name.replace("_", "-")
        options.append([name, None, default, limit.metadata["help"], coerce])
    return options


ADMIN_MODE = "0600"
"""
The permissions of an C{--admin unix:} socket whose description gives none:
only chatd's own user may connect (Twisted's default, 0666, lets everyone).
"""


def _fields(description: str) -> list[tuple[str | None, str]]:
    """
    The fields of an endpoint description, split as Twisted splits them:
    C{(None, value)} for a positional one, C{(key, value)} for C{key=value};
    a backslash escapes the next character.
    """
    fields: list[tuple[str | None, str]] = []
    key: str | None = None
    current = ""
    chars = iter(description)
    for char in chars:
        if char == "\\":
            current += next(chars, "")
        elif char == ":":
            fields.append((key, current))
            key, current = None, ""
        elif char == "=" and key is None:
            key, current = current, ""
        else:
            current += char
    fields.append((key, current))
    return fields


def unix_path(description: str) -> str | None:
    """
    The path of the socket of a C{unix:} endpoint description (or of a
    C{haproxy:unix:} one); C{None} for any other kind of endpoint.
    """
    if description.startswith(PROXIED):
        description = description[len(PROXIED) :]
    kind, *rest = _fields(description)
    if kind != (None, "unix"):
        return None
    for key, value in rest:
        if key == "address":
            return value
    positional = [value for key, value in rest if key is None]
    return positional[0] if positional else None


def private_socket(description: str) -> str:
    """
    C{description}, with C{:mode=0600} added if it is a C{unix:} endpoint
    that does not choose its mode itself.
    """
    if unix_path(description) is None or any(k == "mode" for k, _ in _fields(description)):
        return description
    return f"{description}:mode={ADMIN_MODE}"


def _why(error: BaseException, description: str) -> str:
    """
    Why listening on C{description} failed with C{error}, in a few words.
    """
    if isinstance(error, CannotListenError):
        reason = error.socketError
        if isinstance(reason, BaseException):
            error = reason
        else:  # Twisted says so for a unix: socket whose lock file is held.
            return f"another process holds its lock file ({unix_path(description)}.lock)"
    path = unix_path(description)
    if isinstance(error, OSError) and error.errno == errno.ENOENT and path is not None:
        directory = os.path.dirname(path)
        if directory and not os.path.isdir(directory):
            return f"the directory {directory} does not exist; create it first"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)


class CannotListen(SystemExit, Exception):
    """
    A door (or the admin console, or the metrics) cannot listen where it was
    told to; the message says which, where and why, in one line.

    An L{Exception}, so that C{twistd} cleans up as after any failed start
    (removes its pid file; a daemonizing C{twistd} passes the message to
    the shell that started it); a L{SystemExit}, so that what reaches the
    top prints as that one line, without a traceback, and exits with
    status 1.
    """


def cannot_listen(what: str, description: str, error: BaseException) -> CannotListen:
    """
    The one-line failure of C{what} (C{"the line door"}...) to listen on
    C{description} with C{error}.
    """
    return CannotListen(
        f"chatd: cannot listen for {what} on {description}: {_why(error, description)}"
    )


class ChatServer(ChatService):
    """
    The chat service as C{twistd} runs it: if a door (or the admin console,
    or the metrics) cannot listen -- the port is taken, the address is not
    this host's, the directory of a C{unix:} socket does not exist -- it
    stops C{twistd} with one line naming the door, the address and the
    reason, and exit status 1 (L{CannotListen}), instead of Twisted's
    traceback.

    (C{twistd} binds every port in C{privilegedStartService}, before it
    runs the reactor; this does what C{MultiService} does there, but for
    naming the listener that failed.)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._addresses: dict[IService, tuple[str, str]] = {}

    def listening(self, listener: IService, what: str, description: str) -> IService:
        """
        Note that C{listener} listens for C{what} (C{"the line door"}...) on
        C{description}; return it.
        """
        self._addresses[listener] = (what, description)
        return listener

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)
        for service in self:
            try:
                service.privilegedStartService()
            except (CannotListenError, OSError) as e:
                if service not in self._addresses:
                    raise
                what, description = self._addresses[service]
                raise cannot_listen(what, description, e) from None


class Options(usage.Options):
    """
    Where chatd listens, how much it keeps, and every limit it enforces.
    Addresses are Twisted endpoint descriptions, so C{ssl:}, C{unix:} and
    C{tcp6:} work too.
    """

    synopsis = "[options]"
    longdesc = (
        "Run the chatd chat server: a telnet-friendly line door, a web door "
        "(browser client at / and WebSocket at /ws) and an IRC door onto one set "
        "of users and rooms.  Addresses are Twisted endpoint descriptions "
        "(e.g. tcp:1234:interface=127.0.0.1, unix:/run/chatd.sock); "
        f"'{OFF}' turns a door off.  SIGHUP rereads the certificate and key of every "
        "ssl: endpoint and the --motd file."
    )
    optParameters = [
        ["line", "l", "tcp:1234", f"Endpoint of the line (telnet) door, or '{OFF}'."],
        ["web", "w", "tcp:8080", f"Endpoint of the web door (client and /ws), or '{OFF}'."],
        ["irc", None, "tcp:6667", f"Endpoint of the IRC door, or '{OFF}'."],
        [
            "irc-server-name",
            None,
            None,
            "The name the IRC door gives itself in its replies (1-63 letters, digits, "
            "dots and hyphens); by default this machine's host name, or "
            f"{FALLBACK_IRC_SERVER_NAME} if that cannot be one.",
        ],
        [
            "db",
            None,
            "chatd.sqlite",
            "SQLite file that keeps messages, accounts and registered rooms "
            "(created if missing); ':memory:' keeps them in memory only, until exit.",
        ],
        [
            "redis",
            None,
            None,
            "Join the cluster kept in this Redis (redis://HOST:PORT/DB, rediss://..., "
            "unix:///path.sock): every node then shares users, rooms, accounts and "
            "history.  Without it chatd is one self-contained process.",
        ],
        [
            "commit-window",
            None,
            0.05,
            "Seconds of accepted messages committed together; a crash loses at most this.",
            _not_negative(float),
        ],
        [
            "history-size",
            None,
            100,
            "Recent messages per room kept in memory (all of history with --db :memory:).",
            _positive,
        ],
        [
            "history-on-join",
            None,
            20,
            "Recent messages shown to whoever joins a room; 0 shows none.",
            _not_negative(int),
        ],
        [
            "big-room",
            None,
            500,
            "Members above which a room is big: joins and parts are told once a second "
            "as counts, and member lists come in pages; 0 makes no room big.",
            _not_negative(int),
        ],
        [
            "history-days",
            None,
            0,
            "Days after which messages are deleted; 0 keeps them all.",
            _not_negative(float),
        ],
        [
            "metrics",
            None,
            OFF,
            "Endpoint serving Prometheus metrics at /metrics (e.g. "
            f"tcp:9100:interface=127.0.0.1), or '{OFF}'.",
        ],
        [
            "admin",
            None,
            OFF,
            "Endpoint of the admin console, a line protocol for the operator, "
            "without passwords (e.g. unix:/run/chatd/admin.sock, made mode "
            f"{ADMIN_MODE} unless given :mode=...); TCP from loopback only; or '{OFF}'.",
        ],
        ["motd", None, None, "File whose lines are shown to every user on sign-on."],
        [
            "admins",
            None,
            "",
            "Comma-separated registered nicknames of server operators, who can "
            "moderate every room and /kill.",
        ],
        [
            "allowed-origins",
            None,
            "",
            "Comma-separated web origins (e.g. https://chat.example) whose pages may "
            "use the WebSocket besides the web door's own; '*' allows any.",
        ],
        [
            "exempt",
            None,
            str(LOCALHOST),
            "Comma-separated addresses or CIDR networks whose connections no "
            f"per-address limit applies to (--max-per-ip, --connect-rate, "
            f"--max-http-per-ip), or '{OFF}'.",
        ],
        [
            "trusted-proxies",
            None,
            str(LOCALHOST_PROXIES),
            "Comma-separated addresses or CIDR networks of reverse proxies whose "
            "X-Forwarded-For or Forwarded header (web door) or PROXY protocol header "
            f"(haproxy:tcp:... doors) names the real client, or '{OFF}'.",
        ],
        *_limit_options(),
        [
            "workers",
            None,
            None,
            "Run this many worker processes sharing the line, web and IRC ports, to use "
            "every core of this host (needs --redis; not with --metrics or --admin)",
            _positive,
        ],
        [
            "inherit",
            None,
            None,
            "Internal, set by --workers: serve the doors on inherited sockets "
            "(line=FD,web=FD,irc=FD) and stop when the pipe parent=FD closes.",
            parse_inherit,
        ],
    ]

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """
        Parse C{options}.  Run by C{twistd} (a subcommand, with a parent),
        a mistake stops it with the synopsis and the error, rather than
        C{twistd}'s whole C{--help} text followed by the error.

        @raise usage.UsageError: if C{options} are wrong, when not run by
            C{twistd}.
        """
        # Kept so that --workers can start each worker with the same options.
        self["argv"] = list(sys.argv[1:] if options is None else options)
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            if self.parent is None:
                raise
            raise SystemExit(
                f"{self.getSynopsis()}  ('twistd chatd --help' lists them)\nchatd: {e}"
            ) from None

    def opt_version(self) -> None:
        """
        Display chatd's version (and Twisted's) and exit.
        """
        print(
            f"chatd {__version__} (Twisted {twisted_version}, Python {platform.python_version()})"
        )
        sys.exit(0)

    def postOptions(self) -> None:
        from twisted.internet import endpoints, reactor

        if all(self[door] == OFF for door in DOORS):
            raise usage.UsageError("Every door is off; nobody could connect.")
        if self["irc-server-name"] is None:
            self["irc-server-name"] = default_irc_server_name()
        else:
            name = self["irc-server-name"]
            why = check_irc_server_name(name)
            if why is not None:
                raise usage.UsageError(f"--irc-server-name: {name!r} is not a server name: {why}")
        if self["motd"] is not None:
            try:
                self["motd-lines"] = read_motd(self["motd"])
            except (OSError, UnicodeDecodeError) as e:
                raise usage.UsageError(f"--motd: cannot read {self['motd']}: {e}") from None
        for door in (*DOORS, "metrics", "admin"):
            if self[door] != OFF:
                try:
                    endpoints.serverFromString(reactor, self[door])
                except Exception as e:  # parsers raise many kinds (OSError, SSL errors...)
                    raise usage.UsageError(
                        f"--{door}: {self[door]!r} is not an endpoint description ({e})"
                    ) from None
        try:
            self["origins"] = OriginPolicy(
                o for o in self["allowed-origins"].split(",") if o.strip()
            )
        except ValueError as e:
            raise usage.UsageError(f"--allowed-origins: {e}") from None
        if self["redis"] is not None:
            try:
                self["redis-address"] = parse_redis_url(self["redis"])
            except ValueError as e:
                raise usage.UsageError(f"--redis: {e}") from None
        self["admin-list"] = [a.strip() for a in self["admins"].split(",") if a.strip()]
        for admin in self["admin-list"]:
            try:
                check_nick(admin)
            except ChatError as e:
                raise usage.UsageError(f"--admins: {e}") from None
        for name in ("exempt", "trusted-proxies"):
            try:
                self[f"{name}-networks"] = Networks.parse(self[name])
            except ValueError as e:
                raise usage.UsageError(f"--{name}: {e}") from None
        values = {f.name: self[f.name.replace("_", "-")] for f in fields(Limits)}
        if isinstance(values["connect_rate"], str):
            values["connect_rate"] = parse_rate(values["connect_rate"])
        self["limits"] = Limits(**values)
        check_options(self, reactor)


def makeService(options: Options, reactor: IReactorCore | None = None) -> ChatServer | WorkerPool:
    """
    Build the hub and the doors that C{options} ask for.
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    assert IReactorTime.providedBy(reactor)
    if options["workers"] is not None:
        return make_pool(options, reactor)  # type: ignore[arg-type]
    if (options["inherit"] or {}).get("parent") is not None:
        watch_parent(reactor, options["inherit"]["parent"])
    limits: Limits = options["limits"]
    hub_options = {
        "admins": options["admin-list"],
        "history_on_join": options["history-on-join"],
        "big_room": options["big-room"],
        "motd": options.get("motd-lines", ()),
    }
    store: IStore
    gateway: IGateway
    if options["redis"] is not None:
        address = options["redis-address"]
        store = RedisStore(address, reactor)
        log = RedisLog(lambda: lazy_connection(address, reply_timeout=COMMAND_TIMEOUT), reactor)
        hub = Hub(reactor, store, state=StoreState(0, frozenset(), ()), **hub_options)
        gateway = ClusterGateway(hub, log, reactor)
    else:
        if options["db"] == ":memory:":
            store = MemoryStore(per_room=options["history-size"])
        else:
            store = SQLiteStore(
                options["db"],
                reactor,
                commit_window=options["commit-window"],
                cache_per_room=options["history-size"],
            )
        try:
            gateway = LocalGateway(Hub(reactor, store, **hub_options))
        except StoreError as e:
            raise SystemExit(f"chatd: {e}") from None
    service = ChatServer(
        gateway, reactor, history_days=options["history-days"], motd_path=options["motd"]
    )
    throttle = Throttle()
    admission = Admission(
        limits, reactor, options["exempt-networks"], options["trusted-proxies-networks"]
    )
    if options["line"] != OFF:
        line = LineDoor(gateway, reactor, limits, throttle, admission)
        port = door_listener(options, "line", line, reactor, admission)
        service.add_door(line, service.listening(port, "the line door", options["line"]))
    if options["web"] != OFF:
        websocket = WebSocketDoor(gateway, reactor, limits, throttle, options["origins"])
        site = AdmittingFactory(
            make_site(websocket),
            admission,
            http_refusal,
            reactor,
            limits.sign_on_timeout,
            upgrade=(WEBSOCKET_PATH, websocket),
        )
        port = door_listener(options, "web", site, reactor, admission)
        service.add_door(
            websocket,
            service.listening(port, "the web door", options["web"]),
            served_by_site=True,
        )
    if options["irc"] != OFF:
        irc = IrcDoor(
            gateway,
            reactor,
            limits,
            throttle,
            admission,
            server_name=options["irc-server-name"],
        )
        port = door_listener(options, "irc", irc, reactor, admission)
        service.add_door(irc, service.listening(port, "the IRC door", options["irc"]))
    if options["admin"] != OFF:
        console = ConsoleFactory(gateway, options["motd"])
        port = listener(private_socket(options["admin"]), console, reactor, "admin")
        service.listening(port, "the admin console", options["admin"]).setServiceParent(service)
    if options["metrics"] != OFF:
        metrics = make_metrics_site(gateway, service.doors, reactor)
        port = listener(options["metrics"], metrics, reactor, "metrics")
        service.listening(port, "the metrics", options["metrics"]).setServiceParent(service)
    return service
