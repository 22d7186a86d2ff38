"""Failed sign-ins are limited per account and per address, on the JSON API and the login form."""

from __future__ import annotations

import re
import time

import pytest

from app import create_app
from app.config import TestingConfig
from app.extensions import db
from app.models import Room
from app.services import users
from tests.support import moderation as moderation_support

PASSWORD = "correct horse battery"


@pytest.fixture
def throttled_app(database_url):
    """The test app with small limits, so a test reaches them in a few requests."""
    config = type(
        "Config",
        (TestingConfig,),
        {
            "SQLALCHEMY_DATABASE_URI": database_url,
            "SIGNIN_FAILURES_PER_ACCOUNT": 3,
            "SIGNIN_FAILURES_PER_ADDRESS": 5,
        },
    )
    app = create_app(config)
    with app.app_context():
        db.create_all()
        db.session.add(Room(name="general"))
        db.session.commit()
        for name in ("ann", "bob", "cat"):
            users.register_user(name, PASSWORD)
    yield app
    with app.app_context():
        db.session.remove()
        db.drop_all()
        db.engine.dispose()


def client_at(app, address: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def token(client, username: str, password: str):
    return client.post("/api/token", json={"username": username, "password": password})


def assert_throttled(response) -> int:
    assert response.status_code == 429, response.data
    assert response.get_json()["error"]["code"] == "rate_limited"
    assert "try again in" in response.get_json()["error"]["message"]
    retry_after = int(response.headers["Retry-After"])
    assert 0 < retry_after <= 900
    return retry_after


def test_failures_past_the_account_limit_answer_429_even_with_the_right_password(throttled_app):
    client = client_at(throttled_app, "10.0.0.1")

    assert [token(client, "ann", "wrong password").status_code for _ in range(3)] == [401, 401, 401]

    assert_throttled(token(client, "ann", PASSWORD))
    assert_throttled(token(client, "ANN", "wrong password"))
    # Another account from the same address is not locked.
    assert token(client, "bob", PASSWORD).status_code == 200


def test_the_account_limit_holds_across_addresses(throttled_app):
    for n in range(3):
        assert token(client_at(throttled_app, f"10.0.1.{n}"), "ann", "wrong password").status_code == 401

    assert_throttled(token(client_at(throttled_app, "10.0.1.99"), "ann", PASSWORD))


def test_failures_past_the_address_limit_answer_429_for_every_account_from_that_address(throttled_app):
    client = client_at(throttled_app, "10.0.2.1")
    # Five failures spread over accounts, none of which reaches its own limit.
    statuses = [token(client, name, "wrong password").status_code for name in ("ann", "ann", "bob", "bob", "nobody")]
    assert statuses == [401] * 5

    assert_throttled(token(client, "cat", PASSWORD))
    assert token(client_at(throttled_app, "10.0.2.2"), "cat", PASSWORD).status_code == 200


def test_successes_never_count(throttled_app):
    client = client_at(throttled_app, "10.0.3.1")

    assert [token(client, "ann", PASSWORD).status_code for _ in range(12)] == [200] * 12
    assert token(client, "ann", "wrong password").status_code == 401
    assert token(client, "ann", PASSWORD).status_code == 200


def test_a_banned_account_with_its_right_password_is_not_a_failure(throttled_app):
    with throttled_app.app_context():
        moderation_support.ban("bob")
    client = client_at(throttled_app, "10.0.4.1")

    assert [token(client, "bob", PASSWORD).status_code for _ in range(6)] == [403] * 6


def test_the_login_form_shows_the_wait_and_answers_429(throttled_app):
    client = client_at(throttled_app, "10.0.5.1")
    for _ in range(3):
        assert client.post("/login", data={"username": "ann", "password": "wrong password"}).status_code == 401

    response = client.post("/login", data={"username": "ann", "password": PASSWORD})

    assert response.status_code == 429
    assert 0 < int(response.headers["Retry-After"]) <= 900
    page = response.get_data(as_text=True)
    assert re.search(r"Too many failed sign-ins\. Please wait \d+ minutes? and try again\.", page), page
    assert client.get("/").status_code == 302  # still signed out


def test_form_and_api_failures_count_together(throttled_app):
    client = client_at(throttled_app, "10.0.6.1")
    client.post("/login", data={"username": "ann", "password": "wrong password"})
    token(client, "ann", "wrong password")
    client.post("/login", data={"username": "ann", "password": "wrong password"})

    assert_throttled(token(client, "ann", PASSWORD))


def test_the_wait_ends_when_the_window_has_passed(database_url):
    config = type(
        "Config",
        (TestingConfig,),
        {"SQLALCHEMY_DATABASE_URI": database_url, "SIGNIN_FAILURES_PER_ACCOUNT": 1, "SIGNIN_FAILURE_WINDOW_SECONDS": 1},
    )
    app = create_app(config)
    with app.app_context():
        db.create_all()
        db.session.add(Room(name="general"))
        db.session.commit()
        users.register_user("ann", PASSWORD)
    client = client_at(app, "10.0.7.1")
    assert token(client, "ann", "wrong password").status_code == 401
    assert_throttled(token(client, "ann", PASSWORD))

    time.sleep(1.1)

    assert token(client, "ann", PASSWORD).status_code == 200
    with app.app_context():
        db.drop_all()
        db.engine.dispose()


def test_default_limits_let_a_class_behind_one_address_sign_in(app, client, make_user):
    """Sixty accounts from one address, each mistyping once before getting it right."""
    accounts = [make_user() for _ in range(60)]
    for account in accounts:
        assert token(client, account.username, "mistyped password").status_code == 401
        assert token(client, account.username, account.password).status_code == 200
