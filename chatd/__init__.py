"""
chatd: a chat daemon on Twisted.

One transport-independent hub (L{chatd.hub}) holds users, nicknames and
rooms.  The doors in L{chatd.doors} (telnet-style lines, WebSocket) parse
their wire formats into requests (L{chatd.requests}) and render the hub's
events; a gateway carries requests to the hub, at once when the server runs
alone, through a shared log when it is one node of a cluster
(L{chatd.cluster}).  Run it with C{twistd -n chatd} (L{chatd.app}).
"""

__version__ = "0.1.0"
