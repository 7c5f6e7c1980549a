# -*- test-case-name: tests.test_cluster -*-
"""
Snapshots: a replica of the hub as plain data, for a node that is starting.
"""

from __future__ import annotations

from typing import Any

from chatd.hub import Hub, Room, User
from chatd.interfaces import IClient
from chatd.model import LOBBY, RoomRecord, fold


def take(hub: Hub, seq: int, nodes: set[str]) -> dict[str, Any]:
    """
    C{hub}'s replica as of operation C{seq} of the log, whose live nodes
    are C{nodes}.
    """
    return {
        "seq": seq,
        "last_id": hub.last_id,
        "nodes": sorted(nodes),
        "accounts": sorted(hub.accounts),
        "registered": [r.to_list() for r in hub.registered.values()],
        "users": [[u.sid, u.nick, u.account] for u in hub.users.values()],
        "opers": [u.sid for u in hub.users.values() if u.oper],
        "rooms": [
            [
                r.name,
                [m.sid for m in r.members],
                [m.sid for m in r.guest_ops],
                list(r.invites),
                r.topic,
                r.topic_by,
                r.modes,
                r.key,
                r.owner,
                sorted(r.op_accounts),
                sorted(r.bans),
                r.limit,
                r.topic_at,
                r.created,
                [m.sid for m in r.voiced],
            ]
            for r in hub.rooms.values()
        ],
    }


def restore(hub: Hub, data: dict[str, Any], elsewhere: IClient) -> dict[str, User]:
    """
    Replace C{hub}'s replica by C{data} from L{take}, every user connected
    C{elsewhere}; return the users by session id.
    """
    last_id = data["last_id"]
    hub.accounts = set(data["accounts"])
    hub.registered = {fold(r[0]): RoomRecord.from_list(r) for r in data["registered"]}
    sessions: dict[str, User] = {}
    hub.users, hub.rooms = {}, {}
    for sid, nick, account in data["users"]:
        user = User(nick, elsewhere, account, last_id)
        user.sid = sid
        hub.users[fold(nick)] = sessions[sid] = user
    for sid in data.get("opers", ()):  # none in a snapshot from before OPER
        sessions[sid].oper = True
    for entry in data["rooms"]:
        name, members, guest_ops, invites, topic, by, modes, key, owner, ops, bans, *rest = entry
        # A snapshot from a chatd before limits, voices and mode n has no rest.
        limit, topic_at, created, voiced = rest or (None, 0.0, 0.0, [])
        room = Room(name, created=created)
        room.topic, room.topic_by, room.modes, room.key = topic, by, modes, key
        if not rest:
            room.modes = "".join(sorted(modes + "n"))
        room.limit, room.topic_at = limit, topic_at
        room.owner, room.op_accounts, room.bans = owner, set(ops), set(bans)
        room.invites = dict.fromkeys(invites)
        for sid in members:
            user = sessions[sid]
            room.members[user] = None
            user.rooms[fold(name)] = room
        room.guest_ops = {sessions[sid] for sid in guest_ops}
        room.voiced = {sessions[sid] for sid in voiced}
        hub.rooms[fold(name)] = room
    lobby = fold(LOBBY)
    hub.rooms.setdefault(lobby, Room(LOBBY, hub.registered.get(lobby)))
    hub.last_id = last_id
    return sessions
