"""TRUSTED_HOSTS: a Host header the server does not answer to gets 400, on pages, the API and sockets."""

from __future__ import annotations

import pytest

PATHS = ["/healthz", "/login", "/", "/api/rooms", "/static/css/app.css", "/socket.io/?EIO=4&transport=polling"]
# The Engine.IO handshake above is the WSGI path of every socket, polling or websocket.


@pytest.fixture
def app_settings() -> dict:
    return {"TRUSTED_HOSTS": ["chat.example.com", ".chat.example.org"]}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("host", ["evil.example", "chat.example.com.evil.example", "127.0.0.1"])
def test_a_host_not_listed_is_answered_400(client, path, host):
    response = client.get(path, headers={"Host": host})
    response.close()
    assert response.status_code == 400
    assert response.get_json() == {"error": {"code": "invalid", "message": "unknown host"}}
    assert response.headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("host", ["chat.example.com", "CHAT.example.com:8080", "eu.chat.example.org"])
def test_a_listed_host_is_served_with_any_port(client, path, host):
    response = client.get(path, headers={"Host": host})
    response.close()
    assert response.status_code in (200, 302, 401), response.status_code


def test_behind_a_proxy_the_forwarded_host_is_the_one_checked(database_url):
    from tests.support.apps import app_on_fresh_database

    settings = {
        "SQLALCHEMY_DATABASE_URI": database_url,
        "TRUSTED_HOSTS": ["chat.example.com"],
        "TRUSTED_PROXIES": 1,
    }
    with app_on_fresh_database(settings) as app:
        client = app.test_client()
        assert (
            client.get("/healthz", headers={"Host": "app1:5000", "X-Forwarded-Host": "chat.example.com"}).status_code
            == 200
        )
        assert (
            client.get("/healthz", headers={"Host": "chat.example.com", "X-Forwarded-Host": "evil.example"}).status_code
            == 400
        )


def test_without_trusted_hosts_any_host_is_served(database_url):
    from tests.support.apps import app_on_fresh_database

    with app_on_fresh_database({"SQLALCHEMY_DATABASE_URI": database_url}) as app:
        assert app.config["TRUSTED_HOSTS"] is None
        assert app.test_client().get("/healthz", headers={"Host": "anything.example"}).status_code == 200
