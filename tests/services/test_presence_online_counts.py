"""Online users per chat room, kept by both presence stores as sockets come, move and go."""

from __future__ import annotations

import pytest

from app.services.presence import MemoryPresenceStore, PresenceStore, SocketInfo
from app.services.redis_state import RedisPresenceStore, redis_client
from tests.support import components


def socket(sid: str, user_id: int, rooms: tuple[str, ...]) -> SocketInfo:
    return SocketInfo(
        sid=sid,
        user={"id": user_id, "username": f"user{user_id}", "is_admin": False},
        transport="websocket",
        connected_at="2024-01-01T00:00:00Z",
        rooms=list(rooms),
    )


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def stores(request):
    """Two stores that share their state, as two workers would (the memory store is one worker twice)."""
    if request.param == "memory":
        store = MemoryPresenceStore()
        yield store, store
        return
    client = redis_client(components.redis_url())
    prefix = components.unique_name("sbcounts")
    made = [RedisPresenceStore(client, prefix, start_background_task=lambda *a, **k: None) for _ in range(2)]
    yield made[0], made[1]
    for store in made:
        store.close()
    leftover = list(client.scan_iter(f"{prefix}:*"))
    client.close()
    assert leftover == [], "closed stores left keys behind"


def test_a_user_with_several_sockets_counts_once(stores):
    a, b = stores
    a.add(socket("s1", 1, ("general", "dev")))
    b.add(socket("s2", 1, ("general", "dev")))
    a.add(socket("s3", 2, ("general",)))
    for store in stores:
        assert store.online_counts(["general", "dev", "empty"]) == {"general": 2, "dev": 1, "empty": 0}


def test_counts_follow_room_changes_and_disconnects(stores):
    a, b = stores
    a.add(socket("s1", 1, ("general",)))
    b.add(socket("s2", 1, ("general",)))
    b.update("s1", rooms=["dev", "general"])
    assert a.online_counts(["dev"]) == {"dev": 1}
    a.update("s1", rooms=["general"])
    assert b.online_counts(["dev", "general"]) == {"dev": 0, "general": 1}
    a.remove("s1")
    assert b.online_counts(["general"]) == {"general": 1}
    b.remove("s2")
    assert a.online_counts(["general"]) == {"general": 0}


def test_a_socket_registered_again_is_not_counted_twice(stores):
    a, _b = stores
    a.add(socket("s1", 1, ("general", "dev")))
    a.add(socket("s1", 1, ("general",)))
    assert a.online_counts(["general", "dev"]) == {"general": 1, "dev": 0}


def test_no_rooms_asked_answers_nothing(stores):
    a, _b = stores
    a.add(socket("s1", 1, ("general",)))
    assert a.online_counts([]) == {}


def test_the_interface_declares_online_counts():
    with pytest.raises(NotImplementedError):
        PresenceStore().online_counts(["general"])
