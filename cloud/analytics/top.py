"""The devices and places that cause the most work: alarms raised in the range plus complaints
(tickets filed about them in the range), ranked by the sum.

A ticket an alarm opened is not counted again as a complaint: the alarm already counts. The
request's type and category filter the complaints (alarms have neither); its building filters
both, by the device's building for alarms.
"""

from enum import StrEnum
from typing import Any

import psycopg
from psycopg import sql

from cloud.analytics.selection import DEVICE_BUILDING, Selection, tune_transaction

#: a ranking never lists more than this many rows
MAX_LIMIT = 100


class TopBy(StrEnum):
    DEVICE = "device"
    LOCATION = "location"


COLUMNS = {
    TopBy.DEVICE: ["rank", "device_id", "device", "building", "floor", "room", "alarms", "complaints", "total"],
    TopBy.LOCATION: ["rank", "building", "floor", "room", "alarms", "complaints", "total"],
}

_ALARMS = """SELECT a.*, d.name AS device_name, d.floor AS device_floor, d.room AS device_room,
                    d.building AS device_building_text, {device_building} AS device_building
             FROM alarms a JOIN devices d ON d.id = a.device_id JOIN gateways g ON g.id = d.gateway_id
             WHERE a.site_id = ANY(%(sites)s) AND a.raised_at >= %(start)s AND a.raised_at < %(end)s"""
_ALARMS_IN_BUILDING = "(%(building)s::bigint IS NULL OR al.device_building = %(building)s)"

_DEVICE_QUERY = f"""
WITH al AS ({_ALARMS}),
alarm_counts AS (
    SELECT al.device_id, count(*) AS alarms FROM al WHERE {_ALARMS_IN_BUILDING} GROUP BY al.device_id
),
complaint_counts AS (
    SELECT t.device_id, count(*) AS complaints
    FROM {{tickets}}
    WHERE t.device_id IS NOT NULL AND t.alarm_id IS NULL
    GROUP BY t.device_id
)
SELECT d.id AS device_id, d.name AS device, coalesce(b.name, d.building) AS building, d.floor, d.room,
       coalesce(ac.alarms, 0) AS alarms, coalesce(cc.complaints, 0) AS complaints
FROM alarm_counts ac FULL JOIN complaint_counts cc ON cc.device_id = ac.device_id
JOIN devices d ON d.id = coalesce(ac.device_id, cc.device_id)
JOIN gateways g ON g.id = d.gateway_id
LEFT JOIN buildings b ON b.id = {{device_building}}
ORDER BY coalesce(ac.alarms, 0) + coalesce(cc.complaints, 0) DESC, coalesce(ac.alarms, 0) DESC, d.name, d.id
LIMIT %(limit)s
"""

# a place is (building, floor, room); a ticket's room is its unit's number, else its location text
_LOCATION_QUERY = f"""
WITH al AS ({_ALARMS}),
places AS (
    SELECT coalesce(b.name, al.device_building_text) AS building, al.device_floor AS floor,
           al.device_room AS room, 1 AS alarm, 0 AS complaint
    FROM al LEFT JOIN buildings b ON b.id = al.device_building
    WHERE {_ALARMS_IN_BUILDING}
    UNION ALL
    SELECT coalesce(b.name, t.building), t.floor, coalesce(u.number, t.location), 0, 1
    FROM {{tickets}}
    LEFT JOIN buildings b ON b.id = t.building_ref
    LEFT JOIN units u ON u.id = t.unit_id
    WHERE t.alarm_id IS NULL
)
SELECT building, floor, room, sum(alarm) AS alarms, sum(complaint) AS complaints
FROM places
WHERE building IS NOT NULL OR floor IS NOT NULL OR room IS NOT NULL
GROUP BY building, floor, room
ORDER BY sum(alarm) + sum(complaint) DESC, sum(alarm) DESC, building, floor, room
LIMIT %(limit)s
"""

_TICKET_COLUMNS = sql.SQL("t.id, t.device_id, t.alarm_id, t.building, t.floor, t.location, t.unit_id")


def top(conn: psycopg.Connection, selection: Selection, by: TopBy, *, limit: int) -> list[dict[str, Any]]:
    """The first `limit` devices or places, most alarms plus complaints first."""
    tune_transaction(conn)
    template = _DEVICE_QUERY if by == TopBy.DEVICE else _LOCATION_QUERY
    query = sql.SQL(template).format(tickets=selection.tickets(_TICKET_COLUMNS), device_building=DEVICE_BUILDING)
    rows = []
    for rank, r in enumerate(conn.execute(query, {**selection.params(), "limit": limit}).fetchall(), start=1):
        alarms, complaints = int(r["alarms"]), int(r["complaints"])
        place = {"building": r["building"], "floor": r["floor"], "room": r["room"]}
        device = {"device_id": r["device_id"], "device": r["device"]} if by == TopBy.DEVICE else {}
        rows.append(
            {"rank": rank, **device, **place, "alarms": alarms, "complaints": complaints, "total": alarms + complaints}
        )
    return rows
