"""Upload photos to a ticket; download them (those who reach the ticket; residents what is shared)."""

from typing import Annotated, Literal
from urllib.parse import quote
from uuid import UUID

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import FileResponse
from psycopg import sql

from cloud.api.deps import ClockDep, Conn, PrincipalDep
from cloud.api.errors import ApiError
from cloud.api.routers.tickets import Number
from cloud.api.schemas import AttachmentOut
from cloud.domain import attachments, audit, workflow
from cloud.domain.access import Role, ticket_scope
from cloud.domain.tickets import add_event

router = APIRouter(prefix="/api/v1", tags=["tickets"])


@router.post("/tickets/{number}/attachments", response_model=AttachmentOut, status_code=201)
def upload(
    number: Number,
    request: Request,
    conn: Conn,
    clock: ClockDep,
    who: PrincipalDep,
    file: Annotated[UploadFile, File(description="a JPEG, PNG or WebP photo, or a PDF")],
    visibility: Annotated[Literal["internal", "shared"], Form()] = "shared",
) -> dict:
    """Attach a photo (evidence, the fix, the resident's own). Checked by content, not by name."""
    ticket = workflow.load(conn, who, number)
    if ticket["status"] in ("closed", "cancelled", "redirected"):
        raise ApiError(409, f"ticket {number} is {ticket['status']}: nothing more is added to it")
    if who.role == Role.RESIDENT:
        visibility = "shared"
    settings = request.app.state.settings
    try:
        data = attachments.read_capped(file.file, settings.attachment_max_bytes)
        stored = attachments.store(settings.attachments_dir, data, file.filename)
    except attachments.AttachmentRefused as exc:
        raise ApiError(422, str(exc)) from None
    now = clock.now()
    row = conn.execute(
        """INSERT INTO attachments (id, ticket_id, uploaded_by, original_name, content_type, size_bytes, sha256,
                                    visibility, created_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
           RETURNING id, original_name, content_type, size_bytes, visibility, created_at""",
        (
            stored.id,
            ticket["id"],
            who.user_id,
            stored.original_name,
            stored.content_type,
            stored.size,
            stored.sha256,
            visibility,
            now,
        ),
    ).fetchone()
    add_event(
        conn,
        ticket["id"],
        at=now,
        kind="attachment",
        actor=who.actor,
        actor_user_id=who.user_id,
        visibility=visibility,
        body=f"Added {stored.original_name} ({stored.content_type}, {stored.size} bytes).",
        data={"attachment_id": str(stored.id)},
    )
    audit.record(conn, actor=who, action="attach", entity="attachments", entity_id=stored.id, now=now, after=row)
    return row


@router.get("/attachments/{attachment_id}", response_class=FileResponse)
def download(attachment_id: UUID, request: Request, conn: Conn, who: PrincipalDep) -> FileResponse:
    row = conn.execute(
        """SELECT a.*, t.id AS tid FROM attachments a JOIN tickets t ON t.id = a.ticket_id
           WHERE a.id = %s AND (a.visibility = 'shared' OR %s)""",
        (attachment_id, who.role != Role.RESIDENT),
    ).fetchone()
    reachable = (
        row is not None
        and conn.execute(
            sql.SQL("SELECT 1 FROM tickets t WHERE t.id = %s AND {}").format(ticket_scope(who)), (row["tid"],)
        ).fetchone()
    )
    if not reachable:
        raise ApiError(404, f"attachment {attachment_id} does not exist")
    path = attachments.path_of(request.app.state.settings.attachments_dir, attachment_id)
    if not path.exists():
        raise ApiError(410, f"attachment {attachment_id}: the file is gone from storage")
    return FileResponse(
        path,
        media_type=row["content_type"],
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(row['original_name'])}",
            "X-Content-Type-Options": "nosniff",
        },
    )
