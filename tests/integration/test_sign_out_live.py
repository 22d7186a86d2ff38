"""Signing out on a real server signs out every device: sockets on both workers, copied cookies, tokens."""

from __future__ import annotations

import pytest
import requests

from tests.integration.conftest import TRANSPORTS, create_account, hidden_input, login_cookie

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.redis]


def sign_out(server_url: str, cookie: str) -> None:
    """Press the chat page's Sign out button: its form and CSRF token, then POST /logout."""
    browser = requests.Session()
    page = browser.get(f"{server_url}/", headers={"Cookie": cookie}, allow_redirects=False, timeout=10)
    assert page.status_code == 200, page.status_code
    response = browser.post(
        f"{server_url}/logout",
        data={"csrf_token": hidden_input(page.text, "csrf_token")},
        headers={"Cookie": cookie},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302 and response.headers["Location"] == "/login", response.status_code


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_signing_out_on_one_worker_disconnects_the_users_sockets_on_both(transport, cluster, open_client):
    alice, bob = create_account(cluster.a), create_account(cluster.a)
    cookie = login_cookie(cluster.a.url, alice)
    alice_by_cookie_on_b = open_client(cluster.b.url, transport).connect(cookie=cookie)
    alice_by_token_on_a = open_client(cluster.a.url, transport).connect(token=alice.token)
    bob_on_b = open_client(cluster.b.url, transport).connect(token=bob.token)
    for tab in (alice_by_cookie_on_b, alice_by_token_on_a, bob_on_b):
        tab.wait_for("session")

    sign_out(cluster.a.url, cookie)

    for tab in (alice_by_cookie_on_b, alice_by_token_on_a):
        assert tab.wait_for("kicked") == {"reason": "signed out"}
        assert tab.wait_disconnected() == "server disconnect"
    # The copied cookie and the token are refused on either worker; bob carries on.
    for server in (cluster.a, cluster.b):
        assert open_client(server.url, transport).connect_refused(cookie=cookie)["/"] == [{"message": "unauthorized"}]
        page = requests.get(f"{server.url}/", headers={"Cookie": cookie}, allow_redirects=False, timeout=10)
        assert page.status_code == 302 and page.headers["Location"] == "/login?next=/"
        rooms = requests.get(f"{server.url}/api/rooms", headers={"Authorization": f"Bearer {alice.token}"}, timeout=10)
        assert rooms.status_code == 401 and rooms.json()["error"]["code"] == "unauthorized"
    assert bob_on_b.call("who", {})["ok"] is True
    assert bob_on_b.connected and bob_on_b.received("kicked") == []
