"""Reconnection backoff of the uplink: doubling (paho's), from a first delay of each gateway's own."""

import random
from datetime import UTC, datetime

from contract.clock import ManualClock
from contract.messages import BirthMessage
from contract.urls import parse_mqtt_url
from edge.uplink import RECONNECT_DELAY, Uplink


def _uplink(seed: int, max_delay: float = 30.0) -> Uplink:
    def birth() -> BirthMessage:
        raise AssertionError("never connected in this test")

    return Uplink(
        parse_mqtt_url("mqtt://127.0.0.1:1"),
        "site",
        f"gw-{seed}",
        birth=birth,
        on_command=lambda _payload: None,
        clock=ManualClock(datetime(2026, 11, 27, tzinfo=UTC)),
        reconnect_max_delay=max_delay,
        rng=random.Random(seed),
    )


def test_gateways_start_their_backoff_from_different_first_delays_within_the_bounds() -> None:
    firsts = {_uplink(seed).reconnect_delays[0] for seed in range(50)}
    assert len(firsts) == 50  # no two gateways of this fleet retry in step
    assert all(0.5 * RECONNECT_DELAY[0] <= d <= 1.5 * RECONNECT_DELAY[0] for d in firsts)
    assert max(firsts) - min(firsts) > 0.5 * RECONNECT_DELAY[0]  # spread over the range, not bunched
    uplink = _uplink(1, max_delay=2.5)
    assert uplink.reconnect_delays[1] == 2.5
    assert uplink.client._reconnect_min_delay == uplink.reconnect_delays[0]  # what paho will use
