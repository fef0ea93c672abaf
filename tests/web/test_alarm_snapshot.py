"""GET /api/v1/alarms/{id}/snapshot: the camera's picture of an alarm, for staff of its site; 404 without one."""

import uuid
from datetime import UTC, datetime

from cloud.domain import alarms, attachments
from cloud.storage.db import connect
from contract.common import Severity, TicketKind
from tests.workflow.conftest import World


def test_an_alarms_snapshot_is_served_to_staff_of_its_site(world: World) -> None:
    with connect(world.database_url) as conn:
        conn.execute("INSERT INTO gateways (id, site_id) VALUES ('gw-snap', 'estate-a')")
        raised = [
            alarms.raise_gateway_alarm(
                conn,
                gateway_id="gw-snap",
                site_id="estate-a",
                site_timezone="Asia/Shanghai",
                rule=rule,
                severity=Severity.MAJOR,
                message="silent",
                ticket_kind=TicketKind.NONE,
                raised_at=datetime(2026, 11, 24, 1, 0, tzinfo=UTC),
                now=datetime(2026, 11, 24, 1, 0, tzinfo=UTC),
            ).alarm_id
            for rule in ("with_picture", "without_picture")
        ]
        snapshot = uuid.uuid4()
        conn.execute("UPDATE alarms SET snapshot_id = %s WHERE id = %s", (snapshot, raised[0]))
    path = attachments.path_of(world.settings.attachments_dir, snapshot)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8 a jpeg")

    guard = world.as_("guard")
    listed = {a["id"]: a for a in guard.ok("get", "/api/v1/alarms")}
    assert listed[raised[0]]["snapshot_id"] == str(snapshot) and listed[raised[1]]["snapshot_id"] is None
    resp = guard.get(f"/api/v1/alarms/{raised[0]}/snapshot")
    assert resp.status_code == 200 and resp.content == b"\xff\xd8 a jpeg"
    assert resp.headers["content-type"] == "image/jpeg"
    assert guard.get(f"/api/v1/alarms/{raised[1]}/snapshot").json() == {"error": f"alarm {raised[1]} has no snapshot"}
    assert world.as_("guard", estate="b").get(f"/api/v1/alarms/{raised[0]}/snapshot").status_code == 404
    assert world.as_("resident").get(f"/api/v1/alarms/{raised[0]}/snapshot").status_code == 403
