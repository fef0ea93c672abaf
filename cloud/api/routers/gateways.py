"""Gateways: their state and health, registration with broker credentials, remote configuration."""

from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Body, Depends, Query, Request
from pydantic import BaseModel, Field

from cloud.api.deps import ClockDep, Conn, allow
from cloud.api.errors import ApiError
from cloud.api.schemas import GatewayConfigOut, GatewayOut, GatewayRegistered
from cloud.broker_admin import BrokerAdminError, new_password
from cloud.domain import audit, remote_config, whitelist
from cloud.domain.access import STAFF, Principal, Role
from contract.common import Slug

router = APIRouter(prefix="/api/v1/gateways", tags=["gateways"])
Staff = Annotated[Principal, Depends(allow(*STAFF))]
Admin = Annotated[Principal, Depends(allow(Role.ADMIN))]

_GATEWAYS = """
    SELECT g.id, g.site_id, g.name, g.version, g.status, g.status_reason, g.status_since, g.last_seen_at,
           g.last_birth_at, g.registered_at, g.credentials_issued_at, g.health, g.health_at,
           g.config_running_version, g.config_reported_version, g.config_reported_status,
           g.config_reported_reason, g.config_reported_at,
           (SELECT count(*) FROM devices d WHERE d.gateway_id = g.id) AS devices,
           (SELECT max(version) FROM gateway_configs c WHERE c.gateway_id = g.id) AS config_desired_version
    FROM gateways g
"""


class GatewayIn(BaseModel):
    id: Slug
    site: Slug
    name: Annotated[str, Field(max_length=500)] = ""


def _gateway(conn: psycopg.Connection, who: Principal, gateway_id: str) -> dict[str, Any]:
    row = conn.execute(_GATEWAYS + "WHERE g.id = %s", (gateway_id,)).fetchone()
    if row is None or not who.reaches_site(row["site_id"]):
        raise ApiError(404, f"gateway {gateway_id} does not exist")
    return row


@router.get("", response_model=list[GatewayOut])
def list_gateways(
    conn: Conn, who: Staff, site: Annotated[str | None, Query(max_length=63)] = None
) -> list[dict[str, Any]]:
    """Gateways with their status (online, or offline from their last will), health and configuration versions."""
    rows = conn.execute(
        _GATEWAYS
        + """WHERE (%(site)s::text IS NULL OR g.site_id = %(site)s) AND (%(all)s OR g.site_id = ANY(%(sites)s))
             ORDER BY g.site_id, g.id""",
        {"site": site, "all": who.site_ids is None, "sites": who.site_list() or []},
    ).fetchall()
    for row in rows:
        if row["health"] is not None:  # per-device health only in the detail
            row["health"] = {k: v for k, v in row["health"].items() if k != "devices"}
    return rows


@router.get("/{gateway_id}", response_model=GatewayOut)
def get_gateway(gateway_id: str, conn: Conn, who: Staff) -> dict[str, Any]:
    """One gateway, with its full latest health report (per-device poll success and latency)."""
    return _gateway(conn, who, gateway_id)


def _issue(request: Request, site: str, gateway: str) -> str:
    admin = request.app.state.broker_admin
    password = new_password()
    try:
        admin.set_gateway(site=site, gateway=gateway, password=password)
    except BrokerAdminError as exc:
        raise ApiError(503, f"the broker did not take the gateway's login: {exc}") from None
    return password


@router.post("", response_model=GatewayRegistered, status_code=201)
def register_gateway(body: GatewayIn, request: Request, conn: Conn, clock: ClockDep, who: Admin) -> dict[str, Any]:
    """Register a gateway at a site and issue its broker login (username = gateway id).

    The password is in this answer only; the cloud keeps no copy (the broker keeps a hash).
    """
    now = clock.now()
    if conn.execute("SELECT 1 FROM sites WHERE id = %s", (body.site,)).fetchone() is None:
        raise ApiError(422, f"site: no site {body.site!r}; register it first with POST /api/v1/sites")
    existing = conn.execute(
        "SELECT site_id, registered_at FROM gateways WHERE id = %s FOR UPDATE", (body.id,)
    ).fetchone()
    if existing is not None and existing["site_id"] != body.site:
        raise ApiError(409, f"gateway {body.id} is known at site {existing['site_id']}, not {body.site}")
    if existing is not None and existing["registered_at"] is not None:
        raise ApiError(
            409,
            f"gateway {body.id} is already registered; POST /api/v1/gateways/{body.id}/credentials issues a new login",
        )
    conn.execute(
        """INSERT INTO gateways (id, site_id, name, registered_at, registered_by) VALUES (%s, %s, %s, %s, %s)
           ON CONFLICT (id) DO UPDATE SET registered_at = EXCLUDED.registered_at,
               registered_by = EXCLUDED.registered_by,
               name = CASE WHEN EXCLUDED.name <> '' THEN EXCLUDED.name ELSE gateways.name END""",
        (body.id, body.site, body.name, now, who.actor),
    )
    credentials = None
    if request.app.state.broker_admin is not None:
        # the broker first: if it refuses, the registration rolls back and can simply be repeated
        password = _issue(request, body.site, body.id)
        conn.execute("UPDATE gateways SET credentials_issued_at = %s WHERE id = %s", (now, body.id))
        credentials = {"username": body.id, "password": password}
    audit.record(
        conn,
        actor=who,
        action="register_gateway",
        entity="gateway",
        entity_id=body.id,
        now=now,
        after={"site": body.site, "name": body.name, "broker_login": credentials is not None},
    )
    row = _gateway(conn, who, body.id)
    return {**row, "credentials": credentials, "broker_admin": request.app.state.settings.broker_admin}


@router.post("/{gateway_id}/credentials", response_model=GatewayRegistered)
def issue_credentials(gateway_id: str, request: Request, conn: Conn, clock: ClockDep, who: Admin) -> dict[str, Any]:
    """A new broker password for the gateway; the old one stops working at once (and its connection drops)."""
    row = _gateway(conn, who, gateway_id)
    if request.app.state.broker_admin is None:
        raise ApiError(409, "the cloud does not manage broker logins here (COMMUNITY_BROKER_ADMIN=none)")
    now = clock.now()
    password = _issue(request, row["site_id"], gateway_id)
    conn.execute("UPDATE gateways SET credentials_issued_at = %s WHERE id = %s", (now, gateway_id))
    audit.record(conn, actor=who, action="issue_gateway_credentials", entity="gateway", entity_id=gateway_id, now=now)
    row = _gateway(conn, who, gateway_id)
    return {**row, "credentials": {"username": gateway_id, "password": password}, "broker_admin": "dynsec"}


def _config_out(conn: psycopg.Connection, gateway: dict[str, Any]) -> dict[str, Any]:
    return {
        "gateway_id": gateway["id"],
        "desired": remote_config.desired(conn, gateway["id"]),
        "running_version": gateway["config_running_version"],
        "reported": {
            "version": gateway["config_reported_version"],
            "status": gateway["config_reported_status"],
            "reason": gateway["config_reported_reason"],
            "at": gateway["config_reported_at"],
        },
    }


@router.put("/{gateway_id}/config", response_model=GatewayConfigOut)
def put_config(
    gateway_id: str,
    document: Annotated[dict[str, Any], Body(description="the configuration: contract.gateway_config.RemoteConfig")],
    request: Request,
    conn: Conn,
    clock: ClockDep,
    who: Admin,
) -> dict[str, Any]:
    """Store the gateway's next configuration version and push it (retained) to the gateway."""
    gateway = _gateway(conn, who, gateway_id)
    try:
        stored = remote_config.store(conn, gateway=gateway_id, document=document, who=who, now=clock.now())
    except remote_config.InvalidConfig as exc:
        raise ApiError(422, str(exc)) from None
    if "access" in stored["document"]:  # without it the gateway keeps its local file's doors
        whitelist.sync_doors(conn, gateway_id, gateway["site_id"], stored["document"]["access"])
    conn.commit()  # before the publisher looks for it
    request.app.state.downlink.wake()
    return _config_out(conn, _gateway(conn, who, gateway_id))


@router.get("/{gateway_id}/config", response_model=GatewayConfigOut)
def get_config(gateway_id: str, conn: Conn, who: Admin) -> dict[str, Any]:
    """The desired configuration (version and document) and what the gateway last reported."""
    return _config_out(conn, _gateway(conn, who, gateway_id))
