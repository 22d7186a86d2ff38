"""Attachment downloads: bytes only to those who may see them, everyone else 404."""

from __future__ import annotations

from flask import abort, current_app, request, send_file
from flask_login import current_user

from app.errors import ServiceError
from app.files import bp, file_store
from app.models import Attachment, User
from app.services import files, users


def bearer_token() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def reader() -> User | None:
    """The user asking, by bearer token or session cookie; None when neither names one."""
    token = bearer_token()
    if token is not None:
        try:
            return users.user_from_token(
                token, current_app.config["SECRET_KEY"], current_app.config["TOKEN_TTL_SECONDS"]
            )
        except ServiceError:
            return None
    if current_user.is_authenticated:
        return current_user._get_current_object()
    return None


def visible_or_404(attachment_id: int) -> Attachment:
    try:
        return files.visible_attachment(reader(), attachment_id)
    except ServiceError:
        abort(404)


def serve(digest: str, content_type: str, name: str, *, inline: bool):
    try:
        handle = file_store().open(digest)
    except FileNotFoundError:
        current_app.logger.error("blob %s of an attachment is missing from the file store", digest)
        abort(404)
    response = send_file(
        handle,
        mimetype=content_type + ("; charset=utf-8" if content_type == "text/plain" else ""),
        as_attachment=not inline,
        download_name=name,
        etag=digest,
        conditional=True,
        max_age=None,
    )
    # send_file marks cacheable responses public; these depend on who asks.
    response.headers["Cache-Control"] = f"private, max-age={current_app.config['FILE_CACHE_MAX_AGE']}"
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Even opened directly, a file can run nothing and load nothing.
    response.headers["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; sandbox"
    response.headers["Vary"] = "Cookie, Authorization"
    return response


@bp.get("/files/<int:attachment_id>/<name>")
def original(attachment_id: int, name: str):
    attachment = visible_or_404(attachment_id)
    return serve(attachment.sha256, attachment.content_type, attachment.name, inline=attachment.is_image)


@bp.get("/files/<int:attachment_id>/thumbnail/<name>")
def thumbnail(attachment_id: int, name: str):
    attachment = visible_or_404(attachment_id)
    if attachment.thumbnail_sha256 is None or attachment.thumbnail_type is None:
        abort(404)
    return serve(attachment.thumbnail_sha256, attachment.thumbnail_type, "thumbnail-" + attachment.name, inline=True)
