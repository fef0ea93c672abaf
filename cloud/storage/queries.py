"""Named SQL texts shared by the API and the Grafana dashboards: one text per query, written once.

Each text takes psycopg named parameters (`%(device)s`). The API runs a text as it is, with
parameters; `dashboards/build.py` writes the dashboards' panels and variables from the same texts,
putting Grafana's macros and variables where the parameters are (the parameter names below are
the ones it knows). So a panel cannot compute something other than what the API answers, and
`tests/deploy/test_dashboards.py` fails when a committed dashboard differs from what the texts make.

Parameters: `start`, `end` (timestamptz, from inclusive to exclusive), `bucket` (an interval),
`device` (a device id), `metric` (a metric name), `site` (one site id), `sites` (a list of site ids).

Which text the API runs is said on each; the others are read by the dashboards only, kept here so
that every dashboard query has one home, is run by the tests with parameters, and can be used by
the API as it is when it needs the same figure.
"""

from dataclasses import dataclass

#: Seconds from when a message was made at the edge to its commit in the cloud. The id is a UUIDv7
#: (contract/ids.py) whose first 48 bits are the Unix milliseconds it was made at; written out
#: rather than uuid_extract_timestamp(), which reads version 7 only from PostgreSQL 18 on (the
#: compose database is 17). float8 arithmetic: computed once a row, it is the costly part.
_MESSAGE_LAG_S = (
    "date_part('epoch', m.received_at)"
    " - ('x' || left(replace(m.message_id::text, '-', ''), 12))::bit(48)::bigint::float8 / 1000"
)
_IS_UUID7 = "substr(m.message_id::text, 15, 1) = '7'"


@dataclass(frozen=True)
class Query:
    """One SQL text with psycopg named parameters, and who runs it."""

    name: str
    sql: str
    used_by_api: str | None = None


# --- telemetry -------------------------------------------------------------------------------

TELEMETRY_BUCKETS = Query(
    "telemetry_buckets",
    """SELECT community_time_bucket(%(bucket)s, time) AS bucket,
       min(value) AS min, max(value) AS max, avg(value) AS mean, count(*) AS count
FROM telemetry
WHERE device_id = %(device)s AND metric = %(metric)s
  AND time >= %(start)s AND time < %(end)s
GROUP BY 1 ORDER BY 1""",
    used_by_api=(
        "GET /api/v1/devices/{id}/telemetry and a ticket's telemetry context (cloud.storage.telemetry.bucketed)"
    ),
)

SITES = Query(
    "sites",
    """SELECT s.name AS __text, s.id AS __value
FROM sites s
ORDER BY s.name, s.id""",
)

SITE_DEVICES = Query(
    "site_devices",
    """SELECT d.name || ' (' || d.gateway_id || ')' AS __text, d.id AS __value
FROM devices d
JOIN gateways g ON g.id = d.gateway_id
WHERE g.site_id = %(site)s
ORDER BY d.gateway_id, d.name""",
)

# The numeric metrics a device announced in its birth, and those it has sent values for (a device
# known only from its telemetry announced nothing). Text metrics have no min, max or mean.
DEVICE_METRICS = Query(
    "device_metrics",
    """SELECT name AS __text, name AS __value
FROM (
    SELECT m->>'name' AS name
    FROM devices d, jsonb_array_elements(d.metrics) m
    WHERE d.id = %(device)s AND coalesce(m->>'type', 'number') <> 'string'
    UNION
    SELECT v.key
    FROM devices d, jsonb_each(d.last_values) v
    WHERE d.id = %(device)s AND jsonb_typeof(v.value->'value') IN ('number', 'boolean')
) names
WHERE name IS NOT NULL
ORDER BY name""",
)

DEVICE_LAST_VALUES = Query(
    "device_last_values",
    """SELECT v.key AS metric, v.value->>'value' AS value, m->>'unit' AS unit,
       (v.value->>'ts')::timestamptz AS measured
FROM devices d
CROSS JOIN jsonb_each(d.last_values) v
LEFT JOIN jsonb_array_elements(d.metrics) m ON m->>'name' = v.key
WHERE d.id = %(device)s
ORDER BY v.key""",
)

# --- alarms ----------------------------------------------------------------------------------

ALARMS_BY_SEVERITY = Query(
    "alarms_by_severity",
    """SELECT community_time_bucket(%(bucket)s, a.raised_at) AS "time", a.severity AS metric, count(*) AS alarms
FROM alarms a
WHERE a.site_id = ANY(%(sites)s) AND a.raised_at >= %(start)s AND a.raised_at < %(end)s
GROUP BY 1, 2 ORDER BY 1, 2""",
)

ALARMS_BY_RULE = Query(
    "alarms_by_rule",
    """SELECT community_time_bucket(%(bucket)s, a.raised_at) AS "time", a.rule AS metric, count(*) AS alarms
FROM alarms a
WHERE a.site_id = ANY(%(sites)s) AND a.raised_at >= %(start)s AND a.raised_at < %(end)s
GROUP BY 1, 2 ORDER BY 1, 2""",
)

ALARMS_BY_SITE = Query(
    "alarms_by_site",
    """SELECT community_time_bucket(%(bucket)s, a.raised_at) AS "time", s.name AS metric, count(*) AS alarms
FROM alarms a
JOIN sites s ON s.id = a.site_id
WHERE a.site_id = ANY(%(sites)s) AND a.raised_at >= %(start)s AND a.raised_at < %(end)s
GROUP BY 1, 2 ORDER BY 1, 2""",
)

ALARM_COUNTS = Query(
    "alarm_counts",
    """SELECT count(*) FILTER (WHERE a.state = 'active') AS "active now",
       count(*) FILTER (WHERE a.state = 'acknowledged') AS "acknowledged now",
       count(*) FILTER (WHERE a.raised_at >= %(start)s AND a.raised_at < %(end)s) AS "raised in range",
       count(*) FILTER (WHERE a.cleared_at >= %(start)s AND a.cleared_at < %(end)s) AS "cleared in range"
FROM alarms a
WHERE a.site_id = ANY(%(sites)s)""",
)

OPEN_ALARMS = Query(
    "open_alarms",
    """SELECT a.raised_at AS raised, s.name AS site, a.severity, a.state, a.source_type AS source,
       coalesce(d.name, a.gateway_id) AS "device or gateway", a.rule, a.message, a.ticket_id AS ticket,
       a.acknowledged_by AS "acknowledged by"
FROM alarms a
LEFT JOIN sites s ON s.id = a.site_id
LEFT JOIN devices d ON d.id = a.device_id
WHERE a.state <> 'cleared' AND a.site_id = ANY(%(sites)s)
ORDER BY CASE a.severity WHEN 'critical' THEN 0 WHEN 'major' THEN 1 WHEN 'minor' THEN 2 ELSE 3 END,
         a.raised_at DESC
LIMIT 200""",
)

# --- ingest ----------------------------------------------------------------------------------

# ingest_messages has a row per message the cloud committed (received_at: the commit's
# transaction time); telemetry rows carry their point count (migration 0020).
POINTS_STORED_PER_SECOND = Query(
    "points_stored_per_second",
    """SELECT community_time_bucket(%(bucket)s, m.received_at) AS "time", m.gateway_id AS metric,
       sum(m.points) / extract(epoch FROM %(bucket)s) AS "points/s"
FROM ingest_messages m
WHERE m.kind = 'telemetry' AND m.received_at >= %(start)s AND m.received_at < %(end)s
GROUP BY 1, 2 ORDER BY 1, 2""",
)

MESSAGES_PER_SECOND = Query(
    "messages_per_second",
    """SELECT community_time_bucket(%(bucket)s, m.received_at) AS "time", m.kind AS metric,
       count(*) / extract(epoch FROM %(bucket)s) AS "messages/s"
FROM ingest_messages m
WHERE m.received_at >= %(start)s AND m.received_at < %(end)s
GROUP BY 1, 2 ORDER BY 1, 2""",
)

POINTS_BY_MEASUREMENT_TIME = Query(
    "points_by_measurement_time",
    """SELECT community_time_bucket(%(bucket)s, t.time) AS "time", d.gateway_id AS metric, count(*) AS points
FROM telemetry t
JOIN devices d ON d.id = t.device_id
WHERE t.time >= %(start)s AND t.time < %(end)s
GROUP BY 1, 2 ORDER BY 1, 2""",
)

# Lag: from when the gateway made the message (in its outbox, a moment after the readings in it
# were taken) to when the cloud committed it. Includes the time it waited in the outbox while
# the broker or the cloud was away; off by the gateway clock's error.
TELEMETRY_LAG = Query(
    "telemetry_lag",
    f"""SELECT l.bucket AS "time",
       percentile_cont(0.5) WITHIN GROUP (ORDER BY l.lag) AS "p50 s",
       percentile_cont(0.99) WITHIN GROUP (ORDER BY l.lag) AS "p99 s",
       max(l.lag) AS "max s"
FROM (
    SELECT community_time_bucket(%(bucket)s, m.received_at) AS bucket, {_MESSAGE_LAG_S} AS lag
    FROM ingest_messages m
    WHERE m.kind = 'telemetry' AND {_IS_UUID7} AND m.received_at >= %(start)s AND m.received_at < %(end)s
) l
GROUP BY 1 ORDER BY 1""",
)

LAG_BY_KIND = Query(
    "lag_by_kind",
    f"""SELECT l.bucket AS "time", l.kind AS metric,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY l.lag) AS "p99 s"
FROM (
    SELECT community_time_bucket(%(bucket)s, m.received_at) AS bucket, m.kind, {_MESSAGE_LAG_S} AS lag
    FROM ingest_messages m
    WHERE {_IS_UUID7} AND m.received_at >= %(start)s AND m.received_at < %(end)s
) l
GROUP BY 1, 2 ORDER BY 1, 2""",
)

# The gateways' own view, from their latest health report (a snapshot, not a history).
OUTBOXES = Query(
    "outboxes",
    """SELECT g.site_id AS site, g.id AS gateway, g.status, g.health_at AS reported,
       (g.health->'outbox'->>'depth')::bigint AS "waiting messages",
       (g.health->'outbox'->>'oldest_age_s')::float8 AS "oldest waiting s",
       (g.health->'outbox'->>'bytes')::bigint AS "waiting bytes",
       (g.health->'outbox'->>'dropped_points')::bigint AS "points dropped",
       (g.health->>'uptime_s')::float8 AS "uptime s"
FROM gateways g
ORDER BY (g.health->'outbox'->>'oldest_age_s')::float8 DESC NULLS LAST, g.site_id, g.id""",
)

# --- gateway health --------------------------------------------------------------------------

GATEWAY_COUNTS = Query(
    "gateway_counts",
    """SELECT count(*) FILTER (WHERE status = 'online') AS "online",
       count(*) FILTER (WHERE status <> 'online') AS "not online"
FROM gateways""",
)

DEVICE_COUNTS = Query(
    "device_counts",
    """SELECT count(*) FILTER (WHERE online) AS "online",
       count(*) FILTER (WHERE online IS FALSE) AS "offline"
FROM devices""",
)

OPEN_ALARM_COUNTS = Query(
    "open_alarm_counts",
    """SELECT count(*) FILTER (WHERE state = 'active') AS "active",
       count(*) FILTER (WHERE state = 'acknowledged') AS "acknowledged"
FROM alarms""",
)

DEAD_LETTER_COUNT = Query(
    "dead_letter_count",
    """SELECT count(*) AS "dead letters"
FROM dead_letters
WHERE received_at >= %(start)s AND received_at < %(end)s""",
)

DEAD_LETTERS_OVER_TIME = Query(
    "dead_letters_over_time",
    """SELECT community_time_bucket(%(bucket)s, received_at) AS "time", count(*) AS "dead letters"
FROM dead_letters
WHERE received_at >= %(start)s AND received_at < %(end)s
GROUP BY 1 ORDER BY 1""",
)

GATEWAYS = Query(
    "gateways",
    """SELECT g.id AS "gateway", g.site_id AS "site", g.name, g.status,
       g.status_since AS "status since", g.last_seen_at AS "last seen", g.version,
       count(d.id) AS "devices", count(d.id) FILTER (WHERE d.online) AS "devices online"
FROM gateways g
LEFT JOIN devices d ON d.gateway_id = g.id
GROUP BY g.id
ORDER BY g.site_id, g.id""",
)

OPEN_ALARMS_ALL_SITES = Query(
    "open_alarms_all_sites",
    """SELECT a.raised_at AS "raised", a.severity, a.state, a.source_type AS "source",
       coalesce(d.name, a.gateway_id) AS "device or gateway", a.rule, a.message
FROM alarms a
LEFT JOIN devices d ON d.id = a.device_id
WHERE a.state <> 'cleared'
ORDER BY a.raised_at DESC
LIMIT 100""",
)

DEVICES_OFFLINE = Query(
    "devices_offline",
    """SELECT d.gateway_id AS "gateway", d.name AS "device", d.building, d.floor, d.room,
       d.online_changed_at AS "offline since"
FROM devices d
WHERE d.online IS FALSE
ORDER BY d.online_changed_at""",
)

LATEST_DEAD_LETTERS = Query(
    "latest_dead_letters",
    """SELECT received_at AS "received", topic, reason, length(payload) AS "bytes"
FROM dead_letters
WHERE received_at >= %(start)s AND received_at < %(end)s
ORDER BY received_at DESC, id DESC
LIMIT 100""",
)
