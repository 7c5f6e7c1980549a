# -*- test-case-name: tests.test_bench -*-
"""
Numbers the workers collect and the parent merges: a compact latency
histogram, CPU use, and the human-readable table.
"""

from __future__ import annotations

import resource
import time
from collections import Counter
from typing import Any

SUB_BUCKETS = 32
"""Buckets per power of two: values are kept to within about 3%."""


def bucket(value: int) -> int:
    """
    The histogram bucket of C{value} (a non-negative integer).
    """
    if value < 2 * SUB_BUCKETS:
        return max(value, 0)
    shift = value.bit_length() - 6
    return (shift << 5) + (value >> shift)


def bucket_value(index: int) -> int:
    """
    The middle of bucket C{index}: the inverse of L{bucket}, roughly.
    """
    if index < 2 * SUB_BUCKETS:
        return index
    shift = index // SUB_BUCKETS - 1
    low = (SUB_BUCKETS + index % SUB_BUCKETS) << shift
    return low + (1 << shift) // 2


class Histogram:
    """
    Weighted counts of latencies in microseconds, by L{bucket}.
    """

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()
        self.max = 0

    def add(self, value: int, weight: int = 1) -> None:
        self.counts[bucket(value)] += weight
        if value > self.max:
            self.max = value

    def merge(self, data: dict[str, Any]) -> None:
        """
        Add a histogram exported by L{export} (from another process).
        """
        for index, count in data["counts"].items():
            self.counts[int(index)] += count
        self.max = max(self.max, data["max"])

    def export(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "max": self.max}

    def percentiles(self, *ps: float) -> list[int | None]:
        """
        The values (microseconds) at or below which C{p} percent of the
        weight lies, for each C{p}; C{None} when nothing was recorded.
        """
        total = sum(self.counts.values())
        if not total:
            return [None for _ in ps]
        ordered = sorted(self.counts.items())
        result: list[int | None] = []
        for p in ps:
            wanted = total * p / 100.0
            seen = 0
            for index, count in ordered:
                seen += count
                if seen >= wanted:
                    result.append(min(bucket_value(index), self.max))
                    break
        return result


class CpuClock:
    """
    This process's CPU time (user + system) and wall time since a start.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.user0, self.sys0 = _cpu()
        self.wall0 = time.monotonic()

    def read(self) -> dict[str, float]:
        user, system = _cpu()
        user -= self.user0
        system -= self.sys0
        wall = time.monotonic() - self.wall0
        return {
            "user_s": round(user, 3),
            "sys_s": round(system, 3),
            "cpu_s": round(user + system, 3),
            "wall_s": round(wall, 3),
        }


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def cpu_summary(per_worker: list[dict[str, float]]) -> dict[str, Any]:
    """
    Per-worker and total CPU as a percentage of one core over the wall time;
    with C{spin_s} (busy polling), also the part of it spent finding nothing.
    """
    rows = []
    for n, entry in enumerate(per_worker):
        wall = entry["wall_s"]
        pct = 100.0 * entry["cpu_s"] / wall if wall else 0.0
        row = {"worker": n, **entry, "cpu_pct": round(pct, 1)}
        if "spin_s" in entry:
            row["spin_pct"] = round(100.0 * entry["spin_s"] / wall if wall else 0.0, 1)
        rows.append(row)
    summary: dict[str, Any] = {
        "workers": rows,
        "total_pct": round(sum(r["cpu_pct"] for r in rows), 1),
    }
    if rows and all("spin_pct" in r for r in rows):
        summary["spin_pct"] = round(sum(r["spin_pct"] for r in rows), 1)
    return summary


def table(rows: list[tuple[str, Any]]) -> str:
    """
    Two aligned columns.
    """
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def errors_text(total: int, kinds: dict[str, int]) -> str:
    """
    A count of errors and what they were: C{3 (connect: ECONNREFUSED: 3)}.
    """
    if not kinds:
        return str(total)
    return f"{total} (" + ", ".join(f"{k}: {v}" for k, v in kinds.items()) + ")"


def not_ready(result: dict[str, Any], total: str, ready: str, doing: str) -> list[str]:
    """
    The problem, if any, of a result in which only C{result[ready]} of the
    C{result[total]} clients (counted under their own name: C{"clients"},
    C{"connections"}) managed to C{doing}, with the connect errors.
    """
    failed = result[total] - result[ready]
    if not failed:
        return []
    errors = errors_text(result["connect_errors"], result["connect_error_kinds"])
    return [f"{failed} of {result[total]} {total} did not {doing}: {errors}"]


def ms(us: int | None) -> str:
    return "-" if us is None else f"{us / 1000:.2f} ms"
