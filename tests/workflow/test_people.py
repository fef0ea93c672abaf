"""Personal data: encrypted at rest, masked in lists, whole for the office, found by exact phone or ID
number, and audited without ever being written in clear."""

import json

from tests.workflow.conftest import World

P = "/api/v1/people"


def test_registration_encrypts_masks_and_finds_by_phone(world: World) -> None:
    desk = world.as_("desk")
    body = {
        "full_name": "Huang Xiaoming",
        "phone": "+86 137-1234-5678",
        "id_number": "310101 19800101 5678",
        "email": "Huang.X@example.com",
        "units": [{"unit_id": world.a.units["2-201"], "relation": "tenant"}],
    }
    created = desk.ok("post", P, body)
    assert created["phone"] == "+8613712345678" and created["id_number"] == "310101198001015678"
    person_id = created["id"]

    # at rest: ciphertext only, no trace of the number in the row
    row = world.sql("SELECT * FROM people WHERE id = %s", (person_id,))[0]
    raw = b"".join(bytes(row[c]) for c in ("phone_enc", "id_number_enc", "email_enc"))
    for clear in (b"13712345678", b"5678", b"310101", b"example.com"):
        assert clear not in raw
    assert len(bytes(row["phone_hash"])) == 32

    # found by exact phone, however it is typed; lists are masked
    for typed in ("+86 137 1234 5678", "+86-137-1234-5678", "+8613712345678"):
        found = desk.ok("get", f"{P}?phone={typed.replace('+', '%2B')}")
        assert [p["id"] for p in found] == [person_id], typed
        assert found[0]["phone"] == "+86*******5678" and found[0]["id_number"] == "3101**********5678"
    assert desk.ok("get", f"{P}?phone=%2B8613712345679") == []
    assert [p["id"] for p in desk.ok("get", f"{P}?id_number=310101198001015678")] == [person_id]
    # one person in full, for the office
    assert desk.ok("get", f"{P}/{person_id}")["email"] == "huang.x@example.com"

    # the audit log keeps who and what, masked
    entries = world.as_("admin").ok("get", f"/api/v1/audit?entity=people&entity_id={person_id}")
    assert entries and entries[-1]["actor"] == "a.desk"
    text = json.dumps(entries)
    assert "13712345678" not in text and "310101198001015678" not in text and "*******5678" in text

    # an update is audited with before and after
    desk.ok("patch", f"{P}/{person_id}", {"phone": "+86 137 0000 9999"})
    update = world.as_("admin").ok("get", f"/api/v1/audit?entity=people&entity_id={person_id}")[0]
    assert update["action"] == "update"
    assert update["before"]["phone"] == "+86*******5678" and update["after"]["phone"] == "+86*******9999"


def test_a_technician_sees_names_not_numbers_and_residents_only_themselves(world: World) -> None:
    resident_id = world.a.people["resident"]
    me = world.as_("resident").ok("get", f"{P}/{resident_id}")
    assert me["phone"] == "+8613911110001"  # their own record, in full
    assert world.as_("resident").get(f"{P}/{world.a.people['resident2']}").status_code == 404
    seen = world.as_("tech1").ok("get", f"{P}/{resident_id}")
    assert seen["full_name"] == "Sun Mei" and seen["phone"] == "+86*******0001"


def test_validation_of_personal_data(world: World) -> None:
    desk = world.as_("desk")
    unit = world.a.units["2-201"]
    cases = [
        ({"full_name": "X", "phone": "call me maybe", "units": [{"unit_id": unit, "relation": "tenant"}]}, "phone"),
        ({"full_name": "X", "email": "not-an-email", "units": [{"unit_id": unit, "relation": "tenant"}]}, "email"),
        ({"full_name": "X", "units": []}, "units"),
        ({"full_name": "X", "units": [{"unit_id": unit, "relation": "landlord"}]}, "relation"),
        ({"full_name": "", "units": [{"unit_id": unit, "relation": "tenant"}]}, "full_name"),
        ({"full_name": "X", "units": [{"unit_id": world.b.units["1-101"], "relation": "tenant"}]}, "does not exist"),
    ]
    for body, field in cases:
        resp = desk.post(P, json=body)
        assert resp.status_code in (404, 422) and field in resp.json()["error"], (body, resp.text)
