# -*- test-case-name: tests.test_telnet_clients -*-
"""
A program run on a pseudo-terminal, driven as a person at a terminal would
drive it: keys written to the pty's master side, everything the program
shows read back from it.

The program gets the pty as its controlling terminal, in a session of its
own, so that the terminal's line discipline does what it does for a person:
it echoes and edits lines in canonical mode, and turns Ctrl-C, Ctrl-Z and
Ctrl-\\ into SIGINT, SIGTSTP and SIGQUIT for the program (which a telnet
client traps and sends on as telnet commands).

A thread reads the master side all the time, so that the program never
blocks on a full terminal; every wait has a deadline (L{TIMEOUT} unless
told), and the program is killed by its pid when the test ends.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Sequence

from twisted.trial.unittest import SynchronousTestCase

from tests.support.processes import TIMEOUT

ENTER = b"\r"
CTRL_C = b"\x03"
CTRL_D = b"\x04"
CTRL_Z = b"\x1a"
CTRL_BACKSLASH = b"\x1c"
BACKSPACE = b"\x7f"
UP = b"\x1b[A"
LEFT = b"\x1b[D"
"""What a terminal (xterm) sends for each key."""

IUTF8 = getattr(termios, "IUTF8", 0o40000)
"""The line discipline's UTF-8 flag (Linux), which a UTF-8 terminal sets so
that Backspace erases a whole character: Python < 3.12 does not name it."""

_SET_CONTROLLING_TTY = (
    "import fcntl, os, signal, sys, termios\n"
    "fcntl.ioctl(0, termios.TIOCSCTTY, 0)\n"
    "signal.signal(signal.SIGPIPE, signal.SIG_DFL)\n"
    "signal.signal(signal.SIGXFSZ, signal.SIG_DFL)\n"
    "os.execvp(sys.argv[1], sys.argv[1:])\n"
)
"""C{python -c} code that makes its standard input (the pty, in the new
session C{start_new_session} made) its controlling terminal, then becomes
the program, as a shell would start it (the signals Python ignores back to
their defaults): the pid stays the same.  (Done in a process of its own
rather than in a C{preexec_fn}, which is unsafe in a process that has
threads, as this one does: a reader per terminal.)"""


class Terminal:
    """
    One program on a pty of its own.

    @ivar output: every byte the program has shown so far.
    @ivar cursor: where in L{screen} the next L{expect} starts looking.
    @ivar error: what made reading the pty fail, if anything but the
        program's exit did.
    """

    def __init__(
        self,
        case: SynchronousTestCase,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        rows: int = 24,
        columns: int = 80,
    ) -> None:
        self.argv = list(argv)
        self.output = b""
        self.cursor = 0
        self._changed = threading.Condition()
        self._eof = False
        self._stop = False
        self.error: OSError | None = None
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        attributes = termios.tcgetattr(slave)
        attributes[0] |= IUTF8
        termios.tcsetattr(slave, termios.TCSANOW, attributes)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _SET_CONTROLLING_TTY, *self.argv],
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=env,
                start_new_session=True,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self.master = master
        self.pid = self.process.pid
        self._reader = threading.Thread(
            target=self._read, name=f"pty reader of {self.argv[0]}", daemon=True
        )
        self._reader.start()
        case.addCleanup(self.close)

    # -- output ---------------------------------------------------------------

    def _read(self) -> None:
        """
        Move everything the program shows into L{output}, until the pty
        is closed on the program's side (it and its children exited) or
        L{close} is called.
        """
        while not self._stop:
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self.master, 65536)
            except BlockingIOError:
                continue
            except OSError as e:
                # EIO: no process holds the slave side any more.
                if e.errno != errno.EIO:
                    self.error = e
                data = b""
            with self._changed:
                if data:
                    self.output += data
                else:
                    self._eof = True
                self._changed.notify_all()
            if not data:
                return

    @property
    def screen(self) -> str:
        """
        What the program has shown, as text: L{output} decoded (bytes that
        are no UTF-8 shown as U+FFFD), without carriage returns, which
        terminals and telnet clients add to line ends in various numbers.
        """
        with self._changed:
            output = self.output
        return output.decode("utf-8", "replace").replace("\r", "")

    def _failure(self, why: str) -> AssertionError:
        return AssertionError(
            f"{why}\n{self.argv} (pid {self.pid}, exit status {self.process.poll()}, "
            f"read error {self.error})\n"
            f"--- screen after position {self.cursor} ---\n{self.screen[self.cursor :]!r}"
        )

    def expect(self, text: str, timeout: float = TIMEOUT) -> str:
        """
        Wait until C{text} is on the screen after L{cursor}, move the cursor
        past it, and return what the program showed up to its end.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                screen = self.screen
                found = screen.find(text, self.cursor)
                if found >= 0:
                    start, self.cursor = self.cursor, found + len(text)
                    return screen[start : self.cursor]
                remaining = deadline - time.monotonic()
                if self._eof:
                    raise self._failure(f"the program's terminal closed before {text!r}")
                if remaining <= 0:
                    raise self._failure(f"no {text!r} on the screen after {timeout}s")
                self._changed.wait(remaining)

    def wait(self, timeout: float = TIMEOUT) -> int:
        """
        Wait for the program to exit and return its status.
        """
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise self._failure(f"the program still runs after {timeout}s") from None

    # -- input ----------------------------------------------------------------

    def type(self, *keys: str | bytes) -> None:
        """
        Type C{keys}: text (sent as UTF-8) and key sequences such as
        L{ENTER} or L{CTRL_C}, in order, as one burst.
        """
        data = b"".join(key.encode("utf-8") if isinstance(key, str) else key for key in keys)
        deadline = time.monotonic() + TIMEOUT
        while data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._failure(f"the terminal took no more input for {TIMEOUT}s")
            select.select([], [self.master], [], remaining)
            try:
                data = data[os.write(self.master, data) :]
            except BlockingIOError:
                continue

    def hang_up(self) -> None:
        """
        Send the program SIGHUP (by its pid), as closing its terminal window
        would.
        """
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGHUP)

    # -- the end --------------------------------------------------------------

    def close(self) -> None:
        """
        Kill the program by its pid if it still runs, reap it, stop reading
        and close the pty.
        """
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.process.wait(TIMEOUT)
        self._stop = True
        self._reader.join(TIMEOUT)
        os.close(self.master)
