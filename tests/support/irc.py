"""
An IRC client of the IRC door on a C{StringTransport}, seen from the peer,
as L{chatd.testing.LinePeer} is for the line door.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

from chatd.doors.irc import IrcDoor, IrcProtocol
from chatd.doors.irc.wire import IrcMessage, parse
from chatd.testing import StreamPeer


def plain(account: str, password: str, authzid: str = "") -> str:
    """
    The base64 of a SASL PLAIN message.
    """
    raw = f"{authzid}\0{account}\0{password}".encode()
    return base64.b64encode(raw).decode("ascii")


class IrcPeer(StreamPeer):
    """
    An IRC-door connection on a C{StringTransport}, seen from the peer.
    """

    protocol: IrcProtocol

    def __init__(self, door: IrcDoor) -> None:
        super().__init__(door)
        assert isinstance(self.protocol, IrcProtocol), self.protocol

    def messages(self) -> list[IrcMessage]:
        """
        The lines written since the last call, parsed.
        """
        parsed = [parse(line) for line in self.lines()]
        assert None not in parsed, parsed
        return [m for m in parsed if m is not None]

    def commands(self) -> list[str]:
        """
        The commands (or numerics) of the lines written since the last call.
        """
        return [m.command for m in self.messages()]

    def register(
        self,
        nick: str,
        caps: Iterable[str] = (),
        password: str | None = None,
        ident: str | None = None,
    ) -> list[str]:
        """
        Register as C{nick} (with C{caps}, and C{PASS password}, if given)
        and return what the server said.
        """
        caps = list(caps)
        if caps:
            self.send("CAP LS 302")
            self.send("CAP REQ :" + " ".join(caps))
        if password is not None:
            self.send(f"PASS {password}")
        self.send(f"NICK {nick}")
        self.send(f"USER {ident or nick} 0 * :{nick} the tester")
        if caps:
            self.send("CAP END")
        return self.lines()

    def sign_on(self, nick: str, caps: Iterable[str] = (), **kwargs: Any) -> None:
        """
        Register as C{nick} and forget the welcome.
        """
        lines = self.register(nick, caps, **kwargs)
        assert any(f" 001 {nick} " in line for line in lines), lines
