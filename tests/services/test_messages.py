"""Messages: posting rules, client_id deduplication, history paging and sync, on SQLite and PostgreSQL."""

import pytest
import sqlalchemy as sa

from app.errors import ServiceError
from app.extensions import db
from app.models import Message, dm_pair, utcnow
from app.services import messages, moderation, rooms, users
from tests.support.moderation import let_mute_lapse, mute

both_databases = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)


def stored_count() -> int:
    return db.session.scalar(sa.select(sa.func.count(Message.id)))


def post(user, body, room="general", client_id=None) -> dict:
    return messages.post_room_message(user, room, body, client_id).message


def ids(page) -> list[int]:
    return [m["id"] for m in page]


def store_room_messages(sender, room_name: str, count: int) -> list[int]:
    """Many messages in one transaction, for tests about reading them back."""
    room = rooms.find_room(room_name)
    rows = [Message(sender_id=sender.id, room_id=room.id, body=f"m{i}", created_at=utcnow()) for i in range(count)]
    for row in rows:
        row.rev = messages.next_rev(db.session)
        db.session.add(row)
        db.session.flush()  # one by one, so ids follow list order
    db.session.commit()
    return [row.id for row in rows]


@pytest.fixture
def ann(ctx):
    return users.register_user("ann", "password1")


@pytest.fixture
def bob(ctx):
    return users.register_user("bob", "password1")


@pytest.fixture
def cat(ctx):
    return users.register_user("cat", "password1")


@pytest.fixture
def moderator(ctx):
    users.register_user("mod", "password1")
    return users.set_admin("mod", True)


@both_databases
def test_posted_message_has_the_message_shape_and_a_trimmed_body(ann):
    posted = messages.post_room_message(ann, "general", "  hello there \n", "c-1")
    assert posted.duplicate is False
    message = posted.message
    assert message == {
        "id": message["id"],
        "room": "general",
        "sender": {"id": ann.id, "username": "ann", "is_admin": False},
        "recipient": None,
        "body": "hello there",
        "client_id": "c-1",
        "created_at": message["created_at"],
        "deleted": False,
        "rev": message["rev"],
        "edited_at": None,
        "reply_to": None,
        "mentions": [],
        "reactions": [],
        "attachments": [],
    }
    assert isinstance(message["id"], int)
    assert message["created_at"].endswith("Z")
    assert db.session.get(Message, message["id"]).body == "hello there"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("", "invalid"),
        ("   \n\t ", "invalid"),
        (None, "invalid"),
        (42, "invalid"),
        (["hi"], "invalid"),
        ({"text": "hi"}, "invalid"),
        ("x" * 4001, "too_large"),
        (" " + "x" * 4001 + " ", "too_large"),
    ],
)
def test_bad_bodies_store_nothing(ann, body, code):
    with pytest.raises(ServiceError) as refused:
        messages.post_room_message(ann, "general", body)
    assert refused.value.code == code
    assert stored_count() == 0


@both_databases
def test_text_that_cannot_be_stored_is_invalid(ann, bob):
    for body, client_id in (("a\x00b", "c1"), ("lone \ud800 surrogate", "c2"), ("fine", "c\x00"), ("fine", "\udc00")):
        with pytest.raises(ServiceError) as refused:
            messages.post_room_message(ann, "general", body, client_id)
        assert refused.value.code == "invalid"
        with pytest.raises(ServiceError) as refused:
            messages.post_direct_message(ann, bob, body, client_id)
        assert refused.value.code == "invalid"
    assert stored_count() == 0
    assert post(ann, "emoji 🎉 and ünïcode", client_id="ok-🎉")["body"] == "emoji 🎉 and ünïcode"


def test_body_limit_counts_after_trimming(ann):
    message = post(ann, "  " + "x" * 4000 + "  ")
    assert len(message["body"]) == 4000


def test_posting_needs_membership_and_an_existing_room(ann, bob):
    rooms.join_room(ann.id, "random")
    with pytest.raises(ServiceError) as refused:
        post(bob, "hi", room="random")
    assert refused.value.code == "forbidden"
    with pytest.raises(ServiceError) as refused:
        post(bob, "hi", room="nowhere")
    assert refused.value.code == "not_found"
    with pytest.raises(ServiceError) as refused:
        post(bob, "hi", room="Not A Room")
    assert refused.value.code == "invalid"
    assert stored_count() == 0


def test_muted_user_cannot_post_until_the_mute_lapses(ann, bob):
    mute("ann", 300)
    for attempt in (lambda: post(ann, "hi"), lambda: messages.post_direct_message(ann, bob, "hi")):
        with pytest.raises(ServiceError) as refused:
            attempt()
        assert refused.value.code == "muted"
    assert stored_count() == 0
    let_mute_lapse("ann")
    assert post(ann, "back")["body"] == "back"


@both_databases
def test_repeated_client_id_returns_the_stored_message_and_stores_nothing_more(ann, bob):
    rooms.join_room(ann.id, "random")
    first = messages.post_room_message(ann, "general", "original", "same-id")
    for repeat in (
        lambda: messages.post_room_message(ann, "general", "original", "same-id"),
        lambda: messages.post_room_message(ann, "general", "a different body", "same-id"),
        lambda: messages.post_room_message(ann, "random", "another room", "same-id"),
        lambda: messages.post_direct_message(ann, bob, "now as a dm", "same-id"),
        lambda: messages.post_room_message(ann, "general", "   ", "same-id"),
        lambda: messages.post_room_message(ann, "nowhere", "x" * 5000, "same-id"),
    ):
        again = repeat()
        assert again.duplicate is True
        assert again.message == first.message
    assert stored_count() == 1


def test_client_ids_are_per_sender(ann, bob):
    first = post(ann, "from ann", client_id="shared")
    second = post(bob, "from bob", client_id="shared")
    assert first["id"] != second["id"]
    assert stored_count() == 2


def test_dm_client_id_repeat_returns_the_stored_dm(ann, bob):
    first = messages.post_direct_message(ann, bob, "hi bob", "dm-1")
    again = messages.post_direct_message(ann, bob, "edited", "dm-1")
    assert again.duplicate is True
    assert again.message == first.message
    assert stored_count() == 1


@pytest.mark.parametrize(
    ("client_id", "code"), [("x" * 65, "too_large"), ("", "invalid"), (7, "invalid"), (["a"], "invalid")]
)
def test_bad_client_ids_store_nothing(ann, client_id, code):
    with pytest.raises(ServiceError) as refused:
        post(ann, "hello", client_id=client_id)
    assert refused.value.code == code
    assert stored_count() == 0


def test_client_id_of_64_characters_is_accepted(ann):
    assert post(ann, "hello", client_id="x" * 64)["client_id"] == "x" * 64


def test_direct_message_shape(ann, bob):
    message = messages.post_direct_message(ann, bob, " psst ", "d").message
    assert message["room"] is None
    assert message["recipient"] == {"id": bob.id, "username": "bob", "is_admin": False}
    assert message["sender"]["id"] == ann.id
    assert message["body"] == "psst"


@both_databases
def test_ids_grow_strictly(ann, bob):
    posted = [post(ann, f"m{i}") for i in range(5)] + [messages.post_direct_message(ann, bob, "dm").message]
    assert ids(posted) == sorted(set(ids(posted)))


@both_databases
def test_history_pages_backwards_oldest_first(ann):
    posted = ids(post(ann, f"m{i}") for i in range(7))
    page, has_more = messages.room_history("general", limit=3)
    assert (ids(page), has_more) == (posted[4:], True)
    page, has_more = messages.room_history("general", before=page[0]["id"], limit=3)
    assert (ids(page), has_more) == (posted[1:4], True)
    page, has_more = messages.room_history("general", before=page[0]["id"], limit=3)
    assert (ids(page), has_more) == (posted[:1], False)
    page, has_more = messages.room_history("general")
    assert (ids(page), has_more) == (posted, False)


@both_databases
def test_history_limit_defaults_to_50_and_is_clamped_to_100(ann):
    posted = store_room_messages(ann, "general", 105)
    page, has_more = messages.room_history("general")
    assert (ids(page), has_more) == (posted[-50:], True)
    page, has_more = messages.room_history("general", limit=1000)
    assert (ids(page), has_more) == (posted[-100:], True)
    page, has_more = messages.room_history("general", limit=105)
    assert len(page) == 100


@both_databases
def test_ids_beyond_the_database_integer_are_invalid_not_internal(ann, bob):
    post(ann, "hi")
    for call in (
        lambda: messages.room_history("general", before=2**31),
        lambda: messages.dm_history(ann, bob, before=10**20),
        lambda: messages.sync(ann, 2**64),
    ):
        with pytest.raises(ServiceError) as refused:
            call()
        assert refused.value.code == "invalid"
    page, _ = messages.room_history("general", before=2**31 - 1, limit=10**12)
    assert [m["body"] for m in page] == ["hi"]
    assert messages.sync(ann, 2**31 - 1) == ([], False)


def test_history_keeps_deleted_messages_in_place(ann, moderator):
    first, second = post(ann, "keep"), post(ann, "remove me")
    moderation.delete_message(moderator.id, second["id"])
    page, _ = messages.room_history("general")
    assert [(m["id"], m["body"], m["deleted"]) for m in page] == [
        (first["id"], "keep", False),
        (second["id"], "", True),
    ]


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"room": "nowhere"}, "not_found"),
        ({"room": "Bad Name"}, "invalid"),
        ({"room": None}, "invalid"),
        ({"room": "general", "limit": 0}, "invalid"),
        ({"room": "general", "limit": -1}, "invalid"),
        ({"room": "general", "limit": "10"}, "invalid"),
        ({"room": "general", "limit": True}, "invalid"),
        ({"room": "general", "limit": 2.5}, "invalid"),
        ({"room": "general", "before": 0}, "invalid"),
        ({"room": "general", "before": "5"}, "invalid"),
        ({"room": "general", "before": [1]}, "invalid"),
    ],
)
def test_history_refuses_bad_arguments(ann, kwargs, code):
    kwargs = dict(kwargs)
    room = kwargs.pop("room")
    with pytest.raises(ServiceError) as refused:
        messages.room_history(room, **kwargs)
    assert refused.value.code == code


def test_history_is_readable_by_non_members(ann, bob):
    rooms.join_room(ann.id, "random")
    message = post(ann, "public", room="random")
    page, _ = messages.room_history("random")
    assert ids(page) == [message["id"]]


@both_databases
def test_dm_history_holds_both_directions_of_one_conversation_only(ann, bob, cat):
    conversation = [
        messages.post_direct_message(ann, bob, "1").message,
        messages.post_direct_message(bob, ann, "2").message,
    ]
    messages.post_direct_message(ann, cat, "not bob")
    messages.post_direct_message(cat, bob, "not ann")
    post(ann, "room message")
    conversation.append(messages.post_direct_message(ann, bob, "3").message)
    page, has_more = messages.dm_history(ann, bob)
    assert (ids(page), has_more) == (ids(conversation), False)
    page, has_more = messages.dm_history(bob, ann)
    assert (ids(page), has_more) == (ids(conversation), False)
    page, has_more = messages.dm_history(bob, ann, before=conversation[2]["id"], limit=1)
    assert (ids(page), has_more) == ([conversation[1]["id"]], True)


@both_databases
def test_sync_returns_the_users_rooms_and_dms_oldest_first(ann, bob, cat):
    rooms.join_room(ann.id, "random")
    rooms.join_room(bob.id, "random")
    rooms.join_room(bob.id, "secret")
    rooms.join_room(bob.id, "left")
    rooms.join_room(ann.id, "left")
    before_all = post(ann, "before")["id"]
    wanted = [
        post(bob, "general 1")["id"],
        post(bob, "random 1", room="random")["id"],
        messages.post_direct_message(bob, ann, "to ann").message["id"],
        messages.post_direct_message(ann, cat, "from ann").message["id"],
    ]
    post(bob, "not ann's room", room="secret")
    messages.post_direct_message(bob, cat, "other people's dm")
    post(bob, "in a room ann leaves", room="left")
    rooms.leave_room(ann.id, "left")
    wanted.append(post(ann, "general 2")["id"])

    page, has_more = messages.sync(ann, before_all)
    assert (ids(page), has_more) == (wanted, False)
    page, has_more = messages.sync(ann, wanted[2])
    assert (ids(page), has_more) == (wanted[3:], False)
    page, has_more = messages.sync(ann, 0)
    assert ids(page) == [before_all, *wanted]


def test_sync_includes_deleted_messages_as_deleted(ann, moderator):
    message = post(ann, "oops")
    moderation.delete_message(moderator.id, message["id"])
    page, _ = messages.sync(ann, 0)
    assert [(m["id"], m["deleted"], m["body"]) for m in page] == [(message["id"], True, "")]


@both_databases
def test_sync_returns_at_most_500_with_has_more(ann, bob):
    # Stored in one transaction: the limit is about reading, and 520 single posts would dominate the run.
    rows = []
    general = rooms.find_room("general")
    for i in range(260):
        rows.append(Message(sender_id=bob.id, room_id=general.id, body=f"room {i}", created_at=utcnow()))
        rows.append(
            Message(
                sender_id=bob.id,
                recipient_id=ann.id,
                dm_pair=dm_pair(ann.id, bob.id),
                body=f"dm {i}",
                created_at=utcnow(),
            )
        )
        for row in rows[-2:]:
            row.rev = messages.next_rev(db.session)
            db.session.add(row)
            db.session.flush()
    db.session.commit()
    posted = [row.id for row in rows]
    page, has_more = messages.sync(ann, 0)
    assert (ids(page), has_more) == (posted[:500], True)
    page, has_more = messages.sync(ann, page[-1]["id"])
    assert (ids(page), has_more) == (posted[500:], False)


@pytest.mark.parametrize("after", [-1, None, "0", 1.5, True, [0], {"id": 0}])
def test_sync_refuses_a_bad_after(ann, after):
    with pytest.raises(ServiceError) as refused:
        messages.sync(ann, after)
    assert refused.value.code == "invalid"
