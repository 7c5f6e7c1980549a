# -*- test-case-name: tests.test_irc -*-
"""
The IRC door's commands: what a registered client may ask, each turned
into a request for the gateway (C{JOIN}, C{PRIVMSG}, C{MODE} ...) or
answered from the hub's state (C{NAMES}, C{WHO}, C{WHOIS}, C{LIST} ...),
and the hub's events for this user alone rendered as numerics.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.python.failure import Failure

from chatd import __version__, model
from chatd import requests as rq
from chatd.doors.base import Session
from chatd.doors.irc import wire
from chatd.doors.irc.rendering import ACTION, ban_mask, mask, message_text, server_time
from chatd.doors.irc.wire import IrcMessage, clean
from chatd.errors import ChatError
from chatd.hub import User
from chatd.hub.gateway import LocalGateway
from chatd.hub.state import OPERATOR, Room
from chatd.model import (
    MAX_NICK_LENGTH,
    MAX_ROOM_LENGTH,
    MAX_TOPIC_LENGTH,
    fold,
)

if TYPE_CHECKING:
    from chatd.doors.irc.protocol import IrcDoor

CHANMODES = "b,k,l,imnst"
MAX_TARGETS = 4
MAX_JOINS = 8
HELP = {
    "": (
        "chatd speaks IRC: JOIN, PART, PRIVMSG, NOTICE, TOPIC, NAMES, LIST, MODE,",
        "KICK, INVITE, WHO, WHOIS, AWAY, NICK, QUIT; and REGISTER * * PASSWORD",
        "to register your nickname (then log in with SASL PLAIN or PASS).",
        "Channels are shared with chatd's telnet and browser users.",
        "HELP <command> tells more about a command.",
    ),
    "REGISTER": ("REGISTER * * <password>: register your nickname as an account.",),
    "JOIN": ("JOIN <#room>[,<#room>] [<key>[,<key>]]: join rooms.",),
    "PRIVMSG": ("PRIVMSG <target> :<text>: talk to a room or a user.",),
    "MODE": (
        "MODE <#room> [+|-modes [args]]: i invite only, k key, l limit, m moderated,",
        "n no messages from outside, s secret, t only operators set the topic;",
        "o operator, v voice, b ban (by account or nickname).",
    ),
}


def _targets(param: str) -> list[str]:
    return [t for t in param.split(",") if t][:MAX_TARGETS]


class IrcCommands(Session):
    """
    The commands and replies of a registered IRC connection.
    """

    door: IrcDoor
    ident: str | None
    realname: str
    caps: set[str]
    away: str | None
    invisible = False
    _context: IrcMessage | None
    _account: str | None  # proven by SASL before signing on
    _joining: str | None  # the room being joined, while it is
    _target: str | None = None  # the room or nick the request in hand is about
    signed_on_at: float
    spoke_at: float

    # What the connection provides (IrcProtocol).
    @property
    def nick(self) -> str:
        raise NotImplementedError

    def reply(self, numeric: str, *params: str) -> None:
        raise NotImplementedError

    def reply_text(self, numeric: str, *params: str) -> None:
        raise NotImplementedError

    # -- dispatch -----------------------------------------------------------

    def dispatch(self, message: IrcMessage) -> None:
        handler = self.handler(message.command)
        if handler is None:
            self.reply_text(wire.ERR_UNKNOWNCOMMAND, clean(message.command[:32]), "Unknown command")
            return
        self.attempt(handler, message.params)

    def handler(self, command: str) -> Callable[[list[str]], object] | None:
        """
        The method for C{command}, if the door knows it.
        """
        if not command.isascii() or not command.isalpha():
            return None
        return getattr(self, "irc_" + command, None)

    def need(self, params: list[str], count: int) -> bool:
        """
        Whether C{params} has C{count} parameters; if not, say so (461).
        """
        if len(params) >= count and all(params[:count]):
            return True
        command = self._context.command if self._context else "*"
        self.reply_text(wire.ERR_NEEDMOREPARAMS, command, "Not enough parameters")
        return False

    @property
    def mask(self) -> str:
        return f"{self.nick}!{self.ident}@irc.chatd"

    def is_oper(self, user: User) -> bool:
        return user.oper or (user.account is not None and user.account in self.hub.admins)

    def source_of(self, nick: str) -> str:
        user = self.hub.users.get(fold(nick))
        return mask(user) if user is not None else f"{nick}!{nick}@chatd"

    # -- connection ---------------------------------------------------------

    def irc_PING(self, params: list[str]) -> None:
        if not params:
            self.reply_text(wire.ERR_NOORIGIN, "No origin specified")
            return
        name = self.door.server_name
        self.send(wire.line(name, "PONG", name, params[0]).encode())

    def irc_PONG(self, params: list[str]) -> None:
        pass  # any input counts as a sign of life

    def irc_QUIT(self, params: list[str]) -> None:
        reason = clean(params[0])[:MAX_TOPIC_LENGTH] if params and params[0] else None
        goodbye = f"Closing link: {self.ident or '*'}@irc.chatd (Quit: {reason or self.nick})"
        self.send(wire.text_line(None, "ERROR", goodbye).encode())
        self.sign_off(reason)
        self.close()

    def irc_NICK(self, params: list[str]) -> object:
        if not params or not params[0]:
            self.reply_text(wire.ERR_NONICKNAMEGIVEN, "No nickname given")
            return None
        if params[0] == self.nick:
            return None
        return self.submit(rq.Nick(nick=params[0]))

    def irc_USER(self, params: list[str]) -> None:
        self.reply_text(wire.ERR_ALREADYREGISTRED, "You may not reregister")

    irc_PASS = irc_USER

    def irc_REGISTER(self, params: list[str]) -> object:
        """
        C{REGISTER <account> <email> <password>} (draft/account-registration):
        the account is this nickname (C{*} says so); e-mail is not used.
        """
        if len(params) < 3:
            self.fail("REGISTER", "NEED_MORE_PARAMS", "REGISTER <account> <email> <password>")
            return None
        account, _, password = params[:3]
        if account != "*" and fold(account) != fold(self.nick):
            self.fail(
                "REGISTER", "ACCOUNT_NAME_MUST_BE_NICK", "The account is your nickname", account
            )
            return None
        return self.submit(rq.Register(password=password))

    def fail(self, command: str, code: str, text: str, *context: str) -> None:
        self.send(
            wire.text_line(self.door.server_name, "FAIL", command, code, *context, text).encode()
        )

    # -- rooms --------------------------------------------------------------

    def irc_JOIN(self, params: list[str]) -> object:
        if not self.need(params, 1):
            return None
        if params[0] == "0":
            for room in list(self.me.rooms.values()):
                self.attempt(self.submit, rq.Part(room=room.name))
            return None
        keys = params[1].split(",") if len(params) > 1 else []
        names = [r for r in params[0].split(",") if r][:MAX_JOINS]
        keys += [""] * (len(names) - len(keys))
        return self._join_each(list(zip(names, keys[: len(names)], strict=True)))

    def _join_each(self, wanted: list[tuple[str, str]]) -> Deferred[None] | None:
        """
        Join each room in turn: one waiting for the cluster holds the next.
        """
        while wanted:
            room, key = wanted.pop(0)
            if not room.startswith("#"):
                self.reply_text(wire.ERR_NOSUCHCHANNEL, room, "No such channel")
                continue
            try:
                model.check_room(room)
            except ChatError:
                self.reply_text(wire.ERR_NOSUCHCHANNEL, room, "No such channel")
                continue
            if self.user is None or self.hub.is_member(self.user, room):
                continue
            self._joining = self._target = room
            joined = maybeDeferred(self.submit, rq.Join(room=room, key=key or None))
            joined.addErrback(self._refused)
            if not joined.called:
                return joined.addCallback(lambda _: self._join_each(wanted))
            self._joining = None
        self._joining = None
        return None

    def irc_PART(self, params: list[str]) -> object:
        if not self.need(params, 1):
            return None
        reason = clean(params[1]) if len(params) > 1 and params[1] else None
        for room in _targets(params[0]):
            self.attempt(self._part, room, reason)
        return None

    def _part(self, room: str, reason: str | None) -> object:
        self._target = room
        if fold(room) not in self.hub.rooms:
            raise ChatError("no_such_room", f"There is no room named {room}")
        return self.submit(rq.Part(room=room, reason=reason))

    def irc_TOPIC(self, params: list[str]) -> object:
        if not self.need(params, 1):
            return None
        room = params[0]
        if len(params) == 1:
            found = self.hub.rooms.get(fold(room))
            if found is None:
                self.reply_text(wire.ERR_NOSUCHCHANNEL, room, "No such channel")
                return None
            self._topic_reply(found)
            return None
        return self.submit(rq.Topic(room=room, text=clean(params[1])))

    def _topic_reply(self, room: Room) -> None:
        if not room.topic:
            self.reply_text(wire.RPL_NOTOPIC, room.name, "No topic is set")
            return
        self.reply_text(wire.RPL_TOPIC, room.name, clean(room.topic))
        if room.topic_by and room.topic_at:
            by = room.topic_by
            setter = self.source_of(by) if fold(by) in self.hub.users else by
            self.reply(wire.RPL_TOPICWHOTIME, room.name, setter, str(int(room.topic_at)))

    def irc_NAMES(self, params: list[str]) -> None:
        if not params or not params[0]:
            self.reply_text(wire.RPL_ENDOFNAMES, "*", "End of /NAMES list")
            return
        for name in _targets(params[0]):
            room = self.hub.rooms.get(fold(name))
            if room is not None and self._can_see(room):
                self.names(room, end=False)
        self.reply_text(wire.RPL_ENDOFNAMES, params[0], "End of /NAMES list")

    def _can_see(self, room: Room) -> bool:
        return "s" not in room.modes or self.me in room.members

    def names(self, room: Room, end: bool = True, members: Iterable[User] | None = None) -> None:
        """
        353s (as many as the names need) for C{room}'s C{members} (all, by
        default), and its 366 if C{end}.
        """
        admins = self.hub.admins
        multi = "multi-prefix" in self.caps
        masks = "userhost-in-names" in self.caps
        names = []
        voiced = room.voiced
        for member in room.members if members is None else members:
            prefix = ""
            if room.rank(member, admins) >= OPERATOR:
                prefix = "@"
            if member in voiced and (multi or not prefix):
                prefix += "+"
            names.append(prefix + (mask(member) if masks else member.nick))
        kind = "@" if "s" in room.modes else "="
        head = f":{self.door.server_name} 353 {self.nick} {kind} {room.name} :"
        budget = wire.MAX_LINE - 2 - len(head.encode())
        chunk: list[str] = []
        size = 0
        for name in names:
            if chunk and size + len(name) + 1 > budget:
                self.send((head + " ".join(chunk) + "\r\n").encode())
                chunk, size = [], 0
            chunk.append(name)
            size += len(name) + 1
        if chunk:
            self.send((head + " ".join(chunk) + "\r\n").encode())
        if end:
            self.reply_text(wire.RPL_ENDOFNAMES, room.name, "End of /NAMES list")

    def irc_LIST(self, params: list[str]) -> None:
        """
        C{LIST [filters]}: every channel, or those named; ELIST filters
        C{>N} and C{<N} (more, fewer users than N), C{MASK} and C{!MASK}.
        """
        self.reply(wire.RPL_LISTSTART, "Channel", "Users  Name")
        wanted = _list_filter(params[0].split(",")) if params and params[0] else None
        for key, room in sorted(self.hub.rooms.items()):
            if wanted is not None and not wanted(key, len(room.members)):
                continue
            if not room.members or not self._can_see(room):
                continue  # an empty room is no IRC channel
            self.reply_text(wire.RPL_LIST, room.name, str(len(room.members)), clean(room.topic))
        self.reply_text(wire.RPL_LISTEND, "End of /LIST")

    def irc_KICK(self, params: list[str]) -> object:
        if not self.need(params, 2):
            return None
        rooms, nicks = _targets(params[0]), _targets(params[1])
        reason = clean(params[2]) if len(params) > 2 and params[2] else None
        if len(rooms) != 1 and len(rooms) != len(nicks):
            self.reply_text(wire.ERR_NEEDMOREPARAMS, "KICK", "One channel, or one per nickname")
            return None
        waiting: object = None
        for index, nick in enumerate(nicks):
            room = rooms[0] if len(rooms) == 1 else rooms[index]
            self._target = nick
            waiting = self._try(rq.Kick(room=room, nick=nick, reason=reason))
        return waiting

    def irc_INVITE(self, params: list[str]) -> object:
        if not self.need(params, 2):
            return None
        nick, room = params[0], params[1]
        if fold(nick) not in self.hub.users:
            self.reply_text(wire.ERR_NOSUCHNICK, nick, "No such nick/channel")
            return None
        self._target = room
        return self.submit(rq.Invite(room=room, nick=nick))

    # -- MODE ---------------------------------------------------------------

    def irc_MODE(self, params: list[str]) -> object:
        if not self.need(params, 1):
            return None
        target = params[0]
        if not target.startswith("#"):
            self._user_mode(target, params[1:])
            return None
        room = self.hub.rooms.get(fold(target))
        if room is None:
            self.reply_text(wire.ERR_NOSUCHCHANNEL, target, "No such channel")
            return None
        if len(params) == 1:
            self._modes_reply(room)
            return None
        return self._channel_modes(room, params[1], params[2:])

    def _modes_reply(self, room: Room) -> None:
        flags = room.mode_string() or "+"
        args = []
        if room.key and self.me in room.members:
            args.append(room.key)
        if room.limit:
            args.append(str(room.limit))
        self.reply(wire.RPL_CHANNELMODEIS, room.name, flags, *args)
        self.reply(wire.RPL_CREATIONTIME, room.name, str(int(room.created)))

    def _channel_modes(self, room: Room, change: str, args: list[str]) -> object:
        """
        Apply C{+mt-k+o KEY nick} and the like: each run of the room's own
        flags with one sign as one request (the hub tells it as one C{MODE}
        line), each C{o}, C{v} and C{b} as a request of its own.
        """
        sign = "+"
        waiting: object = None
        queue = list(args)
        flags: dict[str, Any] = {}  # the run of flags being gathered: letters, key, limit

        def flush() -> None:
            nonlocal waiting
            if flags:
                letters = flags.pop("letters")
                waiting = self._mode(room, sign + letters, **flags)
                flags.clear()

        for letter in change:
            if letter in "+-":
                if letter != sign:
                    flush()
                sign = letter
            elif letter in "imnst":
                flags["letters"] = flags.get("letters", "") + letter
            elif letter == "k":
                key = queue.pop(0) if queue else None
                if sign == "+" and not _valid_key(key):
                    self.reply(wire.ERR_INVALIDMODEPARAM, room.name, "k", "*", "Invalid key")
                    continue
                flags["letters"] = flags.get("letters", "") + "k"
                if sign == "+":
                    flags["key"] = key
            elif letter == "l":
                if sign == "+":
                    value = queue.pop(0) if queue else ""
                    try:
                        flags["limit"] = model.parse_limit(value)
                    except ChatError as error:
                        self.reply(
                            wire.ERR_INVALIDMODEPARAM, room.name, "l", value or "*", error.message
                        )
                        continue
                flags["letters"] = flags.get("letters", "") + "l"
            elif letter in "bov":
                flush()
                if not queue:
                    if letter == "b" and sign == "+":
                        self._ban_list(room)
                    continue
                target = queue.pop(0)
                if letter == "b":
                    waiting = self._ban(room, sign, target)
                else:
                    waiting = self._rank(room, sign, letter, target)
            else:
                self.reply_text(wire.ERR_UNKNOWNMODE, letter, "is an unknown mode char to me")
        flush()
        return waiting

    def _ban_list(self, room: Room) -> None:
        for account in sorted(room.bans):
            self.reply(wire.RPL_BANLIST, room.name, ban_mask(account))
        self.reply_text(wire.RPL_ENDOFBANLIST, room.name, "End of channel ban list")

    def _ban(self, room: Room, sign: str, banned: str) -> object:
        nick = banned.split("!", 1)[0]
        if not nick or any(c in nick for c in "*?") or banned.count("!") > 1:
            self.fail("MODE", "INVALID_MASK", "Bans are by nickname or account: NICK!*@*", banned)
            return None
        kind = rq.Ban if sign == "+" else rq.Unban
        self._target = nick
        return self._try(kind(room=room.name, nick=nick))

    def _rank(self, room: Room, sign: str, letter: str, nick: str) -> object:
        kind = _RANKS[sign, letter]
        self._target = nick
        return self._try(kind(room=room.name, nick=nick))

    def _mode(self, room: Room, change: str, **fields: Any) -> object:
        return self._try(rq.Mode(room=room.name, mode=change, **fields))

    def _try(self, request: rq.Request) -> object:
        """
        Submit C{request}; a refusal is told, and does not stop the rest
        of a command that makes several.
        """
        try:
            result = self.submit(request)
        except ChatError as error:
            self.deliver(model.Error.from_exception(error))
            return None
        if isinstance(result, Deferred):
            result.addErrback(self._refused)
        return result

    def _refused(self, failure: Failure) -> None:
        failure.trap(ChatError)
        assert isinstance(failure.value, ChatError)
        self.deliver(model.Error.from_exception(failure.value))

    def _user_mode(self, target: str, params: list[str]) -> None:
        if fold(target) != fold(self.nick):
            if fold(target) in self.hub.users:
                self.reply_text(wire.ERR_USERSDONTMATCH, "Cannot change mode for other users")
            else:
                self.reply_text(wire.ERR_NOSUCHNICK, target, "No such nick/channel")
            return
        if not params:
            self.reply(wire.RPL_UMODEIS, "+i" if self.invisible else "+")
            return
        sign, applied = "+", ""
        for letter in params[0]:
            if letter in "+-":
                sign = letter
            elif letter == "i":
                if self.invisible != (sign == "+"):
                    self.invisible = sign == "+"
                    if self.invisible:
                        self.door.invisible.add(self)
                    else:
                        self.door.invisible.discard(self)
                    applied += sign + "i"
            else:
                self.reply_text(wire.ERR_UMODEUNKNOWNFLAG, "Unknown MODE flag")
        if applied:
            self.send(wire.line(self.mask, "MODE", self.nick, applied).encode())

    # -- messages -----------------------------------------------------------

    def irc_PRIVMSG(self, params: list[str], notice: bool = False) -> object:
        command = "NOTICE" if notice else "PRIVMSG"
        if not params or not params[0]:
            if not notice:
                self.reply_text(wire.ERR_NORECIPIENT, f"No recipient given ({command})")
            return None
        if len(params) < 2 or not params[1]:
            if not notice:
                self.reply_text(wire.ERR_NOTEXTTOSEND, "No text to send")
            return None
        text = params[1]
        self.spoke_at = self.door.clock.seconds()
        waiting: object = None
        for target in _targets(params[0]):
            waiting = self._message(
                target.lstrip("@+") if target[:1] in "@+" else target, text, notice
            )
        return waiting

    def irc_TAGMSG(self, params: list[str]) -> None:
        """
        Tags alone (typing notices and the like): accepted, not relayed,
        since chatd's other doors have no use for them.
        """

    def irc_NOTICE(self, params: list[str]) -> object:
        return self.irc_PRIVMSG(params, notice=True)

    def _message(self, target: str, text: str, notice: bool) -> object:
        self._target = target
        if target.startswith("#"):
            if fold(target) not in self.hub.rooms:
                if not notice:
                    self.reply_text(wire.ERR_NOSUCHCHANNEL, target, "No such channel")
                return None
            if _is_action(text):
                action = text[len(ACTION) :].rstrip("\x01").strip()
                if not action:
                    return None  # an empty action: nothing to show
                request: rq.Request = rq.Me(room=target, text=action)
            else:
                request = rq.Say(room=target, text=text, notice=notice or None)
        else:
            user = self.hub.users.get(fold(target))
            if user is None:
                if not notice:
                    self.reply_text(wire.ERR_NOSUCHNICK, target, "No such nick/channel")
                return None
            if text.startswith("\x01") and not _is_action(text) and not _speaks_ctcp(user):
                return None  # a CTCP query or reply: other doors' users have no client to answer
            request = rq.Msg(to=target, text=text, notice=notice or None)
            away = getattr(user.client, "away", None)
            if away and not notice:
                self.reply_text(wire.RPL_AWAY, user.nick, away)
        try:
            result = self.submit(request)
        except ChatError as error:
            if not notice:
                self.deliver(model.Error.from_exception(error))
            return None
        if isinstance(result, Deferred):  # a cluster's: each target's refusal is told
            result.addErrback(self._ignored if notice else self._refused)
        return result

    def _ignored(self, failure: Failure) -> None:
        failure.trap(ChatError)

    # -- users --------------------------------------------------------------

    def irc_AWAY(self, params: list[str]) -> None:
        message = clean(params[0])[:MAX_TOPIC_LENGTH] if params and params[0] else None
        self.away = message
        if message is None:
            self.reply_text(wire.RPL_UNAWAY, "You are no longer marked as being away")
        else:
            self.reply_text(wire.RPL_NOWAWAY, "You have been marked as being away")
        if message:
            line = wire.text_line(self.mask, "AWAY", message).encode()
        else:
            line = wire.line(self.mask, "AWAY").encode()
        told: set[object] = {self}
        for room in self.me.rooms.values():
            for member in room.members:
                client = member.client
                if client not in told and "away-notify" in getattr(client, "caps", ()):
                    told.add(client)
                    client.send(line)

    def irc_WHO(self, params: list[str]) -> None:
        query = params[0] if params and params[0] else "*"
        if query.startswith("#"):
            room = self.hub.rooms.get(fold(query))
            if room is not None and self._can_see(room):
                for member in room.members:
                    if self._hidden(member, room):
                        continue
                    self._who_line(member, room)
        else:
            for user in self._matching(query):
                self._who_line(user, None)
        self.reply_text(wire.RPL_ENDOFWHO, query, "End of WHO list")

    def _hidden(self, user: User, room: Room | None) -> bool:
        """
        Whether C{user} is invisible (mode C{+i}) to this client: it shares
        no room with it.
        """
        if user is self.user or not getattr(user.client, "invisible", False):
            return False
        if room is not None and self.me in room.members:
            return False
        return not any(self.me in r.members for r in user.rooms.values())

    def _matching(self, query: str) -> Iterable[User]:
        if "*" not in query and "?" not in query:
            user = self.hub.users.get(fold(query))
            return [user] if user is not None else []
        pattern = fold(query)
        return [
            u
            for u in self.hub.users.values()
            if (_matches(pattern, fold(u.nick)) or _matches(pattern, fold(mask(u))))
            and not self._hidden(u, None)
        ]

    def _who_line(self, user: User, room: Room | None) -> None:
        nick, _, rest = mask(user).partition("!")
        ident, _, host = rest.partition("@")
        flags = "G" if getattr(user.client, "away", None) else "H"
        if self.is_oper(user):
            flags += "*"
        if room is not None and room.rank(user, self.hub.admins) >= OPERATOR:
            flags += "@"
        elif room is not None and user in room.voiced:
            flags += "+"
        channel = room.name if room is not None else "*"
        realname = getattr(user.client, "realname", "") or nick
        self.reply_text(
            wire.RPL_WHOREPLY,
            channel,
            ident,
            host,
            self.door.server_name,
            nick,
            flags,
            f"0 {realname}",
        )

    def irc_WHOIS(self, params: list[str]) -> None:
        if not self.need(params, 1):
            return
        query = params[-1]
        for nick in _targets(query)[:1]:
            user = self.hub.users.get(fold(nick))
            if user is None:
                self.reply_text(wire.ERR_NOSUCHNICK, nick, "No such nick/channel")
                self.reply_text(wire.RPL_ENDOFWHOIS, nick, "End of /WHOIS list")
                continue
            _, _, rest = mask(user).partition("!")
            ident, _, host = rest.partition("@")
            client = user.client
            realname = getattr(client, "realname", "") or user.nick
            self.reply_text(wire.RPL_WHOISUSER, user.nick, ident, host, "*", realname)
            rooms = []
            for room in user.rooms.values():
                if "s" in room.modes and self.me not in room.members:
                    continue
                prefix = "@" if room.rank(user, self.hub.admins) >= OPERATOR else ""
                rooms.append(prefix + room.name)
            if rooms:
                self.reply_text(wire.RPL_WHOISCHANNELS, user.nick, " ".join(rooms))
            door = getattr(client, "door", None)
            where = f"chatd {door.name} door" if door is not None else "chatd cluster"
            self.reply_text(wire.RPL_WHOISSERVER, user.nick, self.door.server_name, where)
            if self.is_oper(user):
                self.reply_text(wire.RPL_WHOISOPERATOR, user.nick, "is a server operator")
            away = getattr(client, "away", None)
            if away:
                self.reply_text(wire.RPL_AWAY, user.nick, away)
            if user.account:
                self.reply_text(wire.RPL_WHOISACCOUNT, user.nick, user.account, "is logged in as")
            signed_on = getattr(client, "signed_on_at", 0.0)
            if signed_on:
                idle = int(self.door.clock.seconds() - getattr(client, "spoke_at", signed_on))
                self.reply_text(
                    wire.RPL_WHOISIDLE,
                    user.nick,
                    str(idle),
                    str(int(signed_on)),
                    "seconds idle, signon time",
                )
            self.reply_text(wire.RPL_ENDOFWHOIS, user.nick, "End of /WHOIS list")

    def irc_WHOWAS(self, params: list[str]) -> None:
        if not self.need(params, 1):
            return
        self.reply_text(wire.ERR_WASNOSUCHNICK, params[0], "There was no such nickname")
        self.reply_text(wire.RPL_ENDOFWHOWAS, params[0], "End of WHOWAS")

    def irc_USERHOST(self, params: list[str]) -> None:
        if not self.need(params, 1):
            return
        found = []
        for nick in params[:5]:
            user = self.hub.users.get(fold(nick))
            if user is None:
                continue
            oper = "*" if self.is_oper(user) else ""
            away = "-" if getattr(user.client, "away", None) else "+"
            found.append(f"{user.nick}{oper}={away}{mask(user).partition('!')[2]}")
        self.reply_text(wire.RPL_USERHOST, " ".join(found))

    def irc_ISON(self, params: list[str]) -> None:
        nicks = " ".join(params).split()
        online = [self.hub.users[fold(n)].nick for n in nicks if fold(n) in self.hub.users]
        self.reply_text(wire.RPL_ISON, " ".join(online))

    def irc_OPER(self, params: list[str]) -> object:
        if not self.need(params, 2):
            return None
        return self.submit(rq.Oper(name=params[0], password=params[1]))

    def irc_KILL(self, params: list[str]) -> object:
        if not self.need(params, 1):
            return None
        reason = clean(params[1]) if len(params) > 1 and params[1] else None
        return self.submit(rq.Kill(nick=params[0], reason=reason))

    # -- the server ---------------------------------------------------------

    def irc_TIME(self, params: list[str]) -> None:
        now = time.strftime(
            "%A %B %d %Y -- %H:%M:%S +00:00", time.gmtime(self.door.clock.seconds())
        )
        self.reply_text(wire.RPL_TIME, self.door.server_name, now)

    def irc_LINKS(self, params: list[str]) -> None:
        self.reply_text(wire.RPL_ENDOFLINKS, "*", "End of /LINKS list")

    def irc_HELP(self, params: list[str]) -> None:
        subject = params[0].upper() if params else ""
        text = HELP.get(subject)
        if text is None:
            self.reply_text(wire.ERR_HELPNOTFOUND, params[0], "No help available on this topic")
            return
        name = subject or "*"
        self.reply_text(wire.RPL_HELPSTART, name, text[0])
        for row in text[1:]:
            self.reply_text(wire.RPL_HELPTXT, name, row)
        self.reply_text(wire.RPL_ENDOFHELP, name, "End of /HELP")

    irc_HELPOP = irc_HELP

    def irc_ADMIN(self, params: list[str]) -> None:
        name = self.door.server_name
        self.reply_text("256", name, "Administrative info")
        self.reply_text("257", f"chatd at {name}")
        self.reply_text("258", "Server operators are the accounts given to --admins")
        self.reply_text("259", "chatd")

    def irc_INFO(self, params: list[str]) -> None:
        self.reply_text("371", f"chatd {__version__}: one hub for telnet, browser and IRC users")
        self.reply_text("374", "End of INFO list")

    def irc_VERSION(self, params: list[str]) -> None:
        self.reply_text("351", f"chatd-{__version__}", self.door.server_name, "chatd IRC door")
        self.isupport()

    def irc_LUSERS(self, params: list[str]) -> None:
        """
        The user counts: of the whole hub (every node of a cluster), and of
        this node's users (on every door), with the most there were.  Every
        welcome sends them, so what would take a walk over every user is
        counted as it changes.
        """
        door, everyone = self.door, self.hub.users.values()
        users = len(everyone)
        if isinstance(self.gateway, LocalGateway):
            here = users
        else:  # a cluster node's hub has every node's users
            here = sum(1 for u in everyone if getattr(u.client, "door", None) is not None)
        door.peak_here, door.peak = max(door.peak_here, here), max(door.peak, users)
        invisible = len(door.invisible)
        self.reply_text(
            wire.RPL_LUSERCLIENT,
            f"There are {users - invisible} users and {invisible} invisible on 1 servers",
        )
        opers = sum(1 for u in everyone if self.is_oper(u)) if self.hub.admins else 0
        if opers:
            self.reply_text(wire.RPL_LUSEROP, str(opers), "operator(s) online")
        unknown = len(door.connections) - door.registered - (self.user is None)
        if unknown > 0:
            self.reply_text(wire.RPL_LUSERUNKNOWN, str(unknown), "unknown connection(s)")
        channels = sum(1 for room in self.hub.rooms.values() if room.members)
        if channels:
            self.reply_text(wire.RPL_LUSERCHANNELS, str(channels), "channels formed")
        self.reply_text(wire.RPL_LUSERME, f"I have {here} clients and 0 servers")
        for numeric, count, peak, which in (
            (wire.RPL_LOCALUSERS, here, door.peak_here, "local"),
            (wire.RPL_GLOBALUSERS, users, door.peak, "global"),
        ):
            self.reply_text(
                numeric, str(count), str(peak), f"Current {which} users {count}, max {peak}"
            )

    def irc_MOTD(self, params: list[str]) -> None:
        lines = self.hub.motd
        if not lines:
            self.reply_text(wire.ERR_NOMOTD, "MOTD File is missing")
            return
        self.reply_text(wire.RPL_MOTDSTART, f"- {self.door.server_name} Message of the day - ")
        for row in lines:
            self.reply_text(wire.RPL_MOTD, "- " + clean(row))
        self.reply_text(wire.RPL_ENDOFMOTD, "End of /MOTD command.")

    def isupport(self) -> None:
        tokens = [
            "AWAYLEN=390",
            "CASEMAPPING=ascii",
            f"CHANLIMIT=#:{self.hub.max_rooms_per_user}",
            f"CHANMODES={CHANMODES}",
            f"CHANNELLEN={MAX_ROOM_LENGTH + 1}",
            "CHANTYPES=#",
            "ELIST=MNU",
            f"KICKLEN={MAX_TOPIC_LENGTH}",
            "MAXTARGETS=4",
            "MODES=4",
            "NETWORK=chatd",
            f"NICKLEN={MAX_NICK_LENGTH}",
            "PREFIX=(ov)@+",
            "SAFELIST",
            f"TARGMAX=JOIN:{MAX_JOINS},KICK:{MAX_TARGETS},NAMES:{MAX_TARGETS},NOTICE:{MAX_TARGETS},"
            f"PART:{MAX_TARGETS},PRIVMSG:{MAX_TARGETS},WHOIS:1",
            f"TOPICLEN={MAX_TOPIC_LENGTH}",
            "UTF8ONLY",
        ]
        for start in range(0, len(tokens), 12):
            self.reply_text(
                wire.RPL_ISUPPORT, *tokens[start : start + 12], "are supported by this server"
            )

    def welcome(self, event: model.Welcome) -> None:
        """
        The numerics that end registration: 001-005, LUSERS and the MOTD.
        """
        name = self.door.server_name
        version = f"chatd-{__version__}"
        self.reply_text(wire.RPL_WELCOME, f"Welcome to the chatd IRC network {self.mask}")
        self.reply_text(wire.RPL_YOURHOST, f"Your host is {name}, running version {version}")
        created = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.door.created))
        self.reply_text(wire.RPL_CREATED, f"This server was created {created}")
        self.reply(wire.RPL_MYINFO, name, version, "i", "biklmnostv", "bklov")
        self.isupport()
        self.irc_LUSERS([])
        self.irc_MOTD([])
        if event.account and self._account is None:  # (SASL said so already)
            self.reply(
                wire.RPL_LOGGEDIN,
                self.mask,
                event.account,
                f"You are now logged in as {event.account}",
            )

    # -- events for this user alone -----------------------------------------

    def render(self, event: Any, shared: bool = False) -> bytes:
        """
        An event meant for this connection alone, as IRC lines (nothing,
        for what IRC has no words for).  C{shared}: it came by the fan-out
        to a whole room (a member list after an op change: IRC clients
        follow C{MODE} lines instead).
        """
        handler = _PERSONAL.get(type(event))
        if handler is None or (shared and type(event) is model.UserList):
            return b""
        lines = handler(self, event)
        if lines is None:
            return b""
        return lines.encode("utf-8") if isinstance(lines, str) else lines

    def _render_welcome(self, event: model.Welcome) -> None:
        self.welcome(event)

    def _render_users(self, event: model.UserList) -> None:
        room = self.hub.rooms.get(fold(event.room))
        if room is None:
            return None
        if fold(self._joining or "") == fold(event.room) and room.topic:
            self._topic_reply(room)
        if event.page is None:
            self.names(room)
            return None
        # A big room (--big-room): the page the hub chose, as the other doors
        # get it, where every member's name to every joiner of a room being
        # filled would cost the square of its size; NAMES lists them all.
        users = self.hub.users
        listed = [users[fold(n)] for n in event.nicks if fold(n) in users]
        self.names(room, members=listed)
        self.reply_text(
            "NOTICE", f"{room.name} has {event.count} users; /names {room.name} lists them all"
        )
        return None

    def _render_topic(self, event: model.Topic) -> None:
        if fold(self._joining or "") == fold(event.room):
            return None  # sent with the names, in IRC's order
        room = self.hub.rooms.get(fold(event.room))
        if room is not None:
            self._topic_reply(room)
        return None

    def _render_modes(self, event: model.Modes) -> None:
        room = self.hub.rooms.get(fold(event.room))
        if room is not None:
            self._modes_reply(room)

    def _render_private(self, event: model.PrivateMessage) -> str:
        tags = {}
        if "server-time" in self.caps:
            tags["time"] = server_time(event.ts)
        sender = self.hub.users.get(fold(event.sender))
        if "account-tag" in self.caps and sender is not None and sender.account:
            tags["account"] = sender.account
        command = "NOTICE" if event.notice else "PRIVMSG"
        return wire.text_lines(
            self.source_of(event.sender), command, self.nick, event.text, wire.format_tags(tags)
        )

    def _render_echo(self, event: model.PrivateEcho) -> str:
        if "echo-message" not in self.caps:
            return ""
        tags = {"time": server_time(event.ts)} if "server-time" in self.caps else {}
        command = "NOTICE" if event.notice else "PRIVMSG"
        return wire.text_lines(
            self.mask, command, event.recipient, event.text, wire.format_tags(tags)
        )

    def _render_history(self, event: model.HistoryPage) -> str:
        """
        A room's recent messages on joining it: for C{server-time} clients
        only, each with the time it was said (old lines without it would
        read as new).
        """
        if "server-time" not in self.caps:
            return ""
        out = []
        for message in event.messages:
            tags = {"time": server_time(message.ts)}
            source = f"{message.sender}!{message.sender}@chatd"
            user = self.hub.users.get(fold(message.sender))
            if user is not None:
                source = mask(user)
            out.append(
                wire.text_lines(
                    source, "PRIVMSG", event.room, message_text(message), wire.format_tags(tags)
                )
            )
        return "".join(out)

    def _render_invited(self, event: model.Invited) -> str:
        return wire.line(self.source_of(event.by), "INVITE", self.nick, event.room)

    def _render_account(self, event: model.AccountChanged) -> str:
        name = self.door.server_name
        if event.what == "registered":
            return wire.text_line(
                name, "REGISTER", "SUCCESS", event.account, "Account created"
            ) + wire.text_line(
                name,
                wire.RPL_LOGGEDIN,
                self.nick,
                self.mask,
                event.account,
                f"You are now logged in as {event.account}",
            )
        if event.what == "identified":
            return wire.text_line(
                name,
                wire.RPL_LOGGEDIN,
                self.nick,
                self.mask,
                event.account,
                f"You are now logged in as {event.account}",
            )
        if event.what == "oper":
            return wire.text_line(
                name, "381", self.nick, "You are now an IRC operator"
            ) + wire.line(self.mask, "MODE", self.nick, "+o")
        return wire.text_line(
            name, "NOTICE", self.nick, f"The password of {event.account} was changed"
        )

    def _render_notice(self, event: model.Notice) -> str:
        return wire.text_line(self.door.server_name, "NOTICE", self.nick, clean(event.text))

    def _render_invite_sent(self, event: model.InviteSent) -> str:
        return wire.line(
            self.door.server_name, wire.RPL_INVITING, self.nick, event.nick, event.room
        )

    def _render_error(self, event: model.Error) -> str:
        return error_lines(self, event)


_PERSONAL: dict[type, Callable[[Any, Any], Any]] = {
    model.Welcome: IrcCommands._render_welcome,
    model.UserList: IrcCommands._render_users,
    model.Topic: IrcCommands._render_topic,
    model.Modes: IrcCommands._render_modes,
    model.PrivateMessage: IrcCommands._render_private,
    model.PrivateEcho: IrcCommands._render_echo,
    model.HistoryPage: IrcCommands._render_history,
    model.Invited: IrcCommands._render_invited,
    model.AccountChanged: IrcCommands._render_account,
    model.Notice: IrcCommands._render_notice,
    model.InviteSent: IrcCommands._render_invite_sent,
    model.Error: IrcCommands._render_error,
}


def error_lines(session: IrcCommands, error: model.Error) -> str:
    """
    A refusal as IRC says it: the numeric for what was asked (from the
    command being handled), else a C{NOTICE} with chatd's own words.
    """
    name, nick = session.door.server_name, session.nick
    context = session._context
    command = context.command if context else ""
    params = context.params if context else []
    first = params[0] if params else "*"
    code, text = error.code, clean(error.message)

    def numeric(number: str, *args: str) -> str:
        return wire.text_line(name, number, nick, *args)

    if code in ("flood", "slow_consumer", "sign_on_timeout", "killed", "taken_over"):
        return f"ERROR :{text}\r\n"  # the connection is closing, whatever was asked
    if command == "NOTICE":
        return ""
    if command == "REGISTER":
        fails = {
            "nick_registered": "ACCOUNT_EXISTS",
            "bad_password": "INVALID_PASSWORD",
            "busy": "TEMPORARILY_UNAVAILABLE",
        }
        return wire.text_line(
            name, "FAIL", "REGISTER", fails.get(code, "UNKNOWN_ERROR"), nick, text
        )
    about = session._target
    room = next((p for p in params if p.startswith("#")), first)
    if about is not None and about.startswith("#"):
        room = about
    target = about if about is not None and not about.startswith("#") else first
    if code in ("nick_taken", "nick_registered"):
        return numeric(wire.ERR_NICKNAMEINUSE, first, text)
    if code == "bad_nick":
        if command == "NICK":
            return numeric(wire.ERR_ERRONEUSNICKNAME, first, "Erroneous nickname")
        return numeric(wire.ERR_NOSUCHNICK, target, "No such nick/channel")
    if code == "no_such_nick":
        if command in ("KICK", "MODE") and fold(target) in session.hub.users:
            return numeric(wire.ERR_USERNOTINCHANNEL, target, room, "They aren't on that channel")
        if command == "INVITE":
            return numeric(wire.ERR_NOSUCHNICK, first, "No such nick/channel")
        return numeric(wire.ERR_NOSUCHNICK, target, "No such nick/channel")
    if code in ("no_such_room", "bad_room"):
        return numeric(wire.ERR_NOSUCHCHANNEL, room, "No such channel")
    if code in ("not_in_room", "moderated") and command in ("PRIVMSG", "NOTICE"):
        return numeric(wire.ERR_CANNOTSENDTOCHAN, room, "Cannot send to channel")
    if code == "not_in_room" and fold(room) not in session.hub.rooms:
        return numeric(wire.ERR_NOSUCHCHANNEL, room, "No such channel")
    if code == "not_in_room":
        return numeric(wire.ERR_NOTONCHANNEL, room, "You're not on that channel")
    if code in ("not_op", "not_allowed"):
        return numeric(wire.ERR_CHANOPRIVSNEEDED, room, "You're not channel operator")
    if code == "banned":
        return numeric(wire.ERR_BANNEDFROMCHAN, room, "Cannot join channel (+b)")
    if code == "invite_only":
        return numeric(wire.ERR_INVITEONLYCHAN, room, "Cannot join channel (+i)")
    if code == "bad_key" and command == "JOIN":
        return numeric(wire.ERR_BADCHANNELKEY, room, "Cannot join channel (+k)")
    if code == "bad_key":
        return numeric(wire.ERR_INVALIDMODEPARAM, room, "k", "*", text)
    if code == "room_full":
        return numeric(wire.ERR_CHANNELISFULL, room, "Cannot join channel (+l)")
    if code == "bad_limit":
        return numeric(wire.ERR_INVALIDMODEPARAM, room, "l", "*", text)
    if code == "already_joined" and command == "INVITE":
        return numeric(wire.ERR_USERONCHANNEL, first, room, "is already on channel")
    if code == "already_joined":
        return ""
    if code == "too_many_rooms":
        return numeric(wire.ERR_TOOMANYCHANNELS, room, text)
    if code == "bad_mode":
        return numeric(wire.ERR_UNKNOWNMODE, "*", text)
    if command == "OPER" and code == "not_admin":
        return numeric("491", "No O-lines for your host")
    if command == "OPER":
        return numeric(wire.ERR_PASSWDMISMATCH, "Password incorrect")
    if code == "not_admin":
        return numeric(wire.ERR_NOPRIVILEGES, "Permission Denied- You're not an IRC operator")
    if code == "empty_text":
        return numeric(wire.ERR_NOTEXTTOSEND, "No text to send")
    return wire.text_line(name, "NOTICE", nick, text)


_RANKS: dict[tuple[str, str], type[rq.Op | rq.Deop | rq.Voice | rq.Devoice]] = {
    ("+", "o"): rq.Op,
    ("-", "o"): rq.Deop,
    ("+", "v"): rq.Voice,
    ("-", "v"): rq.Devoice,
}


def _list_filter(items: list[str]) -> Callable[[str, int], bool]:
    """
    Whether a channel (folded name, user count) passes C{LIST}'s filters:
    all the count and negated-mask ones, and one of the names or masks if
    any is given.
    """
    more: list[int] = []  # more users than each
    fewer: list[int] = []  # fewer users than each
    excluded: list[str] = []
    names: list[str] = []
    for item in items[: MAX_TARGETS * 4]:
        number = item[1:]
        if item[:1] in ("<", ">") and number.isascii() and number.isdigit():
            (more if item[0] == ">" else fewer).append(int(number))
        elif item.startswith("!"):
            excluded.append(fold(item[1:]))
        elif item:
            names.append(fold(item))

    def passes(name: str, users: int) -> bool:
        if any(users <= n for n in more) or any(users >= n for n in fewer):
            return False
        if any(_matches(mask, name) for mask in excluded):
            return False
        return not names or any(_matches(mask, name) for mask in names)

    return passes


def _is_action(text: str) -> bool:
    tail = text[len(ACTION) - 1 : len(ACTION)]
    return text.startswith(ACTION.rstrip()) and tail in ("", " ", "\x01")


def _speaks_ctcp(user: User) -> bool:
    """
    Whether C{user} is an IRC client (or on another node, which may be).
    """
    door = getattr(user.client, "door", None)
    return door is None or door.name == "irc"


def _valid_key(key: str | None) -> bool:
    return (
        bool(key)
        and key is not None
        and len(key) <= 23
        and key.isprintable()
        and " " not in key
        and "," not in key
    )


def _matches(pattern: str, name: str) -> bool:
    return fnmatchcase(name, pattern.replace("[", "[[]"))
