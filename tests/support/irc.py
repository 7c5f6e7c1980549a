"""
An IRC client of the IRC door on a C{StringTransport}, seen from the peer,
as L{chatd.testing.LinePeer} is for the line door.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from chatd.doors.irc import IrcDoor, IrcProtocol
from chatd.doors.irc.wire import IrcMessage, parse
from chatd.testing import PEER, TCPLikeTransport


def plain(account: str, password: str, authzid: str = "") -> str:
    """
    The base64 of a SASL PLAIN message.
    """
    raw = f"{authzid}\0{account}\0{password}".encode()
    return base64.b64encode(raw).decode("ascii")


class IrcPeer:
    """
    An IRC-door connection on a C{StringTransport}, seen from the peer.
    """

    def __init__(self, door: IrcDoor) -> None:
        protocol = door.buildProtocol(PEER)
        assert isinstance(protocol, IrcProtocol), protocol
        self.protocol: IrcProtocol = protocol
        self.transport = TCPLikeTransport(peerAddress=PEER)
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes | str) -> None:
        """
        Feed raw bytes (or one line of text, CR LF appended) to the server.
        """
        if isinstance(data, str):
            data = data.encode("utf-8") + b"\r\n"
        self.protocol.dataReceived(data)

    def received(self) -> bytes:
        """
        The raw bytes written since the last call.
        """
        data = self.transport.value()
        self.transport.clear()
        return data

    def lines(self) -> list[str]:
        """
        The lines written since the last call (each must end in CR LF).
        """
        data = self.received()
        assert data == b"" or data.endswith(b"\r\n"), data
        return data.decode("utf-8").split("\r\n")[:-1]

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

    def disconnect(self) -> None:
        """
        The connection is gone (as if the peer closed it).
        """
        self.protocol.connectionLost(Failure(ConnectionDone()))
