"""Uploaded files: content-addressed storage, type sniffing and thumbnails, who may read them, pruning.

Bytes live in a ``FileStore`` under their sha256, so a file uploaded twice is stored once; the
database holds one ``Attachment`` row per upload. A blob is written (temp file, fsync, rename)
before its row commits, so a crash can leave an unreferenced blob behind, which ``prune`` sweeps,
but never a row without its bytes.

The type is what Pillow finds the content to be, never the client's claim or the file name.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import time
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, cast

import sqlalchemy as sa
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from app.database import write_transaction
from app.errors import ServiceError
from app.extensions import db
from app.models import Attachment, Message, RoomMembership, User, attachment_dict, utcnow
from app.services import validation

log = logging.getLogger("switchboard.files")

MAX_NAME = 200
# Pillow's formats the chat shows inline, and the type each is served with.
IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
OCTET_STREAM = "application/octet-stream"
TEXT_CONTROL_OK = {"\t", "\n", "\r", "\f"}

# The configured pixel limit is checked in ``inspect`` from the header alone, before any pixel is
# decoded; Pillow's own process-wide check (a warning, then an error, at a fixed size) would only
# repeat it, and its warning is not thread-safe to silence per call.
Image.MAX_IMAGE_PIXELS = None


# -- storage ----------------------------------------------------------------


class FileStore(ABC):
    """Blobs by sha256. ``put`` is idempotent: the same bytes are stored once."""

    @abstractmethod
    def put(self, data: bytes) -> str:
        """Store the bytes durably before returning their sha256."""

    @abstractmethod
    def open(self, sha256: str) -> IO[bytes]:
        """The stored bytes; FileNotFoundError when there are none."""

    @abstractmethod
    def exists(self, sha256: str) -> bool: ...

    @abstractmethod
    def delete(self, sha256: str) -> None: ...

    @abstractmethod
    def blobs(self) -> Iterator[tuple[str, float]]:
        """Every stored blob as (sha256, time of its last ``put``, as a Unix time)."""

    @abstractmethod
    def sweep_temporary(self, older_than: float) -> int:
        """Remove half-written files that a crash left behind; returns how many."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _is_sha256(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


class FilesystemStore(FileStore):
    """Blobs as files ``<root>/<first two hex digits>/<sha256>``, written to a temp name and renamed."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.temporary = self.root / "tmp"

    def _path(self, sha256: str) -> Path:
        if not _is_sha256(sha256):
            raise ValueError(f"not a sha256: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def put(self, data: bytes) -> str:
        digest = sha256_hex(data)
        target = self._path(digest)
        if target.exists():
            try:
                # A fresh mtime tells prune that an upload is about to reference this blob again.
                os.utime(target)
                return digest
            except FileNotFoundError:
                pass  # pruned meanwhile: write it again
        self.temporary.mkdir(parents=True, exist_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(dir=self.temporary, prefix="upload-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_name, target)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
        _fsync_directory(target.parent)
        return digest

    def open(self, sha256: str) -> IO[bytes]:
        return self._path(sha256).open("rb")

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).exists()

    def delete(self, sha256: str) -> None:
        self._path(sha256).unlink(missing_ok=True)

    def blobs(self) -> Iterator[tuple[str, float]]:
        if not self.root.is_dir():
            return
        for directory in self.root.iterdir():
            if len(directory.name) != 2 or not directory.is_dir():
                continue
            for path in directory.iterdir():
                if _is_sha256(path.name):
                    try:
                        yield path.name, path.stat().st_mtime
                    except FileNotFoundError:
                        continue

    def sweep_temporary(self, older_than: float) -> int:
        removed = 0
        if self.temporary.is_dir():
            for path in self.temporary.iterdir():
                try:
                    if path.stat().st_mtime < older_than:
                        path.unlink()
                        removed += 1
                except FileNotFoundError:
                    continue
        return removed


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable, so a power cut cannot undo it after the row commits."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- inspection -------------------------------------------------------------


@dataclass(frozen=True)
class Inspected:
    """What the content turned out to be."""

    content_type: str
    width: int | None = None
    height: int | None = None
    thumbnail: bytes | None = None
    thumbnail_type: str | None = None


class ImageTooLarge(Exception):
    pass


def inspect(data: bytes, *, max_pixels: int, thumbnail_side: int) -> Inspected:
    """Sniff the content: an image Pillow can decode gets its size and a thumbnail.

    Anything that is not a decodable PNG, JPEG, GIF or WebP (a truncated JPEG, HTML named
    ``.png``) is a plain file. An image with more than ``max_pixels`` pixels raises
    ImageTooLarge, before any pixel is decoded.
    """
    try:
        return _inspect_image(data, max_pixels, thumbnail_side)
    except ImageTooLarge:
        raise
    except Exception as error:  # Pillow raises many kinds of error on malformed input
        log.debug("not a decodable image: %s", error)
        return Inspected(content_type=sniff_other(data))


def _inspect_image(data: bytes, max_pixels: int, thumbnail_side: int) -> Inspected:
    try:
        image = Image.open(io.BytesIO(data), formats=list(IMAGE_TYPES))
    except UnidentifiedImageError:
        return Inspected(content_type=sniff_other(data))
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise ImageTooLarge
        content_type = IMAGE_TYPES.get(image.format or "")
        if content_type is None:
            return Inspected(content_type=sniff_other(data))
        if image.getexif().get(ExifTags.Base.Orientation) in (5, 6, 7, 8):
            width, height = height, width  # shown turned by a quarter
        # Scaled first (JPEG decodes at a reduced size), turned upright after: less memory.
        # A truncated or corrupt file fails here, and is then a plain file.
        image.thumbnail((thumbnail_side, thumbnail_side), Image.Resampling.LANCZOS)
        upright = ImageOps.exif_transpose(image)
        thumbnail, thumbnail_type = _thumbnail(upright, keep_alpha=content_type != "image/jpeg")
    return Inspected(content_type, width, height, thumbnail, thumbnail_type)


def _thumbnail(image: Image.Image, *, keep_alpha: bool) -> tuple[bytes, str]:
    has_alpha = keep_alpha and (image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info)
    mode = "RGBA" if has_alpha else "RGB"
    small = image.convert(mode)
    # Rebuilt from raw pixels, so no EXIF, ICC profile, comment or text chunk survives.
    clean = Image.frombytes(mode, small.size, small.tobytes())
    out = io.BytesIO()
    if has_alpha:
        clean.save(out, format="PNG", optimize=True)
        return out.getvalue(), "image/png"
    clean.save(out, format="JPEG", quality=85)
    return out.getvalue(), "image/jpeg"


def sniff_other(data: bytes) -> str:
    """The type of content that is not an image: PDF, plain UTF-8 text, or opaque bytes.

    HTML and SVG are text like any other: never served as markup.
    """
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return OCTET_STREAM
    if any(unicodedata.category(c) == "Cc" and c not in TEXT_CONTROL_OK for c in text):
        return OCTET_STREAM
    return "text/plain"


def off_hub(function: Callable[..., Any], *args: Any) -> Any:
    """Run CPU-bound work (decoding, hashing, fsync) on gevent's thread pool when gevent runs the
    server, so other sockets are not stalled; a plain call otherwise."""
    try:
        from gevent import get_hub, monkey
    except ImportError:
        return function(*args)
    if not monkey.is_module_patched("threading"):
        return function(*args)
    return get_hub().threadpool.apply(function, args)


# -- uploads ----------------------------------------------------------------


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int
    max_pixels: int
    thumbnail_side: int


def file_name(value: Any) -> str:
    if not isinstance(value, str):
        raise ServiceError("invalid", "name must be a string")
    if not 1 <= len(value) <= MAX_NAME or not value.strip():
        raise ServiceError("invalid", f"name must be 1-{MAX_NAME} characters")
    if not validation.storable(value) or any(unicodedata.category(c) == "Cc" for c in value):
        raise ServiceError("invalid", "name must not contain control characters")
    return value


def _prepare(store: FileStore, data: bytes, limits: UploadLimits) -> tuple[Inspected, str, str | None]:
    inspected = inspect(data, max_pixels=limits.max_pixels, thumbnail_side=limits.thumbnail_side)
    digest = store.put(data)
    thumbnail_digest = store.put(inspected.thumbnail) if inspected.thumbnail is not None else None
    return inspected, digest, thumbnail_digest


def save_upload(uploader: User, name: Any, data: Any, store: FileStore, limits: UploadLimits) -> dict:
    """Store an upload for ``uploader``; returns its ATTACHMENT. Bytes are durable before the row commits."""
    name = file_name(name)
    if not isinstance(data, bytes | bytearray):
        raise ServiceError("invalid", "data must be binary")
    if len(data) > limits.max_bytes:
        raise ServiceError("too_large", f"files are limited to {limits.max_bytes} bytes")
    if not data:
        raise ServiceError("invalid", "the file is empty")
    try:
        inspected, digest, thumbnail_digest = off_hub(_prepare, store, bytes(data), limits)
    except ImageTooLarge:
        raise ServiceError("invalid", f"images are limited to {limits.max_pixels} pixels") from None
    with write_transaction() as session:
        attachment = Attachment(
            uploader_id=uploader.id,
            name=name,
            content_type=inspected.content_type,
            size=len(data),
            sha256=digest,
            width=inspected.width,
            height=inspected.height,
            thumbnail_sha256=thumbnail_digest,
            thumbnail_type=inspected.thumbnail_type,
        )
        session.add(attachment)
        session.flush()
        payload = attachment.to_dict()
    return payload


# -- attaching to messages ---------------------------------------------------

MAX_ATTACHMENTS = 10


def attachment_ids(value: Any) -> list[int]:
    """The ``attachments`` of a `message` or `dm`: 0-10 distinct ids."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ServiceError("invalid", "attachments must be a list of attachment ids")
    if len(value) > MAX_ATTACHMENTS:
        raise ServiceError("too_large", f"at most {MAX_ATTACHMENTS} attachments per message")
    ids = [validation.integer(item, "attachments", minimum=1) for item in value]
    if len(set(ids)) != len(ids):
        raise ServiceError("invalid", "attachments must not repeat an id")
    return ids


def _unusable() -> ServiceError:
    return ServiceError("not_found", "every attachment must be an upload of yours that no message uses yet")


def check_attachable(uploader_id: int, ids: list[int]) -> None:
    """Refuse early (``not_found``) unless every id is an unused upload of ``uploader_id``.

    ``claim`` checks again inside the message's transaction: two messages racing for one
    upload cannot both get it.
    """
    if not ids:
        return
    usable = db.session.scalar(
        sa.select(sa.func.count(Attachment.id)).where(
            Attachment.id.in_(ids), Attachment.uploader_id == uploader_id, Attachment.message_id.is_(None)
        )
    )
    if usable != len(ids):
        raise _unusable()


def claim(connection: sa.Connection, uploader_id: int, message_id: int, ids: list[int]) -> list[dict]:
    """Tie the uploads to the message inside its write (on that write's connection); their ATTACHMENTs, in id order."""
    if not ids:
        return []
    table = cast(sa.Table, Attachment.__table__)
    claimed = connection.execute(
        sa.update(table)
        .where(table.c.id.in_(ids), table.c.uploader_id == uploader_id, table.c.message_id.is_(None))
        .values(message_id=message_id)
    )
    if claimed.rowcount != len(ids):
        raise _unusable()
    rows = connection.execute(
        sa.select(
            table.c.id,
            table.c.name,
            table.c.content_type,
            table.c.size,
            table.c.width,
            table.c.height,
            table.c.thumbnail_sha256,
        )
        .where(table.c.id.in_(ids))
        .order_by(table.c.id)
    )
    return [attachment_dict(i, n, t, size, w, h, thumb is not None) for i, n, t, size, w, h, thumb in rows]


# -- reading ----------------------------------------------------------------


def visible_attachment(user: User | None, attachment_id: int) -> Attachment:
    """The attachment if ``user`` may see it, else not_found (never forbidden: no existence leak).

    Visible: an unused upload to its uploader; a used one to whoever may see its message now
    (a member of its room, either party of its DM), unless the message is deleted.
    """
    missing = ServiceError("not_found", "no such file")
    attachment = db.session.get(Attachment, attachment_id) if user is not None else None
    if attachment is None or user is None:
        raise missing
    if attachment.message_id is None:
        if attachment.uploader_id != user.id:
            raise missing
        return attachment
    message = db.session.get(Message, attachment.message_id)
    if message is None or message.deleted:
        raise missing
    if message.room_id is not None:
        if db.session.get(RoomMembership, (user.id, message.room_id)) is None:
            raise missing
    elif user.id not in (message.sender_id, message.recipient_id):
        raise missing
    return attachment


# -- pruning ----------------------------------------------------------------


@dataclass(frozen=True)
class Pruned:
    uploads: int
    blobs: int


def prune(store: FileStore, older_than_seconds: float) -> Pruned:
    """Remove uploads no message uses that are older than ``older_than_seconds`` and those of
    deleted messages, then every blob no row references that was last stored before the same
    cutoff (so a blob whose upload is still on its way to the database is kept)."""
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    with write_transaction() as session:
        deleted_messages = sa.select(Message.id).where(Message.deleted.is_(True))
        stale = session.scalars(
            sa.select(Attachment.id).where(
                sa.or_(
                    sa.and_(Attachment.message_id.is_(None), Attachment.created_at < cutoff),
                    # A deleted message has no attachments: nobody may read these files again.
                    Attachment.message_id.in_(deleted_messages),
                )
            )
        ).all()
        if stale:
            session.execute(sa.delete(Attachment).where(Attachment.id.in_(stale)))
    referenced = set(db.session.scalars(sa.select(Attachment.sha256)))
    referenced |= set(
        db.session.scalars(sa.select(Attachment.thumbnail_sha256).where(Attachment.thumbnail_sha256.is_not(None)))
    )
    db.session.rollback()
    cutoff_unix = time.time() - older_than_seconds
    removed = 0
    for digest, stored_at in list(store.blobs()):
        if digest not in referenced and stored_at < cutoff_unix:
            store.delete(digest)
            removed += 1
    store.sweep_temporary(cutoff_unix)
    return Pruned(uploads=len(stale), blobs=removed)
