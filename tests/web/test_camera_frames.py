"""Camera frames reach the guard console: a gateway publishes a frame over MQTT, the real ingest keeps the
latest of each camera, the API lists and serves it to the guards of its site and to no one else."""

import base64
import io
import uuid
from datetime import UTC, datetime

from PIL import Image

from contract.messages import CameraFrame
from tests.cloud.stack import Gateway, running_ingest, settings_for, wait_for
from tests.workflow.conftest import World


def jpeg(colour: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(out, "JPEG")
    return out.getvalue()


def test_the_latest_frame_of_each_camera_is_kept_and_served_within_reach(world: World, mqtt_url: str) -> None:
    gateway_id = f"gw-cam-{uuid.uuid4().hex[:6]}"
    settings = settings_for(
        world.database_url, mqtt_url, client_id=f"ingest-{gateway_id}", data_dir=world.settings.data_dir
    )
    guard_a, guard_b = world.as_("guard"), world.as_("guard", estate="b")
    with running_ingest(settings) as ingest:
        gateway = Gateway(mqtt_url, "estate-a", gateway_id, timezone="Asia/Shanghai")
        try:
            gateway.birth([("pump-1", "water-pump", "1")])
            wait_for(lambda: world.sql("SELECT 1 FROM gateways WHERE id = %s", (gateway_id,)))
            taken = datetime(2026, 11, 27, 8, 0, 1, tzinfo=UTC)
            gateway.send(CameraFrame(ts=taken, camera="cam-gate", jpeg=base64.b64encode(jpeg("red")).decode()))
            wait_for(lambda: guard_a.ok("get", "/api/v1/cameras"))
            (listed,) = guard_a.ok("get", "/api/v1/cameras")
            assert listed["gateway_id"] == gateway_id and listed["camera"] == "cam-gate"
            assert listed["site_id"] == "estate-a" and listed["taken_at"] == "2026-11-27T08:00:01Z"
            first = guard_a.get(f"/api/v1/cameras/{gateway_id}/cam-gate/frame")
            assert first.status_code == 200 and first.content == jpeg("red")
            assert first.headers["content-type"] == "image/jpeg" and first.headers["cache-control"] == "no-store"
            # the next frame replaces it
            gateway.send(CameraFrame(ts=taken, camera="cam-gate", jpeg=base64.b64encode(jpeg("blue")).decode()))
            wait_for(lambda: guard_a.get(f"/api/v1/cameras/{gateway_id}/cam-gate/frame").content == jpeg("blue"))
            # something that is not a JPEG is dropped, and the last good frame stays
            refused = ingest.frames.refused
            gateway.send(CameraFrame(ts=taken, camera="cam-gate", jpeg=base64.b64encode(b"not a jpeg").decode()))
            wait_for(lambda: ingest.frames.refused > refused)
            assert guard_a.get(f"/api/v1/cameras/{gateway_id}/cam-gate/frame").content == jpeg("blue")
            # another estate's guard sees nothing of it; a technician may not look at cameras
            assert guard_b.ok("get", "/api/v1/cameras") == []
            assert guard_b.get(f"/api/v1/cameras/{gateway_id}/cam-gate/frame").status_code == 404
            assert world.as_("tech1").get("/api/v1/cameras").status_code == 403
            assert guard_a.get(f"/api/v1/cameras/{gateway_id}/..%2F..%2Fsecrets/frame").status_code == 404
        finally:
            gateway.close()
