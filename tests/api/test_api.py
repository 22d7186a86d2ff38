"""The JSON API and the health check, through the Flask test client."""

import logging

import pytest
import sqlalchemy as sa

from app import create_app
from app.config import TestingConfig
from app.extensions import db
from app.models import Message, User, utcnow
from app.services import messages, rooms, users
from tests.support.moderation import ban

UNREACHABLE_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:1/x"


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.data
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def user_count(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count(User.id)))


def token_of(client, user) -> str:
    response = client.post("/api/token", json={"username": user.username, "password": user.password})
    assert response.status_code == 200, response.data
    return response.get_json()["token"]


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


# -- /api/register -----------------------------------------------------------


def test_register_creates_a_user(app, client):
    response = client.post("/api/register", json={"username": "Ann.B", "password": "tulip garden 1"})
    assert response.status_code == 201
    body = response.get_json()
    assert body == {"user": {"id": body["user"]["id"], "username": "Ann.B", "is_admin": False}}
    assert isinstance(body["user"]["id"], int)
    with app.app_context():
        assert [room.name for room in rooms.rooms_of(body["user"]["id"])] == ["general"]


@pytest.mark.parametrize(
    "payload",
    [
        {"username": "ab", "password": "tulip garden 1"},
        {"username": "a" * 33, "password": "tulip garden 1"},
        {"username": "has space", "password": "tulip garden 1"},
        {"username": "ann", "password": "short"},
        {"username": "ann", "password": "p" * 129},
        {"username": "ann"},
        {"password": "tulip garden 1"},
        {"username": 5, "password": "tulip garden 1"},
        {"username": "ann", "password": ["tulip garden 1"]},
        {"username": "ann", "password": "password\u0000"},
        {"username": "ann", "password": "password\ud800"},
        {"username": "ann\u0000", "password": "tulip garden 1"},
        {},
    ],
)
def test_register_refuses_invalid_input(app, client, payload):
    assert_error(client.post("/api/register", json=payload), 400, "invalid")
    assert user_count(app) == 0


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ("username=ann&password=password1", "application/x-www-form-urlencoded"),
        ("not json at all", "application/json"),
        ('{"username": "ann", "password": "tulip garden 1"', "application/json"),
        ('["ann", "tulip garden 1"]', "application/json"),
        ('"ann"', "application/json"),
        ("", "application/json"),
        ('{"username": "ann", "password": "tulip garden 1"}', "text/plain"),
    ],
)
def test_register_refuses_a_body_that_is_not_a_json_object(app, client, data, content_type):
    assert_error(client.post("/api/register", data=data, content_type=content_type), 400, "invalid")
    assert user_count(app) == 0


@pytest.mark.parametrize("second", ["ann", "ANN"])
def test_register_refuses_a_taken_name_with_409(app, client, make_user, second):
    make_user("Ann")
    assert_error(client.post("/api/register", json={"username": second, "password": "tulip garden 1"}), 409, "conflict")
    assert user_count(app) == 1


# -- /api/token ----------------------------------------------------------------


def test_token_answers_token_expiry_and_user(app, client, make_user):
    ann = make_user("ann")
    response = client.post("/api/token", json={"username": "ANN", "password": ann.password})
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"token", "expires_at", "user"}
    assert body["user"] == ann.to_dict()
    assert isinstance(body["token"], str) and body["token"]
    assert body["expires_at"].endswith("Z")
    rooms_response = client.get("/api/rooms", headers=bearer(body["token"]))
    assert rooms_response.status_code == 200


@pytest.mark.parametrize(
    "payload",
    [
        {"username": "ann", "password": "wrong password"},
        {"username": "nobody", "password": "tulip garden 1"},
        {"username": "ann"},
        {"username": ["ann"], "password": "x"},
        {"username": "ann\u0000", "password": "tulip garden 1"},
        {"username": "ann", "password": "\udfff"},
        {},
    ],
)
def test_token_refuses_bad_credentials_with_401(client, make_user, payload):
    make_user("ann")
    assert_error(client.post("/api/token", json=payload), 401, "unauthorized")


def test_token_refuses_a_non_json_body_with_400(client):
    assert_error(client.post("/api/token", data="username=ann", content_type="text/plain"), 400, "invalid")


def test_token_refuses_a_banned_user_with_403(app, client, make_user):
    ann = make_user("ann")
    with app.app_context():
        ban("ann")
    assert_error(client.post("/api/token", json={"username": "ann", "password": ann.password}), 403, "banned")


# -- /api/rooms ----------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic YW5uOnBhc3N3b3JkMQ=="},
        {"Authorization": "not-a-token"},
    ],
)
def test_rooms_needs_a_valid_bearer_token(client, headers):
    assert_error(client.get("/api/rooms", headers=headers), 401, "unauthorized")


def test_rooms_refuses_a_session_cookie_alone(client, make_user, login):
    signed_in = login(make_user("ann"))
    assert_error(signed_in.get("/api/rooms"), 401, "unauthorized")


def test_rooms_refuses_the_token_of_a_user_banned_later(app, client, make_user):
    ann = make_user("ann")
    token = token_of(client, ann)
    with app.app_context():
        ban("ann")
    assert_error(client.get("/api/rooms", headers=bearer(token)), 403, "banned")


def test_rooms_lists_every_room_with_members_and_online(app, client, make_user, socket_client):
    ann, bob = make_user("ann"), make_user("bob")
    with app.app_context():
        rooms.join_room(ann.id, "random")
        rooms.join_room(bob.id, "zebra")
    socket_client(ann)
    response = client.get("/api/rooms", headers=bearer(token_of(client, bob)))
    assert response.status_code == 200
    assert response.get_json() == {
        "rooms": [
            {"name": "general", "members": 2, "online": 1, "topic": "", "private": False},
            {"name": "random", "members": 1, "online": 1, "topic": "", "private": False},
            {"name": "zebra", "members": 1, "online": 0, "topic": "", "private": False},
        ]
    }


# -- /api/rooms/<name>/messages --------------------------------------------------


@pytest.fixture
def reader(client, make_user):
    """Bearer headers of a signed-up user."""
    return bearer(token_of(client, make_user("reader")))


def post_many(app, count: int, room: str = "general") -> list[int]:
    """Store ``count`` messages from a fresh user in one transaction (paging is about reading)."""
    with app.app_context():
        writer = users.register_user("writer", "tulip garden 1")
        target, _ = rooms.join_room(writer.id, room)
        rows = [
            Message(sender_id=writer.id, room_id=target.id, body=f"m{i}", created_at=utcnow()) for i in range(count)
        ]
        for row in rows:
            row.rev = messages.next_rev(db.session)
            db.session.add(row)
            db.session.flush()
        db.session.commit()
        return [row.id for row in rows]


def page_of(client, headers, url: str) -> tuple[list[int], bool]:
    response = client.get(url, headers=headers)
    assert response.status_code == 200, response.data
    body = response.get_json()
    assert set(body) == {"messages", "has_more"}
    return [m["id"] for m in body["messages"]], body["has_more"]


def test_room_messages_page_backwards_oldest_first(app, client, reader):
    posted = post_many(app, 7)
    assert page_of(client, reader, "/api/rooms/general/messages?limit=3") == (posted[4:], True)
    assert page_of(client, reader, f"/api/rooms/general/messages?limit=3&before={posted[4]}") == (posted[1:4], True)
    assert page_of(client, reader, f"/api/rooms/general/messages?limit=3&before={posted[1]}") == (posted[:1], False)
    assert page_of(client, reader, "/api/rooms/general/messages") == (posted, False)


def test_room_messages_carry_the_message_shape(app, client, reader):
    [message_id] = post_many(app, 1)
    response = client.get("/api/rooms/general/messages", headers=reader)
    [message] = response.get_json()["messages"]
    assert message == {
        "id": message_id,
        "room": "general",
        "sender": {"id": message["sender"]["id"], "username": "writer", "is_admin": False},
        "recipient": None,
        "body": "m0",
        "client_id": None,
        "created_at": message["created_at"],
        "deleted": False,
        "rev": message["rev"],
        "edited_at": None,
        "reply_to": None,
        "mentions": [],
        "reactions": [],
        "attachments": [],
    }


def test_room_messages_limit_defaults_to_50_and_caps_at_100(app, client, reader):
    posted = post_many(app, 101)
    assert page_of(client, reader, "/api/rooms/general/messages") == (posted[-50:], True)
    assert page_of(client, reader, "/api/rooms/general/messages?limit=500") == (posted[-100:], True)
    assert page_of(client, reader, "/api/rooms/general/messages?limit=99999999999") == (posted[-100:], True)


def test_room_messages_of_a_room_the_reader_is_not_in(app, client, reader):
    posted = post_many(app, 2, room="random")
    assert page_of(client, reader, "/api/rooms/random/messages") == (posted, False)


@pytest.mark.parametrize("name", ["nowhere", "UPPER", "a" * 65, "bad.name"])
def test_room_messages_of_an_unknown_room_is_404(client, reader, name):
    assert_error(client.get(f"/api/rooms/{name}/messages", headers=reader), 404, "not_found")


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=-1",
        "limit=ten",
        "limit=1.5",
        "before=0",
        "before=-3",
        "before=abc",
        "before=1e3",
        "before=99999999999",
        "before=" + "9" * 5000,
    ],
)
def test_room_messages_refuse_bad_paging_with_400(client, reader, query):
    assert_error(client.get(f"/api/rooms/general/messages?{query}", headers=reader), 400, "invalid")


def test_room_messages_need_a_token(client):
    assert_error(client.get("/api/rooms/general/messages"), 401, "unauthorized")


# -- errors and health -----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/api/nothing-here", 404),
        ("post", "/api/nothing/here", 404),
        ("get", "/api/", 404),
        ("get", "/api/token", 405),
        ("delete", "/api/rooms", 405),
    ],
)
def test_unknown_api_paths_and_methods_answer_json(client, method, path, status):
    response = getattr(client, method)(path)
    assert_error(response, status, "not_found" if status == 404 else "invalid")


def test_an_unexpected_api_error_is_a_json_500_and_logged(client, reader, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("history blew up")

    monkeypatch.setattr(messages, "room_history", broken)
    with caplog.at_level(logging.ERROR):
        response = client.get("/api/rooms/general/messages", headers=reader)
    assert_error(response, 500, "internal")
    assert "history blew up" in caplog.text


def test_healthz_is_ok_when_the_database_answers(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_healthz_is_503_when_the_database_is_unreachable(caplog):
    unreachable = create_app(type("Config", (TestingConfig,), {"SQLALCHEMY_DATABASE_URI": UNREACHABLE_POSTGRES}))
    try:
        with caplog.at_level(logging.ERROR):
            response = unreachable.test_client().get("/healthz")
        assert response.status_code == 503
        assert response.get_json() == {"status": "unavailable"}
    finally:
        with unreachable.app_context():
            db.engine.dispose()


# -- password rules at sign-up -----------------------------------------------


@pytest.mark.parametrize(
    ("username", "password", "reason"),
    [
        ("ann", "password", "common"),
        ("ann", "Password1", "common"),
        ("ann", "12345678", "common"),
        ("ann", "qwertyuiop", "common"),
        ("ann", "iloveyou", "common"),
        ("ann", " " * 12, "spaces"),
        ("ann", "\t \u3000 \n  \t ", "spaces"),
        ("Margaret", "margaret", "username"),
        ("Margaret.T", "MARGARET.T", "username"),
    ],
)
def test_register_refuses_a_common_blank_or_username_password_saying_why(app, client, username, password, reason):
    response = client.post("/api/register", json={"username": username, "password": password})

    assert_error(response, 400, "invalid")
    assert reason in response.get_json()["error"]["message"]
    assert user_count(app) == 0


def test_the_common_password_list_is_large():
    from app.services import validation

    common = validation.common_passwords()
    assert len(common) >= 10_000
    assert {"password", "123456789", "letmein1"} <= common
    assert "correct horse battery" not in common


# -- strict integers and token contents --------------------------------------


@pytest.mark.parametrize("value", ["１２", "1_000", " 5", "5 ", "+5", "0x10", "1e3", "٣"])
def test_query_integers_take_ascii_digits_only(app, client, make_user, value):
    token = token_of(client, make_user())

    response = client.get(f"/api/rooms/general/messages?limit={value}", headers=bearer(token))

    assert_error(response, 400, "invalid")


@pytest.mark.parametrize("uid", ["1", True, 1.0, None, [1], -1, 2**40])
def test_a_signed_token_whose_uid_is_not_an_integer_id_is_refused(app, client, make_user, uid):
    from itsdangerous import URLSafeTimedSerializer

    make_user()
    forged = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt=users.TOKEN_SALT).dumps({"uid": uid})

    assert_error(client.get("/api/rooms", headers=bearer(forged)), 401, "unauthorized")
