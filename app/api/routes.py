"""JSON API views and the health check."""

from functools import wraps

import sqlalchemy as sa
from flask import current_app, g, jsonify, request

from app.api import bp
from app.errors import ServiceError
from app.extensions import db
from app.services import messages, rooms, users, validation


def json_body() -> dict:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ServiceError("invalid", "the request body must be a JSON object")
    return data


def token_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ServiceError("unauthorized", "send Authorization: Bearer <token>")
        g.api_user = users.user_from_token(
            token.strip(),
            current_app.config["SECRET_KEY"],
            current_app.config["TOKEN_TTL_SECONDS"],
        )
        return view(*args, **kwargs)

    return wrapper


@bp.post("/api/register")
def register():
    data = json_body()
    user = users.sign_up(data.get("username"), data.get("password"))
    return jsonify({"user": user.to_dict()}), 201


@bp.post("/api/token")
def token():
    data = json_body()
    throttle = current_app.extensions["switchboard.signin_throttle"]
    user = throttle.authenticate(data.get("username"), data.get("password"), request.remote_addr)
    return jsonify(
        users.issue_token(
            user,
            current_app.config["SECRET_KEY"],
            current_app.config["TOKEN_TTL_SECONDS"],
        )
    )


@bp.get("/api/rooms")
@token_required
def list_rooms():
    presence = current_app.extensions["switchboard.presence"]
    # Private rooms are listed to their members only.
    visible = rooms.directory(g.api_user.id)
    return jsonify({"rooms": rooms.room_dicts(visible, presence.online_user_ids())})


@bp.get("/api/rooms/<name>/messages")
@token_required
def room_messages(name: str):
    if not validation.ROOM_RE.fullmatch(name):
        raise ServiceError("not_found", f"no room named {name}")
    before = validation.query_int(request.args, "before", minimum=1)
    limit = validation.query_int(request.args, "limit", minimum=1)
    page, has_more = messages.room_history(name, before=before, limit=limit, user_id=g.api_user.id)
    return jsonify({"messages": page, "has_more": has_more})


@bp.get("/healthz")
def healthz():
    try:
        db.session.execute(sa.text("SELECT 1"))
    except Exception:
        current_app.logger.exception("health check: the database does not answer")
        db.session.rollback()
        return jsonify({"status": "unavailable"}), 503
    return jsonify({"status": "ok"})
