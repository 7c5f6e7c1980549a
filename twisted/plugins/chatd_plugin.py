"""
Makes C{twistd chatd} known; the real work is imported only when used.
"""

from twisted.application.service import ServiceMaker

chatd = ServiceMaker(
    "chatd",
    "chatd.app.tap",
    "A chat server: telnet-friendly lines and WebSocket onto one hub.",
    "chatd",
)
