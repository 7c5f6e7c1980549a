"""
Fuzzing the doors: thousands of random and mutated inputs go through the
line door (inside its telnet transport), the WebSocket door (through the
web site's HTTP upgrade, or straight to the door's factory) and the IRC
door, while the hub's invariants are checked after every step.

Each run is one hub with three line connections and two WebSocket
connections on a shared C{Clock}, driven by a Hypothesis-generated list of
actions: raw bytes and mutated commands for the line door, frames and raw
bytes for the WebSocket door, clock advances, peers that stop reading (so
that their transport's buffer fills and pauses the server's output) or
vanish, and new ones that connect.  A run ends either with a shutdown or
with every peer falling silent; either way every connection must then be
gone and the hub empty.

What a line peer sends is also telnet-heavy and high-bit: telnet commands
(L{strategies.TELNET}, L{strategies.telnet_commands}): every two-byte
command, RFC 1184's EOF, SUSP and ABORT and the NVT functions chatd maps
to keys among them; negotiations of TRANSMIT-BINARY, TIMING-MARK and
LINEMODE among other options; subnegotiations as clients send them
(LINEMODE MODE, SLC and FORWARDMASK, window size, terminal type) and
garbled ones; the control keys chatd acts on (L{strategies.KEYS}) and
escape sequences (L{strategies.ESCAPES}, 7- and 8-bit); and high-bit text
(L{strategies.high_bit}): the issue's sentences in several languages,
whole or with bytes cut out or repeated, random bytes mostly 0x80 and up,
any characters past ASCII.

The IRC door's tests (L{test_fuzz.IrcDoorFuzzTests}, and the flow-control
and cluster ones) add three IRC connections (erin, frank, who asks for
every capability, and one yet to register), made like line ones through
the door's C{buildProtocol}, and what they send
(L{strategies.irc_inputs}): commands of every kind the door knows
(C{CAP LS/REQ/END/LIST}, C{NICK}, C{USER}, C{PASS}, C{AUTHENTICATE PLAIN}
and base64 chunks, 400-byte ones and C{*} among them, C{REGISTER}, C{PING},
C{JOIN} with keys and lists, C{PART}, C{PRIVMSG} and C{NOTICE} with CTCPs,
C{TOPIC}, C{NAMES}, C{LIST} with ELIST filters, C{MODE} with every letter
and its arguments, C{KICK}, C{INVITE}, C{WHO}, C{WHOIS}, C{AWAY},
C{USERHOST}, C{ISON}, C{OPER}, C{KILL}, C{TAGMSG}, C{QUIT}, numerics),
well-formed or mutated (cut, repeated, random bytes, CR, LF and NUL in odd
places, bad UTF-8), with message tags and escapes, overlong (lines about
512 bytes, tags about 4096 and 8191), registration and SASL out of order,
all cut into packets anywhere; passwords (marked) in SASL, C{PASS},
C{REGISTER} and C{OPER} (L{actions.IrcSecret}); and operators' requests.
After most IRC inputs the connection must answer a C{PING :probe<N>} with a
C{PONG} naming C{probe<N>} (L{world.World.probe}), the clock advancing as
flood control needs, unless it is closing, its peer has stopped reading or
some reader is saturated (which holds back everyone's input).

Commands and requests cover accounts, history and moderation too, with
well-formed, half-formed and garbage arguments.  The hub starts with an
account (dave, a server operator) and a room (#c) registered, as after a
restart, and hashes passwords quickly (L{chatd.testing.quick_passwords}).
Passwords given in a password's place (L{actions.SecretLine},
L{actions.SecretFrame}) all hold the sign L{world.MARK}, which nothing
else the fuzzer sends does; requests with passwords that may be mutated
use unmarked ones.  Operators' requests come from L{actions.Moderate},
which finds a peer that is one (random requests seldom do).

After every action:

  - no exception escaped a protocol (it would reach the test) and nothing
    was logged as an error (e.g. by the hub's per-recipient isolation);
  - no password was logged (L{world.World.observe}), nor sent to anyone;
  - the hub's indexes agree with each other, and so do its accounts, its
    rooms' operators, modes, keys and bans, and its registrations (with
    each other and with the store) (L{invariants.check_hub});
  - the doors' connections agree with the hub's users, no send queue is
    over its bound, and no input waits without something to wake it
    (L{world.World.check_doors});
  - everything a line connection was sent is complete, terminal-safe CR LF
    lines (telnet commands apart), everything a WebSocket was sent
    parses as whole frames whose text frames are JSON objects with a
    C{type} (L{wire.parse_line_output}, L{wire.parse_server_frames}), and
    everything an IRC connection was sent is whole CR LF lines in UTF-8
    with no other CR, LF or NUL, a command and no empty parameter, at most
    512 bytes after tags of at most 8191 (a relayed message a client could
    have sent in one line excepted, L{wire.relayed})
    (L{wire.parse_irc_output});
  - a connection the server closes was told why (quit, by C{/quit} or a
    Ctrl-D at the start of a line; kill, takeover, flood, slow consumer,
    sign-on timeout, shutdown), or was silent too long, refused at the
    door, or broke the telnet or WebSocket protocol itself: bad input to
    chatd never closes one (L{world.Connection.check_farewell}); on IRC,
    an C{ERROR} line says why (or a server C{NOTICE}, for a takeover or a
    shutdown);
  - a cluster node's run leaves no failed Deferred unhandled (checked with
    a garbage collection at its end).

L{test_fuzz.ClusterFuzzTests} plays the same on one node of a cluster
(L{chatd.cluster.node.ClusterGateway} on a log that answers at the next tick),
where every request waits for its operation to come back.

L{test_fuzz.TelnetStreamFuzzTests} checks the promise of issue #12, "no
byte sequence a telnet client can send leaves a session deaf or corrupts
the text of the next line", on one signed-on line connection with a
WebSocket watcher in #lobby.  It sends a well-formed telnet stream
(L{strategies.typed_streams}: data with 0xFF escaped, control keys, escape
sequences and high-bit text; negotiations of any option, subnegotiations
under the cap, every other command, and signals as LINEMODE clients send
them), cut into any packets, then a line end and a marker line
(L{strategies.marker_tails}: cut anywhere, with commands that stand for no
key anywhere in it).  Unless a Ctrl-D at the start of a line ended the
session (L{strategies.ends_session}), the watcher must get exactly the
marker as the connection's last message, the connection must still be open
and have its own copy last, and every C{DO TIMING-MARK} must have been
answered with C{WILL TIMING-MARK}.  No C{/} is ever typed: a command could
change who says the marker, where, or whether.

Runs are derandomised, so CI always tries the same inputs (for a longer
fuzz, or other inputs, see L{runner.fuzz}).  Each test prints how many
inputs it fed each door (see them with C{pytest -s}, or under trial); an
input is one fuzzed chunk of bytes for a line connection (up to three
lines, maybe cut into packets), one sequence of frames or chunk of raw
bytes for a WebSocket, or one chunk of up to four lines for an IRC
connection; the storms that fill buffers are not counted.
L{test_fuzz.TelnetStreamFuzzTests} prints how many streams, bytes, packets
and C{DO TIMING-MARK}s it sent, and how many sessions a Ctrl-D ended.  A
full run of these tests feeds about 3,500 inputs to the line door, 4,100
to the WebSocket door and 4,200 to the IRC door (and some 3,400 C{PING}
probes), and 300 telnet streams (some 1,200 packets) to one line
connection each, in 30-40 s.  (C{--hypothesis-seed} changes nothing, the
runs being derandomised: C{$CHATD_FUZZ_SEED} does.)  A failing run is
shrunk, and printed.

The package's modules, each readable on its own:

  - L{invariants}: the hub's invariants (L{invariants.check_hub}), and
    L{invariants.FuzzFailure}, raised when one is broken;
  - L{wire}: the fuzzer's WebSocket frames, and the checks of what the
    server sends;
  - L{world}: the hub, the doors, the connections and the network of a
    run, and the checks made after every step;
  - L{actions}: the steps of a run;
  - L{strategies}: the Hypothesis strategies that make runs;
  - L{runner}: the fuzz settings and L{runner.FuzzTestCase}, which plays
    runs;
  - L{test_fuzz}: the tests.
"""
