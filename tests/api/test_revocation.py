"""Setting a password ends every session and token issued before; other users keep theirs."""

from app.extensions import socketio
from app.services import users


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def token_of(client, username: str, password: str) -> str:
    response = client.post("/api/token", json={"username": username, "password": password})
    assert response.status_code == 200, response.data
    return response.get_json()["token"]


def test_a_new_password_revokes_earlier_tokens_and_browser_sessions(app, client, make_user, login):
    ann, bob = make_user("ann"), make_user("bob")
    ann_token, bob_token = token_of(client, "ann", ann.password), token_of(client, "bob", bob.password)
    ann_browser, bob_browser = login(ann), login(bob)
    assert client.get("/api/rooms", headers=bearer(ann_token)).status_code == 200
    assert ann_browser.get("/").status_code == 200

    with app.app_context():
        users.create_admin("ann", "a brand new passphrase")

    refused = client.get("/api/rooms", headers=bearer(ann_token))
    assert refused.status_code == 401
    assert refused.get_json()["error"]["code"] == "unauthorized"
    assert ann_browser.get("/").headers["Location"] == "/login?next=/"
    sio = socketio.test_client(app, flask_test_client=ann_browser)
    assert not sio.is_connected()
    # The new password works, and nobody else was signed out.
    assert (
        client.get("/api/rooms", headers=bearer(token_of(client, "ann", "a brand new passphrase"))).status_code == 200
    )
    assert client.get("/api/rooms", headers=bearer(bob_token)).status_code == 200
    assert bob_browser.get("/").status_code == 200


def kicks(sio) -> list:
    """The `kicked` payloads a test client got; its queue stays readable after the disconnect."""
    return [m["args"][0] for m in list(sio.queue) if m["namespace"] == "/" and m["name"] == "kicked"]


def copy_of(app, browser):
    """Another client carrying the browser's session cookie, as copied before sign-out."""
    copy = app.test_client()
    copy.set_cookie("session", browser.get_cookie("session").value)
    return copy


def test_signing_out_signs_out_every_device_and_token_of_that_account_only(app, client, make_user, login):
    ann, bob = make_user("ann"), make_user("bob")
    ann_token, bob_token = token_of(client, "ann", ann.password), token_of(client, "bob", bob.password)
    ann_laptop, ann_phone, bob_browser = login(ann), login(ann), login(bob)
    stolen = copy_of(app, ann_laptop)
    assert stolen.get("/").status_code == 200

    assert ann_laptop.post("/logout").headers["Location"] == "/login"

    for device in (stolen, ann_phone):
        assert device.get("/").headers["Location"] == "/login?next=/"
        assert not socketio.test_client(app, flask_test_client=copy_of(app, device)).is_connected()
    assert not socketio.test_client(app, flask_test_client=copy_of(app, stolen)).is_connected()
    refused = client.get("/api/rooms", headers=bearer(ann_token))
    assert refused.status_code == 401
    assert refused.get_json()["error"]["code"] == "unauthorized"
    # Signing in again works; bob was never touched.
    assert client.get("/api/rooms", headers=bearer(token_of(client, "ann", ann.password))).status_code == 200
    assert login(ann).get("/").status_code == 200
    assert client.get("/api/rooms", headers=bearer(bob_token)).status_code == 200
    assert bob_browser.get("/").status_code == 200
    bob_socket = socketio.test_client(app, flask_test_client=bob_browser)
    assert bob_socket.is_connected()
    bob_socket.disconnect()


def test_signing_out_disconnects_the_accounts_live_sockets_saying_why(app, make_user, login):
    ann, bob = make_user("ann"), make_user("bob")
    ann_browser, bob_browser = login(ann), login(bob)
    ann_tab = socketio.test_client(app, flask_test_client=ann_browser)
    ann_other_tab = socketio.test_client(app, flask_test_client=copy_of(app, ann_browser))
    bob_tab = socketio.test_client(app, flask_test_client=bob_browser)
    assert ann_tab.is_connected() and ann_other_tab.is_connected() and bob_tab.is_connected()

    ann_browser.post("/logout")

    for tab in (ann_tab, ann_other_tab):
        assert kicks(tab) == [{"reason": "signed out"}]
        assert not tab.is_connected()
    assert bob_tab.is_connected()
    assert kicks(bob_tab) == []
    bob_tab.disconnect()


def test_a_remember_cookie_alone_signs_nobody_in(app, make_user, login):
    """Sessions are never remembered; a signed remember cookie without the session's stamp is refused."""
    from flask_login.utils import encode_cookie

    ann = make_user("ann")
    with app.test_request_context():
        remember = encode_cookie(str(ann.id))
    visitor = app.test_client()
    visitor.set_cookie(app.config.get("REMEMBER_COOKIE_NAME", "remember_token"), remember)

    assert visitor.get("/").headers["Location"] == "/login?next=/"
    assert not socketio.test_client(app, flask_test_client=visitor).is_connected()


def test_a_ban_ends_earlier_tokens_and_sessions_for_good(app, client, make_user, login):
    from tests.support.moderation import ban, unban

    ann, bob = make_user("ann"), make_user("bob")
    ann_token, bob_token = token_of(client, "ann", ann.password), token_of(client, "bob", bob.password)
    ann_browser, bob_browser = login(ann), login(bob)
    ann_tab = socketio.test_client(app, flask_test_client=ann_browser)

    with app.app_context():
        ban("ann", "spam")
    assert kicks(ann_tab) == [{"reason": "banned"}]
    assert not ann_tab.is_connected()
    assert client.get("/api/rooms", headers=bearer(ann_token)).get_json()["error"]["code"] == "banned"
    assert ann_browser.get("/").headers["Location"] == "/login?next=/"

    with app.app_context():
        unban("ann")

    # Unbanning brings back neither: the token and the cookie are over, a new sign-in works.
    refused = client.get("/api/rooms", headers=bearer(ann_token))
    assert refused.status_code == 401
    assert refused.get_json()["error"]["code"] == "unauthorized"
    assert ann_browser.get("/").headers["Location"] == "/login?next=/"
    assert not socketio.test_client(app, flask_test_client=ann_browser).is_connected()
    assert client.get("/api/rooms", headers=bearer(token_of(client, "ann", ann.password))).status_code == 200
    assert client.get("/api/rooms", headers=bearer(bob_token)).status_code == 200
    assert bob_browser.get("/").status_code == 200


def test_a_stamp_of_version_zero_is_the_one_issued_before_versions_existed(ctx, make_user):
    """Upgrading to the session version signs nobody out; raising it changes the stamp."""
    import hashlib
    import hmac

    from app.extensions import db
    from app.models import User

    user = db.session.get(User, make_user("ann").id)
    before = hmac.new(b"key", user.password_hash.encode(), hashlib.sha256).hexdigest()[:24]
    assert users.credential_stamp(user, "key") == before
    user.session_version = 1
    assert users.credential_stamp(user, "key") != before
