"""A camera at the gateway: capture, motion-gated face recognition, QR codes, offline and tamper alarms.

One `CameraWorker` per configured camera. A capture thread reads frames with OpenCV (an RTSP or
HTTP stream, a device index such as "0", or a video file) and keeps only the latest one, so a
slow analysis never queues frames; when the source fails or ends it is opened again after
`reconnect_delay`. The worker's `run()` takes the latest frame and analyses it in a worker thread
(never on the event loop):

- at most `detect_fps` times a second, and only when the picture changed by more than
  `motion_threshold` (fraction of pixels) since the previous check, it finds every face
  (face_recognition's HOG detector), matches each against the whitelist's `FaceMatcher`, and
  decodes a QR code (visitor passes) on the same frame with OpenCV's QRCodeDetectorAruco (the
  classic QRCodeDetector misses about 2 % of valid codes, depending on their size in the picture);
- on every frame it judges tampering: a view that is suddenly uniform (covered, black), blurred
  (the variance of the Laplacian collapses against the reference view) or turned (the downscaled
  picture no longer correlates with the reference view, taken while the camera was healthy).

What it sees goes to a `CameraSink`, called on the event loop: faces and QR codes with a JPEG of
the frame, and "camera_offline" / "camera_tamper" alarms (raise, then clear when it recovers).
"""

import asyncio
import contextlib
import inspect
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import cv2
import numpy as np

from contract.gateway_config import CameraConfig
from edge.access.faces import FaceFound, FaceMatcher, FaceProcess, encode_faces

log = logging.getLogger(__name__)

OFFLINE = "camera_offline"
TAMPER = "camera_tamper"


class CameraSink(Protocol):
    """Where a camera's observations go (the door controller). Methods may return an awaitable."""

    def face_seen(
        self, camera: str, door: str | None, person_id: int | None, distance: float | None, jpeg: bytes
    ) -> Any: ...

    def qr_seen(self, camera: str, door: str | None, token: str, jpeg: bytes) -> Any: ...

    def camera_alarm(self, camera: str, rule: str, action: Literal["raise", "clear"], message: str) -> Any: ...


@dataclass(frozen=True)
class CameraTuning:
    """What the gateway config does not say about a camera; the defaults suit a door camera."""

    #: A video file starts again at its end (else it is reopened after `reconnect_delay`, like a stream).
    loop: bool = False
    #: A video file is played at its own frame rate (False: as fast as it decodes).
    realtime: bool = True
    #: Seconds between attempts to open a source that failed, closed or ended.
    reconnect_delay: float = 2.0
    #: Frames wider than this are scaled down to it before face detection.
    detect_width: int = 640
    #: Times the detector enlarges the picture (1 finds faces down to about 40 pixels at 640x480).
    upsample: int = 1
    #: Faces smaller than this (pixels high, in the detection frame) are ignored.
    min_face: int = 0
    #: A grey level change above this counts a pixel as changed (motion gating).
    motion_pixel_delta: int = 25
    #: Seconds a tamper condition (or its recovery) must last before the alarm is raised (or cleared).
    tamper_after: float = 2.0
    #: Standard deviation of the grey picture below which the view is blocked (uniform).
    blocked_contrast: float = 12.0
    #: Sharpness (variance of the Laplacian) below this fraction of the reference view's: blurred.
    blur_ratio: float = 0.25
    #: A reference view less sharp than this cannot judge blur (a dark or featureless scene).
    min_reference_sharpness: float = 20.0
    #: Correlation with the reference view below this: the camera was turned.
    turned_correlation: float = 0.5
    #: Seconds after which a healthy view becomes the new reference (follows light through the day).
    reference_every: float = 60.0
    #: Quality of the JPEG snapshots (1-100).
    jpeg_quality: int = 80
    #: Detections in a row (within `confirm_window` s) that must match a person before it is reported:
    #: one frame's match can be wrong (the shared clip has a stranger at 0.573 in one frame). 1: at once.
    confirm_frames: int = 2
    confirm_window: float = 2.0
    #: Run dlib's detector and encoder in a child process: dlib holds the GIL (a 640x480 detection
    #: stalled the event loop for up to 0.5 s in a thread). False: in the worker thread (benchmarks).
    detect_in_process: bool = True


@dataclass
class CameraStats:
    """Counters, for logs, health and tests."""

    frames: int = 0  # captured
    analysed: int = 0  # went through motion and tamper checks
    motion_skipped: int = 0  # detection due, but the picture had not changed enough
    detections: int = 0  # frames run through face detection
    faces: int = 0
    qr_codes: int = 0
    unconfirmed: int = 0  # matches held back, waiting for the next detection to confirm them
    opened: int = 0  # times the source was opened


@dataclass
class _Reference:
    small: np.ndarray  # 64x48 grey, float32, mean removed
    sharpness: float
    at: float


def redact(source: str) -> str:
    """A source for logs and alarm messages: a URL without its user and password."""
    return re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@", r"\1", source)


def _sharpness(gray: np.ndarray) -> float:
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


@dataclass
class _Frame:
    image: np.ndarray | None = None
    seq: int = 0
    at: float | None = None
    jpeg: bytes | None = None
    jpeg_seq: int = -1
    lock: threading.Lock = field(default_factory=threading.Lock)


class CameraWorker:
    """One camera: `await run()` until cancelled."""

    def __init__(
        self,
        camera: CameraConfig,
        matcher: Callable[[], FaceMatcher | None],
        sink: CameraSink,
        *,
        clock: Callable[[], float] = time.monotonic,
        tuning: CameraTuning = CameraTuning(),
    ) -> None:
        self.camera = camera
        self.matcher = matcher
        self.sink = sink
        self.clock = clock
        self.tuning = tuning
        self.stats = CameraStats()
        self.offline = False
        self.tampered = False
        self._latest = _Frame()
        self._stop = threading.Event()
        self._qr = cv2.QRCodeDetectorAruco()
        self._faces = FaceProcess() if tuning.detect_in_process else None
        # analysis state (worker thread only)
        self._motion_ref: np.ndarray | None = None
        self._last_detect: float | None = None
        self._reference: _Reference | None = None
        self._bad_since: float | None = None
        self._good_since: float | None = None
        self._condition = ""
        self._pending: dict[int, tuple[int, float]] = {}  # person id -> (detections in a row, last at)

    # -- public ---------------------------------------------------------------------------------

    def latest_jpeg(self) -> bytes | None:
        """A JPEG of the latest frame (None before the first), for snapshots attached to alarms."""
        with self._latest.lock:
            image, seq = self._latest.image, self._latest.seq
            if image is None:
                return None
            if self._latest.jpeg_seq == seq:
                return self._latest.jpeg
        jpeg = self._encode(image)
        with self._latest.lock:
            if self._latest.seq == seq:
                self._latest.jpeg, self._latest.jpeg_seq = jpeg, seq
        return jpeg

    async def run(self) -> None:
        """Capture in a thread, analyse in worker threads, report to the sink; until cancelled."""
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        self._stop.clear()
        thread = threading.Thread(
            target=self._capture, args=(loop, wake), daemon=True, name=f"camera-{self.camera.name}"
        )
        thread.start()
        started = self.clock()
        check = min(0.5, self.camera.offline_after / 4)
        analysed_seq = 0
        interval = 1.0 / self.camera.detect_fps
        try:
            while True:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the task's own
                # cancellation when the wake comes at the same moment, and the camera never stops
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(check):
                        await wake.wait()
                wake.clear()
                with self._latest.lock:
                    image, seq, at = self._latest.image, self._latest.seq, self._latest.at
                now = self.clock()
                if image is None or seq == analysed_seq:
                    last = at if at is not None else started
                    if not self.offline and now - last > self.camera.offline_after:
                        self.offline = True
                        message = f"no picture from {redact(self.camera.source)} for {now - last:.1f} s"
                        log.warning("camera %s: %s", self.camera.name, message)
                        await self._call("camera_alarm", self.camera.name, OFFLINE, "raise", message)
                    continue
                analysed_seq = seq
                if self.offline:
                    self.offline = False
                    log.info("camera %s: pictures again", self.camera.name)
                    await self._call("camera_alarm", self.camera.name, OFFLINE, "clear", "pictures again")
                assert at is not None
                due = self._last_detect is None or at - self._last_detect >= interval
                try:
                    matcher = self.matcher() if due else None
                    calls = await asyncio.to_thread(self._analyse, image, seq, at, due, matcher)
                except Exception:  # one bad frame or whitelist must not stop the camera
                    log.exception("camera %s: analysing a frame failed", self.camera.name)
                    continue
                for call in calls:
                    await self._call(*call)
        finally:
            self._stop.set()
            await asyncio.to_thread(thread.join, 10)
            if self._faces is not None:
                await asyncio.to_thread(self._faces.close)

    # -- capture (its own thread) ------------------------------------------------------------------

    def _open(self) -> tuple[cv2.VideoCapture | None, bool]:
        """(capture, is a file); None when the source cannot be opened now."""
        source = self.camera.source
        if source.isdigit():
            cap, is_file = cv2.VideoCapture(int(source)), False
        elif "://" in source:
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 5000]
            cap, is_file = cv2.VideoCapture(source, cv2.CAP_FFMPEG, params), False
        else:
            if not Path(source).is_file():
                return None, True
            cap, is_file = cv2.VideoCapture(source), True
        if not cap.isOpened():
            cap.release()
            return None, is_file
        return cap, is_file

    def _capture(self, loop: asyncio.AbstractEventLoop, wake: asyncio.Event) -> None:
        failed_logged = False
        while not self._stop.is_set():
            try:
                cap, is_file = self._open()
            except cv2.error as exc:
                cap, is_file = None, False
                log.warning("camera %s: %s", self.camera.name, exc)
            if cap is None:
                if not failed_logged:
                    log.warning("camera %s: cannot open %s", self.camera.name, redact(self.camera.source))
                    failed_logged = True
                self._stop.wait(self.tuning.reconnect_delay)
                continue
            failed_logged = False
            self.stats.opened += 1
            fps = cap.get(cv2.CAP_PROP_FPS) if is_file and self.tuning.realtime else 0.0
            period = 1.0 / fps if fps and 0 < fps <= 240 else 0.0
            start, n, ended = time.monotonic(), 0, False
            try:
                while not self._stop.is_set():
                    ok, image = cap.read()
                    if not ok or image is None:
                        ended = True
                        break
                    with self._latest.lock:
                        self._latest.image, self._latest.at = image, self.clock()
                        self._latest.seq += 1
                    self.stats.frames += 1
                    try:
                        loop.call_soon_threadsafe(wake.set)
                    except RuntimeError:  # the loop is closed: the worker is gone
                        return
                    if period:
                        n += 1
                        self._stop.wait(max(0.0, start + n * period - time.monotonic()))
            finally:
                cap.release()
            if ended and not (is_file and self.tuning.loop):
                log.info("camera %s: %s ended or closed", self.camera.name, redact(self.camera.source))
                self._stop.wait(self.tuning.reconnect_delay)

    # -- analysis (worker threads, one at a time) --------------------------------------------------

    def _encode(self, image: np.ndarray) -> bytes:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.tuning.jpeg_quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return buf.tobytes()

    def _analyse(
        self, image: np.ndarray, seq: int, at: float, due: bool, matcher: FaceMatcher | None
    ) -> list[tuple[Any, ...]]:
        """Everything one frame says, as sink calls to make on the event loop."""
        self.stats.analysed += 1
        calls: list[tuple[Any, ...]] = []
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        calls.extend(self._tamper(gray, at))
        if not due:
            return calls
        self._last_detect = at
        small = cv2.resize(gray, (160, 120), interpolation=cv2.INTER_AREA)
        previous, self._motion_ref = self._motion_ref, small
        # a match waiting for confirmation looks again even if nothing moved (a person standing still)
        confirming = any(
            n < self.tuning.confirm_frames and at - last <= self.tuning.confirm_window
            for n, last in self._pending.values()
        )
        if previous is not None and self.camera.motion_threshold > 0 and not confirming:
            changed = np.count_nonzero(cv2.absdiff(small, previous) > self.tuning.motion_pixel_delta) / small.size
            if changed <= self.camera.motion_threshold:
                self.stats.motion_skipped += 1
                return calls
        self.stats.detections += 1
        frame = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if frame.shape[1] > self.tuning.detect_width:
            scale = self.tuning.detect_width / frame.shape[1]
            frame = cv2.resize(frame, (self.tuning.detect_width, round(frame.shape[0] * scale)))
        found = self._detect(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        token = self._decode_qr(gray)
        if not found and not token:
            return calls
        jpeg = self._encode(image)
        with self._latest.lock:
            if self._latest.seq == seq:
                self._latest.jpeg, self._latest.jpeg_seq = jpeg, seq
        name, door = self.camera.name, self.camera.door
        pending = {pid: v for pid, v in self._pending.items() if at - v[1] <= self.tuning.confirm_window}
        self._pending = {}
        for face in found:
            self.stats.faces += 1
            if matcher is None:
                person, distance = None, None
            else:
                person, distance = matcher.match(face.encoding, threshold=self.camera.match_threshold)
            if person is not None:
                count = pending.get(person, (0, at))[0] + 1
                self._pending[person] = (count, at)
                if count < self.tuning.confirm_frames:
                    self.stats.unconfirmed += 1
                    continue
            calls.append(("face_seen", name, door, person, distance, jpeg))
        if token:
            self.stats.qr_codes += 1
            calls.append(("qr_seen", name, door, token, jpeg))
        return calls

    def _detect(self, rgb: np.ndarray) -> list[FaceFound]:
        """Every face and its encoding, in the child process (started on first use, again if it died)."""
        kwargs = {"upsample": self.tuning.upsample, "min_size": self.tuning.min_face}
        if self._faces is None:
            return encode_faces(rgb, **kwargs)
        if self._stop.is_set():  # the worker is stopping: start no process
            return []
        return self._faces.encode(rgb, **kwargs)

    def _decode_qr(self, gray: np.ndarray) -> str | None:
        try:
            text, _points, _ = self._qr.detectAndDecode(gray)
        except cv2.error:
            return None
        return text or None

    def _tamper(self, gray: np.ndarray, at: float) -> list[tuple[Any, ...]]:
        """Judge the view against the reference; raise or clear the tamper alarm once the state holds."""
        t = self.tuning
        tiny = cv2.resize(gray, (64, 48), interpolation=cv2.INTER_AREA).astype(np.float32)
        contrast = float(tiny.std())
        tiny -= tiny.mean()
        width = min(320, gray.shape[1])
        mid = cv2.resize(gray, (width, round(gray.shape[0] * width / gray.shape[1])), interpolation=cv2.INTER_AREA)
        sharp = _sharpness(mid)
        ref = self._reference
        condition = ""
        if contrast < t.blocked_contrast:
            brightness = float(gray.mean())
            condition = f"view blocked: a uniform picture (brightness {brightness:.0f}, contrast {contrast:.1f})"
        elif ref is not None and ref.sharpness >= t.min_reference_sharpness and sharp < t.blur_ratio * ref.sharpness:
            condition = f"view blurred: sharpness {sharp:.0f}, the reference view's {ref.sharpness:.0f}"
        elif ref is not None:
            denom = float(np.sqrt((tiny * tiny).sum() * (ref.small * ref.small).sum()))
            corr = float((tiny * ref.small).sum()) / denom if denom > 0 else 0.0
            if corr < t.turned_correlation:
                condition = f"view turned or moved: correlation with the reference view {corr:.2f}"
        calls: list[tuple[Any, ...]] = []
        if condition:
            self._good_since = None
            self._bad_since = self._bad_since if self._bad_since is not None else at
            self._condition = condition
            if not self.tampered and at - self._bad_since >= t.tamper_after:
                self.tampered = True
                log.warning("camera %s: %s", self.camera.name, condition)
                calls.append(("camera_alarm", self.camera.name, TAMPER, "raise", condition))
            return calls
        self._bad_since = None
        if self.tampered:
            self._good_since = self._good_since if self._good_since is not None else at
            if at - self._good_since >= t.tamper_after:
                self.tampered = False
                self._good_since = None
                log.info("camera %s: view restored", self.camera.name)
                message = f"view restored (was: {self._condition})"
                calls.append(("camera_alarm", self.camera.name, TAMPER, "clear", message))
            return calls
        if ref is None or at - ref.at >= t.reference_every:
            self._reference = _Reference(tiny, sharp, at)
        return calls

    async def _call(self, method: str, *args: Any) -> None:
        try:
            result = getattr(self.sink, method)(*args)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("camera %s: the sink failed on %s", self.camera.name, method)
