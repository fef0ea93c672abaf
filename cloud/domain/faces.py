"""Face entry in the cloud: consent, enrolment of a photo as an encrypted encoding, withdrawal.

Face entry is opt-in. A face is enrolled only for a person whose consent is recorded (who
recorded it, when, how), and only for a person who holds a card: face must never be the only way
in, so the card path exists before the face path does (a lost card can be replaced; the office
sees who has faces and no valid card). Withdrawing consent deletes every encoding (and kept
photo) of the person; the next whitelist update removes them at every gateway.

The photo must show exactly one face, large enough; the 128-d encoding (dlib's ResNet model via
face_recognition, HOG detector) is compared with every other person's enrolled encodings, and a
match within the threshold is refused (one face, two people). The encoding is stored encrypted
(cloud/security/biometric.py) and never leaves the cloud except in gateway whitelists.
"""

import io
import uuid
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from PIL import Image, ImageOps, UnidentifiedImageError

from cloud.domain import audit, whitelist
from cloud.domain.access import Principal
from cloud.domain.errors import Refused
from cloud.security.biometric import FaceCipher

if TYPE_CHECKING:
    import numpy as np


class FaceRefused(Refused, ValueError):
    """A photo or request that cannot be enrolled; `status` is the HTTP answer, the message says why."""


@dataclass(frozen=True)
class FaceLimits:
    max_bytes: int
    max_pixels: int
    min_face_pixels: int
    match_threshold: float


def available() -> str | None:
    """None when face enrolment can run here; else why not (the `faces` extra is not installed)."""
    try:
        import face_recognition  # noqa: F401
        import numpy  # noqa: F401
    except ImportError as exc:
        return f"face enrolment is not installed on this server ({exc.name} missing: pip install '.[faces]')"
    return None


def load_photo(data: bytes, limits: FaceLimits) -> "np.ndarray":
    """The photo as an RGB array (EXIF rotation applied), or FaceRefused (422) saying why not."""
    import numpy as np

    if not data:
        raise FaceRefused(422, "photo: the file is empty")
    if len(data) > limits.max_bytes:
        raise FaceRefused(422, f"photo: too large ({len(data)} bytes; at most {limits.max_bytes})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            pixels = img.width * img.height
            if pixels > limits.max_pixels:
                raise FaceRefused(
                    422, f"photo: too large ({img.width}x{img.height} = {pixels} pixels; at most {limits.max_pixels})"
                )
            img = ImageOps.exif_transpose(img).convert("RGB")
    except FaceRefused:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise FaceRefused(422, f"photo: the image cannot be read ({type(exc).__name__}); send a JPEG or PNG") from None
    except Image.DecompressionBombWarning:
        raise FaceRefused(422, "photo: too large (a decompression bomb)") from None
    return np.asarray(img)


def encode_one_face(image: "np.ndarray", limits: FaceLimits) -> list[float]:
    """The encoding of the one face in the image; FaceRefused (422) for none, several or too small.

    CPU-heavy (HOG detection, then the ResNet encoding): call it from a worker thread.
    """
    import face_recognition

    boxes = face_recognition.face_locations(image, number_of_times_to_upsample=1, model="hog")
    if not boxes:
        raise FaceRefused(422, "photo: no face found; send a photo that shows the person's face from the front")
    if len(boxes) > 1:
        raise FaceRefused(422, f"photo: {len(boxes)} faces found; the photo must show exactly one person")
    top, right, bottom, left = boxes[0]
    size = min(right - left, bottom - top)
    if size < limits.min_face_pixels:
        raise FaceRefused(
            422, f"photo: the face is too small ({size} pixels across; at least {limits.min_face_pixels})"
        )
    encodings = face_recognition.face_encodings(image, known_face_locations=boxes, num_jitters=1, model="small")
    return [float(v) for v in encodings[0]]


def consent(conn: psycopg.Connection, person_id: int) -> dict[str, Any] | None:
    return conn.execute("SELECT * FROM face_consents WHERE person_id = %s", (person_id,)).fetchone()


def record_consent(
    conn: psycopg.Connection, person_id: int, *, method: str, note: str, who: Principal, now: datetime
) -> dict[str, Any]:
    row = conn.execute(
        """INSERT INTO face_consents (person_id, method, note, given_at, recorded_by) VALUES (%s, %s, %s, %s, %s)
           ON CONFLICT (person_id) DO UPDATE SET method = EXCLUDED.method, note = EXCLUDED.note,
               given_at = EXCLUDED.given_at, recorded_by = EXCLUDED.recorded_by
           RETURNING *""",
        (person_id, method, note, now, who.actor),
    ).fetchone()
    assert row is not None
    audit.record(conn, actor=who, action="face_consent", entity="people", entity_id=person_id, now=now, after=row)
    return row


def withdraw_consent(
    conn: psycopg.Connection, person_id: int, *, who: Principal, now: datetime, faces_dir: Path
) -> int | None:
    """Delete the consent and every encoding and kept photo; None when there was no consent."""
    row = conn.execute("DELETE FROM face_consents WHERE person_id = %s RETURNING *", (person_id,)).fetchone()
    if row is None:
        return None
    removed = conn.execute(
        "DELETE FROM face_enrolments WHERE person_id = %s RETURNING id, photo_id", (person_id,)
    ).fetchall()
    for face in removed:
        _delete_photo(faces_dir, face["photo_id"])
    audit.record(
        conn,
        actor=who,
        action="face_consent_withdrawn",
        entity="people",
        entity_id=person_id,
        now=now,
        before=row,
        after={"faces_deleted": len(removed)},
    )
    whitelist.touch_person(conn, person_id)
    return len(removed)


def _delete_photo(faces_dir: Path, photo_id: object) -> None:
    if photo_id is not None:
        (faces_dir / str(photo_id)).unlink(missing_ok=True)


def has_valid_card(conn: psycopg.Connection, person_id: int, now: datetime) -> bool:
    return (
        conn.execute(
            """SELECT 1 FROM cards WHERE person_id = %s AND lost_at IS NULL
                  AND (valid_until IS NULL OR valid_until > %s) LIMIT 1""",
            (person_id, now),
        ).fetchone()
        is not None
    )


def check_can_enrol(conn: psycopg.Connection, person_id: int, now: datetime) -> None:
    """FaceRefused (409) without consent or without a valid card."""
    if consent(conn, person_id) is None:
        raise FaceRefused(
            409,
            f"person {person_id} has not consented to face entry: record the consent first "
            f"(POST /api/v1/people/{person_id}/face-consent)",
        )
    if not has_valid_card(conn, person_id, now):
        raise FaceRefused(
            409,
            f"person {person_id} has no valid card: face must never be the only way in; "
            f"issue a card first (POST /api/v1/people/{person_id}/cards)",
        )


def nearest_other(
    conn: psycopg.Connection, cipher: FaceCipher, person_id: int, encoding: list[float]
) -> tuple[int, float] | None:
    """The other person whose enrolled face is nearest to this encoding, and the distance."""
    import numpy as np

    rows = conn.execute(
        "SELECT person_id, encoding_enc FROM face_enrolments WHERE person_id <> %s", (person_id,)
    ).fetchall()
    if not rows:
        return None
    matrix = np.stack([cipher.decrypt(r["person_id"], r["encoding_enc"]) for r in rows])
    distances = np.linalg.norm(matrix - np.asarray(encoding), axis=1)
    best = int(np.argmin(distances))
    return rows[best]["person_id"], float(distances[best])


def enrol(
    conn: psycopg.Connection,
    cipher: FaceCipher,
    person_id: int,
    encoding: list[float],
    *,
    limits: FaceLimits,
    photo: bytes | None,
    faces_dir: Path,
    who: Principal,
    now: datetime,
) -> dict[str, Any]:
    """Store the encoding (encrypted); FaceRefused (409) when it is another person's face."""
    # one enrolment at a time: two people enrolling the same face at once cannot both pass the check
    conn.execute("SELECT pg_advisory_xact_lock(7342005)")
    check_can_enrol(conn, person_id, now)
    nearest = nearest_other(conn, cipher, person_id, encoding)
    if nearest is not None and nearest[1] <= limits.match_threshold:
        raise FaceRefused(
            409,
            f"photo: this face is already enrolled for person {nearest[0]} (distance {nearest[1]:.2f}, "
            f"threshold {limits.match_threshold}); one face cannot belong to two people",
        )
    photo_id = None
    if photo is not None:
        photo_id = uuid.uuid4()
        faces_dir.mkdir(parents=True, exist_ok=True)
        (faces_dir / str(photo_id)).write_bytes(photo)
    row = conn.execute(
        """INSERT INTO face_enrolments (person_id, encoding_enc, photo_id, created_at, created_by)
           VALUES (%s, %s, %s, %s, %s) RETURNING id, person_id, photo_id, created_at, created_by""",
        (person_id, cipher.encrypt(person_id, encoding), photo_id, now, who.actor),
    ).fetchone()
    assert row is not None
    audit.record(
        conn,
        actor=who,
        action="face_enrolled",
        entity="people",
        entity_id=person_id,
        now=now,
        after={"face_id": row["id"], "photo_kept": photo_id is not None},
    )
    whitelist.touch_person(conn, person_id)
    return row


def list_faces(conn: psycopg.Connection, person_id: int) -> list[dict[str, Any]]:
    return conn.execute(
        """SELECT id, person_id, created_at, created_by, photo_id IS NOT NULL AS photo_kept
           FROM face_enrolments WHERE person_id = %s ORDER BY id""",
        (person_id,),
    ).fetchall()


def delete_face(
    conn: psycopg.Connection, person_id: int, face_id: int, *, who: Principal, now: datetime, faces_dir: Path
) -> bool:
    row = conn.execute(
        "DELETE FROM face_enrolments WHERE id = %s AND person_id = %s RETURNING id, photo_id", (face_id, person_id)
    ).fetchone()
    if row is None:
        return False
    _delete_photo(faces_dir, row["photo_id"])
    audit.record(
        conn,
        actor=who,
        action="face_deleted",
        entity="people",
        entity_id=person_id,
        now=now,
        before={"face_id": face_id},
    )
    whitelist.touch_person(conn, person_id)
    return True
