"""
A smoke run of the load tool (C{python -m chatd.bench}) against a real
C{twistd chatd} on loopback: a few clients for about a second on each door,
so that the tool keeps working as the server changes.  Nothing here is timed.
And its exit status: a run in which clients could not connect or sign on, or
that measured nothing, fails.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.support.processes import (
    CHECKOUT,
    LOCAL_TCP0,
    LOCALHOST,
    TwistdProcess,
    busy_port,
    checkout_env,
    scratch_dir,
)

RUN_TIMEOUT = 60.0


def run_bench(
    case: SynchronousTestCase, args: Sequence[str], server: TwistdProcess | None = None
) -> tuple[int, dict[str, Any], str]:
    """
    Run the tool with C{args} and C{--json}: its exit status, its JSON
    result and what it wrote on standard error.
    """
    command = [sys.executable, "-m", "chatd.bench", *args, "--json"]
    process = subprocess.Popen(
        command,
        cwd=CHECKOUT,
        env=checkout_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    case.addCleanup(_kill, process)
    try:
        out, err = process.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{command} still running after {RUN_TIMEOUT}s") from None
    try:
        result: dict[str, Any] = json.loads(out)
    except ValueError:
        server_log = "" if server is None else f"--- server ---\n{server.output()}"
        raise AssertionError(
            f"{command} printed no JSON (status {process.returncode}):\n{out}\n{err}\n" + server_log
        ) from None
    return process.returncode, result, err


def closed_port() -> int:
    """
    A loopback port that nothing listens on: one just bound and closed
    again (connecting to it is refused).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOCALHOST, 0))
        port: int = probe.getsockname()[1]
    return port


class BenchSmokeTests(SynchronousTestCase):
    """
    C{chatd-bench fanout} and C{idle}, a few clients each, on both doors.
    """

    def setUp(self) -> None:
        self.server = TwistdProcess(
            self,
            [
                "-n",
                "--pidfile=",
                "chatd",
                "--line",
                LOCAL_TCP0,
                "--web",
                LOCAL_TCP0,
                "--flood-rate",
                "0",
                "--max-per-ip",
                "0",
                "--connect-rate",
                "0",
            ],
            cwd=scratch_dir(self),
            env=checkout_env(),
        )
        self.doors = [
            "--line",
            f"{LOCALHOST}:{self.server.port('line')}",
            "--ws",
            f"ws://{LOCALHOST}:{self.server.port('web')}/ws",
        ]

    def bench(self, *args: str) -> dict[str, Any]:
        """
        Run the tool with C{args} and the server's doors; its JSON result,
        after checking that it exited with 0 and found no problem.
        """
        status, result, err = run_bench(self, [*args, *self.doors], self.server)
        self.assertEqual((status, result["problems"], err), (0, [], ""), result)
        return result

    def assert_clean_fanout(self, door: str) -> None:
        result = self.bench(
            "fanout",
            "--door",
            door,
            "--clients",
            "6",
            "--senders",
            "3",
            "--rooms",
            "2",
            "--workers",
            "2",
            "--warmup",
            "0.2",
            "--duration",
            "1",
            "--check",
            "seq",
        )
        self.assertEqual(result["connected"], 6, result)
        self.assertEqual(result["connect_errors"], 0, result)
        self.assertGreater(result["deliveries"], 0, result)
        self.assertGreater(result["messages"], 0, result)
        self.assertEqual(result["missing"], 0, result)
        self.assertEqual(result["duplicates"], 0, result)
        self.assertIsNotNone(result["latency_ms"]["p50"], result)
        self.assertEqual(len(result["tool_cpu"]["workers"]), 2, result)

    def test_fanout_line(self) -> None:
        """
        Line clients in two rooms: every message reaches every member of its
        room exactly once.
        """
        self.assert_clean_fanout("line")

    def test_fanout_websocket(self) -> None:
        """
        The same over the WebSocket door (masked frames, hello, join).
        """
        self.assert_clean_fanout("ws")

    def test_fanout_mixed(self) -> None:
        """
        Both doors in the same rooms.
        """
        self.assert_clean_fanout("mix")

    def test_idle(self) -> None:
        """
        Idle connections from several source addresses all get the probe,
        and the server's memory is reported when its pid is given.
        """
        result = self.bench(
            "idle",
            "--door",
            "mix",
            "--connections",
            "8",
            "--hold",
            "0.2",
            "--workers",
            "2",
            "--pid",
            str(self.server.pid),
        )
        self.assertEqual(result["signed_on"], 8, result)
        self.assertEqual(result["probe_received"], 8, result)
        self.assertIsNotNone(result["server_rss_kib_per_connection"], result)

    def test_nothing_measured(self) -> None:
        """
        A fan-out run without senders measures nothing: although every
        client connected, it exits with 1 and says why.
        """
        args = ["fanout", "--door", "mix", "--clients", "4", "--senders", "0"]
        args += ["--warmup", "0", "--duration", "0.2", *self.doors]
        status, result, err = run_bench(self, args, self.server)
        self.assertEqual((result["connected"], result["messages"]), (4, 0), result)
        self.assertEqual(status, 1, err)
        self.assertEqual(
            result["problems"], ["nothing was measured: no message made a round trip in 0.2 s"]
        )
        self.assertIn("chatd-bench: FAILED: nothing was measured", err)


class BenchFailureTests(SynchronousTestCase):
    """
    The tool fails, rather than report a result, when its clients cannot
    connect or sign on.  No server is started.
    """

    def test_closed_port(self) -> None:
        """
        Against a closed port, both scenarios exit with 1 at once, count
        the refused connections, and say on standard error that no client
        connected and that nothing was measured.
        """
        port = closed_port()
        doors = ["--line", f"{LOCALHOST}:{port}", "--ws", f"ws://{LOCALHOST}:{port}/ws"]
        for scenario, size in (("fanout", "--clients"), ("idle", "--connections")):
            args = [scenario, "--door", "mix", size, "10", "--workers", "2", *doors]
            status, result, err = run_bench(self, args)
            self.assertEqual(status, 1, (scenario, result, err))
            self.assertEqual(result["connect_errors"], 10, result)
            self.assertEqual(result["connect_error_kinds"], {"connect: ECONNREFUSED": 10}, result)
            self.assertEqual(len(result["problems"]), 2, result)
            self.assertRegex(result["problems"][0], r"^10 of 10 (clients|connections) did not")
            self.assertRegex(result["problems"][1], r"^nothing was measured")
            self.assertIn("chatd-bench: FAILED: 10 of 10", err)
            self.assertIn("chatd-bench: FAILED: nothing was measured", err)

    def test_no_sign_on(self) -> None:
        """
        Against a port that accepts connections but never answers, the
        clients that did not sign on within C{--setup-timeout} count as
        errors, and the run fails.
        """
        port = busy_port(self)
        args = ["idle", "--door", "line", "--connections", "3", "--setup-timeout", "0.5"]
        status, result, err = run_bench(self, [*args, "--line", f"{LOCALHOST}:{port}"])
        self.assertEqual(status, 1, (result, err))
        self.assertEqual((result["tcp_connected"], result["signed_on"]), (3, 0), result)
        self.assertEqual(
            result["connect_error_kinds"], {"not signed on within --setup-timeout": 3}, result
        )
        self.assertIn("chatd-bench: FAILED: 3 of 3 connections did not connect and sign on", err)


def _kill(process: subprocess.Popen[str]) -> None:
    """
    Kill the tool by its pid if it is still running (its workers exit when
    their pipes close), and reap it.
    """
    if process.poll() is None:
        process.kill()
        process.wait(RUN_TIMEOUT)
