"""Text fields of /admin events that PostgreSQL could not store (NUL, lone surrogates) answer invalid, not internal."""

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import AuditEntry, User

ADMIN = "/admin"

UNSTORABLE = ["bad\x00reason", "lone \ud800 surrogate", "\udfff"]


def ask(sio, event: str, payload: dict) -> dict:
    return sio.emit(event, payload, namespace=ADMIN, callback=True)


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize("text", UNSTORABLE, ids=repr)
def test_unstorable_text_in_admin_fields_is_invalid_and_changes_nothing(app, make_user, socket_client, text):
    admin = make_user(admin=True)
    make_user("alice")
    sio = socket_client(admin, ADMIN)

    answers = {
        "ban.reason": ask(sio, "ban", {"user": "alice", "reason": text}),
        "users.query": ask(sio, "users", {"query": text}),
        "kick.sid": ask(sio, "kick", {"sid": text}),
    }

    for field, answer in answers.items():
        assert answer["ok"] is False, (field, answer)
        assert answer["error"]["code"] == "invalid", (field, answer)
    with app.app_context():
        assert db.session.scalar(sa.select(User.banned).where(User.username == "alice")) is False
        assert db.session.scalar(sa.select(sa.func.count(AuditEntry.id))) == 0
    assert ask(sio, "users", {"query": "ali"})["ok"] is True
