# -*- test-case-name: tests.test_hub,tests.test_store -*-
"""
The one exception type the hub raises for a request it refuses.

Every refusal carries a short machine word (the WebSocket C{error} frame's
C{code}) and a human sentence (the line door's C{!!! } text), so both doors
report the same failure the same way.
"""


class ChatError(Exception):
    """
    A request was refused; nothing changed.

    @ivar code: short machine word, e.g. C{nick_taken}.
    @ivar message: human-readable reason.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message


class StoreError(Exception):
    """
    The store cannot be used as it is (a corrupt file, a schema from a newer
    chatd, no permission); the message says what and what to do.
    """


class StoreBusy(StoreError):
    """
    The store refused a read because too many are waiting (a reconnect
    storm): nothing is wrong with it, and asking again later works.
    """
