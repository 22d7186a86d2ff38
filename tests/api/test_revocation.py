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
