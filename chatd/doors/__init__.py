"""
Doors: thin adapters that put one wire protocol in front of the hub.

Each door parses its own wire format into hub calls and renders hub events
through its L{chatd.interfaces.IEncoder}; what is common to all doors lives
in L{chatd.doors.base}.
"""
