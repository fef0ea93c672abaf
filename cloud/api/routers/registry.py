from typing import Annotated

from fastapi import APIRouter, Depends, Query

from cloud.api.deps import Conn, allow
from cloud.api.schemas import DeadLetterOut, SiteOut
from cloud.domain.access import STAFF, Principal, Role

router = APIRouter(prefix="/api/v1", tags=["registry"])
Staff = Annotated[Principal, Depends(allow(*STAFF))]


@router.get("/sites", response_model=list[SiteOut])
def list_sites(conn: Conn, who: Staff) -> list[dict]:
    return conn.execute(
        """SELECT s.id, s.name, s.timezone, count(g.id) AS gateways
           FROM sites s LEFT JOIN gateways g ON g.site_id = s.id
           WHERE %(all)s OR s.id = ANY(%(sites)s) GROUP BY s.id ORDER BY s.id""",
        {"all": who.site_ids is None, "sites": who.site_list() or []},
    ).fetchall()


@router.get("/dead-letters", response_model=list[DeadLetterOut])
def list_dead_letters(
    conn: Conn,
    _who: Annotated[Principal, Depends(allow(Role.ADMIN))],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[dict]:
    """Messages that failed validation, newest first, with the reason (the full payload stays in the database)."""
    rows = conn.execute(
        """SELECT id, received_at, topic, reason, substring(payload FROM 1 FOR 500) AS head, length(payload) AS n
           FROM dead_letters ORDER BY received_at DESC, id DESC LIMIT %s OFFSET %s""",
        (limit, offset),
    ).fetchall()
    return [
        {
            "id": r["id"],
            "received_at": r["received_at"],
            "topic": r["topic"],
            "reason": r["reason"],
            "payload_preview": bytes(r["head"]).decode("utf-8", errors="replace"),
            "payload_bytes": r["n"],
        }
        for r in rows
    ]
