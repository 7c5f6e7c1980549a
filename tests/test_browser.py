"""
End-to-end tests of the browser client: Debian's chromium, headless, driven
by Playwright against a real C{twistd chatd}, with telnet-style users on the
line door in the same rooms.

These tests never skip: without chromium or Playwright they fail and say
what to install.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.support.browser import ChatPage, ChatServer, expect, launch
from tests.support.processes import WebSocketClient

RECONNECT_MS = 20_000
"""How long a page may take to come back after a server restart: its first
attempt is spread over 5 s, and if the server is not up yet, its second over
10 s."""

# Where each of the four letters of the first "bidi" in a line's body is on
# screen, which element isolates it, and the body's text.
_BIDI_LAYOUT = """(body) => {
  const walker = document.createTreeWalker(body, NodeFilter.SHOW_TEXT);
  let node = walker.nextNode();
  while (node && !node.data.includes('bidi')) node = walker.nextNode();
  const at = node.data.indexOf('bidi');
  const left = (i) => {
    const range = document.createRange();
    range.setStart(node, at + i);
    range.setEnd(node, at + i + 1);
    return range.getBoundingClientRect().left;
  };
  const isolate = node.parentElement.closest('bdi');
  return {
    lefts: [0, 1, 2, 3].map(left),
    isolate: isolate && getComputedStyle(isolate).unicodeBidi,
    text: body.textContent,
  };
}"""


class ConversationTests(SynchronousTestCase):
    """
    Two browser users and a telnet user talk together.
    """

    def setUp(self) -> None:
        self.server = ChatServer(self)
        self.browser = launch(self)

    def test_two_rooms_private_messages_and_nick_change(self) -> None:
        """
        Two pages and a telnet client chat in #lobby and #python, send
        private messages browser to telnet, telnet to browser and browser to
        browser, see each other's nick change, topic and operators, and see
        moderation as system lines.
        """
        alice = ChatPage(self, self.browser, self.server)
        alice.sign_on("alice")
        bob = ChatPage(self, self.browser, self.server)
        bob.sign_on("bob")
        carol = self.server.line_client("carol")

        # The lobby, from both doors.
        alice.send("hi all")
        carol.read_until(b"[#lobby] <alice> hi all\r\n")
        carol.send_line("hello from telnet")
        for page in (alice, bob):
            page.expect_lines(["alice hi all", "carol hello from telnet"])

        # A second room: its first member is its operator; the topic bar.
        alice.join("#python")
        bob.join("#python")
        carol.send_line("/join #python")
        expect(alice.users()).to_have_text(["@alice (you)", "bob", "carol"])
        alice.send("/topic Twisted and friends")
        expect(bob.locator("#topic")).to_have_text("Twisted and friends")
        carol.send_line("in python")
        bob.send("/me waves")
        alice.expect_lines(["carol in python", "* bob waves"])
        carol.read_until(b"[#python] * bob waves\r\n")

        # What is said in a room not on screen is counted as unread.
        carol.send_line("/join #lobby")
        carol.send_line("back in the lobby")
        expect(alice.view_item("#lobby").locator(".badge")).to_have_text("1")
        alice.open("#lobby")
        expect(alice.line("carol back in the lobby")).to_have_count(1)
        expect(alice.view_item("#lobby").locator(".badge")).to_have_count(0)

        # Private messages: browser -> telnet -> browser, browser <-> browser.
        alice.send("/msg carol psst carol")
        alice.expect_view("@carol")
        carol.read_until(b"*alice* psst carol\r\n")
        carol.send_line("/msg alice hi alice")
        alice.expect_lines(["alice psst carol", "carol hi alice"])
        carol.send_line("/msg bob hello bob")
        expect(bob.view_item("@carol").locator(".badge")).to_have_text("1")
        bob.open("@carol")
        bob.expect_lines(["carol hello bob"])
        bob.send("hi carol")
        carol.read_until(b"*bob* hi carol\r\n")
        bob.send("/msg alice from bob")
        expect(alice.view_item("@bob")).to_have_count(1)
        alice.open("@bob")
        alice.send("from alice")
        bob.expect_view("@alice")
        bob.expect_lines(["bob from bob", "alice from alice"])

        # A nick change reaches every door and the user lists.
        bob.send("/nick robert")
        expect(bob.locator("#my-nick")).to_have_text("robert")
        carol.read_until(b"*** bob is now known as robert\r\n")
        alice.open("#python")
        expect(alice.sys_line("bob is now known as robert")).to_have_count(1)
        expect(alice.users()).to_have_text(["@alice (you)", "carol", "robert"])
        expect(alice.view_item("@robert")).to_have_count(1)

        # Moderation is shown to everyone as system lines.
        bob.open("#python")
        alice.send("/op robert")
        expect(bob.sys_line("alice made you an operator.")).to_have_count(1)
        expect(bob.users()).to_have_text(["@alice", "@robert (you)", "carol"])
        alice.send("/kick carol too loud")
        carol.read_until(b"too loud)\r\n")
        expect(bob.sys_line("carol was kicked by alice (too loud).")).to_have_count(1)
        expect(bob.users()).to_have_text(["@alice", "@robert (you)"])

        alice.check_clean(self)
        bob.check_clean(self)

    def test_markup_is_text(self) -> None:
        """
        Markup in a message is shown literally and never runs; http(s) links
        are clickable and open without a referrer or opener, and other
        schemes are left as text.
        """
        alice = ChatPage(self, self.browser, self.server)
        alice.sign_on("alice")
        carol = self.server.line_client("carol")
        attack = "<img src=x onerror=alert(1)> <b>bold</b> javascript:alert(2)"
        carol.send_line(attack)
        carol.send_line("see https://example.com/a?b=1&c=2.")
        alice.expect_lines([f"carol {attack}", "carol see https://example.com/a?b=1&c=2."])
        self.assertEqual(alice.locator("#messages img, #messages b").count(), 0)
        links = alice.locator("#messages a")
        expect(links).to_have_count(1)
        expect(links).to_have_attribute("href", "https://example.com/a?b=1&c=2")
        expect(links).to_have_attribute("rel", "noopener noreferrer")
        expect(links).to_have_text("https://example.com/a?b=1&c=2")
        alice.check_clean(self)

    def test_bidi_controls_are_shown_not_applied(self) -> None:
        """
        A right-to-left override in a message is shown as a visible tag and
        not applied: "bidi" reads left to right on screen, in a <bdi> that
        isolates it from the nick.  The same goes for a topic.
        """
        alice = ChatPage(self, self.browser, self.server)
        alice.sign_on("alice")
        mallory = WebSocketClient(self, self.server.web_port)
        mallory.sign_on("mallory")
        mallory.send_json({"type": "say", "room": "#lobby", "text": "see \u202ebidi.exe"})
        line = alice.line("mallory see U+202Ebidi.exe")
        expect(line).to_have_count(1)
        tag = line.locator(".ctl")
        expect(tag).to_have_text("U+202E")
        expect(tag).to_have_attribute("title", "RIGHT-TO-LEFT OVERRIDE (shown, not applied)")
        layout: dict[str, Any] = line.evaluate(_BIDI_LAYOUT)
        self.assertEqual(layout["isolate"], "isolate", layout)
        self.assertEqual(layout["lefts"], sorted(layout["lefts"]), layout)
        self.assertEqual(len(set(layout["lefts"])), 4, layout)
        self.assertNotIn("\u202e", layout["text"])

        mallory.send_json({"type": "join", "room": "#mirror"})
        mallory.send_json({"type": "topic", "room": "#mirror", "text": "\u202ebidi topic"})
        mallory.expect("topic", room="#mirror")
        alice.join("#mirror")
        topic = alice.locator("#topic")
        expect(topic).to_have_text("U+202Ebidi topic")
        expect(topic).to_have_attribute("title", "[U+202E]bidi topic — set by mallory")
        layout = topic.evaluate(_BIDI_LAYOUT)
        self.assertEqual(layout["isolate"], "isolate", layout)
        self.assertEqual(layout["lefts"], sorted(layout["lefts"]), layout)
        alice.check_clean(self)


class HistoryTests(SynchronousTestCase):
    """
    History: on joining, scrolling back, and after a reload.
    """

    def setUp(self) -> None:
        self.server = ChatServer(self, "--flood-rate", "0")
        self.browser = launch(self)

    def test_scroll_back_and_reload(self) -> None:
        """
        Signing on shows the newest 20 messages; scrolling up loads the rest
        until there is no more, each message once.  After a reload, the
        page signs on with the remembered nickname, rejoins its rooms and
        shows their history again.
        """
        carol = self.server.line_client("carol")
        said = [f"carol m{i}" for i in range(1, 46)]
        for text in said:
            carol.send_line(text.removeprefix("carol "))
        carol.read_until(b"<carol> m45\r\n")

        alice = ChatPage(self, self.browser, self.server, viewport={"width": 900, "height": 500})
        alice.sign_on("alice")
        alice.expect_lines(said[-20:])
        expect(alice.locator(".pane-top button")).to_have_text("Load older messages")
        alice.locator("#messages").hover()
        alice.page.mouse.wheel(0, -5000)
        alice.expect_lines(said)
        expect(alice.locator(".pane-top")).to_have_text("Beginning of history")

        alice.join("#python")
        carol.send_line("/join #python")
        carol.send_line("python one")
        alice.expect_lines(["carol python one"])

        alice.page.reload()
        expect(alice.locator("#nick-input")).to_have_value("alice")
        alice.page.press("#nick-input", "Enter")
        expect(alice.view_item("#python")).to_have_count(1)
        alice.open("#python")
        alice.expect_lines(["carol python one"])
        alice.open("#lobby")
        alice.expect_lines(said[-20:])
        alice.check_clean(self)

    def test_history_command_and_help(self) -> None:
        """
        /help says that /history loads 20 older messages by default, the
        server's page, and it does; /history N loads N.
        """
        carol = self.server.line_client("carol")
        said = [f"carol m{i}" for i in range(1, 46)]
        for text in said:
            carol.send_line(text.removeprefix("carol "))
        carol.read_until(b"<carol> m45\r\n")
        alice = ChatPage(self, self.browser, self.server, viewport={"width": 900, "height": 400})
        alice.sign_on("alice")
        alice.expect_lines(said[-20:])
        alice.send("/help")
        help_line = "/history [N] — load N older messages here (default 20, at most 200)"
        expect(alice.sys_line(help_line)).to_have_count(1)
        alice.send("/history")
        alice.expect_lines(said[-40:])
        alice.send("/history 3")
        alice.expect_lines(said[-43:])
        alice.check_clean(self)

    def test_private_conversations_survive_reload(self) -> None:
        """
        After a reload, the private conversations are back in the sidebar
        with what was said in them (although a guest's private history on
        the server starts anew), one still unread with its badge and one
        read without; a new message counts from there.
        """
        alice = ChatPage(self, self.browser, self.server)
        alice.sign_on("alice")
        carol = self.server.line_client("carol")
        dave = self.server.line_client("dave")
        dave.send_line("/msg alice did you read this?")
        expect(alice.view_item("@dave")).to_have_count(1)
        alice.open("@dave")
        alice.send("yes")
        dave.read_until(b"*alice* yes\r\n")
        alice.expect_lines(["dave did you read this?", "alice yes"])
        alice.open("#lobby")
        carol.send_line("/msg alice one")
        carol.send_line("/msg alice two")
        expect(alice.view_item("@carol").locator(".badge")).to_have_text("2")

        alice.page.reload()
        expect(alice.locator("#nick-input")).to_have_value("alice")
        alice.page.press("#nick-input", "Enter")
        expect(alice.locator("#conn-state")).to_have_text("online")
        expect(alice.view_item("@carol").locator(".badge")).to_have_text("2")
        expect(alice.view_item("@dave")).to_have_count(1)
        alice.open("@carol")
        alice.expect_lines(["carol one", "carol two"])
        expect(alice.view_item("@carol").locator(".badge")).to_have_count(0)
        expect(alice.view_item("@dave").locator(".badge")).to_have_count(0)
        alice.open("@dave")
        alice.expect_lines(["dave did you read this?", "alice yes"])
        carol.send_line("/msg alice three")
        expect(alice.view_item("@carol").locator(".badge")).to_have_text("1")
        alice.open("@carol")
        alice.expect_lines(["carol one", "carol two", "carol three"])
        alice.check_clean(self)

    def test_account_sign_on(self) -> None:
        """
        A registered nickname asks for its password; a wrong one is
        refused, the right one signs on, taking over the older session
        (which then stays off rather than take the nickname back), and the
        account's private history is there when the conversation is opened.
        """
        alice = ChatPage(self, self.browser, self.server)
        alice.sign_on("alice")
        alice.send("/register hunter22")
        expect(alice.sys_line("is now registered")).to_have_count(1)
        expect(alice.locator("#my-account")).to_be_visible()
        carol = self.server.line_client("carol")
        carol.send_line("/msg alice a secret note")
        expect(alice.view_item("@carol")).to_have_count(1)

        again = ChatPage(self, self.browser, self.server)
        again.submit_login("alice")
        expect(again.locator("#login-error")).to_contain_text("alice is registered")
        expect(again.locator("#password-input")).to_be_focused()
        again.submit_login("alice", "wrong-one")
        expect(again.locator("#login-error")).to_have_text("Wrong password for alice.")
        again.sign_on("alice", "hunter22")
        expect(again.locator("#my-account")).to_be_visible()
        expect(alice.locator("#conn-banner-text")).to_contain_text("Not reconnecting")

        again.send("/query carol")
        again.expect_lines(["carol a secret note"])
        again.send("still here")
        carol.read_until(b"*alice* still here\r\n")
        expect(alice.locator("#conn-state")).to_have_text("offline")
        expect(again.locator("#conn-state")).to_have_text("online")
        alice.check_clean(self)
        again.check_clean(self)


class ReconnectTests(SynchronousTestCase):
    """
    The client survives a server restart.
    """

    def setUp(self) -> None:
        self.server = ChatServer(self, "--flood-rate", "0")
        self.browser = launch(self)

    def test_server_restart(self) -> None:
        """
        When the server restarts, both pages reconnect by themselves, sign
        on again (with the password, for an account), rejoin their rooms,
        and show what was said while they were away exactly once, in order:
        one page catches up from history pages, the other live.
        """
        alice = ChatPage(self, self.browser, self.server)
        alice.sign_on("alice")
        alice.send("/register hunter22")
        expect(alice.sys_line("is now registered")).to_have_count(1)
        bob = ChatPage(self, self.browser, self.server)
        bob.sign_on("bob")
        carol = self.server.line_client("carol")
        for page in (alice, bob):
            page.join("#python")
        carol.send_line("/join #python")
        carol.send_line("before the restart")
        for page in (alice, bob):
            page.expect_lines(["carol before the restart"])

        # alice's network goes away while the server restarts.
        alice.context.set_offline(True)
        self.server.restart()
        expect(bob.locator("#conn-state")).to_have_text("online", timeout=RECONNECT_MS)
        expect(bob.sys_line("You joined #python.")).to_have_count(2)
        carol = self.server.line_client("carol")
        carol.send_line("/join #python")
        missed = [f"missed {i}" for i in range(1, 26)]
        for text in missed:
            carol.send_line(text)
        carol.read_until(b"<carol> missed 25\r\n")

        expected = ["carol before the restart"] + [f"carol {m}" for m in missed]
        bob.expect_lines(expected)
        alice.context.set_offline(False)
        expect(alice.locator("#conn-state")).to_have_text("online")
        expect(alice.locator("#my-account")).to_be_visible()
        alice.expect_lines(expected)
        alice.send("back again")
        bob.expect_lines([*expected, "alice back again"])
        alice.check_clean(self)
        bob.check_clean(self)

    def test_restart_forgets_topic(self) -> None:
        """
        A guest's room and its topic do not outlive a server restart: once
        the page has reconnected and rejoined, no topic is shown, although
        no topic frame said so.
        """
        alice = ChatPage(self, self.browser, self.server)
        alice.sign_on("alice")
        alice.join("#python")
        alice.send("/topic Old news")
        expect(alice.locator("#topic")).to_have_text("Old news")
        self.server.restart()
        expect(alice.sys_line("You joined #python.")).to_have_count(2, timeout=RECONNECT_MS)
        expect(alice.locator("#conn-state")).to_have_text("online")
        alice.expect_view("#python")
        expect(alice.locator("#topic")).to_have_text("No topic set")
        expect(alice.locator("#topic")).to_have_attribute("title", "")
        alice.send("/topic")
        expect(alice.sys_line("No topic is set.")).to_have_count(1)
        alice.check_clean(self)


class BigRoomTests(SynchronousTestCase):
    """
    A room above C{--big-room} members: counts instead of joins and parts,
    and its member list in pages.
    """

    def setUp(self) -> None:
        # Over a hundred line users and a page, all from one address.
        self.server = ChatServer(
            self, "--big-room", "3", "--max-per-ip", "0", "--connect-rate", "0"
        )
        self.browser = launch(self)

    def test_counts_and_pages(self) -> None:
        """
        Joining a big room shows its member count and the first page of its
        members; who joins and leaves later changes the count and the list,
        without a line each in the log; the list's other pages are fetched
        only with "Show more".
        """
        peers = [self.server.line_client(f"peer{i:03}") for i in range(100)]
        peers[-1].read_until(b"(100 users)")  # all their joins told
        alice = ChatPage(self, self.browser, self.server)
        alice.sign_on("alice")
        count = alice.locator("#user-count")
        more = alice.locator("#users-more")
        expect(count).to_have_text("— 101")
        # The first page, then alice's own join, told by name.
        expect(alice.users().first).to_have_text("peer000")
        expect(alice.users().filter(has_text="alice (you)")).to_have_count(1)
        expect(alice.users()).to_have_count(101)
        expect(more).to_be_hidden()

        late = [self.server.line_client(f"late{i}") for i in range(3)]
        expect(count).to_have_text("— 104")
        expect(alice.users()).to_have_count(104)
        late[0].close()
        expect(count).to_have_text("— 103")
        expect(alice.users().filter(has_text="late0")).to_have_count(0)
        expect(alice.users()).to_have_count(103)
        expect(alice.sys_line("joined")).to_have_text(["You joined #lobby."])
        expect(alice.sys_line("left")).to_have_count(0)

        # /who lists the first page again; page 2 holds alice, late1, late2.
        alice.send("/who")
        expect(alice.sys_line("Users in #lobby (100 of 103): peer000, ")).to_have_count(1)
        expect(alice.users()).to_have_count(100)
        expect(more).to_have_text("Show more")
        more.click()
        expect(alice.users()).to_have_count(103)
        expect(alice.users().filter(has_text="alice (you)")).to_have_count(1)
        expect(more).to_be_hidden()

        # A crowd, told by count alone when more than 20 come in a second.
        for i in range(25):
            self.server.line_client(f"crowd{i:02}")
        expect(count).to_have_text("— 128")
        expect(alice.sys_line("joined")).to_have_count(1)
        alice.check_clean(self)


class SmallScreenTests(SynchronousTestCase):
    """
    The client on a phone-sized screen, used with the keyboard alone.
    """

    def setUp(self) -> None:
        self.server = ChatServer(self)
        self.browser = launch(self)

    def test_phone_and_keyboard(self) -> None:
        """
        On a 375x667 screen nothing overflows sideways; signing on, joining,
        talking, opening the conversations drawer and switching
        conversations all work from the keyboard.
        """
        phone = ChatPage(
            self,
            self.browser,
            self.server,
            viewport={"width": 375, "height": 667},
            is_mobile=True,
            has_touch=True,
        )
        page = phone.page
        expect(phone.locator("#nick-input")).to_be_focused()
        page.keyboard.type("dana")
        page.keyboard.press("Enter")
        expect(phone.locator("#my-nick")).to_have_text("dana")
        expect(phone.locator("#input")).to_be_focused()
        page.keyboard.type("/join #tiny")
        page.keyboard.press("Enter")
        phone.expect_view("#tiny")
        page.keyboard.type("hello from a phone")
        page.keyboard.press("Enter")
        phone.expect_lines(["dana hello from a phone"])
        self.assertLessEqual(page.evaluate("document.documentElement.scrollWidth"), 375)
        expect(phone.locator("#sidebar")).not_to_be_in_viewport()

        page.keyboard.press("Alt+ArrowUp")
        phone.expect_view("#lobby")
        phone.locator("#toggle-sidebar").focus()
        page.keyboard.press("Enter")
        expect(phone.locator("#sidebar")).to_be_in_viewport()
        page.keyboard.press("Escape")
        expect(phone.locator("#sidebar")).not_to_be_in_viewport()
        expect(phone.locator("#input")).to_be_focused()
        phone.check_clean(self)
