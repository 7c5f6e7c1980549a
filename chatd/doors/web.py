# -*- test-case-name: tests.test_web -*-
"""
The web door's HTTP side: the browser client at C{/} and the WebSocket door
at C{/ws}, on one C{twisted.web} site.

The client's files are read once, when the site is built, and served from
memory, so serving them never touches the disk on the reactor thread.
"""

from __future__ import annotations

from importlib.resources import files

from autobahn.twisted.resource import WebSocketResource
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

from chatd.doors.websocket import WebSocketDoor

CLIENT_FILES = {
    b"": ("index.html", "text/html; charset=utf-8"),
    b"index.html": ("index.html", "text/html; charset=utf-8"),
    b"chat.js": ("chat.js", "text/javascript; charset=utf-8"),
    b"chat.css": ("chat.css", "text/css; charset=utf-8"),
}
CONTENT_SECURITY_POLICY = (
    b"default-src 'self'; connect-src 'self'; img-src 'self' data:; "
    b"object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


class ClientFile(Resource):
    """
    One file of the browser client, held in memory, sent with headers that
    keep the page from being framed or reinterpreted.
    """

    isLeaf = True

    def __init__(self, data: bytes, content_type: str) -> None:
        super().__init__()
        self.data = data
        self.content_type = content_type.encode("ascii")

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", self.content_type)
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"content-security-policy", CONTENT_SECURITY_POLICY)
        request.setHeader(b"cache-control", b"no-cache")
        return self.data


class ClientRoot(Resource):
    """
    The site's root: the client's files and C{/ws}; anything else is 404.
    """

    def getChild(self, path: bytes, request: Request) -> IResource:
        return notFound()


def make_site(door: WebSocketDoor) -> Site:
    """
    Build the web door's site: the client's files and C{/ws}.
    """
    web = files("chatd") / "web"
    root = ClientRoot()
    for path, (name, content_type) in CLIENT_FILES.items():
        root.putChild(path, ClientFile((web / name).read_bytes(), content_type))
    root.putChild(b"ws", WebSocketResource(door))
    site = Site(root, reactor=door.clock)
    site.displayTracebacks = False
    return site
