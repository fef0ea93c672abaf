"""The camera worker on real video: the shared clip as a stream, faces, QR codes, offline and tamper alarms.

Videos are written with cv2.VideoWriter into the test's tmp folder from the shared photos (never
copied into the repository) and played at their own frame rate, as a camera would deliver them.
Each test waits for what it expects with a generous deadline; nothing asserts on timing.
"""

import asyncio
import functools
import http.server
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from contract.gateway_config import CameraConfig
from edge.access.camera import OFFLINE, TAMPER, CameraTuning, CameraWorker
from edge.access.faces import FaceMatcher, encode_faces, load_rgb

PEOPLE = ["alex_lacamoire", "biden", "kit_harington", "obama", "rose_leslie"]
SIZE = (640, 480)


def sync(test: Callable[..., Any]) -> Callable[..., Any]:
    """Run an async test body in a fresh event loop (the suite has no asyncio plugin)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(test(*args, **kwargs))

    return run


class Recorder:
    """A CameraSink that keeps every call."""

    def __init__(self) -> None:
        self.faces: list[tuple[str, str | None, int | None, float | None, bytes]] = []
        self.qr: list[tuple[str, str | None, str, bytes]] = []
        self.alarms: list[tuple[str, str, str, str]] = []

    def face_seen(self, camera: str, door: str | None, person_id: int | None, distance: float | None, jpeg: bytes):
        self.faces.append((camera, door, person_id, distance, jpeg))

    def qr_seen(self, camera: str, door: str | None, token: str, jpeg: bytes) -> None:
        self.qr.append((camera, door, token, jpeg))

    def camera_alarm(self, camera: str, rule: str, action: str, message: str) -> None:
        self.alarms.append((camera, rule, action, message))

    def alarm(self, rule: str, action: str) -> tuple[str, str, str, str] | None:
        return next((a for a in self.alarms if a[1] == rule and a[2] == action), None)


@pytest.fixture(scope="module")
def matcher(faces_dir: Path) -> FaceMatcher:
    ids, encs = [], []
    for pid, person in enumerate(PEOPLE):
        for photo in sorted((faces_dir / "enroll" / person).iterdir()):
            ids.append(pid)
            encs.append(encode_faces(load_rgb(str(photo)))[0].encoding)
    return FaceMatcher(ids, np.array(encs, dtype=np.float32))


def scene(path: Path) -> np.ndarray:
    """A photo as a 640x480 BGR camera picture: scaled to fit (same aspect), on a grey background."""
    image = cv2.imread(str(path))
    assert image is not None, path
    scale = min(SIZE[0] / image.shape[1], SIZE[1] / image.shape[0])
    w, h = round(image.shape[1] * scale), round(image.shape[0] * scale)
    frame = np.full((SIZE[1], SIZE[0], 3), 128, np.uint8)
    x, y = (SIZE[0] - w) // 2, (SIZE[1] - h) // 2
    frame[y : y + h, x : x + w] = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return frame


def write_video(path: Path, frames: Iterable[np.ndarray], fps: float = 10.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, SIZE)
    assert writer.isOpened(), f"cannot write {path}"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def noisy(image: np.ndarray, n: int, seed: int = 0) -> list[np.ndarray]:
    """n frames of a still scene with a little sensor noise (well under the motion threshold)."""
    rng = np.random.default_rng(seed)
    return [cv2.add(image, rng.integers(0, 4, image.shape, dtype=np.uint8)) for _ in range(n)]


async def run_until(worker: CameraWorker, done: Callable[[], Any], timeout: float = 60.0) -> None:
    task = asyncio.create_task(worker.run())
    try:
        deadline = time.monotonic() + timeout
        while not done():
            assert not task.done(), f"the worker stopped: {task.exception()!r}"
            assert time.monotonic() < deadline, f"not seen within {timeout} s; stats {worker.stats}"
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            # a worker that loses its cancellation fails here with TimeoutError, not at the suite's timeout
            async with asyncio.timeout(20):
                await task


def camera(source: Path | str, **kw: Any) -> CameraConfig:
    return CameraConfig(name="cam-gate", source=str(source), door="gate", **kw)


# reconnect_delay long: a file that ends stays offline, so "offline raised" says "the file was played".
# a confirmation window far longer than any detection on a busy machine: the counts below must not
# depend on how long dlib takes (a 2 s window let a slow first detection expire its own match)
ONCE = CameraTuning(reconnect_delay=3600, confirm_window=60.0)


@sync
async def test_the_shared_clip_as_a_stream_finds_faces_and_matches_none(faces_dir: Path, matcher: FaceMatcher) -> None:
    sink = Recorder()
    worker = CameraWorker(
        camera(faces_dir / "probes" / "short_hamilton_clip.mp4", offline_after=1.0, detect_fps=5),
        lambda: matcher,
        sink,
        tuning=ONCE,
    )
    await run_until(worker, lambda: sink.alarm(OFFLINE, "raise"))
    distances = sorted(d for *_, d, _ in sink.faces if d is not None)
    print(f"clip: {worker.stats}; face distances {[round(d, 3) for d in distances]}; alarms {sink.alarms}")
    assert sink.faces, f"no face found in the clip ({worker.stats})"
    assert all(door == "gate" and name == "cam-gate" for name, door, *_ in sink.faces)
    assert [f for f in sink.faces if f[2] is not None] == [], "someone in the clip was taken for an enrolled person"
    assert distances[0] > 0.6
    jpeg = sink.faces[0][4]
    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (360, 640, 3)


def test_a_still_scene_is_detected_once_plus_once_to_confirm(faces_dir: Path, matcher: FaceMatcher) -> None:
    """Motion gating, frame by frame with their times given (no clock, no pace): of ten due frames of
    a still scene, the first is detected, the second looks again to confirm the match, and the other
    eight are skipped; with motion threshold 0 every due frame is detected."""
    frames = noisy(scene(faces_dir / "probes" / "obama3.jpg"), 10)
    for threshold, detections, skipped in ((None, 2, 8), (0, 10, 0)):
        extra = {} if threshold is None else {"motion_threshold": threshold}
        sink = Recorder()
        worker = CameraWorker(camera("unused.avi", detect_fps=5, **extra), lambda: matcher, sink, tuning=ONCE)
        calls = [c for i, image in enumerate(frames) for c in worker._analyse(image, i + 1, i * 0.2, True, matcher)]
        assert (worker.stats.detections, worker.stats.motion_skipped) == (detections, skipped), worker.stats
        seen = [c for c in calls if c[0] == "face_seen"]
        assert seen and {c[3] for c in seen} == {PEOPLE.index("obama")}, calls


@sync
async def test_an_enrolled_face_is_recognised_from_a_played_video(
    faces_dir: Path, matcher: FaceMatcher, tmp_path: Path
) -> None:
    """The same still scene as a video file played at its own pace: detected once plus once to
    confirm, the person reported once, matched. (How many frames are analysed, and so how many are
    skipped, depends on how fast this machine detects: the skip counts are the test above's.)"""
    video = write_video(tmp_path / "still.avi", noisy(scene(faces_dir / "probes" / "obama3.jpg"), 30))
    gated = Recorder()
    worker = CameraWorker(camera(video, offline_after=0.5, detect_fps=5), lambda: matcher, gated, tuning=ONCE)
    await run_until(worker, lambda: gated.alarm(OFFLINE, "raise"))
    assert worker.stats.detections == 2, worker.stats
    assert [(pid, d is not None and d <= 0.6) for _, _, pid, d, _ in gated.faces] == [(PEOPLE.index("obama"), True)]
    assert worker.latest_jpeg() is not None


@sync
async def test_a_match_in_a_single_frame_is_not_reported(faces_dir: Path, matcher: FaceMatcher, tmp_path: Path):
    """Obama for two frames (one detection), then a stranger: the lone match is held back, never reported."""
    obama = scene(faces_dir / "probes" / "obama3.jpg")
    stranger = scene(faces_dir / "probes" / "lin-manuel-miranda.png")
    video = write_video(tmp_path / "glimpse.avi", [obama, obama, *noisy(stranger, 15)])
    sink = Recorder()
    worker = CameraWorker(camera(video, offline_after=0.5, detect_fps=5), lambda: matcher, sink, tuning=ONCE)
    await run_until(worker, lambda: sink.alarm(OFFLINE, "raise"))
    assert worker.stats.unconfirmed == 1, worker.stats
    assert sink.faces and {pid for _, _, pid, _, _ in sink.faces} == {None}

    # the same video with confirmation off: the glimpse is reported
    sink = Recorder()
    worker = CameraWorker(
        camera(video, offline_after=0.5, detect_fps=5),
        lambda: matcher,
        sink,
        tuning=CameraTuning(reconnect_delay=3600, confirm_frames=1),
    )
    await run_until(worker, lambda: sink.alarm(OFFLINE, "raise"))
    assert PEOPLE.index("obama") in {pid for _, _, pid, _, _ in sink.faces}


@sync
async def test_a_failing_whitelist_does_not_stop_the_camera(faces_dir: Path, matcher: FaceMatcher, tmp_path: Path):
    video = write_video(tmp_path / "still.avi", noisy(scene(faces_dir / "probes" / "obama3.jpg"), 30))
    calls = []

    def flaky() -> FaceMatcher:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("whitelist being replaced")
        return matcher

    sink = Recorder()
    worker = CameraWorker(camera(video, offline_after=0.5, motion_threshold=0), flaky, sink, tuning=ONCE)
    await run_until(worker, lambda: sink.alarm(OFFLINE, "raise"))
    assert len(calls) >= 3
    assert PEOPLE.index("obama") in {pid for _, _, pid, _, _ in sink.faces}


@sync
async def test_several_faces_in_one_frame_are_each_reported(faces_dir: Path, matcher: FaceMatcher, tmp_path: Path):
    video = write_video(tmp_path / "two.avi", noisy(scene(faces_dir / "probes" / "two_people.jpg"), 10))
    sink = Recorder()
    worker = CameraWorker(camera(video, offline_after=0.5), lambda: matcher, sink, tuning=ONCE)
    await run_until(worker, lambda: sink.alarm(OFFLINE, "raise"))
    assert sorted(PEOPLE[pid] for _, _, pid, _, _ in sink.faces if pid is not None) == ["biden", "obama"]


@sync
async def test_a_qr_code_in_the_picture_is_reported_with_its_token(tmp_path: Path) -> None:
    token = "VP-7f3a9c21e4"
    code = cv2.QRCodeEncoder.create().encode(token)
    code = cv2.resize(code, None, fx=8, fy=8, interpolation=cv2.INTER_NEAREST)
    frames = []
    for i in range(12):  # the visitor moves the phone: the code in another place every frame
        frame = np.full((SIZE[1], SIZE[0], 3), 255, np.uint8)
        x, y = 40 + 20 * i, 60 + 5 * (i % 3)
        frame[y : y + code.shape[0], x : x + code.shape[1]] = code[..., None]
        frames.append(frame)
    video = write_video(tmp_path / "qr.avi", frames)
    sink = Recorder()
    worker = CameraWorker(camera(video, offline_after=0.5), lambda: None, sink, tuning=ONCE)
    await run_until(worker, lambda: sink.qr)
    assert sink.qr[0][:3] == ("cam-gate", "gate", token)
    assert cv2.imdecode(np.frombuffer(sink.qr[0][3], np.uint8), cv2.IMREAD_COLOR) is not None


@sync
async def test_offline_when_the_source_goes_away_and_cleared_when_it_returns(faces_dir: Path, tmp_path: Path):
    video = write_video(tmp_path / "cam.avi", noisy(scene(faces_dir / "enroll" / "biden" / "biden2.jpg"), 10))
    away = tmp_path / "away.avi"
    sink = Recorder()
    worker = CameraWorker(
        camera(video, offline_after=0.5, motion_threshold=1.0),
        lambda: None,
        sink,
        tuning=CameraTuning(reconnect_delay=0.2),
    )

    async def scenario() -> None:
        await run_until_frames()
        video.rename(away)  # the stream stops: played to its end, then cannot be opened again
        while not sink.alarm(OFFLINE, "raise"):
            await asyncio.sleep(0.05)
        away.rename(video)  # and comes back

    async def run_until_frames() -> None:
        while worker.stats.frames == 0:
            await asyncio.sleep(0.02)

    steps = asyncio.create_task(scenario())
    await run_until(worker, lambda: sink.alarm(OFFLINE, "clear"))
    await steps
    raised = sink.alarm(OFFLINE, "raise")
    assert raised is not None and raised[0] == "cam-gate" and str(video) in raised[3]
    assert sink.alarms.index(raised) < sink.alarms.index(sink.alarm(OFFLINE, "clear"))
    assert worker.stats.opened >= 2


class MjpegServer:
    """An HTTP MJPEG camera (multipart/x-mixed-replace, as IP cameras serve it) that can be switched off.

    Off: the open stream ends and new requests get 503, until it is switched on again.
    """

    def __init__(self, frame: np.ndarray, fps: float = 10.0) -> None:
        self.up = threading.Event()
        self.up.set()
        self.closed = threading.Event()
        jpeg = cv2.imencode(".jpg", frame)[1].tobytes()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if not server.up.is_set():
                    self.send_error(503, "camera off")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    while server.up.is_set() and not server.closed.is_set():
                        head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                        self.wfile.write(head.encode() + jpeg + b"\r\n")
                        time.sleep(1 / fps)
                except OSError:
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/video.mjpg"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.closed.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@sync
async def test_offline_when_an_http_stream_closes_and_cleared_when_it_returns(faces_dir: Path) -> None:
    server = MjpegServer(scene(faces_dir / "enroll" / "rose_leslie" / "img1.jpg"))
    sink = Recorder()
    worker = CameraWorker(
        camera(server.url, offline_after=0.5, motion_threshold=1.0),
        lambda: None,
        sink,
        tuning=CameraTuning(reconnect_delay=0.2),
    )

    async def scenario() -> None:
        while worker.stats.frames < 5:
            await asyncio.sleep(0.02)
        server.up.clear()  # the camera goes away: the stream ends, reconnecting fails
        while not sink.alarm(OFFLINE, "raise"):
            await asyncio.sleep(0.05)
        server.up.set()

    try:
        steps = asyncio.create_task(scenario())
        await run_until(worker, lambda: sink.alarm(OFFLINE, "clear"))
        await steps
    finally:
        server.close()
    raised = sink.alarm(OFFLINE, "raise")
    assert raised is not None and server.url in raised[3]
    assert sink.alarms.index(raised) < sink.alarms.index(sink.alarm(OFFLINE, "clear"))
    assert worker.stats.opened >= 2


@pytest.mark.parametrize(
    ("spoil", "says"),
    [
        (lambda image: np.zeros_like(image), "blocked"),
        (lambda image: cv2.GaussianBlur(image, (0, 0), 8), "blurred"),
        (lambda image: np.roll(image, SIZE[0] // 2, axis=1)[::-1], "turned"),
    ],
    ids=["black", "blurred", "turned"],
)
@sync
async def test_tamper_is_raised_when_the_view_is_spoiled_and_cleared_when_it_recovers(
    faces_dir: Path, tmp_path: Path, spoil: Callable[[np.ndarray], np.ndarray], says: str
) -> None:
    image = scene(faces_dir / "enroll" / "kit_harington" / "john1.jpeg")
    # 2 s of the healthy view, then 2 s spoiled; looped, so the healthy view comes back
    frames = noisy(image, 20) + [spoil(f) for f in noisy(image, 20, seed=1)]
    video = write_video(tmp_path / "tamper.avi", frames)
    sink = Recorder()
    worker = CameraWorker(
        camera(video, offline_after=5, motion_threshold=1.0),
        lambda: None,
        sink,
        tuning=CameraTuning(loop=True, tamper_after=0.5),
    )
    await run_until(worker, lambda: sink.alarm(TAMPER, "clear"))
    raised = sink.alarm(TAMPER, "raise")
    assert raised is not None and says in raised[3], sink.alarms
    assert sink.alarms.index(raised) < sink.alarms.index(sink.alarm(TAMPER, "clear"))
    assert not sink.alarm(OFFLINE, "raise")


@sync
async def test_a_healthy_still_view_raises_no_tamper(faces_dir: Path, tmp_path: Path) -> None:
    """The check that the tamper tests are not passing on an alarm raised for any picture. (Eight
    seconds of video: the first frame's face detection may take seconds on a busy machine, and
    enough frames must be left after it for the tamper check to have looked.)"""
    frames = noisy(scene(faces_dir / "enroll" / "kit_harington" / "john1.jpeg"), 80)
    video = write_video(tmp_path / "calm.avi", frames)
    sink = Recorder()
    worker = CameraWorker(
        camera(video, offline_after=0.5, motion_threshold=1.0),
        lambda: None,
        sink,
        tuning=CameraTuning(tamper_after=0.5, reconnect_delay=3600),
    )
    await run_until(worker, lambda: sink.alarm(OFFLINE, "raise"))
    assert not sink.alarm(TAMPER, "raise"), sink.alarms
    assert worker.stats.analysed >= 10
