# -*- test-case-name: tests.test_line -*-
"""
How the line door writes events: each one as lines of UTF-8 text ended by
CR LF, with what could steer a terminal made harmless.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from zope.interface import implementer

from chatd import model
from chatd.interfaces import IEncoder
from chatd.model import fold


def _terminal_safe_table() -> dict[int, str]:
    """
    Map every character that could drive a terminal to a visible stand-in:
    C0 controls (but tab) as ^X, DEL as ^?, C1 controls and bidirectional
    overrides as U+FFFD, line separators as spaces.
    """
    table: dict[int, str] = {c: "^" + chr(c + 64) for c in range(32) if c != 9}
    table[0x7F] = "^?"
    table.update({c: "\ufffd" for c in range(0x80, 0xA0)})
    for c in (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)):
        table[c] = "\ufffd"
    table[0x2028] = table[0x2029] = " "
    return table


_TERMINAL_SAFE = _terminal_safe_table()


def safe(text: str) -> str:
    """
    C{text} with nothing in it that a terminal would act on.
    """
    return text.translate(_TERMINAL_SAFE)


def as_lines(*lines: str) -> bytes:
    return "".join(safe(line) + "\r\n" for line in lines).encode("utf-8", "replace")


def _said(message: model.Message) -> str:
    if message.notice:
        return f"[{message.room}] -{message.sender}- {message.text}"
    if message.action:
        return f"[{message.room}] * {message.sender} {message.text}"
    return f"[{message.room}] <{message.sender}> {message.text}"


def _topic(event: model.Topic) -> str:
    if isinstance(event, model.TopicChanged):
        if event.topic:
            return f"*** {event.by} changed the topic of {event.room} to: {event.topic}"
        return f"*** {event.by} cleared the topic of {event.room}"
    if event.topic:
        return f"*** Topic for {event.room}: {event.topic} (set by {event.by})"
    return f"*** No topic is set for {event.room}"


def _stamp(ts: float) -> str:
    """
    C{[12:01] }, with the date for messages from another day than today.
    """
    when = time.localtime(ts)
    if time.strftime("%Y%m%d", when) == time.strftime("%Y%m%d"):
        return time.strftime("[%H:%M] ", when)
    return time.strftime("[%Y-%m-%d %H:%M] ", when)


def _history(page: model.HistoryPage) -> bytes:
    if not page.messages:
        return as_lines(f"*** No history for {page.room}")
    stamped = [_stamp(m.ts) + _said(m) for m in page.messages]
    return as_lines(
        f"*** Last {_count(len(stamped), 'message')} of {page.room}:",
        *stamped,
        _history_end(page.room, len(stamped), page.messages[0].id, page.more),
    )


def _private_history(page: model.PrivateHistory) -> bytes:
    if not page.messages:
        return as_lines(f"*** No private messages with {page.other}")
    stamped = [
        _stamp(m.ts)
        + (f"-> *{m.recipient}* " if fold(m.sender) == fold(page.nick) else f"*{m.sender}* ")
        + m.text
        for m in page.messages
    ]
    return as_lines(
        f"*** Last {_count(len(stamped), 'private message')} with {page.other}:",
        *stamped,
        _history_end(page.other, len(stamped), page.messages[0].id, page.more),
    )


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" + ("" if n == 1 else "s")


def _history_end(target: str, count: int, oldest: int, more: bool) -> str:
    if more:
        return f"*** End of history; older: /history {target} {count} {oldest}"
    return "*** End of history"


def _users(event: model.UserList) -> bytes:
    ops, voiced = set(event.ops), set(event.voiced)
    nicks = ", ".join(("@" + n if n in ops else "+" + n if n in voiced else n) for n in event.nicks)
    if event.page is None:
        return as_lines(f"*** Users in {event.room} ({len(event.nicks)}): {nicks}")
    page = f"*** Users in {event.room} ({event.count}), page {event.page} of {event.pages}"
    more = f" (more: /who {event.room} {event.page + 1})" if event.page < event.pages else ""
    return as_lines(f"{page}: {nicks or '-'}{more}")


def _presence(event: model.Presence) -> bytes:
    line = (
        f"*** {event.joins} joined, {event.parts} left {event.room} ({_count(event.count, 'user')})"
    )
    if event.joined is not None:
        names = [f"+{n}" for n in event.joined] + [f"-{n}" for n in event.left or ()]
        line += ": " + " ".join(names)
    return as_lines(line)


def _account(event: model.AccountChanged) -> bytes:
    if event.what == "registered":
        return as_lines(f"*** {event.account} is now registered to you; you are identified")
    if event.what == "oper":
        return as_lines(f"*** You are now a server operator (as {event.account})")
    if event.what == "identified":
        return as_lines(f"*** You are now identified as {event.account}")
    return as_lines(f"*** The password of {event.account} was changed")


def _modes(event: model.Modes) -> bytes:
    if not event.modes:
        return as_lines(f"*** {event.room} has no modes set")
    settings = [f"key: {event.key}"] if event.key else []
    if event.limit:
        settings.append(f"limit: {event.limit}")
    detail = f" ({', '.join(settings)})" if settings else ""
    return as_lines(f"*** Modes of {event.room}: {event.modes}{detail}")


def _rooms(event: model.RoomList) -> bytes:
    rows = [
        f"***   {r.room}  {r.users} user{'' if r.users == 1 else 's'}"
        + (f"  {r.topic}" if r.topic else "")
        for r in event.rooms
    ]
    return as_lines(f"*** {len(rows)} room{'' if len(rows) == 1 else 's'}:", *rows)


_RENDER: dict[type, Callable[[Any], bytes]] = {
    model.Welcome: lambda e: as_lines(
        f"*** Welcome, {e.nick}! You are in {', '.join(e.rooms) or 'no room'}."
        " Type /help for commands." + (" You are identified." if e.account else "")
    ),
    model.Message: lambda e: as_lines(_said(e)),
    model.HistoryPage: _history,
    model.PrivateMessage: lambda e: as_lines(
        f"-{e.sender}- {e.text}" if e.notice else f"*{e.sender}* {e.text}"
    ),
    model.PrivateEcho: lambda e: as_lines(f"-> *{e.recipient}* {e.text}"),
    model.Joined: lambda e: as_lines(f"*** {e.nick} has joined {e.room}"),
    model.Parted: lambda e: as_lines(
        f"*** {e.nick} has left {e.room}" + (f" ({e.reason})" if e.reason else "")
    ),
    model.NickChanged: lambda e: as_lines(f"*** {e.old} is now known as {e.new}"),
    model.Topic: lambda e: as_lines(_topic(e)),
    model.TopicChanged: lambda e: as_lines(_topic(e)),
    model.UserList: _users,
    model.Presence: _presence,
    model.PrivateHistory: _private_history,
    model.Kicked: lambda e: as_lines(f"*** {e.nick} has left {e.room} ({e.part_reason})"),
    model.BanChanged: lambda e: as_lines(
        f"*** {e.by} banned {e.nick} from {e.room}"
        if e.banned
        else f"*** {e.by} lifted the ban on {e.nick} in {e.room}"
    ),
    model.OpChanged: lambda e: as_lines(
        f"*** {e.by} made {e.nick} an operator of {e.room}"
        if e.op
        else f"*** {e.by} took operator status in {e.room} from {e.nick}"
    ),
    model.VoiceChanged: lambda e: as_lines(
        f"*** {e.by} gave voice to {e.nick} in {e.room}"
        if e.voiced
        else f"*** {e.by} took voice in {e.room} from {e.nick}"
    ),
    model.ModeChanged: lambda e: as_lines(f"*** {e.by} set mode {e.change} on {e.room}"),
    model.Modes: _modes,
    model.Invited: lambda e: as_lines(f"*** {e.by} invites you to {e.room}; type /join {e.room}"),
    model.AccountChanged: _account,
    model.RoomList: _rooms,
    model.Notice: lambda e: as_lines(f"*** {e.text}"),
    model.InviteSent: lambda e: as_lines(f"*** {e.text}"),
    model.Error: lambda e: as_lines(f"!!! {e.message}"),
}


@implementer(IEncoder)
class LineEncoder:
    """
    Renders events as the contract's lines: UTF-8, each ended by CR LF.
    """

    def encode(self, event: model.Event) -> bytes:
        return _RENDER[type(event)](event)
