"""Choosing the model's settings by cross-validation on the training part only (never the held-out part).

    .venv/bin/python -m cloud.classify.tuning          # the first round
    .venv/bin/python -m cloud.classify.tuning round2   # the second, around the first's best

prints the mean subcategory macro-F1 over 5 folds (stratified by subcategory and language) for
each setting tried; docs/classification.md records the run and the choice.
"""

import sys
import time
from dataclasses import replace

import numpy as np
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

from cloud.classify import corpus, model
from cloud.classify.model import Params

#: the starting point; each other setting is tried by changing one thing at a time (a full grid
#: took too long on the 2-core machine this was built on)
BASE = Params(analyzer="char_wb", ngram_min=1, ngram_max=4, C=10.0, class_weight="balanced")
VARIANTS: list[dict] = [
    {},
    {"analyzer": "char"},
    {"ngram_min": 1, "ngram_max": 3},
    {"ngram_min": 2, "ngram_max": 4},
    {"ngram_min": 1, "ngram_max": 5},
    {"ngram_min": 2, "ngram_max": 5},
    {"C": 1.0},
    {"C": 3.0},
    {"C": 30.0},
    {"C": 100.0},
    {"class_weight": None},
    {"sublinear_tf": False},
]
#: the second round, around the first round's best (`char` instead of `char_wb`)
ROUND_2: list[dict] = [
    {"analyzer": "char", "ngram_min": 1, "ngram_max": 3},
    {"analyzer": "char", "ngram_min": 1, "ngram_max": 5},
    {"analyzer": "char", "C": 3.0},
    {"analyzer": "char", "C": 30.0},
    {"analyzer": "char", "class_weight": None},
]


def cross_validate(examples: list[corpus.Example], params: Params, folds: int = 5) -> tuple[float, float]:
    """Mean and standard deviation of the subcategory macro-F1 over the folds."""
    texts = np.array([e.text for e in examples], dtype=object)
    labels = np.array([e.subcategory for e in examples], dtype=object)
    strata = [f"{e.subcategory}/{e.lang}" for e in examples]
    scores = []
    for train_idx, test_idx in StratifiedKFold(folds, shuffle=True, random_state=0).split(texts, strata):
        pipeline = model.fit(list(texts[train_idx]), list(labels[train_idx]), params)
        guess = pipeline.predict(list(texts[test_idx]))
        scores.append(f1_score(labels[test_idx], guess, average="macro"))
    return float(np.mean(scores)), float(np.std(scores))


def find_salt(examples: list[corpus.Example], low: int = 3, high: int = 7, tries: int = 20_000) -> str | None:
    """The first salt from 0 for which every stratum has `low` to `high` held-out texts (labels and counts
    only: no model is involved). How corpus.SPLIT_SALT was chosen; it stays fixed as the corpus grows."""
    strata = corpus.counts(examples)
    for salt in map(str, range(tries)):
        held = corpus.counts(corpus.split(examples, salt=salt).held_out)
        if all(low <= held[s] <= high for s in strata):
            return salt
    return None


def main() -> None:
    training = corpus.split(corpus.load()).training
    print(f"training part: {len(training)} texts; 5-fold cross-validation, subcategory macro-F1")
    results = []
    for change in ROUND_2 if sys.argv[1:] == ["round2"] else VARIANTS:
        params = replace(BASE, **change)
        started = time.perf_counter()
        mean, std = cross_validate(training, params)
        results.append((mean, std, params))
        print(
            f"{params.analyzer:<8} ({params.ngram_min},{params.ngram_max}) C={params.C:<6g} "
            f"class_weight={params.class_weight!s:<9} sublinear_tf={params.sublinear_tf!s:<5} "
            f"macro-F1 {mean:.3f} ± {std:.3f}  ({time.perf_counter() - started:.1f} s)",
            flush=True,
        )
    best = max(results, key=lambda r: r[0])
    print(f"best: {best[2]} macro-F1 {best[0]:.3f} ± {best[1]:.3f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
