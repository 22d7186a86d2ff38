"""`flask files prune` through the Flask CLI runner."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import sqlalchemy as sa

from app.extensions import db
from app.models import Attachment, utcnow
from app.services import files, messages, users


def make_old(app, attachment_ids: list[int]) -> None:
    """Age rows and every blob by two days, as if the uploads were made the day before yesterday."""
    with app.app_context():
        for attachment_id in attachment_ids:
            db.session.get(Attachment, attachment_id).created_at = utcnow() - timedelta(days=2)
        db.session.commit()
    store = app.extensions["switchboard.files"]
    past = time.time() - 2 * 86400
    for digest, _ in store.blobs():
        os.utime(store._path(digest), (past, past))


def test_prune_removes_unused_uploads_older_than_a_day_only(app, runner, make_user):
    ann = make_user()
    store = app.extensions["switchboard.files"]
    limits = files.UploadLimits(max_bytes=1000, max_pixels=1000, thumbnail_side=400)
    with app.app_context():
        user = users.get_user(ann.username)
        unused = files.save_upload(user, "unused.txt", b"nobody posted me", store, limits)
        used = files.save_upload(user, "used.txt", b"posted", store, limits)
        messages.post_room_message(user, "general", "here", attachments=[used["id"]])
    make_old(app, [unused["id"], used["id"]])
    with app.app_context():
        fresh = files.save_upload(users.get_user(ann.username), "fresh.txt", b"just now", store, limits)

    result = runner.invoke(args=["files", "prune"])

    assert result.exit_code == 0, result.output
    assert "Removed 1 unused uploads and 1 unreferenced files." in result.output
    with app.app_context():
        assert set(db.session.scalars(sa.select(Attachment.id))) == {used["id"], fresh["id"]}
    assert {digest for digest, _ in store.blobs()} == {files.sha256_hex(b"posted"), files.sha256_hex(b"just now")}

    again = runner.invoke(args=["files", "prune"])
    assert "Removed 0 unused uploads and 0 unreferenced files." in again.output


def test_prune_takes_another_age(app, runner, make_user):
    ann = make_user()
    with app.app_context():
        files.save_upload(
            users.get_user(ann.username),
            "a.txt",
            b"a",
            app.extensions["switchboard.files"],
            files.UploadLimits(max_bytes=10, max_pixels=10, thumbnail_side=400),
        )
    assert "Removed 0 unused" in runner.invoke(args=["files", "prune"]).output
    result = runner.invoke(args=["files", "prune", "--older-than", "0"])
    assert "Removed 1 unused uploads and 1 unreferenced files." in result.output
    help_text = runner.invoke(args=["files", "prune", "--help"]).output
    assert "older than a day" in help_text
