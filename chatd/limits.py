# -*- test-case-name: tests.test_tap,tests.test_flow -*-
"""
Every limit chatd enforces, in one place, with its default and its help.

Each field is a C{twistd chatd} option of the same name with dashes
(C{max_line} is C{--max-line}); for rates and caps, 0 turns the limit off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _limit(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Limits:
    """
    The limits of one server (see the C{help} of each field).
    """

    max_line: int = _limit(4096, "Longest line the line door accepts, in bytes.")
    max_frame: int = _limit(64 * 1024, "Largest WebSocket message, in bytes.")
    max_sendq: int = _limit(
        256 * 1024, "Bytes queued for a client that is not reading before it is dropped."
    )
    soft_sendq: int = _limit(
        64 * 1024,
        "Bytes queued past which optional output (history) is skipped and other "
        "clients' input waits for this reader to catch up.",
    )
    paused_timeout: float = _limit(
        30.0, "Seconds a client may leave its output unread before it is dropped."
    )
    stall_timeout: float = _limit(
        0.5, "Seconds a saturated reader may hold back other clients' input."
    )
    flood_burst: int = _limit(5, "Lines (or WebSocket messages) a client may send at once.")
    flood_rate: float = _limit(
        2.0, "Lines per second a client may send after its burst; 0 turns flood control off."
    )
    flood_backlog: float = _limit(
        30.0, "Seconds' worth of held-back input past which a flooding client is dropped."
    )
    max_per_ip: int = _limit(
        16, "Chat connections (line or WebSocket) at once from one IP address; 0: no limit."
    )
    connect_rate: tuple[int, float] = _limit(
        (32, 600.0),
        "Chat connections from one IP address per so many seconds, as N/SECONDS; 0: no limit.",
    )
    max_http_per_ip: int = _limit(
        32, "Plain HTTP connections (page loads) at once from one IP address; 0: no limit."
    )
    max_clients: int = _limit(
        0, "Connections at once in total (by default what the open-file limit allows); 0: no limit."
    )
    sign_on_timeout: float = _limit(
        30.0, "Seconds after connecting by which a client must have chosen a nickname."
    )
    ping_interval: float = _limit(
        25.0, "Seconds between WebSocket keepalive pings; 0 turns them off."
    )
    ping_timeout: float = _limit(10.0, "Seconds to wait for a WebSocket pong.")
    probe_idle: float = _limit(
        120.0,
        "Seconds of silence after which the line door checks a telnet client is "
        "alive (DO TIMING-MARK); 0 turns the probe off, e.g. for raw-TCP bots.",
    )
    probe_timeout: float = _limit(30.0, "Seconds a probed telnet client has to answer.")
    drain_timeout: float = _limit(
        5.0, "Seconds to let output drain when shutting down before closing anyway."
    )


def parse_rate(text: str) -> tuple[int, float]:
    """
    Parse C{N/SECONDS} (or C{0}, no limit).
    """
    if text.strip() == "0":
        return (0, 0.0)
    count, slash, seconds = text.partition("/")
    if not slash:
        raise ValueError(f"{text!r} is not N/SECONDS")
    rate = (int(count), float(seconds))
    if rate[0] < 0 or rate[1] <= 0:
        raise ValueError(f"{text!r} is not N/SECONDS")
    return rate


def format_rate(rate: tuple[int, float]) -> str:
    count, seconds = rate
    return "0" if count == 0 else f"{count}/{seconds:g}"
