"""Who may do what: every HTTP route and every `/` and `/admin` event, for each kind of caller.

One row per route or event, one expected answer per role, as docs/protocol.md and
docs/security.md document them. A route or event added without a row fails
``test_every_route_has_a_row``/``test_every_event_has_a_row``.

Roles: ``anonymous`` (no cookie, no token), ``user``, ``muted`` (muted by an admin), ``banned``
(banned after signing in: its cookie and token were issued before the ban), ``demoted`` (an admin
whose rights `flask users demote` took while their `/admin` socket stayed open) and ``admin``.

Answers: an HTTP status, with the redirect target for a 3xx (``"302 /login?next=/"``); for an
event, ``"ok"`` or the ack's error code; ``"refused: CODE"`` when the namespace refuses the connect
(then no event of that namespace can be sent).
"""

from __future__ import annotations

import io
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from socketio import packet

from app.extensions import socketio
from app.services import users
from tests.support import images
from tests.support.moderation import ban, mute

ROLES = ("anonymous", "user", "muted", "banned", "demoted", "admin")
SIGNED_IN = ("user", "muted", "demoted", "admin")
PASSWORD = "correct horse battery"

_fresh = itertools.count(1)


def by_role(anonymous, user, muted, banned, demoted, admin) -> dict[str, object]:
    return dict(zip(ROLES, (anonymous, user, muted, banned, demoted, admin), strict=True))


def everyone(answer) -> dict[str, object]:
    return dict.fromkeys(ROLES, answer)


@dataclass
class World:
    """The app, a subject in the role under test, and what its rows refer to."""

    app: object
    role: str
    browser: object  # the subject's signed-in test client (a plain one for anonymous)
    token: str | None
    subject: str | None
    ids: dict[str, int] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    sids: dict[str, str] = field(default_factory=dict)
    sockets: dict[str, object] = field(default_factory=dict)

    def bearer(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def credentials(self) -> dict:
        if self.subject is None:
            return {"username": "nobody", "password": PASSWORD}
        return {"username": self.subject, "password": PASSWORD}


def answer_of(response) -> object:
    response.close()  # files are streamed
    if 300 <= response.status_code < 400:
        return f"{response.status_code} {response.headers['Location']}"
    return response.status_code


# -- HTTP ---------------------------------------------------------------------------------

SIGNED_IN_PAGE = by_role(200, "302 /", "302 /", 200, "302 /", "302 /")
API = by_role(401, 200, 200, 403, 200, 200)

HTTP_ROWS: dict[tuple[str, str], tuple[Callable[[World], object], dict[str, object]]] = {
    ("GET", "/"): (
        lambda w: w.browser.get("/"),
        by_role("302 /login?next=/", 200, 200, "302 /login?next=/", 200, 200),
    ),
    ("GET", "/admin"): (
        lambda w: w.browser.get("/admin"),
        by_role("302 /login?next=/admin", 403, 403, "302 /login?next=/admin", 403, 200),
    ),
    ("GET", "/login"): (lambda w: w.browser.get("/login"), SIGNED_IN_PAGE),
    # From a fresh client, with the role's own username and password.
    ("POST", "/login"): (
        lambda w: w.app.test_client().post("/login", data=w.credentials()),
        by_role(401, "302 /", "302 /", 403, "302 /", "302 /"),
    ),
    ("GET", "/register"): (lambda w: w.browser.get("/register"), SIGNED_IN_PAGE),
    # Signed-in visitors are sent to the chat, the others get their new account.
    ("POST", "/register"): (
        lambda w: w.browser.post(
            "/register",
            data={
                "username": f"fresh{next(_fresh)}",
                "password": "a fresh passphrase",
                "confirm": "a fresh passphrase",
            },
        ),
        everyone("302 /"),
    ),
    ("POST", "/api/register"): (
        lambda w: w.browser.post(
            "/api/register", json={"username": f"fresh{next(_fresh)}", "password": "a fresh passphrase"}
        ),
        everyone(201),
    ),
    ("POST", "/api/token"): (
        lambda w: w.app.test_client().post("/api/token", json=w.credentials()),
        by_role(401, 200, 200, 403, 200, 200),
    ),
    ("GET", "/api/rooms"): (lambda w: w.browser.get("/api/rooms", headers=w.bearer()), API),
    ("GET", "/api/rooms/<name>/messages"): (
        lambda w: w.browser.get("/api/rooms/general/messages", headers=w.bearer()),
        API,
    ),
    ("GET", "/api/search"): (lambda w: w.browser.get("/api/search?q=hello", headers=w.bearer()), API),
    ("POST", "/api/uploads"): (
        lambda w: w.app.test_client().post(
            "/api/uploads",
            headers=w.bearer(),
            data={"file": (io.BytesIO(b"plain text"), "notes.txt")},
            content_type="multipart/form-data",
        ),
        by_role(401, 201, 403, 403, 201, 201),
    ),
    # A file on a message in general, which every signed-in role is a member of; nobody else
    # learns that it exists.
    ("GET", "/files/<int:attachment_id>/<name>"): (
        lambda w: w.app.test_client().get(f"/files/{w.ids['file']}/photo.png", headers=w.bearer()),
        by_role(404, 200, 200, 404, 200, 200),
    ),
    ("GET", "/files/<int:attachment_id>/thumbnail/<name>"): (
        lambda w: w.app.test_client().get(f"/files/{w.ids['file']}/thumbnail/photo.png", headers=w.bearer()),
        by_role(404, 200, 200, 404, 200, 200),
    ),
    ("GET", "/healthz"): (lambda w: w.browser.get("/healthz"), everyone(200)),
    # By address (the test client is 127.0.0.1, allowed by default) or METRICS_TOKEN, never by account.
    ("GET", "/metrics"): (lambda w: w.browser.get("/metrics"), everyone(200)),
    ("GET", "/static/<path:filename>"): (lambda w: w.browser.get("/static/css/app.css"), everyone(200)),
    # Last: it ends the subject's sessions and tokens.
    ("POST", "/logout"): (lambda w: w.browser.post("/logout"), everyone("302 /login")),
}


# -- sockets ------------------------------------------------------------------------------

CONNECT = by_role("refused: unauthorized", "ok", "ok", "refused: banned", "ok", "ok")
ADMIN_CONNECT = by_role(
    "refused: unauthorized", "refused: forbidden", "refused: forbidden", "refused: banned", "refused: forbidden", "ok"
)
SEND = by_role("refused: unauthorized", "ok", "muted", "refused: banned", "ok", "ok")
# Only the admin's socket is still open: the demoted admin's was opened before the demotion.
ADMIN_EVENT = by_role(
    "refused: unauthorized", "refused: forbidden", "refused: forbidden", "refused: banned", "forbidden", "ok"
)

CHAT_ROWS: dict[str, tuple[Callable[[World], object], dict[str, object]]] = {
    "join": (lambda w: {"room": "general"}, CONNECT),
    "leave": (lambda w: {"room": w.names["left"]}, CONNECT),
    "rooms": (lambda w: {}, CONNECT),
    "invite": (lambda w: {"room": w.names["own"], "user": "peer"}, CONNECT),
    "topic": (lambda w: {"room": w.names["own"], "topic": "ours"}, CONNECT),
    "message": (lambda w: {"room": "general", "body": "hello", "client_id": uuid.uuid4().hex}, SEND),
    "dm": (lambda w: {"to_user": "peer", "body": "hello"}, SEND),
    "edit": (lambda w: {"id": w.ids["edit"], "body": "hello again"}, SEND),
    # Deleting one's own message stays possible while muted.
    "delete": (lambda w: {"id": w.ids["delete"]}, CONNECT),
    "react": (lambda w: {"id": w.ids["react"], "emoji": "+1", "active": True}, SEND),
    "history": (lambda w: {"room": "general"}, CONNECT),
    "dm_history": (lambda w: {"user": "peer"}, CONNECT),
    "sync": (lambda w: {"after": 0}, CONNECT),
    "who": (lambda w: {}, CONNECT),
    "read": (lambda w: {"room": "general", "id": w.ids["react"]}, CONNECT),
    "typing": (lambda w: {"room": "general", "active": True}, CONNECT),
    "upload": (lambda w: {"name": "notes.txt", "data": b"plain text"}, SEND),
    "search": (lambda w: {"q": "hello"}, CONNECT),
    "connect": (None, CONNECT),  # type: ignore[dict-item]
}

ADMIN_ROWS: dict[str, tuple[Callable[[World], object], dict[str, object]]] = {
    "stats": (lambda w: {}, ADMIN_EVENT),
    "sockets": (lambda w: {}, ADMIN_EVENT),
    "users": (lambda w: {"query": "tar"}, ADMIN_EVENT),
    "audit": (lambda w: {}, ADMIN_EVENT),
    "kick": (lambda w: {"sid": w.sids["target"]}, ADMIN_EVENT),
    "ban": (lambda w: {"user": "target2", "reason": "spam"}, ADMIN_EVENT),
    "unban": (lambda w: {"user": "target2"}, ADMIN_EVENT),
    "mute": (lambda w: {"user": "target", "seconds": 60}, ADMIN_EVENT),
    "unmute": (lambda w: {"user": "target"}, ADMIN_EVENT),
    "delete_message": (lambda w: {"id": w.ids["peer_message"]}, ADMIN_EVENT),
    "announce": (lambda w: {"body": "hello everyone"}, ADMIN_EVENT),
    "connect": (None, ADMIN_CONNECT),  # type: ignore[dict-item]
}

NAMESPACE_ROWS = {"/": CHAT_ROWS, "/admin": ADMIN_ROWS}


def connect_answer(app, namespace: str, **credentials) -> tuple[str, object]:
    """``("ok", client)`` or ``("refused: CODE", None)``, CODE as the client's connect_error says."""
    sio = socketio.test_client(app, namespace=namespace, **credentials)
    if sio.is_connected(namespace):
        return "ok", sio
    refusals = []
    server = socketio.server
    deliver = server._send_packet

    def record(eio_sid, pkt):
        if pkt.packet_type == packet.CONNECT_ERROR:
            refusals.append(pkt.data)
        return deliver(eio_sid, pkt)

    server._send_packet = record
    try:
        sio.connect(namespace=namespace, auth=credentials.get("auth"))
    finally:
        server._send_packet = deliver
    assert len(refusals) == 1, refusals
    return f"refused: {refusals[0]['message']}", None


def ack_answer(ack) -> str:
    assert isinstance(ack, dict), ack
    return "ok" if ack["ok"] else ack["error"]["code"]


# -- the world ----------------------------------------------------------------------------


def call(sio, event: str, payload, namespace: str = "/") -> dict:
    ack = sio.emit(event, payload, namespace=namespace, callback=True)
    assert ack["ok"] is True, (event, ack)
    return ack


def build_world(app, role: str, make_user, login, runner) -> World:
    peer, target = make_user("peer", password=PASSWORD), make_user("target", password=PASSWORD)
    make_user("target2", password=PASSWORD)
    peer_tab = socketio.test_client(app, flask_test_client=login(peer))
    # A file on a message in general, readable by the room's members.
    upload = call(peer_tab, "upload", {"name": "photo.png", "data": images.image_bytes("PNG", (40, 30))})
    shared = call(
        peer_tab,
        "message",
        {"room": "general", "body": "a photo", "attachments": [upload["attachment"]["id"]]},
    )["message"]
    peer_message = call(peer_tab, "message", {"room": "general", "body": "delete me"})["message"]
    target_tab = socketio.test_client(app, flask_test_client=login(target))
    world = World(app=app, role=role, browser=app.test_client(), token=None, subject=None)
    world.ids.update(file=shared["attachments"][0]["id"], peer_message=peer_message["id"])
    world.sids["target"] = socketio.server.manager.sid_from_eio_sid(target_tab.eio_sid, "/")
    world.sockets.update(peer=peer_tab, target=target_tab)
    if role == "anonymous":
        return world

    subject = make_user("subject", password=PASSWORD, admin=role in ("demoted", "admin"))
    world.subject = subject.username
    world.browser = login(subject)
    with app.app_context():
        found = users.find_user(subject.username)
        world.token = users.issue_token(found, app.config["SECRET_KEY"], app.config["TOKEN_TTL_SECONDS"])["token"]
    own_tab = socketio.test_client(app, flask_test_client=world.browser)
    world.names.update(own=f"own-{role}", left=f"left-{role}")
    for room in world.names.values():
        call(own_tab, "join", {"room": room})
    for purpose in ("edit", "delete", "react"):
        world.ids[purpose] = call(own_tab, "message", {"room": "general", "body": f"to {purpose}"})["message"]["id"]
    own_tab.disconnect()
    if role == "demoted":
        world.sockets["admin"] = socketio.test_client(app, namespace="/admin", flask_test_client=world.browser)
        assert world.sockets["admin"].is_connected("/admin")
        result = runner.invoke(args=["users", "demote", subject.username])
        assert result.exit_code == 0, result.output
    elif role == "muted":
        with app.app_context():
            mute(subject.username)
    elif role == "banned":
        with app.app_context():
            ban(subject.username)
    return world


@pytest.fixture
def app_settings() -> dict:
    # Every row is answered on its merits, never by a flood budget or the send limit.
    return {"RATE_LIMIT_COUNT": 1000, "SOCKET_EVENT_BURST": 10_000, "USER_EVENT_BURST": 10_000}


@pytest.fixture
def world_for(app, make_user, login, runner):
    return lambda role: build_world(app, role, make_user, login, runner)


# -- the tests ----------------------------------------------------------------------------


def routes(app) -> set[tuple[str, str]]:
    return {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }


def namespace_events(namespace: str) -> set[str]:
    handler = socketio.server.namespace_handlers[namespace]
    return {name.removeprefix("on_") for name in dir(handler) if name.startswith("on_")} - {"disconnect"}


def test_every_route_has_a_row(app):
    assert routes(app) == set(HTTP_ROWS)


@pytest.mark.parametrize("namespace", sorted(NAMESPACE_ROWS))
def test_every_event_has_a_row(app, namespace):
    assert namespace_events(namespace) == set(NAMESPACE_ROWS[namespace])


@pytest.mark.parametrize("role", ROLES)
def test_every_route_answers_each_role_as_documented(world_for, role):
    world = world_for(role)
    answers = {route: answer_of(request(world)) for route, (request, _expected) in HTTP_ROWS.items()}
    assert answers == {route: expected[role] for route, (_request, expected) in HTTP_ROWS.items()}


@pytest.mark.parametrize("role", ROLES)
def test_every_event_answers_each_role_as_documented(world_for, role):
    world = world_for(role)
    answers = {}
    for namespace, rows in NAMESPACE_ROWS.items():
        for credentials, how in (
            ({"flask_test_client": world.browser}, "cookie"),
            ({"auth": {"token": world.token}}, "token"),
        ):
            if role == "anonymous" and how == "token":
                continue
            connected, sio = connect_answer(world.app, namespace, **credentials)
            if role == "demoted" and namespace == "/admin":
                # The socket opened while still an admin is the one that matters.
                sio = world.sockets["admin"]
            answers[(namespace, "connect", how)] = connected
            for event, (payload, _expected) in rows.items():
                if event == "connect" or how == "token":
                    continue
                answers[(namespace, event, how)] = (
                    ack_answer(sio.emit(event, payload(world), namespace=namespace, callback=True))
                    if sio is not None
                    else connected
                )
    expected = {}
    for namespace, rows in NAMESPACE_ROWS.items():
        for event, (_payload, by) in rows.items():
            for how in ("cookie", "token"):
                if (role == "anonymous" and how == "token") or (event != "connect" and how == "token"):
                    continue
                expected[(namespace, event, how)] = by[role]
    assert answers == expected
