"""Camera frames for the guard console: each camera's latest frame, sent to the cloud at most once per
interval, only when it is new, at QoS 0 and never queued while offline (the next frame replaces it)."""

import asyncio
import base64
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from contract.clock import Clock
from contract.messages import CameraFrame, encode

log = logging.getLogger(__name__)


class FrameSource(Protocol):
    """A camera worker: its configuration (`camera.name`) and a JPEG of its latest frame."""

    camera: object

    def latest_jpeg(self) -> bytes | None: ...


async def send_frames(
    cameras: Callable[[], Sequence[FrameSource]],
    send: Callable[[bytes], bool],
    *,
    interval: float,
    clock: Clock,
) -> None:
    """Every `interval` seconds, send each camera's frame if it changed since the last one sent.

    `cameras` is asked each time (a pushed configuration may replace them); `send` publishes one
    encoded CameraFrame and says whether it went out (False while offline: tried again next time).
    """
    last_sent: dict[str, bytes] = {}
    while True:
        await asyncio.sleep(interval)
        for worker in cameras():
            name = getattr(worker.camera, "name", None)
            if not isinstance(name, str):
                continue
            try:
                jpeg = worker.latest_jpeg()
                if jpeg is None or last_sent.get(name) is jpeg:
                    continue
                frame = CameraFrame(ts=clock.now(), camera=name, jpeg=base64.b64encode(jpeg).decode())
                if send(encode(frame)):
                    last_sent[name] = jpeg
            except ValueError as exc:  # a frame too large for the contract: say so, go on
                log.warning("camera %s: frame not sent: %s", name, exc)
