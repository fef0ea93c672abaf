"""A configuration pushed by the cloud: applied when good, refused with the reason when not, kept on disk."""

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contract.clock import ManualClock
from contract.gateway_config import LoadedGatewayConfig, load_gateway_config
from contract.messages import ConfigMessage, ConfigState, encode
from edge.remote_config import ConfigStore, RemoteConfigHandler
from tests.edge.conftest import modbus_device, write_gateway_config

START = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def _pump(name: str, unit: int = 1) -> dict:
    return modbus_device(name, "water-pump", 15020, unit)


class Recorder:
    def __init__(self) -> None:
        self.applied: list[LoadedGatewayConfig] = []
        self.fail_next = False

    async def __call__(self, loaded: LoadedGatewayConfig) -> None:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("driver would not start")
        self.applied.append(loaded)


@pytest.fixture
def local(tmp_path: Path) -> LoadedGatewayConfig:
    return load_gateway_config(write_gateway_config(tmp_path, [_pump("pump-1")]))


def _handler(local: LoadedGatewayConfig, tmp_path: Path, recorder: Recorder) -> RemoteConfigHandler:
    return RemoteConfigHandler(local, ConfigStore(tmp_path / "state" / "config.json"), recorder, ManualClock(START))


def _handle(handler: RemoteConfigHandler, payload: bytes) -> ConfigState | None:
    return asyncio.run(handler.handle(payload))


def _push(version: int, config: dict) -> bytes:
    return encode(ConfigMessage(ts=START, version=version, config=config))


def test_a_good_version_is_applied_saved_and_survives_a_restart(local, tmp_path) -> None:
    recorder = Recorder()
    handler = _handler(local, tmp_path, recorder)
    assert handler.initial() is local
    state = _handle(
        handler, _push(3, {"devices": [_pump("pump-1"), _pump("pump-2", 2)], "telemetry": {"max_points": 20}})
    )
    assert state is not None and state.status == "applied" and state.version == 3 and state.running_version == 3
    assert [d.name for d in recorder.applied[-1].config.devices] == ["pump-1", "pump-2"]
    assert recorder.applied[-1].config.telemetry.max_points == 20
    # identity stays the local file's
    assert recorder.applied[-1].config.gateway.id == local.config.gateway.id

    again = _handler(local, tmp_path, Recorder())
    started = again.initial()
    assert started.version == 3 and [d.name for d in started.config.devices] == ["pump-1", "pump-2"]
    # the retained copy delivered after the restart is acknowledged without applying it twice
    repeat = _handle(again, _push(3, {"devices": []}))
    assert repeat is not None and repeat.status == "applied"


def test_a_bad_version_is_refused_with_the_field_and_the_last_good_keeps_running(local, tmp_path) -> None:
    recorder = Recorder()
    handler = _handler(local, tmp_path, recorder)
    _handle(handler, _push(1, {"devices": [_pump("pump-1")]}))
    state = _handle(handler, _push(2, {"devices": [{**_pump("pump-9"), "profile": "no-such-profile"}]}))
    assert state is not None and state.status == "refused" and state.running_version == 1
    assert "devices[0].profile" in (state.reason or "") and "no-such-profile" in (state.reason or "")
    assert len(recorder.applied) == 1

    bad_field = _handle(handler, _push(3, {"devices": [{**_pump("pump-1"), "poll_interval": -1}]}))
    assert bad_field is not None and bad_field.status == "refused" and "poll_interval" in (bad_field.reason or "")

    bad_profile = _handle(
        handler,
        _push(4, {"devices": [{**_pump("x"), "profile": "mine"}], "profiles": {"mine": {"protocol": "modbus"}}}),
    )
    assert bad_profile is not None and bad_profile.status == "refused"
    assert "profiles.mine" in (bad_profile.reason or "") and "name" in (bad_profile.reason or "")

    older = _handle(handler, _push(1, {"devices": []}))
    assert older is not None and older.status == "applied"  # the one that runs
    assert ConfigStore(tmp_path / "state" / "config.json").load().version == 1  # type: ignore[union-attr]


def test_a_pushed_profile_is_used_and_an_older_version_is_refused(local, tmp_path) -> None:
    recorder = Recorder()
    handler = _handler(local, tmp_path, recorder)
    profile = {
        "name": "Tank level",
        "protocol": "modbus",
        "metrics": [{"name": "level", "table": "holding_register", "address": 0, "type": "uint16"}],
    }
    state = _handle(
        handler, _push(5, {"devices": [{**_pump("tank-1"), "profile": "tank"}], "profiles": {"tank": profile}})
    )
    assert state is not None and state.status == "applied"
    assert recorder.applied[-1].profiles["tank"].name == "Tank level"
    older = _handle(handler, _push(4, {"devices": []}))
    assert (
        older is not None and older.status == "refused" and "older than the running version 5" in (older.reason or "")
    )


def test_garbage_is_refused_and_a_failed_apply_goes_back(local, tmp_path) -> None:
    recorder = Recorder()
    handler = _handler(local, tmp_path, recorder)
    assert _handle(handler, b"not json") is None
    assert _handle(handler, b"") is None
    state = _handle(handler, b'{"v": 1, "version": 7, "ts": "2026-11-27T08:00:00Z"}')
    assert state is not None and state.status == "refused" and "config" in (state.reason or "")

    recorder.fail_next = True
    failed = _handle(handler, _push(8, {"devices": [_pump("pump-1")]}))
    assert failed is not None and failed.status == "refused" and "driver would not start" in (failed.reason or "")
    assert recorder.applied[-1] is local  # went back to what ran
    assert handler.running_version is None
    assert ConfigStore(tmp_path / "state" / "config.json").load() is None


def test_an_unreadable_saved_file_falls_back_to_the_local_file(local, tmp_path, caplog) -> None:
    path = tmp_path / "state" / "config.json"
    path.parent.mkdir()
    path.write_text("{broken")
    handler = RemoteConfigHandler(local, ConfigStore(path), Recorder(), ManualClock(START))
    assert handler.initial() is local
    assert str(path) in caplog.text
