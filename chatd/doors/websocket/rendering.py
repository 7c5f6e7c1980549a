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

from chatd import model
from chatd.interfaces import IEncoder


def _message(m: model.Message) -> dict[str, Any]:
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
    if m.notice:
        frame["notice"] = True
    return frame


def _private(e: model.PrivateMessage) -> dict[str, Any]:
    frame = {
        "type": "private",
        "from": e.sender,
        "to": e.recipient,
        "text": e.text,
        "ts": e.ts,
        "id": e.id,
    }
    if e.notice:
        frame["notice"] = True
    return frame


def _welcome(e: model.Welcome) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "welcome", "nick": e.nick, "rooms": list(e.rooms)}
    if e.account:
        frame["account"] = e.account
    return frame


def _users(e: model.UserList) -> dict[str, object]:
    frame: dict[str, object] = {
        "type": "users",
        "room": e.room,
        "nicks": list(e.nicks),
        "ops": list(e.ops),
        "voiced": list(e.voiced),
    }
    if e.page is not None:
        frame.update(count=e.count, page=e.page, pages=e.pages)
    return frame


def _presence(e: model.Presence) -> dict[str, object]:
    frame: dict[str, object] = {
        "type": "presence",
        "room": e.room,
        "joins": e.joins,
        "parts": e.parts,
        "count": e.count,
    }
    if e.joined is not None:
        frame.update(joined=list(e.joined), left=list(e.left or ()))
    return frame


def _kicked(e: model.Kicked) -> dict[str, Any]:
    return {
        "type": "part",
        "room": e.room,
        "nick": e.nick,
        "reason": e.part_reason,
        "kicked_by": e.by,
    }


def _modes(e: model.Modes) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "modes", "room": e.room, "modes": e.modes}
    if e.key:
        frame["key"] = e.key
    if e.limit:
        frame["limit"] = e.limit
    return frame


def _topic(e: model.Topic) -> dict[str, Any]:
    return {"type": "topic", "room": e.room, "topic": e.topic, "by": e.by}


def _error(e: model.Error) -> dict[str, Any]:
    frame = {"type": "error", "code": e.code, "message": e.message}
    if e.request is not None:
        frame["request"] = e.request
    return frame


def _parted(e: model.Parted) -> dict[str, Any]:
    frame = {"type": "part", "room": e.room, "nick": e.nick}
    if e.reason:
        frame["reason"] = e.reason
    return frame


_RENDER: dict[type, Callable[[Any], dict[str, Any]]] = {
    model.Welcome: _welcome,
    model.Message: _message,
    model.HistoryPage: lambda e: {
        "type": "history",
        "room": e.room,
        "messages": [_message(m) for m in e.messages],
        "more": e.more,
    },
    model.PrivateHistory: lambda e: {
        "type": "history",
        "with": e.other,
        "messages": [_private(m) for m in e.messages],
        "more": e.more,
    },
    model.PrivateMessage: _private,
    model.PrivateEcho: _private,
    model.Joined: lambda e: {"type": "join", "room": e.room, "nick": e.nick},
    model.Parted: _parted,
    model.NickChanged: lambda e: {"type": "nick", "old": e.old, "new": e.new},
    model.Topic: _topic,
    model.TopicChanged: _topic,
    model.UserList: _users,
    model.Presence: _presence,
    model.Kicked: _kicked,
    model.BanChanged: lambda e: {
        "type": "ban" if e.banned else "unban",
        "room": e.room,
        "nick": e.nick,
        "by": e.by,
    },
    model.OpChanged: lambda e: {
        "type": "op",
        "room": e.room,
        "nick": e.nick,
        "by": e.by,
        "op": e.op,
    },
    model.VoiceChanged: lambda e: {
        "type": "voice",
        "room": e.room,
        "nick": e.nick,
        "by": e.by,
        "voiced": e.voiced,
    },
    model.ModeChanged: lambda e: {"type": "mode", "room": e.room, "mode": e.change, "by": e.by},
    model.Modes: _modes,
    model.Invited: lambda e: {"type": "invite", "room": e.room, "by": e.by},
    model.AccountChanged: lambda e: {"type": e.what, "account": e.account},
    model.RoomList: lambda e: {
        "type": "rooms",
        "rooms": [{"room": r.room, "users": r.users, "topic": r.topic} for r in e.rooms],
    },
    model.Notice: lambda e: {"type": "server", "text": e.text},
    model.InviteSent: lambda e: {"type": "server", "text": e.text},
    model.Error: _error,
}


def to_json(event: model.Event) -> bytes:
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

    def encode(self, event: model.Event) -> bytes:
        frame: bytes = PreparedMessage(to_json(event), False, False, True).payloadHybi
        return frame
