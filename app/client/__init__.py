"""A Python client for Switchboard that delivers every message exactly once (tests and bots).

It needs ``python-socketio[client]`` and ``requests`` and uses plain threads; nothing here
imports the server's gevent patching.
"""

from app.client.client import ConnectionLost, RequestFailed, SwitchboardClient, request_token
from app.client.outbox import MessageRejected, OutgoingMessage
from app.client.timeline import Timeline

__all__ = [
    "ConnectionLost",
    "MessageRejected",
    "OutgoingMessage",
    "RequestFailed",
    "SwitchboardClient",
    "Timeline",
    "request_token",
]
