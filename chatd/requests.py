"""
Requests: what a user, the admin console or a cluster node asks of the hub,
as data.

Each request is one frozen dataclass whose fields are the fields of the
WebSocket request of the same C{type} (L{chatd.doors.websocket} decodes
frames into them with L{from_wire}, knowing nothing of each one).  The line
door parses its commands into the same classes; the hub applies them
(L{chatd.hub.Hub.apply}); a gateway carries them to it
(L{chatd.hub.gateway}), and in a cluster each one that changes shared state
is an entry of the operation log (L{chatd.cluster.ops}).  So a new request
is a class here, its rule in the hub, and its line command: the WebSocket
door and cluster replication need nothing more.

Fields are checked in the order they are declared, so a request with two
bad fields is refused for the first.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from chatd.errors import ChatError
from chatd.model import MAX_ID


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """
    One request.  C{type} is its name on the wire and in the log.
    """

    type: ClassVar[str]

    def replicated(self) -> bool:
        """
        Whether applying it changes the state every replica of the hub
        holds, so that a cluster must append it to its log; a query is
        answered where it is asked.
        """
        return True

    def check(self) -> None:
        """
        Refuse a request whose fields, each right alone, do not go together.
        """


# -- what users ask ---------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Say(Request):
    type = "say"
    room: str
    text: str
    notice: bool | None = None  # an IRC NOTICE: never answered automatically


@dataclass(frozen=True, slots=True, kw_only=True)
class Me(Request):
    """
    An action (C{/me waves}), said in a room.
    """

    type = "me"
    room: str
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Nick(Request):
    type = "nick"
    nick: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Join(Request):
    type = "join"
    room: str
    key: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Part(Request):
    type = "part"
    room: str
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Msg(Request):
    """
    A private message.
    """

    type = "msg"
    to: str
    text: str
    notice: bool | None = None  # an IRC NOTICE: never answered automatically


@dataclass(frozen=True, slots=True, kw_only=True)
class Who(Request):
    type = "who"
    room: str

    def replicated(self) -> bool:
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class Members(Request):
    """
    A page of a room's members (L{chatd.model.MEMBERS_PAGE} each), for
    rooms too big to list at once.
    """

    type = "members"
    room: str
    page: int | None = None

    def replicated(self) -> bool:
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class Rooms(Request):
    type = "rooms"

    def replicated(self) -> bool:
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class Topic(Request):
    """
    With no C{text}, ask for the topic; with text, set it (an empty or
    blank text clears it).
    """

    type = "topic"
    room: str
    text: str | None = None

    def replicated(self) -> bool:
        return self.text is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class History(Request):
    """
    A page of a room's stored messages, or (with C{with}) of the private
    messages with one user.
    """

    type = "history"
    limit: int | None = None
    before: int | None = None
    with_: str | None = field(default=None, metadata={"wire": "with"})
    room: str | None = None

    def replicated(self) -> bool:
        return False

    def check(self) -> None:
        if self.with_ is None and self.room is None:
            raise _mistyped("room", str)


@dataclass(frozen=True, slots=True, kw_only=True)
class Register(Request):
    """
    Register the user's nickname; once the account is stored, a
    L{Registered} change follows.
    """

    type = "register"
    password: str

    def replicated(self) -> bool:
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class Identify(Request):
    """
    Prove an account (by default the user's nickname); once the password
    is checked, an L{Identified} change follows.
    """

    type = "identify"
    password: str
    nick: str | None = None

    def replicated(self) -> bool:
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class Password(Request):
    """
    Change the password of the user's account (kept by the store only).
    """

    type = "password"
    old: str
    new: str

    def replicated(self) -> bool:
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class Op(Request):
    type = "op"
    room: str
    nick: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Deop(Request):
    type = "deop"
    room: str
    nick: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Voice(Request):
    """
    Let member C{nick} speak when the room is moderated (C{+m}).
    """

    type = "voice"
    room: str
    nick: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Devoice(Request):
    type = "devoice"
    room: str
    nick: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Kick(Request):
    type = "kick"
    reason: str | None = None
    room: str
    nick: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Ban(Request):
    type = "ban"
    room: str
    nick: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Unban(Request):
    type = "unban"
    room: str
    nick: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Mode(Request):
    """
    With no C{mode}, ask for the room's modes; otherwise change them: C{key}
    goes with C{+k}, C{limit} (the most members) with C{+l}.
    """

    type = "mode"
    mode: str | None = None
    key: str | None = None
    limit: int | None = None
    room: str

    def replicated(self) -> bool:
        return bool(self.mode)


@dataclass(frozen=True, slots=True, kw_only=True)
class Invite(Request):
    type = "invite"
    room: str
    nick: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Kill(Request):
    type = "kill"
    nick: str
    reason: str | None = None


# -- what the server itself asks --------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SignOn(Request):
    """
    A connection enters the hub as C{nick} (holding C{account}, proven).
    """

    type = "connect"
    nick: str
    account: str | None = None
    greets_itself: bool | None = None  # its door welcomes it: no #lobby, no motd


@dataclass(frozen=True, slots=True, kw_only=True)
class SignOff(Request):
    type = "disconnect"
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Oper(Request):
    """
    Become a server operator by proving the password of C{name}, an
    account among the server's admins (IRC's C{OPER}); the nickname and
    account stay as they are.  Once checked, an L{Opered} change follows.
    """

    type = "oper"
    name: str
    password: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Opered(Request):
    """
    The user proved the admin account C{account}: it is a server operator.
    """

    type = "opered"
    account: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Identified(Request):
    """
    The user proved C{account}, and takes the nickname C{nick}.
    """

    type = "identified"
    nick: str
    account: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Registered(Request):
    """
    The account C{nick} was stored; its user, if still there, holds it.
    """

    type = "registered"
    nick: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerKill(Request):
    """
    Disconnect C{nick} on the word of C{by} (the admin console).
    """

    type = "server_kill"
    nick: str
    by: str
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerKick(Request):
    """
    Put C{nick} out of C{room} on the word of C{by} (the admin console).
    """

    type = "server_kick"
    nick: str
    room: str
    by: str
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Announce(Request):
    """
    Tell every user C{text}, as a notice from the server.
    """

    type = "announce"
    text: str


USER_REQUESTS: dict[str, type[Request]] = {
    r.type: r
    for r in (
        *(Say, Me, Nick, Join, Part, Msg, Who, Members, Rooms, Topic, History, Register),
        *(Identify, Password, Op, Deop, Voice, Devoice, Kick, Ban, Unban, Mode, Invite, Kill),
        Oper,
    )
}
"""The requests a user may send, by C{type}."""

SERVER_REQUESTS: dict[str, type[Request]] = {
    r.type: r
    for r in (SignOn, SignOff, Identified, Opered, Registered, ServerKill, ServerKick, Announce)
}
"""The requests only the server makes, by C{type}."""


# -- fields by name ---------------------------------------------------------

R = TypeVar("R", bound=Request)


def wire_name(f: dataclasses.Field[Any]) -> str:
    """
    The name of a request field on the wire (C{with}, a Python keyword, is
    C{with_} in code).
    """
    name: str = f.metadata.get("wire", f.name)
    return name


def to_wire(request: Request) -> dict[str, Any]:
    """
    The fields of C{request} by wire name, leaving out those that are
    C{None}.
    """
    fields = {}
    for f in dataclasses.fields(request):
        value = getattr(request, f.name)
        if value is not None:
            fields[wire_name(f)] = value
    return fields


def from_wire(kind: type[R], data: dict[str, Any]) -> R:
    """
    Build a C{kind} from the fields of C{data}, by wire name, refusing any
    that is missing (and has no default) or of the wrong type: strings
    must be valid Unicode, integers (never booleans) from 1 to L{MAX_ID},
    which no store overflows on.  Other keys are ignored.
    """
    values = {}
    for attribute, name, expected, optional in _fields(kind):
        value = data.get(name)
        if value is None and optional:
            continue
        values[attribute] = _checked(name, value, expected)
    request = kind(**values)
    request.check()
    return request


_Fields = tuple[tuple[str, str, type, bool], ...]
_FIELDS: dict[type[Request], _Fields] = {}


def _fields(kind: type[Request]) -> _Fields:
    """
    Each field of C{kind}: its attribute, its wire name, its type (C{str}
    or C{int}) and whether it may be left out; worked out once per class,
    since every frame a WebSocket client sends is decoded with it.
    """
    fields = _FIELDS.get(kind)
    if fields is None:
        fields = _FIELDS[kind] = tuple(
            (f.name, wire_name(f), _kind(str(f.type)), f.default is None)
            for f in dataclasses.fields(kind)
        )
    return fields


def _kind(annotation: str) -> type:
    return bool if "bool" in annotation else int if "int" in annotation else str


def _checked(name: str, value: object, kind: type) -> object:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise _mistyped(name, kind)
    if isinstance(value, int) and not isinstance(value, bool) and not 1 <= value <= MAX_ID:
        raise ChatError("bad_request", f"Field {name!r} must be an integer from 1 to {MAX_ID}")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ChatError("bad_request", f"Field {name!r} is not valid Unicode") from None
    return value


def _mistyped(name: str, kind: type) -> ChatError:
    expected = {str: "a string", int: "an integer", bool: "true or false"}.get(kind, kind.__name__)
    return ChatError("bad_request", f"Field {name!r} must be {expected}")
