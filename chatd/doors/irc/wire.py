# -*- test-case-name: tests.test_irc_wire -*-
"""
IRC messages on the wire: parsing one line into its tags, source, command
and parameters, and writing one back, both per the modern IRC client
protocol (RFC 1459 framing with IRCv3 message tags).

The numerics are Twisted's names (L{twisted.words.protocols.irc}) where it
has them; the few it lacks (IRCv3 and later additions) are named here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from twisted.words.protocols.irc import (  # noqa: F401  (re-exported for the door)
    ERR_ALREADYREGISTRED,
    ERR_BADCHANMASK,
    ERR_BADCHANNELKEY,
    ERR_BANNEDFROMCHAN,
    ERR_CANNOTSENDTOCHAN,
    ERR_CHANNELISFULL,
    ERR_CHANOPRIVSNEEDED,
    ERR_ERRONEUSNICKNAME,
    ERR_INVITEONLYCHAN,
    ERR_NEEDMOREPARAMS,
    ERR_NICKNAMEINUSE,
    ERR_NOMOTD,
    ERR_NONICKNAMEGIVEN,
    ERR_NOORIGIN,
    ERR_NOPRIVILEGES,
    ERR_NORECIPIENT,
    ERR_NOSUCHCHANNEL,
    ERR_NOSUCHNICK,
    ERR_NOSUCHSERVER,
    ERR_NOTEXTTOSEND,
    ERR_NOTONCHANNEL,
    ERR_NOTREGISTERED,
    ERR_PASSWDMISMATCH,
    ERR_TOOMANYCHANNELS,
    ERR_UMODEUNKNOWNFLAG,
    ERR_UNKNOWNCOMMAND,
    ERR_UNKNOWNMODE,
    ERR_USERNOTINCHANNEL,
    ERR_USERONCHANNEL,
    ERR_USERSDONTMATCH,
    ERR_WASNOSUCHNICK,
    RPL_AWAY,
    RPL_BANLIST,
    RPL_CHANNELMODEIS,
    RPL_CREATED,
    RPL_ENDOFBANLIST,
    RPL_ENDOFLINKS,
    RPL_ENDOFMOTD,
    RPL_ENDOFNAMES,
    RPL_ENDOFWHO,
    RPL_ENDOFWHOIS,
    RPL_ENDOFWHOWAS,
    RPL_INVITING,
    RPL_ISON,
    RPL_ISUPPORT,
    RPL_LINKS,
    RPL_LIST,
    RPL_LISTEND,
    RPL_LISTSTART,
    RPL_LUSERCHANNELS,
    RPL_LUSERCLIENT,
    RPL_LUSERME,
    RPL_LUSEROP,
    RPL_LUSERUNKNOWN,
    RPL_MOTD,
    RPL_MOTDSTART,
    RPL_MYINFO,
    RPL_NAMREPLY,
    RPL_NOTOPIC,
    RPL_NOWAWAY,
    RPL_TIME,
    RPL_TOPIC,
    RPL_UMODEIS,
    RPL_UNAWAY,
    RPL_USERHOST,
    RPL_WELCOME,
    RPL_WHOISCHANNELS,
    RPL_WHOISIDLE,
    RPL_WHOISOPERATOR,
    RPL_WHOISSERVER,
    RPL_WHOISUSER,
    RPL_WHOREPLY,
    RPL_YOURHOST,
)

RPL_LOCALUSERS = "265"
RPL_GLOBALUSERS = "266"
RPL_CREATIONTIME = "329"
RPL_WHOISACCOUNT = "330"
RPL_TOPICWHOTIME = "333"
RPL_WHOISACTUALLY = "338"
ERR_INVALIDCAPCMD = "410"
ERR_INPUTTOOLONG = "417"
RPL_HELPSTART = "704"
RPL_HELPTXT = "705"
RPL_ENDOFHELP = "706"
ERR_HELPNOTFOUND = "524"
ERR_INVALIDKEY = "525"
ERR_INVALIDMODEPARAM = "696"
RPL_LOGGEDIN = "900"
RPL_LOGGEDOUT = "901"
ERR_NICKLOCKED = "902"
RPL_SASLSUCCESS = "903"
ERR_SASLFAIL = "904"
ERR_SASLTOOLONG = "905"
ERR_SASLABORTED = "906"
ERR_SASLALREADY = "907"
RPL_SASLMECHS = "908"

MAX_LINE = 512
"""Bytes of a line without its tags, CR LF included (RFC 1459)."""
MAX_TAGS = 8191
"""Bytes of a line's tags, the C{@} and the space after them included
(IRCv3 message tags)."""
MAX_CLIENT_TAGS = 4096
"""Bytes of the tags a client may send, the C{@} and the space included
(the rest of L{MAX_TAGS} is for the server's own)."""

_TAG_UNESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
_TAG_ESCAPES = str.maketrans({";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"})


@dataclass(slots=True)
class IrcMessage:
    """
    One parsed line: C{PRIVMSG #room :hello} is command C{PRIVMSG} with
    params C{["#room", "hello"]}.
    """

    command: str
    params: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    source: str | None = None


def parse(line: str) -> IrcMessage | None:
    """
    Parse one line (without its line ending); C{None} if it has no command.
    The command is upper-cased; runs of spaces between parameters count as
    one, as clients and servers alike have always been lenient there.
    """
    tags: dict[str, str] = {}
    source = None
    rest = line.lstrip(" ")
    if rest.startswith("@"):
        raw, _, rest = rest[1:].partition(" ")
        tags = _parse_tags(raw)
        rest = rest.lstrip(" ")
    if rest.startswith(":"):
        source, _, rest = rest[1:].partition(" ")
        rest = rest.lstrip(" ")
    head, colon, trailing = rest.partition(" :")
    if rest.startswith(":"):  # no middle parameters at all
        head, colon, trailing = "", ":", rest[1:]
    words = head.split()
    if not words:
        return None
    params = words[1:]
    if colon:
        params.append(trailing)
    return IrcMessage(words[0].upper(), params, tags, source)


def _parse_tags(raw: str) -> dict[str, str]:
    tags = {}
    for item in raw.split(";"):
        if not item:
            continue
        key, _, value = item.partition("=")
        tags[key] = _unescape(value)
    return tags


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    out = []
    chars = iter(value)
    for c in chars:
        if c == "\\":
            following = next(chars, "")
            out.append(_TAG_UNESCAPES.get(following, following))
        else:
            out.append(c)
    return "".join(out)


def escape_tag(value: str) -> str:
    return value.translate(_TAG_ESCAPES)


def format_tags(tags: dict[str, str]) -> str:
    """
    C{@a=1;b } for C{{"a": "1", "b": ""}}; nothing for no tags.
    """
    if not tags:
        return ""
    return (
        "@"
        + ";".join(f"{key}={escape_tag(value)}" if value else key for key, value in tags.items())
        + " "
    )


def line(source: str | None, command: str, *params: str) -> str:
    """
    One line, CR LF ended, its last parameter written as a trailing one
    (after C{:}) only when it must be (empty, with a space, or a leading
    colon).  Parameters are made safe to write (L{middle}, L{clean}).
    """
    if not params:
        return f":{source} {command}\r\n" if source else f"{command}\r\n"
    *first, last = params
    last = clean(last)
    if not last or " " in last or last.startswith(":"):
        return text_line(source, command, *first, last)
    head = f":{source} {command}" if source else command
    return " ".join([head, *map(middle, first), last]) + "\r\n"


def text_line(source: str | None, command: str, *params: str) -> str:
    """
    Like L{line}, but the last parameter is always trailing (for text:
    messages, reasons), as most servers write it and some clients expect.
    """
    *first, last = params
    head = f":{source} {command}" if source else command
    if first:
        head += " " + " ".join(map(middle, first))
    line = f"{head} :{clean(last)}\r\n"
    if len(line) > MAX_LINE // 4 and len(line.encode("utf-8")) > MAX_LINE:
        # A reason, topic or away message longer in bytes than a line holds
        # (390 characters of CJK are 1170 bytes): cut between characters.
        room = MAX_LINE - 4 - len(head.encode("utf-8"))
        line = f"{head} :{pieces(clean(last), max(room, 1))[0]}\r\n"
    return line


def middle(param: str) -> str:
    """
    C{param} as a parameter before the last: one word, not starting with a
    colon (C{*} for what cannot be one; a client's words are echoed in
    numerics, and must not add parameters or lines).
    """
    if not param or param[0] == ":" or _BREAKS.search(param):
        return "*"
    return param


_BREAKS = re.compile("[ \r\n\0]")


def pieces(text: str, room: int) -> list[str]:
    """
    C{text} cut into pieces of at most C{room} bytes of UTF-8 each, between
    characters (a word's end, where there is one near): chatd's other doors
    take messages longer than an IRC line holds.
    """
    data = text.encode("utf-8")
    if len(data) <= room:
        return [text]
    out = []
    room = max(room, 4)
    while len(data) > room:
        cut = room
        while cut > 0 and (data[cut] & 0xC0) == 0x80:  # inside a character
            cut -= 1
        space = data.rfind(b" ", room // 2, cut)
        if space > 0:
            cut = space + 1
        out.append(data[:cut].decode("utf-8"))
        data = data[cut:]
    if data:
        out.append(data.decode("utf-8"))
    return out


def text_lines(source: str, command: str, target: str, text: str, tags: str = "") -> str:
    """
    L{text_line}s of C{command} to C{target}: one for what an IRC client
    could have sent in one line (as Ergo does, a line that the source's
    mask makes longer than L{MAX_LINE} is not cut: clients take it), as
    many as it needs to keep each within L{MAX_LINE} for the longer texts
    chatd's other doors take; a CTCP (an action) is cut into several,
    each a whole CTCP.
    """
    head = f":{source} {command} {middle(target)} :"
    text = clean(text)
    sent = len(text.encode("utf-8"))
    if sent <= MAX_LINE - 2 - len(f"{command} {target} "):
        return f"{tags}{head}{text}\r\n"
    room = MAX_LINE - 2 - len(head.encode("utf-8"))
    ctcp = ""
    if text.startswith("\x01") and text.endswith("\x01") and " " in text:
        ctcp, _, text = text[1:-1].partition(" ")
        ctcp = "\x01" + ctcp + " "
        room -= len(ctcp) + 1
    if len(text.encode("utf-8")) <= room:
        if ctcp:
            return f"{tags}{head}{ctcp}{text}\x01\r\n"
        return f"{tags}{head}{text}\r\n"
    end = "\x01" if ctcp else ""
    return "".join(f"{tags}{head}{ctcp}{piece}{end}\r\n" for piece in pieces(text, room))


def clean(text: str) -> str:
    """
    C{text} without what would end or break a line (CR, LF, NUL).
    """
    if "\r" in text or "\n" in text or "\0" in text:
        return text.replace("\r", " ").replace("\n", " ").replace("\0", "")
    return text
