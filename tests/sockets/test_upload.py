"""The `upload` event through the Flask-SocketIO test client."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import Attachment
from tests.support import images


def attachment_count(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count(Attachment.id)))


def test_a_binary_upload_answers_the_attachment(app, make_user, socket_client):
    user = make_user()
    sio = socket_client(user)
    data = images.image_bytes("JPEG", (120, 80))

    ack = sio.emit("upload", {"name": "photo.txt", "type": "text/plain", "data": data}, callback=True)

    assert ack["ok"] is True, ack
    attachment = ack["attachment"]
    assert (attachment["type"], attachment["width"], attachment["height"]) == ("image/jpeg", 120, 80)
    assert attachment["size"] == len(data)
    assert attachment["name"] == "photo.txt"
    assert attachment["url"] == f"/files/{attachment['id']}/photo.txt"
    assert attachment_count(app) == 1


def test_the_socket_limit_is_512_kb(app, make_user, socket_client):
    sio = socket_client(make_user())
    limit = app.config["SOCKET_UPLOAD_MAX_BYTES"]
    assert limit == 512 * 1024

    ack = sio.emit("upload", {"name": "big.bin", "data": b"x" * (limit + 1)}, callback=True)
    assert ack["ok"] is False and ack["error"]["code"] == "too_large"
    assert attachment_count(app) == 0
    ack = sio.emit("upload", {"name": "fits.bin", "data": b"x" * limit}, callback=True)
    assert ack["ok"] is True and ack["attachment"]["size"] == limit


@pytest.mark.parametrize(
    "payload",
    [
        None,
        "not an object",
        {"data": b"x"},
        {"name": "", "data": b"x"},
        {"name": "n" * 201, "data": b"x"},
        {"name": 7, "data": b"x"},
        {"name": "a.txt"},
        {"name": "a.txt", "data": "text, not binary"},
        {"name": "a.txt", "data": b""},
        {"name": "a.txt", "data": b"x", "type": 5},
        {"name": "bomb.png", "data": images.png_bomb()},
    ],
)
def test_bad_uploads_are_invalid_and_store_nothing(app, make_user, socket_client, payload):
    sio = socket_client(make_user())
    ack = sio.emit("upload", payload, callback=True)
    assert ack["ok"] is False and ack["error"]["code"] == "invalid", ack
    assert sio.is_connected()
    assert attachment_count(app) == 0


def test_a_muted_user_may_not_upload(app, make_user, socket_client):
    from app.services import moderation

    admin = make_user(admin=True)
    user = make_user()
    sio = socket_client(user)
    with app.app_context():
        moderation.mute_user(admin.id, user.username, 300)
    ack = sio.emit("upload", {"name": "a.txt", "data": b"x"}, callback=True)
    assert ack["ok"] is False and ack["error"]["code"] == "muted"
    assert attachment_count(app) == 0


def test_uploads_count_against_the_message_rate_limit(app, make_user, socket_client):
    sio = socket_client(make_user())
    limit = app.config["RATE_LIMIT_COUNT"]
    for index in range(limit):
        ack = sio.emit("upload", {"name": f"{index}.txt", "data": b"%d" % index}, callback=True)
        assert ack["ok"] is True, ack
    refused = sio.emit("upload", {"name": "one-more.txt", "data": b"more"}, callback=True)
    assert refused["ok"] is False and refused["error"]["code"] == "rate_limited"
    message = sio.emit("message", {"room": "general", "body": "and a message"}, callback=True)
    assert message["ok"] is False and message["error"]["code"] == "rate_limited"
    assert attachment_count(app) == limit


def test_search_answers_matching_messages_newest_first(make_user, socket_client):
    sio = socket_client(make_user())
    first = sio.emit("message", {"room": "general", "body": "Release notes for Zoë"}, callback=True)["message"]
    second = sio.emit("message", {"room": "general", "body": "zoë wrote the release NOTES"}, callback=True)["message"]
    sio.emit("message", {"room": "general", "body": "unrelated"}, callback=True)

    ack = sio.emit("search", {"q": "ZOË notes release"}, callback=True)

    assert ack == {"ok": True, "messages": [second, first]}
    refused = sio.emit("search", {"q": ""}, callback=True)
    assert refused["ok"] is False and refused["error"]["code"] == "invalid"
    missing = sio.emit("search", {"q": "notes", "room": "nowhere"}, callback=True)
    assert missing["ok"] is False and missing["error"]["code"] == "not_found"


# -- attachments on messages and DMs -----------------------------------------


def upload_one(sio, name: str = "a.txt", data: bytes = b"some bytes") -> dict:
    ack = sio.emit("upload", {"name": name, "data": data}, callback=True)
    assert ack["ok"] is True, ack
    return ack["attachment"]


def test_a_message_carries_its_attachments_and_may_have_no_body(app, make_user, socket_client):
    from app.models import Message

    ann, bob = make_user(), make_user()
    ann_sio, bob_sio = socket_client(ann), socket_client(bob)
    bob_sio.get_received()
    picture = upload_one(ann_sio, "p.png", images.image_bytes("PNG", (40, 30)))
    notes = upload_one(ann_sio, "notes.txt", b"notes")

    ack = ann_sio.emit(
        "message",
        {"room": "general", "body": "  ", "client_id": "c1", "attachments": [notes["id"], picture["id"]]},
        callback=True,
    )

    assert ack["ok"] is True, ack
    message = ack["message"]
    assert message["body"] == ""
    assert message["attachments"] == sorted([picture, notes], key=lambda a: a["id"])
    with app.app_context():
        # The writer builds the payload without loading the row: it must equal the row's own.
        assert db.session.get(Message, message["id"]).to_dict() == message
    [pushed] = [e["args"] for e in bob_sio.get_received() if e["name"] == "message"]
    assert pushed == message
    history = bob_sio.emit("history", {"room": "general"}, callback=True)
    assert history["messages"][-1] == message
    # A retry with the same client_id answers the stored message and claims nothing twice.
    again = ann_sio.emit(
        "message", {"room": "general", "body": "", "client_id": "c1", "attachments": [notes["id"]]}, callback=True
    )
    assert again == ack


def test_a_dm_carries_attachments(app, make_user, socket_client):
    ann, bob = make_user(), make_user()
    ann_sio = socket_client(ann)
    attachment = upload_one(ann_sio)

    ack = ann_sio.emit(
        "dm", {"to_user": bob.username, "body": "for you", "attachments": [attachment["id"]]}, callback=True
    )

    assert ack["ok"] is True, ack
    assert ack["message"]["attachments"] == [attachment]


def test_attachments_must_be_unused_uploads_of_the_sender(app, make_user, socket_client):
    ann, bob = make_user(), make_user()
    ann_sio, bob_sio = socket_client(ann), socket_client(bob)
    bobs = upload_one(bob_sio, "bob.txt", b"bob's")
    mine = upload_one(ann_sio)
    assert ann_sio.emit("message", {"room": "general", "body": "x", "attachments": [mine["id"]]}, callback=True)["ok"]

    for attachments, code in [
        ([bobs["id"]], "not_found"),
        ([mine["id"]], "not_found"),  # already used
        ([999_999], "not_found"),
        ([mine["id"], mine["id"]], "invalid"),
        (["1"], "invalid"),
        ("1", "invalid"),
        (list(range(1, 12)), "too_large"),
    ]:
        ack = ann_sio.emit("message", {"room": "general", "body": "x", "attachments": attachments}, callback=True)
        assert ack["ok"] is False and ack["error"]["code"] == code, (attachments, ack)
        ack = ann_sio.emit("dm", {"to_user": bob.username, "body": "x", "attachments": attachments}, callback=True)
        assert ack["ok"] is False and ack["error"]["code"] == code, (attachments, ack)
    empty = ann_sio.emit("message", {"room": "general", "body": " ", "attachments": []}, callback=True)
    assert empty["ok"] is False and empty["error"]["code"] == "invalid"
    with app.app_context():
        assert db.session.get(Attachment, bobs["id"]).message_id is None


def test_two_messages_racing_for_one_upload_cannot_both_claim_it(app, make_user):
    """Both pass the early check; the claim inside the insert transaction lets only one through."""
    from app.errors import ServiceError
    from app.services import files as files_service
    from app.services import messages, users

    ann = make_user()
    with app.app_context():
        user = users.get_user(ann.username)
        attachment = files_service.save_upload(
            user, "a.txt", b"once", app.extensions["switchboard.files"], files_service.UploadLimits(100, 100, 400)
        )
        first = messages.Draft(
            sender_id=user.id, room_id=1, body="one", client_id=None, attachment_ids=[attachment["id"]]
        )
        second = messages.Draft(
            sender_id=user.id, room_id=1, body="two", client_id=None, attachment_ids=[attachment["id"]]
        )
        writer = messages.MessageWriter()
        writer.pending.append(first)  # queued by another sender that has not taken the lock yet
        with pytest.raises(ServiceError) as refused:
            writer.write(second)
        assert refused.value.code == "not_found"
        assert first.done and first.error is None
        assert first.result["attachments"] == [attachment]
        assert db.session.get(Attachment, attachment["id"]).message_id == first.result["id"]
