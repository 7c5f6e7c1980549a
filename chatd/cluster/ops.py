# -*- test-case-name: tests.test_cluster_ops -*-
"""
Operations: the entries of a cluster's log, which are requests
(L{chatd.requests}) with who made them, by field name, in a format that has
a version.

Format 2 (this one) is a JSON object::

    {"v": 2, "op": "join", "node": "9f0c…", "ref": 7, "ts": 1700000000.5,
     "sid": "9f0c….3", "room": "#den", "key": null}

C{op} is the request's type, C{node} the node that made it, C{ref} that
node's number for it (to answer the one waiting), C{ts} when it was made,
C{sid} the session it was made for (none for the server's own); the other
keys are the request's fields by their wire names.  Format 1, of earlier
releases, was a positional JSON list; it is still read, so that a log
written by them can be replayed.  A node that meets a format it does not
know raises L{UnknownFormat} rather than guess.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from chatd.requests import SERVER_REQUESTS, USER_REQUESTS, Request, to_wire, wire_name

FORMAT = 2
"""The format this node writes."""

READS = frozenset({1, 2})
"""The formats this node reads."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello(Request):
    """
    A node joins the cluster; C{responder}, if any, sends it a snapshot.
    """

    type = "hello"
    responder: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot(Request):
    """
    The snapshot for node C{target} is as of this operation.
    """

    type = "snapshot"
    target: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Gone(Request):
    """
    Node C{gone} and its users are gone (it said so, or stopped answering).
    """

    type = "gone"
    gone: str
    reason: str


KINDS: dict[str, type[Request]] = {
    **USER_REQUESTS,
    **SERVER_REQUESTS,
    **{r.type: r for r in (Hello, Snapshot, Gone)},
}
_ENVELOPE = frozenset({"v", "op", "node", "ref", "ts", "sid"})


class UnknownFormat(ValueError):
    """
    An operation in a format this node cannot read.
    """

    def __init__(self, version: object) -> None:
        super().__init__(f"operation format {version!r}")
        self.version = version


@dataclass(frozen=True, slots=True)
class Operation:
    """
    One entry of the log: C{request}, made by C{node} (its number C{ref})
    at C{ts} for session C{sid}.
    """

    node: str
    ref: int
    ts: float
    sid: str | None
    request: Request


def encode(operation: Operation) -> str:
    """
    C{operation} as a log entry, in format L{FORMAT}.
    """
    entry: dict[str, Any] = {
        "v": FORMAT,
        "op": operation.request.type,
        "node": operation.node,
        "ref": operation.ref,
        "ts": operation.ts,
    }
    if operation.sid is not None:
        entry["sid"] = operation.sid
    entry.update(to_wire(operation.request))
    return json.dumps(entry, separators=(",", ":"))


def decode(raw: str) -> Operation:
    """
    The operation in log entry C{raw}; raise L{UnknownFormat} for a format
    this node does not read, and C{ValueError}, C{KeyError} or C{TypeError}
    for a malformed one.
    """
    entry = json.loads(raw)
    if isinstance(entry, list):
        return _decode_format_1(entry)
    if not isinstance(entry, dict):
        raise ValueError("an operation is a JSON object")
    if entry.get("v") != FORMAT:
        raise UnknownFormat(entry.get("v"))
    return _decode_entry(entry, entry.get("sid"))


def _decode_entry(entry: dict[str, Any], sid: str | None) -> Operation:
    kind = KINDS[entry["op"]]
    fields = {
        f.name: entry[wire_name(f)]
        for f in dataclasses.fields(kind)
        if wire_name(f) in entry and wire_name(f) not in _ENVELOPE
    }
    return Operation(entry["node"], entry["ref"], entry["ts"], sid, kind(**fields))


_FORMAT_1: dict[str, tuple[bool, tuple[str, ...]]] = {
    "connect": (True, ("nick", "account")),
    "disconnect": (True, ("reason",)),
    "nick": (True, ("nick",)),
    "identify": (True, ("nick", "account")),
    "registered": (True, ("nick",)),
    "join": (True, ("room", "key")),
    "part": (True, ("room", "reason")),
    "topic": (True, ("room", "text")),
    "op": (True, ("room", "nick", "op")),
    "kick": (True, ("room", "nick", "reason")),
    "ban": (True, ("room", "nick", "ban")),
    "mode": (True, ("room", "mode", "key")),
    "invite": (True, ("room", "nick")),
    "kill": (True, ("nick", "reason")),
    "drop": (False, ("nick", "by", "reason")),
    "remove": (False, ("nick", "room", "by", "reason")),
    "announce": (False, ("text",)),
    "say": (True, ("room", "text", "say")),
    "private": (True, ("to", "text")),
    "hello": (False, ("responder",)),
    "snapshot": (False, ("target",)),
    "gone": (False, ("gone", "reason")),
}
"""Format 1: C{[kind, node, ref, ts, sid?, *arguments]}: whether a kind has
a session, and its arguments by their names in format 2."""

_RENAMED = {
    "identify": "identified",
    "private": "msg",
    "drop": "server_kill",
    "remove": "server_kick",
}
_FLAGGED = {"op": ("deop", "op"), "ban": ("unban", "ban"), "say": ("say", "me")}
"""Format 1 kinds whose last argument, a flag, chose between two requests."""


def _decode_format_1(entry: list[Any]) -> Operation:
    kind, node, ref, ts, *args = entry
    for_session, names = _FORMAT_1[kind]
    sid = args.pop(0) if for_session else None
    fields = dict(zip(names, args, strict=True))
    if kind in _FLAGGED:
        kind = _FLAGGED[kind][bool(fields.pop(kind))]
    op = {"v": FORMAT, "op": _RENAMED.get(kind, kind), "node": node, "ref": ref, "ts": ts}
    return _decode_entry(op | fields, sid)
