# -*- test-case-name: tests.test_browser -*-
"""
Blocking helpers for the end-to-end tests of the browser client: Debian's
C{chromium} driven headless by Playwright's sync API, talking to a real
C{twistd chatd} started with L{tests.support.processes}.

Playwright's sync API runs its own event loop, so it is only used from
L{SynchronousTestCase}s, never while a Twisted reactor runs.  Every wait
is one of Playwright's auto-waiting assertions with a deadline of
L{WAIT_MS}; nothing here sleeps for a fixed time.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.support.processes import (
    LOCAL_TCP0,
    LOCALHOST,
    LineClient,
    TwistdProcess,
    checkout_env,
    scratch_dir,
)

try:
    from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
except ImportError as e:  # pragma: no cover - reported by every browser test
    PLAYWRIGHT_MISSING: ImportError | None = e
else:
    PLAYWRIGHT_MISSING = None

CHROMIUM = Path("/usr/bin/chromium")
"""Debian's chromium (C{apt-get install chromium}), which the tests drive."""

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

WAIT_MS = 10_000
"""How long any single wait in the browser may take, in milliseconds."""


def require_browser(case: SynchronousTestCase) -> None:
    """
    Fail C{case} with instructions if Playwright or chromium is missing:
    these tests never skip.
    """
    if PLAYWRIGHT_MISSING is not None:
        case.fail(
            f"Playwright for Python is missing ({PLAYWRIGHT_MISSING}): "
            "pip install '.[test]' installs it"
        )
    if not CHROMIUM.exists():
        case.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
            "(apt-get install --no-install-recommends chromium)"
        )


class ChatServer:
    """
    A C{twistd chatd} with both doors on loopback and a SQLite file that
    outlives restarts on the same ports.
    """

    def __init__(self, case: SynchronousTestCase, *extra: str) -> None:
        self.case = case
        self.extra = list(extra)
        self.db = scratch_dir(case) / "chatd.sqlite"
        self.process = self._start(LOCAL_TCP0, LOCAL_TCP0)
        self._ports: tuple[int, int] | None = None

    @property
    def line_port(self) -> int:
        return self._listening()[0]

    @property
    def web_port(self) -> int:
        return self._listening()[1]

    def _listening(self) -> tuple[int, int]:
        """
        The ports of both doors, waiting for the first server to log them
        (so that the browser can start meanwhile).
        """
        if self._ports is None:
            self._ports = (self.process.port("line"), self.process.port("web"))
        return self._ports

    def _start(self, line: str, web: str) -> TwistdProcess:
        args = ["-n", "--pidfile=", "chatd", "--line", line, "--web", web, "--irc", "none"]
        args += ["--db", str(self.db)]
        return TwistdProcess(
            self.case, [*args, *self.extra], cwd=scratch_dir(self.case), env=checkout_env()
        )

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.web_port}/"

    def line_client(self, nick: str) -> LineClient:
        """
        A telnet-style client signed on as C{nick}.
        """
        client = LineClient(self.case, self.line_port)
        client.sign_on(nick)
        return client

    def restart(self) -> None:
        """
        Stop the server with SIGTERM, as a service manager would, and start
        a new one on the same ports with the same database.
        """
        line, web = self._listening()
        self.process.terminate()
        here = f"interface={LOCALHOST}"
        self.process = self._start(f"tcp:{line}:{here}", f"tcp:{web}:{here}")
        self.process.port("line")
        self.process.port("web")


def launch(case: SynchronousTestCase) -> Browser:
    """
    Start headless chromium, closed (with Playwright) after C{case}.

    Playwright gives every launch a new temporary profile (user data
    directory) and removes it on close.
    """
    require_browser(case)
    playwright = sync_playwright().start()
    case.addCleanup(playwright.stop)
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    case.addCleanup(browser.close)
    expect.set_options(timeout=WAIT_MS)
    return browser


class ChatPage:
    """
    One user of the browser client, in a browser context of its own.

    Every JavaScript error on the page and every dialog (C{alert}) it opens
    is recorded; L{check_clean} fails the test if there were any.
    """

    def __init__(
        self, case: SynchronousTestCase, browser: Browser, server: ChatServer, **context: Any
    ) -> None:
        self.context = browser.new_context(**context)
        case.addCleanup(self.context.close)
        self.context.set_default_timeout(WAIT_MS)
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("dialog", self._dialog)
        self.server = server
        self.page.goto(server.url)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def check_clean(self, case: SynchronousTestCase) -> None:
        """
        No script errors and no dialogs so far.
        """
        case.assertEqual((self.errors, self.dialogs), ([], []))

    # -- locators -----------------------------------------------------------

    def locator(self, selector: str) -> Locator:
        return self.page.locator(selector)

    @property
    def lines(self) -> Locator:
        """
        The bodies of the chat messages of the conversation on screen.
        """
        return self.page.locator("#messages .line.msg .body, #messages .line.action .body")

    def line(self, text: str) -> Locator:
        """
        The message lines of the conversation on screen reading exactly
        C{text} (e.g. C{"bob hi"}).
        """
        return self.lines.filter(has_text=re.compile("^" + re.escape(text) + "$"))

    def sys_line(self, text: str) -> Locator:
        """
        System lines of the conversation on screen containing C{text}.
        """
        return self.page.locator("#messages .line.sys .body", has_text=text)

    def view_item(self, label: str) -> Locator:
        """
        The sidebar entry of the conversation C{label} (C{#room}, C{@nick}).
        """
        return self.page.locator(".view-item").filter(
            has=self.page.locator(".name", has_text=re.compile("^" + re.escape(label) + "$"))
        )

    # -- actions ------------------------------------------------------------

    def sign_on(self, nick: str, password: str | None = None) -> None:
        """
        Fill in the login form and wait until the chat is shown.
        """
        self.submit_login(nick, password)
        expect(self.page.locator("#my-nick")).to_have_text(nick)
        expect(self.page.locator("#conn-state")).to_have_text("online")

    def submit_login(self, nick: str, password: str | None = None) -> None:
        self.page.fill("#nick-input", nick)
        self.page.fill("#password-input", password or "")
        self.page.press("#nick-input", "Enter")

    def send(self, text: str) -> None:
        """
        Type C{text} into the input and press Enter.
        """
        self.page.fill("#input", text)
        self.page.press("#input", "Enter")
        expect(self.page.locator("#input")).to_have_value("")

    def join(self, room: str) -> None:
        """
        Join C{room} with C{/join} and wait until it is on screen.
        """
        self.send(f"/join {room}")
        self.expect_view(room)

    def open(self, label: str) -> None:
        """
        Switch to the conversation C{label} by clicking it in the sidebar.
        """
        self.view_item(label).locator(".view-btn").click()
        self.expect_view(label)

    def expect_view(self, label: str) -> None:
        expect(self.page.locator("#view-title")).to_have_text(label)

    def expect_lines(self, texts: list[str]) -> None:
        """
        The conversation on screen shows exactly these messages, in order.
        """
        expect(self.lines).to_have_text(texts)

    def users(self) -> Locator:
        return self.page.locator("#user-list li")
