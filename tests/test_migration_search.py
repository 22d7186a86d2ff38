"""Migration 0003 on real databases: messages stored before it are searchable after it."""

from __future__ import annotations

import os
import subprocess

import pytest
import sqlalchemy as sa

from app import create_app
from app.config import TestingConfig
from app.extensions import db
from app.services import search, users
from tests.support import components
from tests.support.live_server import ROOT, VENV_BIN


def flask_db(database_url: str, *args: str) -> None:
    """`flask db ...` as an operator runs it, in its own process."""
    env = {**os.environ, "SWITCHBOARD_ENV": "development", "SECRET_KEY": "x", "DATABASE_URL": database_url}
    subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "wsgi", "db", *args], cwd=ROOT, env=env, check=True, capture_output=True
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrated.db'}"
        return
    url = components.create_postgres_database()
    yield url
    components.drop_postgres_database(url)


def test_upgrade_indexes_existing_messages_and_downgrade_removes_the_index(empty_database, tmp_path):
    app = create_app(
        type(
            "Config",
            (TestingConfig,),
            {"SQLALCHEMY_DATABASE_URI": empty_database, "UPLOAD_DIR": str(tmp_path / "uploads")},
        )
    )
    flask_db(empty_database, "upgrade", "0002")
    with app.app_context():
        # Rows as a database at 0002 holds them: written in SQL, since today's models have later columns.
        db.session.execute(
            sa.text(
                "INSERT INTO users (username, username_key, password_hash, is_admin, banned, created_at) "
                "VALUES ('ann', 'ann', 'not-a-hash', false, false, CURRENT_TIMESTAMP)"
            )
        )
        ann_id = db.session.scalar(sa.text("SELECT id FROM users WHERE username_key = 'ann'"))
        room_id = db.session.scalar(sa.text("SELECT id FROM rooms WHERE name = 'general'"))
        db.session.execute(
            sa.text(
                "INSERT INTO room_memberships (user_id, room_id, joined_at) VALUES (:user, :room, CURRENT_TIMESTAMP)"
            ),
            {"user": ann_id, "room": room_id},
        )
        db.session.execute(
            sa.text(
                "INSERT INTO messages (room_id, sender_id, body, created_at, deleted, rev) "
                "VALUES (:room, :sender, 'Written before the index, by Zoë', CURRENT_TIMESTAMP, false, 1)"
            ),
            {"room": room_id, "sender": ann_id},
        )
        db.session.commit()
        db.session.remove()

        flask_db(empty_database, "upgrade")

        found = search.search_messages(users.get_user("ann"), "ZOË index")
        assert [message["body"] for message in found] == ["Written before the index, by Zoë"]
        db.session.remove()
        flask_db(empty_database, "downgrade", "0002")
        flask_db(empty_database, "upgrade")
        flask_db(empty_database, "check")
        assert len(search.search_messages(users.get_user("ann"), "before")) == 1
        db.session.remove()
        db.engine.dispose()
