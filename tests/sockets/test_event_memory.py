"""A socket event's payload is freed when its handler returns, not whenever the cyclic GC runs."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

MEGABYTE = 1_000_000


@pytest.mark.parametrize(
    ("event", "payload"),
    [
        ("who", lambda: {"room": b"x" * MEGABYTE}),  # a binary attachment, refused invalid
        ("history", lambda: {"room": "general", "before": "9" * MEGABYTE}),  # refused invalid
        ("message", lambda: {"room": "general", "body": "x" * MEGABYTE}),  # refused too_large
        ("rooms", lambda: {"q": "general", "padding": "x" * MEGABYTE}),  # answered ok
    ],
    ids=["binary", "invalid", "too_large", "ok"],
)
def test_twenty_megabyte_payloads_leave_nothing_for_the_cyclic_gc(socket_client, make_user, event, payload):
    sio = socket_client(make_user())
    sio.emit(event, payload(), callback=True)  # the first one may fill caches
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(20):
            ack = sio.emit(event, payload(), callback=True)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        gc.enable()
    assert isinstance(ack, dict) and "ok" in ack
    assert held < 2 * MEGABYTE, f"{held} bytes still held after 20 events of 1 MB"
