"""People: residents and staff, their encrypted personal data, and the units residents live in.

Lists show personal data masked; one person's record shows it in full to those who may see it.
The service desk finds a caller by exact phone or ID number through the keyed hash.
"""

from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from cloud.domain import audit, records
from cloud.domain.access import Principal
from cloud.security.pii import Field, PiiCipher, mask

PII_FIELDS: tuple[Field, ...] = ("phone", "id_number", "email")

#: people the principal reaches: residents of units in their sites, staff of their sites
REACH_SQL = """(
    %(all_sites)s
    OR EXISTS (SELECT 1 FROM unit_occupants uo JOIN units un ON un.id = uo.unit_id
               JOIN buildings b ON b.id = un.building_id
               WHERE uo.person_id = p.id AND b.site_id = ANY(%(sites)s))
    OR EXISTS (SELECT 1 FROM staff_sites ss WHERE ss.person_id = p.id AND ss.site_id = ANY(%(sites)s))
    OR p.id = %(me)s
)"""


def reach_params(who: Principal) -> dict[str, Any]:
    return {"all_sites": who.site_ids is None, "sites": who.site_list() or [], "me": who.person_id}


def view(row: dict, cipher: PiiCipher, *, masked: bool) -> dict:
    """A person as the API shows it: personal data decrypted, masked for lists."""
    out: dict[str, Any] = {
        "id": row["id"],
        "kind": row["kind"],
        "full_name": row["full_name"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }
    for field in PII_FIELDS:
        blob = row.get(f"{field}_enc")
        value = cipher.decrypt(field, blob) if blob is not None else None
        out[field] = mask(field, value) if masked else value
    out["units"] = row.get("units") or []
    return out


def audit_view(values: dict, cipher: PiiCipher) -> dict:
    """What the audit log keeps of a person: masked personal data only."""
    return view(values, cipher, masked=True) if "kind" in values else values


def sealed(cipher: PiiCipher, data: dict[str, Any]) -> dict[str, Any]:
    """Columns for the given personal fields: ciphertext and lookup hash."""
    columns: dict[str, Any] = {}
    for field in PII_FIELDS:
        if field in data:
            enc, digest = cipher.seal(field, data[field])
            columns[f"{field}_enc"] = enc
            columns[f"{field}_hash"] = digest
    return columns


def get(conn: psycopg.Connection, who: Principal, person_id: int) -> dict | None:
    """One person within reach, with their units, or None."""
    return conn.execute(
        f"""SELECT p.*, ARRAY(SELECT jsonb_build_object('unit_id', uo.unit_id, 'relation', uo.relation)
                             FROM unit_occupants uo WHERE uo.person_id = p.id ORDER BY uo.unit_id) AS units
            FROM people p WHERE p.id = %(id)s AND {REACH_SQL}""",
        {"id": person_id, **reach_params(who)},
    ).fetchone()


def search(
    conn: psycopg.Connection,
    who: Principal,
    cipher: PiiCipher,
    *,
    phone: str | None = None,
    id_number: str | None = None,
    email: str | None = None,
    name: str | None = None,
    kind: str | None = None,
    unit_id: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict]:
    params = {
        **reach_params(who),
        "phone": cipher.lookup_hash("phone", phone) if phone else None,
        "id_number": cipher.lookup_hash("id_number", id_number) if id_number else None,
        "email": cipher.lookup_hash("email", email) if email else None,
        "name": f"%{name}%" if name else None,
        "kind": kind,
        "unit": unit_id,
        "limit": limit,
        "offset": offset,
    }
    return list(
        conn.execute(
            f"""SELECT p.*, ARRAY(SELECT jsonb_build_object('unit_id', uo.unit_id, 'relation', uo.relation)
                                 FROM unit_occupants uo WHERE uo.person_id = p.id ORDER BY uo.unit_id) AS units
                FROM people p
                WHERE {REACH_SQL}
                  AND (%(phone)s::bytea IS NULL OR p.phone_hash = %(phone)s)
                  AND (%(id_number)s::bytea IS NULL OR p.id_number_hash = %(id_number)s)
                  AND (%(email)s::bytea IS NULL OR p.email_hash = %(email)s)
                  AND (%(name)s::text IS NULL OR p.full_name ILIKE %(name)s)
                  AND (%(kind)s::text IS NULL OR p.kind = %(kind)s)
                  AND (%(unit)s::bigint IS NULL OR EXISTS (
                        SELECT 1 FROM unit_occupants x WHERE x.person_id = p.id AND x.unit_id = %(unit)s))
                ORDER BY p.full_name, p.id LIMIT %(limit)s OFFSET %(offset)s""",
            params,
        ).fetchall()
    )


def create(
    conn: psycopg.Connection,
    cipher: PiiCipher,
    *,
    kind: str,
    full_name: str,
    data: dict[str, Any],
    actor: Principal | str,
    now: datetime,
) -> dict:
    row = conn.execute(
        """INSERT INTO people (kind, full_name, phone_enc, phone_hash, id_number_enc, id_number_hash,
                               email_enc, email_hash, created_at, updated_at)
           VALUES (%(kind)s, %(full_name)s, %(phone_enc)s, %(phone_hash)s, %(id_number_enc)s, %(id_number_hash)s,
                   %(email_enc)s, %(email_hash)s, %(now)s, %(now)s)
           RETURNING *""",
        {
            "kind": kind,
            "full_name": full_name,
            "now": now,
            **{f"{f}_{s}": None for f in PII_FIELDS for s in ("enc", "hash")},
            **sealed(cipher, data),
        },
    ).fetchone()
    assert row is not None

    audit.record(
        conn,
        actor=actor,
        action="create",
        entity="people",
        entity_id=row["id"],
        now=now,
        after=view(row, cipher, masked=True),
    )
    return row


def update(
    conn: psycopg.Connection,
    cipher: PiiCipher,
    person_id: int,
    changes: dict[str, Any],
    *,
    actor: Principal,
    now: datetime,
) -> dict:

    before = records.fetch(conn, "people", person_id)
    if before is None:
        raise LookupError(f"person {person_id} does not exist")
    columns: dict[str, Any] = {k: v for k, v in changes.items() if k == "full_name"}
    columns.update(sealed(cipher, {k: v for k, v in changes.items() if k in PII_FIELDS}))
    if columns:
        columns["updated_at"] = now
        sets = sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder(c)) for c in columns)
        conn.execute(sql.SQL("UPDATE people SET {} WHERE id = %(id)s").format(sets), {**columns, "id": person_id})
    after = records.fetch(conn, "people", person_id)
    assert after is not None
    audit.record(
        conn,
        actor=actor,
        action="update",
        entity="people",
        entity_id=person_id,
        now=now,
        before=view(before, cipher, masked=True),
        after=view(after, cipher, masked=True),
    )
    return after


def set_occupancy(
    conn: psycopg.Connection, person_id: int, unit_id: int, relation: str, *, actor: Principal, now: datetime
) -> None:

    conn.execute(
        """INSERT INTO unit_occupants (unit_id, person_id, relation) VALUES (%s, %s, %s)
           ON CONFLICT (unit_id, person_id) DO UPDATE SET relation = EXCLUDED.relation""",
        (unit_id, person_id, relation),
    )
    audit.record(
        conn,
        actor=actor,
        action="link",
        entity="unit_occupants",
        entity_id=f"{unit_id}:{person_id}",
        now=now,
        after={"unit_id": unit_id, "person_id": person_id, "relation": relation},
    )


def remove_occupancy(
    conn: psycopg.Connection, person_id: int, unit_id: int, *, actor: Principal, now: datetime
) -> bool:

    row = conn.execute(
        "DELETE FROM unit_occupants WHERE unit_id = %s AND person_id = %s RETURNING *", (unit_id, person_id)
    ).fetchone()
    if row is None:
        return False
    audit.record(
        conn,
        actor=actor,
        action="unlink",
        entity="unit_occupants",
        entity_id=f"{unit_id}:{person_id}",
        now=now,
        before=row,
    )
    return True
