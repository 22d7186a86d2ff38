"""File storage, sniffing, thumbnails and pruning, without HTTP or sockets."""

from __future__ import annotations

import io
import os
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from PIL import Image

from app.errors import ServiceError
from app.extensions import db
from app.models import Attachment, User, utcnow
from app.services import files, messages
from tests.support import images

LIMITS = files.UploadLimits(max_bytes=10 * 1024 * 1024, max_pixels=40_000_000, thumbnail_side=400)


@pytest.fixture
def store(tmp_path):
    return files.FilesystemStore(tmp_path / "blobs")


def inspect(data: bytes) -> files.Inspected:
    return files.inspect(data, max_pixels=LIMITS.max_pixels, thumbnail_side=LIMITS.thumbnail_side)


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("GIF", "image/gif"), ("WEBP", "image/webp")],
)
def test_images_get_their_size_and_a_thumbnail_at_most_400_px(fmt, content_type):
    found = inspect(images.image_bytes(fmt, (1000, 250)))

    assert (found.content_type, found.width, found.height) == (content_type, 1000, 250)
    thumbnail = Image.open(io.BytesIO(found.thumbnail))
    assert thumbnail.size == (400, 100)
    assert found.thumbnail_type == Image.MIME[thumbnail.format]


def test_exif_orientation_is_applied_and_the_thumbnail_carries_no_metadata():
    data = images.jpeg_with_orientation((800, 400), orientation=6)
    assert Image.open(io.BytesIO(data)).getexif()[0x0110] == "Secret Camera"

    found = inspect(data)

    # Stored 800 x 400, shown turned a quarter: 400 x 800.
    assert (found.width, found.height) == (400, 800)
    thumbnail = Image.open(io.BytesIO(found.thumbnail))
    assert thumbnail.size == (200, 400)
    assert dict(thumbnail.getexif()) == {}
    assert b"Secret Camera" not in found.thumbnail
    assert "icc_profile" not in thumbnail.info and "exif" not in thumbnail.info


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"<html><script>alert(1)</script></html>", "text/plain"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "text/plain"),
        ("zoë's notes\n".encode(), "text/plain"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "application/pdf"),
        (b"\x00\x01\x02binary\xff", "application/octet-stream"),
        (b"GIF89a but not really", "text/plain"),
    ],
)
def test_content_that_is_not_an_image_is_never_called_one(data, content_type):
    found = inspect(data)
    assert found == files.Inspected(content_type=content_type)


def test_a_truncated_jpeg_is_a_plain_file():
    found = inspect(images.truncated_jpeg())
    assert found == files.Inspected(content_type="application/octet-stream")


def test_a_decompression_bomb_is_refused_from_its_header():
    bomb = images.png_bomb(50_000, 50_000)
    assert len(bomb) < 10_000
    started = time.monotonic()
    with pytest.raises(files.ImageTooLarge):
        inspect(bomb)
    assert time.monotonic() - started < 1.0


def test_the_store_writes_each_content_once_and_leaves_no_temporary_file(store):
    first = store.put(b"hello")
    second = store.put(b"hello")

    assert first == second == files.sha256_hex(b"hello")
    assert [digest for digest, _ in store.blobs()] == [first]
    assert list(store.temporary.iterdir()) == []
    with store.open(first) as handle:
        assert handle.read() == b"hello"


def test_a_failed_write_leaves_neither_blob_nor_temporary_file(store, monkeypatch):
    def broken_fsync(fd):
        raise OSError("disk on fire")

    monkeypatch.setattr(files.os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        store.put(b"half")
    assert not store.exists(files.sha256_hex(b"half"))
    assert list(store.temporary.iterdir()) == []


def _uploader(ctx_user_name: str = "uploader") -> User:
    from app.services import users

    return users.register_user(ctx_user_name, "correct horse battery")


def test_the_same_file_uploaded_twice_is_stored_once_with_two_rows(ctx, store):
    user = _uploader()
    data = images.image_bytes("PNG", (50, 50))

    first = files.save_upload(user, "a.png", data, store, LIMITS)
    second = files.save_upload(user, "copy.png", data, store, LIMITS)

    assert first["id"] != second["id"]
    assert first["type"] == second["type"] == "image/png"
    rows = db.session.scalars(sa.select(Attachment)).all()
    assert {row.sha256 for row in rows} == {files.sha256_hex(data)}
    # The original and one thumbnail.
    assert len(list(store.blobs())) == 2


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("", b"x", "invalid"),
        ("x" * 201, b"x", "invalid"),
        ("bad\nname", b"x", "invalid"),
        (42, b"x", "invalid"),
        ("a.txt", "not bytes", "invalid"),
        ("a.txt", b"", "invalid"),
        ("a.txt", b"x" * (LIMITS.max_bytes + 1), "too_large"),
        ("bomb.png", images.png_bomb(), "invalid"),
    ],
)
def test_bad_uploads_are_refused_and_store_nothing(ctx, store, name, data, code):
    user = _uploader()
    with pytest.raises(ServiceError) as refused:
        files.save_upload(user, name, data, store, LIMITS)
    assert refused.value.code == code
    assert db.session.scalar(sa.select(sa.func.count(Attachment.id))) == 0
    assert list(store.blobs()) == []


def test_prune_removes_unused_old_uploads_and_those_of_deleted_messages_and_their_unshared_blobs(ctx, store):
    user = _uploader()
    old_unused = files.save_upload(user, "old.txt", b"old and unused", store, LIMITS)
    old_used = files.save_upload(user, "used.txt", b"old but used", store, LIMITS)
    fresh = files.save_upload(user, "fresh.txt", b"fresh", store, LIMITS)
    shared_old = files.save_upload(user, "shared.txt", b"shared bytes", store, LIMITS)
    shared_fresh = files.save_upload(user, "shared-again.txt", b"shared bytes", store, LIMITS)
    of_deleted = files.save_upload(user, "regret.txt", b"posted, then deleted", store, LIMITS)
    messages.post_room_message(user, "general", "see attached", attachments=[old_used["id"]])
    regret = messages.post_room_message(user, "general", "oops", attachments=[of_deleted["id"]]).message
    messages.delete_message(user, regret["id"])
    two_days_ago = utcnow() - timedelta(days=2)
    for attachment_id in (old_unused["id"], old_used["id"], shared_old["id"]):
        db.session.get(Attachment, attachment_id).created_at = two_days_ago
    db.session.commit()
    # Blobs look old too, as they would after a day on disk.
    past = time.time() - 2 * 86400
    for digest, _ in store.blobs():
        os.utime(store._path(digest), (past, past))
    orphan = store.put(b"written, then the server died before its row committed")
    os.utime(store._path(orphan), (past, past))

    result = files.prune(store, 86400)

    assert result == files.Pruned(uploads=3, blobs=3)
    remaining = set(db.session.scalars(sa.select(Attachment.id)))
    assert remaining == {old_used["id"], fresh["id"], shared_fresh["id"]}
    stored = {digest for digest, _ in store.blobs()}
    assert stored == {files.sha256_hex(b) for b in (b"old but used", b"fresh", b"shared bytes")}
