"""
History stores: implementations of L{chatd.interfaces.IHistoryStore}.
"""
