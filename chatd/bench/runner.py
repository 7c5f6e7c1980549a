# -*- test-case-name: tests.test_bench -*-
"""
What both scenarios share: the target's addresses, the clients' specs, the
worker processes and their pipes, and a look at the server process.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any
from urllib.parse import urlsplit

from chatd.bench.client import LINE, WS, Spec, Target


@dataclass(frozen=True)
class Settings:
    """
    Everything a worker needs to know, fixed before the workers start.
    """

    target: Target
    door: str
    clients: int
    workers: int
    concurrency: int
    sources: int
    setup_timeout: float
    mark: bytes
    size: int = 64
    rooms: int = 1
    senders: int = 0
    check_seq: bool = False
    sample: int = 10
    """Receivers read at once and timed, besides the senders."""
    busy_poll: bool = False

    @property
    def token(self) -> str:
        return self.mark[1:5].decode("ascii")

    def door_of(self, index: int) -> str:
        if self.door == "mix":
            return LINE if index % 2 == 0 else WS
        return self.door

    def source_of(self, index: int) -> str | None:
        host = self.target_host(self.door_of(index))
        if self.sources <= 1 or not host.startswith("127."):
            return None
        return f"127.0.0.{1 + index % self.sources}"

    def target_host(self, door: str) -> str:
        address = self.target.address(door)
        if address is None:
            raise ValueError(f"no address given for the {door} door")
        return address[0]

    def specs(self, worker: int, room: Callable[[int], str]) -> list[Spec]:
        """
        The clients that worker C{worker} opens: every C{workers}-th one.
        The first C{senders} send; they and the next C{sample} are sampled.
        """
        return [
            Spec(
                index=i,
                door=self.door_of(i),
                nick=f"b{self.token}n{i}",
                room=room(i),
                source=self.source_of(i),
                sid=i if i < self.senders else None,
                sample=i < self.senders + self.sample,
            )
            for i in range(worker, self.clients, self.workers)
        ]


def parse_line_address(text: str) -> tuple[str, int]:
    """
    C{HOST:PORT} (or just C{PORT}, on 127.0.0.1).
    """
    host, _, port = text.rpartition(":")
    return (host or "127.0.0.1", int(port))


def parse_ws_address(text: str) -> tuple[str, int, str]:
    """
    C{ws://HOST:PORT/PATH} (the path defaults to C{/ws}).
    """
    if "://" not in text:
        text = "ws://" + text
    url = urlsplit(text)
    if url.scheme != "ws" or not url.hostname or not url.port:
        raise ValueError(f"{text!r} is not ws://HOST:PORT/PATH")
    return (url.hostname, url.port, url.path or "/ws")


def raise_open_files() -> int:
    """
    Raise this process's open-file limit to the hard limit; return it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Workers:
    """
    K worker processes (forked), each running C{body(loop_pipe, index)},
    and the parent's end of their pipes.
    """

    def __init__(self, count: int, body: Callable[[Connection, int], None]) -> None:
        context = multiprocessing.get_context("fork")
        self.pipes: list[Connection] = []
        self.processes = []
        for index in range(count):
            parent_end, child_end = context.Pipe()
            process = context.Process(target=_guarded, args=(body, child_end, index))
            process.start()
            child_end.close()
            self.pipes.append(parent_end)
            self.processes.append(process)

    def gather(self, kind: str, timeout: float) -> list[Any]:
        """
        One C{(kind, payload)} message from every worker; the payloads.
        """
        results: dict[int, Any] = {}
        deadline = time.monotonic() + timeout
        while len(results) < len(self.pipes):
            waiting = [p for n, p in enumerate(self.pipes) if n not in results]
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not wait(waiting, remaining):
                raise RuntimeError(f"workers did not report {kind!r} within {timeout:.0f}s")
            for ready in wait(waiting, 0):
                index = next(n for n, p in enumerate(self.pipes) if p is ready)
                pipe = self.pipes[index]
                try:
                    what, payload = pipe.recv()
                except EOFError:
                    raise RuntimeError(f"worker {index} died") from None
                if what == "crashed":
                    raise RuntimeError(f"worker {index} crashed:\n{payload}")
                if what != kind:
                    raise RuntimeError(f"worker {index} sent {what!r}, not {kind!r}")
                results[index] = payload
        return [results[n] for n in range(len(self.pipes))]

    def tell(self, message: Any) -> None:
        for pipe in self.pipes:
            try:
                pipe.send(message)
            except OSError:
                pass

    def finish(self, timeout: float = 10.0) -> None:
        """
        Wait for every worker to exit; kill (by pid) any that does not.
        """
        for process in self.processes:
            process.join(timeout)
            if process.is_alive():
                process.kill()
                process.join(timeout)
        for pipe in self.pipes:
            pipe.close()


def _guarded(body: Callable[[Connection, int], None], pipe: Connection, index: int) -> None:
    try:
        body(pipe, index)
    except BaseException:
        import traceback

        try:
            pipe.send(("crashed", traceback.format_exc()))
        except OSError:
            pass
        os._exit(1)


def proc_status(pid: int, field: str) -> int:
    """
    A C{kB} field (e.g. C{VmRSS}) of C{/proc/PID/status}, in KiB.
    """
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise ValueError(f"no {field} in /proc/{pid}/status")


def proc_cpu(pid: int) -> float:
    """
    The CPU time (user + system) process C{pid} has used, in seconds.
    """
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
