"""
The IRC door: real IRC clients (irssi, WeeChat, HexChat, bots) on the hub.
"""

from chatd.doors.irc.protocol import IrcDoor, IrcProtocol

__all__ = ["IrcDoor", "IrcProtocol"]
