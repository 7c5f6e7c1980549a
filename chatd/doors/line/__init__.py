"""
The line door: plain UTF-8 lines over TCP, friendly to C{telnet} and C{nc}.

- L{chatd.doors.line.protocol}: a connection, and the door's factory;
- L{chatd.doors.line.telnet}: the telnet transport under it;
- L{chatd.doors.line.commands}: C{/commands}, parsed into requests;
- L{chatd.doors.line.rendering}: events, as lines.
"""

from chatd.doors.line.protocol import LineChatProtocol, LineDoor
from chatd.doors.line.rendering import LineEncoder

__all__ = ["LineChatProtocol", "LineDoor", "LineEncoder"]
