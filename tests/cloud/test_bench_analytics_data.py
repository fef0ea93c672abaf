"""The data bench/analytics.py generates agrees with the schema, with the workflow's rules and with
itself (KPI timestamps in order, alarms and their tickets linked both ways, re-complaints by the
workflow's rule), and the same seed gives the same data.

No timings here: the benchmark measures; this keeps its generator in step with the schema.
"""

import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cloud.security.pii import PiiCipher
from cloud.storage.db import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import analytics as bench  # bench/ is a folder of scripts, not a package

NOW = datetime(2026, 11, 24, 6, 30, tzinfo=UTC)


def test_generated_tickets_alarms_and_timelines_are_consistent(database_url: str) -> None:
    with connect(database_url) as conn:
        sites = bench.seed_sites(conn, PiiCipher(bytes(32)), NOW, random.Random(1))
        gen = bench.Generator(conn, sites, now=NOW, days=120, seed=3)
        gen.make_alarms(300, bench.ALARM_TICKET_SHARE)
        gen.make_tickets(1500)
        loaded = bench.load(conn, gen, events=16_000, seed=3)
        conn.commit()
        tickets = conn.execute("SELECT * FROM tickets").fetchall()
        alarms = conn.execute("SELECT * FROM alarms").fetchall()
        events = conn.execute("SELECT ticket_id, at, kind FROM ticket_events").fetchall()
        earlier = {
            r["id"]: r
            for r in conn.execute(
                "SELECT t.id, e.unit_id, e.device_id, e.resolved_at, coalesce(e.subcategory, e.category) AS matter "
                "FROM tickets t JOIN tickets e ON e.id = t.recomplaint_of"
            ).fetchall()
        }

    assert loaded["tickets"] == len(tickets) == 1500
    assert loaded["events"] == len(events) == 16_000
    assert loaded["alarms"] == len(alarms) and 200 <= len(alarms) <= 300
    assert {t["site_id"] for t in tickets} == {"estate-a", "estate-b", "estate-c"}
    assert len({t["status"] for t in tickets}) >= 5 and len({t["channel"] for t in tickets}) == 5
    for t in tickets:
        assert NOW - timedelta(days=121) <= t["created_at"] <= NOW
        # the KPI timestamps in their order, none after the data's end
        if t["first_response_at"] is not None:
            assert t["created_at"] <= t["first_response_at"] <= NOW
        if t["resolved_at"] is not None:
            assert t["first_response_at"] is not None and t["first_response_at"] < t["resolved_at"] <= NOW
            assert t["status"] in ("resolved", "closed")
        assert (t["closed_at"] is not None) == (t["status"] == "closed")
        assert (t["cancelled_at"] is not None) == (t["status"] == "cancelled")
        assert (t["rating"] is not None) == (t["rated_at"] is not None)
        if t["response_breached_at"] is not None:
            assert t["response_due_at"] < t["response_breached_at"] and t["escalation_level"] >= 1
        if t["channel"] == "device":
            assert t["alarm_id"] is not None and t["device_id"] is not None and t["source_type"] == "device"
        if t["recomplaint_of"] is not None:  # cloud.domain.workflow.find_earlier's rule
            e = earlier[t["id"]]
            same_place = (t["unit_id"] is not None and e["unit_id"] == t["unit_id"]) or (
                t["device_id"] is not None and e["device_id"] == t["device_id"]
            )
            assert same_place and e["matter"] == (t["subcategory"] or t["category"])
            assert t["created_at"] - timedelta(days=30) <= e["resolved_at"] < t["created_at"]
    by_id = {t["id"]: t for t in tickets}
    opened = {t["alarm_id"] for t in tickets if t["alarm_id"] is not None}
    for a in alarms:
        assert a["alarm_key"] == f"device:{a['device_id']}:{a['rule']}"
        if a["id"] in opened:  # the alarm that opened a ticket points at it
            assert by_id[a["ticket_id"]]["alarm_id"] == a["id"]
            assert a["raised_at"] < by_id[a["ticket_id"]]["created_at"]
        if a["ticket_id"] is not None:
            assert a["ticket_type"] in ("repair", "safety")
        assert (a["cleared_at"] is None) == (a["state"] != "cleared")
    first = {}
    for e in events:
        t = by_id[e["ticket_id"]]
        assert t["created_at"] <= e["at"] <= NOW
        if e["kind"] == "created":
            first[e["ticket_id"]] = e["at"]
    assert first == {t["id"]: t["created_at"] for t in tickets}


def test_the_same_seed_gives_the_same_tickets(database_url: str) -> None:
    def draw(conn: object, sites: list) -> list[tuple]:
        gen = bench.Generator(conn, sites, now=NOW, days=60, seed=9)  # type: ignore[arg-type]
        gen.make_alarms(100, bench.ALARM_TICKET_SHARE)
        gen.make_tickets(300)
        return [tuple(t[c] for c in bench.TICKET_COLUMNS if c not in ("number", "alarm_id")) for t in gen.tickets]

    with connect(database_url) as conn:
        sites = bench.seed_sites(conn, PiiCipher(bytes(32)), NOW, random.Random(1))
        assert draw(conn, sites) == draw(conn, sites)
        conn.rollback()
