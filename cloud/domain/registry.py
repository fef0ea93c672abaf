"""Sites, gateways and devices: recorded from birth messages, resolved for every message.

Functions that take a connection expect one with `dict_row` rows (cloud.storage.db).

A gateway may send telemetry before the cloud has seen its birth (a retained birth lost with
a broker's data, a cloud that started late); the resolver then creates placeholder rows so
that nothing is refused, and the birth fills them in when it comes.
"""

import threading
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

from contract.messages import BirthMessage, HealthMessage, InvalidMessage


@dataclass(frozen=True)
class DeviceRef:
    id: int
    name: str
    gateway_id: str
    site_id: str
    site_timezone: str
    building: str | None
    floor: str | None
    room: str | None


class SiteMismatch(InvalidMessage):
    pass


def record_birth(conn: psycopg.Connection, *, site: str, gateway: str, birth: BirthMessage, now: datetime) -> int:
    """Record what a birth message announces; returns the number of devices announced."""
    if birth.site.id != site or birth.gateway.id != gateway:
        raise InvalidMessage(
            f"birth message: site/gateway in the payload ({birth.site.id}/{birth.gateway.id}) "
            f"differ from the topic ({site}/{gateway})"
        )
    conn.execute(
        """INSERT INTO sites (id, name, timezone) VALUES (%s, %s, %s)
           ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, timezone = EXCLUDED.timezone, updated_at = now()""",
        (birth.site.id, birth.site.name, birth.site.timezone),
    )
    row = conn.execute(
        """INSERT INTO gateways (id, site_id, name, version, last_birth_at, last_seen_at)
           VALUES (%s, %s, %s, %s, %s, %s)
           ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, version = EXCLUDED.version,
               last_birth_at = EXCLUDED.last_birth_at, last_seen_at = EXCLUDED.last_seen_at
           RETURNING site_id""",
        (gateway, site, birth.gateway.name, birth.gateway.version, now, now),
    ).fetchone()
    assert row is not None
    registered_site = row["site_id"]
    if registered_site != site:
        raise SiteMismatch(f"gateway {gateway!r} is registered at site {registered_site!r}, not {site!r}")
    names = [d.name for d in birth.devices]
    for dev in birth.devices:
        conn.execute(
            """INSERT INTO devices
                   (gateway_id, name, profile, protocol, model, building, floor, room, metrics, commands, announced)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, true)
               ON CONFLICT (gateway_id, name) DO UPDATE SET
                   profile = EXCLUDED.profile, protocol = EXCLUDED.protocol, model = EXCLUDED.model,
                   building = EXCLUDED.building, floor = EXCLUDED.floor, room = EXCLUDED.room,
                   metrics = EXCLUDED.metrics, commands = EXCLUDED.commands, announced = true""",
            (
                gateway,
                dev.name,
                dev.profile,
                dev.protocol,
                dev.model,
                dev.location.building,
                dev.location.floor,
                dev.location.room,
                Jsonb([m.model_dump(exclude_none=True) for m in dev.metrics]),
                Jsonb([c.model_dump(mode="json", exclude_none=True) for c in dev.commands]),
            ),
        )
    # devices the gateway no longer announces keep their history, flagged as not announced
    conn.execute(
        "UPDATE devices SET announced = false WHERE gateway_id = %s AND announced AND NOT (name = ANY(%s))",
        (gateway, names),
    )
    return len(names)


def record_health(conn: psycopg.Connection, *, gateway: str, health: HealthMessage) -> None:
    """Keep a gateway's latest health report; an older one arriving late changes nothing."""
    conn.execute(
        """UPDATE gateways SET health = %s, health_at = %s
           WHERE id = %s AND (health_at IS NULL OR health_at <= %s)""",
        (Jsonb(health.model_dump(mode="json", exclude={"v", "id", "ts"})), health.ts, gateway, health.ts),
    )


class Resolver:
    """Maps (site, gateway, device name) to device ids, with a cache; thread-safe.

    Creates placeholder rows in their own committed transaction, so the caller's batch can roll
    back without leaving the cache pointing at rows that do not exist.
    """

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._devices: dict[tuple[str, str], int] = {}
        self._gateway_site: dict[str, str] = {}
        self._lock = threading.Lock()
        self._conn: psycopg.Connection | None = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._url, autocommit=True)
        return self._conn

    def forget_gateway(self, gateway: str) -> None:
        with self._lock:
            self._gateway_site.pop(gateway, None)

    def check_gateway(self, site: str, gateway: str) -> None:
        """Create the gateway (and site) when unknown; refuse a gateway that moved site."""
        with self._lock:
            known = self._gateway_site.get(gateway)
            if known is None:
                conn = self._connection()
                conn.execute("INSERT INTO sites (id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING", (site, site))
                conn.execute(
                    "INSERT INTO gateways (id, site_id) VALUES (%s, %s) ON CONFLICT DO NOTHING", (gateway, site)
                )
                row = conn.execute("SELECT site_id FROM gateways WHERE id = %s", (gateway,)).fetchone()
                known = row[0] if row else site
                self._gateway_site[gateway] = known
        if known != site:
            raise SiteMismatch(f"gateway {gateway!r} is registered at site {known!r}, not {site!r}")

    def device_ids(self, site: str, gateway: str, names: set[str]) -> dict[str, int]:
        self.check_gateway(site, gateway)
        result: dict[str, int] = {}
        missing = []
        with self._lock:
            for name in names:
                device_id = self._devices.get((gateway, name))
                if device_id is None:
                    missing.append(name)
                else:
                    result[name] = device_id
            if missing:
                conn = self._connection()
                for name in missing:
                    row = conn.execute(
                        """INSERT INTO devices (gateway_id, name) VALUES (%s, %s)
                           ON CONFLICT (gateway_id, name) DO UPDATE SET name = EXCLUDED.name
                           RETURNING id""",
                        (gateway, name),
                    ).fetchone()
                    assert row is not None
                    self._devices[(gateway, name)] = row[0]
                    result[name] = row[0]
        return result

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def device_ref(conn: psycopg.Connection, device_id: int) -> DeviceRef:
    row = conn.execute(
        """SELECT d.id, d.name, d.gateway_id, g.site_id, s.timezone, d.building, d.floor, d.room
           FROM devices d JOIN gateways g ON g.id = d.gateway_id JOIN sites s ON s.id = g.site_id
           WHERE d.id = %s""",
        (device_id,),
    ).fetchone()
    if row is None:
        raise LookupError(f"device {device_id} does not exist")
    return DeviceRef(
        id=row["id"],
        name=row["name"],
        gateway_id=row["gateway_id"],
        site_id=row["site_id"],
        site_timezone=row["timezone"],
        building=row["building"],
        floor=row["floor"],
        room=row["room"],
    )


def site_timezone(conn: psycopg.Connection, site_id: str) -> str:
    row = conn.execute("SELECT timezone FROM sites WHERE id = %s", (site_id,)).fetchone()
    if row is None:
        return "UTC"
    return row["timezone"]


def set_gateway_status(
    conn: psycopg.Connection, *, gateway: str, state: str, reason: str | None, at: datetime
) -> str | None:
    """Record a gateway's status; returns the previous status."""
    row = conn.execute(
        """UPDATE gateways g SET status = %s, status_reason = %s, status_since = %s,
               last_seen_at = CASE WHEN %s = 'online' THEN %s ELSE g.last_seen_at END
           FROM (SELECT id, status FROM gateways WHERE id = %s FOR UPDATE) old
           WHERE g.id = old.id
           RETURNING old.status""",
        (state, reason, at, state, at, gateway),
    ).fetchone()
    if row is None:
        return None
    return row["status"]


def set_device_online(conn: psycopg.Connection, *, device_id: int, online: bool, at: datetime) -> None:
    """Record a device's reachability; an older report arriving late changes nothing."""
    conn.execute(
        """UPDATE devices SET online = %s, online_changed_at = %s
           WHERE id = %s AND (online_changed_at IS NULL OR online_changed_at <= %s)""",
        (online, at, device_id, at),
    )
