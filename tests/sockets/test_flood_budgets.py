"""Flood budgets in the dispatch layer: cost-aware, per socket and per user, refused before any handler runs."""

import pytest

from app.extensions import socketio
from app.services.ratelimit import TokenBuckets
from app.sockets.common import EVENT_COSTS
from tests.support.apps import app_on_fresh_database


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_bucket_spends_refills_and_refuses_without_spending():
    clock = FakeClock()
    buckets = TokenBuckets(10, 2, clock=clock)

    assert buckets.take("a", 6)
    assert not buckets.take("a", 5)  # 4 left: refused, and nothing spent
    assert buckets.take("a", 4)
    assert not buckets.take("a", 1)
    assert buckets.take("b", 10)  # keys are independent
    clock.now += 1.5
    assert buckets.take("a", 3)
    assert not buckets.take("a", 1)
    clock.now += 100
    assert buckets.take("a", 10)  # refilled to capacity, never beyond


def test_reading_costs_less_than_querying():
    assert EVENT_COSTS["typing"] == EVENT_COSTS["read"] == EVENT_COSTS["who"] == 1
    assert EVENT_COSTS["join"] == EVENT_COSTS["history"] == EVENT_COSTS["sync"] == 5


@pytest.fixture
def budget_app(database_url):
    with app_on_fresh_database(
        {
            "SQLALCHEMY_DATABASE_URI": database_url,
            "SOCKET_EVENT_BURST": 10,
            "SOCKET_EVENT_REFILL_PER_SECOND": 0.001,
            "USER_EVENT_BURST": 15,
            "USER_EVENT_REFILL_PER_SECOND": 0.001,
            "SOCKET_FLOOD_REFUSALS": 1000,
        }
    ) as app:
        yield app


def connect(app, username: str):
    from app.services import users

    with app.app_context():
        users.register_user(username, "correct horse battery")
    client = app.test_client()
    client.post("/login", data={"username": username, "password": "correct horse battery"})
    return socketio.test_client(app, flask_test_client=client)


def ask(sio, event, payload):
    return sio.emit(event, payload, callback=True)


def test_events_past_the_socket_budget_are_refused_by_cost(budget_app):
    sio = connect(budget_app, "ann")
    try:
        assert ask(sio, "join", {"room": "general"})["ok"] is True  # 5 of 10
        assert ask(sio, "join", {"room": "general"})["ok"] is True  # 10 of 10
        refused = ask(sio, "who", {"room": "general"})
        assert refused == {"ok": False, "error": {"code": "rate_limited", "message": refused["error"]["message"]}}
        unknown = ask(sio, "no_such_event", {})
        assert unknown["ok"] is False and unknown["error"]["code"] == "rate_limited"
        assert sio.is_connected()
    finally:
        sio.disconnect()


def test_the_user_budget_spans_the_users_sockets(budget_app):
    first = connect(budget_app, "bob")
    client = budget_app.test_client()
    client.post("/login", data={"username": "bob", "password": "correct horse battery"})
    second = socketio.test_client(budget_app, flask_test_client=client)
    try:
        assert ask(first, "join", {"room": "general"})["ok"] is True  # user 5 of 15
        assert ask(first, "join", {"room": "general"})["ok"] is True  # user 10 of 15
        assert ask(second, "join", {"room": "general"})["ok"] is True  # user 15 of 15, socket 5 of 10
        refused = ask(second, "who", {"room": "general"})  # socket has room, user has none
        assert refused["ok"] is False and refused["error"]["code"] == "rate_limited"
        other = connect(budget_app, "cat")
        assert ask(other, "who", {"room": "general"})["ok"] is True  # others are unaffected
        other.disconnect()
    finally:
        first.disconnect()
        second.disconnect()
