"""The per-worker cache of the message path: what it keeps, when it forgets, and what it never stores."""

from __future__ import annotations

import json

import pytest
import socketio
import sqlalchemy as sa

from app.extensions import db
from app.models import Room
from app.services import moderation, rooms, users
from app.services.hot_cache import EXTENSION_KEY, HotCache, changed, hot_cache
from app.sockets.message_queue import CatchUpRedisManager


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ann(ctx):
    return users.register_user("ann", "password1")


@pytest.fixture
def boss(ctx):
    users.register_user("boss", "password1")
    return users.set_admin("boss", True)


def test_entries_are_kept_until_their_ttl_then_read_again(app, ann):
    clock = Clock()
    cache = HotCache(ttl_seconds=30, clock=clock)
    general = cache.room("general")
    assert cache.user(ann.id).username == "ann" and cache.is_member(ann.id, general.id)
    with db.engine.begin() as connection:  # behind the cache's back
        connection.execute(sa.update(Room).where(Room.name == "general").values(topic="changed"))
    db.session.rollback()
    assert cache.room("general").topic == ""
    clock.now += 31
    assert cache.room("general").topic == "changed"


def test_a_read_from_a_snapshot_older_than_an_invalidation_is_used_but_not_kept(app, ann):
    cache = HotCache(ttl_seconds=30)
    db.session.execute(sa.select(1))  # a read transaction (a snapshot, on SQLite) is open
    cache.invalidate(users=[12345])  # some change arrives meanwhile
    assert cache.user(ann.id).username == "ann"
    assert cache.room("general") is not None
    assert cache.users == {} and cache.rooms == {}
    db.session.rollback()
    cache.user(ann.id)
    assert ann.id in cache.users


def test_a_sockets_rooms_read_at_connect_are_kept_only_from_a_snapshot_no_invalidation_followed(app, ann):
    ann_id = ann.id  # (reading an expired ORM attribute would begin a transaction)
    cache = HotCache(ttl_seconds=30)
    db.session.rollback()
    cache.remember_rooms_of(ann_id, rooms.member_rooms(ann_id))  # read in the open transaction
    general = cache.rooms["general"][1]
    assert general.name == "general" and (ann_id, general.id) in cache.members
    assert cache.is_member(ann_id, general.id)

    for stale in ("invalidated meanwhile", "transaction over"):
        cache = HotCache(ttl_seconds=30)
        db.session.rollback()
        found = rooms.member_rooms(ann_id)
        if stale == "invalidated meanwhile":
            cache.invalidate(memberships=[(ann_id, general.id)])  # a leave committed after the read began
        else:
            db.session.rollback()  # the read's snapshot is gone: its age is unknown
        cache.remember_rooms_of(ann_id, found)
        assert cache.rooms == {} and cache.members == {}, stale


def test_a_join_keeps_the_membership_it_made_or_found(app, ann):
    cache = hot_cache()
    room, joined = rooms.join_room(ann.id, "side")
    assert joined and (ann.id, room.id) in cache.members
    cache.members.clear()
    room, joined = rooms.join_room(ann.id, "side")
    assert not joined and (ann.id, room.id) in cache.members


@pytest.mark.parametrize("room_name", ["made-by-boss", "brand-new"])
def test_a_join_keeps_no_membership_when_another_change_came_during_its_transaction(app, ann, boss, room_name):
    cache = hot_cache()
    ann_id = ann.id
    rooms.join_room(boss.id, "made-by-boss")

    def meanwhile(_session, _context):
        cache.invalidate(users=[12345])  # some other change, committed and announced meanwhile

    sa.event.listen(db.session, "after_flush", meanwhile, once=True)
    try:
        room, _joined = rooms.join_room(ann_id, room_name)
    finally:
        if sa.event.contains(db.session, "after_flush", meanwhile):
            sa.event.remove(db.session, "after_flush", meanwhile)
    assert (ann_id, room.id) not in cache.members
    # Read afresh, and kept from then on.
    db.session.rollback()
    assert cache.is_member(ann_id, room.id)
    assert (ann_id, room.id) in cache.members


def test_non_members_are_never_cached(app, ann):
    cache = HotCache(ttl_seconds=30)
    room, _ = rooms.join_room(ann.id, "elsewhere")
    room_id = room.id
    rooms.leave_room(ann.id, "elsewhere")
    assert cache.is_member(ann.id, room_id) is False
    assert cache.members == {}


def test_every_change_the_message_path_reads_invalidates_here_and_is_published(app, ann, boss):
    published: list[dict] = []
    app.extensions[EXTENSION_KEY + ".publish"] = published.append
    cache = hot_cache()
    general = cache.room("general")
    room, _ = rooms.join_room(ann.id, "side")
    side_id = room.id
    for user_id, room_id in ((ann.id, general.id), (ann.id, side_id)):
        assert cache.is_member(user_id, room_id)
    cache.user(ann.id)
    cache.room("side")
    published.clear()

    moderation.mute_user(boss.id, "ann", 60)
    assert ann.id not in cache.users and hot_cache().user(ann.id).muted_until is not None
    moderation.unmute_user(boss.id, "ann")
    moderation.ban_user(boss.id, "ann")
    moderation.unban_user(boss.id, "ann")
    users.set_admin("ann", True)
    rooms.set_topic(ann.id, "side", "new topic")
    assert "side" not in cache.rooms and cache.room("side").topic == "new topic"
    rooms.leave_room(ann.id, "side")
    assert (ann.id, side_id) not in cache.members and not cache.is_member(ann.id, side_id)
    rooms.join_room(ann.id, "side")
    rooms.join_room(ann.id, "brand-new")
    brand_new = db.session.scalar(sa.select(Room.id).where(Room.name == "brand-new"))

    assert published == [
        {"users": [ann.id], "rooms": [], "memberships": []},
        {"users": [ann.id], "rooms": [], "memberships": []},
        {"users": [ann.id], "rooms": [], "memberships": []},
        {"users": [ann.id], "rooms": [], "memberships": []},
        {"users": [ann.id], "rooms": [], "memberships": []},
        {"users": [], "rooms": ["side"], "memberships": []},
        {"users": [], "rooms": [], "memberships": [(ann.id, side_id)]},
        {"users": [], "rooms": [], "memberships": [(ann.id, side_id)]},
        {"users": [], "rooms": ["brand-new"], "memberships": [(ann.id, brand_new)]},
    ]


def test_invalidations_cross_the_message_queue_to_other_workers_only(monkeypatch):
    sender, receiver = (CatchUpRedisManager("redis://127.0.0.1:1", channel="probe") for _ in range(2))
    wire: list[bytes] = []
    monkeypatch.setattr(sender, "_publish", lambda data: wire.append(json.dumps(data).encode()))
    applied: list[dict] = []
    for manager in (sender, receiver):
        manager.on_invalidation = applied.append

    sender.publish_invalidation({"users": [7], "rooms": ["général"], "memberships": [[7, 3]]})
    # python-socketio's own messages pass through untouched, in order.
    emitted = json.dumps({"method": "emit", "event": "message", "data": "switchboard-invalidate x"}).encode()
    monkeypatch.setattr(socketio.RedisManager, "_listen", lambda self: iter([wire[0], emitted]))

    assert list(receiver._listen()) == [emitted]
    assert applied == [{"users": [7], "rooms": ["général"], "memberships": [[7, 3]]}]
    assert list(sender._listen()) == [emitted]  # its own: already applied when it published
    assert len(applied) == 1


def test_changed_without_a_queue_applies_in_this_worker(app, ann):
    cache = hot_cache()
    cache.user(ann.id)
    changed(users=[ann.id])
    assert ann.id not in cache.users
