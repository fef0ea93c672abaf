"""Photos and documents on tickets: checked by content, stored under a name of our own.

The client's file name and declared type are never trusted: the type comes from the file's
first bytes, images must open and verify with Pillow and stay under a pixel count (no decompression bombs),
the size and the pixel count are capped, and the file is stored as `<attachments dir>/<uuid>`. The
original name is kept, cleaned, only to show it.
"""

import hashlib
import io
import re
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

ALLOWED = {
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/webp": (),  # RIFF....WEBP, checked below
    "application/pdf": (b"%PDF-",),
}
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")
#: More pixels than this (a 50 MP camera makes 8160 x 6120) is refused: a guard against images
#: that are small on disk and enormous in memory.
MAX_PIXELS = 60_000_000


class AttachmentRefused(ValueError):
    pass


@dataclass(frozen=True)
class Stored:
    id: uuid.UUID
    content_type: str
    size: int
    sha256: str
    original_name: str


def sniff(head: bytes) -> str | None:
    for content_type, magics in ALLOWED.items():
        if any(head.startswith(m) for m in magics):
            return content_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def clean_name(name: str | None) -> str:
    """The last path component, printable, at most 200 characters; never used as a path."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip().lstrip(".")
    return (base or "attachment")[:200]


def read_capped(stream: BinaryIO, limit: int) -> bytes:
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise AttachmentRefused(f"file: larger than {limit} bytes")
    if not data:
        raise AttachmentRefused("file: empty")
    return data


def check(data: bytes) -> str:
    """The content type by content; AttachmentRefused for anything else or a broken image."""
    content_type = sniff(data[:16])
    if content_type is None:
        raise AttachmentRefused("file: not a JPEG, PNG or WebP photo, nor a PDF")
    if content_type in IMAGE_TYPES:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data))  # reads the header only
            with img:
                pixels = img.width * img.height
                if pixels > MAX_PIXELS:
                    raise AttachmentRefused(f"file: the image cannot be read ({pixels} pixels, at most {MAX_PIXELS})")
                img.verify()
        except (
            UnidentifiedImageError,
            OSError,
            SyntaxError,
            ValueError,
            Image.DecompressionBombError,
            Image.DecompressionBombWarning,
        ) as exc:
            raise AttachmentRefused(f"file: the image cannot be read ({type(exc).__name__})") from None
    return content_type


def store(directory: Path, data: bytes, original_name: str | None) -> Stored:
    content_type = check(data)
    file_id = uuid.uuid4()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / str(file_id)
    path.write_bytes(data)
    return Stored(file_id, content_type, len(data), hashlib.sha256(data).hexdigest(), clean_name(original_name))


def path_of(directory: Path, file_id: uuid.UUID) -> Path:
    return directory / str(file_id)
