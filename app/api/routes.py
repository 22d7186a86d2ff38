"""JSON API views and the health check."""

from functools import wraps

import sqlalchemy as sa
from flask import current_app, g, jsonify, request
from flask_login import current_user
from flask_wtf.csrf import ValidationError, validate_csrf

from app.api import bp
from app.database import STORAGE, STORAGE_PROBLEMS, probe_write, storage_problem
from app.errors import ServiceError
from app.extensions import db
from app.files import file_store, upload_limits
from app.files.routes import bearer_token
from app.services import files, messages, rooms, search, users, validation


def json_body() -> dict:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ServiceError("invalid", "the request body must be a JSON object")
    return data


def token_user():
    """The user of the request's bearer token."""
    token = bearer_token()
    if token is None:
        raise ServiceError("unauthorized", "send Authorization: Bearer <token>")
    return users.user_from_token(token, current_app.config["SECRET_KEY"], current_app.config["TOKEN_TTL_SECONDS"])


def token_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        g.api_user = token_user()
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
    """200 while the database answers and takes writes. Writability is taken from this process's
    last write; before the first one, and after one failed for want of space or write access, a
    write that changes nothing proves it."""
    try:
        db.session.execute(sa.text("SELECT 1"))
        if not STORAGE.writable:
            db.session.rollback()
            probe_write()
    except Exception as error:
        db.session.rollback()
        problem = storage_problem(error)
        if problem is not None:
            current_app.logger.error("health check: %s", STORAGE_PROBLEMS[problem])
        else:
            current_app.logger.exception("health check: the database does not answer")
        return jsonify({"status": "unavailable"}), 503
    return jsonify({"status": "ok"})


# A multipart body carries the file plus its part headers and boundaries.
MULTIPART_OVERHEAD_BYTES = 16 * 1024


def uploading_user():
    """Bearer token, or the session cookie with its CSRF token in ``X-CSRFToken``."""
    if request.headers.get("Authorization"):
        return token_user()
    if not current_user.is_authenticated:
        raise ServiceError("unauthorized", "sign in, or send Authorization: Bearer <token>")
    if current_app.config.get("WTF_CSRF_ENABLED", True):
        try:
            validate_csrf(request.headers.get("X-CSRFToken"))
        except ValidationError:
            raise ServiceError("forbidden", "send the page's CSRF token in X-CSRFToken") from None
    return current_user._get_current_object()


@bp.post("/api/uploads")
def upload():
    max_bytes = current_app.config["UPLOAD_MAX_BYTES"]
    # Refused from the headers alone, before a byte of the body is read.
    if request.content_length is not None and request.content_length > max_bytes + MULTIPART_OVERHEAD_BYTES:
        raise ServiceError("too_large", f"files are limited to {max_bytes} bytes")
    user = uploading_user()
    # The same per-user allowance as `message`, `dm` and the `upload` event; mutes answer first.
    limiter = current_app.extensions["switchboard.rate_limiter"]
    within_limit = limiter.hit(f"send:{user.id}")
    messages.check_can_post(user)
    if not within_limit:
        raise ServiceError("rate_limited", f"slow down: at most {limiter.limit} uploads in {limiter.window:g} seconds")
    request.max_content_length = max_bytes + MULTIPART_OVERHEAD_BYTES
    upload = request.files.get("file")
    if upload is None:
        raise ServiceError("invalid", "send the file as the multipart field 'file'")
    data = upload.stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ServiceError("too_large", f"files are limited to {max_bytes} bytes")
    attachment = files.save_upload(user, upload.filename or "file", data, file_store(), upload_limits(max_bytes))
    return jsonify({"attachment": attachment}), 201


@bp.get("/api/search")
@token_required
def search_messages():
    limit = validation.query_int(request.args, "limit", minimum=1)
    found = search.search_messages(
        g.api_user, request.args.get("q"), request.args.get("room"), request.args.get("user"), limit
    )
    return jsonify({"messages": found})
