"""Announcing changes: one PostgreSQL NOTIFY per change, delivered to listeners when the transaction commits.

Live screens (cloud/web/live.py) and benchmarks LISTEN on one channel. The payload is small on purpose
(PostgreSQL caps it at 8,000 bytes, and every listener receives every notification): the kind of
change, the site it happened at (so each listener can keep only what its users reach) and ids, never
the record itself — a screen fetches details from the API, where the usual rights apply.

Kinds and their fields (besides `kind` and `site`) are listed in docs/web.md; add a row there with
every new kind.
"""

import json
from typing import Any

import psycopg

#: the one channel every change is announced on
NOTIFY_CHANNEL = "community_changes"


def notify(conn: psycopg.Connection, kind: str, data: dict[str, Any]) -> None:
    """Announce a change in the caller's transaction (nothing is sent if it rolls back).

    `data` should hold `site` (the site id) for anything a live screen shows: notifications
    without a site reach only users who see every site.
    """
    conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, json.dumps({"kind": kind, **data}, default=str)))
