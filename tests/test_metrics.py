"""
Prometheus metrics: what a scrape reports, and the C{--metrics} endpoint.
"""

from __future__ import annotations

import socket

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from chatd.app.tap import Options, makeService
from chatd.doors.line import LineDoor
from chatd.limits import Limits
from chatd.metrics import ChatCollector
from chatd.store.memory import MemoryStore
from chatd.testing import LinePeer, make_hub
from tests.support.processes import (
    LOCAL_TCP0,
    LOCALHOST,
    TwistdProcess,
    checkout_env,
    http_get,
    scratch_dir,
)


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """
    Every sample of a scrape, by name and labels.
    """
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


class CollectorTests(SynchronousTestCase):
    def test_scrape(self) -> None:
        """
        A scrape reports users, rooms, connections by door, messages since
        start and door events, as they are at that moment.
        """
        clock = Clock()
        store = MemoryStore()
        hub = make_hub(clock, store=store)
        door = LineDoor(hub, clock, Limits(flood_rate=0))
        registry = CollectorRegistry(auto_describe=False)
        registry.register(ChatCollector(hub, [door]))  # type: ignore[arg-type]
        alice, bob = LinePeer(door), LinePeer(door)
        alice.sign_on("alice")
        bob.sign_on("bob")
        alice.send("/join #den")
        alice.send("hello")
        alice.send("/msg bob hi")
        door.count("slow_consumer")
        got = samples(registry)
        self.assertEqual(got[("chatd_users", ())], 2)
        self.assertEqual(got[("chatd_rooms", ())], 2)
        self.assertEqual(got[("chatd_messages_total", ())], 2)
        before = got[("chatd_deliveries_total", ())]
        sent = got[("chatd_bytes_out_total", (("door", "line"),))]
        alice.received()
        bob.received()
        bob.send("hello alice")
        got = samples(registry)
        self.assertEqual(got[("chatd_deliveries_total", ())], before + 2)
        written = len(alice.received()) + len(bob.received())
        self.assertEqual(got[("chatd_bytes_out_total", (("door", "line"),))], sent + written)
        self.assertEqual(got[("chatd_connections", (("door", "line"),))], 2)
        self.assertEqual(
            got[("chatd_door_events_total", (("door", "line"), ("event", "slow_consumer")))], 1
        )
        bob.disconnect()
        got = samples(registry)
        self.assertEqual(got[("chatd_users", ())], 1)
        self.assertEqual(got[("chatd_connections", (("door", "line"),))], 1)


class OptionTests(SynchronousTestCase):
    def test_off_by_default(self) -> None:
        reactor = MemoryReactorClock()
        options = Options()
        options.parseOptions(["--db", ":memory:", "--web", "none", "--irc", "none"])
        makeService(options, reactor).startService()
        self.assertEqual(len(reactor.tcpServers), 1)

    def test_endpoint(self) -> None:
        reactor = MemoryReactorClock()
        options = Options()
        options.parseOptions(
            [
                "--db",
                ":memory:",
                "--web",
                "none",
                "--irc",
                "none",
                "--metrics",
                "tcp:9100:interface=127.0.0.1",
            ]
        )
        makeService(options, reactor).startService()
        self.assertEqual(
            [(port, interface) for port, _, _, interface in reactor.tcpServers],
            [(1234, ""), (9100, "127.0.0.1")],
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOCALHOST, 0))
        return int(probe.getsockname()[1])


class ProcessTests(SynchronousTestCase):
    def test_scraped_from_a_running_server(self) -> None:
        port = free_port()
        server = TwistdProcess(
            self,
            [
                "-n",
                "--pidfile=",
                "chatd",
                "--db",
                ":memory:",
                "--line",
                LOCAL_TCP0,
                "--web",
                "none",
                "--irc",
                "none",
                "--metrics",
                f"tcp:{port}:interface={LOCALHOST}",
            ],
            cwd=scratch_dir(self),
            env=checkout_env(),
        )
        server.port("line")
        status, _, body = http_get(port, "/metrics")
        self.assertEqual(status, 200)
        self.assertIn("chatd_connections", body.decode())
        server.terminate()
