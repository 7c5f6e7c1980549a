# -*- test-case-name: tests.test_bench -*-
"""
The command line: C{python -m chatd.bench fanout|idle ...} (also installed as
C{chatd-bench}).

The tool does not start a server: run C{twistd -n chatd} with the limits the
benchmark should lift (C{--flood-rate 0 --max-per-ip 0 --connect-rate 0}),
pinned with C{taskset} if you like, and point the tool at its doors.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from chatd.bench import fanout, idle, wire
from chatd.bench.client import IRC, LINE, WS, Target
from chatd.bench.runner import Settings, parse_line_address, parse_ws_address, raise_open_files

IRC_MAX_SIZE = 400
"""The longest message text on the IRC door: C{PRIVMSG #room :text} must
fit in one line of 512 bytes whatever the room's name."""


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--line", metavar="HOST:PORT", type=parse_line_address, help="the line door"
    )
    common.add_argument(
        "--ws", metavar="ws://HOST:PORT/ws", type=parse_ws_address, help="the WebSocket door"
    )
    common.add_argument("--irc", metavar="HOST:PORT", type=parse_line_address, help="the IRC door")
    common.add_argument(
        "--door",
        choices=(LINE, WS, IRC, "mix"),
        default=LINE,
        help="which door the clients use (mix: line and ws, alternating)",
    )
    common.add_argument("--workers", type=int, default=1, help="client processes (default 1)")
    common.add_argument(
        "--concurrency", type=int, default=200, help="connections being set up at once"
    )
    common.add_argument(
        "--size",
        type=int,
        default=64,
        help=f"message text size in bytes (default 64, at least {wire.HEADER_SIZE})",
    )
    common.add_argument(
        "--pid", type=int, help="the server's pid: report its CPU (fanout) or RSS (idle)"
    )
    common.add_argument(
        "--setup-timeout", type=float, default=120.0, help="seconds allowed to open every client"
    )
    common.add_argument(
        "--busy-poll",
        action="store_true",
        help="poll without sleeping while messages flow: spares the server the loopback "
        "wake-ups remote clients never cost it, but takes the tool's whole core "
        "(default: sleep in epoll_wait)",
    )
    common.add_argument("--json", action="store_true", help="print the result as JSON")

    parser = argparse.ArgumentParser(
        prog="chatd-bench", description="Load a chatd server and measure it."
    )
    scenarios = parser.add_subparsers(dest="scenario", required=True)
    fan = scenarios.add_parser(
        "fanout", parents=[common], help="closed-loop senders, deliveries/s and latency"
    )
    fan.add_argument("--clients", type=int, default=100, help="clients in all (default 100)")
    fan.add_argument("--rooms", type=int, default=1, help="rooms they are spread over")
    fan.add_argument("--senders", type=int, default=10, help="closed-loop senders (default 10)")
    fan.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    fan.add_argument("--duration", type=float, default=10.0, help="seconds measured")
    fan.add_argument(
        "--check",
        choices=("count", "seq"),
        default="count",
        help="count: every client's total must match what was sent (cheap); "
        "seq: also parse every delivery's sender and sequence number",
    )
    fan.add_argument(
        "--sample",
        type=int,
        default=10,
        help="receivers read at once, timed and order-checked besides the senders "
        "(default 10); the others are read every few ms and only counted",
    )
    fan.add_argument("--sources", type=int, default=1, help="127.0.0.x source addresses")
    still = scenarios.add_parser(
        "idle", parents=[common], help="hold many connections, one broadcast probe"
    )
    still.add_argument("--connections", type=int, default=1000, help="connections to hold")
    still.add_argument("--hold", type=float, default=5.0, help="seconds to hold them")
    still.add_argument("--sources", type=int, default=4, help="127.0.0.x source addresses")
    still.add_argument(
        "--sigterm",
        action="store_true",
        help="then, every connection still open, send SIGTERM to the server (--pid) and "
        "measure until it has exited: how long, and what the connections got meanwhile",
    )
    still.add_argument(
        "--sigterm-timeout",
        type=float,
        default=idle.SIGTERM_TIMEOUT,
        help=f"seconds the server has to exit after SIGTERM (default {idle.SIGTERM_TIMEOUT:g})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run one scenario; print its table (or JSON).  0 if every client
    connected and signed on, something was measured and nothing went
    missing; else 1, and what went wrong on standard error.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    doors = {LINE, WS} if args.door == "mix" else {args.door}
    for door, given in ((LINE, args.line), (WS, args.ws), (IRC, args.irc)):
        if door in doors and given is None:
            parser.error(f"--door {args.door} needs --{door}")
    if args.size < wire.HEADER_SIZE:
        parser.error(f"--size must be at least {wire.HEADER_SIZE}")
    if args.door == IRC and args.size > IRC_MAX_SIZE:
        parser.error(f"--door irc takes a --size of at most {IRC_MAX_SIZE} (a line is 512 bytes)")
    if getattr(args, "sigterm", False) and args.pid is None:
        parser.error("--sigterm needs --pid (the server's)")
    raise_open_files()
    clients = args.clients if args.scenario == "fanout" else args.connections
    settings = Settings(
        target=Target(line=args.line, ws=args.ws, irc=args.irc),
        door=args.door,
        clients=clients,
        workers=max(1, min(args.workers, clients)),
        concurrency=args.concurrency,
        sources=args.sources,
        setup_timeout=args.setup_timeout,
        mark=wire.new_token(),
        size=args.size,
        rooms=getattr(args, "rooms", 1),
        senders=min(getattr(args, "senders", 0), clients),
        check_seq=getattr(args, "check", "count") == "seq",
        sample=max(0, getattr(args, "sample", 0)),
        busy_poll=args.busy_poll,
    )
    if args.scenario == "fanout":
        result = fanout.run(settings, args.warmup, args.duration, args.pid)
        text = fanout.render(result)
        problems = fanout.problems(result)
    else:
        result = idle.run(settings, args.hold, args.pid, args.sigterm, args.sigterm_timeout)
        text = idle.render(result)
        problems = idle.problems(result)
    result["problems"] = problems
    print(json.dumps(result, indent=2) if args.json else text, flush=True)
    for problem in problems:
        print(f"chatd-bench: FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
