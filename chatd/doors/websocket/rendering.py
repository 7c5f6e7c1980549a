# -*- test-case-name: tests.test_websocket -*-
"""
How the WebSocket door writes events: each one a JSON object, framed once
for all its recipients.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from autobahn.websocket.protocol import PreparedMessage
from zope.interface import implementer

from chatd.interfaces import IEncoder
from chatd.model import (
    AccountChanged,
    BanChanged,
    Error,
    Event,
    HistoryPage,
    Invited,
    Joined,
    Kicked,
    Message,
    ModeChanged,
    Modes,
    NickChanged,
    Notice,
    OpChanged,
    Parted,
    PrivateEcho,
    PrivateHistory,
    PrivateMessage,
    RoomList,
    Topic,
    TopicChanged,
    UserList,
    Welcome,
)


def _message(m: Message) -> dict[str, Any]:
    frame = {
        "type": "message",
        "room": m.room,
        "from": m.sender,
        "text": m.text,
        "ts": m.ts,
        "id": m.id,
    }
    if m.action:
        frame["action"] = True
    return frame


def _private(e: PrivateMessage) -> dict[str, Any]:
    return {
        "type": "private",
        "from": e.sender,
        "to": e.recipient,
        "text": e.text,
        "ts": e.ts,
        "id": e.id,
    }


def _welcome(e: Welcome) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "welcome", "nick": e.nick, "rooms": list(e.rooms)}
    if e.account:
        frame["account"] = e.account
    return frame


def _kicked(e: Kicked) -> dict[str, Any]:
    return {
        "type": "part",
        "room": e.room,
        "nick": e.nick,
        "reason": e.part_reason,
        "kicked_by": e.by,
    }


def _modes(e: Modes) -> dict[str, Any]:
    frame = {"type": "modes", "room": e.room, "modes": e.modes}
    if e.key:
        frame["key"] = e.key
    return frame


def _topic(e: Topic) -> dict[str, Any]:
    return {"type": "topic", "room": e.room, "topic": e.topic, "by": e.by}


def _error(e: Error) -> dict[str, Any]:
    frame = {"type": "error", "code": e.code, "message": e.message}
    if e.request is not None:
        frame["request"] = e.request
    return frame


def _parted(e: Parted) -> dict[str, Any]:
    frame = {"type": "part", "room": e.room, "nick": e.nick}
    if e.reason:
        frame["reason"] = e.reason
    return frame


_RENDER: dict[type, Callable[[Any], dict[str, Any]]] = {
    Welcome: _welcome,
    Message: _message,
    HistoryPage: lambda e: {
        "type": "history",
        "room": e.room,
        "messages": [_message(m) for m in e.messages],
        "more": e.more,
    },
    PrivateHistory: lambda e: {
        "type": "history",
        "with": e.other,
        "messages": [_private(m) for m in e.messages],
        "more": e.more,
    },
    PrivateMessage: _private,
    PrivateEcho: _private,
    Joined: lambda e: {"type": "join", "room": e.room, "nick": e.nick},
    Parted: _parted,
    NickChanged: lambda e: {"type": "nick", "old": e.old, "new": e.new},
    Topic: _topic,
    TopicChanged: _topic,
    UserList: lambda e: {
        "type": "users",
        "room": e.room,
        "nicks": list(e.nicks),
        "ops": list(e.ops),
    },
    Kicked: _kicked,
    BanChanged: lambda e: {
        "type": "ban" if e.banned else "unban",
        "room": e.room,
        "nick": e.nick,
        "by": e.by,
    },
    OpChanged: lambda e: {"type": "op", "room": e.room, "nick": e.nick, "by": e.by, "op": e.op},
    ModeChanged: lambda e: {"type": "mode", "room": e.room, "mode": e.change, "by": e.by},
    Modes: _modes,
    Invited: lambda e: {"type": "invite", "room": e.room, "by": e.by},
    AccountChanged: lambda e: {"type": e.what, "account": e.account},
    RoomList: lambda e: {
        "type": "rooms",
        "rooms": [{"room": r.room, "users": r.users, "topic": r.topic} for r in e.rooms],
    },
    Notice: lambda e: {"type": "server", "text": e.text},
    Error: _error,
}


def to_json(event: Event) -> bytes:
    """
    The JSON object (as UTF-8) that stands for C{event} on the wire.
    """
    frame = _RENDER[type(event)](event)
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@implementer(IEncoder)
class WebSocketEncoder:
    """
    Renders events as JSON text frames, framed once for every recipient:
    the payload is the whole frame's bytes (a server's frames are not
    masked, so one frame serves every connection).
    """

    def encode(self, event: Event) -> bytes:
        frame: bytes = PreparedMessage(to_json(event), False, False, True).payloadHybi
        return frame
