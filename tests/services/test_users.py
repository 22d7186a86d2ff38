"""Accounts: registration rules, credentials, bearer tokens and admin rights."""

import time

import itsdangerous
import pytest
import sqlalchemy as sa

from app.errors import ServiceError
from app.extensions import db
from app.models import RoomMembership, User
from app.services import rooms, users
from tests.support.moderation import ban, unban

SECRET = "token-secret"
TTL = 3600


def user_count() -> int:
    return db.session.scalar(sa.select(sa.func.count(User.id)))


@pytest.mark.parametrize("name", ["abc", "a" * 32, "Ann_B.c-9", "___", "0.9"])
def test_register_accepts_valid_usernames(ctx, name):
    user = users.register_user(name, "password1")
    assert user.username == name
    assert user.is_admin is False
    assert [room.name for room in rooms.rooms_of(user.id)] == ["general"]


@pytest.mark.parametrize(
    "name",
    ["ab", "a" * 33, "ann bob", "ann!", "ann@x", "añn", "", None, 42, ["ann"], "ann\n"],
)
def test_register_refuses_invalid_usernames(ctx, name):
    with pytest.raises(ServiceError) as refused:
        users.register_user(name, "password1")
    assert refused.value.code == "invalid"
    assert user_count() == 0


@pytest.mark.parametrize("password", ["p" * 8, "p" * 128])
def test_register_accepts_password_lengths_at_the_limits(ctx, password):
    user = users.register_user("ann", password)
    assert users.authenticate("ann", password).id == user.id


@pytest.mark.parametrize("password", ["p" * 7, "p" * 129, "", None, 12345678])
def test_register_refuses_bad_passwords(ctx, password):
    with pytest.raises(ServiceError) as refused:
        users.register_user("ann", password)
    assert refused.value.code == "invalid"
    assert user_count() == 0


@pytest.mark.parametrize("second", ["ann", "ANN", "Ann", "aNn"])
def test_usernames_are_unique_case_insensitively(ctx, second):
    users.register_user("Ann", "password1")
    with pytest.raises(ServiceError) as refused:
        users.register_user(second, "password2")
    assert refused.value.code == "conflict"
    assert user_count() == 1
    assert users.find_user(second).username == "Ann"


def test_register_makes_the_user_a_member_of_general(ctx):
    user = users.register_user("ann", "password1")
    general = rooms.find_room("general")
    assert db.session.get(RoomMembership, (user.id, general.id)) is not None


def test_authenticate_accepts_the_right_password_in_any_case_of_the_name(ctx):
    user = users.register_user("Ann", "password1")
    assert users.authenticate("ann", "password1").id == user.id
    assert users.authenticate("ANN", "password1").id == user.id


@pytest.mark.parametrize(
    ("username", "password"),
    [("ann", "wrong-password"), ("nobody", "password1"), ("ann", None), (None, "password1"), (["ann"], "x")],
)
def test_authenticate_refuses_bad_credentials(ctx, username, password):
    users.register_user("ann", "password1")
    with pytest.raises(ServiceError) as refused:
        users.authenticate(username, password)
    assert refused.value.code == "unauthorized"


def test_authenticate_refuses_a_banned_user_with_banned(ctx):
    users.register_user("ann", "password1")
    ban("ann", "spam")
    with pytest.raises(ServiceError) as refused:
        users.authenticate("ann", "password1")
    assert refused.value.code == "banned"
    assert "spam" in refused.value.message


def test_a_banned_user_with_a_wrong_password_learns_nothing_about_the_ban(ctx):
    users.register_user("ann", "password1")
    ban("ann")
    with pytest.raises(ServiceError) as refused:
        users.authenticate("ann", "wrong-password")
    assert refused.value.code == "unauthorized"


def test_token_round_trip(ctx):
    user = users.register_user("ann", "password1")
    issued = users.issue_token(user, SECRET, TTL)
    assert issued["user"] == {"id": user.id, "username": "ann", "is_admin": False}
    assert issued["expires_at"].endswith("Z")
    assert users.user_from_token(issued["token"], SECRET, TTL).id == user.id


def test_expired_token_is_unauthorized(ctx, monkeypatch):
    user = users.register_user("ann", "password1")
    # Sign as if 100 seconds ago; the token lives 10 seconds.
    monkeypatch.setattr(itsdangerous.TimestampSigner, "get_timestamp", lambda self: int(time.time()) - 100)
    token = users.issue_token(user, SECRET, 10)["token"]
    monkeypatch.undo()
    with pytest.raises(ServiceError) as refused:
        users.user_from_token(token, SECRET, 10)
    assert refused.value.code == "unauthorized"
    assert "expired" in refused.value.message


@pytest.mark.parametrize(
    "tamper",
    [
        lambda token: token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        lambda token: "x" + token,
        lambda token: token.split(".")[0],
        lambda token: "",
        lambda token: None,
        lambda token: 12345,
        lambda token: {"token": token},
    ],
)
def test_tampered_or_malformed_token_is_unauthorized(ctx, tamper):
    user = users.register_user("ann", "password1")
    token = users.issue_token(user, SECRET, TTL)["token"]
    with pytest.raises(ServiceError) as refused:
        users.user_from_token(tamper(token), SECRET, TTL)
    assert refused.value.code == "unauthorized"


def test_token_signed_with_another_secret_is_unauthorized(ctx):
    user = users.register_user("ann", "password1")
    token = users.issue_token(user, "another-secret", TTL)["token"]
    with pytest.raises(ServiceError) as refused:
        users.user_from_token(token, SECRET, TTL)
    assert refused.value.code == "unauthorized"


def test_token_of_a_banned_user_is_refused_with_banned(ctx):
    user = users.register_user("ann", "password1")
    token = users.issue_token(user, SECRET, TTL)["token"]
    ban("ann")
    with pytest.raises(ServiceError) as refused:
        users.user_from_token(token, SECRET, TTL)
    assert refused.value.code == "banned"
    unban("ann")
    # The ban revoked it for good: unbanning does not bring it back, a new token works.
    with pytest.raises(ServiceError) as revoked:
        users.user_from_token(token, SECRET, TTL)
    assert revoked.value.code == "unauthorized"
    assert users.user_from_token(users.issue_token(user, SECRET, TTL)["token"], SECRET, TTL).id == user.id


def test_create_admin_creates_then_promotes(ctx):
    admin, created = users.create_admin("boss", "password1")
    assert created is True
    assert admin.is_admin is True
    users.register_user("ann", "password1")
    promoted, created = users.create_admin("ann", None)
    assert created is False
    assert promoted.is_admin is True
    assert users.authenticate("ann", "password1").is_admin is True


def test_create_admin_needs_a_valid_password_for_a_new_account(ctx):
    for password in (None, "short"):
        with pytest.raises(ServiceError) as refused:
            users.create_admin("boss", password)
        assert refused.value.code == "invalid"
    assert user_count() == 0


def test_set_admin_demotes(ctx):
    users.create_admin("boss", "password1")
    assert users.set_admin("boss", False).is_admin is False
    with pytest.raises(ServiceError) as refused:
        users.set_admin("nobody", False)
    assert refused.value.code == "not_found"


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_text_that_cannot_be_stored_is_refused_not_a_crash(ctx):
    users.register_user("ann", "password1")
    for password in ("pass\x00word", "pass\ud800word"):
        with pytest.raises(ServiceError) as refused:
            users.register_user("bob", password)
        assert refused.value.code == "invalid"
    for username, password in (("ann\x00", "password1"), ("ann", "password1\x00"), ("ann", "\udfffpassword1")):
        with pytest.raises(ServiceError) as refused:
            users.authenticate(username, password)
        assert refused.value.code == "unauthorized"
    assert users.find_user("ann\x00") is None
    assert user_count() == 1
