"""Serving uploaded files, and the `flask files` commands."""

from flask import Blueprint, current_app

from app.services import files

bp = Blueprint("files", __name__)


def file_store() -> files.FileStore:
    return current_app.extensions["switchboard.files"]


def upload_limits(max_bytes: int) -> files.UploadLimits:
    return files.UploadLimits(
        max_bytes=max_bytes,
        max_pixels=current_app.config["IMAGE_MAX_PIXELS"],
        thumbnail_side=current_app.config["THUMBNAIL_MAX_SIDE"],
    )


from app.files import routes  # noqa: E402,F401
