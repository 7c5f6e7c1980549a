# -*- test-case-name: tests.test_bench -*-
"""
The idle scenario: C connections opened at a bounded concurrency (from
several 127.0.0.x source addresses, so that each has its own ephemeral port
range), signed on, held, then one broadcast probe in C{#lobby}.

Phases::

    worker: open and sign on every client   -> ("ready", counts and times)
    parent: hold, read the server's RSS      ("probe", send?) to every worker
    worker: one client says the probe; read
            until every client saw it       -> ("result", counts)

and with C{--sigterm} (the server's pid given), while every connection is
still open::

    parent: ("watch", None) to every worker
    worker: every client starts watching    -> ("watching", how many)
    parent: SIGTERM to the server; poll /proc/PID until the process is gone
            (or a zombie) or the timeout; ("report", exited?) to every worker
    worker: (if it exited, a moment more for
            the last closes to come in)     -> ("watched", closes and counts)

The server is not the tool's child: its exit is seen in C{/proc}, not waited
for.
"""

from __future__ import annotations

import os
import signal
import time
from multiprocessing.connection import Connection
from typing import Any

from chatd.bench import wire
from chatd.bench.client import LOBBY, READY, Loop
from chatd.bench.runner import Settings, Workers, proc_status
from chatd.bench.stats import CpuClock, cpu_summary, errors_text, not_ready, table

PROBE_TIMEOUT = 30.0
SIGTERM_TIMEOUT = 120.0
"""Seconds the server is given to exit after SIGTERM, by default."""
EXIT_POLL = 0.005
"""Seconds between two looks at C{/proc/PID} while waiting for the exit."""
LAST_CLOSES = 2.0
"""Seconds a worker waits, once the server has exited, for the closes still
on their way (the kernel closed every socket at the exit)."""


def run(
    settings: Settings,
    hold: float,
    pid: int | None,
    sigterm: bool = False,
    sigterm_timeout: float = SIGTERM_TIMEOUT,
) -> dict[str, Any]:
    """
    Run the scenario against the server and return the merged results;
    with C{sigterm}, then also stop the server (C{pid}) with SIGTERM and
    watch it go.
    """
    if sigterm and pid is None:
        raise ValueError("sigterm needs the server's pid")
    rss_before = proc_status(pid, "VmRSS") if pid is not None else None

    def body(pipe: Connection, index: int) -> None:
        _worker(settings, pipe, index, sigterm, sigterm_timeout)

    workers = Workers(settings.workers, body)
    results: list[dict[str, Any]] = []
    rss_after = None
    stopped: dict[str, Any] | None = None
    try:
        ready = workers.gather("ready", settings.setup_timeout + 30)
        if any(r["ready"] for r in ready):  # else there is nothing to hold or probe
            time.sleep(hold)
            rss_after = proc_status(pid, "VmRSS") if pid is not None else None
            workers.tell(("probe", None))
            results = workers.gather("result", PROBE_TIMEOUT + 30)
            if sigterm:
                assert pid is not None
                stopped = _stop_server(workers, pid, sigterm_timeout)
    finally:
        workers.tell(("stop", None))
        workers.finish()
    errors: dict[str, int] = {}
    for part in ready:
        for why, count in part["errors"].items():
            errors[why] = errors.get(why, 0) + count
    held = sum(r["ready"] for r in ready)
    started = min(r["started"] for r in ready)
    connected_at = max((r["last_connected"] for r in ready if r["last_connected"]), default=0)
    ready_at = max((r["last_ready"] for r in ready if r["last_ready"]), default=0)
    connects = sum(r["connected"] for r in ready)
    result: dict[str, Any] = {
        "scenario": "idle",
        "door": settings.door,
        "connections": settings.clients,
        "workers": settings.workers,
        "concurrency": settings.concurrency,
        "sources": settings.sources,
        "poll": "busy" if settings.busy_poll else "sleep",
        "tcp_connected": connects,
        "signed_on": held,
        "connect_errors": sum(errors.values()),
        "connect_error_kinds": errors,
        "tcp_connects_per_s": _rate(connects, started, connected_at),
        "sign_ons_per_s": _rate(held, started, ready_at),
        "setup_s": round((ready_at - started) / 1e9, 2) if ready_at else None,
        "hold_s": hold,
        "probe_received": sum(r["probed"] for r in results),
        "dropped": sum(r["dropped"] for r in results),
        "tool_cpu": cpu_summary([r["cpu"] for r in results]),
        "server_rss_kib_before": rss_before,
        "server_rss_kib_after": rss_after,
        "server_rss_kib_per_connection": (
            round((rss_after - rss_before) / held, 2)
            if rss_after is not None and rss_before is not None and held
            else None
        ),
    }
    if sigterm:
        result.update(_sigterm_result(stopped, sigterm_timeout))
    return result


def _stop_server(workers: Workers, pid: int, timeout: float) -> dict[str, Any]:
    """
    Have the workers watch their connections, send SIGTERM to C{pid}, wait
    (at most C{timeout} seconds) for the process to be gone, and gather what
    the workers saw.
    """
    workers.tell(("watch", None))
    watching = workers.gather("watching", 30)
    seen = process_state(pid)
    cpu_before = cpu_after = seen[1] if seen is not None else None
    signalled = time.monotonic_ns()
    os.kill(pid, signal.SIGTERM)
    exited = None
    deadline = signalled + int(timeout * 1e9)
    while True:
        now = time.monotonic_ns()
        seen = process_state(pid)
        if seen is not None:
            cpu_after = seen[1]
        if seen is None or seen[0] in ("Z", "X"):
            exited = now
            break
        if now >= deadline:
            break
        time.sleep(EXIT_POLL)
    workers.tell(("report", exited is not None))
    watched = workers.gather("watched", LAST_CLOSES + 30)
    return {
        "signalled": signalled,
        "exited": exited,
        "server_cpu_s": (
            round(cpu_after - cpu_before, 2)
            if cpu_before is not None and cpu_after is not None
            else None
        ),
        "watching": sum(watching),
        "parts": watched,
    }


def process_state(pid: int) -> tuple[str, float] | None:
    """
    The state letter of process C{pid} (C{Z}: exited, its sockets closed,
    but not yet reaped by its parent) and the CPU time it has used, from
    C{/proc/PID/stat}; C{None} once it is gone.
    """
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return fields[0], (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _sigterm_result(stopped: dict[str, Any] | None, timeout: float) -> dict[str, Any]:
    """
    The C{sigterm_*} fields of the result: all C{None} but the timeout if
    no signal was sent (no connection signed on).
    """
    result: dict[str, Any] = {
        "sigterm_timeout_s": timeout,
        "sigterm_watched": None,
        "sigterm_exit_s": None,
        "sigterm_closed": None,
        "sigterm_close_kinds": {},
        "sigterm_last_close_s": None,
        "sigterm_bytes_per_connection": None,
        "sigterm_messages_per_connection": None,
        "sigterm_messages_max": None,
        "sigterm_server_cpu_s": None,
        "sigterm_tool_cpu_pct": None,
    }
    if stopped is None:
        return result
    signalled, parts = stopped["signalled"], stopped["parts"]
    watched = stopped["watching"]
    kinds: dict[str, int] = {}
    for part in parts:
        for why, count in part["close_kinds"].items():
            kinds[why] = kinds.get(why, 0) + count
    last_close = max((p["last_close"] for p in parts if p["last_close"]), default=0)
    received = sum(p["bytes"] for p in parts)
    messages = sum(p["messages"] for p in parts)
    result.update(
        {
            "sigterm_watched": watched,
            "sigterm_exit_s": (
                round((stopped["exited"] - signalled) / 1e9, 3) if stopped["exited"] else None
            ),
            "sigterm_closed": sum(p["closed"] for p in parts),
            "sigterm_close_kinds": kinds,
            "sigterm_last_close_s": (
                round((last_close - signalled) / 1e9, 3) if last_close else None
            ),
            "sigterm_bytes_per_connection": round(received / watched, 1) if watched else None,
            "sigterm_messages_per_connection": round(messages / watched, 2) if watched else None,
            "sigterm_messages_max": max((p["messages_max"] for p in parts), default=0),
            "sigterm_server_cpu_s": stopped["server_cpu_s"],
            "sigterm_tool_cpu_pct": cpu_summary([p["cpu"] for p in parts])["total_pct"],
        }
    )
    return result


def _rate(count: int, start: int, end: int) -> float | None:
    if not count or end <= start:
        return None
    return round(count / ((end - start) / 1e9))


def _worker(
    settings: Settings, pipe: Connection, index: int, sigterm: bool, sigterm_timeout: float
) -> None:
    loop = Loop(settings, pipe)
    specs = settings.specs(index, lambda _: LOBBY)
    cpu = CpuClock()
    started = time.monotonic_ns()
    loop.open(specs, max(1, settings.concurrency // settings.workers))
    loop.run(lambda: not loop.setting_up, time.monotonic() + settings.setup_timeout)
    loop.give_up_setting_up()
    pipe.send(
        (
            "ready",
            {
                "ready": len(loop.ready),
                "connected": loop.connected,
                "errors": loop.errors,
                "started": started,
                "last_connected": loop.last_connected,
                "last_ready": max((c.ready_at for c in loop.ready), default=0),
            },
        )
    )
    kind, _ = loop.message(time.monotonic() + 24 * 3600)
    if kind != "probe":
        loop.close_all()
        return
    held = [c for c in loop.ready if c.state == READY]
    if index == 0 and held:
        prober = held[0]
        prober.say(wire.text(settings.mark, 0, 0, time.monotonic_ns() // 1000, settings.size))
    loop.run(lambda: all(c.got for c in held if c.state == READY), time.monotonic() + PROBE_TIMEOUT)
    pipe.send(
        (
            "result",
            {
                "probed": sum(1 for c in held if c.got),
                "dropped": loop.dropped,
                "cpu": cpu.read(),
            },
        )
    )
    if sigterm:
        _watch(loop, pipe, sigterm_timeout)
    loop.close_all()


def _watch(loop: Loop, pipe: Connection, timeout: float) -> None:
    """
    The worker's part of C{--sigterm}: once told, watch every connection
    still open until the parent asks for the report.
    """
    kind, _ = loop.message(time.monotonic() + 24 * 3600)
    if kind != "watch":
        return
    watched = loop.watch()
    cpu = CpuClock()
    pipe.send(("watching", len(watched)))
    kind, exited = loop.message(time.monotonic() + timeout + 60)
    if kind != "report":
        return
    if exited:
        loop.run(lambda: not loop.watching, time.monotonic() + LAST_CLOSES)
    pipe.send(
        (
            "watched",
            {
                "closed": loop.watch_closed,
                "close_kinds": loop.watch_close_kinds,
                "last_close": loop.last_close,
                "bytes": sum(c.watched_bytes for c in watched),
                "messages": sum(c.watched_messages for c in watched),
                "messages_max": max((c.watched_messages for c in watched), default=0),
                "cpu": cpu.read(),
            },
        )
    )


def problems(result: dict[str, Any]) -> list[str]:
    """
    What makes an idle result a failure: connections that did not sign on;
    nothing measured; a probe that did not reach every connection; with
    C{--sigterm}, a server that did not exit within the timeout, or
    connections it left open.
    """
    found = not_ready(result, "connections", "signed_on", "connect and sign on")
    if not result["signed_on"]:
        found.append("nothing was measured: no connection signed on")
    elif not result["probe_received"]:
        found.append("nothing was measured: no connection received the probe")
    elif result["probe_received"] != result["signed_on"]:
        found.append(
            f"the probe reached {result['probe_received']} of {result['signed_on']} connections"
        )
    watched = result.get("sigterm_watched")
    if watched is not None:
        if result["sigterm_exit_s"] is None:
            found.append(
                f"the server did not exit within {result['sigterm_timeout_s']:g} s of SIGTERM"
            )
        if result["sigterm_closed"] < watched:
            found.append(
                f"{watched - result['sigterm_closed']} of {watched} connections were left open "
                "after SIGTERM"
            )
    return found


def render(result: dict[str, Any]) -> str:
    """
    The human-readable table of an idle result.
    """
    per = result["server_rss_kib_per_connection"]
    rows = [
        ("door / connections", f"{result['door']} / {result['connections']}"),
        (
            "workers / concurrency / sources / poll",
            "{workers} / {concurrency} / {sources} / {poll}".format(**result),
        ),
        ("TCP connected", f"{result['tcp_connected']} ({result['tcp_connects_per_s']}/s)"),
        (
            "signed on",
            f"{result['signed_on']} ({result['sign_ons_per_s']}/s, {result['setup_s']} s)",
        ),
        ("connect errors", errors_text(result["connect_errors"], result["connect_error_kinds"])),
        ("probe received by", f"{result['probe_received']} of {result['signed_on']}"),
        ("dropped by server", result["dropped"]),
        (
            "tool CPU (% of a core)",
            f"{result['tool_cpu']['total_pct']}%" if result["tool_cpu"]["workers"] else "-",
        ),
    ]
    if per is not None:
        rows.append(
            (
                "server RSS",
                f"{result['server_rss_kib_before']} -> {result['server_rss_kib_after']} KiB, "
                f"{per} KiB per connection",
            )
        )
    if result.get("sigterm_watched") is not None:
        rows += _sigterm_rows(result)
    return table(rows)


def _sigterm_rows(result: dict[str, Any]) -> list[tuple[str, Any]]:
    exit_s = result["sigterm_exit_s"]
    last = result["sigterm_last_close_s"]
    unit = {"line": "lines", "ws": "frames", "irc": "lines"}.get(result["door"], "lines/frames")
    if exit_s is None:
        exit_text = f"not within {result['sigterm_timeout_s']:g} s"
    else:
        exit_text = f"{exit_s} s"
    if result["sigterm_server_cpu_s"] is not None:
        exit_text += f" (server CPU {result['sigterm_server_cpu_s']} s)"
    return [
        ("SIGTERM -> exit", exit_text),
        (
            "closed by the server",
            f"{result['sigterm_closed']} of {result['sigterm_watched']}"
            + (f", the last {last} s after SIGTERM" if last is not None else "")
            + (
                f" ({errors_text(result['sigterm_closed'], result['sigterm_close_kinds'])})"
                if len(result["sigterm_close_kinds"]) > 1
                else ""
            ),
        ),
        (
            "received after SIGTERM",
            f"{result['sigterm_bytes_per_connection']} bytes, "
            f"{result['sigterm_messages_per_connection']} {unit} per connection "
            f"(at most {result['sigterm_messages_max']})",
        ),
        ("tool CPU after SIGTERM", f"{result['sigterm_tool_cpu_pct']}%"),
    ]
