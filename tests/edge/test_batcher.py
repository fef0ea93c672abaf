"""Telemetry batching: never more than max_points a message, nothing lost, sent when due."""

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from contract.clock import ManualClock
from contract.messages import Reading, TelemetryBatch
from edge.batcher import Batcher


def reading(device: str, points: int, start: int = 0) -> Reading:
    return Reading(
        device=device,
        ts=datetime(2026, 1, 5, 8, 0, tzinfo=UTC),
        values={f"m{i}": float(i) for i in range(start, start + points)},
    )


def collect(max_points: int, max_delay: float = 1.0) -> tuple[Batcher, list[TelemetryBatch], ManualClock]:
    sent: list[TelemetryBatch] = []
    clock = ManualClock()
    return Batcher(max_points, max_delay, clock, sent.append), sent, clock


@pytest.mark.parametrize("max_points", [1, 7, 50])
def test_batches_never_exceed_max_points_and_lose_nothing(max_points: int) -> None:
    batcher, sent, _ = collect(max_points)
    sizes = [3, 11, 1, 60, 49, 50, 2, 120]
    for i, size in enumerate(sizes):
        batcher.add(reading(f"dev-{i}", size))
    batcher.flush()
    assert all(b.points <= max_points for b in sent)
    assert all(b.points == max_points for b in sent[:-1])  # only the last one may be short
    got = {(r.device, name) for b in sent for r in b.readings for name in r.values}
    assert got == {(f"dev-{i}", f"m{j}") for i, size in enumerate(sizes) for j in range(size)}


def test_a_reading_larger_than_a_batch_is_split_and_keeps_its_time() -> None:
    batcher, sent, _ = collect(50)
    big = reading("meter", 120)
    batcher.add(big)
    batcher.flush()
    assert [b.points for b in sent] == [50, 50, 20]
    assert all(r.ts == big.ts and r.device == "meter" for b in sent for r in b.readings)


def test_a_batch_goes_when_due_not_before() -> None:
    batcher, sent, clock = collect(50, max_delay=1.0)
    batcher.add(reading("pump-1", 5))
    clock.advance(0.9)
    batcher.flush_due()
    assert sent == []
    assert batcher.due_in() == pytest.approx(0.1)
    clock.advance(0.1)
    batcher.flush_due()
    assert [b.points for b in sent] == [5]
    assert batcher.due_in() is None


def test_a_batch_never_changes_once_made() -> None:
    batcher, sent, _ = collect(3)
    batcher.add(reading("pump-1", 3))
    (batch,) = sent
    first_id, first_points = batch.id, batch.points
    batcher.add(reading("pump-2", 2))
    batcher.flush()
    assert batch.id == first_id and batch.points == first_points
    assert sent[1].id != first_id
    with pytest.raises(ValidationError, match="frozen"):
        batch.readings = []  # type: ignore[misc]
