"""Headers on every response, redirects that never echo the Host header, and proxy headers only when trusted."""

from __future__ import annotations

import pytest

from app import create_app
from app.config import TestingConfig

EXPECTED = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def csp_directives(response) -> dict[str, list[str]]:
    policy = response.headers["Content-Security-Policy"]
    directives = {}
    for part in policy.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/login"),
        ("GET", "/register"),
        ("GET", "/"),  # a redirect
        ("GET", "/admin"),
        ("GET", "/static/css/app.css"),
        ("GET", "/healthz"),
        ("GET", "/api/rooms"),  # 401 JSON
        ("GET", "/api/nowhere"),  # 404 JSON
        ("GET", "/nowhere"),  # 404 page
        ("DELETE", "/api/token"),  # 405
        ("POST", "/api/register"),  # 400
    ],
)
def test_every_response_carries_the_security_headers(client, method, path):
    response = client.open(path, method=method)
    response.close()

    for name, value in EXPECTED.items():
        assert response.headers.get(name) == value, (path, name, response.headers)
    directives = csp_directives(response)
    assert directives["script-src"] == ["'self'"]
    assert directives["style-src"] == ["'self'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["object-src"] == ["'none'"]
    assert directives["base-uri"] == ["'self'"]
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]


def test_the_admin_page_cannot_be_framed(client, make_user, login):
    admin = make_user(admin=True)
    response = login(admin).get("/admin")

    assert response.status_code == 200
    assert response.headers["X-Frame-Options"] == "DENY"
    assert csp_directives(response)["frame-ancestors"] == ["'none'"]


HOSTILE_HOST = {"Host": "evil.example"}


def test_redirects_never_name_the_host_the_client_sent(client):
    anonymous = client.get("/", headers=HOSTILE_HOST)
    assert anonymous.status_code == 302
    assert anonymous.headers["Location"] == "/login?next=/"

    admin = client.get("/admin", headers=HOSTILE_HOST)
    assert admin.status_code == 302
    assert admin.headers["Location"] == "/login?next=/admin"


def test_an_absolute_redirect_to_the_requested_host_is_made_relative(database_url):
    app = create_app(type("Config", (TestingConfig,), {"SQLALCHEMY_DATABASE_URI": database_url}))

    @app.get("/_absolute")
    def absolute():
        from flask import redirect, url_for

        return redirect(url_for("auth.login", next="/x", _external=True))

    @app.get("/_elsewhere")
    def elsewhere():
        from flask import redirect

        return redirect("https://docs.example/help")

    client = app.test_client()
    assert client.get("/_absolute", headers=HOSTILE_HOST).headers["Location"] == "/login?next=/x"
    assert client.get("/_elsewhere", headers=HOSTILE_HOST).headers["Location"] == "https://docs.example/help"


def test_a_csrf_failure_redirect_is_relative(csrf_client):
    response = csrf_client.post("/login?next=/admin", data={"username": "ann", "password": "x"}, headers=HOSTILE_HOST)

    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/admin"


@pytest.fixture
def csrf_client(app):
    app.config["WTF_CSRF_ENABLED"] = True
    return app.test_client()


def origin_allowed(app, origin: str, **headers) -> bool:
    environ = {"HTTP_HOST": "chat.example", "wsgi.url_scheme": "http"}
    environ.update({"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()})
    checker = app.extensions["socketio"].server.eio.cors_allowed_origins
    return checker(origin, environ)


def test_the_origin_check_ignores_forwarded_headers_from_a_client(app):
    assert origin_allowed(app, "http://chat.example")
    forged = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}
    assert not origin_allowed(app, "https://evil.example", **forged)
    assert not origin_allowed(app, "http://evil.example", **forged)


def test_trusted_proxies_make_the_forwarded_headers_count(database_url):
    app = create_app(type("Config", (TestingConfig,), {"SQLALCHEMY_DATABASE_URI": database_url, "TRUSTED_PROXIES": 1}))
    client = app.test_client()
    seen = {}

    @app.get("/_echo")
    def echo():
        from flask import request

        seen.update(host=request.host, scheme=request.scheme, address=request.remote_addr)
        return "ok"

    client.get(
        "/_echo",
        headers={
            "X-Forwarded-Host": "chat.example",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-For": "1.2.3.4, 5.6.7.8",
        },
    )

    # One trusted hop: only the last address nginx appended counts, not what the client claimed before it.
    assert seen == {"host": "chat.example", "scheme": "https", "address": "5.6.7.8"}
