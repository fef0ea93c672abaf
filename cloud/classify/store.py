"""The classifier's rows: trained models (one active), predictions per ticket, staff overrides (0016)."""

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.types.json import Jsonb

if TYPE_CHECKING:  # the workflow imports this module; scikit-learn stays out of that import
    from cloud.classify.model import Prediction

#: advisory lock held while a model is trained and stored: one training at a time across processes
TRAINING_LOCK = 7_342_016


@dataclass(frozen=True)
class NewModel:
    """A trained model as it is stored."""

    blob: bytes
    digest: str
    params: dict[str, Any]
    figures: dict[str, Any]
    corpus_hash: str
    corpus_training: int
    corpus_held_out: int
    overrides_used: int


def lock_training(conn: psycopg.Connection) -> None:
    """Until the transaction ends, no other process trains or activates a model."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (TRAINING_LOCK,))


def active_ref(conn: psycopg.Connection) -> dict | None:
    """The active model's id and digest (an index lookup: cheap enough for every classification)."""
    return conn.execute("SELECT id, digest FROM classifier_models WHERE active").fetchone()


#: every column but the pickled model
SUMMARY_COLUMNS = """id, digest, params, figures, corpus_hash, corpus_training, corpus_held_out, overrides_used,
                     active, created_at, created_by, created_by_user_id, activated_at, note"""


def get_summary(conn: psycopg.Connection, model_id: int) -> dict | None:
    """A model's figures and history, without the pickled model."""
    return conn.execute(f"SELECT {SUMMARY_COLUMNS} FROM classifier_models WHERE id = %s", (model_id,)).fetchone()


def get_blob(conn: psycopg.Connection, model_id: int) -> bytes | None:
    row = conn.execute("SELECT model FROM classifier_models WHERE id = %s", (model_id,)).fetchone()
    return bytes(row["model"]) if row else None


def insert_model(
    conn: psycopg.Connection,
    new: NewModel,
    *,
    created_by: str,
    user_id: int | None,
    now: datetime,
    note: str = "",
) -> int:
    row = conn.execute(
        """INSERT INTO classifier_models (model, digest, params, figures, corpus_hash, corpus_training,
                                          corpus_held_out, overrides_used, created_at, created_by,
                                          created_by_user_id, note)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
        (
            new.blob,
            new.digest,
            Jsonb(new.params),
            Jsonb(new.figures),
            new.corpus_hash,
            new.corpus_training,
            new.corpus_held_out,
            new.overrides_used,
            now,
            created_by,
            user_id,
            note,
        ),
    ).fetchone()
    assert row is not None
    return row["id"]


def activate(conn: psycopg.Connection, model_id: int, now: datetime) -> None:
    """Make this model the one every process uses (they notice at their next classification)."""
    conn.execute("UPDATE classifier_models SET active = false WHERE active AND id <> %s", (model_id,))
    conn.execute("UPDATE classifier_models SET active = true, activated_at = %s WHERE id = %s", (now, model_id))


def record_prediction(
    conn: psycopg.Connection,
    *,
    ticket_id: int,
    model_id: int,
    text: str,
    prediction: "Prediction",
    threshold: float,
    applied: bool,
    now: datetime,
) -> int:
    row = conn.execute(
        """INSERT INTO classifier_predictions (ticket_id, model_id, text, category, subcategory, confidence,
                                               threshold, applied, created_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
        (
            ticket_id,
            model_id,
            text,
            prediction.category,
            prediction.subcategory,
            prediction.confidence,
            threshold,
            applied,
            now,
        ),
    ).fetchone()
    assert row is not None
    return row["id"]


def latest_prediction(conn: psycopg.Connection, ticket_id: int) -> dict | None:
    return conn.execute(
        "SELECT * FROM classifier_predictions WHERE ticket_id = %s ORDER BY created_at DESC, id DESC LIMIT 1",
        (ticket_id,),
    ).fetchone()


def record_override(
    conn: psycopg.Connection,
    *,
    prediction: dict,
    category: str,
    subcategory: str | None,
    user_id: int | None,
    actor: str,
    now: datetime,
) -> int:
    """The staff's labels for a classified ticket, beside the model's guess, with the text as classified."""
    agrees = prediction["category"] == category and prediction["subcategory"] == subcategory
    row = conn.execute(
        """INSERT INTO classifier_overrides (ticket_id, prediction_id, text, predicted_category,
                                             predicted_subcategory, category, subcategory, agrees, user_id,
                                             actor, created_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
        (
            prediction["ticket_id"],
            prediction["id"],
            prediction["text"],
            prediction["category"],
            prediction["subcategory"],
            category,
            subcategory,
            agrees,
            user_id,
            actor,
            now,
        ),
    ).fetchone()
    assert row is not None
    return row["id"]


def overrides(conn: psycopg.Connection) -> list[dict]:
    """Every override with a subcategory, oldest first (those without one teach the model nothing)."""
    return conn.execute(
        """SELECT id, ticket_id, text, category, subcategory, agrees, created_at FROM classifier_overrides
           WHERE subcategory IS NOT NULL ORDER BY created_at, id"""
    ).fetchall()


def record_staff_labels(
    conn: psycopg.Connection, ticket: dict, *, user_id: int | None, actor: str, now: datetime
) -> None:
    """The office set a category or subcategory on a ticket the classifier read: an override, also when the
    staff agree with the guess (retraining learns the staff's labels either way)."""
    prediction = latest_prediction(conn, ticket["id"])
    if prediction is None:
        return
    record_override(
        conn,
        prediction=prediction,
        category=ticket["category"],
        subcategory=ticket["subcategory"],
        user_id=user_id,
        actor=actor,
        now=now,
    )
