# -*- test-case-name: tests.test_irc -*-
"""
How the IRC door writes the hub's room events: as the lines IRC clients
know (C{:nick!user@host PRIVMSG #room :text}, C{JOIN}, C{QUIT}, C{MODE}),
the same for every recipient with the same capabilities, so that the hub's
fan-out encodes each event once per flavour (L{IrcEncoder}).

Events meant for one user (welcomes, member lists, errors) are not encoded
here: the encoder hands them back unchanged and the connection renders
them itself, as numerics addressed to its own nickname.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from zope.interface import implementer

from chatd import model
from chatd.doors.irc.wire import clean, format_tags, text_line, text_lines
from chatd.hub import User
from chatd.interfaces import IEncoder
from chatd.model import fold

if TYPE_CHECKING:
    from chatd.hub import Hub

HOSTS = {"line": "line.chatd", "websocket": "web.chatd", "irc": "irc.chatd"}
"""The host part of the mask of a user on each door (a real address is
nobody's business); a user of another cluster node is at C{chatd}."""
ACTION = "\x01ACTION "


class SaidLine(bytes):
    """
    A room message's line, which its sender sees only with C{echo-message}.
    """

    sender: User | None  # who said it


class QuitLine(bytes):
    """
    A user's C{QUIT}: the hub tells its departure once per room, IRC once.
    """

    key: tuple[str, str | None]


def mask(user: User, nick: str | None = None) -> str:
    """
    C{nick!user@host} for C{user}, whichever door it came through (as
    C{nick}, if given: the name it had).
    """
    client = user.client
    ident = getattr(client, "ident", None) or nick or user.nick
    door = getattr(client, "door", None)
    host = HOSTS.get(door.name, "chatd") if door is not None else "chatd"
    return f"{nick or user.nick}!{ident}@{host}"


def server_time(ts: float) -> str:
    """
    The C{time} tag's value: ISO 8601 in UTC with milliseconds.
    """
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


def message_text(message: model.Message) -> str:
    """
    What a room message says on IRC: a C{/me} is a CTCP ACTION.
    """
    text = clean(message.text)
    return f"{ACTION}{text}\x01" if message.action else text


@implementer(IEncoder)
class IrcEncoder:
    """
    Writes room events for connections with one set of tag capabilities:
    C{server-time} (the time a message was sent) and C{account-tag} (the
    account of its sender).
    """

    def __init__(
        self,
        hub: Hub,
        server_name: str,
        server_time: bool = False,
        account_tag: bool = False,
    ) -> None:
        self.hub = hub
        self.server_name = server_name
        self.server_time = server_time
        self.account_tag = account_tag

    def encode(self, event: model.Event) -> object:
        render = _RENDER.get(type(event))
        if render is None:
            return event  # for one user: the connection renders it
        return render(self, event)

    def source(self, nick: str, now: str | None = None) -> tuple[str, dict[str, str]]:
        """
        The mask of C{nick} (known C{now} by that name, if it changed), and
        the tags of a line from it.
        """
        user = self.hub.users.get(fold(now or nick))
        leaving = self.hub.leaving
        if user is None and leaving is not None and fold(leaving.nick) == fold(nick):
            user = leaving  # telling its departure: no longer among the users
        if user is None:
            return f"{nick}!{nick}@chatd", {}
        tags = {"account": user.account} if self.account_tag and user.account else {}
        return mask(user, nick), tags

    def from_user(self, nick: str, command: str, *params: str, now: str | None = None) -> bytes:
        source, tags = self.source(nick, now)
        return (format_tags(tags) + text_line(source, command, *params)).encode("utf-8")

    def message(self, message: model.Message) -> bytes:
        source, tags = self.source(message.sender)
        if self.server_time:
            tags["time"] = server_time(message.ts)
        command = "NOTICE" if message.notice else "PRIVMSG"
        text = text_lines(source, command, message.room, message_text(message), format_tags(tags))
        said = SaidLine(text.encode("utf-8"))
        said.sender = self.hub.users.get(fold(message.sender))
        return said

    def parted(self, event: model.Parted) -> bytes:
        if not event.quit:
            return self.from_user(event.nick, "PART", event.room, clean(event.reason or ""))
        reason = "Quit: " + clean(event.reason) if event.reason else "Quit"
        quit = QuitLine(self.from_user(event.nick, "QUIT", reason))
        quit.key = (fold(event.nick), event.reason)
        return quit

    def presence(self, event: model.Presence) -> bytes:
        """
        A big room's coalesced joins and parts: as C{JOIN} and C{PART}
        lines when it names them, else as a notice of the counts.
        """
        if event.joined is None:
            note = (
                f"{event.joins} joined, {event.parts} left {event.room}"
                f" ({event.count} users); /names {event.room} lists them"
            )
            return text_line(self.server_name, "NOTICE", event.room, note).encode("utf-8")
        lines = [self.from_user(n, "JOIN", event.room) for n in event.joined]
        lines += [self.from_user(n, "PART", event.room, "") for n in event.left or ()]
        return b"".join(lines)

    def kicked(self, event: model.Kicked) -> bytes:
        return self.from_user(
            event.by, "KICK", event.room, event.nick, clean(event.reason or event.by)
        )


_RENDER: dict[type, Callable[[IrcEncoder, Any], object]] = {
    model.Message: IrcEncoder.message,
    model.Joined: lambda enc, e: enc.from_user(e.nick, "JOIN", e.room),
    model.Parted: IrcEncoder.parted,
    model.NickChanged: lambda enc, e: enc.from_user(e.old, "NICK", e.new, now=e.new),
    model.TopicChanged: lambda enc, e: enc.from_user(e.by, "TOPIC", e.room, clean(e.topic)),
    model.Kicked: IrcEncoder.kicked,
    model.BanChanged: lambda enc, e: enc.from_user(
        e.by, "MODE", e.room, "+b" if e.banned else "-b", ban_mask(e.nick)
    ),
    model.OpChanged: lambda enc, e: enc.from_user(
        e.by, "MODE", e.room, "+o" if e.op else "-o", e.nick
    ),
    model.VoiceChanged: lambda enc, e: enc.from_user(
        e.by, "MODE", e.room, "+v" if e.voiced else "-v", e.nick
    ),
    model.ModeChanged: lambda enc, e: enc.from_user(e.by, "MODE", e.room, *e.change.split()),
    model.Presence: IrcEncoder.presence,
}


def ban_mask(account: str) -> str:
    """
    The mask standing for a ban of C{account}: chatd bans accounts, and
    an account is named after its nickname.
    """
    return f"{account}!*@*"
