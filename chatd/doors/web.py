# -*- test-case-name: tests.test_web -*-
"""
The web door's HTTP side: the browser client at C{/}, the WebSocket door at
C{/ws}, and health checks for load balancers and orchestrators at
C{/healthz} (the process answers) and C{/readyz} (it can serve: not
stopping, its store answers), on one C{twisted.web} site.

The client's files are read once, when the site is built, and served from
memory, so serving them never touches the disk on the reactor thread.
"""

from __future__ import annotations

from importlib.resources import files

from autobahn.twisted.resource import WebSocketResource
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from chatd.doors.websocket import WebSocketDoor
from chatd.hub import Hub
from chatd.interfaces import IGateway

CLIENT_FILES = {
    b"": ("index.html", "text/html; charset=utf-8"),
    b"index.html": ("index.html", "text/html; charset=utf-8"),
    b"chat.js": ("chat.js", "text/javascript; charset=utf-8"),
    b"chat.css": ("chat.css", "text/css; charset=utf-8"),
}
WEBSOCKET_PATH = b"/ws"
"""Where the site serves the WebSocket door."""

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


class Liveness(Resource):
    """
    C{/healthz}: 200 whenever the reactor answers at all.
    """

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return b"ok\n"


class Readiness(Resource):
    """
    C{/readyz}: 200 if the hub takes new users (for a cluster node: it is
    in the cluster and reaches its Redis) and its store answers within
    C{timeout} seconds; 503 with the reason otherwise.
    """

    isLeaf = True

    def __init__(self, hub: Hub | IGateway, clock: IReactorTime, timeout: float = 5.0) -> None:
        super().__init__()
        self.gateway: IGateway = IGateway(hub)
        self.hub = self.gateway.hub
        self.clock = clock
        self.timeout = timeout

    def render_GET(self, request: Request) -> int | bytes:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        if self.hub.closing:
            request.setResponseCode(503)
            return b"shutting down\n"
        why = self.gateway.why_not_ready()
        if why is not None:
            request.setResponseCode(503)
            return f"{why}\n".encode()
        checked = self.hub.store.check().addTimeout(self.timeout, self.clock)
        gone: list[Failure] = []
        request.notifyFinish().addErrback(gone.append)

        def answer(result: object) -> None:
            if gone:  # the client hung up first: nobody to tell
                return
            if isinstance(result, Failure):
                request.setResponseCode(503)
                request.write(b"store unavailable\n")
            else:
                request.write(b"ready\n")
            request.finish()

        checked.addBoth(answer)
        return NOT_DONE_YET


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
    root.putChild(WEBSOCKET_PATH[1:], WebSocketResource(door))
    root.putChild(b"healthz", Liveness())
    root.putChild(b"readyz", Readiness(door.gateway, door.clock))
    site = Site(root, reactor=door.clock)
    site.displayTracebacks = False
    return site
