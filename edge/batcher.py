"""Pack readings into telemetry messages of at most `max_points` points, sent when full or due.

Few large messages cost the broker and the cloud far less than many small ones; the delay
bound keeps a quiet gateway's data fresh. A batch is built once, when it is sent, and never
changes: its id (made at creation) is what lets the cloud drop a redelivered copy.

The agent packs from its durable outbox (edge/outbox.py), which stages readings on disk and uses
`split` from here; the in-memory `Batcher` is the same packing for readings held in memory (the
outbox benchmark's baseline, and tools).
"""

from collections.abc import Callable

from contract.clock import Clock
from contract.messages import Reading, TelemetryBatch


def split(reading: Reading, room: int) -> tuple[Reading, Reading | None]:
    """The part of a reading that fits `room` points, and the rest (None when it all fits).

    Both parts keep the reading's device and time; the values keep their order.
    """
    if len(reading.values) <= room:
        return reading, None
    items = list(reading.values.items())
    return (
        Reading(device=reading.device, ts=reading.ts, values=dict(items[:room])),
        Reading(device=reading.device, ts=reading.ts, values=dict(items[room:])),
    )


class Batcher:
    """Collects readings; calls `emit` with each finished batch."""

    def __init__(self, max_points: int, max_delay: float, clock: Clock, emit: Callable[[TelemetryBatch], None]) -> None:
        if max_points < 1:
            raise ValueError("max_points must be at least 1")
        self.max_points = max_points
        self.max_delay = max_delay
        self.clock = clock
        self.emit = emit
        self._readings: list[Reading] = []
        self._points = 0
        self._first_at: float | None = None

    @property
    def pending_points(self) -> int:
        return self._points

    def add(self, reading: Reading) -> None:
        """Queue a reading, splitting it across batches when it does not fit the one being filled."""
        rest: Reading | None = reading
        while rest is not None:
            part, rest = split(rest, self.max_points - self._points)
            if self._first_at is None:
                self._first_at = self.clock.monotonic()
            self._readings.append(part)
            self._points += len(part.values)
            if self._points >= self.max_points:
                self.flush()

    def due_in(self) -> float | None:
        """Seconds until the pending batch must go, or None when nothing is pending."""
        if self._first_at is None:
            return None
        return max(0.0, self._first_at + self.max_delay - self.clock.monotonic())

    def flush_due(self) -> None:
        """Send the pending batch if it has waited `max_delay`."""
        due = self.due_in()
        if due is not None and due <= 0:
            self.flush()

    def flush(self) -> None:
        """Send whatever is pending, now."""
        if not self._readings:
            return
        batch = TelemetryBatch(ts=self.clock.now(), readings=self._readings)
        self._readings, self._points, self._first_at = [], 0, None
        self.emit(batch)
