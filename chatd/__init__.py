"""
chatd: a chat daemon on Twisted.

One transport-independent L{chatd.hub.Hub} holds users, nicknames and rooms;
the doors in L{chatd.doors} (telnet-style lines, WebSocket) are thin adapters
onto it.  Run it with C{twistd -n chatd}.
"""

__version__ = "0.1.0"
