"""
Stores: implementations of L{chatd.interfaces.IStore}.

L{chatd.store.memory.MemoryStore} keeps recent history in memory only (tests,
C{--db :memory:}); L{chatd.store.sqlite.SQLiteStore} keeps everything in one
SQLite file.
"""
