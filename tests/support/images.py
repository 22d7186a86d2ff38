"""Small image files made on the spot: real encodings, crafted headers, truncations."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (640, 480), color=(200, 30, 30), **save) -> bytes:
    mode = "RGBA" if fmt in ("PNG", "WEBP") else "RGB"
    image = Image.new(mode, size, color if mode == "RGB" else (*color, 255))
    out = io.BytesIO()
    image.save(out, format=fmt, **save)
    return out.getvalue()


def jpeg_with_orientation(size: tuple[int, int], orientation: int) -> bytes:
    """A JPEG stored ``size`` wide and high whose EXIF says to show it turned (6: 90 degrees clockwise),
    with a camera model and a GPS position that a thumbnail must not carry."""
    image = Image.new("RGB", size, (10, 120, 220))
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x0110] = "Secret Camera"
    exif[0x8825] = {2: (52.0, 31.0, 12.0)}  # GPSLatitude
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A few hundred bytes whose header promises ``width`` x ``height`` pixels of one colour."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    # Only the first rows are present: enough for a valid start, a disaster if decoded in full.
    pixels = zlib.compress(row * 16, 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", pixels) + _chunk(b"IEND", b"")


def truncated_jpeg(size: tuple[int, int] = (800, 600)) -> bytes:
    """The first half of a noisy JPEG: a valid header, then nothing where the pixels should go on."""
    out = io.BytesIO()
    Image.effect_noise(size, 64).convert("RGB").save(out, format="JPEG", quality=95)
    data = out.getvalue()
    return data[: len(data) // 2]
