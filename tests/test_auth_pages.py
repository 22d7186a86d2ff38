"""Browser pages: register, sign in, sign out, the chat and admin pages, CSRF and cookie flags."""

import re

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import User
from app.services import users
from tests.support.moderation import ban

LABEL = re.compile(r"<label[^>]*>\s*([^<]+?)\s*</label>", re.IGNORECASE)
CSRF_FIELD = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


def labels(response) -> list[str]:
    return LABEL.findall(response.get_data(as_text=True))


def csrf_token(response) -> str:
    match = CSRF_FIELD.search(response.get_data(as_text=True))
    assert match, "the form carries no csrf_token"
    return match.group(1) or match.group(2)


def user_count(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count(User.id)))


def signed_in(client) -> bool:
    return client.get("/").status_code == 200


@pytest.fixture
def csrf_app(app):
    """The test app with CSRF protection switched on, as in production."""
    app.config["WTF_CSRF_ENABLED"] = True
    return app


def test_chat_page_redirects_anonymous_visitors_to_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/"


def test_register_page_names_its_fields_with_labels(client):
    response = client.get("/register")
    assert response.status_code == 200
    assert labels(response) == ["Username", "Password", "Confirm password"]


def test_login_page_names_its_fields_with_labels(client):
    response = client.get("/login")
    assert response.status_code == 200
    assert labels(response) == ["Username", "Password"]


def test_register_signs_in_and_ends_in_the_chat(app, client):
    response = client.post(
        "/register", data={"username": "ann", "password": "tulip garden 1", "confirm": "tulip garden 1"}
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    chat = client.get("/")
    assert chat.status_code == 200
    assert "ann" in chat.get_data(as_text=True)
    with app.app_context():
        assert users.authenticate("ann", "tulip garden 1").username == "ann"


@pytest.mark.parametrize("taken", ["ann", "ANN"])
def test_register_with_a_taken_name_shows_an_error(app, client, make_user, taken):
    make_user("ann")
    response = client.post(
        "/register", data={"username": taken, "password": "tulip garden 1", "confirm": "tulip garden 1"}
    )
    assert response.status_code == 400
    assert "That username is taken." in response.get_data(as_text=True)
    assert user_count(app) == 1
    assert not signed_in(client)


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"username": "ann", "password": "tulip garden 1", "confirm": "tulip garden 2"}, "The passwords do not match."),
        ({"username": "an", "password": "tulip garden 1", "confirm": "tulip garden 1"}, "Use 3 to 32 characters."),
        (
            {"username": "ann!", "password": "tulip garden 1", "confirm": "tulip garden 1"},
            "Use only letters A-Z (no accents), digits",
        ),
        ({"username": "ann", "password": "short", "confirm": "short"}, "Use 8 to 128 characters."),
    ],
)
def test_register_with_bad_input_shows_an_error_and_creates_nothing(app, client, form, error):
    response = client.post("/register", data=form)
    assert response.status_code == 400
    assert error in response.get_data(as_text=True)
    assert user_count(app) == 0


def test_login_with_a_wrong_password_shows_an_error(client, make_user):
    make_user("ann")
    response = client.post("/login", data={"username": "ann", "password": "not the password"})
    assert response.status_code == 401
    assert "Wrong username or password." in response.get_data(as_text=True)
    assert not signed_in(client)


def test_login_of_a_banned_user_is_refused(app, client, make_user):
    ann = make_user("ann")
    with app.app_context():
        ban("ann", "spam")
    response = client.post("/login", data={"username": "ann", "password": ann.password})
    assert response.status_code == 403
    assert "banned" in response.get_data(as_text=True)
    assert not signed_in(client)


def test_login_follows_a_local_next_only(app, client, make_user):
    ann = make_user("ann")
    response = client.post("/login?next=/admin", data={"username": "ann", "password": ann.password})
    assert response.headers["Location"] == "/admin"
    other = make_user("bob")
    for target in ("//evil.example/", "https://evil.example/", "javascript:alert(1)"):
        response = app.test_client().post(
            "/login", query_string={"next": target}, data={"username": "bob", "password": other.password}
        )
        assert response.status_code == 302
        assert response.headers["Location"] == "/"


def test_logout_signs_out(client, make_user, login):
    client = login(make_user("ann"))
    assert signed_in(client)
    response = client.post("/logout")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    assert not signed_in(client)


def test_a_ban_ends_an_open_browser_session(app, make_user, login):
    client = login(make_user("ann"))
    with app.app_context():
        ban("ann")
    assert not signed_in(client)


def test_session_cookie_is_httponly_and_samesite_lax(client, make_user):
    ann = make_user("ann")
    response = client.post("/login", data={"username": "ann", "password": ann.password})
    [cookie] = [value for value in response.headers.getlist("Set-Cookie") if value.startswith("session=")]
    attributes = {part.strip().lower() for part in cookie.split(";")}
    assert "httponly" in attributes
    assert "samesite=lax" in attributes


def test_admin_page_needs_an_admin(client, make_user, login):
    response = client.get("/admin")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/admin"
    assert login(make_user("ann")).get("/admin").status_code == 403
    admin_page = login(make_user("boss", admin=True)).get("/admin")
    assert admin_page.status_code == 200


# -- CSRF enforced -------------------------------------------------------------


def test_register_without_a_csrf_token_is_refused_and_creates_nothing(csrf_app, client):
    response = client.post(
        "/register", data={"username": "ann", "password": "tulip garden 1", "confirm": "tulip garden 1"}
    )
    assert response.status_code in (302, 400)
    assert user_count(csrf_app) == 0
    assert not signed_in(client)


def test_register_with_the_forms_csrf_token_works(csrf_app, client):
    token = csrf_token(client.get("/register"))
    response = client.post(
        "/register",
        data={"username": "ann", "password": "tulip garden 1", "confirm": "tulip garden 1", "csrf_token": token},
    )
    assert response.status_code == 302
    assert user_count(csrf_app) == 1
    assert signed_in(client)


def test_login_and_logout_without_a_csrf_token_are_refused(csrf_app, client, make_user):
    ann = make_user("ann")
    client.post("/login", data={"username": "ann", "password": ann.password})
    assert not signed_in(client)

    token = csrf_token(client.get("/login"))
    client.post("/login", data={"username": "ann", "password": ann.password, "csrf_token": token})
    assert signed_in(client)
    client.post("/logout")
    assert signed_in(client)
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/"))})
    assert not signed_in(client)


def test_json_api_needs_no_csrf_token(csrf_app, client):
    response = client.post("/api/register", json={"username": "ann", "password": "tulip garden 1"})
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("password123", "Password is one of the most common passwords; choose another."),
        ("          ", "Password must not be only spaces."),
        ("Margaret", "Password must not be the same as the username."),
    ],
)
def test_register_form_refuses_a_weak_password_on_the_password_field(app, client, password, message):
    response = client.post("/register", data={"username": "margaret", "password": password, "confirm": password})

    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert re.search(r'<ul class="errors" id="password-errors"><li>' + re.escape(message) + "</li>", page), page
    assert user_count(app) == 0
