"""Uploads over HTTP and serving the files back, through the Flask test client."""

from __future__ import annotations

import io
import re

import pytest
import sqlalchemy as sa
from PIL import Image

from app import create_app
from app.config import TestingConfig
from app.extensions import db
from app.models import Attachment
from app.services import files, messages, rooms, users
from tests.api.test_api import assert_error, bearer, token_of
from tests.support import images


def multipart(data: bytes, name: str, content_type: str) -> tuple[bytes, str]:
    """A multipart body with one file field, built in memory (the test client would spool it to disk)."""
    boundary = "switchboard-test-boundary"
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def upload(client, data: bytes, name: str = "file.bin", headers=None, content_type: str | None = None):
    body, body_type = multipart(data, name, content_type or "application/octet-stream")
    return client.post("/api/uploads", data=body, headers=headers or {}, content_type=body_type)


def fetch(client, url: str, headers=None):
    """GET a file and close the response (the file handle the server opened with it)."""
    return client.get(url, headers=headers or {}, buffered=True)


def attachment_count(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count(Attachment.id)))


def stored_blobs(app) -> int:
    return len(list(app.extensions["switchboard.files"].blobs()))


@pytest.fixture
def alice(client, make_user):
    user = make_user("alice")
    return user, bearer(token_of(client, user))


def test_a_bearer_upload_answers_201_with_the_attachment(app, client, alice):
    _user, headers = alice
    data = images.image_bytes("PNG", (640, 480))

    response = upload(client, data, "holiday.png", headers)

    assert response.status_code == 201, response.data
    attachment = response.get_json()["attachment"]
    assert attachment == {
        "id": attachment["id"],
        "name": "holiday.png",
        "type": "image/png",
        "size": len(data),
        "url": f"/files/{attachment['id']}/holiday.png",
        "width": 640,
        "height": 480,
        "thumbnail_url": f"/files/{attachment['id']}/thumbnail/holiday.png",
    }
    original = fetch(client, attachment["url"], headers=headers)
    assert original.status_code == 200
    assert original.data == data
    assert original.mimetype == "image/png"
    assert original.headers["Content-Disposition"].startswith("inline")
    thumbnail = fetch(client, attachment["thumbnail_url"], headers=headers)
    assert thumbnail.status_code == 200
    assert Image.open(io.BytesIO(thumbnail.data)).size == (400, 300)


def test_a_png_named_txt_is_sniffed_as_png(client, alice):
    _user, headers = alice
    response = upload(client, images.image_bytes("PNG", (20, 10)), "notes.txt", headers, content_type="text/plain")
    assert response.status_code == 201
    attachment = response.get_json()["attachment"]
    assert (attachment["type"], attachment["width"], attachment["height"]) == ("image/png", 20, 10)


@pytest.mark.parametrize(
    ("name", "data", "claimed"),
    [
        ("cat.png", b"<!doctype html><html><script>alert(document.cookie)</script></html>", "image/png"),
        ("logo.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "image/svg+xml"),
        ("page.html", b"<html><body onload=alert(1)></body></html>", "text/html"),
    ],
)
def test_markup_is_never_an_image_and_is_served_as_a_download(client, alice, name, data, claimed):
    _user, headers = alice
    response = upload(client, data, name, headers, content_type=claimed)
    assert response.status_code == 201
    attachment = response.get_json()["attachment"]
    assert attachment["type"] == "text/plain"
    assert (attachment["width"], attachment["height"], attachment["thumbnail_url"]) == (None, None, None)

    served = fetch(client, attachment["url"], headers=headers)

    assert served.status_code == 200
    assert served.data == data
    assert served.headers["Content-Disposition"].startswith("attachment")
    assert name in served.headers["Content-Disposition"]
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert served.mimetype == "text/plain"
    assert "sandbox" in served.headers["Content-Security-Policy"]


def test_served_files_carry_a_strong_etag_private_caching_and_answer_304(client, alice):
    _user, headers = alice
    data = images.image_bytes("GIF", (30, 30))
    attachment = upload(client, data, "a.gif", headers).get_json()["attachment"]

    served = fetch(client, attachment["url"], headers=headers)

    etag = served.headers["ETag"]
    assert etag == f'"{files.sha256_hex(data)}"'
    cache_control = served.headers["Cache-Control"]
    assert "private" in cache_control and "max-age=" in cache_control and "public" not in cache_control
    again = fetch(client, attachment["url"], headers={**headers, "If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""
    changed = fetch(client, attachment["url"], headers={**headers, "If-None-Match": '"other"'})
    assert changed.status_code == 200


def test_a_truncated_jpeg_is_stored_as_a_plain_file(client, alice):
    _user, headers = alice
    response = upload(client, images.truncated_jpeg(), "broken.jpg", headers, content_type="image/jpeg")
    assert response.status_code == 201
    attachment = response.get_json()["attachment"]
    assert attachment["type"] == "application/octet-stream"
    assert attachment["thumbnail_url"] is None
    served = fetch(client, attachment["url"], headers=headers)
    assert served.headers["Content-Disposition"].startswith("attachment")


def test_a_decompression_bomb_is_refused_with_400_and_stores_nothing(app, client, alice):
    _user, headers = alice
    response = upload(client, images.png_bomb(), "bomb.png", headers)
    assert_error(response, 400, "invalid")
    assert "pixels" in response.get_json()["error"]["message"]
    assert attachment_count(app) == 0
    assert stored_blobs(app) == 0


def test_an_empty_file_is_400_and_a_missing_field_is_400(app, client, alice):
    _user, headers = alice
    assert_error(upload(client, b"", "empty.txt", headers), 400, "invalid")
    assert_error(client.post("/api/uploads", data={"other": "x"}, headers=headers), 400, "invalid")
    assert_error(client.post("/api/uploads", headers=headers), 400, "invalid")
    assert attachment_count(app) == 0


def test_over_the_limit_is_413_too_large_and_stores_nothing(app, client, alice):
    _user, headers = alice
    limit = app.config["UPLOAD_MAX_BYTES"]
    assert limit == 10 * 1024 * 1024

    assert_error(upload(client, b"x" * (limit + 1), "big.bin", headers), 413, "too_large")
    assert attachment_count(app) == 0
    exactly = upload(client, b"y" * limit, "exactly.bin", headers)
    assert exactly.status_code == 201
    assert exactly.get_json()["attachment"]["size"] == limit


def test_a_content_length_over_the_limit_is_refused_before_the_body_is_read(app, client, alice):
    _user, headers = alice

    announced = 50 * 1024 * 1024

    class Unreadable(io.RawIOBase):
        """Claims 50 MB (the test client takes the length from seeking), fails if read."""

        position = 0

        def readable(self):
            return True

        def seekable(self):
            return True

        def seek(self, offset, whence=0):
            self.position = {0: offset, 1: self.position + offset, 2: announced + offset}[whence]
            return self.position

        def readinto(self, buffer):
            raise AssertionError("the body was read")

    response = client.post(
        "/api/uploads",
        input_stream=Unreadable(),
        headers={**headers, "Content-Type": "multipart/form-data; boundary=x"},
    )
    assert_error(response, 413, "too_large")


def test_http_uploads_share_the_per_user_rate_limit(app, client, alice):
    _user, headers = alice
    for index in range(app.config["RATE_LIMIT_COUNT"]):
        assert upload(client, b"%d" % index, f"{index}.txt", headers).status_code == 201
    assert_error(upload(client, b"one more", "more.txt", headers), 429, "rate_limited")
    assert attachment_count(app) == app.config["RATE_LIMIT_COUNT"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic abc"}],
)
def test_an_upload_needs_a_signed_in_user(app, client, headers):
    assert_error(upload(client, b"hello", "a.txt", headers), 401, "unauthorized")
    assert attachment_count(app) == 0


# -- session cookie and CSRF --------------------------------------------------


@pytest.fixture
def csrf_client(app, database_url, tmp_path, make_user):
    """A browser-like client of an app that checks CSRF tokens, signed in through the login form."""
    checked = create_app(
        type(
            "Config",
            (TestingConfig,),
            {
                "SQLALCHEMY_DATABASE_URI": database_url,
                "UPLOAD_DIR": app.config["UPLOAD_DIR"],
                "WTF_CSRF_ENABLED": True,
            },
        )
    )
    user = make_user("carol")
    browser = checked.test_client()
    token = csrf_token_of(browser.get("/login").get_data(as_text=True))
    response = browser.post("/login", data={"username": user.username, "password": user.password, "csrf_token": token})
    assert response.status_code == 302
    page = browser.get("/").get_data(as_text=True)
    yield browser, csrf_token_of(page)
    with checked.app_context():
        db.session.remove()
        db.engine.dispose()


def csrf_token_of(page: str) -> str:
    found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert found, "no CSRF token on the page"
    return found.group(1)


def test_a_session_upload_with_the_csrf_header_is_accepted(csrf_client):
    browser, token = csrf_client
    response = upload(browser, b"from the browser", "note.txt", {"X-CSRFToken": token})
    assert response.status_code == 201, response.data
    attachment = response.get_json()["attachment"]
    served = fetch(browser, attachment["url"])
    assert served.status_code == 200 and served.data == b"from the browser"


@pytest.mark.parametrize("token", [None, "forged"])
def test_a_session_upload_without_a_valid_csrf_token_is_refused(app, csrf_client, token):
    browser, _real = csrf_client
    headers = {} if token is None else {"X-CSRFToken": token}
    assert_error(upload(browser, b"forged", "x.txt", headers), 403, "forbidden")
    assert attachment_count(app) == 0


# -- who may read ------------------------------------------------------------


@pytest.fixture
def people(client, make_user):
    names = ["owner", "member", "outsider"]
    made = {name: make_user(name) for name in names}
    return {name: (user, bearer(token_of(client, user))) for name, user in made.items()}


def test_an_unused_upload_is_visible_to_its_uploader_only(client, people):
    _owner, owner_headers = people["owner"]
    attachment = upload(client, b"draft", "draft.txt", owner_headers).get_json()["attachment"]

    assert fetch(client, attachment["url"], headers=owner_headers).status_code == 200
    assert fetch(client, attachment["url"], headers=people["member"][1]).status_code == 404
    assert fetch(client, attachment["url"]).status_code == 404
    assert fetch(client, f"/files/{attachment['id'] + 100}/x", headers=owner_headers).status_code == 404


def test_a_room_attachment_is_visible_to_members_of_the_room_now(app, client, people):
    owner, owner_headers = people["owner"]
    member, member_headers = people["member"]
    _outsider, outsider_headers = people["outsider"]
    attachment = upload(client, images.image_bytes("PNG", (8, 8)), "x.png", owner_headers).get_json()["attachment"]
    with app.app_context():
        for user in (owner, member):
            rooms.join_room(user.id, "team")
        posted = messages.post_room_message(users.get_user("owner"), "team", "", "c1", attachments=[attachment["id"]])
    assert posted.message["attachments"] == [attachment]

    for headers in (owner_headers, member_headers):
        assert fetch(client, attachment["url"], headers=headers).status_code == 200
        assert fetch(client, attachment["thumbnail_url"], headers=headers).status_code == 200
    for headers in (outsider_headers, {}):
        assert fetch(client, attachment["url"], headers=headers).status_code == 404
        assert fetch(client, attachment["thumbnail_url"], headers=headers).status_code == 404

    with app.app_context():
        rooms.leave_room(member.id, "team")
    assert fetch(client, attachment["url"], headers=member_headers).status_code == 404


def test_a_dm_attachment_is_visible_to_its_two_parties_only(app, client, people):
    owner, owner_headers = people["owner"]
    member, member_headers = people["member"]
    attachment = upload(client, b"for your eyes", "secret.txt", owner_headers).get_json()["attachment"]
    with app.app_context():
        posted = messages.post_direct_message(
            users.get_user("owner"), users.get_user("member"), "here", "c2", attachments=[attachment["id"]]
        )
    assert posted.message["attachments"] == [attachment]

    assert fetch(client, attachment["url"], headers=owner_headers).status_code == 200
    assert fetch(client, attachment["url"], headers=member_headers).status_code == 200
    assert fetch(client, attachment["url"], headers=people["outsider"][1]).status_code == 404


def test_a_private_room_attachment_is_hidden_from_non_members_and_a_deleted_message_hides_its_files(
    app, client, people
):
    owner, owner_headers = people["owner"]
    _outsider, outsider_headers = people["outsider"]
    attachment = upload(client, images.image_bytes("PNG", (8, 8)), "x.png", owner_headers).get_json()["attachment"]
    with app.app_context():
        rooms.join_room(owner.id, "hideout", private=True)
        posted = messages.post_room_message(users.get_user("owner"), "hideout", "psst", attachments=[attachment["id"]])
    assert fetch(client, attachment["url"], headers=owner_headers).status_code == 200
    assert fetch(client, attachment["url"], headers=outsider_headers).status_code == 404
    assert fetch(client, attachment["thumbnail_url"], headers=outsider_headers).status_code == 404

    with app.app_context():
        deleted = messages.delete_message(users.get_user("owner"), posted.message["id"])
    assert deleted["attachments"] == []
    assert fetch(client, attachment["url"], headers=owner_headers).status_code == 404


def test_a_logged_in_session_cookie_reads_files_too(app, client, people, login):
    _owner, owner_headers = people["owner"]
    attachment = upload(client, b"mine", "mine.txt", owner_headers).get_json()["attachment"]
    browser = login(people["owner"][0])
    assert fetch(browser, attachment["url"]).status_code == 200
    other = login(people["outsider"][0])
    assert fetch(other, attachment["url"]).status_code == 404


# -- search ------------------------------------------------------------------


def test_api_search_answers_like_the_search_event(app, client, alice):
    user, headers = alice
    with app.app_context():
        me = users.get_user(user.username)
        older = messages.post_room_message(me, "general", "budget draft v2").message
        newer = messages.post_room_message(me, "general", "the DRAFT budget, final").message
        messages.post_room_message(me, "general", "budget only")

    response = client.get("/api/search?q=draft+budget&limit=5", headers=headers)

    assert response.status_code == 200
    assert response.get_json() == {"messages": [newer, older]}
    only_general = client.get(
        "/api/search", query_string={"q": "budget", "room": "general", "limit": 1}, headers=headers
    )
    assert [m["body"] for m in only_general.get_json()["messages"]] == ["budget only"]
    assert_error(client.get("/api/search?q=", headers=headers), 400, "invalid")
    assert_error(client.get("/api/search", headers=headers), 400, "invalid")
    assert_error(client.get("/api/search?q=x&room=nowhere", headers=headers), 404, "not_found")
    assert_error(client.get("/api/search?q=x&limit=zero", headers=headers), 400, "invalid")
    assert_error(client.get("/api/search?q=budget"), 401, "unauthorized")


def test_api_search_of_a_private_room_is_forbidden_to_non_members(app, client, people):
    owner, owner_headers = people["owner"]
    with app.app_context():
        rooms.join_room(owner.id, "vault", private=True)
        secret = messages.post_room_message(users.get_user("owner"), "vault", "gold bars").message
    mine = client.get("/api/search?q=gold&room=vault", headers=owner_headers)
    assert mine.get_json() == {"messages": [secret]}
    assert_error(client.get("/api/search?q=gold&room=vault", headers=people["outsider"][1]), 403, "forbidden")
    assert client.get("/api/search?q=gold", headers=people["outsider"][1]).get_json() == {"messages": []}
