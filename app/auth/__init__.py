"""Accounts in the browser: register, sign in, sign out."""

from flask import Blueprint

bp = Blueprint("auth", __name__)

# Session key of the signed-in user's credential stamp (users.credential_stamp).
CREDENTIAL_STAMP_KEY = "_credential_stamp"

from app.auth import routes  # noqa: E402,F401
