"""
Requests as data (L{chatd.requests}) and the gateway that carries them to a
lone hub (L{chatd.hub.gateway}).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from chatd.errors import ChatError
from chatd.hub import LocalGateway
from chatd.interfaces import IGateway
from chatd.model import MAX_ID, AccountChanged, Joined, Message, TopicChanged
from chatd.requests import (
    SERVER_REQUESTS,
    USER_REQUESTS,
    Announce,
    History,
    Join,
    Kick,
    Mode,
    Register,
    Say,
    Topic,
    Who,
    from_wire,
    to_wire,
)
from chatd.testing import events, make_hub, signed_on


class WireTests(SynchronousTestCase):
    def refusal(self, kind: type, data: dict[str, object]) -> str:
        with self.assertRaises(ChatError) as raised:
            from_wire(kind, data)
        self.assertEqual(raised.exception.code, "bad_request")
        return raised.exception.message

    def test_fields_by_wire_name(self) -> None:
        self.assertEqual(
            from_wire(Join, {"type": "join", "room": "#den", "extra": 1}), Join(room="#den")
        )
        self.assertEqual(
            from_wire(History, {"with": "bob", "limit": 5}), History(with_="bob", limit=5)
        )
        self.assertEqual(to_wire(History(with_="bob", limit=5)), {"with": "bob", "limit": 5})

    def test_missing_and_mistyped(self) -> None:
        self.assertEqual(self.refusal(Join, {}), "Field 'room' must be a string")
        self.assertEqual(self.refusal(Join, {"room": 5}), "Field 'room' must be a string")
        self.assertEqual(
            self.refusal(History, {"room": "#den", "limit": "5"}),
            "Field 'limit' must be an integer",
        )
        self.assertEqual(
            self.refusal(History, {"room": "#den", "limit": True}),
            "Field 'limit' must be an integer",
        )
        self.assertEqual(
            self.refusal(History, {"room": "#den", "before": MAX_ID + 1}),
            f"Field 'before' must be an integer from 1 to {MAX_ID}",
        )
        self.assertEqual(
            self.refusal(Say, {"room": "#den", "text": "\ud800"}),
            "Field 'text' is not valid Unicode",
        )
        self.assertEqual(self.refusal(History, {}), "Field 'room' must be a string")

    def test_first_bad_field_in_order(self) -> None:
        """
        Fields are checked in the order the WebSocket door always checked
        them: a kick's reason before its room and nick.
        """
        self.assertEqual(self.refusal(Kick, {"reason": 1}), "Field 'reason' must be a string")
        self.assertEqual(self.refusal(Mode, {"mode": 1}), "Field 'mode' must be a string")

    def test_every_type_once(self) -> None:
        for registry in (USER_REQUESTS, SERVER_REQUESTS):
            for name, kind in registry.items():
                self.assertEqual(kind.type, name)
                self.assertTrue(dataclasses.is_dataclass(kind))

    def test_queries_are_not_replicated(self) -> None:
        self.assertFalse(Who(room="#den").replicated())
        self.assertFalse(Topic(room="#den").replicated())
        self.assertTrue(Topic(room="#den", text="").replicated())
        self.assertFalse(Mode(room="#den").replicated())
        self.assertTrue(Mode(room="#den", mode="+m").replicated())


class LocalGatewayTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hub = make_hub()
        self.gateway = LocalGateway(self.hub)

    def test_a_hub_adapts_to_a_gateway(self) -> None:
        """
        Doors, the console and the service take a hub or a gateway: a hub
        on its own runs alone.
        """
        gateway = IGateway(self.hub)
        self.assertIsInstance(gateway, LocalGateway)
        self.assertIs(gateway.hub, self.hub)

    def test_changes_apply_at_once(self) -> None:
        alice = signed_on(self.hub, "alice")
        self.assertIsNone(self.gateway.submit(alice, Join(room="#den")))
        self.assertEqual(events(alice)[0], Joined("#den", "alice"))
        self.gateway.submit(alice, Say(room="#den", text="hi"))
        (said,) = events(alice)
        assert isinstance(said, Message)
        self.assertEqual((said.text, said.id), ("hi", 1))

    def test_refusal_raises_before_anything_changes(self) -> None:
        alice = signed_on(self.hub, "alice")
        with self.assertRaises(ChatError):
            self.gateway.submit(alice, Say(room="#nowhere", text="hi"))
        self.assertEqual(self.hub.last_id, 0)

    def test_register_is_prepared_then_applied(self) -> None:
        """
        Registering waits for the password hash and the store, then applies
        the change that makes the user hold the account.
        """
        alice = signed_on(self.hub, "alice")
        registering = self.gateway.submit(alice, Register(password="s3cret!"))
        assert registering is not None
        self.assertIsNone(self.successResultOf(registering))
        self.assertEqual(events(alice), [AccountChanged("alice", "registered")])
        self.assertIn("alice", self.hub.accounts)

    def test_server_requests(self) -> None:
        alice = signed_on(self.hub, "alice")
        self.gateway.submit(None, Announce(text="maintenance at noon"))
        self.assertEqual([e.text for e in events(alice)], ["maintenance at noon"])

    def test_clear_topic(self) -> None:
        alice = signed_on(self.hub, "alice")
        self.gateway.submit(alice, Topic(room="#lobby", text="hello"))
        self.gateway.submit(alice, Topic(room="#lobby", text=""))
        self.assertEqual(events(alice)[-1], TopicChanged("#lobby", "", "alice", 0.0))


class HubAloneTests(SynchronousTestCase):
    def test_the_hub_knows_no_cluster(self) -> None:
        """
        The hub and its gateway import no cluster code: what differs when
        the hub is a replica, it asks its runner.
        """
        loaded = subprocess.run(
            [sys.executable, "-c", "import sys, chatd.hub; print(sorted(sys.modules))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        self.assertIn("'chatd.hub.gateway'", loaded)
        self.assertNotIn("chatd.cluster", loaded)
        self.assertNotIn("chatd.redis", loaded)
