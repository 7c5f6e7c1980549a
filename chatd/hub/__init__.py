"""
The hub: chat state and rules, with no I/O of its own.

- L{chatd.hub.state}: users and rooms, and each room's rules;
- L{chatd.hub.hub}: the hub, which applies requests to that state;
- L{chatd.hub.accounts} and L{chatd.hub.passwords}: accounts and their
  passwords;
- L{chatd.hub.history}: pages of stored messages;
- L{chatd.hub.fanout}: writing events to users, the hot loop;
- L{chatd.hub.gateway}: how requests reach a lone hub.
"""

from chatd.hub.gateway import LocalGateway
from chatd.hub.hub import Hub
from chatd.hub.state import (
    ADMIN,
    MAX_BANS,
    MAX_INVITES,
    MAX_KEY_LENGTH,
    MEMBER,
    MODES,
    OPERATOR,
    OWNER,
    Room,
    User,
)

__all__ = [
    "ADMIN",
    "MAX_BANS",
    "MAX_INVITES",
    "MAX_KEY_LENGTH",
    "MEMBER",
    "MODES",
    "OPERATOR",
    "OWNER",
    "Hub",
    "LocalGateway",
    "Room",
    "User",
]
