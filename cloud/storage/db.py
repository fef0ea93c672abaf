"""Connections: one pool per process, rows as dicts for the API."""

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool


def make_pool(database_url: str, *, min_size: int = 1, max_size: int = 10, name: str = "cloud") -> ConnectionPool:
    pool = ConnectionPool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        kwargs={"row_factory": dict_row, "autocommit": False},
        name=name,
        open=False,
        check=ConnectionPool.check_connection,
    )
    pool.open(wait=True, timeout=30)
    return pool


def connect(database_url: str, **kwargs: object) -> psycopg.Connection:
    return psycopg.connect(database_url, row_factory=dict_row, **kwargs)  # type: ignore[arg-type]


def has_timescaledb(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') AS ts").fetchone()
    return bool(row and (row["ts"] if isinstance(row, dict) else row[0]))
