"""
Both doors over real loopback sockets, in this process's reactor: telnet-style
and WebSocket clients chatting in one hub.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone

from chatd.doors.line import LineDoor
from chatd.doors.web import make_site
from chatd.doors.websocket import WebSocketDoor
from chatd.hub import Hub
from chatd.limits import Limits
from chatd.testing import LineDoorReceiver

WAIT = 5.0


class LineClient(LineDoorReceiver):
    """
    A telnet-style client that queues the lines it receives.
    """

    def __init__(self) -> None:
        self.queue: DeferredQueue[str] = DeferredQueue()
        self.closed: Deferred[None] = Deferred()

    def lineReceived(self, line: bytes) -> None:
        self.queue.put(line.decode("utf-8"))

    def connectionLost(self, reason: object = None) -> None:
        self.closed.callback(None)

    def say(self, text: str) -> None:
        self.transport.write(text.encode("utf-8") + b"\r\n")

    async def next(self) -> str:
        line = await self.queue.get().addTimeout(WAIT, reactor)
        self.assert_one_line(line)
        return line

    @staticmethod
    def assert_one_line(line: str) -> None:
        assert "\r" not in line and "\n" not in line, repr(line)

    async def until(self, predicate: Callable[[str], bool]) -> str:
        """
        Skip lines until one satisfies C{predicate}; return it.
        """
        while True:
            line = await self.next()
            if predicate(line):
                return line


class JsonClient(WebSocketClientProtocol):
    """
    A WebSocket client that queues the JSON objects it receives.
    """

    def __init__(self) -> None:
        super().__init__()
        self.queue: DeferredQueue[dict[str, Any]] = DeferredQueue()
        self.opened: Deferred[None] = Deferred()
        self.closed: Deferred[None] = Deferred()

    def onOpen(self) -> None:
        self.opened.callback(None)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.queue.put(json.loads(payload))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.closed.called:
            self.closed.callback(None)

    def request(self, **frame: Any) -> None:
        self.sendMessage(json.dumps(frame).encode("utf-8"))

    async def next(self) -> dict[str, Any]:
        return await self.queue.get().addTimeout(WAIT, reactor)

    async def until(self, kind: str, **fields: Any) -> dict[str, Any]:
        """
        Skip frames until one of type C{kind} (with C{fields}); return it.
        """
        while True:
            frame = await self.next()
            if frame["type"] == kind and all(frame.get(k) == v for k, v in fields.items()):
                return frame


class LoopbackTests(TestCase):
    """
    A hub with both doors listening on 127.0.0.1 ephemeral ports.
    """

    timeout = 30

    async def setUp(self) -> None:  # type: ignore[override]
        self.hub = Hub(reactor)
        limits = Limits(flood_rate=0)
        self.line_door = LineDoor(self.hub, reactor, limits)
        self.ws_door = WebSocketDoor(self.hub, reactor, limits)
        self.ws_door.doStart()
        self.addCleanup(self.ws_door.doStop)
        self.addCleanup(self.settled)
        self.line_port = await self.listen(self.line_door)
        self.web_port = await self.listen(make_site(self.ws_door))

    async def listen(self, factory: Any) -> IListeningPort:
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        self.addCleanup(port.stopListening)
        return port

    async def line(self, nick: str | None = None) -> LineClient:
        """
        Connect a line client; sign on as C{nick} if given.
        """
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.line_port.getHost().port)
        client = LineClient()
        await endpoint.connect(_Once(client))
        self.addCleanup(self._close_line, client)
        await client.until(lambda line: line.endswith("nickname:"))
        if nick is not None:
            client.say(nick)
            await client.until(lambda line: line.startswith("*** Users in #lobby"))
        return client

    async def _close_line(self, client: LineClient) -> None:
        client.transport.loseConnection()
        await client.closed.addTimeout(WAIT, reactor)

    async def websocket(self, nick: str | None = None) -> JsonClient:
        """
        Connect a WebSocket client; say hello as C{nick} if given.
        """
        port = self.web_port.getHost().port
        factory = WebSocketClientFactory(f"ws://127.0.0.1:{port}/ws", reactor=reactor)
        factory.protocol = JsonClient
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        client = await endpoint.connect(factory)
        await client.opened.addTimeout(WAIT, reactor)
        self.addCleanup(self._close_websocket, client)
        if nick is not None:
            client.request(type="hello", nick=nick)
            await client.until("users")
        return client

    async def _close_websocket(self, client: JsonClient) -> None:
        if not client.closed.called:
            client.sendClose()
        await client.closed.addTimeout(WAIT, reactor)

    async def settled(self) -> None:
        """
        Wait until the server has seen every connection close.
        """
        for _ in range(int(WAIT / 0.01)):
            if not self.line_door.connections and not self.ws_door.connections:
                return
            await deferLater(reactor, 0.01)
        raise AssertionError("server connections did not close")

    async def test_four_clients_see_every_message_once_in_order(self) -> None:
        """
        Two line and two WebSocket users in one room, all sending at once:
        each receives every message exactly once, all in the same order, the
        WebSocket ids increasing in that order.
        """
        lines = [await self.line("tel1"), await self.line("tel2")]
        sockets = [await self.websocket("web1"), await self.websocket("web2")]
        for client in lines:
            for nick in ("web1", "web2"):
                await client.until(lambda line, n=nick: line == f"*** {n} has joined #lobby")
        await sockets[0].until("join")
        count = 25
        for n in range(count):
            for i, client in enumerate(lines):
                client.say(f"tel{i + 1} #{n}")
            for i, ws in enumerate(sockets):
                ws.request(type="say", room="#lobby", text=f"web{i + 1} #{n}")
        total = 4 * count
        seen_by_line = []
        for client in lines:
            got = [
                await client.until(lambda line: line.startswith("[#lobby]")) for _ in range(total)
            ]
            seen_by_line.append([line.split("> ", 1)[1] for line in got])
        seen_by_ws = []
        for ws in sockets:
            frames = [await ws.until("message") for _ in range(total)]
            ids = [f["id"] for f in frames]
            self.assertEqual(ids, sorted(ids))
            self.assertEqual(len(set(ids)), total)
            seen_by_ws.append([f["text"] for f in frames])
        everyone = seen_by_line + seen_by_ws
        for seen in everyone:
            self.assertEqual(seen, everyone[0])
        self.assertEqual(len(set(everyone[0])), total)
        for sender in ("tel1", "tel2", "web1", "web2"):
            mine = [text for text in everyone[0] if text.startswith(sender + " ")]
            self.assertEqual(mine, [f"{sender} #{n}" for n in range(count)])
        await deferLater(reactor, 0.05)
        for client in lines:
            self.assertEqual(client.queue.pending, [])
        for ws in sockets:
            self.assertEqual(ws.queue.pending, [])

    async def test_nick_unique_across_doors(self) -> None:
        """
        A nick held on one door is refused, in any case, on the other.
        """
        await self.line("Alice")
        ws = await self.websocket()
        ws.request(type="hello", nick="alice")
        error = await ws.next()
        self.assertEqual(error["code"], "nick_taken")
        await self.websocket("bob")
        client = await self.line()
        client.say("BOB")
        self.assertEqual(await client.next(), "!!! The nickname BOB is already in use")
        self.assertTrue((await client.next()).endswith("nickname:"))

    async def test_errors_keep_the_connection(self) -> None:
        """
        Bad input on either door gets an error and the connection goes on.
        """
        client = await self.line("carol")
        client.transport.write(b"\xc3\x28\r\n")
        self.assertEqual(await client.next(), "!!! That line is not valid UTF-8; ignored")
        client.say("/nope")
        self.assertEqual(await client.next(), "!!! Unknown command /nope; try /help")
        client.say("/msg nobody hi")
        self.assertEqual(await client.next(), "!!! There is no user named nobody")
        ws = await self.websocket("dave")
        await client.next()
        for raw in (b"{", b'{"type": "fly"}', b'{"type": "say", "room": "#x", "text": "y"}'):
            ws.sendMessage(raw)
            self.assertEqual((await ws.next())["type"], "error")
        ws.sendMessage(b"\xc3\x28")
        self.assertEqual((await ws.next())["code"], "bad_utf8")
        ws.request(type="say", room="#lobby", text="still here")
        self.assertEqual(await client.next(), "[#lobby] <dave> still here")

    async def test_rooms_across_doors(self) -> None:
        """
        Joins, topics, private messages and departures cross doors.
        """
        tel = await self.line("tel")
        web = await self.websocket("web")
        await tel.until(lambda line: line == "*** web has joined #lobby")
        web.request(type="join", room="#py")
        await web.until("users", room="#py")
        tel.say("/join #py")
        await tel.until(lambda line: line.startswith("*** Users in #py"))
        self.assertEqual(
            await web.until("join", nick="tel"), {"type": "join", "room": "#py", "nick": "tel"}
        )
        tel.say("/topic snakes only")
        self.assertEqual(
            await web.until("topic"),
            {"type": "topic", "room": "#py", "topic": "snakes only", "by": "tel"},
        )
        web.request(type="msg", to="tel", text="psst")
        self.assertEqual(await tel.until(lambda line: "psst" in line), "*web* psst")
        web.sendClose()
        await web.closed
        self.assertEqual(await tel.next(), "*** web has left #lobby (connection closed)")
        self.assertEqual(await tel.next(), "*** web has left #py (connection closed)")

    async def test_client_page_served(self) -> None:
        """
        The web door serves the browser client at / with its script and
        style, with headers that keep it from being framed or sniffed.
        """
        pool = HTTPConnectionPool(reactor, persistent=False)
        agent = Agent(reactor, pool=pool)
        base = f"http://127.0.0.1:{self.web_port.getHost().port}"
        response = await agent.request(b"GET", f"{base}/".encode())
        body = await body_of(response)
        self.assertEqual(response.code, 200)
        self.assertIn(b"chat.js", body)
        headers = response.headers
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"text/html; charset=utf-8"])
        self.assertEqual(headers.getRawHeaders(b"x-content-type-options"), [b"nosniff"])
        self.assertIn(
            b"frame-ancestors 'none'", headers.getRawHeaders(b"content-security-policy")[0]
        )
        for path, kind in (("chat.js", b"text/javascript"), ("chat.css", b"text/css")):
            response = await agent.request(b"GET", f"{base}/{path}".encode())
            await body_of(response)
            self.assertEqual(response.code, 200)
            self.assertTrue(headers_of(response, b"content-type").startswith(kind))
        response = await agent.request(b"GET", f"{base}/missing".encode())
        await body_of(response)
        self.assertEqual(response.code, 404)
        await pool.closeCachedConnections()


class _Body(Protocol):
    def __init__(self, done: Deferred[bytes]) -> None:
        self.done = done
        self.chunks: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Any = None) -> None:
        reason.trap(ResponseDone)
        self.done.callback(b"".join(self.chunks))


def body_of(response: Any) -> Deferred[bytes]:
    """
    The whole body of an HTTP response.
    """
    done: Deferred[bytes] = Deferred()
    response.deliverBody(_Body(done))
    return done


def is_message(line: str) -> bool:
    return line.startswith("[#lobby] <")


def headers_of(response: Any, name: bytes) -> bytes:
    return response.headers.getRawHeaders(name)[0]


class _Once:
    """
    A factory that hands out one pre-built protocol (for C{endpoint.connect}).
    """

    def __init__(self, protocol: LineClient) -> None:
        self.protocol = protocol

    def buildProtocol(self, addr: object) -> LineClient:
        return self.protocol

    def doStart(self) -> None:
        pass

    def doStop(self) -> None:
        pass
