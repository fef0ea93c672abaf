from fastapi import APIRouter

from cloud.api.deps import Conn
from cloud.api.schemas import Health
from cloud.storage.db import has_timescaledb

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz(conn: Conn) -> Health:
    """Up, and the database answers; the schema version and which telemetry storage is in use."""
    row = conn.execute("SELECT coalesce(max(version), 0) AS v FROM schema_migrations").fetchone()
    return Health(
        status="ok",
        database="ok",
        schema_version=row["v"] if row else 0,
        storage="timescaledb" if has_timescaledb(conn) else "postgresql-partitioned",
    )
