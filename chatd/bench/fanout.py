# -*- test-case-name: tests.test_bench -*-
"""
The fan-out scenario: N clients in R rooms, S of them senders working
closed-loop (each sends its next message when its own copy comes back), a
warm-up, then D measured seconds.

Phases, driven by the parent over each worker's pipe::

    worker: open, sign on, join            -> ("ready", counts)
    parent: ("go", start, measure, end)      all workers share the clock
    worker: senders run until the end, then
            wait for their last message    -> ("sent", {sender: messages})
    parent: ("expect", {sender: messages})   every sender's total
    worker: read until every client has
            every message, or a grace time -> ("result", counts)
"""

from __future__ import annotations

import time
from multiprocessing.connection import Connection
from typing import Any

from chatd.bench.client import Loop
from chatd.bench.runner import Settings, Workers, proc_cpu
from chatd.bench.stats import CpuClock, Histogram, cpu_summary, errors_text, ms, not_ready, table

GRACE = 5.0
"""Seconds to wait, after the run, for messages still on their way."""


def room_of(rooms: int) -> Any:
    return lambda index: f"#bench{index % rooms}"


def run(settings: Settings, warmup: float, duration: float, pid: int | None) -> dict[str, Any]:
    """
    Run the scenario against the server and return the merged results.
    """
    parent_cpu = CpuClock()

    def body(pipe: Connection, index: int) -> None:
        _worker(settings, warmup, duration, pipe, index)

    workers = Workers(settings.workers, body)
    results: list[dict[str, Any]] = []
    server_cpu = None
    try:
        setup_started = time.monotonic()
        ready = workers.gather("ready", settings.setup_timeout + 30)
        setup_seconds = time.monotonic() - setup_started
        if not any(r["ready"] for r in ready):
            # Nobody is in a room: there is nothing to measure.
            return _merge(
                settings, warmup, duration, ready, results, setup_seconds, server_cpu, parent_cpu
            )
        go = time.monotonic_ns() + 200_000_000
        measure = go + int(warmup * 1e9)
        end = measure + int(duration * 1e9)
        workers.tell(("go", (go, measure, end)))
        if pid is not None:
            _sleep_until(measure)
            cpu0 = proc_cpu(pid)
            _sleep_until(end)
            server_cpu = round(100.0 * (proc_cpu(pid) - cpu0) / duration, 1)
        sent = workers.gather("sent", warmup + duration + GRACE + 30)
        totals: dict[int, int] = {}
        for part in sent:
            totals.update(part)
        workers.tell(("expect", totals))
        results = workers.gather("result", GRACE + 30)
    finally:
        workers.tell(("stop", None))
        workers.finish()
    return _merge(settings, warmup, duration, ready, results, setup_seconds, server_cpu, parent_cpu)


def _sleep_until(ns: int) -> None:
    delay = (ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        time.sleep(delay)


def _worker(
    settings: Settings, warmup: float, duration: float, pipe: Connection, index: int
) -> None:
    loop = Loop(settings, pipe)
    rooms = room_of(settings.rooms)
    specs = settings.specs(index, rooms)
    cpu = CpuClock()
    loop.open(specs, max(1, settings.concurrency // settings.workers))
    loop.run(lambda: not loop.setting_up, time.monotonic() + settings.setup_timeout)
    loop.give_up_setting_up()
    setup_cpu = cpu.read()
    pipe.send(
        (
            "ready",
            {
                "ready": len(loop.ready),
                "sample": sum(1 for c in loop.ready if c.sample),
                "errors": loop.errors,
                "cpu": setup_cpu,
            },
        )
    )
    kind, times = loop.message(time.monotonic() + settings.setup_timeout + 60)
    if kind != "go":
        loop.close_all()
        return
    go, measure, end = times
    to_mono = time.monotonic() - time.monotonic_ns() / 1e9
    loop.window = (measure, end)
    loop.run(lambda: time.monotonic_ns() >= go, go / 1e9 + to_mono + 1)
    senders = [client for client in loop.ready if client.sid is not None]
    loop.sending = True
    for client in senders:
        if client.state == 3:  # READY
            loop.send_next(client)
    loop.run(lambda: time.monotonic_ns() >= measure, measure / 1e9 + to_mono + 1)
    cpu.reset()
    spin0 = loop.spin_s
    loop.run(lambda: time.monotonic_ns() >= end, end / 1e9 + to_mono + 1)
    window_cpu = cpu.read()
    window_cpu["spin_s"] = round(loop.spin_s - spin0, 3)
    loop.sending = False
    loop.run(lambda: all(c.waiting is None for c in senders), time.monotonic() + GRACE)
    pipe.send(("sent", {client.sid: client.sent for client in senders}))
    kind, totals = loop.message(time.monotonic() + 60)
    if kind != "expect":
        loop.close_all()
        return
    expected_in: dict[str, int] = {}
    for sid, count in totals.items():
        room = rooms(sid)
        expected_in[room] = expected_in.get(room, 0) + count
    receivers = list(loop.ready)

    def complete() -> bool:
        return all(c.got >= expected_in.get(c.room, 0) for c in receivers if c.state == 3)

    loop.run(complete, time.monotonic() + GRACE)
    missing = duplicates = 0
    for client in receivers:
        # The sample checked every sequence number, in either mode.
        if settings.check_seq or client.sample:
            for sid, count in totals.items():
                if rooms(sid) == client.room:
                    have = client.next_seq.get(b"%05x" % sid, 0)
                    client.missing += max(0, count - have)
            missing += client.missing
            duplicates += client.dups
        else:
            want = expected_in.get(client.room, 0)
            missing += max(0, want - client.got)
            duplicates += max(0, client.got - want)
    pipe.send(
        (
            "result",
            {
                "deliveries": loop.deliveries,
                "round_trips": loop.round_trips,
                "latency": loop.latency.export(),
                "missing": missing,
                "duplicates": duplicates,
                "dropped": loop.dropped,
                "sent": sum(totals.get(c.sid, 0) for c in senders),
                "cpu": window_cpu,
                "setup_cpu": setup_cpu,
            },
        )
    )
    loop.close_all()


def _merge(
    settings: Settings,
    warmup: float,
    duration: float,
    ready: list[dict[str, Any]],
    results: list[dict[str, Any]],
    setup_seconds: float,
    server_cpu: float | None,
    parent_cpu: CpuClock,
) -> dict[str, Any]:
    latency = Histogram()
    errors: dict[str, int] = {}
    for part in ready:
        for why, count in part["errors"].items():
            errors[why] = errors.get(why, 0) + count
    for part in results:
        latency.merge(part["latency"])
    p50, p90, p99 = latency.percentiles(50, 90, 99)
    deliveries = sum(r["deliveries"] for r in results)
    round_trips = sum(r["round_trips"] for r in results)
    cpu = cpu_summary([r["cpu"] for r in results])
    return {
        "scenario": "fanout",
        "door": settings.door,
        "clients": settings.clients,
        "rooms": settings.rooms,
        "senders": settings.senders,
        "size": settings.size,
        "warmup_s": warmup,
        "duration_s": duration,
        "workers": settings.workers,
        "check": "seq" if settings.check_seq else "count",
        "poll": "busy" if settings.busy_poll else "sleep",
        "sample": sum(r["sample"] for r in ready),
        "connected": sum(r["ready"] for r in ready),
        "connect_errors": sum(errors.values()),
        "connect_error_kinds": errors,
        "setup_s": round(setup_seconds, 2),
        "messages": round_trips,
        "messages_per_s": round(round_trips / duration),
        "deliveries": deliveries,
        "deliveries_per_s": round(deliveries / duration),
        "latency_ms": {
            "p50": _ms(p50),
            "p90": _ms(p90),
            "p99": _ms(p99),
            "max": _ms(latency.max if latency.counts else None),
        },
        "messages_sent_total": sum(r["sent"] for r in results),
        "missing": sum(r["missing"] for r in results),
        "duplicates": sum(r["duplicates"] for r in results),
        "dropped": sum(r["dropped"] for r in results),
        "tool_cpu": cpu,
        "tool_parent_cpu": parent_cpu.read(),
        "server_cpu_pct": server_cpu,
    }


def _ms(us: int | None) -> float | None:
    return None if us is None else round(us / 1000, 3)


def render(result: dict[str, Any]) -> str:
    """
    The human-readable table of a fan-out result.
    """
    lat = result["latency_ms"]
    cpu = result["tool_cpu"]
    rows = [
        ("door / clients / rooms", f"{result['door']} / {result['clients']} / {result['rooms']}"),
        ("senders / size", f"{result['senders']} / {result['size']} bytes"),
        ("warm-up / measured", f"{result['warmup_s']:g} s / {result['duration_s']:g} s"),
        ("poll / sampled clients", f"{result['poll']} / {result['sample']}"),
        ("connected", f"{result['connected']} in {result['setup_s']} s"),
        ("connect errors", errors_text(result["connect_errors"], result["connect_error_kinds"])),
        ("messages/s", f"{result['messages_per_s']:,}"),
        ("deliveries/s", f"{result['deliveries_per_s']:,}"),
        (
            "latency p50/p90/p99/max",
            " / ".join(ms(None if lat[k] is None else int(lat[k] * 1000)) for k in lat),
        ),
        (
            f"missing / duplicates ({result['check']})",
            f"{result['missing']} / {result['duplicates']}",
        ),
        ("dropped by server", result["dropped"]),
        ("tool CPU (% of a core)", _cpu(cpu)),
    ]
    if result["server_cpu_pct"] is not None:
        rows.append(("server CPU (% of a core)", f"{result['server_cpu_pct']}%"))
    return table(rows)


def problems(result: dict[str, Any]) -> list[str]:
    """
    What makes a fan-out result a failure: clients that did not connect,
    sign on and join; nothing measured; messages missing or duplicated.
    """
    found = not_ready(result, "clients", "connected", "connect, sign on and join")
    if not result["connected"]:
        found.append("nothing was measured: no client was ready")
    elif not result["messages"]:
        found.append(
            f"nothing was measured: no message made a round trip in {result['duration_s']:g} s"
        )
    if result["missing"] or result["duplicates"]:
        found.append(f"{result['missing']} missing and {result['duplicates']} duplicate deliveries")
    return found


def _cpu(cpu: dict[str, Any]) -> str:
    if not cpu["workers"]:
        return "-"
    each = ", ".join(
        f"{w['cpu_pct']}% = {w['user_s']}+{w['sys_s']} s user+sys / {w['wall_s']} s"
        for w in cpu["workers"]
    )
    spin = f", {cpu['spin_pct']}% in polls that found nothing" if cpu.get("spin_pct") else ""
    return f"{cpu['total_pct']}%{spin} (workers: {each})"
