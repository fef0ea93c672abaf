"""The guard console in a real browser: an alarm published by a gateway over MQTT goes through the real
ingest and database, arrives on the open page by the live feed (the page never polls), and is
acknowledged from the list; the acknowledgement is in the database under the guard's name."""

import base64
import io
import uuid
from datetime import UTC, datetime

from PIL import Image
from playwright.sync_api import expect

from contract import messages
from contract.access import AccessEvent
from contract.common import Location, SiteInfo
from contract.messages import CameraFrame
from tests.cloud.stack import Gateway, running_ingest, settings_for, wait_for
from tests.web.conftest import ServedApp
from tests.workflow.conftest import World


def test_a_guard_sees_a_new_alarm_arrive_live_and_acknowledges_it(
    world: World, served: ServedApp, chromium, screens_dir, mqtt_url: str
) -> None:
    guard_name = world.a.accounts["guard"][0]
    gateway_id = f"gw-web-{uuid.uuid4().hex[:6]}"
    ingest_settings = settings_for(
        world.database_url, mqtt_url, client_id=f"ingest-{gateway_id}", data_dir=world.settings.data_dir
    )
    with running_ingest(ingest_settings):
        gateway = Gateway(mqtt_url, "estate-a", gateway_id, timezone="Asia/Shanghai")
        try:
            gateway.birth([("pump-7", "water-pump", "1")])
            wait_for(lambda: world.sql("SELECT 1 FROM devices WHERE gateway_id = %s", (gateway_id,)))
            gateway.telemetry("pump-7", {"pressure": 3.25})
            frame = io.BytesIO()
            Image.new("RGB", (320, 240), "darkgreen").save(frame, "JPEG")
            jpeg = base64.b64encode(frame.getvalue()).decode()
            gateway.send(CameraFrame(ts=datetime.now(UTC), camera="cam-lobby", jpeg=jpeg))

            page = chromium.new_page(viewport={"width": 1600, "height": 900})
            try:
                page.goto(served.url + "/login")
                page.screenshot(path=screens_dir / "login.png")
                page.fill("input[name=username]", guard_name)
                page.fill("input[name=password]", "community-demo")
                page.click("button[type=submit]")
                page.wait_for_url(served.url + "/guard")
                expect(page.locator("#live-state")).to_have_attribute("data-state", "live")
                expect(page.locator("#board")).to_contain_text("pump-7")
                # the camera's latest frame, loaded (its natural width is the JPEG's)
                camera = page.locator("figure.camera img")
                expect(camera).to_have_count(1)
                page.wait_for_function("() => document.querySelector('figure.camera img').naturalWidth === 320")
                expect(page.locator("li.alarm")).to_have_count(0)

                gateway.alarm("pump-7", "dry_running", "raise", severity="critical", message="Pump 7 runs dry")
                row = page.locator("li.alarm")
                expect(row).to_have_count(1)
                expect(row).to_contain_text("Pump 7 runs dry")
                expect(row).to_have_class("alarm sev-critical state-active")
                expect(page.locator("#alarm-count")).to_have_text("1")
                expect(page.locator("#board")).to_contain_text("pressure 3.25 bar")
                page.screenshot(path=screens_dir / "guard.png")

                row.locator("button.ack").click()
                expect(row).to_contain_text(f"acknowledged by {guard_name}")
                (alarm,) = world.sql(
                    "SELECT state, acknowledged_by FROM alarms WHERE gateway_id = %s AND rule = 'dry_running'",
                    (gateway_id,),
                )
                assert alarm == {"state": "acknowledged", "acknowledged_by": guard_name}
                audit = world.sql("SELECT actor FROM audit_log WHERE action = 'acknowledge' AND entity = 'alarms'")
                assert [a["actor"] for a in audit] == [guard_name]

                # cleared at the device: the row leaves the open list, again without a reload
                gateway.alarm("pump-7", "dry_running", "clear", severity="critical")
                expect(page.locator("li.alarm")).to_have_count(0)

                # a face refused at a door: the decision and the picture it was made on, without a reload
                face = io.BytesIO()
                Image.new("RGB", (160, 120), "navy").save(face, "JPEG")
                gateway.send(
                    AccessEvent(
                        ts=datetime.now(UTC),
                        door="door-east",
                        method="face",
                        granted=False,
                        reason="not_recognised",
                        distance=0.71,
                        snapshot_jpeg=base64.b64encode(face.getvalue()).decode(),
                    )
                )
                decision = page.locator("li.door")
                expect(decision).to_have_count(1)
                expect(decision).to_contain_text("Refused · door-east")
                expect(decision).to_contain_text("not recognised")
                page.wait_for_function("() => document.querySelector('li.door img.thumb').naturalWidth === 160")
                page.screenshot(path=screens_dir / "guard-door-event.png")
            finally:
                page.close()
        finally:
            gateway.close()


def test_a_guard_opens_a_door_only_after_confirming_and_the_command_is_recorded_under_their_name(
    world: World, served: ServedApp, chromium, screens_dir, mqtt_url: str
) -> None:
    guard_name = world.a.accounts["guard"][0]
    gateway_id = f"gw-door-{uuid.uuid4().hex[:6]}"
    with running_ingest(settings_for(world.database_url, mqtt_url, client_id=f"ingest-{gateway_id}")):
        gateway = Gateway(mqtt_url, "estate-a", gateway_id, timezone="Asia/Shanghai")
        try:
            open_door = messages.CommandInfo(name="open_door", description="Unlock briefly", roles=["guard", "admin"])
            gateway.send(
                messages.BirthMessage(
                    ts=datetime.now(UTC),
                    site=SiteInfo(id="estate-a", name="Sunny Gardens", timezone="Asia/Shanghai"),
                    gateway=messages.GatewayInfo(id=gateway_id, name="lobby gateway"),
                    devices=[
                        messages.DeviceInfo(
                            name="door-lobby",
                            profile="door-controller",
                            protocol="modbus",
                            location=Location(building="1", floor="1"),
                            commands=[open_door],
                        )
                    ],
                )
            )
            gateway.send(messages.StatusMessage(ts=datetime.now(UTC), state="online"))
            wait_for(lambda: world.sql("SELECT 1 FROM gateways WHERE id = %s AND status = 'online'", (gateway_id,)))

            page = chromium.new_page(viewport={"width": 1600, "height": 900})
            try:
                page.goto(served.url + "/login")
                page.fill("input[name=username]", guard_name)
                page.fill("input[name=password]", "community-demo")
                page.click("button[type=submit]")
                door = page.locator("li.device", has_text="door-lobby")
                expect(door.locator(".dot")).to_be_visible()
                # cancelled: nothing is sent
                door.locator("button.open").click()
                dialog = page.locator("#open-door-dialog")
                expect(dialog).to_be_visible()
                expect(dialog).to_contain_text("door-lobby")
                page.screenshot(path=screens_dir / "guard-open-door.png")
                dialog.locator("button[value=cancel]").click()
                expect(dialog).to_be_hidden()
                assert world.sql("SELECT 1 FROM commands WHERE gateway_id = %s", (gateway_id,)) == []
                # confirmed: the command is stored under the guard's name, audited, and its state shown
                door.locator("button.open").click()
                page.locator("[data-testid=open-door-confirm]").click()
                expect(door.locator(".cmd-state")).to_have_text("pending")
                (command,) = world.sql(
                    "SELECT command, requested_by FROM commands WHERE gateway_id = %s", (gateway_id,)
                )
                assert command == {"command": "open_door", "requested_by": guard_name}
                audit = world.sql("SELECT actor FROM audit_log WHERE action = 'send_command'")
                assert [a["actor"] for a in audit] == [guard_name]
            finally:
                page.close()
        finally:
            gateway.close()
