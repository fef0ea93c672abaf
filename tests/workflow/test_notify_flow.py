"""Who is told what, through every channel: in-app, e-mail through a real SMTP server, SMS to the log."""

import json

from cloud.api.background import Background
from cloud.domain import patrol
from tests.workflow.conftest import World
from tests.workflow.test_notifications import Mailbox, start_smtp

T = "/api/v1/tickets"


def test_the_complainant_assignee_and_manager_are_told_by_mail_sms_and_in_app(world: World) -> None:
    mailbox = Mailbox()
    controller = start_smtp(mailbox)
    try:
        settings = world.settings.model_copy(
            update={"smtp_host": "127.0.0.1", "smtp_port": controller.port, "smtp_from": "desk@estate-a.example"}
        )
        background = Background(world.app.state.pool, settings, world.clock, world.cipher)
        resident, tech = world.as_("resident"), world.as_("tech1")
        t = resident.ok("post", T, {"category": "facility", "subcategory": "plumbing", "title": "Leaking pipe"})
        number = t["number"]
        tech.ok("post", f"{T}/{number}/start")
        background.tick()

        resident_mail = mailbox.to("a.resident@estate-a.example")
        subjects = [m["Subject"] for m in resident_mail]
        assert f"{number}: assigned" in subjects and f"{number}: in progress" in subjects
        assert "Zhang Wei will take care of it." in resident_mail[0].get_content()
        assert [m["Subject"] for m in mailbox.to("a.tech1@estate-a.example")] == [f"{number}: assigned to you"]
        assert f"{number}: new ticket for your department" in [
            m["Subject"] for m in mailbox.to("a.manager@estate-a.example")
        ]
        sms = [json.loads(line) for line in (settings.data_dir / "sms.log").read_text().splitlines()]
        assert {"+8613911110001", "+8613800000003"} <= {m["to"] for m in sms}

        inbox = resident.ok("get", "/api/v1/notifications")
        assert [n["title"] for n in inbox][:2] == [f"{number}: in progress", f"{number}: assigned"]
        assert resident.ok("get", "/api/v1/notifications/unread")["unread"] == 2
        resident.ok("post", f"/api/v1/notifications/{inbox[0]['id']}/read")
        assert resident.ok("get", "/api/v1/notifications/unread")["unread"] == 1
        # someone else's message is not there to mark
        assert world.as_("resident2").post(f"/api/v1/notifications/{inbox[1]['id']}/read").status_code == 404

        # each copy went out once: a second pass sends nothing new
        before = len(mailbox.messages)
        background.tick()
        assert len(mailbox.messages) == before
    finally:
        controller.stop()


def test_a_pass_that_fails_does_not_hold_up_the_deliveries(world: World, monkeypatch, caplog) -> None:
    """Each time-driven job fails on its own: a patrol pass that keeps failing leaves the messages
    going out (they went out in the same pass before, and stopped with it)."""

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a patrol row the pass cannot read")

    monkeypatch.setattr(patrol, "run_pass", broken)
    background = Background(world.app.state.pool, world.settings, world.clock, world.cipher)
    world.as_("resident").ok("post", T, {"category": "facility", "subcategory": "plumbing", "title": "Leaking pipe"})
    pending = "SELECT count(*) AS n FROM notification_deliveries WHERE channel = 'sms' AND status = 'pending'"
    assert world.sql(pending)[0]["n"] > 0
    background.tick()
    assert world.sql(pending)[0]["n"] == 0
    assert "the patrol pass failed" in caplog.text
