# -*- test-case-name: tests.test_persistence -*-
"""
What survives a restart, proven on real C{twistd chatd} processes sharing
one SQLite file: everything after a clean stop (SIGTERM), everything but at
most the last commit window after C{kill -9}; and a database chatd cannot
use stops it with a message instead of being started over.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatd.store.sqlite import SQLiteStore
from tests.support.processes import (
    LOCAL_TCP0,
    TWISTD,
    LineClient,
    TwistdProcess,
    WebSocketClient,
    checkout_env,
    http_get,
    scratch_dir,
    terminated_by_sigterm,
)

PASSWORD = "s3cret-pw"


class RestartTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.home = scratch_dir(self)
        self.db = self.home / "state.sqlite"

    def start(self, *args: str) -> TwistdProcess:
        return TwistdProcess(
            self,
            [
                "-n",
                "--pidfile=",
                "chatd",
                "--line",
                LOCAL_TCP0,
                "--web",
                LOCAL_TCP0,
                "--irc",
                "none",
                "--db",
                str(self.db),
                "--flood-rate",
                "0",
                *args,
            ],
            cwd=self.home,
            env=checkout_env(),
        )

    def say_many(self, server: TwistdProcess, texts: list[str]) -> None:
        """
        Register alice, open #den, and say C{texts} there in one burst;
        return once the server has echoed the last one.
        """
        alice = LineClient(self, server.port("line"))
        alice.sign_on("alice")
        alice.send_line(f"/register {PASSWORD}")
        alice.read_until(b"you are identified\r\n")
        alice.send_line("/join #den")
        alice.send_line("/topic Den rules")
        alice.send_line("/mode +t")
        alice.send_line("/msg alice note to self")
        alice.sock.sendall(b"".join(t.encode() + b"\r\n" for t in texts))
        alice.read_until(f"[#den] <alice> {texts[-1]}\r\n".encode())

    def stored(self, server: TwistdProcess, room: str = "#den") -> list[dict[str, object]]:
        """
        Every message of C{room}, read back through the WebSocket door by an
        identified alice.
        """
        client = WebSocketClient(self, server.port("web"))
        client.send_json({"type": "hello", "nick": "alice", "password": PASSWORD})
        client.expect("welcome", account="alice")
        client.send_json({"type": "join", "room": room})
        client.expect("users", room=room)
        client.expect("history", room=room)  # the newest few, shown on joining
        messages: list[dict[str, object]] = []
        before = None
        while True:
            request: dict[str, object] = {"type": "history", "room": room, "limit": 200}
            if before is not None:
                request["before"] = before
            client.send_json(request)
            page = client.expect("history", room=room)
            messages[:0] = page["messages"]
            if not page["more"]:
                return messages
            before = page["messages"][0]["id"]

    def test_clean_stop_keeps_everything(self) -> None:
        """
        After SIGTERM straight after the last message, a new server on the
        same file has every message, the account, the room's topic and
        modes, and issues higher message ids.
        """
        texts = [f"message {n}" for n in range(500)]
        server = self.start()
        self.say_many(server, texts)
        self.assertTrue(terminated_by_sigterm(server.terminate()))

        server = self.start()
        self.assertEqual(http_get(server.port("web"), "/readyz")[::2], (200, b"ready\n"))
        self.assertEqual(http_get(server.port("web"), "/healthz")[::2], (200, b"ok\n"))
        guest = LineClient(self, server.port("line"))
        guest.read_until(b"nickname:\r\n")
        guest.send_line("alice")
        guest.read_until(b"!!! The nickname alice is registered")
        guest.send_line("bob")
        guest.read_until(b"*** Welcome, bob!")
        guest.send_line("/join #den")
        guest.read_until(b"*** Topic for #den: Den rules (set by alice)\r\n")
        guest.read_until(b"[#den] <alice> message 499\r\n")
        guest.send_line("/topic mine now")
        guest.read_until(b"!!! You are not an operator of #den\r\n")

        messages = self.stored(server)
        self.assertEqual([m["text"] for m in messages], texts)
        ids = [m["id"] for m in messages]
        self.assertEqual(ids, sorted(set(ids)))
        guest.send_line("after the restart")
        guest.read_until(b"[#den] <bob> after the restart\r\n")
        client = WebSocketClient(self, server.port("web"))
        client.sign_on("carol")
        client.send_json({"type": "join", "room": "#den"})
        client.send_json({"type": "history", "room": "#den", "limit": 1})
        client.expect("history", room="#den")
        (newest,) = client.expect("history", room="#den")["messages"]
        self.assertEqual(newest["text"], "after the restart")
        self.assertGreater(newest["id"], ids[-1])
        self.assertTrue(terminated_by_sigterm(server.terminate()))

    def test_kill_9_loses_at_most_the_last_window(self) -> None:
        """
        Messages accepted more than a commit window before C{kill -9} are
        all there after a restart.
        """
        texts = [f"message {n}" for n in range(300)]
        server = self.start("--commit-window", "0.05")
        self.say_many(server, texts)
        time.sleep(0.5)
        server.kill()

        server = self.start()
        self.assertEqual([m["text"] for m in self.stored(server)], texts)
        self.assertTrue(terminated_by_sigterm(server.terminate()))


class RefusalTests(SynchronousTestCase):
    def refused(self, db: Path) -> str:
        """
        Run chatd on C{db}; it must exit with an error; return its output.
        """
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                TWISTD,
                "-n",
                "--pidfile=",
                "chatd",
                "--db",
                str(db),
                "--line",
                LOCAL_TCP0,
                "--web",
                "none",
                "--irc",
                "none",
            ],
            cwd=db.parent,
            env=checkout_env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
        self.assertNotEqual(result.returncode, 0, result.stdout + result.stderr)
        return result.stdout + result.stderr

    def test_not_a_database(self) -> None:
        db = scratch_dir(self) / "chatd.sqlite"
        db.write_bytes(b"these are my notes, not a database\n" * 200)
        output = self.refused(db)
        self.assertIn(str(db), output)
        self.assertNotIn("Traceback", output)
        self.assertEqual(db.read_bytes(), b"these are my notes, not a database\n" * 200)

    def test_newer_schema(self) -> None:
        db = scratch_dir(self) / "chatd.sqlite"
        SQLiteStore(str(db), Clock()).load()
        with sqlite3.connect(db) as connection:
            (known,) = connection.execute("PRAGMA user_version").fetchone()
            connection.execute("PRAGMA user_version = 999")
        output = self.refused(db)
        self.assertIn(f"schema 999, this one knows {known}", output)
        self.assertIn("newer", output)
        self.assertNotIn("Traceback", output)
