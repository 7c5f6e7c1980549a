"""
The cluster's log entries (L{chatd.cluster.ops}): requests by field name
with a format version; the previous format is still read, and an unknown
one stops a node instead of corrupting its replica.
"""

from __future__ import annotations

import json

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from chatd.cluster.node import HALTED, ClusterGateway
from chatd.cluster.ops import FORMAT, Gone, Hello, Operation, UnknownFormat, decode, encode
from chatd.doors.web import Readiness
from chatd.errors import ChatError
from chatd.hub import Hub
from chatd.model import Message
from chatd.requests import (
    SERVER_REQUESTS,
    USER_REQUESTS,
    Devoice,
    History,
    Identified,
    Join,
    Me,
    Mode,
    Say,
    ServerKick,
    SignOn,
    Topic,
    Unban,
    Voice,
)
from chatd.store.memory import MemoryStore
from chatd.testing import MemoryLog, RecordingClient, SharedLog, quick_passwords


class FormatTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """
        Every kind of request comes back from the log as it went in.
        """
        samples = [
            Join(room="#den", key="k"),
            Say(room="#den", text="hi"),
            Topic(room="#den", text=""),
            History(with_="bob", limit=5),
            Mode(room="#den", mode="+kl", key="k", limit=5),
            Voice(room="#den", nick="bob"),
            Devoice(room="#den", nick="bob"),
            SignOn(nick="alice", account=None),
            Identified(nick="alice", account="alice"),
            Hello(responder=None),
            Gone(gone="b", reason="connection lost"),
        ]
        for request in samples:
            operation = Operation("n1", 7, 1.5, "n1.3", request)
            self.assertEqual(decode(encode(operation)), operation)

    def test_by_field_name_with_a_version(self) -> None:
        entry = json.loads(encode(Operation("n1", 7, 1.5, "n1.3", Join(room="#den"))))
        self.assertEqual(
            entry,
            {
                "v": FORMAT,
                "op": "join",
                "node": "n1",
                "ref": 7,
                "ts": 1.5,
                "sid": "n1.3",
                "room": "#den",
            },
        )

    def test_every_request_type_is_a_distinct_operation(self) -> None:
        self.assertFalse(set(USER_REQUESTS) & set(SERVER_REQUESTS))

    def test_format_1_is_read(self) -> None:
        """
        Entries of the positional format of earlier releases decode to the
        same requests.
        """
        self.assertEqual(
            decode('["say","n1",4,2.0,"n1.1","#den","waves",true]'),
            Operation("n1", 4, 2.0, "n1.1", Me(room="#den", text="waves")),
        )
        self.assertEqual(
            decode('["hello","n2",0,0,null]'), Operation("n2", 0, 0, None, Hello(responder=None))
        )
        self.assertEqual(
            decode('["remove","n1",5,3.0,"bob","#den","console",null]').request,
            ServerKick(nick="bob", room="#den", by="console"),
        )
        self.assertEqual(
            decode('["ban","n1",6,3.0,"n1.1","#den","bob",false]').request,
            Unban(room="#den", nick="bob"),
        )

    def test_unknown_format(self) -> None:
        with self.assertRaises(UnknownFormat) as raised:
            decode('{"v":99,"op":"join","node":"n1","ref":1,"ts":0,"room":"#den"}')
        self.assertEqual(raised.exception.version, 99)


def _node(shared: SharedLog, name: str) -> ClusterGateway:
    clock = Clock()
    hub = Hub(clock, MemoryStore(), passwords=quick_passwords())
    return ClusterGateway(hub, MemoryLog(shared), clock, node=name)


class ReplayTests(SynchronousTestCase):
    def test_a_log_in_the_previous_format_replays(self) -> None:
        """
        A node that follows a log written by an earlier release (format 1)
        builds the same replica from it.
        """
        shared = SharedLog()
        node = _node(shared, "new")
        node.start()
        shared.pump()
        for op in [
            ["hello", "old", 0, 0, None],
            ["connect", "old", 1, 10.0, "old.1", "alice", None],
            ["join", "old", 2, 11.0, "old.1", "#den", None],
            ["topic", "old", 3, 12.0, "old.1", "#den", "plans"],
            ["say", "old", 4, 13.0, "old.1", "#den", "hello", False],
            ["mode", "old", 5, 14.0, "old.1", "#den", "+t", None],
        ]:
            shared.add(json.dumps(op))
        shared.pump()
        hub = node.hub
        self.assertEqual(sorted(hub.users), ["alice"])
        den = hub.rooms["#den"]
        self.assertEqual((den.topic, den.modes), ("plans", "nt"))
        self.assertEqual(hub.last_id, shared.seq - 1)  # the say's place in the log
        self.assertIsNone(node.why_not_ready())

    def test_an_unknown_format_stops_applying(self) -> None:
        """
        An operation in a format this node cannot read stops it: the replica
        stays as it was, nothing after it is applied, and the node says why
        (on /readyz too).
        """
        shared = SharedLog()
        node = _node(shared, "a")
        node.start()
        shared.pump()
        client = RecordingClient()
        entering = node.connect(client, "alice")
        shared.pump()
        alice = self.successResultOf(entering)
        before = node.snapshot()
        shared.add('{"v":3,"op":"join","node":"a","ref":99,"ts":0,"sid":"a.1","room":"#x"}')
        shared.add(json.dumps(["announce", "a", 0, 0, "after"]))
        shared.pump()
        self.assertEqual(node.snapshot()["rooms"], before["rooms"])
        self.assertNotIn(Message, [type(e) for e in client.take()])
        why = node.why_not_ready()
        assert why is not None
        self.assertIn("format 3", why)
        said = node.submit(alice, Say(room="#lobby", text="hi"))
        assert said is not None
        refusal = self.failureResultOf(said, ChatError).value
        self.assertEqual((refusal.code, refusal.message), ("degraded", HALTED))
        request = DummyRequest([b"readyz"])
        page = Readiness(node, Clock()).render_GET(request)
        self.assertEqual(request.responseCode, 503)
        assert isinstance(page, bytes)
        self.assertIn(b"format 3", page)
