"""The technician's screen on a phone: my tickets in the API's urgency order, then one ticket accepted,
noted, photographed and resolved — all from a 375×667 window, with nothing wider than the screen."""

import hashlib
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.web.conftest import ServedApp
from tests.web.screens import PHONE, TOUCH_PX, jpeg, screen
from tests.workflow.conftest import World

T = "/api/v1/tickets"


def assigned_to_tech1(world: World, title: str, priority: str) -> str:
    """A resident's repair request taken by phone at the desk with `priority`, assigned to tech1."""
    desk = world.as_("desk")
    t = desk.ok(
        "post",
        T,
        {
            "type": "repair",
            "category": "facility",
            "title": title,
            "description": f"{title}, since today.",
            "channel": "phone",
            "complainant_id": world.a.people["resident"],
            "priority": priority,
            "site_id": "estate-a",
        },
    )
    desk.ok("post", f"{T}/{t['number']}/assign", {"assignee_id": world.a.users["tech1"]})
    return t["number"]


def touch_sized(page: Any, testid: str) -> bool:
    box = page.get_by_test_id(testid).bounding_box()
    return box is not None and box["height"] >= TOUCH_PX and box["width"] >= TOUCH_PX


def test_a_technician_resolves_a_ticket_from_a_phone(
    world: World, served: ServedApp, chromium: Any, screens_dir: Path
) -> None:
    low = assigned_to_tech1(world, "Loose handrail in the stairwell", "low")
    urgent = assigned_to_tech1(world, "Water leaking from the ceiling of unit 101", "urgent")
    normal = assigned_to_tech1(world, "Corridor light flickers", "normal")
    order = [t["number"] for t in world.as_("tech1").ok("get", f"{T}?assignee=me&open=true&order=urgency")]
    assert order[0] == urgent and set(order) == {low, urgent, normal}

    with screen(chromium, served.url, world, "tech1", "/tech", phone=True) as s:
        page = s.page
        cards = page.locator("[data-testid=tech-tickets] > li")
        expect(cards).to_have_count(3)
        assert cards.evaluate_all("cards => cards.map(c => c.dataset.number)") == order
        assert s.scroll_width() <= PHONE["width"]
        page.screenshot(path=screens_dir / "tech-list.png", full_page=True)

        page.locator(f"[data-testid=tech-tickets] > li[data-number='{urgent}'] a").click()
        expect(page.get_by_test_id("detail-status")).to_have_text("assigned")
        assert touch_sized(page, "accept")
        page.get_by_test_id("accept").click()
        expect(page.get_by_test_id("detail-status")).to_have_text("in progress")

        # waiting for a part stops the clock; resuming goes on
        page.get_by_test_id("hold-reason").fill("waiting for a seal")
        page.get_by_test_id("hold").click()
        expect(page.get_by_test_id("detail-status")).to_have_text("on hold")
        page.get_by_test_id("resume").click()
        expect(page.get_by_test_id("detail-status")).to_have_text("in progress")

        page.get_by_test_id("note-body").fill("The pipe joint above the ceiling is loose.")
        assert touch_sized(page, "note-add")
        page.get_by_test_id("note-add").click()
        expect(page.get_by_test_id("timeline")).to_contain_text("The pipe joint above the ceiling is loose.")

        # the photo input opens the phone's camera
        photo_input = page.get_by_test_id("photo-input")
        assert photo_input.get_attribute("accept") == "image/*" and photo_input.get_attribute("capture") is not None
        photo = jpeg((30, 160, 60))
        # as a person does: a tap on the input (focused, the screen then leaves the form alone while
        # the live feed brings news), then the file. Files set straight into the input without focus
        # could land in a form the feed's refresh had just replaced ("Take or choose a photo first.")
        with page.expect_file_chooser() as chooser:
            photo_input.click()
        chooser.value.set_files(files=[{"name": "joint.jpg", "mimeType": "image/jpeg", "buffer": photo}])
        page.get_by_test_id("photo-upload").click()
        try:  # the upload and the ticket read again: 15 s, as on a loaded machine it took over 5
            expect(page.locator("[data-testid=photos] img")).to_have_count(1, timeout=15_000)
        except AssertionError as err:
            notices = page.locator(".notice").all_inner_texts()
            raise AssertionError(f"no photo shown; the screen's notices: {notices}") from err

        page.get_by_test_id("work-done").fill("Tightened the joint and replaced its seal.")
        page.get_by_test_id("result").fill("The leak is fixed; the ceiling will dry in a day.")
        page.get_by_test_id("cause-internal").check()
        page.get_by_test_id("cause-code").fill("workmanship")
        assert touch_sized(page, "resolve")
        assert s.scroll_width() <= PHONE["width"]
        page.get_by_test_id("resolve").click()
        expect(page.get_by_test_id("detail-status")).to_have_text("resolved")
        assert s.scroll_width() <= PHONE["width"]
        page.screenshot(path=screens_dir / "tech.png", full_page=True)

        # back on the list, the resolved ticket is gone from my open tickets
        page.get_by_test_id("back").click()
        expect(cards).to_have_count(2)
        assert s.errors == []

    done = world.as_("desk").ok("get", f"{T}/{urgent}")
    assert done["status"] == "resolved" and done["assignee_name"] == "Zhang Wei"
    assert done["work_done"] == "Tightened the joint and replaced its seal."
    assert done["result_note"] == "The leak is fixed; the ceiling will dry in a day."
    assert (done["cause_kind"], done["cause_code"]) == ("internal", "workmanship")
    steps = ("started", "on_hold", "resumed", "work", "resolved")
    assert [(e["kind"], e["actor"]) for e in done["timeline"] if e["kind"] in steps] == [
        (kind, "a.tech1") for kind in steps
    ]
    [attachment] = done["attachments"]
    assert attachment["original_name"] == "joint.jpg" and attachment["visibility"] == "shared"
    stored = world.as_("desk").get(f"/api/v1/attachments/{attachment['id']}")
    assert hashlib.sha256(stored.content).hexdigest() == hashlib.sha256(photo).hexdigest()
