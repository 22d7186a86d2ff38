"""Rooms: joining creates, memberships persist, general is for everyone, names follow the rules."""

import pytest
import sqlalchemy as sa

from app.errors import ServiceError
from app.extensions import db
from app.models import Room, RoomMembership
from app.services import rooms, users


def room_count() -> int:
    return db.session.scalar(sa.select(sa.func.count(Room.id)))


def membership_count() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(RoomMembership))


@pytest.fixture
def ann(ctx):
    return users.register_user("ann", "password1")


def test_join_creates_a_missing_room_and_makes_the_user_a_member(ann):
    room, joined = rooms.join_room(ann.id, "random")
    assert (room.name, joined) == ("random", True)
    assert room.created_by_id == ann.id
    assert [r.name for r in rooms.rooms_of(ann.id)] == ["general", "random"]


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_join_is_idempotent(ann):
    first, _ = rooms.join_room(ann.id, "random")
    again, joined = rooms.join_room(ann.id, "random")
    assert again.id == first.id
    assert joined is False
    assert room_count() == 2
    assert membership_count() == 2


def test_join_an_existing_room_adds_only_the_membership(ann):
    bob = users.register_user("bob", "password1")
    rooms.join_room(ann.id, "random")
    room, joined = rooms.join_room(bob.id, "random")
    assert joined is True
    assert room.created_by_id == ann.id
    assert rooms.member_ids([room.id]) == {room.id: {ann.id, bob.id}}


@pytest.mark.parametrize("name", ["a", "a" * 64, "0day", "x-y_z", "9"])
def test_valid_room_names(ann, name):
    room, joined = rooms.join_room(ann.id, name)
    assert (room.name, joined) == (name, True)


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("a" * 65, "too_large"),
        ("A" * 65, "too_large"),
        ("Random", "invalid"),
        ("RANDOM", "invalid"),
        ("", "invalid"),
        ("-abc", "invalid"),
        ("_abc", "invalid"),
        ("has space", "invalid"),
        ("dots.no", "invalid"),
        ("user:1", "invalid"),
        ("ümlaut", "invalid"),
        ("abc\n", "invalid"),
        (None, "invalid"),
        (7, "invalid"),
        (["general"], "invalid"),
        ({"name": "general"}, "invalid"),
    ],
)
def test_invalid_room_names_change_nothing(ann, name, code):
    with pytest.raises(ServiceError) as refused:
        rooms.join_room(ann.id, name)
    assert refused.value.code == code
    assert room_count() == 1
    assert membership_count() == 1


def test_leave_ends_the_membership_but_keeps_the_room(ann):
    rooms.join_room(ann.id, "random")
    left = rooms.leave_room(ann.id, "random")
    assert left.name == "random"
    assert [r.name for r in rooms.rooms_of(ann.id)] == ["general"]
    assert rooms.find_room("random") is not None


def test_leave_a_room_one_is_not_in_is_harmless(ann):
    bob = users.register_user("bob", "password1")
    rooms.join_room(bob.id, "random")
    rooms.leave_room(ann.id, "random")
    assert [r.name for r in rooms.rooms_of(bob.id)] == ["general", "random"]


def test_nobody_leaves_general(ann):
    with pytest.raises(ServiceError) as refused:
        rooms.leave_room(ann.id, "general")
    assert refused.value.code == "forbidden"
    assert [r.name for r in rooms.rooms_of(ann.id)] == ["general"]


@pytest.mark.parametrize(("name", "code"), [("nowhere", "not_found"), ("Bad!", "invalid"), ("a" * 65, "too_large")])
def test_leave_refuses_unknown_or_invalid_rooms(ann, name, code):
    with pytest.raises(ServiceError) as refused:
        rooms.leave_room(ann.id, name)
    assert refused.value.code == code


def test_room_dicts_count_members_and_online_members(ann):
    bob = users.register_user("bob", "password1")
    rooms.join_room(ann.id, "random")
    listed = rooms.room_dicts(rooms.all_rooms(), online_user_ids={bob.id})
    assert listed == [
        {"name": "general", "members": 2, "online": 1, "topic": "", "private": False},
        {"name": "random", "members": 1, "online": 0, "topic": "", "private": False},
    ]
