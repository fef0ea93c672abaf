"""The classifier as the cloud uses it: the active model, trained at first use, and the intake's decision.

Each process keeps loaded models by their digest and asks the database for the active model's
id and digest at every use (one index lookup): a model another process activated is picked up at
the next classification, and loaded from the database once. When no model is stored at all, the
first use trains one from the corpus and stores it as the active one; that corpus-only model is
also kept in the process by the corpus' content hash, so a test suite that empties the database
per test stores it again without training it again.
"""

import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import psycopg
from sklearn.pipeline import Pipeline

from cloud.classify import corpus, model, store
from cloud.classify.model import DEFAULT_PARAMS, Params, Prediction
from cloud.domain.errors import Refused

if TYPE_CHECKING:
    from cloud.settings import CloudSettings

log = logging.getLogger(__name__)

#: the longest text the classifier takes (a ticket's title and description fit)
MAX_TEXT_CHARS = 5200


@dataclass(frozen=True)
class ClassifierSettings:
    """The classifier's knobs, from CloudSettings."""

    min_confidence: float
    desk_department: str
    retrain_tolerance: float

    @classmethod
    def from_settings(cls, settings: "CloudSettings") -> "ClassifierSettings":
        return cls(
            min_confidence=settings.classifier_min_confidence,
            desk_department=settings.classifier_desk_department,
            retrain_tolerance=settings.classifier_retrain_tolerance,
        )


@dataclass(frozen=True)
class Trained:
    """A freshly trained model: the pipeline and what is stored of it."""

    pipeline: Pipeline
    stored: store.NewModel


def train(
    split: corpus.Split,
    overrides: list[tuple[str, str]],
    *,
    corpus_hash: str,
    params: Params = DEFAULT_PARAMS,
) -> Trained:
    """Train on the corpus' training part plus (text, subcategory) overrides; evaluate on the held-out part."""
    texts = [e.text for e in split.training] + [text for text, _ in overrides]
    labels = [e.subcategory for e in split.training] + [sub for _, sub in overrides]
    pipeline = model.fit(texts, labels, params)
    figures = model.evaluate(pipeline, split.training, split.held_out, n_training=len(texts))
    blob = model.to_bytes(pipeline)
    stored = store.NewModel(
        blob=blob,
        digest=hashlib.sha256(blob).hexdigest(),
        params=asdict(params),
        figures=figures.as_dict(),
        corpus_hash=corpus_hash,
        corpus_training=len(split.training),
        corpus_held_out=len(split.held_out),
        overrides_used=len(overrides),
    )
    return Trained(pipeline, stored)


_lock = threading.Lock()
_corpus_models: dict[str, Trained] = {}
#: loaded pipelines by digest, the most recently used last
_pipelines: OrderedDict[str, Pipeline] = OrderedDict()
_KEEP_PIPELINES = 4


def corpus_model() -> Trained:
    """The model of the corpus alone, trained once per process and corpus content."""
    key = corpus.content_hash()
    with _lock:
        if key not in _corpus_models:
            _corpus_models[key] = train(corpus.split(corpus.load()), [], corpus_hash=key)
        return _corpus_models[key]


def remember(digest: str, pipeline: Pipeline) -> None:
    with _lock:
        _pipelines[digest] = pipeline
        _pipelines.move_to_end(digest)
        while len(_pipelines) > _KEEP_PIPELINES:
            _pipelines.popitem(last=False)


def _cached(digest: str) -> Pipeline | None:
    with _lock:
        pipeline = _pipelines.get(digest)
        if pipeline is not None:
            _pipelines.move_to_end(digest)
        return pipeline


class ModelUnreadable(Refused):
    """The stored model cannot be unpickled (e.g. written by another scikit-learn version)."""

    def __init__(self, model_id: int, exc: Exception) -> None:
        super().__init__(
            503,
            f"the classifier's model {model_id} cannot be loaded ({type(exc).__name__}: {exc}); "
            "file with a category, or retrain: community classifier retrain --force",
        )


def load_pipeline(conn: psycopg.Connection, model_id: int, digest: str) -> Pipeline:
    """A stored model's pipeline: from this process' memory by digest, else unpickled from the database once."""
    pipeline = _cached(digest)
    if pipeline is None:
        blob = store.get_blob(conn, model_id)
        if blob is None:
            raise LookupError(f"classifier model {model_id} is not stored")
        try:
            pipeline = model.from_bytes(blob)
        except Exception as exc:  # an unpickling error can be of any type
            log.error("classifier model %s cannot be loaded: %r", model_id, exc)
            raise ModelUnreadable(model_id, exc) from exc
        remember(digest, pipeline)
    return pipeline


@dataclass(frozen=True)
class ActiveModel:
    id: int
    digest: str
    pipeline: Pipeline


@dataclass(frozen=True)
class Decision:
    """What the intake does with a ticket filed without a category."""

    model_id: int
    text: str
    prediction: Prediction
    threshold: float

    @property
    def applied(self) -> bool:
        return self.prediction.confidence >= self.threshold

    @property
    def category(self) -> str:
        return self.prediction.category if self.applied else "other"

    @property
    def subcategory(self) -> str | None:
        return self.prediction.subcategory if self.applied else None


def ticket_text(title: str, description: str) -> str:
    """What is classified: the title and the description."""
    return "\n".join(part.strip() for part in (title, description) if part.strip())


class Classifier:
    """One per process (app.state.classifier): the active model and the threshold."""

    def __init__(self, settings: ClassifierSettings) -> None:
        self.settings = settings

    def active(self, conn: psycopg.Connection, now: datetime) -> ActiveModel:
        """The active model; the corpus-only one, trained and stored now, when there is none yet."""
        ref = store.active_ref(conn)
        if ref is None:
            store.lock_training(conn)
            ref = store.active_ref(conn)  # another process may have stored one while we waited
            if ref is None:
                trained = corpus_model()
                model_id = store.insert_model(
                    conn, trained.stored, created_by="system", user_id=None, now=now, note="the corpus model, first use"
                )
                store.activate(conn, model_id, now)
                remember(trained.stored.digest, trained.pipeline)
                ref = {"id": model_id, "digest": trained.stored.digest}
        return ActiveModel(ref["id"], ref["digest"], load_pipeline(conn, ref["id"], ref["digest"]))

    def predict(self, conn: psycopg.Connection, text: str, now: datetime) -> tuple[ActiveModel, Prediction]:
        active = self.active(conn, now)
        return active, model.predict(active.pipeline, [text])[0]

    def decide(self, conn: psycopg.Connection, text: str, now: datetime) -> Decision:
        active, prediction = self.predict(conn, text, now)
        return Decision(active.id, text, prediction, self.settings.min_confidence)

    def desk_department_id(self, conn: psycopg.Connection) -> int | None:
        row = conn.execute("SELECT id FROM departments WHERE name = %s", (self.settings.desk_department,)).fetchone()
        return row["id"] if row else None
