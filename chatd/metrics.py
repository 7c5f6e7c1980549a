# -*- test-case-name: tests.test_metrics -*-
"""
Prometheus metrics, served on an endpoint of their own (C{--metrics}).

Nothing is counted on the hot path for them: a scrape reads the counts the
hub, the doors and the store keep anyway, so metrics cost nothing between
scrapes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.twisted import MetricsResource
from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import Resource
from twisted.web.server import Site

from chatd.cluster.node import ClusterGateway
from chatd.doors.base import Door
from chatd.hub import Hub
from chatd.interfaces import IGateway


class ChatCollector:
    """
    Reads the server's state at scrape time.
    """

    def __init__(self, hub: Hub | IGateway, doors: Sequence[Door]) -> None:
        self.gateway: IGateway = IGateway(hub)
        self.hub = self.gateway.hub
        self.doors = doors

    def collect(self) -> Iterator[Metric]:
        hub = self.hub
        yield _gauge("chatd_users", "Signed-on users.", len(hub.users))
        yield _gauge("chatd_rooms", "Rooms with members.", len(hub.rooms))
        yield _gauge("chatd_registered_rooms", "Registered rooms.", len(hub.registered))
        yield _gauge("chatd_accounts", "Registered nicknames.", len(hub.accounts))
        accepted = CounterMetricFamily(
            "chatd_messages", "Room and private messages accepted since start."
        )
        accepted.add_metric([], hub.messages)
        yield accepted
        deliveries = CounterMetricFamily(
            "chatd_deliveries", "Broadcast events written to recipients, on every door."
        )
        deliveries.add_metric([], hub.deliveries)
        yield deliveries
        if isinstance(self.gateway, ClusterGateway):
            yield from _cluster_metrics(self.gateway)
        connections = GaugeMetricFamily(
            "chatd_connections", "Open connections, by door.", labels=["door"]
        )
        events = CounterMetricFamily(
            "chatd_door_events",
            "Connections refused or dropped, by door and reason "
            "(slow_consumer, flood, sign_on_timeout, dead_peer, ...).",
            labels=["door", "event"],
        )
        sent = CounterMetricFamily(
            "chatd_bytes_out",
            "Bytes of chat events written to connections, by door.",
            labels=["door"],
        )
        for door in self.doors:
            connections.add_metric([door.name], len(door.connections))
            sent.add_metric([door.name], hub.bytes_out[door.encoder])
            for event, count in sorted(door.counters.items()):
                events.add_metric([door.name, event], count)
        yield connections
        yield events
        yield sent
        yield from _store_metrics(hub.store)


def _cluster_metrics(node: ClusterGateway) -> Iterator[Metric]:
    yield _gauge(
        "chatd_cluster_redis_up",
        "1 while this node reaches the cluster's Redis, else 0.",
        int(node.connected),
    )
    yield _gauge(
        "chatd_cluster_ready",
        "1 while this node holds a current copy of the cluster.",
        int(node.ready),
    )
    yield _gauge("chatd_cluster_nodes", "Live nodes in the cluster.", len(node.nodes))
    applied = CounterMetricFamily(
        "chatd_cluster_operations", "Operations of the cluster's log applied by this node."
    )
    applied.add_metric([], node.operations)
    yield applied


def _gauge(name: str, documentation: str, value: int) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation)
    family.add_metric([], value)
    return family


def _store_metrics(store: object) -> Iterator[Metric]:
    """
    What a store that counts its work (the SQLite one) says of it.
    """
    for attribute, name, documentation in (
        ("commits", "chatd_store_commits", "Transactions committed."),
        ("dropped", "chatd_store_dropped", "Messages not stored (queue full or a failed commit)."),
    ):
        value = getattr(store, attribute, None)
        if isinstance(value, int):
            family = CounterMetricFamily(name, documentation)
            family.add_metric([], value)
            yield family
    seconds = getattr(store, "commit_seconds", None)
    if isinstance(seconds, float):
        family = CounterMetricFamily(
            "chatd_store_commit_seconds", "Time spent committing, in the writer thread."
        )
        family.add_metric([], seconds)
        yield family


def make_metrics_site(hub: Hub | IGateway, doors: Sequence[Door], clock: IReactorTime) -> Site:
    """
    A site serving the metrics at C{/metrics}, from a registry of its own.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ChatCollector(hub, doors))
    root = Resource()
    root.putChild(b"metrics", MetricsResource(registry=registry))
    return Site(root, reactor=clock)
