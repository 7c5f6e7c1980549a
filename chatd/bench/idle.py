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
"""

from __future__ import annotations

import time
from multiprocessing.connection import Connection
from typing import Any

from chatd.bench import wire
from chatd.bench.client import LOBBY, READY, Loop
from chatd.bench.runner import Settings, Workers, proc_status
from chatd.bench.stats import CpuClock, cpu_summary, errors_text, not_ready, table

PROBE_TIMEOUT = 30.0


def run(settings: Settings, hold: float, pid: int | None) -> dict[str, Any]:
    """
    Run the scenario against the server and return the merged results.
    """
    rss_before = proc_status(pid, "VmRSS") if pid is not None else None

    def body(pipe: Connection, index: int) -> None:
        _worker(settings, pipe, index)

    workers = Workers(settings.workers, body)
    results: list[dict[str, Any]] = []
    rss_after = None
    try:
        ready = workers.gather("ready", settings.setup_timeout + 30)
        if any(r["ready"] for r in ready):  # else there is nothing to hold or probe
            time.sleep(hold)
            rss_after = proc_status(pid, "VmRSS") if pid is not None else None
            workers.tell(("probe", None))
            results = workers.gather("result", PROBE_TIMEOUT + 30)
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
    return result


def _rate(count: int, start: int, end: int) -> float | None:
    if not count or end <= start:
        return None
    return round(count / ((end - start) / 1e9))


def _worker(settings: Settings, pipe: Connection, index: int) -> None:
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
    loop.close_all()


def problems(result: dict[str, Any]) -> list[str]:
    """
    What makes an idle result a failure: connections that did not sign on;
    nothing measured; a probe that did not reach every connection.
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
    return table(rows)
