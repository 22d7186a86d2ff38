"""Property-based fuzzing of every client event of `/` and `/admin` with arbitrary JSON.

Whatever the payload (wrong types, nesting, huge numbers, unicode edge cases, missing and extra
fields), every ack is a success or a refusal with a contract code, nothing raises, nothing is
stored by a refused event, and the socket stays usable. Examples are derandomized, so a run is
repeatable; a failure prints the payload that caused it.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.errors import HTTP_STATUS
from app.extensions import db
from app.models import AuditEntry, Message, Reaction, Room
from tests.conftest import PASSWORD

CODES = set(HTTP_STATUS)
HUGE = 2**80

# Every field name the contract's events use, so the fuzzer reaches past the first type check.
FIELDS = [
    "room", "body", "client_id", "id", "emoji", "active", "to_sid", "to_user", "user", "before",
    "limit", "after", "after_rev", "q", "topic", "private", "reply_to", "attachments", "name",
    "type", "data", "sid", "reason", "seconds", "query",
]  # fmt: skip
CHAT_EVENTS = [
    "join", "leave", "rooms", "invite", "topic", "message", "dm", "edit", "delete", "react",
    "history", "dm_history", "sync", "who", "read", "typing", "upload", "search",
]  # fmt: skip
ADMIN_EVENTS = [
    "stats", "sockets", "users", "audit", "kick", "ban", "unban", "mute", "unmute",
    "delete_message", "announce",
]  # fmt: skip

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-HUGE, max_value=HUGE)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(["general", "ann", "bob", "\x00", "\ud800", "👍", " ", "a" * 5000, "-1", "1_000", "１"])
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
# The fields each event reads, so most examples get past "payload must be an object".
EVENT_FIELDS = {
    "join": ["room", "private", "topic"], "leave": ["room"], "rooms": ["q"], "invite": ["room", "user"],
    "topic": ["room", "topic"], "message": ["room", "body", "client_id", "reply_to", "attachments"],
    "dm": ["to_sid", "to_user", "body", "client_id", "reply_to", "attachments"], "edit": ["id", "body"],
    "delete": ["id"], "react": ["id", "emoji", "active"], "history": ["room", "before", "limit"],
    "dm_history": ["user", "before", "limit"], "sync": ["after", "after_rev"], "who": ["room"],
    "read": ["room", "user", "id"], "typing": ["room", "active"], "upload": ["name", "type", "data"],
    "search": ["q", "room", "user", "limit"], "stats": [], "sockets": [], "users": ["query"],
    "audit": ["limit"], "kick": ["sid"], "ban": ["user", "reason"], "unban": ["user"],
    "mute": ["user", "seconds"], "unmute": ["user"], "delete_message": ["id"], "announce": ["body"],
}  # fmt: skip


def payloads(event: str):
    fields = EVENT_FIELDS[event]
    return (
        st.fixed_dictionaries({}, optional={field: values for field in fields})
        | st.fixed_dictionaries({field: values for field in fields})
        | st.dictionaries(st.sampled_from(FIELDS), values, max_size=5)
        | values
    )


fuzz = settings(
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def app_settings():
    """The flood and rate limits lifted: this is about what each payload does, not how many there are."""
    unlimited = 10**9
    return {
        "RATE_LIMIT_COUNT": unlimited,
        "ROOM_CREATE_LIMIT": unlimited,
        "SOCKET_EVENT_BURST": unlimited,
        "SOCKET_EVENT_REFILL_PER_SECOND": unlimited,
        "USER_EVENT_BURST": unlimited,
        "USER_EVENT_REFILL_PER_SECOND": unlimited,
    }


def counts(app) -> tuple[int, int, int, int]:
    with app.app_context():
        result = tuple(
            db.session.scalar(sa.select(sa.func.count()).select_from(model))
            for model in (Message, Reaction, Room, AuditEntry)
        )
        db.session.remove()
        return result  # type: ignore[return-value]


def check_answer(answer, event, payload) -> None:
    assert isinstance(answer, dict), (event, payload, answer)
    if answer.get("ok") is True:
        return
    assert answer.get("ok") is False, (event, payload, answer)
    assert answer["error"]["code"] in CODES, (event, payload, answer)
    assert answer["error"]["code"] != "internal", (event, payload, answer)
    assert isinstance(answer["error"]["message"], str) and answer["error"]["message"]


@pytest.mark.parametrize("event", CHAT_EVENTS)
def test_chat_events_answer_every_payload_with_a_known_code(app, make_user, socket_client, event):
    ann = make_user("ann", password=PASSWORD)
    make_user("bob", password=PASSWORD)
    sio = socket_client(ann)
    sio.get_received("/")

    @fuzz
    @given(payload=payloads(event))
    def run(payload):
        before = counts(app)
        answer = sio.emit(event, payload, callback=True)
        check_answer(answer, event, payload)
        if answer.get("ok") is not True:
            assert counts(app) == before, (event, payload, answer)
        assert sio.is_connected("/")

    run()
    assert sio.emit("who", {}, callback=True)["ok"] is True


@pytest.mark.parametrize("event", ADMIN_EVENTS)
def test_admin_events_answer_every_payload_with_a_known_code(app, make_user, socket_client, event):
    boss = make_user("boss", admin=True, password=PASSWORD)
    make_user("ann", password=PASSWORD)
    sio = socket_client(boss, "/admin")

    @fuzz
    @given(payload=payloads(event))
    def run(payload):
        before = counts(app)
        answer = sio.emit(event, payload, namespace="/admin", callback=True)
        check_answer(answer, event, payload)
        if answer.get("ok") is not True:
            assert counts(app) == before, (event, payload, answer)
        assert sio.is_connected("/admin")

    run()
    assert sio.emit("stats", {}, namespace="/admin", callback=True)["ok"] is True
