"""Gateways' remote configuration: validated, stored as numbered versions, reported back.

A version is checked as the gateway would check it (contract.gateway_config.RemoteConfig and
contract.profiles.parse_profile), plus what only the cloud knows: which profiles the gateway
has, from its births. The highest version is the desired one; the API's MQTT publisher sends
it retained on the gateway's `config` topic, and the gateway answers with a ConfigState.
"""

from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from pydantic import ValidationError

from cloud.domain import audit
from cloud.domain.access import Principal
from contract.common import format_validation_errors
from contract.gateway_config import RemoteConfig
from contract.ids import uuid7
from contract.messages import ConfigMessage, ConfigState
from contract.profiles import ProfileError, parse_profile


class InvalidConfig(ValueError):
    """A configuration the gateway would refuse; the message names the field."""


def known_profiles(conn: psycopg.Connection, gateway: str) -> dict[str, str | None]:
    """Profile ids the gateway's births announced (so its profile directory has them), with their protocol."""
    rows = conn.execute(
        "SELECT DISTINCT profile, protocol FROM devices WHERE gateway_id = %s AND profile IS NOT NULL", (gateway,)
    ).fetchall()
    return {r["profile"]: r["protocol"] for r in rows}


def validate(document: object, *, known: dict[str, str | None]) -> RemoteConfig:
    """The document as a RemoteConfig, or InvalidConfig naming the field of the first mistake."""
    if not isinstance(document, dict):
        raise InvalidConfig(f"(document): a configuration is a mapping, got {type(document).__name__}")
    try:
        config = RemoteConfig.model_validate(document)
    except ValidationError as exc:
        raise InvalidConfig(format_validation_errors(exc.errors(include_url=False))) from None
    protocols = dict(known)
    for profile_id, profile_doc in config.profiles.items():
        try:
            profile = parse_profile(profile_doc, profile_id=profile_id, source=f"profiles.{profile_id}")
        except ProfileError as exc:
            raise InvalidConfig(str(exc)) from None
        protocols[profile_id] = profile.protocol
    names: set[str] = set()
    for i, dev in enumerate(config.devices):
        if dev.name in names:
            raise InvalidConfig(f"devices[{i}].name: {dev.name!r} is used twice")
        names.add(dev.name)
        if dev.profile not in protocols:
            have = ", ".join(sorted(protocols)) or "none"
            raise InvalidConfig(
                f"devices[{i}].profile: no profile {dev.profile!r} in the pushed profiles or the gateway's "
                f"announced devices (known: {have})"
            )
        protocol = protocols[dev.profile]
        if protocol == "modbus" and dev.modbus is None:
            raise InvalidConfig(f"devices[{i}].modbus: profile {dev.profile!r} speaks Modbus; give host/port/unit")
        if protocol == "mqtt" and dev.mqtt is None:
            raise InvalidConfig(f"devices[{i}].mqtt: profile {dev.profile!r} speaks MQTT; give its topic")
    return config


def store(
    conn: psycopg.Connection, *, gateway: str, document: dict[str, Any], who: Principal, now: datetime
) -> dict[str, Any]:
    """Validate and store the next version for a gateway (locked, so versions never collide)."""
    locked = conn.execute("SELECT id FROM gateways WHERE id = %s FOR UPDATE", (gateway,)).fetchone()
    if locked is None:
        raise LookupError(f"gateway {gateway} does not exist")
    config = validate(document, known=known_profiles(conn, gateway))
    stored_doc = config.model_dump(mode="json", exclude_unset=True)
    row = conn.execute(
        """INSERT INTO gateway_configs (gateway_id, version, document, created_at, created_by, message_id)
           SELECT %s, coalesce(max(version), 0) + 1, %s, %s, %s, %s FROM gateway_configs WHERE gateway_id = %s
           RETURNING gateway_id, version, document, created_at, created_by, published_at""",
        (gateway, Jsonb(stored_doc), now, who.actor, uuid7(), gateway),
    ).fetchone()
    assert row is not None
    audit.record(
        conn,
        actor=who,
        action="push_config",
        entity="gateway",
        entity_id=gateway,
        now=now,
        after={"version": row["version"], "devices": len(config.devices), "profiles": sorted(config.profiles)},
    )
    return row


def desired(conn: psycopg.Connection, gateway: str) -> dict[str, Any] | None:
    return conn.execute(
        """SELECT version, document, created_at, created_by, published_at FROM gateway_configs
           WHERE gateway_id = %s ORDER BY version DESC LIMIT 1""",
        (gateway,),
    ).fetchone()


def unpublished(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Each gateway's newest version when the broker has not acknowledged it yet (older ones are moot)."""
    return conn.execute(
        """SELECT * FROM (
               SELECT DISTINCT ON (gc.gateway_id) gc.gateway_id, g.site_id, gc.version, gc.document,
                      gc.created_at, gc.message_id, gc.published_at
               FROM gateway_configs gc JOIN gateways g ON g.id = gc.gateway_id
               ORDER BY gc.gateway_id, gc.version DESC) latest
           WHERE published_at IS NULL"""
    ).fetchall()


def message_of(row: dict[str, Any]) -> ConfigMessage:
    return ConfigMessage(id=row["message_id"], ts=row["created_at"], version=row["version"], config=row["document"])


def mark_published(conn: psycopg.Connection, gateway: str, version: int, at: datetime) -> None:
    conn.execute(
        "UPDATE gateway_configs SET published_at = %s WHERE gateway_id = %s AND version = %s AND published_at IS NULL",
        (at, gateway, version),
    )


def record_running(conn: psycopg.Connection, *, gateway: str, version: int | None, at: datetime) -> None:
    """The version a gateway says it runs (birth, health, config state); an older report changes nothing."""
    conn.execute(
        """UPDATE gateways SET config_running_version = %s, config_running_at = %s
           WHERE id = %s AND (config_running_at IS NULL OR config_running_at <= %s)""",
        (version, at, gateway, at),
    )


def record_state(conn: psycopg.Connection, *, gateway: str, state: ConfigState) -> None:
    """A gateway's answer to a pushed version: applied, or refused with the reason."""
    conn.execute(
        """UPDATE gateways SET config_reported_version = %s, config_reported_status = %s,
               config_reported_reason = %s, config_reported_at = %s
           WHERE id = %s AND (config_reported_at IS NULL OR config_reported_at <= %s)""",
        (state.version, state.status, state.reason, state.ts, gateway, state.ts),
    )
    running = state.version if state.status == "applied" else state.running_version
    record_running(conn, gateway=gateway, version=running, at=state.ts)
