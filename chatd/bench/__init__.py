# -*- test-case-name: tests.test_bench -*-
"""
C{chatd-bench} (C{python -m chatd.bench}): a load tool for any chatd server.

Two scenarios, each run by one or more worker processes on raw non-blocking
sockets and C{epoll}, so that the tool itself stays far from saturation:

  - L{chatd.bench.fanout}: N clients in R rooms, S of them sending closed-loop;
    deliveries per second, latency percentiles, missing and duplicate
    deliveries.
  - L{chatd.bench.idle}: C connections held open, one broadcast probe; connect
    rate and the server's memory per connection.

Deliveries are counted by searching the received bytes for a per-run marker
(L{chatd.bench.wire}).  Only a sample of clients (the senders and a few
receivers) is read at once and parses timestamps and sequence numbers; the
others are read in sweeps every few milliseconds and only count
(L{chatd.bench.client}).
"""
