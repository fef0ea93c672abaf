"""The classifier itself: character n-gram TF-IDF and a logistic regression over the subcategories.

Character n-grams need no word segmentation, so one model reads Chinese and English alike (and
a mix of both, and typos). The model predicts the subcategory; the category follows from the
taxonomy. Its confidence is the top subcategory probability: that is the number the intake
compares with `classifier_min_confidence` (docs/classification.md).
"""

import io
import pickle
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.dummy import DummyClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support
from sklearn.pipeline import Pipeline

from cloud.classify.corpus import Example
from cloud.classify.taxonomy import SUBCATEGORIES, category_of

#: thresholds at which the held-out coverage (share of texts at or above) and accuracy are reported
COVERAGE_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * step, 2) for step in range(19))


@dataclass(frozen=True)
class Params:
    """The settings of one model; the defaults are the ones cross-validation on the training part chose
    (docs/classification.md lists what was tried)."""

    analyzer: str = "char"
    ngram_min: int = 1
    ngram_max: int = 4
    C: float = 10.0
    class_weight: str | None = "balanced"
    sublinear_tf: bool = True


@dataclass(frozen=True)
class Prediction:
    category: str
    subcategory: str
    #: the top subcategory probability: the number the threshold applies to
    confidence: float
    #: the summed probability of the predicted subcategory's category (for information)
    category_confidence: float


DEFAULT_PARAMS = Params()


def build(params: Params = DEFAULT_PARAMS) -> Pipeline:
    return Pipeline(
        [
            (
                "tfidf",
                TfidfVectorizer(
                    analyzer=params.analyzer,
                    ngram_range=(params.ngram_min, params.ngram_max),
                    lowercase=True,
                    sublinear_tf=params.sublinear_tf,
                    dtype=np.float32,
                ),
            ),
            ("classify", LogisticRegression(C=params.C, class_weight=params.class_weight, max_iter=2000)),
        ]
    )


def fit(
    texts: Sequence[str],
    subcategories: Sequence[str],
    params: Params = DEFAULT_PARAMS,
    weights: Sequence[float] | None = None,
) -> Pipeline:
    """Train on texts labelled with subcategories (weights: per text, e.g. for staff overrides)."""
    unknown = sorted(set(subcategories) - set(SUBCATEGORIES))
    if unknown:
        raise ValueError(f"labels outside the taxonomy: {', '.join(unknown)}")
    pipeline = build(params)
    fit_params = {"classify__sample_weight": np.asarray(weights, dtype=float)} if weights is not None else {}
    pipeline.fit(list(texts), list(subcategories), **fit_params)
    return pipeline


def predict(pipeline: Pipeline, texts: Sequence[str]) -> list[Prediction]:
    probabilities = pipeline.predict_proba(list(texts))
    classes = [str(c) for c in pipeline.classes_]
    category_columns: dict[str, list[int]] = {}
    for index, sub in enumerate(classes):
        category_columns.setdefault(category_of(sub), []).append(index)
    predictions = []
    for row in probabilities:
        top = int(np.argmax(row))
        category = category_of(classes[top])
        predictions.append(
            Prediction(
                category=category,
                subcategory=classes[top],
                confidence=float(row[top]),
                category_confidence=float(row[category_columns[category]].sum()),
            )
        )
    return predictions


def to_bytes(pipeline: Pipeline) -> bytes:
    """The fitted pipeline, pickled (stored in the database; only this service writes it there)."""
    vectorizer = pipeline.named_steps["tfidf"]
    if hasattr(vectorizer, "stop_words_"):
        del vectorizer.stop_words_  # terms dropped by document frequency: not needed to predict
    buffer = io.BytesIO()
    pickle.dump(pipeline, buffer, protocol=pickle.HIGHEST_PROTOCOL)
    return buffer.getvalue()


def from_bytes(blob: bytes) -> Pipeline:
    return pickle.loads(blob)  # written by this service into its own database: trusted as the code is


@dataclass
class Figures:
    """How a model did on the held-out texts, beside the majority-class baseline."""

    n_training: int
    n_held_out: int
    subcategory_macro_f1: float
    subcategory_accuracy: float
    category_macro_f1: float
    category_accuracy: float
    baseline_subcategory_macro_f1: float
    baseline_subcategory_accuracy: float
    baseline_category_macro_f1: float
    baseline_category_accuracy: float
    #: subcategory -> precision, recall, f1, support
    per_subcategory: dict[str, dict[str, float]] = field(default_factory=dict)
    #: language -> subcategory accuracy, category accuracy, count
    by_language: dict[str, dict[str, float]] = field(default_factory=dict)
    #: threshold -> share of held-out texts at or above it, and the accuracy of those
    coverage: list[dict[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _macro_f1(truth: Sequence[str], guess: Sequence[str]) -> float:
    # over the labels present in the truth: a class that only the guess names is an error already
    return float(f1_score(truth, guess, labels=sorted(set(truth)), average="macro", zero_division=0))


def baseline(training: Sequence[Example], held_out: Sequence[Example]) -> dict[str, float]:
    """The majority class of the training part, predicted for every held-out text."""
    result = {}
    for level in ("subcategory", "category"):
        truth = [getattr(e, level) for e in held_out]
        majority = DummyClassifier(strategy="most_frequent")
        majority.fit([[0]] * len(training), [getattr(e, level) for e in training])
        guess = [str(g) for g in majority.predict([[0]] * len(held_out))]
        result[f"{level}_macro_f1"] = _macro_f1(truth, guess)
        result[f"{level}_accuracy"] = float(accuracy_score(truth, guess))
    return result


def evaluate(pipeline: Pipeline, training: Sequence[Example], held_out: Sequence[Example], n_training: int) -> Figures:
    """The model's figures on the held-out texts (training: the corpus part the baseline learns its majority from)."""
    if not held_out:
        raise ValueError("no held-out texts to evaluate on")
    predictions = predict(pipeline, [e.text for e in held_out])
    true_sub = [e.subcategory for e in held_out]
    true_cat = [e.category for e in held_out]
    guess_sub = [p.subcategory for p in predictions]
    guess_cat = [p.category for p in predictions]
    labels = sorted(set(true_sub))
    precision, recall, f1, support = precision_recall_fscore_support(
        true_sub, guess_sub, labels=labels, zero_division=0
    )
    per_sub = {
        label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
    }
    by_language = {}
    for lang in sorted({e.lang for e in held_out}):
        idx = [i for i, e in enumerate(held_out) if e.lang == lang]
        by_language[lang] = {
            "count": len(idx),
            "subcategory_accuracy": float(np.mean([true_sub[i] == guess_sub[i] for i in idx])),
            "category_accuracy": float(np.mean([true_cat[i] == guess_cat[i] for i in idx])),
            "subcategory_macro_f1": _macro_f1([true_sub[i] for i in idx], [guess_sub[i] for i in idx]),
        }
    coverage = []
    for threshold in COVERAGE_THRESHOLDS:
        idx = [i for i, p in enumerate(predictions) if p.confidence >= threshold]
        coverage.append(
            {
                "threshold": threshold,
                "coverage": len(idx) / len(held_out),
                "subcategory_accuracy": float(np.mean([true_sub[i] == guess_sub[i] for i in idx])) if idx else 0.0,
                "category_accuracy": float(np.mean([true_cat[i] == guess_cat[i] for i in idx])) if idx else 0.0,
            }
        )
    base = baseline(training, held_out)
    return Figures(
        n_training=n_training,
        n_held_out=len(held_out),
        subcategory_macro_f1=_macro_f1(true_sub, guess_sub),
        subcategory_accuracy=float(accuracy_score(true_sub, guess_sub)),
        category_macro_f1=_macro_f1(true_cat, guess_cat),
        category_accuracy=float(accuracy_score(true_cat, guess_cat)),
        baseline_subcategory_macro_f1=base["subcategory_macro_f1"],
        baseline_subcategory_accuracy=base["subcategory_accuracy"],
        baseline_category_macro_f1=base["category_macro_f1"],
        baseline_category_accuracy=base["category_accuracy"],
        per_subcategory=per_sub,
        by_language=by_language,
        coverage=coverage,
    )
