"""Camera frames: the latest JPEG of each camera, kept as one file per camera for the guard console.

Frames arrive at most once a second per camera (`…/camera/frame`, QoS 0). They are not stored in
the database nor deduplicated: each replaces the previous file (written aside, then renamed, so a
reader never sees half a frame), its modification time set to when the camera took it. The API
serves them from the same folder (cloud/api/routers/cameras.py), like the snapshots it serves from
the attachments folder: the ingest and the API share `data_dir`.
"""

import base64
import binascii
import logging
import os
import re
from pathlib import Path

from cloud.ingest.inbound import Inbound
from contract.messages import CameraFrame, InvalidMessage, decode
from contract.topics import Kind

log = logging.getLogger(__name__)

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def frame_path(directory: Path, gateway: str, camera: str) -> Path | None:
    """Where a camera's latest frame is kept; None for names that could leave the folder."""
    if not (_SAFE.match(gateway) and _SAFE.match(camera)) or ".." in gateway or ".." in camera:
        return None
    return directory / gateway / f"{camera}.jpg"


class FrameStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.stored = 0
        self.refused = 0

    def store(self, item: Inbound) -> None:
        """Keep the frame (called on the consumer's thread: one small file write, no database)."""
        try:
            self._store(item)
        except (InvalidMessage, ValueError, OSError) as exc:
            self.refused += 1
            log.debug("camera frame on %s dropped: %s", item.topic, exc)
        finally:
            item.ack()

    def _store(self, item: Inbound) -> None:
        assert item.parsed is not None and item.parsed.kind == Kind.CAMERA_FRAME
        frame = decode(Kind.CAMERA_FRAME, item.payload)
        assert isinstance(frame, CameraFrame)
        try:
            jpeg = base64.b64decode(frame.jpeg, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"jpeg: not base64 ({exc})") from None
        if not jpeg.startswith(b"\xff\xd8"):
            raise ValueError("jpeg: not a JPEG")
        path = frame_path(self.directory, item.parsed.gateway, frame.camera)
        if path is None:
            raise ValueError("camera or gateway name not usable as a file name")
        path.parent.mkdir(parents=True, exist_ok=True)
        aside = path.with_suffix(".part")
        aside.write_bytes(jpeg)
        taken = frame.ts.timestamp()
        os.utime(aside, (taken, taken))
        os.replace(aside, path)
        self.stored += 1
