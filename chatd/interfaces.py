"""
The seams between the hub, its doors and its storage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from chatd.model import Event, Message


class IEncoder(Interface):
    """
    Turns hub events into one door's wire payloads.

    One encoder serves every connection of a door, so the hub encodes an
    event once per door and writes the same payload to each recipient.
    """

    def encode(event: Event) -> object:
        """
        Return the payload for C{event}, ready for L{IClient.send}.
        """


class IClient(Interface):
    """
    One connected, named user as the hub sees it: a sink for payloads.
    """

    encoder: IEncoder = Attribute("The IEncoder whose payloads send() accepts.")

    def send(payload: object) -> None:
        """
        Queue one payload made by C{encoder} for writing; never block.
        """


class IDoor(Interface):
    """
    A listening front end onto the hub (the line door, the web door).
    """

    name: str = Attribute("Short name for logs, e.g. 'line'.")

    def shutdown(reason: str) -> Deferred[None]:
        """
        Tell every connection C{reason} and close it; fire when all are gone.
        """


class IHistoryStore(Interface):
    """
    Where room messages are kept for C{/history}.

    Methods return Deferreds so that stores doing I/O fit the same seam.
    """

    def record(message: Message) -> Deferred[None]:
        """
        Keep C{message}.
        """

    def fetch(room: str, limit: int, before: int | None) -> Deferred[list[Message]]:
        """
        Return the newest C{limit} messages of C{room} whose
        id is below C{before} (if given), oldest first.
        """
