"""The JSON API for bots and scripts, authenticated with bearer tokens."""

from flask import Blueprint

bp = Blueprint("api", __name__)

from app.api import routes  # noqa: E402,F401
