"""
Stores: implementations of L{chatd.interfaces.IStore}.

L{chatd.store.memory.MemoryStore} keeps recent history in memory only (tests,
C{--db :memory:}); L{chatd.store.sqlite.SQLiteStore} keeps everything in one
SQLite file, and L{chatd.redis.store.RedisStore} in the Redis of a cluster.
The last two queue their writes in one L{chatd.store.queue.WriteQueue}.
"""
