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
