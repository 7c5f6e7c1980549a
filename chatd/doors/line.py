# -*- test-case-name: tests.test_line -*-
"""
The line door: plain UTF-8 lines over TCP, friendly to C{telnet} and C{nc}.

A connection is a L{LineChatProtocol} (a C{LineReceiver}) running inside a
telnet transport, which consumes the option negotiation real telnet clients
send.  The first line is the nickname; after that a line is either a
C{/command} or something to say in the current room.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from typing import Any, cast

from twisted.conch.telnet import TelnetProtocol
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from chatd.doors.admission import Admission, Refusal
from chatd.doors.base import Door, Session, no_delay, tcp_socket
from chatd.doors.flow import Throttle
from chatd.doors.telnet import (
    CTRL_BACKSLASH,
    CTRL_C,
    CTRL_D,
    CTRL_T,
    CTRL_Z,
    TelnetServer,
    edit,
)
from chatd.errors import ChatError
from chatd.hub import Hub
from chatd.interfaces import IDoor, IEncoder
from chatd.limits import Limits
from chatd.model import (
    LOBBY,
    MAX_ID,
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
    check_room,
    fold,
)

BANNER = (
    "Welcome to chatd!",
    "Type a nickname to start chatting, then /help for the commands.",
    "A registered nickname: type it and its password on one line.",
)
PROMPT = "Choose a nickname:"
HELP = (
    "Commands (text without a leading / is said in your current room):",
    "  /join #room [KEY]     join a room, or switch to it if you are in it",
    "  /part [#room] [why]   leave a room (default: the current one)",
    "  /msg NICK TEXT        send a private message",
    "  /me ACTION            act in the current room",
    "  /nick NEW             change your nickname",
    "  /who [#room]          list the users of a room",
    "  /rooms                list every room",
    "  /topic [#room] [TEXT] show or set a room's topic",
    "  /history [#room|NICK] [N] [BEFORE]",
    "                        show the last N messages of a room (default: the",
    "                        current one) or with NICK, older than id BEFORE",
    "  /quit [REASON]        leave the server",
    "  //text                say text that starts with /",
    "Keys: Ctrl-C throws away the line you are typing; Ctrl-D on an empty line",
    "  leaves, as /quit does; Ctrl-Z and Ctrl-\\ do nothing; arrow keys and other",
    "  escape sequences are ignored; Backspace, Ctrl-U and Ctrl-W edit the line.",
    "Accounts:",
    "  /register PASSWORD    register your nickname; nobody else can use it",
    "  /identify [NICK] PASSWORD  prove a registered nickname (and take it)",
    "  /password OLD NEW     change your password",
    "Room operators ([#room] defaults to the current room):",
    "  /op [#room] NICK      make NICK an operator    /deop [#room] NICK",
    "  /kick [#room] NICK [REASON]                    /invite NICK [#room]",
    "  /ban [#room] NICK     ban NICK's account       /unban [#room] NICK",
    "  /mode [#room] [+|-FLAGS [KEY]]  show or change modes: i invite only,",
    "                        k KEY needed, m only operators talk, t only",
    "                        operators set the topic",
    "Server operators: /kill NICK [REASON]",
)

KEY_NOTICES = {
    CTRL_C: "*** Interrupted: the line you were typing was thrown away",
    CTRL_Z: "*** Ctrl-Z (suspend) does nothing here; type /quit to leave",
    CTRL_BACKSLASH: "*** Ctrl-\\ (break) does nothing here; type /quit to leave",
    CTRL_T: "*** Yes, chatd is here",
}
"""What each key that acts at once says, on a line of its own (the client
has echoed the key on the line being typed)."""

_LINE_ENDS = re.compile(rb"\r[\n\x00]?")
_KEYS = re.compile(rb"([\x03\x04\x14\x1a\x1c])")


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


def _keep_alive(transport: Any, idle: float) -> None:
    """
    Turn on TCP keepalive, probing after C{idle} seconds of silence where the
    platform lets us choose, so that vanished peers are noticed even when
    the telnet probe is off.  Under TLS the socket is a layer further down;
    unix sockets have no keepalive.
    """
    handle = tcp_socket(transport)
    if handle is None:
        return
    handle.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (
        ("TCP_KEEPIDLE", max(int(idle), 60) if idle > 0 else 120),
        ("TCP_KEEPINTVL", 30),
        ("TCP_KEEPCNT", 4),
    ):
        if hasattr(socket, option):
            handle.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def _lines(*lines: str) -> bytes:
    return "".join(safe(line) + "\r\n" for line in lines).encode("utf-8", "replace")


def _said(message: Message) -> str:
    if message.action:
        return f"[{message.room}] * {message.sender} {message.text}"
    return f"[{message.room}] <{message.sender}> {message.text}"


def _topic(event: Topic) -> str:
    if isinstance(event, TopicChanged):
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


def _history(page: HistoryPage) -> bytes:
    if not page.messages:
        return _lines(f"*** No history for {page.room}")
    stamped = [_stamp(m.ts) + _said(m) for m in page.messages]
    return _lines(
        f"*** Last {_count(len(stamped), 'message')} of {page.room}:",
        *stamped,
        _history_end(page.room, len(stamped), page.messages[0].id, page.more),
    )


def _private_history(page: PrivateHistory) -> bytes:
    if not page.messages:
        return _lines(f"*** No private messages with {page.other}")
    stamped = [
        _stamp(m.ts)
        + (f"-> *{m.recipient}* " if fold(m.sender) == fold(page.nick) else f"*{m.sender}* ")
        + m.text
        for m in page.messages
    ]
    return _lines(
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


def _users(event: UserList) -> bytes:
    ops = set(event.ops)
    nicks = ", ".join(("@" + n if n in ops else n) for n in event.nicks)
    return _lines(f"*** Users in {event.room} ({len(event.nicks)}): {nicks}")


def _account(event: AccountChanged) -> bytes:
    if event.what == "registered":
        return _lines(f"*** {event.account} is now registered to you; you are identified")
    if event.what == "identified":
        return _lines(f"*** You are now identified as {event.account}")
    return _lines(f"*** The password of {event.account} was changed")


def _modes(event: Modes) -> bytes:
    if not event.modes:
        return _lines(f"*** {event.room} has no modes set")
    key = f" (key: {event.key})" if event.key else ""
    return _lines(f"*** Modes of {event.room}: {event.modes}{key}")


def _rooms(event: RoomList) -> bytes:
    rows = [
        f"***   {r.room}  {r.users} user{'' if r.users == 1 else 's'}"
        + (f"  {r.topic}" if r.topic else "")
        for r in event.rooms
    ]
    return _lines(f"*** {len(rows)} room{'' if len(rows) == 1 else 's'}:", *rows)


_RENDER: dict[type, Callable[[Any], bytes]] = {
    Welcome: lambda e: _lines(
        f"*** Welcome, {e.nick}! You are in {', '.join(e.rooms) or 'no room'}."
        " Type /help for commands." + (" You are identified." if e.account else "")
    ),
    Message: lambda e: _lines(_said(e)),
    HistoryPage: _history,
    PrivateMessage: lambda e: _lines(f"*{e.sender}* {e.text}"),
    PrivateEcho: lambda e: _lines(f"-> *{e.recipient}* {e.text}"),
    Joined: lambda e: _lines(f"*** {e.nick} has joined {e.room}"),
    Parted: lambda e: _lines(
        f"*** {e.nick} has left {e.room}" + (f" ({e.reason})" if e.reason else "")
    ),
    NickChanged: lambda e: _lines(f"*** {e.old} is now known as {e.new}"),
    Topic: lambda e: _lines(_topic(e)),
    TopicChanged: lambda e: _lines(_topic(e)),
    UserList: _users,
    PrivateHistory: _private_history,
    Kicked: lambda e: _lines(f"*** {e.nick} has left {e.room} ({e.part_reason})"),
    BanChanged: lambda e: _lines(
        f"*** {e.by} banned {e.nick} from {e.room}"
        if e.banned
        else f"*** {e.by} lifted the ban on {e.nick} in {e.room}"
    ),
    OpChanged: lambda e: _lines(
        f"*** {e.by} made {e.nick} an operator of {e.room}"
        if e.op
        else f"*** {e.by} took operator status in {e.room} from {e.nick}"
    ),
    ModeChanged: lambda e: _lines(f"*** {e.by} set mode {e.change} on {e.room}"),
    Modes: _modes,
    Invited: lambda e: _lines(f"*** {e.by} invites you to {e.room}; type /join {e.room}"),
    AccountChanged: _account,
    RoomList: _rooms,
    Notice: lambda e: _lines(f"*** {e.text}"),
    Error: lambda e: _lines(f"!!! {e.message}"),
}


@implementer(IEncoder)
class LineEncoder:
    """
    Renders events as the contract's lines: UTF-8, each ended by CR LF.
    """

    def encode(self, event: Event) -> bytes:
        return _RENDER[type(event)](event)


class LineChatProtocol(Session, LineReceiver, TelnetProtocol):
    """
    One telnet-style connection: a nickname prompt, then commands and talk.

    Lines end with LF, CR LF, CR NUL or a lone CR.  A line longer than the
    door's C{max_line} bytes is refused and discarded as it arrives; the
    connection stays up.  Ctrl-C, Ctrl-D, Ctrl-Z, Ctrl-\\ and Ctrl-T act as
    they arrive (see L{KEY_NOTICES}); a line's other control keys are
    applied when it ends (L{edit}).
    """

    delimiter = b"\n"
    door: LineDoor
    _discarding = False
    _after_cr = False  # the last input ended with CR: an LF or NUL next is part of it

    def __init__(self) -> None:
        self._current: str | None = None

    # -- connection ---------------------------------------------------------

    def connectionMade(self) -> None:
        self.telnet = cast(TelnetServer, self.transport)
        self.stream = self.telnet.transport
        self.address = self.telnet.ticket.host
        outbox = self.started(self.factory)
        self.stream.registerProducer(outbox, True)
        _keep_alive(self.stream, self.door.limits.probe_idle)
        no_delay(self.stream)
        self.telnet.offer()
        self.send(_lines(*BANNER, PROMPT))

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.ended()

    def write(self, payload: bytes) -> None:
        if self.batch is not None:
            self.batch.push(payload)
        else:
            self.telnet.write(payload)

    def direct(self) -> Callable[[bytes], None]:
        """
        Straight to the byte stream: L{TelnetServer} passes the line
        door's payloads through unchanged, so fan-out skips it.  On a plain
        TCP connection, into this pass's L{Batch}.
        """
        if self.batch is not None:
            return self.batch.push
        return cast(Callable[[bytes], None], self.stream.write)

    def payload_size(self, payload: bytes) -> int:
        return len(payload)

    def finish(self) -> None:
        if self.batch is not None:
            self.batch.flush()
        # TLS will not close while a producer is registered.
        self.stream.unregisterProducer()
        self.telnet.loseConnection()

    # -- input --------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """
        Split C{data} (from which the telnet layer took its commands) into
        lines, acting on the keys that act at once on the way.
        """
        if self._after_cr:
            self._after_cr = False
            if data[:1] in (b"\n", b"\x00"):
                data = data[1:]
        if b"\r" in data:
            self._after_cr = data.endswith(b"\r")
            data = _LINE_ENDS.sub(b"\n", data)
        if _KEYS.search(data) is None:
            self._take(data)
            return
        told = set()
        for index, piece in enumerate(_KEYS.split(data)):
            if index % 2 == 0:
                self._take(piece)
            elif self._closing:
                return
            elif piece == CTRL_D:
                if not self._buffer and not self._discarding:
                    self.received(CTRL_D)  # end of input: in turn, after the lines before
            else:
                if piece == CTRL_C:
                    self._buffer = b""
                    self._discarding = False
                if piece not in told:
                    told.add(piece)
                    self.send(_lines("", KEY_NOTICES[piece]))

    def _take(self, data: bytes) -> None:
        """
        Add C{data} to the line being typed, taking the lines it ends, and
        never holding more than C{max_line} bytes of an unfinished one.
        """
        limit = self.door.limits.max_line
        lines = (self._buffer + data).split(self.delimiter)
        self._buffer = lines.pop()
        for line in lines:
            if self._discarding:
                self._discarding = False
            elif len(line) > limit:
                self.lineLengthExceeded(line)
            else:
                self.received(line)
        if len(self._buffer) > limit:
            self._buffer = b""
            if not self._discarding:
                self._discarding = True
                self.lineLengthExceeded(b"")

    def lineLengthExceeded(self, line: bytes) -> None:
        if self._closing:  # after /quit or Ctrl-D in the same packet: not heard
            return
        limit = self.door.limits.max_line
        self.refuse("line_too_long", f"line too long (over {limit} bytes); ignored")

    def handle(self, line: bytes) -> None:
        self.lineReceived(line)

    def lineReceived(self, line: bytes) -> None:
        if line == CTRL_D:
            self.do_quit("")
            return
        try:
            typed = line.decode("utf-8")
        except UnicodeDecodeError:
            self.refuse("bad_utf8", "That line is not valid UTF-8; ignored")
            return
        text = edit(typed)
        if text != typed and not text.strip():
            return  # only keys, escape sequences or control characters
        if self.user is None:
            self.choose_nick(text.strip())
        elif text.startswith("//"):
            self.say(text[1:])
        elif text.startswith("/"):
            command, _, args = text[1:].partition(" ")
            self.attempt(self.command, command.lower(), args.strip())
        elif text.strip():
            self.say(text)

    def choose_nick(self, text: str) -> None:
        """
        The line typed at the nickname prompt: C{NICK}, or C{NICK PASSWORD}
        for a registered nickname.
        """
        if text.lower() == "/quit" or text.lower().startswith("/quit "):
            self.send(_lines("*** Bye!"))
            self.close()
            return
        nick, _, password = text.partition(" ")
        self.attempt(self._sign_on, nick, password.strip() or None)

    def _sign_on(self, nick: str, password: str | None) -> Deferred[None]:
        def entered(signed_on: bool) -> None:
            if signed_on:
                self._current = LOBBY

        def refused(failure: Failure) -> None:
            failure.trap(ChatError)
            error = failure.value
            assert isinstance(error, ChatError)
            self.deliver(Error.from_exception(error))
            self.send(_lines(PROMPT))

        return self.sign_on(nick, password).addCallbacks(entered, refused)

    def refuse(self, code: str, message: str) -> None:
        self.deliver(Error(code, message))

    # -- commands -----------------------------------------------------------

    def current_room(self) -> str:
        """
        The room plain text goes to: the one last joined or switched to, or
        if the user has left it, the most recently joined one it is still in.
        """
        rooms = self.me.rooms
        if self._current is None or not self.hub.is_member(self.me, self._current):
            if not rooms:
                raise ChatError("no_room", "You are not in any room; /join #room first")
            self._current = next(reversed(rooms.values())).name
        return self._current

    def say(self, text: str) -> None:
        self.attempt(lambda: self.hub.say(self.me, self.current_room(), text))

    def command(self, name: str, args: str) -> object:
        handler = self._commands.get(name)
        if handler is None:
            raise ChatError("unknown_command", f"Unknown command /{name}; try /help")
        return handler(self, args)

    def do_nick(self, args: str) -> object:
        return self.hub.change_nick(self.me, _required(args, "/nick NEW"))

    def do_join(self, args: str) -> Deferred[None] | None:
        room, _, key = _required(args, "/join #room [KEY]").partition(" ")
        if not room.startswith("#"):
            room = "#" + room
        check_room(room)
        if self.hub.is_member(self.me, room):
            self._current = self.me.rooms[fold(room)].name
            self.send(_lines(f"*** Now talking in {self._current}"))
            return None
        joined = maybeDeferred(self.hub.join, self.me, room, key.strip() or None)
        return joined.addCallback(lambda _: self._switch_to(room))

    def _switch_to(self, room: str) -> None:
        if self.user is not None and fold(room) in self.user.rooms:
            self._current = self.user.rooms[fold(room)].name

    def do_part(self, args: str) -> object:
        room, reason = _room_and_rest(args)
        return self.hub.part(self.me, room or self.current_room(), reason or None)

    def do_msg(self, args: str) -> object:
        nick, _, text = args.partition(" ")
        if not nick or not text.strip():
            raise ChatError("usage", "Usage: /msg NICK TEXT")
        return self.hub.private(self.me, nick, text)

    def do_me(self, args: str) -> object:
        return self.hub.say(
            self.me, self.current_room(), _required(args, "/me ACTION"), action=True
        )

    def do_who(self, args: str) -> object:
        return self.hub.who(self.me, args.split()[0] if args else self.current_room())

    def do_rooms(self, args: str) -> object:
        return self.hub.list_rooms(self.me)

    def do_topic(self, args: str) -> object:
        room, text = _room_and_rest(args)
        return self.hub.topic(self.me, room or self.current_room(), text or None)

    def do_history(self, args: str) -> Deferred[None]:
        """
        C{/history [#room|NICK] [N] [BEFORE]}.
        """
        words = args.split()
        target = words.pop(0) if words and not _is_number(words[0]) else None
        if len(words) > 2 or not all(_is_number(w) for w in words):
            raise ChatError("usage", "Usage: /history [#room|NICK] [N] [BEFORE]")
        if not all(_in_range(w) for w in words):
            raise ChatError(
                "usage", f"Usage: /history [#room|NICK] [N] [BEFORE], each at most {MAX_ID}"
            )
        numbers = [int(w) for w in words]
        limit = numbers[0] if numbers else None
        before = numbers[1] if len(numbers) > 1 else None
        if target is not None and not target.startswith("#"):
            return self.hub.private_history(self.me, target, limit, before)
        return self.hub.history(self.me, target or self.current_room(), limit, before)

    def do_register(self, args: str) -> Deferred[None]:
        return self.hub.register(self.me, _required(args, "/register PASSWORD"))

    def do_identify(self, args: str) -> Deferred[None]:
        words = _required(args, "/identify [NICK] PASSWORD").split()
        if len(words) > 2:
            raise ChatError("usage", "Usage: /identify [NICK] PASSWORD")
        nick, password = words if len(words) == 2 else (self.me.nick, words[0])
        return self.identify(nick, password)

    def do_password(self, args: str) -> Deferred[None]:
        old, _, new = args.partition(" ")
        if not old or not new.strip():
            raise ChatError("usage", "Usage: /password OLD NEW")
        return self.hub.change_password(self.me, old, new.strip())

    def do_op(self, args: str) -> object:
        room, nick = _room_and_rest(args)
        return self.hub.set_op(self.me, room or self.current_room(), _required(nick, "/op NICK"))

    def do_deop(self, args: str) -> object:
        room, nick = _room_and_rest(args)
        return self.hub.set_op(
            self.me, room or self.current_room(), _required(nick, "/deop NICK"), False
        )

    def do_kick(self, args: str) -> object:
        room, rest = _room_and_rest(args)
        nick, _, reason = _required(rest, "/kick [#room] NICK [REASON]").partition(" ")
        return self.hub.kick(self.me, room or self.current_room(), nick, reason.strip() or None)

    def do_ban(self, args: str) -> object:
        room, nick = _room_and_rest(args)
        return self.hub.ban(self.me, room or self.current_room(), _required(nick, "/ban NICK"))

    def do_unban(self, args: str) -> object:
        room, nick = _room_and_rest(args)
        return self.hub.ban(
            self.me, room or self.current_room(), _required(nick, "/unban NICK"), False
        )

    def do_mode(self, args: str) -> object:
        room, rest = _room_and_rest(args)
        change, _, key = rest.partition(" ")
        return self.hub.set_mode(
            self.me, room or self.current_room(), change or None, key.strip() or None
        )

    def do_invite(self, args: str) -> object:
        nick, _, room = _required(args, "/invite NICK [#room]").partition(" ")
        return self.hub.invite(self.me, room.strip() or self.current_room(), nick)

    def do_kill(self, args: str) -> object:
        nick, _, reason = _required(args, "/kill NICK [REASON]").partition(" ")
        return self.hub.kill(self.me, nick, reason.strip() or None)

    def do_quit(self, args: str) -> None:
        self.send(_lines("*** Bye!"))
        self.sign_off(args or None)
        self.close()

    def do_help(self, args: str) -> None:
        self.send(_lines(*HELP))

    _commands: dict[str, Callable[[LineChatProtocol, str], object]] = {
        "nick": do_nick,
        "join": do_join,
        "part": do_part,
        "msg": do_msg,
        "me": do_me,
        "who": do_who,
        "rooms": do_rooms,
        "topic": do_topic,
        "history": do_history,
        "register": do_register,
        "identify": do_identify,
        "password": do_password,
        "op": do_op,
        "deop": do_deop,
        "kick": do_kick,
        "ban": do_ban,
        "unban": do_unban,
        "mode": do_mode,
        "invite": do_invite,
        "kill": do_kill,
        "quit": do_quit,
        "help": do_help,
    }


def _required(args: str, usage: str) -> str:
    if not args:
        raise ChatError("usage", f"Usage: {usage}")
    return args


def _is_number(word: str) -> bool:
    return word.isascii() and word.isdigit()


def _in_range(digits: str) -> bool:
    """
    Whether C{digits} (ASCII digits) is a number no store overflows on,
    counted without making a huge C{int} (Python refuses over 4300 digits).
    """
    digits = digits.lstrip("0")
    return len(digits) < len(str(MAX_ID)) or (
        len(digits) == len(str(MAX_ID)) and int(digits) <= MAX_ID
    )


def _room_and_rest(args: str) -> tuple[str | None, str]:
    """
    Split C{[#room] [rest]}: the room if the first word names one.
    """
    first, _, rest = args.partition(" ")
    if first.startswith("#"):
        return first, rest.strip()
    return None, args.strip()


@implementer(IDoor)
class LineDoor(Door, ServerFactory):
    """
    The factory of the line door: every connection shares one hub.
    """

    name = "line"

    def __init__(
        self,
        hub: Hub,
        clock: IReactorTime,
        limits: Limits | None = None,
        throttle: Throttle | None = None,
        admission: Admission | None = None,
    ) -> None:
        Door.__init__(self, hub, LineEncoder(), clock, limits, throttle)
        self.admission = Admission(self.limits, clock) if admission is None else admission

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        ticket = self.admission.admit(addr)
        if isinstance(ticket, str):
            return Refusal(_lines(f"!!! {ticket}"))
        transport = TelnetServer(LineChatProtocol)
        transport.factory = self
        transport.ticket = ticket
        return transport
