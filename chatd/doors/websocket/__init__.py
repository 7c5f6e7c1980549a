"""
The WebSocket door: one JSON object per text frame, dispatched on C{type}.

- L{chatd.doors.websocket.protocol}: a connection (frames decoded into
  requests, L{chatd.requests.from_wire}), the origin policy, and the door's
  factory;
- L{chatd.doors.websocket.rendering}: events, as JSON frames.
"""

from chatd.doors.websocket.protocol import (
    ChatWebSocketProtocol,
    OriginPolicy,
    WebSocketDoor,
    normalise_origin,
    protocol_options,
)
from chatd.doors.websocket.rendering import WebSocketEncoder, to_json

__all__ = [
    "ChatWebSocketProtocol",
    "OriginPolicy",
    "WebSocketDoor",
    "WebSocketEncoder",
    "normalise_origin",
    "protocol_options",
    "to_json",
]
