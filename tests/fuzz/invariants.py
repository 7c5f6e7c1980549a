"""
The hub's invariants: what must hold of a hub's data whatever happened
to it.  The fuzzer checks them (L{check_hub}) after every step of every
run; any test may, as they only read the hub.

The data model, and what holds of it:

  - Users: C{hub.users} maps the folded form (L{chatd.model.fold}) of
    each signed-on user's nickname to its C{User}, whose nickname is
    valid.
  - Rooms: C{hub.rooms} maps each folded room name to its C{Room}, whose
    name is valid and topic bounded.  #lobby is always there, and is the
    only room that may be empty.
  - Membership is held on both sides, which mirror each other: a user's
    C{rooms} (by folded name) and a room's C{members}.  Nobody is in more
    than C{hub.max_rooms_per_user} rooms.
  - Accounts: C{hub.accounts} holds the registered (folded) nicknames.
    Whoever holds a registered nickname is identified for it
    (C{user.account}), and every account a user is identified for exists.
  - Moderation: a room's guest operators are members; its modes are known
    ones, sorted, none twice; its key, if any, is printable, without a
    space and not too long; its bans and invitations are bounded.
  - Registration: a room has an owner exactly if it is registered
    (C{hub.registered}, by folded name), never #lobby; its owner is an
    account; only a registered room has operators by account; and a
    registered room's settings are its registration's.
  - The store: the hub writes through, so its registrations and accounts
    are the store's (a C{MemoryStore}, whose own records are read).

A broken invariant raises L{FuzzFailure} saying which, with the data.
"""

from __future__ import annotations

from typing import Any

from chatd.hub import MAX_BANS, MAX_INVITES, MAX_KEY_LENGTH, MODES, Hub, Room
from chatd.model import LOBBY, MAX_LIMIT, MAX_TOPIC_LENGTH, check_nick, check_room, fold


class FuzzFailure(AssertionError):
    """
    An invariant of the hub or of a door's output was broken.
    """


def expect(condition: object, message: str, *details: object) -> None:
    """
    Raise L{FuzzFailure} with C{message} (and C{details}) unless C{condition}.
    """
    if not condition:
        raise FuzzFailure(" ".join([message, *(repr(d)[:500] for d in details)]))


def check_hub(hub: Hub) -> None:
    """
    The hub's indexes agree: users by folded nick, rooms by folded name;
    each user's rooms and each room's members mirror each other; no room
    is empty but the lobby, and nobody is in more rooms than allowed.

    Accounts and moderation too: whoever holds a registered nickname is
    identified for it, and every account a user holds exists; a room's
    guest operators are members; its modes, key, bans and invitations are
    well-formed and bounded; a room has an owner exactly if it is
    registered, and then its settings are the registered ones (and the
    hub's registrations and accounts are the store's).
    """
    lobby = hub.rooms.get(fold(LOBBY))
    expect(lobby is not None and lobby.name == LOBBY, "#lobby is missing", hub.rooms)
    for key, user in hub.users.items():
        expect(key == fold(user.nick), "a user under the wrong key", key, user)
        check_nick(user.nick)
        expect(len(user.rooms) <= hub.max_rooms_per_user, "a user in too many rooms", user)
        if key in hub.accounts:
            expect(user.account == key, "a registered nick held without its account", user)
        expect(user.account is None or user.account in hub.accounts, "no such account", user)
        for name, room in user.rooms.items():
            expect(hub.rooms.get(name) is room, "a user in a room the hub lost", user, name)
            expect(user in room.members, "a user's room without the user", user, name)
    for key, room in hub.rooms.items():
        expect(key == fold(room.name), "a room under the wrong key", key, room.name)
        check_room(room.name)
        expect(room.members or key == fold(LOBBY), "an empty room", room.name)
        expect(len(room.topic) <= MAX_TOPIC_LENGTH, "an overlong topic", room.name)
        for member in room.members:
            expect(hub.users.get(fold(member.nick)) is member, "a member who left", member)
            expect(member.rooms.get(key) is room, "a member without the room", member, key)
        check_room_rules(hub, key, room)
    store: Any = hub.store  # a MemoryStore
    expect(hub.registered == store._records, "registrations differ from the store's")
    expect(hub.accounts == set(store._accounts), "accounts differ from the store's")


def check_room_rules(hub: Hub, key: str, room: Room) -> None:
    """
    One room's operators, modes, key, bans and registration (L{check_hub}).
    """
    expect(room.guest_ops <= room.members.keys(), "a guest operator not in the room", room.name)
    expect(room.voiced <= room.members.keys(), "a voiced user not in the room", room.name)
    expect(room.limit is None or 1 <= room.limit <= MAX_LIMIT, "a bad limit", room.limit)
    expect(room.modes == "".join(sorted(set(room.modes))), "unsorted modes", room.modes)
    expect(set(room.modes) <= set(MODES), "an unknown mode", room.modes)
    key_ok = room.key is None or (
        0 < len(room.key) <= MAX_KEY_LENGTH and room.key.isprintable() and " " not in room.key
    )
    expect(key_ok, "a bad room key", room.key)
    expect(len(room.bans) <= MAX_BANS and len(room.invites) <= MAX_INVITES, "too many bans")
    record = hub.registered.get(key)
    if room.owner is None:
        expect(record is None, "a registered room without its owner", room.name)
        expect(not room.op_accounts, "operators by account in an unregistered room", room.name)
    else:
        expect(key != fold(LOBBY), "#lobby has an owner", room.owner)
        expect(room.owner in hub.accounts, "a room owned by no account", room.owner)
        expect(record == room.record(), "a room unlike its registration", record, room.record())
