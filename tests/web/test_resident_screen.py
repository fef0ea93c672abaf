"""The resident's screen: a complaint filed with a photo (the classifier's guess shown while typing,
the category left to it), followed live through the staff's steps, and rated; a visitor pass whose
QR code, drawn in the browser, decodes to the token whose hash the cloud keeps."""

import hashlib
import re
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from playwright.sync_api import expect

from cloud.storage.db import connect
from contract.access import hash_secret
from tests.web.conftest import ServedApp
from tests.web.screens import PHONE, jpeg, screen
from tests.workflow.conftest import World

T = "/api/v1/tickets"
TITLE = "Water dripping from the bathroom ceiling"
DESCRIPTION = "Since this morning water drips from the ceiling of my bathroom; the pipe above seems to leak."


def test_a_resident_files_a_complaint_with_a_photo_and_rates_its_resolution(
    world: World, served: ServedApp, chromium: Any, screens_dir: Path
) -> None:
    with screen(chromium, served.url, world, "resident", "/resident", phone=True) as s:
        page = s.page
        page.get_by_test_id("tab-report").click()
        page.check("input[name=type][value=complaint]")
        page.get_by_test_id("report-title").fill(TITLE)
        page.get_by_test_id("report-description").fill(DESCRIPTION)
        # the guess shown is the classifier's for the same text (the first use trains the model)
        guess = page.locator("[data-testid=suggestion] strong")
        expect(guess).to_have_count(1, timeout=120_000)
        expected = world.as_("resident").ok("post", "/api/v1/classifier/suggest", {"text": f"{TITLE}\n{DESCRIPTION}"})
        assert (guess.get_attribute("data-category"), guess.get_attribute("data-subcategory")) == (
            expected["category"],
            expected["subcategory"],
        )
        assert page.get_by_test_id("report-category").input_value() == ""  # left to the classifier

        photo = jpeg((180, 60, 40))
        page.get_by_test_id("report-photos").set_input_files(
            files=[{"name": "ceiling.jpg", "mimeType": "image/jpeg", "buffer": photo}]
        )
        page.get_by_test_id("report-send").click()
        page.wait_for_url(re.compile(r".*#ticket/T-\d{8}-\d{4,}$"))
        number = page.url.rsplit("/", 1)[1]
        expect(page.locator("[data-testid=photos] img")).to_have_count(1)
        assert s.scroll_width() <= PHONE["width"]

        filed = world.as_("desk").ok("get", f"{T}/{number}")
        assert (filed["type"], filed["title"], filed["channel"]) == ("complaint", TITLE, "web")
        assert filed["complainant_name"] == "Sun Mei"
        # sure enough of this text, the classifier labelled the ticket as it had guessed (and it was routed)
        assert expected["above_threshold"] and filed["status"] == "assigned"
        assert (filed["category"], filed["subcategory"]) == (expected["category"], expected["subcategory"])
        [attachment] = filed["attachments"]
        stored = world.as_("desk").get(f"/api/v1/attachments/{attachment['id']}")
        assert hashlib.sha256(stored.content).hexdigest() == hashlib.sha256(photo).hexdigest()

        # the staff's steps go through the API; the open page follows them on the live feed
        desk, tech = world.as_("desk"), world.as_("tech1")
        desk.ok("post", f"{T}/{number}/assign", {"assignee_id": world.a.users["tech1"]})
        tech.ok("post", f"{T}/{number}/start")
        tech.ok(
            "post",
            f"{T}/{number}/resolve",
            {
                "work_done": "Replaced the leaking pipe joint above the bathroom.",
                "result": "The pipe above your bathroom is repaired.",
                "cause_kind": "internal",
                "cause_code": "workmanship",
            },
        )
        expect(page.get_by_test_id("ticket-status")).to_have_text("resolved", timeout=30_000)
        expect(page.get_by_test_id("resident-detail")).to_contain_text("The pipe above your bathroom is repaired.")

        page.get_by_test_id("star-4").check(force=True)  # the radio is hidden behind its star
        page.get_by_test_id("rate-comment").fill("Quick and tidy.")
        page.get_by_test_id("rate").click()
        expect(page.get_by_test_id("ticket-status")).to_have_text("closed")
        assert s.scroll_width() <= PHONE["width"]
        page.screenshot(path=screens_dir / "resident.png", full_page=True)

        page.goto("/resident#requests")
        expect(page.locator(f"[data-testid=resident-tickets] > li[data-number='{number}']")).to_have_attribute(
            "data-status", "closed"
        )
        assert s.errors == []

    rated = world.as_("desk").ok("get", f"{T}/{number}")
    assert (rated["status"], rated["rating"], rated["rating_comment"]) == ("closed", 4, "Quick and tidy.")


def decode_qr(png: bytes) -> str:
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    text, _points, _ = cv2.QRCodeDetectorAruco().detectAndDecode(image)
    return text


def test_a_resident_makes_a_visitor_pass_and_its_qr_code_decodes_to_the_kept_token(
    world: World, served: ServedApp, chromium: Any, screens_dir: Path
) -> None:
    admin = world.as_("admin")
    admin.ok("post", "/api/v1/gateways", {"id": "gw-doors", "site": "estate-a"})
    admin.ok(
        "put",
        "/api/v1/gateways/gw-doors/config",
        {"access": {"doors": [{"name": "b1-main", "location": {"building": "1"}}]}, "devices": []},
    )
    with screen(chromium, served.url, world, "resident", "/resident", phone=True) as s:
        page = s.page
        page.get_by_test_id("tab-passes").click()
        page.get_by_test_id("pass-guest").fill("Ma Lin")
        # the window starts at the server's now (the test's clock), in the browser's wall time
        start = world.clock.now()
        local = page.evaluate(
            """([a, b]) => [a, b].map((iso) => {
                 const d = new Date(iso);
                 d.setMinutes(d.getMinutes() - d.getTimezoneOffset());
                 return d.toISOString().slice(0, 16);
               })""",
            [start.isoformat(), (start + timedelta(hours=6)).isoformat()],
        )
        page.get_by_test_id("pass-from").fill(local[0])
        page.get_by_test_id("pass-until").fill(local[1])
        page.get_by_test_id("pass-create").click()
        dialog = page.get_by_test_id("pass-dialog")
        expect(dialog).to_be_visible()
        pin = page.get_by_test_id("pass-pin").inner_text()
        qr_png = page.get_by_test_id("pass-qr").screenshot()
        page.screenshot(path=screens_dir / "resident-pass.png", full_page=True)

        [kept] = world.sql("SELECT * FROM visitor_passes")
        assert kept["guest_name"] == "Ma Lin" and kept["host_person_id"] == world.a.people["resident"]
        assert re.fullmatch(r"\d{6}", pin) and hash_secret(kept["salt"], pin) == kept["pin_hash"]
        token = decode_qr(qr_png)
        assert token and hash_secret(kept["salt"], token) == kept["qr_hash"]

        # shown once: closing the dialog forgets them, and the list shows the pass without them
        page.get_by_test_id("pass-done").click()
        expect(dialog).to_be_hidden()
        # the dialog's "close" event, which clears them, comes as a task after it is hidden: wait for it
        expect(page.get_by_test_id("pass-pin")).to_have_text("")
        expect(page.locator("[data-testid=passes] > li")).to_have_count(1)
        expect(page.get_by_test_id("passes")).to_contain_text("Ma Lin")
        assert pin not in page.content() and token not in page.content()

        # door entries: my own, and my guest's by the pass; not my neighbour's
        a = world.a
        entries = [
            (start + timedelta(minutes=5), "card", True, None, a.people["resident"], None, None),
            (start + timedelta(minutes=9), "pin", False, "expired", None, kept["id"], a.people["resident"]),
            (start + timedelta(minutes=7), "card", True, None, a.people["resident2"], None, None),
        ]
        with connect(world.database_url) as conn:
            for at, method, granted, reason, person, pass_id, host in entries:
                conn.execute(
                    """INSERT INTO access_events (id, at, received_at, site_id, gateway_id, door, method, granted,
                                                  reason, person_id, pass_id, host_person_id, offline)
                       VALUES (%s, %s, %s, 'estate-a', 'gw-doors', 'b1-main', %s, %s, %s, %s, %s, %s, false)""",
                    (uuid.uuid4(), at, at, method, granted, reason, person, pass_id, host),
                )
            conn.commit()
        mine = world.as_("resident").ok("get", "/api/v1/access-events")
        assert len(mine) == 2
        page.get_by_test_id("tab-entries").click()
        rows = page.locator("[data-testid=entries] > li")
        expect(rows).to_have_count(2)
        assert rows.evaluate_all("rows => rows.map(r => [r.dataset.id, r.dataset.granted])") == [
            [e["id"], str(e["granted"]).lower()] for e in mine
        ]
        expect(rows.nth(0)).to_contain_text("your guest's pass")
        expect(rows.nth(0)).to_contain_text("expired")
        assert s.scroll_width() <= PHONE["width"]
        page.screenshot(path=screens_dir / "resident-entries.png", full_page=True)
        assert s.errors == []


def test_a_resident_rejects_a_fix_and_the_ticket_reopens(world: World, served: ServedApp, chromium: Any) -> None:
    resident, tech = world.as_("resident"), world.as_("tech1")
    t = resident.ok(
        "post", T, {"type": "repair", "category": "facility", "title": "Kitchen tap drips", "description": "Drips."}
    )
    number = t["number"]
    world.as_("desk").ok("post", f"{T}/{number}/assign", {"assignee_id": world.a.users["tech1"]})
    tech.ok("post", f"{T}/{number}/start")
    tech.ok(
        "post",
        f"{T}/{number}/resolve",
        {"work_done": "New washer.", "result": "The tap is fixed.", "cause_kind": "internal", "cause_code": "wear"},
    )
    with screen(chromium, served.url, world, "resident", "/resident", phone=True) as s:
        page = s.page
        page.locator(f"[data-testid=resident-tickets] > li[data-number='{number}'] a").click()
        expect(page.get_by_test_id("ticket-status")).to_have_text("resolved")
        page.get_by_test_id("reject-reason").fill("It still drips at night.")
        page.get_by_test_id("reject").click()
        expect(page.get_by_test_id("ticket-status")).to_have_text("reopened")
        expect(page.get_by_test_id("rate-form")).to_have_count(0)
        assert s.errors == []
    reopened = world.as_("desk").ok("get", f"{T}/{number}")
    assert (reopened["status"], reopened["reopen_count"]) == ("reopened", 1)
    assert any(e["kind"] == "reopened" and "It still drips at night." in e["body"] for e in reopened["timeline"])
