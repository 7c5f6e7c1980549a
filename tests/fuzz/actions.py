"""
The steps of a fuzz run (L{Action}s): input from a peer of either door
(random, mutated, with passwords, from an operator), connections made and
lost, peers that stop and start reading, storms, and time passing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol, cast

from chatd.doors.line import LineChatProtocol
from chatd.hub import ADMIN, OPERATOR
from chatd.model import LOBBY, fold
from chatd.testing import CLOSE, HANDSHAKE
from tests.fuzz.wire import Frame
from tests.fuzz.world import LineConnection, WebSocketConnection, World

# -- actions --------------------------------------------------------------------


class Action(Protocol):
    """
    One step of a run.
    """

    def run(self, world: World) -> None: ...


@dataclass(frozen=True)
class LineInput:
    """
    Bytes from a line peer (C{kind} says how they were made), in packets
    cut at C{cuts}.
    """

    slot: int
    data: bytes
    cuts: tuple[int, ...] = ()
    kind: str = "random"

    def run(self, world: World) -> None:
        world.send("line", self.slot, self.data, self.cuts)


@dataclass(frozen=True)
class WebSocketInput:
    """
    Frames from a WebSocket peer, in packets cut at C{cuts}.
    """

    slot: int
    frames: tuple[Frame, ...]
    cuts: tuple[int, ...] = ()
    kind: str = "request"

    def run(self, world: World) -> None:
        data = b"".join(frame.encode() for frame in self.frames)
        connection = cast(WebSocketConnection, world.send("websocket", self.slot, data, self.cuts))
        connection.malformed |= not all(frame.well_formed for frame in self.frames)
        connection.peer_closed |= any(frame.opcode == CLOSE for frame in self.frames)


@dataclass(frozen=True)
class WebSocketBytes:
    """
    Raw bytes from a WebSocket peer, frames or not.
    """

    slot: int
    data: bytes
    cuts: tuple[int, ...] = ()

    def run(self, world: World) -> None:
        connection = cast(
            WebSocketConnection, world.send("websocket", self.slot, self.data, self.cuts)
        )
        connection.malformed = True


@dataclass(frozen=True)
class SecretLine:
    """
    A line from a line peer that gives passwords (every one with L{MARK}
    in it) in a password's place, whole: C{form} is C{register},
    C{identify} (C{/identify PASSWORD}), C{identify_nick}, C{password}
    (C{/password OLD NEW}), C{password_half} (C{/password OLD}), or
    C{sign_on} (C{NICK PASSWORD} at the nickname prompt, if the peer is
    there, else C{identify_nick}; and the other way round).  With
    C{recall}, the nickname and the
    first password are those of an account the run registered (if any).

    Passwords are never mutated, and come on a line of their own (after a
    CR LF if the peer left a line, or a telnet command, unfinished), so
    that the server cannot take them for a nickname or for text to say.
    """

    slot: int
    form: str
    nick: str
    password: str
    other: str
    recall: int | None = None

    def run(self, world: World) -> None:
        connection = cast(LineConnection, world.open_peer("line", self.slot))
        chat = connection.session()
        telnet = connection.telnet
        fresh = (
            isinstance(chat, LineChatProtocol)
            and telnet is not None
            and telnet.state == "data"
            and not connection.pending
            and not chat._buffer
            and not chat._discarding
        )
        at_prompt = (
            fresh
            and isinstance(chat, LineChatProtocol)
            and chat.user is None
            and not chat._closing
            and not chat._inbox
            and chat._pending is None
        )
        user = None if chat is None else chat.user
        nick, password = world.recall(self.recall) or (self.nick, self.password)
        form = self.form
        if at_prompt and form.startswith("identify"):
            form = "sign_on"
        elif form == "sign_on" and not at_prompt:
            form = "identify_nick"
        line = {
            "register": f"/register {self.other}",
            "identify": f"/identify {password}",
            "identify_nick": f"/identify {nick} {password}",
            "password": f"/password {password} {self.other}",
            "password_half": f"/password {password}",
            "sign_on": f"{nick} {password}",
        }[form]
        if user is not None and form == "register":
            world.remember(user.nick, self.other.strip())
        elif user is not None and user.account and form == "password":
            world.remember(user.account, self.other.strip())
        world.tally["line"] += 1
        connection.feed(b"" if fresh else b"\r\n")
        connection.feed(line.encode() + b"\r\n")


@dataclass(frozen=True)
class SecretFrame:
    """
    A request from a WebSocket peer with passwords (marked) in their
    places: C{hello}, C{register}, C{identify} (a C{hello} from a peer
    yet to say it) or C{password}.  With C{recall}, its nickname (if it
    has one) and its first password are those of an account the run
    registered (if any).
    """

    slot: int
    request: tuple[tuple[str, str], ...]
    recall: int | None = None

    def run(self, world: World) -> None:
        request = dict(self.request)
        known = world.recall(self.recall)
        if known is not None:
            first = "old" if "old" in request else "password"
            if "nick" in request:
                request["nick"] = known[0]
            request[first] = known[1]
        connection = world.open_peer("websocket", self.slot)
        session = connection.session()
        user = None if session is None else session.user
        if user is None and request["type"] == "identify":
            request = {**request, "type": "hello", "nick": request.get("nick", "alice")}
        if user is not None and request["type"] == "register":
            world.remember(user.nick, request["password"])
        elif user is not None and user.account and request["type"] == "password":
            world.remember(user.account, request["new"])
        world.send("websocket", self.slot, Frame(json.dumps(request).encode()).encode())


@dataclass(frozen=True)
class Moderate:
    """
    A moderation request from a peer of C{door} that is an operator of a
    room (the C{pick}th such pair, if any; else from C{slot}), about
    another member (or, for C{invite} and C{ban}, another user): C{verb}
    is C{op}, C{deop}, C{kick}, C{ban}, C{unban}, C{mode}, C{invite},
    C{kill} or C{topic}, with C{text} as its reason or topic and C{change}
    and C{key} for C{mode}.  Random requests seldom come from an operator.
    """

    door: str
    slot: int
    pick: int
    verb: str
    text: str
    change: str
    key: str

    def run(self, world: World) -> None:
        hub = world.hub
        candidates = [
            (connection, room)
            for connection in world.slots[self.door]
            if not connection.closing
            for session in [connection.session()]
            if session is not None and session.user is not None and not session._closing
            for room in session.user.rooms.values()
            if room.rank(session.user, hub.admins) >= (ADMIN if self.verb == "kill" else OPERATOR)
        ]
        if not candidates:
            connection = world.open_peer(self.door, self.slot)
            session = connection.session()
            user = None if session is None else session.user
            room_name = LOBBY if user is None or not user.rooms else next(iter(user.rooms))
            room = hub.rooms.get(fold(room_name))
        else:
            connection, room = candidates[self.pick % len(candidates)]
        members = [] if room is None else [m.nick for m in room.members]
        others = [nick for nick in (u.nick for u in hub.users.values()) if nick not in members]
        pool = others if self.verb in ("invite", "ban") and others else members or ["nobody"]
        target = pool[self.pick % len(pool)]
        name = LOBBY if room is None else room.name
        if self.door == "line":
            line = {
                "kick": f"/kick {name} {target} {self.text}",
                "mode": f"/mode {name} {self.change} {self.key}",
                "invite": f"/invite {target} {name}",
                "kill": f"/kill {target} {self.text}",
                "topic": f"/topic {name} {self.text}",
            }.get(self.verb, f"/{self.verb} {name} {target}")
            data = line.encode("utf-8", "surrogatepass") + b"\r\n"
        else:
            request = {"type": self.verb, "room": name, "nick": target}
            if self.verb in ("kick", "kill", "topic"):
                request["reason" if self.verb != "topic" else "text"] = self.text
            elif self.verb == "mode":
                request.update(mode=self.change, key=self.key)
            data = Frame(json.dumps(request).encode()).encode()
        world.tally[self.door] += 1
        connection.feed(data)


@dataclass(frozen=True)
class Connect:
    """
    A new connection in C{slot} (the old one goes away), signing on as
    C{nick} if given; a WebSocket one sends C{handshake}.
    """

    door: str
    slot: int
    nick: str | None = None
    handshake: bytes = HANDSHAKE

    def run(self, world: World) -> None:
        slot = self.slot % len(world.slots[self.door])
        world.connect(self.door, slot, self.nick, self.handshake)


@dataclass(frozen=True)
class Disconnect:
    """
    The peer in C{slot} goes away (or the network finishes closing it).
    """

    door: str
    slot: int

    def run(self, world: World) -> None:
        world.peer(self.door, self.slot).leave()


@dataclass(frozen=True)
class Reading:
    """
    The peer in C{slot} stops reading (its transport's buffer fills, which
    pauses the server's output) or reads again (which resumes it), maybe
    for only C{budget} bytes.
    """

    door: str
    slot: int
    reading: bool
    budget: int | None = None

    def run(self, world: World) -> None:
        connection = world.peer(self.door, self.slot)
        if not connection.lost:
            connection.transport.peer_reads(self.reading, self.budget)


@dataclass(frozen=True)
class Storm:
    """
    The peer in C{slot} says C{count} things of about C{size} bytes in
    #lobby, all in one packet (to fill other peers' buffers; not counted
    as fuzz inputs).
    """

    door: str
    slot: int
    count: int
    size: int

    def run(self, world: World) -> None:
        texts = [f"{n} " + "x" * self.size for n in range(self.count)]
        if self.door == "line":
            data = b"".join(text.encode() + b"\r\n" for text in texts)
        else:
            requests = [{"type": "say", "room": LOBBY, "text": text} for text in texts]
            data = b"".join(Frame(json.dumps(r).encode()).encode() for r in requests)
        world.tally["storm messages"] += self.count
        world.send(self.door, self.slot, data, counted=False)


@dataclass(frozen=True)
class Advance:
    """
    C{seconds} pass.
    """

    seconds: float

    def run(self, world: World) -> None:
        world.advance(self.seconds)
