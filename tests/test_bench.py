"""
A smoke run of the load tool (C{python -m chatd.bench}) against a real
C{twistd chatd} on loopback: a few clients for about a second on each door,
so that the tool keeps working as the server changes.  Nothing here is timed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.processes import (
    CHECKOUT,
    LOCAL_TCP0,
    LOCALHOST,
    TwistdProcess,
    checkout_env,
    scratch_dir,
)

RUN_TIMEOUT = 60.0


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
        Run the tool with C{args} and the server's doors; its JSON result.
        """
        command = [sys.executable, "-m", "chatd.bench", *args, *self.doors, "--json"]
        process = subprocess.Popen(
            command,
            cwd=CHECKOUT,
            env=checkout_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.addCleanup(_kill, process)
        try:
            out, err = process.communicate(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{command} still running after {RUN_TIMEOUT}s") from None
        try:
            result: dict[str, Any] = json.loads(out)
        except ValueError:
            raise AssertionError(
                f"{command} printed no JSON (status {process.returncode}):\n{out}\n{err}\n"
                f"--- server ---\n{self.server.output()}"
            ) from None
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


def _kill(process: subprocess.Popen[str]) -> None:
    """
    Kill the tool by its pid if it is still running (its workers exit when
    their pipes close), and reap it.
    """
    if process.poll() is None:
        process.kill()
        process.wait(RUN_TIMEOUT)
