"""Accounts: registration, credentials, bearer tokens, admin rights, and the ban check at sign-in."""

import functools
import hashlib
import hmac
import secrets
from datetime import timedelta

import sqlalchemy as sa
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash

from app.database import write_transaction
from app.errors import ServiceError
from app.extensions import db
from app.models import RoomMembership, User, isoformat, utcnow
from app.services import validation
from app.services.hashing import off_hub
from app.services.hot_cache import UserState, changed
from app.services.notifier import notifier
from app.services.rooms import ensure_general

TOKEN_SALT = "switchboard-api-token"


def find_user(username: str) -> User | None:
    # No account has a name outside the rules, and such a name could not even be queried (NUL).
    if not isinstance(username, str) or not validation.USERNAME_RE.fullmatch(username):
        return None
    return db.session.scalar(sa.select(User).where(User.username_key == username.lower()))


def get_user(username) -> User:
    user = find_user(username)
    if user is None:
        raise ServiceError("not_found", "no such user")
    return user


def register_user(username, password) -> User:
    """Create an account and make it a member of general."""
    name = validation.username(username)
    secret = validation.password(password)
    if find_user(name) is not None:
        raise ServiceError("conflict", "that username is taken")
    user = User(username=name, username_key=name.lower())
    off_hub(user.set_password, secret)
    try:
        with write_transaction() as session:
            general = ensure_general(session)
            session.add(user)
            session.flush()
            session.add(RoomMembership(user_id=user.id, room_id=general.id))
    except IntegrityError:
        raise ServiceError("conflict", "that username is taken") from None
    return user


def sign_up(username, password) -> User:
    """Registration by the user themselves: refuses a password that is common, blank or the username."""
    name = validation.username(username)
    return register_user(name, validation.new_password(password, name))


def authenticate(username, password) -> User:
    user = find_user(username) if isinstance(username, str) else None
    usable = isinstance(password, str) and validation.storable(password)
    # Exactly one hash whatever the input, so the response time tells neither which
    # usernames exist nor anything about the password's shape.
    stored_hash = user.password_hash if user is not None else _dummy_password_hash()
    matches = off_hub(check_password_hash, stored_hash, password if usable else "")
    if user is None or not usable or not matches:
        raise ServiceError("unauthorized", "wrong username or password")
    if user.banned:
        raise ServiceError("banned", ban_message(user))
    return user


@functools.cache
def _dummy_password_hash() -> str:
    """A hash made the way real ones are, for timing-safe refusals of unknown usernames."""
    probe = User(username="", username_key="")
    off_hub(probe.set_password, secrets.token_hex(16))
    return probe.password_hash


def ban_message(user: User | UserState) -> str:
    return f"this account is banned: {user.ban_reason}" if user.ban_reason else "this account is banned"


def credential_stamp(user: User, secret_key: str) -> str:
    """Changes whenever the password does (a new hash has a new salt) and whenever the session
    version is raised (sign-out, ban): sessions and tokens carry it, so either ends every session
    and token issued before."""
    material = user.password_hash
    if user.session_version:
        # Version 0 stamps as before the version existed: upgrading signs nobody out.
        material += f"\x00{user.session_version}"
    digest = hmac.new(secret_key.encode(), material.encode(), hashlib.sha256)
    return digest.hexdigest()[:24]


def end_sessions(user_id: int, reason: str) -> None:
    """Sign the user out everywhere: every browser session, bearer token and live socket, on every worker."""
    with write_transaction() as session:
        session.execute(sa.update(User).where(User.id == user_id).values(session_version=User.session_version + 1))
    notifier().disconnect_user(user_id, reason)


def issue_token(user: User, secret_key: str, ttl_seconds: int) -> dict:
    payload = {"uid": user.id, "stamp": credential_stamp(user, secret_key)}
    token = URLSafeTimedSerializer(secret_key, salt=TOKEN_SALT).dumps(payload)
    expires_at = utcnow() + timedelta(seconds=ttl_seconds)
    return {"token": token, "expires_at": isoformat(expires_at), "user": user.to_dict()}


def user_from_token(token, secret_key: str, ttl_seconds: int) -> User:
    if not isinstance(token, str) or not token:
        raise ServiceError("unauthorized", "a valid token is required")
    try:
        data = URLSafeTimedSerializer(secret_key, salt=TOKEN_SALT).loads(token, max_age=ttl_seconds)
    except SignatureExpired:
        raise ServiceError("unauthorized", "the token has expired") from None
    except BadSignature:
        raise ServiceError("unauthorized", "the token is not valid") from None
    uid = data.get("uid") if isinstance(data, dict) else None
    # Only a token this server issued names its user by an int; "1" or true is no user id.
    user = db.session.get(User, uid) if type(uid) is int and 0 < uid <= validation.MAX_INTEGER else None
    if user is None:
        raise ServiceError("unauthorized", "the token is not valid")
    # While the ban lasts it is the answer; once lifted, the token stays revoked by the ban's new version.
    if user.banned:
        raise ServiceError("banned", ban_message(user))
    if not hmac.compare_digest(str(data.get("stamp")), credential_stamp(user, secret_key)):
        raise ServiceError("unauthorized", "the token was revoked: signed out, banned or the password changed since")
    return user


def create_admin(username: str, password: str | None) -> tuple[User, bool]:
    """Create an admin, or promote an existing user; returns (user, created)."""
    user = find_user(username)
    if user is None:
        if password is None:
            raise ServiceError("invalid", "a password is required to create a new user")
        user = register_user(username, password)
        created = True
    else:
        created = False
        if password is not None:
            validation.password(password)
    with write_transaction():
        user = get_user(username)
        user.is_admin = True
        if password is not None and not created:
            user.set_password(password)
    changed(users=[user.id])
    return user, created


def set_admin(username, is_admin: bool) -> User:
    with write_transaction():
        user = get_user(username)
        user.is_admin = is_admin
    changed(users=[user.id])
    return user


def search_users(query: str, limit: int = 50) -> list[User]:
    stmt = sa.select(User).order_by(User.username_key).limit(limit)
    if query:
        escaped = query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(User.username_key.like(f"%{escaped}%", escape="\\"))
    return list(db.session.scalars(stmt))
