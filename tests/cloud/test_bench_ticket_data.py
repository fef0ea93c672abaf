"""The data bench/ticket_api.py loads agrees with the schema and with what the API does next.

No timings here: the benchmark measures; this keeps its loader in step with the schema (a new NOT NULL
column or a changed seed breaks it here first).
"""

import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from cloud.domain.tickets import next_number
from cloud.security.pii import PiiCipher
from cloud.storage.db import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import ticket_api  # bench/ is a folder of scripts, not a package


def test_loaded_tickets_and_timelines_are_consistent(database_url: str) -> None:
    now = datetime.now(UTC)
    rng = random.Random(5)
    with connect(database_url) as conn:
        places = ticket_api.seed_places(conn, PiiCipher(bytes(32)), 2, now, rng)
        loaded = ticket_api.bulk_load(conn, places, count=400, events=5000, days=60, now=now, rng=rng)
        conn.commit()
        assert loaded == {"tickets": 400, "events": 5000}
        tickets = conn.execute("SELECT * FROM tickets").fetchall()
        events = conn.execute("SELECT * FROM ticket_events ORDER BY ticket_id, at, id").fetchall()

    assert len(tickets) == 400 and len(events) == 5000
    assert {t["site_id"] for t in tickets} == {"estate-a", "estate-b"}
    assert len({t["status"] for t in tickets}) >= 5
    shanghai = ZoneInfo("Asia/Shanghai")
    for t in tickets:
        assert t["number"].startswith(f"T-{t['created_at'].astimezone(shanghai):%Y%m%d}-")
        assert now - timedelta(days=61) <= t["created_at"] <= now
        assert t["complainant_id"] is not None and t["department_id"] is not None
        assert (t["closed_at"] is not None) == (t["status"] == "closed")
        assert (t["resolved_at"] is not None) == (t["status"] in ("resolved", "closed"))
        if t["status"] in ("assigned", "in_progress", "on_hold", "resolved", "closed"):
            assert t["assignee_id"] is not None
        assert t["updated_at"] >= t["created_at"]
    by_ticket: dict[int, list[dict]] = {}
    for e in events:
        by_ticket.setdefault(e["ticket_id"], []).append(e)
    assert set(by_ticket) == {t["id"] for t in tickets}
    for t in tickets:
        timeline = by_ticket[t["id"]]
        assert timeline[0]["kind"] == "created" and timeline[0]["at"] == t["created_at"]
        assert all(t["created_at"] <= e["at"] <= now for e in timeline)

    # the API numbers on from the loaded tickets: today's next number is new
    with connect(database_url) as conn:
        number = next_number(conn, timezone="Asia/Shanghai", now=now)
        conn.rollback()
    assert number not in {t["number"] for t in tickets}
