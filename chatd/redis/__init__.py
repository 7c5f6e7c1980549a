"""
Everything chatd keeps in Redis, for a cluster (C{--redis}).

- L{chatd.redis.connection}: Redis URLs, connections (txredisapi), and
  L{KEY_PREFIX}, under which every key below lives;
- L{chatd.redis.oplog}: the nodes' shared, ordered log of operations;
- L{chatd.redis.store}: history, accounts and registered rooms.

The keyspace (each key after the prefix, C{chatd:} by default)::

    seq             string: the last number given, to log entries and so to
                    messages (the log and the store share it)
    log             stream: the log's operations (chatd.cluster.ops), its
                    entry ids SEQ-0, trimmed to about the newest 200,000
    nodes           set: the nodes that said hello
    node:NODE       string, expiring: NODE's heartbeat
    snapshot:NODE   string, expiring: the replica written for NODE to start
    room:ROOM       sorted set: a room's messages, scored by id, each a
                    compact JSON array (ROOM folded)
    pm:LOW:HIGH     sorted set: a private conversation, the same way (the
                    two folded nicks, sorted)
    history         sorted set: "ID KEY" of every message above, scored by
                    its time, so that pruning finds old messages without
                    scanning the keyspace
    account:NICK    hash: name, password_hash, created, first_id
    accounts        set: every registered (folded) nick
    rooms           hash: folded room name -> JSON settings
"""

from chatd.redis.connection import KEY_PREFIX

__all__ = ["KEY_PREFIX"]
