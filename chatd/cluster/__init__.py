"""
Cluster mode: several chatd processes, one replica of the hub each, kept
identical by one ordered log of operations.

- L{chatd.cluster.node}: a node, the gateway that appends each change to the
  log and applies the log to its replica;
- L{chatd.cluster.ops}: the log's entries, versioned;
- L{chatd.cluster.snapshot}: a replica as data, for a node that starts.
"""
