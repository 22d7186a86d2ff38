"""Moderation as tests set it up: through the audited actions, by an admin of the tests' own.

Call inside an application context.
"""

from datetime import timedelta

from app.database import write_transaction
from app.models import utcnow
from app.services import moderation, users

MODERATOR = "moderator"
MODERATOR_PASSWORD = "moderator password"


def moderator_id() -> int:
    """The acting admin, created on first use."""
    existing = users.find_user(MODERATOR)
    user, _created = users.create_admin(MODERATOR, None if existing else MODERATOR_PASSWORD)
    return user.id


def ban(username: str, reason: str | None = None) -> dict:
    return moderation.ban_user(moderator_id(), username, reason)


def unban(username: str) -> dict:
    return moderation.unban_user(moderator_id(), username)


def mute(username: str, seconds: int = 3600) -> dict:
    return moderation.mute_user(moderator_id(), username, seconds)


def unmute(username: str) -> dict:
    return moderation.unmute_user(moderator_id(), username)


def let_mute_lapse(username: str) -> None:
    """Stand in for the clock: the user's mute ended a second ago."""
    with write_transaction():
        users.get_user(username).muted_until = utcnow() - timedelta(seconds=1)
