"""Face and card entry, cloud side: enrolment, cards, rights, passes, whitelists to a gateway, access events.

Everything real: the API on PostgreSQL, its downlink thread on a Mosquitto of the test's own, a
paho client standing in for the gateway, the ingest for what the gateway sends back, and the
shared photo set (tests that need it are skipped, saying where it was looked for, without it).
"""

import base64
import io
import queue
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from PIL import Image

from cloud.api.app import create_app
from cloud.seed import seed_estate
from cloud.storage.db import connect
from contract import messages, topics
from contract.access import AccessEvent, WhitelistMessage, WhitelistRequest, hash_secret
from contract.clock import ManualClock
from contract.messages import EventMessage
from contract.urls import parse_mqtt_url
from tests.cloud.stack import running_ingest, wait_for
from tests.workflow.conftest import START, World, make_settings

GATEWAY = "gw-entry"
DOORS = {
    "access": {
        "doors": [
            {"name": "b1-main", "location": {"building": "1"}},
            {"name": "b2-main", "location": {"building": "2"}},
            {"name": "gym", "location": {"building": "PR"}},
        ]
    },
    "devices": [],
}


class GatewayStandIn:
    """Subscribes to the gateway's whitelist topic as an edge agent would; sends what an agent sends."""

    def __init__(self, mqtt_url: str, site: str, gateway: str) -> None:
        self.site, self.gateway = site, gateway
        self.received: queue.Queue[WhitelistMessage] = queue.Queue()
        endpoint = parse_mqtt_url(mqtt_url)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{gateway}-{uuid.uuid4().hex[:6]}")
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(endpoint.host, endpoint.port)
        self.client.subscribe(topics.topic(site, gateway, topics.Kind.ACCESS_WHITELIST), qos=1)
        self.client.loop_start()
        assert subscribed.wait(10), "the stand-in gateway could not subscribe"

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        decoded = messages.decode(topics.Kind.ACCESS_WHITELIST, msg.payload)
        assert isinstance(decoded, WhitelistMessage)
        assert not msg.retain, "whitelists are not retained"
        self.received.put(decoded)

    def next(self, timeout: float = 15) -> WhitelistMessage:
        return self.received.get(timeout=timeout)

    def send(self, kind: topics.Kind, message: messages.Envelope) -> None:
        self.client.publish(
            topics.topic(self.site, self.gateway, kind), messages.encode(message), qos=1
        ).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@dataclass
class Entry:
    world: World
    gateway: GatewayStandIn

    def person(self, key: str) -> int:
        return self.world.a.people[key]


@pytest.fixture
def entry(database_url: str, mqtt_url: str, tmp_path: Path) -> Iterator[Entry]:
    settings = make_settings(database_url, tmp_path, mqtt_url=mqtt_url, downlink_retry_seconds=0.2)
    clock = ManualClock(START)
    app = create_app(settings, clock=clock, apply_migrations=False)
    with connect(database_url) as conn:
        a = seed_estate(
            conn,
            app.state.cipher,
            site_id="estate-a",
            site_name="Sunny Gardens",
            timezone="Asia/Shanghai",
            prefix="a.",
            now=clock.now(),
        )
        b = seed_estate(
            conn,
            app.state.cipher,
            site_id="estate-b",
            site_name="Harbour View",
            timezone="Asia/Shanghai",
            prefix="b.",
            now=clock.now(),
            with_admin=False,
        )
        conn.commit()
    gateway = GatewayStandIn(mqtt_url, "estate-a", GATEWAY)
    with TestClient(app) as client:
        world = World(app, client, clock, settings, database_url, a, b, app.state.cipher)
        admin = world.as_("admin")
        admin.ok("post", "/api/v1/gateways", {"id": GATEWAY, "site": "estate-a"})
        admin.ok("put", f"/api/v1/gateways/{GATEWAY}/config", DOORS)
        try:
            yield Entry(world, gateway)
        finally:
            gateway.close()


def photo(faces_dir: Path, relative: str) -> bytes:
    return (faces_dir / relative).read_bytes()


def image_bytes(img: Image.Image, fmt: str = "JPEG") -> bytes:
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


def enrol(entry: Entry, person_id: int, data: bytes, name: str = "photo.jpg") -> Any:
    return entry.world.as_("desk").post(f"/api/v1/people/{person_id}/faces", files={"photo": (name, data)})


def people_of(msg: WhitelistMessage) -> dict[int, Any]:
    return {p.id: p for p in msg.people}


def until(entry: Entry, check: Any, limit: int = 10) -> WhitelistMessage:
    """The next whitelist messages until one satisfies `check` (a change may take one rebuild or two)."""
    for _ in range(limit):
        msg = entry.gateway.next()
        if check(msg):
            return msg
    raise AssertionError("no whitelist message satisfied the check")


def grant_building_one(entry: Entry) -> dict:
    manager = entry.world.as_("manager")
    profile = manager.ok(
        "post",
        "/api/v1/time-profiles",
        {
            "site_id": "estate-a",
            "name": "Daytime",
            "weekdays": [1, 2, 3, 4, 5, 6, 7],
            "segments": [{"start": "06:00", "end": "23:00"}],
        },
    )
    right = entry.world.as_("desk").ok(
        "post",
        "/api/v1/access-rights",
        {
            "site_id": "estate-a",
            "building_id": entry.world.a.buildings["1"],
            "doors": [{"gateway_id": GATEWAY, "door": "b1-main"}],
            "time_profile_id": profile["id"],
        },
    )
    return {"profile": profile, "right": right}


# --- the first whitelist, cards, lost cards ------------------------------------------------------


def test_a_new_gateway_gets_a_full_whitelist_then_deltas_and_a_lost_card_blocks_at_once(entry: Entry) -> None:
    first = entry.gateway.next()
    assert first.base_version is None and first.version == 1 and first.timezone == "Asia/Shanghai"
    assert first.people == [] and first.time_profiles == [] and first.holidays == []

    rules = grant_building_one(entry)
    desk = entry.world.as_("desk")
    resident = entry.person("resident")
    card = desk.ok("post", f"/api/v1/people/{resident}/cards", {"number": "00a1b2c3"})
    assert card["number"] == "00A1B2C3" and card["state"] == "valid"
    clash = desk.post(f"/api/v1/people/{entry.person('resident2')}/cards", json={"number": "00A1B2C3"})
    assert clash.status_code == 409 and "00A1B2C3" in clash.json()["error"]

    msg = until(entry, lambda m: resident in people_of(m))
    assert msg.base_version is not None and msg.base_version == msg.version - 1  # a delta on the last version
    person = people_of(msg)[resident]
    assert [c.number for c in person.cards] == ["00A1B2C3"] and not person.cards[0].blocked
    assert person.faces == []
    tp = f"tp_{rules['profile']['id']}"
    assert [(r.doors, r.time_profile) for r in person.rights] == [(["b1-main"], tp)]
    assert entry.person("resident2") not in people_of(msg)  # in building 1, but with nothing to enter with
    assert person.label == "Sun M."  # Sun Mei: what the door shows, not the whole name

    # every resident of the site gets the gym (a common area) at any time
    gym = desk.ok(
        "post",
        "/api/v1/access-rights",
        {"site_id": "estate-a", "site_residents": True, "doors": [{"gateway_id": GATEWAY, "door": "gym"}]},
    )
    msg = until(entry, lambda m: resident in people_of(m) and len(people_of(m)[resident].rights) == 2)
    rights = {(tuple(r.doors), r.time_profile) for r in people_of(msg)[resident].rights}
    assert rights == {(("b1-main",), tp), (("gym",), None)}
    both = desk.post(
        "/api/v1/access-rights",
        json={
            "site_id": "estate-a",
            "site_residents": True,
            "person_id": resident,
            "doors": [{"gateway_id": GATEWAY, "door": "gym"}],
        },
    )
    assert both.status_code == 422 and "exactly one" in both.json()["error"]

    lost = entry.world.as_("resident").ok("post", f"/api/v1/cards/{card['id']}/lost")
    assert lost["state"] == "lost"
    msg = until(entry, lambda m: resident in people_of(m) and people_of(m)[resident].cards[0].blocked)
    assert msg.base_version == msg.version - 1 and [p.id for p in msg.people] == [resident]

    # a holiday changes the holidays list in the next delta; deleting the right removes the person
    entry.world.as_("manager").ok("post", "/api/v1/holidays", {"site_id": "estate-a", "day": "2026-12-25"})
    msg = until(entry, lambda m: m.holidays is not None)
    assert [str(d) for d in msg.holidays or []] == ["2026-12-25"]
    assert desk.delete(f"/api/v1/access-rights/{rules['right']['id']}").status_code == 204
    msg = until(entry, lambda m: resident in people_of(m) and len(people_of(m)[resident].rights) == 1)
    assert people_of(msg)[resident].rights[0].doors == ["gym"]
    assert desk.delete(f"/api/v1/access-rights/{gym['id']}").status_code == 204
    msg = until(entry, lambda m: resident in m.removed_people)
    assert msg.people == []


def test_a_gateway_that_asks_gets_the_full_whitelist(entry: Entry) -> None:
    entry.gateway.next()  # the first full
    grant_building_one(entry)
    resident = entry.person("resident")
    entry.world.as_("desk").ok("post", f"/api/v1/people/{resident}/cards", {"number": "CAFE0001"})
    latest = until(entry, lambda m: resident in people_of(m))
    with running_ingest(entry.world.settings.model_copy(update={"mqtt_client_id": f"entry-{uuid.uuid4().hex[:6]}"})):
        entry.gateway.send(
            topics.Kind.ACCESS_REQUEST, WhitelistRequest(ts=datetime.now(UTC), have_version=None, reason="disk lost")
        )
        full = until(entry, lambda m: m.base_version is None)
    assert full.version == latest.version  # nothing changed since: the same version, whole
    assert resident in people_of(full) and full.time_profiles and len(full.time_profiles) == 1


# --- visitor passes and access events ------------------------------------------------------------


def small_jpeg() -> str:
    return base64.b64encode(image_bytes(Image.new("RGB", (64, 48), (120, 80, 40)))).decode()


def test_passes_and_access_events_per_role(entry: Entry) -> None:
    entry.gateway.next()
    world = entry.world
    resident, resident2 = entry.person("resident"), entry.person("resident2")
    now = world.clock.now()
    window = {"valid_from": now.isoformat(), "valid_until": (now + timedelta(hours=6)).isoformat()}
    made = world.as_("resident").ok(
        "post", "/api/v1/passes", {"guest_name": "Aunt Li", "doors": "my_building_entrances", "uses": 2, **window}
    )
    assert len(made["pin"]) == 6 and made["pin"].isdigit() and made["qr_token"]
    assert made["doors"] == [{"gateway_id": GATEWAY, "door": "b1-main"}] and made["host_person_id"] == resident
    listed = world.as_("resident").ok("get", "/api/v1/passes")
    assert [p["id"] for p in listed] == [made["id"]] and "pin" not in listed[0] and "qr_token" not in listed[0]
    assert world.as_("resident2").ok("get", "/api/v1/passes") == []
    # a resident cannot give a guest a door they have no right on
    refused = world.as_("resident").post(
        "/api/v1/passes", json={"guest_name": "x", "doors": [{"gateway_id": GATEWAY, "door": "gym"}], **window}
    )
    assert refused.status_code == 403 and "gym" in refused.json()["error"]

    msg = until(entry, lambda m: bool(m.passes))
    wl_pass = msg.passes[0]
    assert str(wl_pass.id) == made["id"] and wl_pass.uses == 2 and wl_pass.doors == ["b1-main"]
    assert wl_pass.pin_hash == hash_secret(wl_pass.salt, made["pin"])
    assert wl_pass.qr_hash == hash_secret(wl_pass.salt, made["qr_token"])
    stored = world.sql("SELECT * FROM visitor_passes")[0]
    assert made["pin"] not in str(stored) and made["qr_token"] not in str(stored)

    events = [
        AccessEvent(ts=now, door="b1-main", method="pin", granted=True, pass_id=uuid.UUID(made["id"])),
        AccessEvent(
            ts=now,
            door="b1-main",
            method="face",
            granted=True,
            person_id=resident,
            distance=0.41,
            snapshot_jpeg=small_jpeg(),
            source="cam-b1",
        ),
        AccessEvent(
            ts=now, door="b1-main", method="card", granted=False, reason="blocked", person_id=resident2, card="****0002"
        ),
    ]
    with running_ingest(
        world.settings.model_copy(update={"mqtt_client_id": f"entry-{uuid.uuid4().hex[:6]}"})
    ) as ingest:
        for event in events:
            entry.gateway.send(topics.Kind.ACCESS_EVENT, event)
        entry.gateway.send(topics.Kind.ACCESS_EVENT, events[0])  # at least once: a repeat is stored once
        wait_for(lambda: ingest.control.handled >= 4)  # all four through the control lane, the repeat too
    assert len(world.sql("SELECT id FROM access_events")) == 3
    assert world.sql("SELECT uses_left FROM visitor_passes")[0]["uses_left"] == 1  # the use counted once
    msg = until(entry, lambda m: any(p.uses == 1 for p in m.passes))

    ids = {e.id for e in events}
    guard = {e["id"] for e in world.as_("guard").ok("get", "/api/v1/access-events")}
    assert {uuid.UUID(i) for i in guard} == ids
    own = world.as_("resident").ok("get", "/api/v1/access-events")
    assert {uuid.UUID(e["id"]) for e in own} == {events[0].id, events[1].id}  # their own and their pass's
    assert next(e for e in own if e["pass_id"])["host_person_id"] == resident
    assert {uuid.UUID(e["id"]) for e in world.as_("resident2").ok("get", "/api/v1/access-events")} == {events[2].id}
    assert world.as_("guard", estate="b").ok("get", "/api/v1/access-events") == []
    assert world.as_("tech1").get("/api/v1/access-events").status_code == 403
    by_person = world.as_("desk").ok("get", f"/api/v1/access-events?person_id={resident2}")
    assert [e["reason"] for e in by_person] == ["blocked"]

    snap = world.as_("resident").get(f"/api/v1/access-events/{events[1].id}/snapshot")
    assert snap.status_code == 200 and snap.headers["content-type"] == "image/jpeg"
    assert snap.content == base64.b64decode(events[1].snapshot_jpeg or "")
    assert world.as_("resident2").get(f"/api/v1/access-events/{events[1].id}/snapshot").status_code == 404
    assert world.as_("guard").get(f"/api/v1/access-events/{events[0].id}/snapshot").status_code == 404  # none

    # the last use: the pass leaves the whitelist
    with running_ingest(
        world.settings.model_copy(update={"mqtt_client_id": f"entry-{uuid.uuid4().hex[:6]}"})
    ) as ingest:
        last = AccessEvent(ts=now, door="b1-main", method="qr", granted=True, pass_id=uuid.UUID(made["id"]))
        entry.gateway.send(topics.Kind.ACCESS_EVENT, last)
        wait_for(lambda: ingest.control.handled >= 1)
    assert world.sql("SELECT uses_left FROM visitor_passes")[0]["uses_left"] == 0
    gone = until(entry, lambda m: uuid.UUID(made["id"]) in m.removed_passes)
    assert gone.passes == [] and gone.base_version == gone.version - 1


def test_an_alarm_snapshot_is_attached_to_the_alarm_and_its_ticket(entry: Entry) -> None:
    from tests.cloud.stack import Gateway

    world = entry.world
    with running_ingest(world.settings.model_copy(update={"mqtt_client_id": f"entry-{uuid.uuid4().hex[:6]}"})):
        gw = Gateway(world.settings.mqtt_url, "estate-a", GATEWAY, timezone="Asia/Shanghai")
        try:
            gw.birth([("door-ctl-1", "door-controller", "1")])
            wait_for(lambda: world.sql("SELECT 1 FROM devices WHERE name = 'door-ctl-1' AND announced"))
            gw.alarm("door-ctl-1", "door_forced", "raise", ticket="safety")
            alarm = wait_for(lambda: world.sql("SELECT * FROM alarms WHERE ticket_id IS NOT NULL"))[0]
            jpeg = small_jpeg()
            gw.send(
                EventMessage(
                    ts=datetime.now(UTC),
                    device="cam-b1",
                    kind="alarm_snapshot",
                    data={"alarm_device": "door-ctl-1", "rule": "door_forced", "jpeg": jpeg},
                )
            )
            event = wait_for(lambda: world.sql("SELECT * FROM events WHERE kind = 'alarm_snapshot'"))[0]
        finally:
            gw.close()
    assert "jpeg" not in event["data"] and event["data"]["alarm_id"] == alarm["id"]
    row = world.sql("SELECT * FROM attachments WHERE ticket_id = %s", (alarm["ticket_id"],))[0]
    assert row["visibility"] == "internal" and row["content_type"] == "image/jpeg"
    assert world.sql("SELECT snapshot_id FROM alarms WHERE id = %s", (alarm["id"],))[0]["snapshot_id"] == row["id"]
    number = world.sql("SELECT number FROM tickets WHERE id = %s", (alarm["ticket_id"],))[0]["number"]
    ticket = world.as_("guard").ok("get", f"/api/v1/tickets/{number}")
    assert ticket["category"] == "safety" or ticket["type"] == "safety"
    got = world.as_("guard").get(f"/api/v1/attachments/{row['id']}")
    assert got.status_code == 200 and got.content == base64.b64decode(jpeg)
    assert world.as_("resident").get(f"/api/v1/attachments/{row['id']}").status_code == 404  # internal


# --- faces (the shared photo set) ----------------------------------------------------------------


def ready_for_faces(entry: Entry, key: str, number: str) -> int:
    person = entry.person(key)
    desk = entry.world.as_("desk")
    desk.ok("post", f"/api/v1/people/{person}/face-consent", {"method": "paper_form", "note": "form 17"})
    desk.ok("post", f"/api/v1/people/{person}/cards", {"number": number})
    return person


def test_face_enrolment_refusals_say_why(entry: Entry, faces_dir: Path) -> None:
    person = entry.person("resident2")
    obama = photo(faces_dir, "enroll/obama/obama2.jpg")
    no_consent = enrol(entry, person, obama)
    assert no_consent.status_code == 409 and "consent" in no_consent.json()["error"]
    entry.world.as_("desk").ok("post", f"/api/v1/people/{person}/face-consent", {"method": "in_person"})
    no_card = enrol(entry, person, obama)
    assert no_card.status_code == 409 and "card" in no_card.json()["error"]
    entry.world.as_("desk").ok("post", f"/api/v1/people/{person}/cards", {"number": "B0B0B0B0"})

    cases = {
        "no face": (image_bytes(Image.new("RGB", (640, 480), (200, 190, 180))), "no face found"),
        "two faces": (photo(faces_dir, "probes/two_people.jpg"), "2 faces found"),
        "unreadable": (b"this is not a photo at all" * 10, "cannot be read"),
        "too many bytes": (b"\xff\xd8\xff" + b"\0" * entry.world.settings.face_photo_max_bytes, "too large"),
        "too many pixels": (image_bytes(Image.new("L", (6000, 5000)), "PNG"), "pixels"),
    }
    small = Image.open(io.BytesIO(obama))
    cases["face too small"] = (image_bytes(small.resize((small.width // 6, small.height // 6))), "too small")
    for case, (data, says) in cases.items():
        resp = enrol(entry, person, data)
        assert resp.status_code == 422 and says in resp.json()["error"], (case, resp.text)
    assert entry.world.sql("SELECT count(*) AS n FROM face_enrolments")[0]["n"] == 0


def test_one_face_cannot_be_enrolled_for_two_people(entry: Entry, faces_dir: Path) -> None:
    first = ready_for_faces(entry, "resident", "A0000001")
    second = ready_for_faces(entry, "resident2", "A0000002")
    created = enrol(entry, first, photo(faces_dir, "enroll/obama/obama.jpg"))
    assert created.status_code == 201, created.text
    assert set(created.json()) == {"id", "person_id", "created_at", "created_by", "photo_kept"}
    again = enrol(entry, second, photo(faces_dir, "enroll/obama/obama2.jpg"))
    assert again.status_code == 409 and f"person {first}" in again.json()["error"]
    # the same person may add a second photo of themselves; someone else's face is fine for the second
    assert enrol(entry, first, photo(faces_dir, "enroll/obama/obama2.jpg")).status_code == 201
    assert enrol(entry, second, photo(faces_dir, "enroll/biden/biden2.jpg")).status_code == 201
    listed = entry.world.as_("desk").ok("get", f"/api/v1/people/{first}/faces")
    assert [f["created_by"] for f in listed] == ["a.desk", "a.desk"] and all("encoding" not in f for f in listed)
    stored = entry.world.sql("SELECT encoding_enc FROM face_enrolments")
    assert all(len(r["encoding_enc"]) == 1 + 12 + 128 * 8 + 16 for r in stored)  # AES-GCM, nothing in clear


def test_withdrawn_consent_removes_the_face_from_the_cloud_and_the_next_whitelist(
    entry: Entry, faces_dir: Path
) -> None:
    entry.gateway.next()
    grant_building_one(entry)
    person = ready_for_faces(entry, "resident", "C0FFEE01")
    assert enrol(entry, person, photo(faces_dir, "enroll/obama/obama.jpg")).status_code == 201
    msg = until(entry, lambda m: person in people_of(m) and len(people_of(m)[person].faces) == 1)
    encoding = people_of(msg)[person].faces[0]
    assert len(encoding) == 128

    withdrawn = entry.world.as_("resident").delete(f"/api/v1/people/{person}/face-consent")  # the person withdraws
    assert withdrawn.status_code == 204
    assert entry.world.sql("SELECT count(*) AS n FROM face_enrolments")[0]["n"] == 0
    assert entry.world.as_("desk").ok("get", f"/api/v1/people/{person}/faces") == []
    delta = until(entry, lambda m: person in people_of(m))
    assert delta.base_version == msg.version and people_of(delta)[person].faces == []
    assert [c.number for c in people_of(delta)[person].cards] == ["C0FFEE01"]  # the card path stays
    refused = enrol(entry, person, photo(faces_dir, "enroll/obama/obama.jpg"))
    assert refused.status_code == 409 and "consent" in refused.json()["error"]


def test_rights_by_residence_follow_the_units_and_the_status_shows_versions(entry: Entry) -> None:
    entry.gateway.next()
    grant_building_one(entry)
    world, desk = entry.world, entry.world.as_("desk")
    resident = entry.person("resident")
    desk.ok("post", f"/api/v1/people/{resident}/cards", {"number": "5EED0001"})
    added = until(entry, lambda m: resident in people_of(m))
    # moving from building 1 to building 2: the right names building 1, so they leave the whitelist
    desk.ok("put", f"/api/v1/people/{resident}/units/{world.a.units['2-201']}?relation=tenant")
    moved_out = desk.delete(f"/api/v1/people/{resident}/units/{world.a.units['1-101']}")
    assert moved_out.status_code == 204, moved_out.text
    removed = until(entry, lambda m: resident in m.removed_people)
    assert removed.base_version == added.version and removed.people == []
    desk.ok("put", f"/api/v1/people/{resident}/units/{world.a.units['1-102']}?relation=family")
    back = until(entry, lambda m: resident in people_of(m))
    assert back.base_version == removed.version

    # the gateway may have the message a moment before the publisher notes the broker's acknowledgement
    status = wait_for(
        lambda: (
            (s := world.as_("manager").ok("get", f"/api/v1/gateways/{GATEWAY}/whitelist"))["messages"][0][
                "published_at"
            ]
            and s
        )
    )
    assert status["version"] == back.version and {d["name"] for d in status["doors"]} == {"b1-main", "b2-main", "gym"}
    sent = status["messages"]
    assert sent[0]["version"] == back.version and sent[0]["people"] == 1 and sent[0]["published_at"] is not None
    assert sent[-1]["base_version"] is None  # the first, full
    assert world.sql("SELECT count(*) AS n FROM whitelist_messages WHERE body_enc IS NOT NULL")[0]["n"] == 0
    assert world.as_("manager", estate="b").get(f"/api/v1/gateways/{GATEWAY}/whitelist").status_code == 404


def test_a_floor_right_gives_each_resident_the_doors_of_their_own_floor(entry: Entry) -> None:
    entry.gateway.next()
    world, admin, desk = entry.world, entry.world.as_("admin"), entry.world.as_("desk")
    floors = {
        "access": {
            "doors": [
                *DOORS["access"]["doors"],
                {"name": "b1-lift-1", "location": {"building": "1", "floor": "1"}},
                {"name": "b1-lift-18", "location": {"building": "1", "floor": "18"}},
            ]
        },
        "devices": [],
    }
    admin.ok("put", f"/api/v1/gateways/{GATEWAY}/config", floors)
    lifts = [{"gateway_id": GATEWAY, "door": "b1-lift-1"}, {"gateway_id": GATEWAY, "door": "b1-lift-18"}]
    building = world.a.buildings["1"]

    no_building = desk.post("/api/v1/access-rights", {"site_id": "estate-a", "site_residents": True,
                                                       "own_floor": True, "doors": lifts})  # fmt: skip
    assert no_building.status_code == 422 and "building_id" in no_building.text
    no_floor = desk.post("/api/v1/access-rights", {"site_id": "estate-a", "building_id": building, "own_floor": True,
                                                    "doors": [{"gateway_id": GATEWAY, "door": "b1-main"}]})  # fmt: skip
    assert no_floor.status_code == 422 and "b1-main" in no_floor.text and "floor" in no_floor.text

    right = desk.ok("post", "/api/v1/access-rights",
                    {"site_id": "estate-a", "building_id": building, "own_floor": True, "doors": lifts})  # fmt: skip
    assert right["own_floor"] is True
    resident, resident2 = entry.person("resident"), entry.person("resident2")
    held: dict[int, Any] = {}  # the gateway's view, deltas applied

    def doors_held(person: int) -> set[str] | None:
        entry_ = held.get(person)
        return None if entry_ is None else {door for r in entry_.rights for door in r.doors}

    def until_held(check: Any) -> WhitelistMessage:
        def apply(msg: WhitelistMessage) -> bool:
            for removed in msg.removed_people:
                held.pop(removed, None)
            held.update(people_of(msg))
            return bool(check())

        return until(entry, apply)

    for person, number in ((resident, "F1000001"), (resident2, "F1000002")):
        desk.ok("post", f"/api/v1/people/{person}/cards", {"number": number})
    until_held(lambda: doors_held(resident) == {"b1-lift-1"} and doors_held(resident2) == {"b1-lift-1"})
    # both live on floor 1 (units 1-101 and 1-102); nobody gets the floor-18 lobby
    # moving up to 1-1801 on floor 18: the floor-1 lift lobby goes, the floor-18 one comes
    desk.ok("put", f"/api/v1/people/{resident2}/units/{world.a.units['1-1801']}?relation=tenant")
    moved = desk.delete(f"/api/v1/people/{resident2}/units/{world.a.units['1-102']}")
    assert moved.status_code == 204, moved.text
    up = until_held(lambda: doors_held(resident2) == {"b1-lift-18"})
    assert up.base_version is not None and doors_held(resident) == {"b1-lift-1"}
