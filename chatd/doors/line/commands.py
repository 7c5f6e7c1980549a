# -*- test-case-name: tests.test_line,tests.test_commands -*-
"""
The line door's commands: each C{/command} parsed into a request
(L{chatd.requests}) for the gateway, or answered by the door itself.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred, maybeDeferred

from chatd import requests as rq
from chatd.doors.base import Session
from chatd.doors.line.rendering import as_lines
from chatd.errors import ChatError
from chatd.model import (
    MAX_ID,
    check_room,
    fold,
    parse_limit,
)

MemberRequest = rq.Op | rq.Deop | rq.Voice | rq.Devoice | rq.Ban | rq.Unban
"""What C{[#room] NICK} commands ask."""

HELP = (
    "Commands (text without a leading / is said in your current room):",
    "  /join #room [KEY]     join a room, or switch to it if you are in it",
    "  /part [#room] [why]   leave a room (default: the current one)",
    "  /msg NICK TEXT        send a private message",
    "  /me ACTION            act in the current room",
    "  /nick NEW             change your nickname",
    "  /who [#room] [PAGE]   list the users of a room (big rooms by pages)",
    "  /rooms                list every room",
    "  /topic [#room] [TEXT] show or set a room's topic",
    "  /topic [#room] -      clear a room's topic",
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
    "  /voice [#room] NICK   let NICK talk in +m      /devoice [#room] NICK",
    "  /kick [#room] NICK [REASON]                    /invite NICK [#room]",
    "  /ban [#room] NICK     ban NICK's account       /unban [#room] NICK",
    "  /mode [#room] [+|-FLAGS [KEY] [N]]  show or change modes: i invite",
    "                        only, k KEY needed, l at most N users, m only",
    "                        operators and voiced users talk, n only members",
    "                        talk, s secret (not in /rooms), t only",
    "                        operators set the topic",
    "Server operators: /oper ACCOUNT PASSWORD (an admin account's), /kill NICK [REASON]",
)


class LineCommands(Session):
    """
    The commands of a line connection, and the room plain text goes to.
    """

    _current: str | None = None

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
        self.attempt(lambda: self.submit(rq.Say(room=self.current_room(), text=text)))

    def command(self, name: str, args: str) -> object:
        handler = self._commands.get(name)
        if handler is None:
            raise ChatError("unknown_command", f"Unknown command /{name}; try /help")
        return handler(self, args)

    def do_nick(self, args: str) -> object:
        return self.submit(rq.Nick(nick=_required(args, "/nick NEW")))

    def do_join(self, args: str) -> Deferred[None] | None:
        room, _, key = _required(args, "/join #room [KEY]").partition(" ")
        if not room.startswith("#"):
            room = "#" + room
        check_room(room)
        if self.hub.is_member(self.me, room):
            self._current = self.me.rooms[fold(room)].name
            self.send(as_lines(f"*** Now talking in {self._current}"))
            return None
        joined = maybeDeferred(self.submit, rq.Join(room=room, key=key.strip() or None))
        return joined.addCallback(lambda _: self._switch_to(room))

    def _switch_to(self, room: str) -> None:
        if self.user is not None and fold(room) in self.user.rooms:
            self._current = self.user.rooms[fold(room)].name

    def do_part(self, args: str) -> object:
        room, reason = _room_and_rest(args)
        return self.submit(rq.Part(room=room or self.current_room(), reason=reason or None))

    def do_msg(self, args: str) -> object:
        nick, _, text = args.partition(" ")
        if not nick or not text.strip():
            raise ChatError("usage", "Usage: /msg NICK TEXT")
        return self.submit(rq.Msg(to=nick, text=text))

    def do_me(self, args: str) -> object:
        return self.submit(rq.Me(room=self.current_room(), text=_required(args, "/me ACTION")))

    def do_who(self, args: str) -> object:
        """
        C{/who [#room] [PAGE]}: a page of a big room's members, or the first.
        """
        words = args.split()
        page = words.pop() if words and _is_number(words[-1]) else None
        if len(words) > 1 or (page is not None and not _in_range(page)):
            raise ChatError("usage", f"Usage: /who [#room] [PAGE], PAGE at most {MAX_ID}")
        room = words[0] if words else self.current_room()
        if page is None:
            return self.submit(rq.Who(room=room))
        return self.submit(rq.Members(room=room, page=int(page)))

    def do_rooms(self, args: str) -> object:
        return self.submit(rq.Rooms())

    def do_topic(self, args: str) -> object:
        """
        C{/topic [#room]} shows the topic, C{/topic [#room] TEXT} sets it,
        C{/topic [#room] -} clears it.
        """
        room, text = _room_and_rest(args)
        new = None if not text else "" if text == "-" else text
        return self.submit(rq.Topic(room=room or self.current_room(), text=new))

    def do_history(self, args: str) -> object:
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
            return self.submit(rq.History(with_=target, limit=limit, before=before))
        room = target or self.current_room()
        return self.submit(rq.History(room=room, limit=limit, before=before))

    def do_register(self, args: str) -> object:
        return self.submit(rq.Register(password=_required(args, "/register PASSWORD")))

    def do_identify(self, args: str) -> object:
        words = _required(args, "/identify [NICK] PASSWORD").split()
        if len(words) > 2:
            raise ChatError("usage", "Usage: /identify [NICK] PASSWORD")
        nick, password = words if len(words) == 2 else (self.me.nick, words[0])
        return self.submit(rq.Identify(nick=nick, password=password))

    def do_password(self, args: str) -> object:
        old, _, new = args.partition(" ")
        if not old or not new.strip():
            raise ChatError("usage", "Usage: /password OLD NEW")
        return self.submit(rq.Password(old=old, new=new.strip()))

    def do_op(self, args: str) -> object:
        return self._member_request(args, rq.Op, "/op NICK")

    def do_deop(self, args: str) -> object:
        return self._member_request(args, rq.Deop, "/deop NICK")

    def do_voice(self, args: str) -> object:
        return self._member_request(args, rq.Voice, "/voice NICK")

    def do_devoice(self, args: str) -> object:
        return self._member_request(args, rq.Devoice, "/devoice NICK")

    def do_kick(self, args: str) -> object:
        room, rest = _room_and_rest(args)
        nick, _, reason = _required(rest, "/kick [#room] NICK [REASON]").partition(" ")
        room = room or self.current_room()
        return self.submit(rq.Kick(room=room, nick=nick, reason=reason.strip() or None))

    def do_ban(self, args: str) -> object:
        return self._member_request(args, rq.Ban, "/ban NICK")

    def do_unban(self, args: str) -> object:
        return self._member_request(args, rq.Unban, "/unban NICK")

    def _member_request(self, args: str, kind: type[MemberRequest], usage: str) -> object:
        """
        C{/op}, C{/deop}, C{/voice}, C{/devoice}, C{/ban} or C{/unban}
        C{[#room] NICK}.
        """
        room, nick = _room_and_rest(args)
        room = room or self.current_room()
        return self.submit(kind(room=room, nick=_required(nick, usage)))

    def do_mode(self, args: str) -> object:
        """
        C{/mode [#room] [+|-FLAGS [KEY] [N]]}: a C{+} change takes the key
        for C{k} and the number for C{l} after it, in the order of their
        letters (as IRC does); a C{-} change takes none.
        """
        room, rest = _room_and_rest(args)
        change, *words = rest.split() or [""]
        key: str | None = None
        limit: int | None = None
        if change.startswith("+"):
            for letter in dict.fromkeys(change[1:]):
                if letter == "k":
                    key = words.pop(0) if words else None
                elif letter == "l":
                    limit = parse_limit(words.pop(0) if words else "")
            if words:
                raise ChatError("usage", "Usage: /mode [#room] [+|-FLAGS [KEY] [N]]")
        room = room or self.current_room()
        return self.submit(rq.Mode(room=room, mode=change or None, key=key, limit=limit))

    def do_invite(self, args: str) -> object:
        nick, _, room = _required(args, "/invite NICK [#room]").partition(" ")
        return self.submit(rq.Invite(room=room.strip() or self.current_room(), nick=nick))

    def do_oper(self, args: str) -> object:
        words = args.split()
        if len(words) != 2:
            raise ChatError("usage", "Usage: /oper ACCOUNT PASSWORD")
        return self.submit(rq.Oper(name=words[0], password=words[1]))

    def do_kill(self, args: str) -> object:
        nick, _, reason = _required(args, "/kill NICK [REASON]").partition(" ")
        return self.submit(rq.Kill(nick=nick, reason=reason.strip() or None))

    def do_quit(self, args: str) -> None:
        self.send(as_lines("*** Bye!"))
        self.sign_off(args or None)
        self.close()

    def do_help(self, args: str) -> None:
        self.send(as_lines(*HELP))

    _commands: dict[str, Callable[[LineCommands, str], object]] = {
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
        "voice": do_voice,
        "devoice": do_devoice,
        "kick": do_kick,
        "ban": do_ban,
        "unban": do_unban,
        "mode": do_mode,
        "invite": do_invite,
        "oper": do_oper,
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
