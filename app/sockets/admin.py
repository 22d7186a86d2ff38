"""The `/admin` namespace: live statistics and moderation, for admins only."""

from __future__ import annotations

from flask import request
from flask_socketio import ConnectionRefusedError

from app.errors import ServiceError
from app.extensions import db
from app.models import User
from app.services.presence import PresenceStore
from app.sockets.common import GuardedNamespace, connecting_user


class AdminNamespace(GuardedNamespace):
    def __init__(self, namespace: str, *, presence: PresenceStore):
        super().__init__(namespace)
        self.presence = presence
        self.admins: dict[str, int] = {}  # admin socket sid -> user id

    def on_connect(self, auth=None):
        user = connecting_user(auth)
        if not user.is_admin:
            raise ConnectionRefusedError("forbidden")
        self.admins[request.sid] = user.id

    def on_disconnect(self, reason=None):
        self.admins.pop(request.sid, None)

    def _admin(self) -> User:
        """Authorization on every event: a demoted or banned admin can do nothing more."""
        user_id = self.admins.get(request.sid)
        user = db.session.get(User, user_id) if user_id is not None else None
        if user is None:
            raise ServiceError("unauthorized", "this socket is not signed in")
        if not user.is_admin or user.banned:
            raise ServiceError("forbidden", "admins only")
        return user
