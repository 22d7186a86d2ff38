"""An app on a fresh database, with the `general` room, for fixtures that need their own settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from app import create_app
from app.config import TestingConfig
from app.extensions import db
from app.models import Room


@contextmanager
def app_on_fresh_database(settings: dict) -> Iterator:
    """``TestingConfig`` with ``settings`` on top; the tables are dropped and the engine disposed afterwards.

    No app context stays pushed: requests and socket events must each get their own (a shared one
    would share flask.g, and with it Flask-Login's cached user).
    """
    app = create_app(type("Config", (TestingConfig,), settings))
    with app.app_context():
        db.create_all()
        db.session.add(Room(name="general"))
        db.session.commit()
    try:
        yield app
    finally:
        with app.app_context():
            db.session.remove()
            db.drop_all()
            db.engine.dispose()
