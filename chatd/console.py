# -*- test-case-name: tests.test_console -*-
"""
The admin console: a small line protocol for the server's operator, on a
unix socket or a loopback port (C{--admin unix:/run/chatd/admin.sock}).

It is not a door: nobody on it is a user.  It lists users and rooms, puts
people out of rooms or off the server, sends a notice to everyone, and
reloads the message of the day.  It asks for no password: who can connect
is who may operate.  So TCP connections from anywhere but the loopback
interface are refused, whatever the endpoint says, and a unix socket is
made mode 0600 (chatd's own user only) unless its description gives a
C{mode=} (L{chatd.app.tap.private_socket}).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IAddress, ITransport
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

from chatd.doors.admission import Refusal
from chatd.doors.origin import ip_address
from chatd.errors import ChatError
from chatd.hub import Hub
from chatd.interfaces import IGateway
from chatd.requests import Announce, ServerKick, ServerKill

HELP = (
    "users                      every user: nick, account, rooms, address",
    "rooms                      every room: name, members, owner, modes",
    "kick NICK #ROOM [REASON]   put NICK out of a room",
    "kill NICK [REASON]         disconnect NICK",
    "notice TEXT                tell every user TEXT",
    "motd                       reload the message of the day from its file",
    "quit                       leave the console",
)


Reply = list[str] | Deferred[list[str]] | None


def read_motd(path: str) -> tuple[str, ...]:
    """
    The lines of the message-of-the-day file at C{path} (blocking: call it
    before the reactor runs, or in a thread).
    """
    return tuple(Path(path).read_text(encoding="utf-8").splitlines())


def reload_motd(
    hub: Hub, path: str, read: Callable[..., Deferred[tuple[str, ...]]]
) -> Deferred[tuple[str, ...]]:
    """
    Reread the message of the day from C{path}, with C{read} (which runs
    L{read_motd} off the reactor thread), and show it to every sign-on from
    then on.  Fires with its lines; if the file cannot be read, fails, and
    the old message stays.  (The console's C{motd} and SIGHUP both do this.)
    """

    def loaded(lines: tuple[str, ...]) -> tuple[str, ...]:
        hub.motd = lines
        return lines

    return read(read_motd, path).addCallback(loaded)


class ConsoleProtocol(LineReceiver):
    """
    One operator's session: a command per line, an answer of one or more
    lines, each ended by C{.} on a line of its own (easy to script).
    """

    delimiter = b"\n"
    MAX_LENGTH = 4096
    factory: ConsoleFactory
    transport: ITransport  # from makeConnection on: every method here runs after it

    def connectionMade(self) -> None:
        self.answer(["chatd admin console; 'help' lists the commands"])

    def lineReceived(self, line: bytes) -> None:
        text = line.rstrip(b"\r").decode("utf-8", "replace").strip()
        if not text:
            return
        command, _, args = text.partition(" ")
        handler = self.commands.get(command.lower())
        if handler is None:
            self.answer([f"unknown command {command!r}; try help"])
            return
        try:
            result = handler(self, args.strip())
        except ChatError as error:
            self.answer([f"error: {error.message}"])
            return
        if isinstance(result, Deferred):
            self.pauseProducing()
            result.addCallbacks(self.answer, self._failed).addBoth(lambda _: self.resumeProducing())
        elif result is not None:
            self.answer(result)

    def lineLengthExceeded(self, line: bytes) -> None:
        self.answer(["error: line too long"])

    def answer(self, lines: list[str]) -> None:
        self.transport.write(
            "".join(f"{line}\r\n" for line in [*lines, "."]).encode("utf-8", "replace")
        )

    def _failed(self, failure: Failure) -> None:
        if isinstance(failure.value, ChatError):
            self.answer([f"error: {failure.value.message}"])
            return
        self.factory.log.failure("Admin console command failed", failure)
        self.answer([f"error: {failure.getErrorMessage()}"])

    def do_help(self, args: str) -> list[str]:
        return list(HELP)

    def do_users(self, args: str) -> list[str]:
        lines = []
        for user in sorted(self.factory.hub.users.values(), key=lambda u: u.nick.lower()):
            rooms = ",".join(room.name for room in user.rooms.values())
            address = getattr(user.client, "address", None) or "-"
            lines.append(
                f"{user.nick} account={user.account or '-'} rooms={rooms or '-'} from={address}"
            )
        return lines or ["no users"]

    def do_rooms(self, args: str) -> list[str]:
        return [
            f"{room.name} members={len(room.members)} owner={room.owner or '-'}"
            f" modes={room.mode_string() or '-'}"
            for _, room in sorted(self.factory.hub.rooms.items())
        ]

    def do_kick(self, args: str) -> Deferred[list[str]]:
        nick, _, rest = args.partition(" ")
        room, _, reason = rest.strip().partition(" ")
        if not nick or not room:
            raise ChatError("usage", "usage: kick NICK #ROOM [REASON]")
        removal = ServerKick(nick=nick, room=room, by="console", reason=reason.strip() or None)
        kicked = maybeDeferred(self.factory.gateway.submit, None, removal)
        return kicked.addCallback(lambda _: [f"kicked {nick} from {room}"])

    def do_kill(self, args: str) -> Deferred[list[str]]:
        nick, _, reason = args.partition(" ")
        if not nick:
            raise ChatError("usage", "usage: kill NICK [REASON]")
        drop = ServerKill(nick=nick, by="console", reason=reason.strip() or None)
        killed = maybeDeferred(self.factory.gateway.submit, None, drop)
        return killed.addCallback(lambda _: [f"killed {nick}"])

    def do_notice(self, args: str) -> Deferred[list[str]]:
        told = maybeDeferred(self.factory.gateway.submit, None, Announce(text=args))
        return told.addCallback(lambda _: [f"told {len(self.factory.hub.users)} users"])

    def do_motd(self, args: str) -> Deferred[list[str]] | list[str]:
        path = self.factory.motd_path
        if path is None:
            return ["no message of the day file (--motd)"]
        reloading = reload_motd(self.factory.hub, path, self.factory.read)
        return reloading.addCallback(
            lambda lines: [f"message of the day reloaded: {len(lines)} lines"]
        )

    def do_quit(self, args: str) -> None:
        self.answer(["bye"])
        self.transport.loseConnection()

    commands: dict[str, Callable[[ConsoleProtocol, str], Reply]] = {
        "help": do_help,
        "users": do_users,
        "rooms": do_rooms,
        "kick": do_kick,
        "kill": do_kill,
        "notice": do_notice,
        "motd": do_motd,
        "quit": do_quit,
    }


class ConsoleFactory(ServerFactory):
    """
    The admin console's factory.  C{read} runs blocking file reads (the
    message of the day) off the reactor thread.
    """

    log = Logger()

    def __init__(
        self,
        hub: Hub | IGateway,
        motd_path: str | None = None,
        read: Callable[..., Deferred[tuple[str, ...]]] = deferToThread,
    ) -> None:
        self.gateway: IGateway = IGateway(hub)
        self.hub = self.gateway.hub
        self.motd_path = motd_path
        self.read = read

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        if isinstance(addr, (IPv4Address, IPv6Address)):
            ip = ip_address(addr.host)
            if ip is None or not ip.is_loopback:
                self.log.warn("Refused an admin console connection from {host}", host=addr.host)
                return Refusal(b"the admin console takes local connections only\r\n")
        console = ConsoleProtocol()
        console.factory = self
        return console
