"""Hostile input is answered with a 4xx and a reason, never a 500, and never changes what it should not."""

import io

from PIL import Image

from tests.workflow.conftest import World

T = "/api/v1/tickets"


def png(width: int = 8, height: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def test_oversized_and_mistyped_fields(world: World) -> None:
    resident = world.as_("resident")
    cases = [
        ({"category": "facility", "title": "x" * 201}, "title"),
        ({"category": "facility", "title": "ok", "description": "x" * 5001}, "description"),
        ({"category": "plumbing", "title": "ok"}, "category"),
        ({"category": "facility", "title": 42}, "title"),
        ({"category": "facility", "title": "ok", "unit_id": "one"}, "unit_id"),
        ({"category": "facility", "title": "ok", "subcategory": "Not A Slug!"}, "subcategory"),
        ({"category": "facility", "title": "ok", "channel": "phone"}, "channel"),
        ({"category": "facility", "title": "ok", "priority": "urgent"}, "priority"),
        ({"category": "facility", "title": "ok", "unit_id": world.b.units["1-101"]}, "does not exist"),
        ({"category": "facility", "title": "ok", "unit_id": world.a.units["1-102"]}, "does not exist"),  # a neighbour's
        ([1, 2, 3], "(document)" if False else "body"),
    ]
    for body, field in cases:
        resp = resident.post(T, json=body)
        assert 400 <= resp.status_code < 500, (body, resp.status_code, resp.text)
        assert field in resp.json()["error"], (body, resp.json())
    raw = world.client.post(T, content=b"{not json", headers={**resident.headers, "Content-Type": "application/json"})
    assert raw.status_code == 422
    assert world.sql("SELECT count(*) AS n FROM tickets")[0]["n"] == 0


def test_sql_fragments_are_stored_as_text(world: World) -> None:
    resident = world.as_("resident")
    nasty = "'; DROP TABLE tickets; --"
    t = resident.ok("post", T, {"category": "other", "title": nasty, "description": "1 OR 1=1"})
    assert t["title"] == nasty
    assert world.as_("desk").ok("get", f"/api/v1/people?name={nasty}") == []
    assert world.as_("desk").ok("get", T)[0]["title"] == nasty
    assert world.sql("SELECT count(*) AS n FROM tickets")[0]["n"] == 1
    assert world.as_("desk").get(f"{T}/T-1' OR '1'='1").status_code == 422


def test_uploads_are_checked_by_content_and_stored_under_our_own_name(world: World) -> None:
    resident = world.as_("resident")
    number = resident.ok("post", T, {"category": "facility", "title": "Cracked tile"})["number"]
    url = f"{T}/{number}/attachments"

    def upload(name: str, data: bytes, content_type: str = "image/png"):
        return world.client.post(url, files={"file": (name, data, content_type)}, headers=resident.headers)

    ok = upload("../../../etc/passwd.png", png())
    assert ok.status_code == 201, ok.text
    stored = ok.json()
    assert stored["original_name"] == "passwd.png" and stored["content_type"] == "image/png"
    on_disk = list((world.settings.attachments_dir).iterdir())
    assert [p.name for p in on_disk] == [stored["id"]]  # our name, inside our folder
    # refused: not an image whatever it claims, a broken image, too big, empty
    for name, data, reason in [
        ("photo.png", b"#!/bin/sh\nrm -rf /\n", "not a JPEG"),
        ("photo.jpg", b"\xff\xd8\xff\xe0" + b"garbage" * 10, "cannot be read"),
        ("huge.png", b"\x89PNG\r\n\x1a\n" + b"0" * (world.settings.attachment_max_bytes + 1), "larger than"),
        ("empty.png", b"", "empty"),
    ]:
        resp = upload(name, data)
        assert resp.status_code == 422 and reason in resp.json()["error"], (name, resp.text)
    assert len(list(world.settings.attachments_dir.iterdir())) == 1

    # download: the same bytes, as an attachment, for those who reach the ticket
    got = world.client.get(f"/api/v1/attachments/{stored['id']}", headers=resident.headers)
    assert got.status_code == 200 and got.content == png()
    assert got.headers["x-content-type-options"] == "nosniff" and got.headers["content-disposition"].startswith(
        "attachment"
    )
    other = world.as_("resident2")
    assert world.client.get(f"/api/v1/attachments/{stored['id']}", headers=other.headers).status_code == 404
    # an internal photo (staff only) stays hidden from the resident
    tech = world.as_("tech1")
    internal = world.client.post(
        url, files={"file": ("meter.png", png(), "image/png")}, data={"visibility": "internal"}, headers=tech.headers
    )
    assert internal.status_code == 201
    assert world.client.get(f"/api/v1/attachments/{internal.json()['id']}", headers=resident.headers).status_code == 404
    assert len(resident.ok("get", f"{T}/{number}")["attachments"]) == 1
    assert len(tech.ok("get", f"{T}/{number}")["attachments"]) == 2


def test_a_decompression_bomb_is_refused(world: World) -> None:
    resident = world.as_("resident")
    number = resident.ok("post", T, {"category": "facility", "title": "Bomb"})["number"]
    buf = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(buf, format="PNG")  # 144 MP, a few kB compressed
    resp = world.client.post(
        f"{T}/{number}/attachments", files={"file": ("b.png", buf.getvalue(), "image/png")}, headers=resident.headers
    )
    assert resp.status_code == 422 and "cannot be read" in resp.json()["error"]
