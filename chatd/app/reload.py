# -*- test-case-name: tests.test_reload -*-
"""
C{kill -HUP}: reread the TLS certificates and the message of the day
without a restart.

On SIGHUP, L{Reloader} rereads the certificate and key files of every
C{ssl:} listener (the doors, and C{--admin} and C{--metrics} if they are
C{ssl:}) and the C{--motd} file.  The files are read and checked in the
reactor's thread pool; what they hold is swapped in on the reactor thread.
New TLS handshakes then use the new certificate; connections already open
keep theirs, and nothing else restarts.  A file that is missing,
unreadable or wrong (not PEM, or a key that does not match its
certificate) changes nothing: the old certificate or message stays, and
one line in the log says why.

How the certificate is swapped, with Twisted's public interfaces only: an
C{ssl:} description is parsed by C{serverFromString} with a stand-in
reactor (L{_Catch}), whose C{listenSSL} notes what the resulting
L{SSL4ServerEndpoint} would listen with -- port, backlog, interface and
the C{CertificateOptions} read from the files -- instead of listening.
chatd then listens with an C{SSL4ServerEndpoint} of its own, given a
L{ReloadableTLS}: TLS asks that object for every new connection, and it
passes the question on to the current C{CertificateOptions}, which a
reload replaces.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from OpenSSL import SSL, crypto
from twisted.application import strports
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.endpoints import SSL4ServerEndpoint, serverFromString
from twisted.internet.error import VerifyError
from twisted.internet.interfaces import (
    IListeningPort,
    IOpenSSLContextFactory,
    IOpenSSLServerConnectionCreator,
    IProtocolFactory,
    IReactorThreads,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from chatd.console import reload_motd
from chatd.hub import Hub

Read = Callable[..., Deferred[Any]]
"""
How blocking work is run off the reactor thread: C{read(function, *args)}
calls C{function(*args)} in a thread and fires with its result.
"""


# -- TLS listeners ---------------------------------------------------------


@dataclass(frozen=True)
class SSLSettings:
    """
    What an C{ssl:} endpoint listens with.

    @ivar options: the TLS settings, with the certificate and key read from
        their files (a C{CertificateOptions}).
    """

    port: int
    options: Any
    backlog: int
    interface: str


class _Catch:
    """
    A reactor only as far as an C{ssl:} endpoint sees one when it listens:
    C{listenSSL} notes its arguments instead of listening (and so returns
    no port: it is no L{IReactorSSL}).
    """

    caught: SSLSettings | None = None

    def listenSSL(
        self,
        port: int,
        factory: Any,
        contextFactory: Any,
        backlog: int = 50,
        interface: str = "",
    ) -> None:
        self.caught = SSLSettings(port, contextFactory, backlog, interface)


def read_ssl(description: str) -> SSLSettings | None:
    """
    What the C{ssl:} endpoint C{description} listens with, its certificate
    and key read from their files and checked; C{None} if C{description}
    is not an C{ssl:} endpoint.  Blocking: call it before the reactor runs,
    or in a thread.

    @raise Exception: whatever reading or checking the files raises
        (L{OSError}, C{OpenSSL} errors, L{VerifyError}...; see L{tls_error}).
    """
    catch = _Catch()
    endpoint = serverFromString(catch, description)  # reads the files
    if not isinstance(endpoint, SSL4ServerEndpoint):
        return None
    endpoint.listen(Factory())  # calls catch.listenSSL, at once
    settings = catch.caught
    if settings is None or not IOpenSSLContextFactory.providedBy(settings.options):
        raise RuntimeError(
            f"Twisted's ssl: endpoint no longer listens with listenSSL and a context "
            f"factory (got {settings!r}); chatd cannot reload its certificate"
        )
    # Makes the OpenSSL context now, in this thread, rather than for the
    # first handshake on the reactor thread; and checks what only OpenSSL
    # checks.
    settings.options.getContext()
    return settings


@implementer(IOpenSSLServerConnectionCreator, IOpenSSLContextFactory)
class ReloadableTLS:
    """
    The TLS settings of a listening port, which can be replaced while it
    listens: Twisted asks this object for every new TLS connection, and it
    answers with its current L{options}.  Connections already open keep
    what they were made with.

    @ivar options: the current settings, a C{CertificateOptions}.
    """

    def __init__(self, options: Any) -> None:
        self.options = options

    def serverConnectionForTLS(self, protocol: Any) -> SSL.Connection:
        """
        A new server-side TLS connection: what Twisted asks for each one.
        """
        creator = IOpenSSLServerConnectionCreator(self.options, None)
        if creator is None:
            # CertificateOptions of Twisted 24 is only a context factory
            # (that of 26 makes connections, ALPN and all); this is what
            # Twisted 24 itself then does with one (and adds ALPN).
            return SSL.Connection(self.options.getContext(), None)
        connection: SSL.Connection = creator.serverConnectionForTLS(protocol)
        return connection

    def getContext(self) -> SSL.Context:
        """
        The current OpenSSL context (what L{IReactorSSL.listenSSL} takes).
        """
        context: SSL.Context = self.options.getContext()
        return context


@implementer(IStreamServerEndpoint)
class TLSEndpoint:
    """
    An C{ssl:} endpoint whose certificate and key L{Reloader} can reread
    while it listens.

    @ivar description: the C{ssl:} endpoint description, reread on reload.
    @ivar name: the option it was given with (C{line}, C{web}...), for the log.
    @ivar tls: what its TLS connections are made with.
    """

    def __init__(self, reactor: Any, description: str, name: str, settings: SSLSettings) -> None:
        self.reactor = reactor
        self.description = description
        self.name = name
        self.settings = settings
        self.tls = ReloadableTLS(settings.options)

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        endpoint = SSL4ServerEndpoint(
            self.reactor,
            self.settings.port,
            self.tls,
            backlog=self.settings.backlog,
            interface=self.settings.interface,
        )
        listening: Deferred[IListeningPort] = endpoint.listen(protocolFactory)
        return listening


LISTEN_BACKLOG = 4096
"""Connections the kernel queues for a door until chatd accepts them."""


def with_backlog(description: str) -> str:
    """
    C{description} listening with a backlog of L{LISTEN_BACKLOG} unless it
    names one.  Twisted's default of 50 overflows when thousands of clients
    reconnect at once after a restart: the kernel then drops their
    handshakes' last packet, and since chatd speaks first, each waits for
    the server's SYN-ACK to be sent again, 1, 3, 7... seconds later.  (The
    kernel caps it at C{net.core.somaxconn}.)
    """
    kind = description.partition(":")[0]
    if kind in ("tcp", "tcp6", "ssl", "unix") and "backlog=" not in description:
        return f"{description}:backlog={LISTEN_BACKLOG}"
    return description


def listener(
    description: str, factory: IProtocolFactory, reactor: Any, name: str
) -> StreamServerEndpointService:
    """
    The service that listens on C{description} for C{factory}, as
    C{strports.service} makes it, except that it listens with a backlog of
    L{LISTEN_BACKLOG} unless told otherwise, and an C{ssl:} endpoint
    becomes a L{TLSEndpoint}, whose certificate a SIGHUP rereads.

    @param name: the option C{description} was given with, for the log.
    """
    service = strports.service(with_backlog(description), factory, reactor=reactor)
    if isinstance(service.endpoint, SSL4ServerEndpoint):
        settings = read_ssl(with_backlog(description))
        assert settings is not None
        service.endpoint = TLSEndpoint(reactor, description, name, settings)
    return service


def tls_error(error: BaseException) -> str:
    """
    Why reading an C{ssl:} endpoint's files failed, in words, for the log.
    """
    if isinstance(error, OSError) and error.filename is not None:
        return f"cannot read {error.filename}: {error.strerror}"
    if isinstance(error, VerifyError):
        return str(error).rstrip(".")
    if isinstance(error, (crypto.Error, SSL.Error)):
        return f"not a valid PEM certificate and key ({_openssl_reasons(error)})"
    return f"{type(error).__name__}: {error}"


def _openssl_reasons(error: Exception) -> str:
    """
    C{PEM routines: no start line} of an OpenSSL error whose first argument
    is OpenSSL's list of C{(library, function, reason)}.
    """
    details = error.args[0] if error.args else None
    if not isinstance(details, list) or not details:
        return str(error)
    reasons = []
    for detail in details:
        if isinstance(detail, tuple) and len(detail) == 3:
            library, _, reason = detail
            reasons.append(f"{library}: {reason}" if library else str(reason))
        else:
            reasons.append(str(detail))
    return "; ".join(reasons)


def describe_certificate(options: Any) -> str:
    """
    Whom C{options}' certificate is for and until when, for the log.
    """
    certificate = getattr(options, "certificate", None)
    if not isinstance(certificate, crypto.X509):
        return "(certificate not shown)"
    subject = certificate.to_cryptography().subject.rfc4514_string()
    until = certificate.get_notAfter()
    if until is None:
        return subject
    expiry = datetime.strptime(until.decode("ascii"), "%Y%m%d%H%M%SZ")
    return f"{subject}, valid until {expiry.replace(tzinfo=timezone.utc):%Y-%m-%d %H:%M} UTC"


# -- SIGHUP ------------------------------------------------------------------


@contextmanager
def sighup_blocked() -> Iterator[None]:
    """
    Block SIGHUP in this thread meanwhile.  A process started meanwhile
    begins with it blocked, as signal masks are inherited: a SIGHUP sent to
    it waits, instead of killing it, until it takes SIGHUP
    (L{Hangup.install}).
    """
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


class Hangup:
    """
    Calls C{hangup} on the reactor thread for each SIGHUP, between
    L{install} and L{uninstall}.

    The signal handler itself only hands the call to the reactor
    (C{callFromThread}): Python runs it between any two bytecodes of the
    main thread, possibly in the middle of the reactor's own work.
    """

    def __init__(self, reactor: Any, hangup: Callable[[], object]) -> None:
        self.reactor = reactor
        self.hangup = hangup
        self._previous: Any = None
        self._installed = False

    def install(self) -> bool:
        """
        Take SIGHUP, if this process can: in its main thread, with a reactor
        that can be called from a signal handler (C{IReactorThreads}; not
        the memory reactors of tests).

        @return: whether SIGHUP is now taken.
        """
        if self._installed:
            return True
        if not IReactorThreads.providedBy(self.reactor):
            return False
        if threading.current_thread() is not threading.main_thread():
            return False
        self._previous = signal.signal(signal.SIGHUP, self._signalled)
        self._installed = True
        # A worker starts with SIGHUP blocked (sighup_blocked): take any
        # that came meanwhile.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
        return True

    def uninstall(self) -> None:
        """
        Give SIGHUP back to the handler it had before (unless something else
        has taken it since).
        """
        if not self._installed:
            return
        self._installed = False
        if signal.getsignal(signal.SIGHUP) == self._signalled:
            previous = signal.SIG_DFL if self._previous is None else self._previous
            signal.signal(signal.SIGHUP, previous)

    def _signalled(self, number: int, frame: Any) -> None:
        self.reactor.callFromThread(self.hangup)


class Reloader:
    """
    What SIGHUP does to a chat server: reread the certificate and key of
    each of its C{ssl:} listeners, and its message of the day.

    Each thing reread logs one line: what is now in use, or, if its files
    could not be used, that the old one stays, and why.

    @param tls_endpoints: returns the server's current L{TLSEndpoint}s.
    @param read: runs a blocking function off the reactor thread (by
        default in the reactor's thread pool).
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        hub: Hub,
        motd_path: str | None,
        tls_endpoints: Callable[[], Iterable[TLSEndpoint]],
        read: Read | None = None,
    ) -> None:
        self.reactor = reactor
        self.hub = hub
        self.motd_path = motd_path
        self.tls_endpoints = tls_endpoints
        self.read: Read = self._in_thread if read is None else read
        self._signal = Hangup(reactor, self.hangup)
        self._reloading = False
        self._again = False

    def _in_thread(self, function: Callable[..., Any], *args: Any) -> Deferred[Any]:
        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), function, *args)

    def start(self) -> None:
        """
        Reload on SIGHUP from now on (see L{Hangup.install}).
        """
        self._signal.install()

    def stop(self) -> None:
        """
        Give SIGHUP back to whatever had it before L{start}.
        """
        self._signal.uninstall()

    def hangup(self) -> None:
        """
        SIGHUP: L{reload}; or, if a reload is under way, reload once more
        after it, so that the files as they are after the last signal win.
        """
        if self._reloading:
            self._again = True
            return
        self._reloading = True
        self.reload().addBoth(self._reloaded)

    def _reloaded(self, _: object) -> None:
        self._reloading = False
        if self._again:
            self._again = False
            self.hangup()

    def reload(self) -> Deferred[None]:
        """
        Reread every C{ssl:} listener's files (once for listeners with the
        same description) and the message of the day.  Fires once all is
        done; never fails (failures are logged).
        """
        by_description: dict[str, list[TLSEndpoint]] = {}
        for endpoint in self.tls_endpoints():
            by_description.setdefault(endpoint.description, []).append(endpoint)
        work = [self._reload_tls(d, e) for d, e in by_description.items()]
        if self.motd_path is not None:
            work.append(self._reload_motd(self.motd_path))
        if not work:
            self._log.info("SIGHUP: nothing to reload (no ssl: endpoint, no --motd)")
            return succeed(None)
        done = gatherResults(work, consumeErrors=True).addCallback(lambda _: None)
        return done.addErrback(lambda f: self._log.failure("SIGHUP: reloading failed", f))

    def _reload_tls(self, description: str, endpoints: list[TLSEndpoint]) -> Deferred[None]:
        options = [f"--{e.name}" for e in endpoints]
        names = " and ".join([", ".join(options[:-1]), options[-1]] if options[1:] else options)

        def swap(settings: SSLSettings) -> None:
            for endpoint in endpoints:
                endpoint.tls.options = settings.options
            self._log.info(
                "SIGHUP: reloaded the TLS certificate for {names}: {certificate}",
                names=names,
                certificate=describe_certificate(settings.options),
            )

        def keep(failure: Failure) -> None:
            assert failure.value is not None  # an errback's failure has one
            self._log.warn(
                "SIGHUP: kept the old TLS certificate for {names}: {why}",
                names=names,
                why=tls_error(failure.value),
            )

        reading: Deferred[SSLSettings] = self.read(read_ssl, description)
        return reading.addCallbacks(swap, keep)

    def _reload_motd(self, path: str) -> Deferred[None]:
        def loaded(lines: tuple[str, ...]) -> None:
            self._log.info(
                "SIGHUP: reloaded the message of the day from {path} ({count} line{s})",
                path=path,
                count=len(lines),
                s="" if len(lines) == 1 else "s",
            )

        def kept(failure: Failure) -> None:
            error = failure.value
            if isinstance(error, OSError):
                why = f"cannot read {path}: {error.strerror}"
            elif isinstance(error, UnicodeDecodeError):
                why = f"{path} is not UTF-8 text ({error.reason} at byte {error.start})"
            else:
                why = f"{path}: {type(error).__name__}: {error}"
            self._log.warn("SIGHUP: kept the old message of the day: {why}", why=why)

        return reload_motd(self.hub, path, self.read).addCallbacks(loaded, kept)
