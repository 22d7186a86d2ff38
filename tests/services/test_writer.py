"""MessageWriter's group commit: one batch, one commit, every draft answered exactly once."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app.database import write_lock, write_transaction
from app.extensions import db
from app.models import Message, Room, RoomMembership, User, utcnow
from app.services import messages, users

both_databases = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
WAIT_SECONDS = 20


def stored() -> list[tuple[int, str | None, str]]:
    with db.session.begin():
        rows = db.session.execute(sa.select(Message.sender_id, Message.client_id, Message.body).order_by(Message.id))
        return [tuple(row) for row in rows]


def run_in_one_batch(app, drafts: list[messages.Draft]) -> list[messages.Posted | BaseException]:
    """Queue every draft from its own thread while this thread holds the write lock, then let go:
    the first thread to get the lock commits all of them together."""
    answers: list[messages.Posted | BaseException | None] = [None] * len(drafts)

    def post(index: int, draft: messages.Draft) -> None:
        with app.app_context():
            try:
                answers[index] = messages.writer.write(draft)
            except BaseException as error:  # handed to the test thread to assert on
                answers[index] = error
            finally:
                db.session.remove()

    threads = [threading.Thread(target=post, args=(i, d), daemon=True) for i, d in enumerate(drafts)]
    with write_lock():
        for index, thread in enumerate(threads):
            thread.start()
            # Queue them in this order, so the batch order is known.
            deadline = time.monotonic() + WAIT_SECONDS
            while len(messages.writer.pending) < index + 1:
                assert time.monotonic() < deadline, "a draft never reached the queue"
                time.sleep(0.005)
        batch_size = len(messages.writer.pending)
    for thread in threads:
        thread.join(WAIT_SECONDS)
        assert not thread.is_alive(), "a writer never returned"
    assert batch_size == len(drafts)
    return answers


class Commits:
    """Counts the commits of the app's engine while it is entered."""

    def __init__(self) -> None:
        self.count = 0

    def _committed(self, _connection) -> None:
        self.count += 1

    def __enter__(self) -> Commits:
        sa.event.listen(db.engine, "commit", self._committed)
        return self

    def __exit__(self, *exc_info) -> None:
        sa.event.remove(db.engine, "commit", self._committed)


@pytest.fixture
def people(app):
    with app.app_context():
        ann, bob = users.register_user("ann", "password1"), users.register_user("bob", "password1")
        general = db.session.scalar(sa.select(Room).where(Room.name == "general"))
        return ann.id, bob.id, general.id


@both_databases
def test_a_client_id_repeated_within_one_batch_is_stored_once(app, ctx, people):
    ann, bob, general = people
    answers = run_in_one_batch(
        app,
        [
            messages.Draft(sender_id=ann, room_id=general, body="first", client_id="same"),
            messages.Draft(sender_id=ann, room_id=general, body="second try", client_id="same"),
            messages.Draft(sender_id=bob, room_id=general, body="bob's", client_id="same"),
            messages.Draft(sender_id=ann, room_id=general, body="third", client_id="same"),
        ],
    )
    assert stored() == [(ann, "same", "first"), (bob, "same", "bob's")]
    first, second, bobs, third = answers
    assert first.duplicate is False and bobs.duplicate is False
    assert second.duplicate is True and third.duplicate is True
    assert second.message == first.message == third.message
    assert first.message["body"] == "first"
    assert bobs.message["id"] != first.message["id"]


@both_databases
def test_a_client_id_stored_earlier_answers_with_the_stored_message_in_a_batch(app, ctx, people):
    ann, _bob, general = people
    user = db.session.get(User, ann)
    earlier = messages.post_room_message(user, "general", "original", "c-1").message
    answers = run_in_one_batch(
        app,
        [
            messages.Draft(sender_id=ann, room_id=general, body="new", client_id="c-2"),
            messages.Draft(sender_id=ann, room_id=general, body="resent", client_id="c-1"),
        ],
    )
    assert [a.duplicate for a in answers] == [False, True]
    assert answers[1].message == earlier
    assert stored() == [(ann, "c-1", "original"), (ann, "c-2", "new")]


@both_databases
def test_a_draft_that_cannot_be_stored_fails_alone(app, ctx, people):
    ann, bob, general = people
    answers = run_in_one_batch(
        app,
        [
            messages.Draft(sender_id=ann, room_id=general, body="fine", client_id="a-1"),
            messages.Draft(sender_id=bob, room_id=general, body="no such reply", client_id="b-1", reply_to_id=10**9),
            messages.Draft(sender_id=bob, room_id=general, body="also fine", client_id="b-2"),
        ],
    )
    fine, broken, also_fine = answers
    assert isinstance(broken, IntegrityError)
    assert fine.message["body"] == "fine" and also_fine.message["body"] == "also fine"
    assert stored() == [(ann, "a-1", "fine"), (bob, "b-2", "also fine")]


@both_databases
def test_the_write_refuses_banned_muted_and_non_member_senders_whatever_the_caller_checked(app, ctx, people):
    """Ban, mute and membership as they are inside the ordered write, not as any cache had them."""
    ann, bob, general = people
    cat = users.register_user("cat", "password1").id
    dan = users.register_user("dan", "password1").id
    with write_transaction() as session:
        session.execute(sa.update(User).where(User.id == bob).values(banned=True))
        session.execute(sa.update(User).where(User.id == cat).values(muted_until=utcnow() + timedelta(hours=1)))
        session.execute(sa.delete(RoomMembership).where(RoomMembership.user_id == dan))
    answers = run_in_one_batch(
        app,
        [
            messages.Draft(sender_id=ann, room_id=general, body="fine", client_id="a-1", room_name="general"),
            messages.Draft(sender_id=bob, room_id=general, body="banned", client_id="b-1", room_name="general"),
            messages.Draft(sender_id=cat, room_id=general, body="muted", client_id="c-1", room_name="general"),
            messages.Draft(sender_id=dan, room_id=general, body="left", client_id="d-1", room_name="general"),
            messages.Draft(sender_id=dan, recipient_id=ann, body="a dm is no room's", client_id="d-2"),
            messages.Draft(sender_id=ann, room_id=general, body="also fine", client_id="a-2", room_name="general"),
        ],
    )
    db.session.rollback()
    assert [getattr(a, "code", None) for a in answers] == [None, "banned", "muted", "forbidden", None, None]
    assert answers[0].message["sender"] == {"id": ann, "username": "ann", "is_admin": False}
    assert answers[4].message["recipient"]["username"] == "ann"
    assert stored() == [(ann, "a-1", "fine"), (dan, "d-2", "a dm is no room's"), (ann, "a-2", "also fine")]


@both_databases
def test_batched_ids_follow_queue_order(app, ctx, people):
    ann, bob, general = people
    bodies = [f"m{n}" for n in range(6)]
    with Commits() as commits:
        answers = run_in_one_batch(
            app,
            [
                messages.Draft(sender_id=(ann, bob)[n % 2], room_id=general, body=body, client_id=body)
                for n, body in enumerate(bodies)
            ],
        )
    assert commits.count == 1  # one batch, not each draft on its own after a failed batch
    ids = [a.message["id"] for a in answers]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert [body for _s, _c, body in stored()] == bodies


@both_databases
def test_a_batch_of_room_messages_dms_replies_and_nulls_is_one_commit_with_every_column_stored(app, ctx, people):
    ann, bob, general = people
    first = messages.writer.write(messages.Draft(sender_id=ann, room_id=general, body="first", client_id="f"))
    drafts = [
        messages.Draft(sender_id=ann, room_id=general, body="to the room", client_id="r1", room_name="general"),
        messages.Draft(sender_id=bob, recipient_id=ann, body="a dm", client_id=None),
        messages.Draft(sender_id=bob, room_id=general, body="a reply", client_id="r2", reply_to_id=first.message["id"]),
        messages.Draft(sender_id=ann, recipient_id=bob, body="dm back", client_id="d2"),
    ]
    with Commits() as commits:
        answers = run_in_one_batch(app, drafts)
    assert commits.count == 1
    assert not [a for a in answers if isinstance(a, BaseException)]
    with db.session.begin():
        rows = db.session.execute(
            sa.select(
                Message.id,
                Message.sender_id,
                Message.room_id,
                Message.recipient_id,
                Message.dm_pair,
                Message.body,
                Message.client_id,
                Message.deleted,
                Message.reply_to_id,
                Message.rev,
                Message.created_at,
            )
            .where(Message.id > first.message["id"])
            .order_by(Message.id)
        ).all()
    low, high = sorted((ann, bob))
    assert [tuple(row[1:9]) for row in rows] == [
        (ann, general, None, None, "to the room", "r1", False, None),
        (bob, None, ann, f"{low}:{high}", "a dm", None, False, None),
        (bob, general, None, None, "a reply", "r2", False, first.message["id"]),
        (ann, None, bob, f"{low}:{high}", "dm back", "d2", False, None),
    ]
    # Each answer is its own row's: id, rev and time as stored.
    for answer, row in zip(answers, rows, strict=True):
        assert (answer.message["id"], answer.message["rev"]) == (row.id, row.rev)
        assert answer.message["created_at"].startswith(row.created_at.isoformat()[:19])
    assert [row.rev for row in rows] == list(range(first.message["rev"] + 1, first.message["rev"] + 5))
