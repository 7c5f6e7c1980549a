"""
Doors: thin adapters that put one wire protocol in front of the hub.

Each door parses its own wire format into requests (L{chatd.requests}) for
its gateway and renders hub events through its
L{chatd.interfaces.IEncoder}; what is common to all doors lives in
L{chatd.doors.base}.  Each door is a package: L{chatd.doors.line} and
L{chatd.doors.websocket}.
"""
