"""Response shapes, so /docs shows what each endpoint returns."""

from datetime import datetime
from typing import Any

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
    building: str | None
    floor: str | None
    location: str | None
    source_type: str | None
    gateway_id: str | None
    device_id: int | None
    device_name: str | None
    alarm_id: int | None
    alarm_rule: str | None
    occurrences: int
    created_at: datetime
    updated_at: datetime
    last_occurrence_at: datetime | None
    closed_at: datetime | None


class TimelineEntry(BaseModel):
    at: datetime
    actor: str
    kind: str
    body: str
    data: dict[str, Any]


class TicketAlarm(BaseModel):
    id: int
    rule: str
    severity: str
    state: str
    raised_at: datetime
    acknowledged_at: datetime | None
    cleared_at: datetime | None


class TicketDetail(TicketOut):
    timeline: list[TimelineEntry]
    alarms: list[TicketAlarm]


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
