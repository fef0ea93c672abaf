"""Storage on every PostgreSQL under test: the embedded 18, and DATABASE_URL's server (15 here) when set."""

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from cloud.storage import migrate, telemetry
from cloud.storage.db import connect

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def test_migrations_are_applied_once_and_in_order(storage_url):
    assert migrate.upgrade(storage_url) == []  # the fixture already applied them all
    versions = [m.version for m in migrate.available()]
    assert versions == sorted(versions) and len(versions) >= 5
    assert migrate.current_version(storage_url) == versions[-1]


def test_time_bucket_function_matches_timescale_origin(storage_url):
    with connect(storage_url) as conn:
        row = conn.execute(
            """SELECT community_time_bucket('15 minutes', TIMESTAMPTZ '2026-11-24 10:07:00+00') AS a,
                      community_time_bucket('7 days', TIMESTAMPTZ '2026-11-26 10:00:00+00') AS b"""
        ).fetchone()
    assert row["a"] == datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    # weeks start on Monday, like TimescaleDB's default origin (2000-01-03)
    assert row["b"] == datetime(2026, 11, 23, tzinfo=UTC)


def test_copy_and_bucketed_aggregates(storage_url):
    parts = telemetry.Partitions()
    with connect(storage_url) as conn:
        parts.load(conn)
    rows = []
    for i in range(120):  # one value a second for two minutes: 0..119
        rows.append((T0 + timedelta(seconds=i), 7, "pressure", float(i), None))
    rows.append((T0, 7, "model", None, "WP-200"))
    rows.append((T0, 8, "pressure", 1000.0, None))  # another device: not in the answer
    parts.ensure(storage_url, [r[0] for r in rows])
    with connect(storage_url) as conn, conn.cursor() as cur:
        telemetry.copy_rows(cur, rows)
        conn.commit()
        result = telemetry.bucketed(
            conn, device_id=7, metric="pressure", start=T0, end=T0 + timedelta(minutes=2), bucket=timedelta(minutes=1)
        )
    assert [(r["bucket"], r["min"], r["max"], r["mean"], r["count"]) for r in result] == [
        (T0, 0.0, 59.0, 29.5, 60),
        (T0 + timedelta(minutes=1), 60.0, 119.0, 89.5, 60),
    ]


def test_partitions_are_created_per_month_and_dropped_past_retention(storage_url):
    parts = telemetry.Partitions()
    with connect(storage_url) as conn:
        parts.load(conn)
    if parts.timescale:
        pytest.skip("TimescaleDB manages chunks itself")  # never the case on the machines tests run on
    old = datetime(2024, 2, 10, tzinfo=UTC)
    parts.ensure(storage_url, [old, T0, datetime(2026, 12, 31, 23, 59, tzinfo=UTC)])
    with connect(storage_url) as conn:
        names = {
            r["relname"]
            for r in conn.execute(
                """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                   WHERE i.inhparent = 'telemetry'::regclass"""
            ).fetchall()
        }
    assert {"telemetry_y2024m02", "telemetry_y2026m11", "telemetry_y2026m12"} <= names
    with connect(storage_url) as conn, conn.cursor() as cur:
        telemetry.copy_rows(cur, [(old, 1, "x", 1.0, None), (T0, 1, "x", 2.0, None)])
        conn.commit()
    dropped = parts.drop_older_than(storage_url, T0 - timedelta(days=365))
    assert "telemetry_y2024m02" in dropped and "telemetry_y2026m11" not in dropped
    with connect(storage_url) as conn:
        assert conn.execute("SELECT count(*) AS n FROM telemetry").fetchone()["n"] == 1


def test_a_row_for_a_month_without_partition_is_refused_not_lost_silently(storage_url):
    """The ingest creates partitions first; without that, PostgreSQL refuses the row outright."""
    with connect(storage_url) as conn, conn.cursor() as cur, pytest.raises(psycopg.errors.CheckViolation):
        telemetry.copy_rows(cur, [(datetime(2031, 1, 1, tzinfo=UTC), 1, "x", 1.0, None)])
