"""
The steps of a fuzz run (L{Action}s): input from a peer of any door
(random, mutated, with passwords, from an operator; on IRC, followed by a
C{PING} probe), connections made and lost, peers that stop and start
reading, storms, and time passing.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Protocol, cast

from chatd.doors.line import LineChatProtocol
from chatd.hub import ADMIN, OPERATOR
from chatd.model import LOBBY, fold
from chatd.testing import CLOSE, HANDSHAKE
from tests.fuzz.wire import Frame
from tests.fuzz.world import (
    IRC_CAPS,
    IrcConnection,
    LineConnection,
    WebSocketConnection,
    World,
    irc_greeting,
)

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
class IrcInput:
    """
    Bytes from an IRC peer (C{kind} says how they were made), in packets
    cut at C{cuts}, from a new connection in C{slot} if C{fresh} (one yet
    to register); then, if C{probe}, a C{PING} it must answer
    (L{World.probe}).
    """

    slot: int
    data: bytes
    cuts: tuple[int, ...] = ()
    kind: str = "commands"
    probe: bool = True
    fresh: bool = False

    def run(self, world: World) -> None:
        if self.fresh:
            world.connect("irc", self.slot % len(world.slots["irc"]))
        connection = world.send("irc", self.slot, self.data, self.cuts)
        if self.probe:
            world.probe(connection)


@dataclass(frozen=True)
class IrcSecret:
    """
    Lines from an IRC peer that give a password (with L{MARK} in it) in a
    password's place, whole, after a CR LF if the peer left a line
    unfinished: C{form} is C{pass} (C{PASS}, then C{NICK} and C{USER} if
    the peer has not signed on), C{sasl} (C{CAP REQ :sasl}, C{AUTHENTICATE
    PLAIN} and the base64 of C{authzid NUL nick NUL password} in chunks of
    400 bytes, an exactly-400-byte last one followed by C{AUTHENTICATE +};
    then C{CAP END}, C{NICK} and C{USER} if C{sign_on}), C{register}
    (C{REGISTER * * PASSWORD}) or C{oper} (C{OPER NICK PASSWORD}).  With
    C{recall}, the nickname and password are those of an account the run
    registered (if any).  SASL comes from a new connection in C{slot} if
    the one there has signed on.  Then a C{PING} it must answer.
    """

    slot: int
    form: str
    nick: str
    password: str
    recall: int | None = None
    authzid: str = ""
    sign_on: bool = True

    def run(self, world: World) -> None:
        connection = cast(IrcConnection, world.open_peer("irc", self.slot))
        chat = connection.chat
        user = None if chat is None else chat.user
        if self.form == "sasl" and user is not None:
            slot = self.slot % len(world.slots["irc"])
            connection = cast(IrcConnection, world.connect("irc", slot))
            chat, user = connection.chat, None
        nick, password = world.recall(self.recall) or (self.nick, self.password)
        greeting = irc_greeting(nick, join=False).decode("utf-8", "surrogatepass").split("\r\n")
        greeting.pop()  # after the last CR LF
        lines = []
        if self.form == "pass":
            lines.append(f"PASS {password}")
            if user is None:
                lines += greeting
        elif self.form == "sasl":
            plain = f"{self.authzid}\0{nick}\0{password}".encode("utf-8", "surrogatepass")
            encoded = base64.b64encode(plain).decode()
            chunks = [encoded[i : i + 400] for i in range(0, len(encoded), 400)]
            if len(chunks[-1]) == 400:
                chunks.append("+")
            lines += ["CAP REQ :sasl", "AUTHENTICATE PLAIN"]
            lines += [f"AUTHENTICATE {chunk}" for chunk in chunks]
            if self.sign_on:
                lines.append("CAP END")
                lines += greeting
        elif self.form == "register":
            lines.append(f"REGISTER * * {password}")
            if user is not None:
                world.remember(user.nick, password)
        else:
            lines.append(f"OPER {nick} {password}")
        world.tally["irc"] += 1
        fresh = chat is None or not (chat._buffer or chat._discarding or connection.pending)
        connection.feed(b"" if fresh else b"\r\n")
        connection.feed(b"".join(line.encode("utf-8", "surrogatepass") + b"\r\n" for line in lines))
        world.probe(connection)


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
    is C{op}, C{deop}, C{voice}, C{devoice}, C{kick}, C{ban}, C{unban},
    C{mode}, C{invite}, C{kill} or C{topic}, with C{text} as its reason or
    topic and C{change} and C{key} (and a limit from C{pick}) for C{mode}.
    Random requests seldom come from an operator.
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
        limit = self.pick % 4 + 1
        if self.door == "line":
            # After a + change, the key for k and the limit for l, in letter order.
            plus = self.change.startswith("+")
            values = {"k": self.key, "l": str(limit)}
            args = (
                [values[c] for c in dict.fromkeys(self.change[1:]) if c in values] if plus else []
            )
            line = {
                "kick": f"/kick {name} {target} {self.text}",
                "mode": " ".join(["/mode", name, self.change, *args]),
                "invite": f"/invite {target} {name}",
                "kill": f"/kill {target} {self.text}",
                "topic": f"/topic {name} {self.text}",
            }.get(self.verb, f"/{self.verb} {name} {target}")
            data = line.encode("utf-8", "surrogatepass") + b"\r\n"
        elif self.door == "irc":
            plus = self.change.startswith("+")
            values = {"k": self.key, "l": str(limit)}
            args = (
                [values[c] for c in dict.fromkeys(self.change[1:]) if c in values] if plus else []
            )
            letters = {"op": "+o", "deop": "-o", "voice": "+v", "devoice": "-v"}
            letters.update(ban="+b", unban="-b")
            line = {
                "kick": f"KICK {name} {target} :{self.text}",
                "mode": " ".join(["MODE", name, self.change or "+", *args]),
                "invite": f"INVITE {target} {name}",
                "kill": f"KILL {target} :{self.text}",
                "topic": f"TOPIC {name} :{self.text}",
            }.get(self.verb, f"MODE {name} {letters.get(self.verb, '+o')} {target}")
            data = line.encode("utf-8", "surrogatepass") + b"\r\n"
        else:
            request = {"type": self.verb, "room": name, "nick": target}
            if self.verb in ("kick", "kill", "topic"):
                request["reason" if self.verb != "topic" else "text"] = self.text
            elif self.verb == "mode":
                request.update(mode=self.change, key=self.key, limit=limit)
            data = Frame(json.dumps(request).encode()).encode()
        world.tally[self.door] += 1
        connection.feed(data)
        world.probe(connection)


@dataclass(frozen=True)
class Connect:
    """
    A new connection in C{slot} (the old one goes away), signing on as
    C{nick} if given; a WebSocket one sends C{handshake}; an IRC one asks
    for the C{caps}th set of capabilities (none, all, or one).
    """

    door: str
    slot: int
    nick: str | None = None
    handshake: bytes = HANDSHAKE
    caps: int = 0

    def run(self, world: World) -> None:
        slot = self.slot % len(world.slots[self.door])
        sets = [(), IRC_CAPS, *((cap,) for cap in IRC_CAPS)]
        caps = sets[self.caps % len(sets)]
        connection = world.connect(self.door, slot, self.nick, self.handshake, caps)
        world.probe(connection)


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
        elif self.door == "irc":
            data = b"".join(f"PRIVMSG {LOBBY} :{text}\r\n".encode() for text in texts)
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
