"""The latest value of every metric per device, kept in memory and written about once a second.

Writing `devices.last_values` on every batch would cost an UPDATE per device per batch; the
telemetry table stays the source of truth, this is the quick answer for device lists.
"""

import threading
from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

from cloud.domain.changes import notify
from contract.common import Value


class LastValues:
    def __init__(self) -> None:
        self._latest: dict[int, dict[str, tuple[datetime, Value]]] = {}
        self._dirty: dict[int, dict[str, tuple[datetime, Value]]] = {}
        self._gateways_seen: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def update_many(
        self,
        readings: list[tuple[int, datetime, dict[str, Value]]],
        *,
        gateways: set[str] = frozenset(),  # type: ignore[assignment]
        seen_at: datetime | None = None,
    ) -> None:
        """Take a committed batch's readings (device id, time, values); older values never win."""
        with self._lock:
            for device_id, ts, values in readings:
                latest = self._latest.setdefault(device_id, {})
                dirty = None
                for metric, value in values.items():
                    known = latest.get(metric)
                    if known is None or known[0] <= ts:
                        latest[metric] = (ts, value)
                        if dirty is None:
                            dirty = self._dirty.setdefault(device_id, {})
                        dirty[metric] = (ts, value)
            if seen_at is not None:
                for gateway in gateways:
                    self._gateways_seen[gateway] = seen_at

    def flush(self, conn: psycopg.Connection) -> int:
        with self._lock:
            dirty, self._dirty = self._dirty, {}
            gateways, self._gateways_seen = self._gateways_seen, {}
        if not dirty and not gateways:
            return 0
        try:
            with conn.transaction():
                if dirty:
                    ids, docs, seen = [], [], []
                    for device_id, metrics in dirty.items():
                        ids.append(device_id)
                        docs.append(Jsonb({m: {"value": v, "ts": ts.isoformat()} for m, (ts, v) in metrics.items()}))
                        seen.append(max(ts for ts, _ in metrics.values()))
                    sites = conn.execute(
                        """WITH changed AS (
                               UPDATE devices d
                               SET last_values = d.last_values || v.doc,
                                   last_seen_at = greatest(d.last_seen_at, v.seen)
                               FROM unnest(%s::bigint[], %s::jsonb[], %s::timestamptz[]) AS v(id, doc, seen)
                               WHERE d.id = v.id
                               RETURNING d.gateway_id)
                           SELECT g.site_id, count(*) AS devices
                           FROM changed c JOIN gateways g ON g.id = c.gateway_id GROUP BY g.site_id""",
                        (ids, docs, seen),
                    ).fetchall()
                    for site in sites:
                        # at most one a flush (about a second) per site: the device board refetches
                        notify(conn, "last_values", {"site": site["site_id"], "devices": site["devices"]})
                if gateways:
                    conn.execute(
                        """UPDATE gateways g SET last_seen_at = greatest(g.last_seen_at, v.seen)
                           FROM unnest(%s::text[], %s::timestamptz[]) AS v(id, seen) WHERE g.id = v.id""",
                        (list(gateways), list(gateways.values())),
                    )
        except Exception:
            # put them back so the next flush writes them
            with self._lock:
                for device_id, metrics in dirty.items():
                    target = self._dirty.setdefault(device_id, {})
                    for metric, entry in metrics.items():
                        if metric not in target or target[metric][0] <= entry[0]:
                            target[metric] = entry
                for gw, at in gateways.items():
                    self._gateways_seen.setdefault(gw, at)
            raise
        return len(dirty)
