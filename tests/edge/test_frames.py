"""Camera frames for the guard console: each new frame sent once, an unchanged one not again, one that could
not go out (offline) tried again, and cameras replaced by a new configuration followed."""

import asyncio
import base64
from dataclasses import dataclass
from datetime import UTC, datetime

from contract.clock import ManualClock
from contract.messages import CameraFrame
from edge.frames import send_frames


@dataclass
class Named:
    name: str


class FakeCamera:
    def __init__(self, name: str) -> None:
        self.camera = Named(name)
        self.jpeg: bytes | None = None

    def latest_jpeg(self) -> bytes | None:
        return self.jpeg


def test_only_new_frames_go_out_and_a_refused_one_is_tried_again() -> None:
    async def scenario() -> list[tuple[str, bytes]]:
        door, yard = FakeCamera("cam-door"), FakeCamera("cam-yard")
        cameras = [door, yard]
        online = {"up": True}
        sent: list[tuple[str, bytes]] = []

        def send(payload: bytes) -> bool:
            if not online["up"]:
                return False
            frame = CameraFrame.model_validate_json(payload)
            sent.append((frame.camera, base64.b64decode(frame.jpeg)))
            return True

        task = asyncio.create_task(
            send_frames(lambda: cameras, send, interval=0.01, clock=ManualClock(datetime(2026, 11, 24, tzinfo=UTC)))
        )

        async def ticks(n: int = 3) -> None:
            await asyncio.sleep(0.01 * n + 0.02)

        await ticks()  # no frame yet: nothing
        door.jpeg = b"\xff\xd8one"
        await ticks()  # sent once, not again while unchanged
        online["up"] = False
        door.jpeg = b"\xff\xd8two"
        await ticks()  # offline: nothing went out
        online["up"] = True
        await ticks()  # the frame that could not go out is sent now
        yard.jpeg = b"\xff\xd8yard"
        cameras[:] = [yard]  # a new configuration: only the yard camera
        door.jpeg = b"\xff\xd8three"
        await ticks()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return sent

    assert asyncio.run(scenario()) == [
        ("cam-door", b"\xff\xd8one"),
        ("cam-door", b"\xff\xd8two"),
        ("cam-yard", b"\xff\xd8yard"),
    ]
