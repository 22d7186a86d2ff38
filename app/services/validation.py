"""Payload checks shared by the socket handlers and the JSON API."""

import functools
import importlib.util
import re
from pathlib import Path
from typing import Any

from app.errors import ServiceError

USERNAME_RE = re.compile(r"[A-Za-z0-9_.\-]{3,32}")
ROOM_RE = re.compile(r"[a-z0-9][a-z0-9_\-]{0,63}")
MAX_BODY = 4000
MAX_CLIENT_ID = 64
DEFAULT_LIMIT = 50
MAX_LIMIT = 100
# Ids are 32-bit INTEGER columns on PostgreSQL; a larger value would fail in the database, not here.
MAX_INTEGER = 2**31 - 1
QUERY_INTEGER_RE = re.compile(r"-?[0-9]{1,18}", re.ASCII)


def storable(value: str) -> bool:
    """JSON can carry NUL and lone surrogates; PostgreSQL text holds no NUL and UTF-8 no lone surrogate."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def payload(data: Any) -> dict:
    """Socket payloads are JSON objects; a missing payload counts as empty."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ServiceError("invalid", "payload must be a JSON object")
    return data


def username(value: Any, field: str = "username") -> str:
    if not isinstance(value, str) or not USERNAME_RE.fullmatch(value):
        raise ServiceError(
            "invalid",
            f"{field} must be 3-32 characters of letters A-Z, digits, '_', '.' or '-'",
        )
    return value


def password(value: Any) -> str:
    if not isinstance(value, str) or not 8 <= len(value) <= 128:
        raise ServiceError("invalid", "password must be 8-128 characters")
    if not storable(value):
        raise ServiceError("invalid", "password contains characters that cannot be used")
    return value


@functools.cache
def common_passwords() -> frozenset[str]:
    """The 30,000 most common passwords of zxcvbn's frequency lists, lower-cased.

    Only the lists' own module is loaded: importing the zxcvbn package would also build its
    ranked dictionaries of every list, some 16 MB this server has no use for.
    """
    package = importlib.util.find_spec("zxcvbn")
    if package is None or not package.submodule_search_locations:
        raise RuntimeError("the zxcvbn package (requirements.txt) is not installed")
    path = Path(next(iter(package.submodule_search_locations))) / "frequency_lists.py"
    spec = importlib.util.spec_from_file_location("switchboard_zxcvbn_frequency_lists", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    passwords = module.FREQUENCY_LISTS["passwords"]
    words = passwords.split(",") if isinstance(passwords, str) else passwords
    return frozenset(word.lower() for word in words)


def new_password(value: Any, username: str) -> str:
    """A password someone chooses for themselves: the length rule plus the ones guessers try first."""
    secret = password(value)
    if not secret.strip():
        raise ServiceError("invalid", "password must not be only spaces")
    if secret.casefold() == username.casefold():
        raise ServiceError("invalid", "password must not be the same as the username")
    if secret.lower() in common_passwords():
        raise ServiceError("invalid", "password is one of the most common passwords; choose another")
    return secret


def room_name(value: Any) -> str:
    if not isinstance(value, str):
        raise ServiceError("invalid", "room must be a string")
    if len(value) > 64:
        raise ServiceError("too_large", "room names are at most 64 characters")
    if not ROOM_RE.fullmatch(value):
        raise ServiceError(
            "invalid",
            "room names are 1-64 characters of a-z, 0-9, '_' and '-', starting with a letter or digit",
        )
    return value


def body(value: Any) -> str:
    if not isinstance(value, str):
        raise ServiceError("invalid", "body must be a string")
    text = value.strip()
    if not text:
        raise ServiceError("invalid", "body must not be empty")
    if not storable(text):
        raise ServiceError("invalid", "body must be text without NUL characters or lone surrogates")
    if len(text) > MAX_BODY:
        raise ServiceError("too_large", f"body is limited to {MAX_BODY} characters")
    return text


def client_id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ServiceError("invalid", "client_id must be a non-empty string")
    if len(value) > MAX_CLIENT_ID:
        raise ServiceError("too_large", f"client_id is limited to {MAX_CLIENT_ID} characters")
    if not storable(value):
        raise ServiceError("invalid", "client_id must be text without NUL characters or lone surrogates")
    return value


def integer(value: Any, field: str, *, minimum: int = 0, maximum: int | None = MAX_INTEGER) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ServiceError("invalid", f"{field} must be an integer >= {minimum}")
    if maximum is not None and value > maximum:
        raise ServiceError("invalid", f"{field} must be an integer from {minimum} to {maximum}")
    return value


def optional_integer(value: Any, field: str, *, minimum: int = 0) -> int | None:
    return None if value is None else integer(value, field, minimum=minimum)


def limit(value: Any, default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> int:
    """Page sizes default to 50; larger requests are clamped to the maximum."""
    if value is None:
        return default
    return min(integer(value, "limit", minimum=1, maximum=None), maximum)


def boolean(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise ServiceError("invalid", f"{field} must be true or false")
    return value


def query_int(args: Any, field: str, *, minimum: int = 0) -> int | None:
    """Integers from a query string (the JSON API's paging parameters)."""
    raw = args.get(field)
    if raw is None or raw == "":
        return None
    # ASCII digits only: int() would also take "１２", "1_000" and surrounding spaces.
    if not QUERY_INTEGER_RE.fullmatch(raw):
        raise ServiceError("invalid", f"{field} must be an integer")
    value = int(raw)
    # Ranges are the business of whoever uses the value (a page size is clamped, an id is checked).
    return integer(value, field, minimum=minimum, maximum=None)
