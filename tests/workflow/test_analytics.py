"""The analytics endpoints against a fixture whose every figure was worked out by hand.

The tickets are written straight into the database with exact timestamps (Asia/Shanghai, UTC+8, no
daylight saving): what is tested is the counting, not the workflow that would produce the rows.
Every expected number below is a literal with its arithmetic beside it; none is computed by code.

The fixture, estate A, range 2026-10-31 .. 2026-11-09 (local days), the clock at 2026-11-24 09:00 local.
Offsets are seconds after the ticket's creation: fr = first response, res = resolved_at,
rd / sd = response / resolution deadline.

  T1  11-02 10:00 complaint facility app     closed      B1 unit 101  Engineering tech1  fr 600  res 4200  rd 7200
      sd 86400, rating 5, internal/pipe_leak
  T2  11-02 14:00 complaint facility app     closed      building text "1" only (no building_id), device lift,
      "Lift 1", Engineering tech1, fr 1200 res 8400 rd 900 sd 14400, rating 3, external/supplier
  T3  11-03 09:00 complaint environment phone reopened B2 unit 201  Environment env1  fr 300  res - (was resolved,
      rejected: resolved_at cleared, reopen_count 1) rd 3600 sd 7200, internal/cleaning kept on the row
  T4  11-04 16:00 complaint service web      cancelled at +100, no place, Customer service, rd 3600 sd 86400
  T5  11-05 11:00 complaint other walk_in    redirected  B1 unit 101  Customer service  fr 60  rd 3600 sd 86400
  T6  11-05 08:00 repair facility app        on_hold since +1800, B2 unit 201, Engineering tech2, fr 900,
      rd 1800 sd 3600, a re-complaint of T1
  T7  11-07 20:00 complaint facility app     closed      B1 "Lift 1" device lift  Engineering tech1  fr 3000 res 8000
      rd 3600 sd 7200, rating 4, reopened once before, a re-complaint of T2, internal/pipe_leak
  T8  11-08 23:30 complaint facility app     new         B1 unit 102, no department, no assignee, rd 1800 sd 86400
  T9  11-09 00:10 complaint safety app       resolved    B2 "Gate" Security tech2  fr 120  res 600  rd 900 sd 14400,
      no cause recorded
  T10 10-31 23:50 complaint environment app  closed      B2 unit 201  Environment env1  fr 1500 res 4000 rd 3600
      sd 7200, rating 1, external/weather
  T11 11-01 00:20 repair facility device     closed      Plant room (building_id set) pump, alarm A1 raised 30 s
      before, rule dry_run, Engineering tech2, fr 600 res 4000 rd 1800 sd 14400, internal/pump_fault
  T12 11-09 10:00 repair facility device     assigned    "PR" text only, pump, alarm A2 raised 10 s before, dry_run,
      Engineering tech2, no response, rd 1800, sd 30 days (2026-12-09, after the clock)
  out of the count: T13 10-30 23:59:59 and T14 11-10 00:00:00 (estate A, just outside), T15 11-03 at estate B.
  Alarms besides A1, A2: A3 pump 11-05 03:00, A4 lift 11-03 12:00 (no tickets), A5 lift 11-10 00:00 (outside).

T8 (23:30 on the 8th) and T9 (00:10 on the 9th) are both on the 8th in UTC (15:30, 16:10); T11 (00:20 on
1 November) is 31 October in UTC; T10 (23:50 on 31 October) is 15:50 UTC the same day.
"""

import csv
import io
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from cloud.storage.db import connect
from tests.workflow.conftest import World

SHANGHAI = ZoneInfo("Asia/Shanghai")
RANGE = "site=estate-a&from=2026-10-31&to=2026-11-09"


def local(month: int, day: int, hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=SHANGHAI)


def row(group: str, **figures: Any) -> dict[str, Any]:
    """An expected /kpis row: the figures given, the rest as an empty group has them (0 or null)."""
    empty: dict[str, Any] = {
        "group": group,
        "tickets": 0,
        "cancelled": 0,
        "redirected": 0,
        "responded": 0,
        "response_mean_s": None,
        "response_p50_s": None,
        "response_p90_s": None,
        "resolved": 0,
        "handling_mean_s": None,
        "handling_p50_s": None,
        "handling_p90_s": None,
        "resolution_rate": None,
        "sla_response_due": 0,
        "sla_response_met": 0,
        "sla_response_rate": None,
        "sla_resolution_due": 0,
        "sla_resolution_met": 0,
        "sla_resolution_rate": None,
        "rated": 0,
        "satisfaction_mean": None,
        "rating_1": 0,
        "rating_2": 0,
        "rating_3": 0,
        "rating_4": 0,
        "rating_5": 0,
        "recomplaints": 0,
        "recomplaint_rate": None,
        "reopened": 0,
        "reopen_rate": None,
    }
    unknown = set(figures) - set(empty)
    assert not unknown, unknown
    return {**empty, **figures}


def _ticket(conn: Any, number: str, created: datetime, **cols: Any) -> int:
    """Insert one ticket; offsets (fr, res, rd, sd, cancelled, hold) are seconds after `created`."""
    at = {
        "first_response_at": cols.pop("fr", None),
        "resolved_at": cols.pop("res", None),
        "response_due_at": cols.pop("rd", None),
        "resolution_due_at": cols.pop("sd", None),
        "cancelled_at": cols.pop("cancelled", None),
        "on_hold_since": cols.pop("hold", None),
    }
    values = {
        "number": number,
        "type": "complaint",
        "channel": "app",
        "priority": "normal",
        "title": number,
        "site_id": "estate-a",
        "created_at": created,
        "updated_at": created,
        **{k: created + timedelta(seconds=v) for k, v in at.items() if v is not None},
        **cols,
    }
    names = ", ".join(values)
    marks = ", ".join(f"%({k})s" for k in values)
    return conn.execute(f"INSERT INTO tickets ({names}) VALUES ({marks}) RETURNING id", values).fetchone()["id"]


def _alarm(conn: Any, device_id: int, raised: datetime, rule: str = "dry_run", site: str = "estate-a") -> int:
    return conn.execute(
        """INSERT INTO alarms (source_type, site_id, gateway_id, device_id, rule, alarm_key, severity, state,
                               raised_at, received_at, cleared_at)
           VALUES ('device', %s, 'gw-an', %s, %s, %s, 'major', 'cleared', %s, %s, %s) RETURNING id""",
        (site, device_id, rule, f"device:{device_id}:{rule}", raised, raised, raised + timedelta(minutes=1)),
    ).fetchone()["id"]


@pytest.fixture
def data(world: World) -> dict[str, int]:
    a = world.a
    with connect(world.database_url) as conn:
        dept = {r["name"]: r["id"] for r in conn.execute("SELECT id, name FROM departments").fetchall()}
        conn.execute("INSERT INTO gateways (id, site_id, name) VALUES ('gw-an', 'estate-a', 'Analytics gateway')")
        pump, lift = (
            conn.execute(
                "INSERT INTO devices (gateway_id, name, building, floor, room) VALUES ('gw-an', %s, %s, %s, %s) "
                "RETURNING id",
                place,
            ).fetchone()["id"]
            for place in (("Booster pump", "PR", "B1", "Pump room"), ("Lift 1", "1", "1", "Lift 1"))
        )
        b1, b2, pr = a.buildings["1"], a.buildings["2"], a.buildings["PR"]
        tech1, tech2, env1 = a.users["tech1"], a.users["tech2"], a.users["env1"]
        u101, u102, u201 = a.units["1-101"], a.units["1-102"], a.units["2-201"]
        eng, env, cs, sec = dept["Engineering"], dept["Environment"], dept["Customer service"], dept["Security"]
        facility = {"category": "facility"}
        t1 = _ticket(conn, "T1", local(11, 2, 10, 0), **facility, building_id=b1, building="1", floor="1",
                     unit_id=u101, department_id=eng, assignee_id=tech1, fr=600, res=4200, rd=7200, sd=86400,
                     status="closed", rating=5, cause_kind="internal", cause_code="pipe_leak")  # fmt: skip
        t2 = _ticket(conn, "T2", local(11, 2, 14, 0), **facility, building="1", floor="1", location="Lift 1",
                     device_id=lift, department_id=eng, assignee_id=tech1, fr=1200, res=8400, rd=900, sd=14400,
                     status="closed", rating=3, cause_kind="external", cause_code="supplier")  # fmt: skip
        _ticket(conn, "T3", local(11, 3, 9, 0), category="environment", channel="phone", building_id=b2, building="2",
                floor="2", unit_id=u201, department_id=env, assignee_id=env1, fr=300, rd=3600, sd=7200,
                status="reopened", reopen_count=1, cause_kind="internal", cause_code="cleaning")  # fmt: skip
        _ticket(conn, "T4", local(11, 4, 16, 0), category="service", channel="web", department_id=cs,
                cancelled=100, rd=3600, sd=86400, status="cancelled")  # fmt: skip
        _ticket(conn, "T5", local(11, 5, 11, 0), category="other", channel="walk_in", building_id=b1, building="1",
                floor="1", unit_id=u101, department_id=cs, fr=60, rd=3600, sd=86400, status="redirected")  # fmt: skip
        _ticket(conn, "T6", local(11, 5, 8, 0), **facility, type="repair", building_id=b2, building="2", floor="2",
                unit_id=u201, department_id=eng, assignee_id=tech2, fr=900, hold=1800, rd=1800, sd=3600,
                status="on_hold", recomplaint_of=t1)  # fmt: skip
        _ticket(conn, "T7", local(11, 7, 20, 0), **facility, building_id=b1, building="1", floor="1",
                location="Lift 1", device_id=lift, department_id=eng, assignee_id=tech1, fr=3000, res=8000, rd=3600,
                sd=7200, status="closed", rating=4, reopen_count=1, recomplaint_of=t2, cause_kind="internal",
                cause_code="pipe_leak")  # fmt: skip
        _ticket(conn, "T8", local(11, 8, 23, 30), **facility, building_id=b1, building="1", floor="1", unit_id=u102,
                rd=1800, sd=86400, status="new")  # fmt: skip
        _ticket(conn, "T9", local(11, 9, 0, 10), category="safety", building_id=b2, building="2", location="Gate",
                department_id=sec, assignee_id=tech2, fr=120, res=600, rd=900, sd=14400, status="resolved")  # fmt: skip
        _ticket(conn, "T10", local(10, 31, 23, 50), category="environment", building_id=b2, building="2", floor="2",
                unit_id=u201, department_id=env, assignee_id=env1, fr=1500, res=4000, rd=3600, sd=7200,
                status="closed", rating=1, cause_kind="external", cause_code="weather")  # fmt: skip
        t11_at, t12_at = local(11, 1, 0, 20), local(11, 9, 10, 0)
        a1 = _alarm(conn, pump, t11_at - timedelta(seconds=30))
        a2 = _alarm(conn, pump, t12_at - timedelta(seconds=10))
        _alarm(conn, pump, local(11, 5, 3, 0))
        _alarm(conn, lift, local(11, 3, 12, 0), rule="door_stuck")
        _alarm(conn, lift, local(11, 10, 0, 0), rule="door_stuck")
        alarm_ticket = {"type": "repair", "category": "facility", "channel": "device", "source_type": "device",
                        "gateway_id": "gw-an", "device_id": pump, "alarm_rule": "dry_run", "building": "PR",
                        "floor": "B1", "location": "Pump room", "department_id": eng, "assignee_id": tech2}  # fmt: skip
        _ticket(conn, "T11", t11_at, **alarm_ticket, building_id=pr, alarm_id=a1, fr=600, res=4000, rd=1800,
                sd=14400, status="closed", cause_kind="internal", cause_code="pump_fault")  # fmt: skip
        _ticket(conn, "T12", t12_at, **alarm_ticket, alarm_id=a2, rd=1800, sd=30 * 86400, status="assigned")
        _ticket(conn, "T13", local(10, 30, 23, 59, 59), **facility, building_id=b1, status="new")
        _ticket(conn, "T14", local(11, 10, 0, 0), **facility, building_id=b1, status="new")
        _ticket(conn, "T15", local(11, 3, 12, 0), **facility, site_id="estate-b", status="new")
        conn.commit()
    return {"pump": pump, "lift": lift, "b1": b1, "b2": b2}


def _get(world: World, path: str, role: str = "manager") -> dict[str, Any]:
    return world.as_(role).ok("get", f"/api/v1/analytics/{path}")


def _kpis(world: World, group_by: str, extra: str = "") -> list[dict[str, Any]]:
    return _get(world, f"kpis?{RANGE}&group_by={group_by}{extra}")["rows"]


def test_kpis_for_the_whole_range(world: World, data: dict[str, int]) -> None:
    body = _get(world, f"kpis?{RANGE}")
    assert body["meta"] == {
        "sites": ["estate-a"],
        "time_zone": "Asia/Shanghai",
        "from": "2026-10-31",
        "to": "2026-11-09",
        "building_id": None,
        "type": None,
        "category": None,
        "group_by": "none",
        "generated_at": "2026-11-24T01:00:00+00:00",
    }
    assert body["columns"] == list(row("x"))
    assert body["rows"] == [
        row(
            "all",
            tickets=12,  # T1..T12
            cancelled=1,  # T4
            redirected=1,  # T5
            responded=9,  # all but T4, T8, T12
            # 60, 120, 300, 600, 600, 900, 1200, 1500, 3000: sum 8280 / 9 = 920
            response_mean_s=920.0,
            response_p50_s=600.0,  # position (9-1)*0.5 = 4: the fifth, 600
            response_p90_s=1800.0,  # position 7.2: 1500 + 0.2 * (3000 - 1500)
            resolved=6,  # T1, T2, T7, T9, T10, T11 (T3's resolved_at was cleared by the reopen)
            # 480, 2500, 3400, 3600, 5000, 7200: sum 22180 / 6 = 3696.67
            handling_mean_s=3696.7,
            handling_p50_s=3500.0,  # position 2.5: 3400 + 0.5 * 200
            handling_p90_s=6100.0,  # position 4.5: 5000 + 0.5 * 2200
            resolution_rate=0.6,  # 6 / (12 - 1 cancelled - 1 redirected)
            sla_response_due=11,  # all but T4 (cancelled at +100, before its deadline at +3600)
            sla_response_met=8,  # missed: T2 (1200 > 900), T8 and T12 (no answer, deadline passed)
            sla_response_rate=0.7273,  # 8 / 11 = 0.72727
            # due: T1 T2 T3 T7 T8 T9 T10 T11; not: T4 (cancelled), T5 (redirected), T6 (on hold before its
            # deadline), T12 (deadline 2026-12-09, after the clock)
            sla_resolution_due=8,
            sla_resolution_met=5,  # T1, T2, T9, T10, T11; missed T3 (reopened), T7 (8000 > 7200), T8
            sla_resolution_rate=0.625,  # 5 / 8
            rated=4,  # T1 5, T2 3, T7 4, T10 1
            satisfaction_mean=3.25,  # 13 / 4
            rating_1=1,
            rating_3=1,
            rating_4=1,
            rating_5=1,
            recomplaints=2,  # T6, T7
            recomplaint_rate=0.1667,  # 2 / 12
            reopened=2,  # T3, T7
            reopen_rate=0.2857,  # 2 / 7 resolved at least once (the 6 resolved and T3)
        )
    ]


def test_kpis_by_local_day(world: World, data: dict[str, int]) -> None:
    rows = _kpis(world, "day")
    assert [(r["group"], r["tickets"]) for r in rows] == [
        ("2026-10-31", 1),  # T10 at 23:50 local
        ("2026-11-01", 1),  # T11 at 00:20 local (31 October in UTC)
        ("2026-11-02", 2),
        ("2026-11-03", 1),
        ("2026-11-04", 1),
        ("2026-11-05", 2),
        ("2026-11-06", 0),
        ("2026-11-07", 1),
        ("2026-11-08", 1),  # T8 at 23:30 local
        ("2026-11-09", 2),  # T9 at 00:10 local (8 November in UTC) and T12
    ]
    by_day = {r["group"]: r for r in rows}
    assert by_day["2026-11-02"] == row(
        "2026-11-02",
        tickets=2,  # T1, T2
        responded=2,
        response_mean_s=900.0,  # (600 + 1200) / 2
        response_p50_s=900.0,  # 600 + 0.5 * 600
        response_p90_s=1140.0,  # 600 + 0.9 * 600
        resolved=2,
        handling_mean_s=5400.0,  # (3600 + 7200) / 2
        handling_p50_s=5400.0,
        handling_p90_s=6840.0,  # 3600 + 0.9 * 3600
        resolution_rate=1.0,
        sla_response_due=2,
        sla_response_met=1,  # T2 answered after 1200 s, due in 900
        sla_response_rate=0.5,
        sla_resolution_due=2,
        sla_resolution_met=2,
        sla_resolution_rate=1.0,
        rated=2,
        satisfaction_mean=4.0,  # (5 + 3) / 2
        rating_3=1,
        rating_5=1,
        recomplaint_rate=0.0,
        reopen_rate=0.0,  # 0 / 2
    )
    # T4, cancelled: nothing to resolve, no deadline reached before the cancel
    assert by_day["2026-11-04"] == row("2026-11-04", tickets=1, cancelled=1, recomplaint_rate=0.0)
    assert by_day["2026-11-06"] == row("2026-11-06")
    assert by_day["2026-11-08"] == row(
        "2026-11-08",
        tickets=1,  # T8, never answered
        resolution_rate=0.0,
        sla_response_due=1,
        sla_response_rate=0.0,
        sla_resolution_due=1,
        sla_resolution_rate=0.0,
        recomplaint_rate=0.0,
    )
    assert by_day["2026-11-09"] == _week_of_nov_9("2026-11-09")


def _week_of_nov_9(group: str) -> dict[str, Any]:
    """T9 and T12: the same two tickets make 9 November and the week starting that Monday."""
    return row(
        group,
        tickets=2,
        responded=1,  # T9
        response_mean_s=120.0,
        response_p50_s=120.0,
        response_p90_s=120.0,
        resolved=1,
        handling_mean_s=480.0,  # 600 - 120
        handling_p50_s=480.0,
        handling_p90_s=480.0,
        resolution_rate=0.5,  # 1 / 2
        sla_response_due=2,  # T9 met; T12 unanswered past +1800
        sla_response_met=1,
        sla_response_rate=0.5,
        sla_resolution_due=1,  # T9; T12's deadline is after the clock
        sla_resolution_met=1,
        sla_resolution_rate=1.0,
        recomplaint_rate=0.0,
        reopen_rate=0.0,  # 0 / 1
    )


def test_kpis_by_week_start_on_local_mondays(world: World, data: dict[str, int]) -> None:
    rows = _kpis(world, "week")
    assert rows == [
        row(
            "2026-10-26",  # the Monday of the week of Saturday 31 October: T10, T11
            tickets=2,
            responded=2,
            response_mean_s=1050.0,  # (1500 + 600) / 2
            response_p50_s=1050.0,
            response_p90_s=1410.0,  # 600 + 0.9 * 900
            resolved=2,
            handling_mean_s=2950.0,  # (2500 + 3400) / 2
            handling_p50_s=2950.0,
            handling_p90_s=3310.0,  # 2500 + 0.9 * 900
            resolution_rate=1.0,
            sla_response_due=2,
            sla_response_met=2,
            sla_response_rate=1.0,
            sla_resolution_due=2,
            sla_resolution_met=2,
            sla_resolution_rate=1.0,
            rated=1,
            satisfaction_mean=1.0,
            rating_1=1,
            recomplaint_rate=0.0,
            reopen_rate=0.0,
        ),
        row(
            "2026-11-02",  # T1..T8
            tickets=8,
            cancelled=1,
            redirected=1,
            responded=6,  # 60, 300, 600, 900, 1200, 3000: sum 6060
            response_mean_s=1010.0,  # 6060 / 6
            response_p50_s=750.0,  # position 2.5: 600 + 0.5 * 300
            response_p90_s=2100.0,  # position 4.5: 1200 + 0.5 * 1800
            resolved=3,  # T1, T2, T7: 3600, 5000, 7200
            handling_mean_s=5266.7,  # 15800 / 3
            handling_p50_s=5000.0,
            handling_p90_s=6760.0,  # position 1.8: 5000 + 0.8 * 2200
            resolution_rate=0.5,  # 3 / (8 - 1 - 1)
            sla_response_due=7,  # all but T4
            sla_response_met=5,  # T1 T3 T5 T6 T7
            sla_response_rate=0.7143,  # 5 / 7
            sla_resolution_due=5,  # T1 T2 T3 T7 T8
            sla_resolution_met=2,  # T1 T2
            sla_resolution_rate=0.4,
            rated=3,
            satisfaction_mean=4.0,  # (5 + 3 + 4) / 3
            rating_3=1,
            rating_4=1,
            rating_5=1,
            recomplaints=2,
            recomplaint_rate=0.25,  # 2 / 8
            reopened=2,  # T3, T7
            reopen_rate=0.5,  # 2 / 4 (T1, T2, T7 resolved; T3 resolved once)
        ),
        _week_of_nov_9("2026-11-09"),
    ]


def test_kpis_by_local_month(world: World, data: dict[str, int]) -> None:
    assert _kpis(world, "month") == [
        row(
            "2026-10",  # T10 only: T11 (00:20 on 1 November local) is October in UTC but November here
            tickets=1,
            responded=1,
            response_mean_s=1500.0,
            response_p50_s=1500.0,
            response_p90_s=1500.0,
            resolved=1,
            handling_mean_s=2500.0,  # 4000 - 1500
            handling_p50_s=2500.0,
            handling_p90_s=2500.0,
            resolution_rate=1.0,
            sla_response_due=1,
            sla_response_met=1,
            sla_response_rate=1.0,
            sla_resolution_due=1,
            sla_resolution_met=1,
            sla_resolution_rate=1.0,
            rated=1,
            satisfaction_mean=1.0,
            rating_1=1,
            recomplaint_rate=0.0,
            reopen_rate=0.0,
        ),
        row(
            "2026-11",  # the other eleven
            tickets=11,
            cancelled=1,
            redirected=1,
            responded=8,  # 60, 120, 300, 600, 600, 900, 1200, 3000: sum 6780
            response_mean_s=847.5,  # 6780 / 8
            response_p50_s=600.0,  # position 3.5: 600 + 0.5 * (600 - 600)
            response_p90_s=1740.0,  # position 6.3: 1200 + 0.3 * 1800
            resolved=5,  # 480, 3400, 3600, 5000, 7200: sum 19680
            handling_mean_s=3936.0,  # 19680 / 5
            handling_p50_s=3600.0,
            handling_p90_s=6320.0,  # position 3.6: 5000 + 0.6 * 2200
            resolution_rate=0.5556,  # 5 / (11 - 2) = 0.55556
            sla_response_due=10,
            sla_response_met=7,
            sla_response_rate=0.7,
            sla_resolution_due=7,
            sla_resolution_met=4,
            sla_resolution_rate=0.5714,  # 4 / 7
            rated=3,
            satisfaction_mean=4.0,
            rating_3=1,
            rating_4=1,
            rating_5=1,
            recomplaints=2,
            recomplaint_rate=0.1818,  # 2 / 11
            reopened=2,
            reopen_rate=0.3333,  # 2 / 6
        ),
    ]


def test_kpis_by_category(world: World, data: dict[str, int]) -> None:
    rows = _kpis(world, "category")
    # most tickets first, then by name
    assert [(r["group"], r["tickets"]) for r in rows] == [
        ("facility", 7),  # T1 T2 T6 T7 T8 T11 T12
        ("environment", 2),  # T3 T10
        ("other", 1),
        ("safety", 1),
        ("service", 1),
    ]
    assert rows[0] == row(
        "facility",
        tickets=7,
        responded=5,  # 600, 600, 900, 1200, 3000: sum 6300
        response_mean_s=1260.0,
        response_p50_s=900.0,
        response_p90_s=2280.0,  # position 3.6: 1200 + 0.6 * 1800
        resolved=4,  # 3400, 3600, 5000, 7200: sum 19200
        handling_mean_s=4800.0,
        handling_p50_s=4300.0,  # position 1.5: 3600 + 0.5 * 1400
        handling_p90_s=6540.0,  # position 2.7: 5000 + 0.7 * 2200
        resolution_rate=0.5714,  # 4 / 7
        sla_response_due=7,
        sla_response_met=4,  # missed T2, T8, T12
        sla_response_rate=0.5714,
        sla_resolution_due=5,  # T1 T2 T7 T8 T11
        sla_resolution_met=3,  # T1 T2 T11
        sla_resolution_rate=0.6,
        rated=3,
        satisfaction_mean=4.0,
        rating_3=1,
        rating_4=1,
        rating_5=1,
        recomplaints=2,
        recomplaint_rate=0.2857,  # 2 / 7
        reopened=1,  # T7
        reopen_rate=0.25,  # 1 / 4
    )
    assert rows[1] == row(
        "environment",
        tickets=2,
        responded=2,
        response_mean_s=900.0,  # (300 + 1500) / 2
        response_p50_s=900.0,
        response_p90_s=1380.0,  # 300 + 0.9 * 1200
        resolved=1,  # T10
        handling_mean_s=2500.0,
        handling_p50_s=2500.0,
        handling_p90_s=2500.0,
        resolution_rate=0.5,
        sla_response_due=2,
        sla_response_met=2,
        sla_response_rate=1.0,
        sla_resolution_due=2,  # T3 (reopened, deadline passed) and T10
        sla_resolution_met=1,
        sla_resolution_rate=0.5,
        rated=1,
        satisfaction_mean=1.0,
        rating_1=1,
        recomplaint_rate=0.0,
        reopened=1,  # T3
        reopen_rate=0.5,  # 1 / 2
    )


def test_kpis_by_department_technician_building_and_channel(world: World, data: dict[str, int]) -> None:
    rows = _kpis(world, "department")
    assert [(r["group"], r["tickets"]) for r in rows] == [
        ("Engineering", 6),  # T1 T2 T6 T7 T11 T12
        ("Customer service", 2),  # T4 T5
        ("Environment", 2),  # T3 T10
        ("Security", 1),  # T9
        ("(none)", 1),  # T8
    ]
    assert rows[0] == row(
        "Engineering",
        tickets=6,
        responded=5,
        response_mean_s=1260.0,
        response_p50_s=900.0,
        response_p90_s=2280.0,
        resolved=4,
        handling_mean_s=4800.0,
        handling_p50_s=4300.0,
        handling_p90_s=6540.0,
        resolution_rate=0.6667,  # 4 / 6
        sla_response_due=6,
        sla_response_met=4,
        sla_response_rate=0.6667,
        sla_resolution_due=4,
        sla_resolution_met=3,
        sla_resolution_rate=0.75,
        rated=3,
        satisfaction_mean=4.0,
        rating_3=1,
        rating_4=1,
        rating_5=1,
        recomplaints=2,
        recomplaint_rate=0.3333,  # 2 / 6
        reopened=1,
        reopen_rate=0.25,
    )
    assert rows[1] == row(
        "Customer service",
        tickets=2,
        cancelled=1,
        redirected=1,
        responded=1,  # T5 redirected after 60 s
        response_mean_s=60.0,
        response_p50_s=60.0,
        response_p90_s=60.0,
        sla_response_due=1,
        sla_response_met=1,
        sla_response_rate=1.0,
        recomplaint_rate=0.0,  # resolution_rate null: 2 - 1 - 1 = 0 to resolve
    )
    assert rows[4] == row(
        "(none)",
        tickets=1,
        resolution_rate=0.0,
        sla_response_due=1,
        sla_response_rate=0.0,
        sla_resolution_due=1,
        sla_resolution_rate=0.0,
        recomplaint_rate=0.0,
    )

    rows = _kpis(world, "technician")
    assert [(r["group"], r["tickets"]) for r in rows] == [
        ("Liu Yang", 4),  # tech2: T6 T9 T11 T12
        ("Zhang Wei", 3),  # tech1: T1 T2 T7
        ("(none)", 3),  # T4 T5 T8
        ("Chen Jing", 2),  # env1: T3 T10
    ]
    assert rows[0] == row(
        "Liu Yang",
        tickets=4,
        responded=3,  # 120, 600, 900
        response_mean_s=540.0,  # 1620 / 3
        response_p50_s=600.0,
        response_p90_s=840.0,  # position 1.8: 600 + 0.8 * 300
        resolved=2,  # T9 480, T11 3400
        handling_mean_s=1940.0,
        handling_p50_s=1940.0,
        handling_p90_s=3108.0,  # 480 + 0.9 * 2920
        resolution_rate=0.5,
        sla_response_due=4,
        sla_response_met=3,  # T12 unanswered
        sla_response_rate=0.75,
        sla_resolution_due=2,  # T9 T11; T6 on hold, T12 not yet due
        sla_resolution_met=2,
        sla_resolution_rate=1.0,
        recomplaints=1,  # T6
        recomplaint_rate=0.25,
        reopen_rate=0.0,  # 0 / 2
    )
    assert rows[1] == row(
        "Zhang Wei",
        tickets=3,
        responded=3,  # 600, 1200, 3000
        response_mean_s=1600.0,  # 4800 / 3
        response_p50_s=1200.0,
        response_p90_s=2640.0,  # 1200 + 0.8 * 1800
        resolved=3,  # 3600, 5000, 7200
        handling_mean_s=5266.7,  # 15800 / 3
        handling_p50_s=5000.0,
        handling_p90_s=6760.0,
        resolution_rate=1.0,
        sla_response_due=3,
        sla_response_met=2,
        sla_response_rate=0.6667,
        sla_resolution_due=3,
        sla_resolution_met=2,  # T7 late
        sla_resolution_rate=0.6667,
        rated=3,
        satisfaction_mean=4.0,
        rating_3=1,
        rating_4=1,
        rating_5=1,
        recomplaints=1,  # T7
        recomplaint_rate=0.3333,
        reopened=1,
        reopen_rate=0.3333,
    )

    # T2 has only the building text "1" (a complaint about the lift, filed without a unit): Building 1;
    # T12 only the text "PR": the plant room, like T11 whose building_id is set
    assert [(r["group"], r["tickets"]) for r in _kpis(world, "building")] == [
        ("Building 1", 5),  # T1 T2 T5 T7 T8
        ("Building 2", 4),  # T3 T6 T9 T10
        ("Plant room", 2),  # T11 T12
        ("(none)", 1),  # T4
    ]
    assert [(r["group"], r["tickets"]) for r in _kpis(world, "channel")] == [
        ("app", 7),
        ("device", 2),
        ("phone", 1),
        ("walk_in", 1),
        ("web", 1),
    ]


def test_filters_building_type_category_and_sites(world: World, data: dict[str, int]) -> None:
    (b2,) = _kpis(world, "none", f"&building_id={data['b2']}")
    # T3 T6 T9 T10; answered all four, resolved T9 and T10
    assert (b2["tickets"], b2["responded"], b2["resolved"]) == (4, 4, 2)
    (repairs,) = _kpis(world, "none", "&type=repair")
    assert (repairs["tickets"], repairs["resolved"]) == (3, 1)  # T6 T11 T12; T11
    (env,) = _kpis(world, "none", "&category=environment")
    assert env["tickets"] == 2
    # the admin without a site: both estates (the same time zone), T15 at estate B too
    body = world.as_("admin").ok("get", "/api/v1/analytics/kpis?from=2026-10-31&to=2026-11-09")
    assert body["meta"]["sites"] == ["estate-a", "estate-b"]
    assert body["rows"][0]["tickets"] == 13
    # with two sites, a building's name says which site
    groups = world.as_("admin").ok("get", "/api/v1/analytics/kpis?from=2026-10-31&to=2026-11-09&group_by=building")
    assert [(r["group"], r["tickets"]) for r in groups["rows"]] == [
        ("estate-a / Building 1", 5),
        ("estate-a / Building 2", 4),
        ("estate-a / Plant room", 2),
        ("(none)", 2),  # T4, and T15 at estate B
    ]


def test_an_empty_range_lists_every_period_with_zeros(world: World, data: dict[str, int]) -> None:
    empty = world.as_("manager").ok(
        "get", "/api/v1/analytics/kpis?site=estate-a&from=2026-12-01&to=2026-12-03&group_by=day"
    )
    assert empty["rows"] == [row("2026-12-01"), row("2026-12-02"), row("2026-12-03")]
    weeks = _get(world, "kpis?site=estate-a&from=2026-12-01&to=2026-12-14&group_by=week")["rows"]
    # Tuesday 1 December is in the week of Monday 30 November; the 14th is a Monday
    assert weeks == [row("2026-11-30"), row("2026-12-07"), row("2026-12-14")]
    assert _get(world, "kpis?site=estate-a&from=2026-12-01&to=2026-12-03")["rows"] == [row("all")]
    assert _get(world, "causes?site=estate-a&from=2026-12-01&to=2026-12-03")["rows"] == []
    assert _get(world, "top?site=estate-a&from=2026-12-01&to=2026-12-03")["rows"] == []
    assert _get(world, "alarm-fix?site=estate-a&from=2026-12-01&to=2026-12-03")["rows"] == [
        {"group": "all", "alarm_tickets": 0, "fixed": 0, "fix_mean_s": None, "fix_p50_s": None, "fix_p90_s": None}
    ]


def test_causes(world: World, data: dict[str, int]) -> None:
    body = _get(world, f"causes?{RANGE}")
    assert body["columns"] == ["group", "cause_kind", "cause_code", "tickets", "share"]
    # resolved: T1 T2 T7 T9 T10 T11 (6); T3 has a cause but was reopened and is not resolved now
    assert body["rows"] == [
        {"group": "all", "cause_kind": "internal", "cause_code": "pipe_leak", "tickets": 2, "share": 0.3333},  # T1 T7
        {"group": "all", "cause_kind": "external", "cause_code": "supplier", "tickets": 1, "share": 0.1667},  # 1/6
        {"group": "all", "cause_kind": "external", "cause_code": "weather", "tickets": 1, "share": 0.1667},
        {"group": "all", "cause_kind": "internal", "cause_code": "pump_fault", "tickets": 1, "share": 0.1667},
        {"group": "all", "cause_kind": "(none)", "cause_code": "(none)", "tickets": 1, "share": 0.1667},  # T9
    ]
    by_category = _get(world, f"causes?{RANGE}&group_by=category")["rows"]
    assert by_category == [
        # facility resolved: T1 T2 T7 T11
        {"group": "facility", "cause_kind": "internal", "cause_code": "pipe_leak", "tickets": 2, "share": 0.5},
        {"group": "facility", "cause_kind": "external", "cause_code": "supplier", "tickets": 1, "share": 0.25},
        {"group": "facility", "cause_kind": "internal", "cause_code": "pump_fault", "tickets": 1, "share": 0.25},
        {"group": "environment", "cause_kind": "external", "cause_code": "weather", "tickets": 1, "share": 1.0},
        {"group": "safety", "cause_kind": "(none)", "cause_code": "(none)", "tickets": 1, "share": 1.0},
    ]
    by_building = _get(world, f"causes?{RANGE}&group_by=building")["rows"]
    assert [(r["group"], r["cause_code"], r["tickets"]) for r in by_building] == [
        ("Building 1", "pipe_leak", 2),  # T1 T7 (T2 by its building text)
        ("Building 1", "supplier", 1),
        ("Building 2", "weather", 1),  # T10
        ("Building 2", "(none)", 1),  # T9
        ("Plant room", "pump_fault", 1),  # T11
    ]


def test_top_devices_and_locations(world: World, data: dict[str, int]) -> None:
    body = _get(world, f"top?{RANGE}&by=device")
    assert body["meta"]["by"] == "device" and body["meta"]["limit"] == 10
    assert body["rows"] == [
        # A1 A2 A3 in range (A5 is the lift's, on the 10th); its two tickets are alarm tickets, not complaints
        {"rank": 1, "device_id": data["pump"], "device": "Booster pump", "building": "Plant room", "floor": "B1",
         "room": "Pump room", "alarms": 3, "complaints": 0, "total": 3},
        # A4; complaints T2 and T7; the same total as the pump, fewer alarms
        {"rank": 2, "device_id": data["lift"], "device": "Lift 1", "building": "Building 1", "floor": "1",
         "room": "Lift 1", "alarms": 1, "complaints": 2, "total": 3},
    ]  # fmt: skip
    in_b1 = _get(world, f"top?{RANGE}&by=device&building_id={data['b1']}")["rows"]
    assert [(r["device"], r["alarms"], r["complaints"]) for r in in_b1] == [("Lift 1", 1, 2)]

    places = _get(world, f"top?{RANGE}&by=location")["rows"]
    ranked = [
        (p["rank"], p["building"], p["floor"], p["room"], p["alarms"], p["complaints"], p["total"]) for p in places
    ]
    assert ranked == [
        (1, "Plant room", "B1", "Pump room", 3, 0, 3),
        (2, "Building 1", "1", "Lift 1", 1, 2, 3),  # A4; T2, T7
        (3, "Building 2", "2", "201", 0, 3, 3),  # T3 T6 T10 (unit 2-201)
        (4, "Building 1", "1", "101", 0, 2, 2),  # T1 T5
        (5, "Building 1", "1", "102", 0, 1, 1),  # T8
        (6, "Building 2", None, "Gate", 0, 1, 1),  # T9
    ]  # fmt: skip
    top2 = _get(world, f"top?{RANGE}&by=location&limit=2")["rows"]
    assert [p["rank"] for p in top2] == [1, 2]


def test_alarm_fix(world: World, data: dict[str, int]) -> None:
    # T11: alarm raised 30 s before the ticket, resolved 4000 s after it: 4030 s; T12 not fixed
    fixed = {"fix_mean_s": 4030.0, "fix_p50_s": 4030.0, "fix_p90_s": 4030.0}
    assert _get(world, f"alarm-fix?{RANGE}")["rows"] == [{"group": "all", "alarm_tickets": 2, "fixed": 1, **fixed}]
    assert _get(world, f"alarm-fix?{RANGE}&group_by=device")["rows"] == [
        {"group": "Booster pump", "alarm_tickets": 2, "fixed": 1, **fixed}
    ]
    assert _get(world, f"alarm-fix?{RANGE}&group_by=rule")["rows"] == [
        {"group": "dry_run", "alarm_tickets": 2, "fixed": 1, **fixed}
    ]
    days = _get(world, f"alarm-fix?{RANGE}&group_by=day")["rows"]
    assert [(d["group"], d["alarm_tickets"], d["fixed"]) for d in days if d["alarm_tickets"]] == [
        ("2026-11-01", 1, 1),
        ("2026-11-09", 1, 0),
    ]
    assert len(days) == 10


def test_alarm_fix_percentiles(world: World, data: dict[str, int]) -> None:
    with connect(world.database_url) as conn:
        for n, fix in enumerate((100, 400, 1000, None)):
            created = local(11, 20, 10, n)
            alarm = _alarm(conn, data["lift"], created - timedelta(seconds=40), rule="door_stuck")
            _ticket(conn, f"L{n}", created, type="repair", category="facility", channel="device",
                    device_id=data["lift"], alarm_rule="door_stuck", alarm_id=alarm,
                    res=None if fix is None else fix - 40, status="closed" if fix else "new")  # fmt: skip
        conn.commit()
    rows = _get(world, "alarm-fix?site=estate-a&from=2026-11-20&to=2026-11-20&group_by=building")["rows"]
    # fixes 100, 400, 1000 s after the alarm: mean 500, p50 400, p90 at position 1.8: 400 + 0.8 * 600
    assert rows == [
        {"group": "(none)", "alarm_tickets": 4, "fixed": 3, "fix_mean_s": 500.0, "fix_p50_s": 400.0, "fix_p90_s": 880.0}
    ]


def test_downloads_carry_the_json_rows(world: World, data: dict[str, int]) -> None:
    manager = world.as_("manager")
    query = f"/api/v1/analytics/kpis?{RANGE}&group_by=day"
    body = manager.ok("get", query)
    resp = manager.get(query + "&format=csv")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    assert 'filename="kpis-estate-a-2026-10-31-2026-11-09.csv"' in resp.headers["content-disposition"]
    table = list(csv.reader(io.StringIO(resp.content.decode("utf-8-sig"))))
    assert table[0] == body["columns"]
    assert table[1:] == [["" if r[c] is None else str(r[c]) for c in body["columns"]] for r in body["rows"]]

    resp = manager.get(query + "&format=xlsx")
    assert resp.status_code == 200
    book = openpyxl.load_workbook(io.BytesIO(resp.content))
    sheet = [list(r) for r in book["data"].iter_rows(values_only=True)]
    assert sheet[0] == body["columns"]
    assert sheet[1:] == [[r[c] for c in body["columns"]] for r in body["rows"]]
    about = {k: v for k, v in book["about"].iter_rows(values_only=True)}
    assert about["time_zone"] == "Asia/Shanghai" and about["from"] == "2026-10-31"

    causes = manager.ok("get", f"/api/v1/analytics/causes?{RANGE}")
    resp = manager.get(f"/api/v1/analytics/causes?{RANGE}&format=csv")
    table = list(csv.reader(io.StringIO(resp.content.decode("utf-8-sig"))))
    assert table[1:] == [[str(r[c]) for c in causes["columns"]] for r in causes["rows"]]


def test_refusals(world: World, data: dict[str, int]) -> None:
    for role in ("resident", "tech1", "guard"):
        resp = world.as_(role).get(f"/api/v1/analytics/kpis?{RANGE}")
        assert resp.status_code == 403, role
    manager = world.as_("manager")
    other_site = manager.get("/api/v1/analytics/kpis?site=estate-b")
    assert other_site.status_code == 404 and other_site.json() == {"error": "site estate-b does not exist"}
    assert manager.get("/api/v1/analytics/kpis?site=nowhere").status_code == 404
    b_building = world.b.buildings["1"]
    assert manager.get(f"/api/v1/analytics/top?building_id={b_building}").status_code == 404
    backwards = manager.get("/api/v1/analytics/kpis?from=2026-11-09&to=2026-11-01")
    assert backwards.status_code == 422 and "2026-11-09 is after to" in backwards.json()["error"]
    wrong_group = manager.get("/api/v1/analytics/causes?group_by=week")
    assert wrong_group.status_code == 422 and "category" in wrong_group.json()["error"]
    assert manager.get("/api/v1/analytics/kpis?group_by=rule").status_code == 422
    assert manager.get("/api/v1/analytics/top?limit=0").status_code == 422
    assert manager.get("/api/v1/analytics/top?limit=101").status_code == 422
    assert manager.get("/api/v1/analytics/top?by=floor").status_code == 422
    assert manager.get("/api/v1/analytics/kpis?format=pdf").status_code == 422
    assert manager.get("/api/v1/analytics/kpis?from=2026-13-01").status_code == 422
