"""Full-text search: the same cases on SQLite (FTS5) and PostgreSQL (tsvector + GIN)."""

from __future__ import annotations

import pytest

from app.errors import ServiceError
from app.services import messages, moderation, rooms, search, users

both_databases = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def people(ctx):
    made = {name: users.register_user(name, "correct horse battery") for name in ("ann", "bob", "cid")}
    return made


def post(user, body, room="general") -> int:
    return messages.post_room_message(user, room, body).message["id"]


def dm(user, to, body) -> int:
    return messages.post_direct_message(user, to, body).message["id"]


def found(user, q, **options) -> list[int]:
    return [message["id"] for message in search.search_messages(user, q, **options)]


@both_databases
def test_every_word_in_any_order_whole_words_newest_first(people):
    ann = people["ann"]
    both = post(ann, "the deploy of the release train is done")
    reversed_order = post(ann, "train the release, then deploy")
    only_one = post(ann, "deploy without the other word")
    post(ann, "deployment trains are not whole words")

    assert found(ann, "deploy train") == [reversed_order, both]
    assert found(ann, "train deploy") == [reversed_order, both]
    assert found(ann, "deploy") == [only_one, reversed_order, both]
    assert found(ann, "deploy, train!") == [reversed_order, both]
    assert found(ann, "deploy deploy train") == [reversed_order, both]


@both_databases
def test_case_and_unicode_case_are_ignored(people):
    ann = people["ann"]
    lower = post(ann, "zoë était là")
    upper = post(ann, "ZOË ÉTAIT LÀ")
    post(ann, "STRASSE ohne Umlaut")

    assert found(ann, "ZOË") == [upper, lower]
    assert found(ann, "zoë ÉTAIT") == [upper, lower]
    assert found(ann, "Hello") == []


def test_accents_are_folded_on_sqlite(people):
    ann = people["ann"]
    accented = post(ann, "Zoë a mangé une crème brûlée")
    assert found(ann, "zoe creme brulee") == [accented]


@both_databases
def test_search_syntax_in_the_query_is_plain_words(people):
    ann = people["ann"]
    plain = post(ann, "NOT OR AND NEAR body")
    assert found(ann, 'NOT "body') == [plain]
    assert found(ann, "body*") == [plain]
    assert found(ann, "body:1 (OR)") == []  # "1" is a word no body holds


@both_databases
def test_only_rooms_the_user_is_a_member_of_now_and_their_own_dms(people):
    ann, bob, cid = people["ann"], people["bob"], people["cid"]
    rooms.join_room(ann.id, "secret-plans")
    in_general = post(ann, "launch codes in general")
    in_other_room = post(ann, "launch codes in secret plans", room="secret-plans")
    ann_to_bob = dm(ann, bob, "launch codes for bob")
    bob_to_cid = dm(bob, cid, "launch codes between bob and cid")

    assert found(ann, "launch codes") == [ann_to_bob, in_other_room, in_general]
    assert found(bob, "launch codes") == [bob_to_cid, ann_to_bob, in_general]
    assert found(cid, "launch codes") == [bob_to_cid, in_general]
    rooms.leave_room(ann.id, "secret-plans")
    assert found(ann, "launch codes") == [ann_to_bob, in_general]


@both_databases
def test_one_room_or_the_dms_with_one_user(people):
    ann, bob, cid = people["ann"], people["bob"], people["cid"]
    rooms.join_room(ann.id, "ops")
    in_ops = post(ann, "pager alert", room="ops")
    in_general = post(ann, "pager alert")
    with_bob = dm(ann, bob, "pager alert to bob")
    dm(ann, cid, "pager alert to cid")

    assert found(ann, "pager alert", room="ops") == [in_ops]
    assert found(ann, "pager alert", room="general") == [in_general]
    assert found(ann, "pager alert", with_user="bob") == [with_bob]
    assert found(bob, "pager alert", with_user="ann") == [with_bob]
    assert found(bob, "pager alert", with_user="cid") == []


@both_databases
def test_deleted_messages_are_never_found(people):
    ann = people["ann"]
    kept = post(ann, "quarterly numbers attached")
    removed = post(ann, "quarterly numbers, wrong version")
    admin = users.create_admin("root", "correct horse battery")[0]
    moderation.delete_message(admin.id, removed)

    assert found(ann, "quarterly numbers") == [kept]


@both_databases
def test_an_edit_is_found_by_its_new_words_not_its_old(people):
    ann = people["ann"]
    message_id = post(ann, "meeting at noon")

    messages.edit_message(ann, message_id, "lunch at one")

    assert found(ann, "noon") == []
    assert found(ann, "lunch") == [message_id]
    assert found(ann, "at") == [message_id]


@both_databases
def test_a_private_room_is_searched_by_its_members_only(people):
    ann, bob = people["ann"], people["bob"]
    rooms.join_room(ann.id, "hideout", private=True)
    secret = post(ann, "the treasure map", room="hideout")
    public = post(ann, "a treasure hunt for everyone")

    assert found(ann, "treasure") == [public, secret]
    assert found(ann, "treasure", room="hideout") == [secret]
    assert found(bob, "treasure") == [public]
    with pytest.raises(ServiceError) as refused:
        search.search_messages(bob, "treasure", room="hideout")
    assert refused.value.code == "forbidden"


@both_databases
def test_the_limit_defaults_to_20_and_caps_at_100(people):
    ann = people["ann"]
    posted = [post(ann, f"flood number {index}") for index in range(105)]

    assert found(ann, "flood") == posted[::-1][:20]
    assert found(ann, "flood", limit=5) == posted[::-1][:5]
    assert len(found(ann, "flood", limit=1000)) == 100


@pytest.mark.parametrize(
    ("q", "options", "code"),
    [
        ("", {}, "invalid"),
        ("x" * 201, {}, "invalid"),
        (None, {}, "invalid"),
        (5, {}, "invalid"),
        ("?!", {}, "invalid"),
        ("ok", {"limit": 0}, "invalid"),
        ("ok", {"limit": "ten"}, "invalid"),
        ("ok", {"room": "no-such-room"}, "not_found"),
        ("ok", {"room": "Bad Name"}, "invalid"),
        ("ok", {"with_user": "nobody"}, "not_found"),
        ("ok", {"with_user": 5}, "invalid"),
        ("ok", {"room": "general", "with_user": "bob"}, "invalid"),
    ],
)
def test_bad_searches_are_refused(people, q, options, code):
    with pytest.raises(ServiceError) as refused:
        search.search_messages(people["ann"], q, **options)
    assert refused.value.code == code
