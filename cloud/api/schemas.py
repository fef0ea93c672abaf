"""Response shapes, so /docs shows what each endpoint returns."""

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel


class Health(BaseModel):
    status: str
    database: str
    schema_version: int
    storage: str


class MetricValue(BaseModel):
    value: Any
    ts: datetime
    unit: str | None = None


class DeviceOut(BaseModel):
    id: int
    name: str
    site_id: str
    gateway_id: str
    gateway_status: str
    profile: str | None
    protocol: str | None
    model: str | None
    building: str | None
    floor: str | None
    room: str | None
    online: bool | None
    online_changed_at: datetime | None
    last_seen_at: datetime | None
    announced: bool
    metrics: list[dict[str, Any]]
    #: the commands its profile defines (name, description, params with type and limits, roles), from the birth
    commands: list[dict[str, Any]] = []
    last_values: dict[str, MetricValue]


class Bucket(BaseModel):
    bucket: datetime
    min: float | None
    max: float | None
    mean: float | None
    count: int


class TelemetryOut(BaseModel):
    device_id: int
    metric: str
    unit: str | None
    start: datetime
    end: datetime
    bucket_seconds: int
    buckets: list[Bucket]


class AlarmOut(BaseModel):
    id: int
    source_type: str
    site_id: str | None
    gateway_id: str | None
    device_id: int | None
    device_name: str | None
    rule: str
    severity: str
    state: str
    message: str
    value: Any
    ticket_type: str
    ticket_number: str | None
    raised_at: datetime
    received_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    ack_note: str | None
    cleared_at: datetime | None
    clear_value: Any
    #: the camera's picture of the alarm (GET /api/v1/alarms/{id}/snapshot), when one came
    snapshot_id: UUID | None = None


class TicketOut(BaseModel):
    id: int
    number: str
    type: str
    category: str
    subcategory: str | None
    channel: str
    status: str
    priority: str
    title: str
    description: str
    site_id: str | None
    building_id: int | None
    building: str | None
    floor: str | None
    unit_id: int | None
    unit_number: str | None
    location: str | None
    source_type: str | None
    gateway_id: str | None
    device_id: int | None
    device_name: str | None
    alarm_id: int | None
    alarm_rule: str | None
    occurrences: int
    complainant_id: int | None
    complainant_name: str | None
    department_id: int | None
    department_name: str | None
    assignee_id: int | None
    assignee_name: str | None
    response_due_at: datetime | None
    resolution_due_at: datetime | None
    response_breached_at: datetime | None
    resolution_breached_at: datetime | None
    escalation_level: int
    on_hold_since: datetime | None
    first_response_at: datetime | None
    triaged_at: datetime | None
    assigned_at: datetime | None
    started_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    cancelled_at: datetime | None
    redirect_reason: str | None
    redirect_to: str | None
    plan: str | None
    work_done: str | None
    result_note: str | None
    cause_kind: str | None
    cause_code: str | None
    cause_note: str | None
    rating: int | None
    rating_comment: str | None
    rated_at: datetime | None
    reopen_count: int
    linked_to: str | None
    recomplaint_of: str | None
    created_at: datetime
    updated_at: datetime
    last_occurrence_at: datetime | None


class TimelineEntry(BaseModel):
    at: datetime
    actor: str
    kind: str
    body: str
    data: dict[str, Any]
    visibility: str


class TicketAlarm(BaseModel):
    id: int
    rule: str
    severity: str
    state: str
    raised_at: datetime
    acknowledged_at: datetime | None
    cleared_at: datetime | None


class AttachmentOut(BaseModel):
    id: UUID
    original_name: str
    content_type: str
    size_bytes: int
    visibility: str
    created_at: datetime


class TicketDetail(TicketOut):
    timeline: list[TimelineEntry]
    alarms: list[TicketAlarm]
    attachments: list[AttachmentOut]
    linked: list[str]


class GatewayOut(BaseModel):
    id: str
    site_id: str
    name: str
    version: str
    status: str
    status_reason: str | None
    status_since: datetime | None
    last_seen_at: datetime | None
    last_birth_at: datetime | None
    devices: int
    #: when POST /api/v1/gateways registered it (None: known only from its messages)
    registered_at: datetime | None = None
    credentials_issued_at: datetime | None = None
    #: the latest HealthMessage (uptime, outbox, config version; the list leaves out per-device health)
    health: dict[str, Any] | None = None
    health_at: datetime | None = None
    #: the configuration version the gateway runs (None: its local file) and the one the cloud wants
    config_running_version: int | None = None
    config_desired_version: int | None = None
    #: the gateway's last answer to a pushed version: `applied` or `refused` (with the reason)
    config_reported_version: int | None = None
    config_reported_status: str | None = None
    config_reported_reason: str | None = None
    config_reported_at: datetime | None = None


class BrokerCredentials(BaseModel):
    """Shown once: the cloud keeps no copy of the password."""

    username: str
    password: str


class GatewayRegistered(GatewayOut):
    #: None when the broker's logins are managed outside the cloud (COMMUNITY_BROKER_ADMIN=none)
    credentials: BrokerCredentials | None
    broker_admin: str


class ConfigVersionOut(BaseModel):
    version: int
    document: dict[str, Any]
    created_at: datetime
    created_by: str
    #: when the broker took the retained publish (None: waiting for the broker)
    published_at: datetime | None


class ConfigReportOut(BaseModel):
    version: int | None
    status: str | None
    reason: str | None
    at: datetime | None


class GatewayConfigOut(BaseModel):
    gateway_id: str
    desired: ConfigVersionOut | None
    running_version: int | None
    reported: ConfigReportOut


class CommandOut(BaseModel):
    #: also the CommandMessage's id and the CommandAck's command_id
    id: UUID
    device_id: int
    device: str
    gateway_id: str
    site_id: str
    command: str
    params: dict[str, Any]
    requested_by: str
    #: `pending`, `succeeded`, `failed`, `rejected` or `expired`
    state: str
    reason: str | None
    result: dict[str, Any] | None
    created_at: datetime
    expires_at: datetime
    published_at: datetime | None
    finished_at: datetime | None
    acked_at: datetime | None


class SiteOut(BaseModel):
    id: str
    name: str
    timezone: str
    gateways: int


class DeadLetterOut(BaseModel):
    id: int
    received_at: datetime
    topic: str
    reason: str
    payload_preview: str
    payload_bytes: int
