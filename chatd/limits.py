# -*- test-case-name: tests.test_tap,tests.test_limits -*-
"""
Every limit chatd enforces, in one place, with its default.

Each field is a C{twistd chatd} option of the same name (C{max_line} is
C{--max-line}); a rate of 0 turns that limit off.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """
    @ivar max_line: longest line the line door accepts, in bytes.
    @ivar max_frame: largest WebSocket frame or message, in bytes.
    @ivar ping_interval: seconds between WebSocket keepalive pings (0: off).
    @ivar ping_timeout: seconds to wait for the pong before dropping.
    @ivar sign_on_timeout: seconds after accept by which a connection must
        have a nickname, however it trickles bytes.
    @ivar drain_timeout: seconds to let output drain when shutting down.
    @ivar probe_idle: seconds of silence after which the line door probes a
        peer with telnet's C{DO TIMING-MARK} (0: never; for raw-TCP bots).
    @ivar probe_timeout: seconds a probed peer has to answer.
    @ivar max_sendq: bytes queued for a connection that is not reading
        before it is dropped as a slow consumer.
    @ivar soft_sendq: bytes queued past which optional output (history,
        listings) is skipped and other input waits for this reader.
    @ivar paused_timeout: seconds a connection may go without reading
        (while output waits for it) before it is dropped.
    @ivar stall_timeout: seconds a saturated reader may hold back other
        users' input before it is left to fill its queue.
    @ivar flood_rate: lines (or WebSocket messages) per second a connection
        may send once its burst is spent; 0 turns flood control off.
    @ivar flood_burst: lines a connection may send at once.
    @ivar flood_backlog: seconds' worth of held-back input (at flood_rate)
        past which a flooding connection is dropped.
    """

    max_line: int = 4096
    max_frame: int = 64 * 1024
    ping_interval: float = 25.0
    ping_timeout: float = 10.0
    sign_on_timeout: float = 30.0
    drain_timeout: float = 5.0
    probe_idle: float = 120.0
    probe_timeout: float = 30.0
    max_sendq: int = 256 * 1024
    soft_sendq: int = 64 * 1024
    paused_timeout: float = 30.0
    stall_timeout: float = 0.5
    flood_rate: float = 2.0
    flood_burst: int = 5
    flood_backlog: float = 30.0
