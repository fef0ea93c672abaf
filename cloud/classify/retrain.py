"""Retraining: the corpus' training part plus the staff's overrides, judged on the held-out part.

The new model and the running one are evaluated on the same held-out texts (the split does not
move texts between sides as the corpus grows, so the running model has not trained on them), and
the new one replaces the running one only when its subcategory macro-F1 is not worse by more than
the tolerance, or when forced. The new model is stored either way, with the decision as its note.
"""

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import psycopg

from cloud.classify import corpus, model, service, store
from cloud.classify.taxonomy import SUBCATEGORIES

#: the figures shown side by side
HEADLINE = ("subcategory_macro_f1", "subcategory_accuracy", "category_macro_f1", "category_accuracy")


@dataclass
class RetrainReport:
    model_id: int
    replaced: bool
    forced: bool
    reason: str
    tolerance: float
    corpus_training: int
    corpus_held_out: int
    overrides_used: int
    #: overrides left out: no valid subcategory, or the text is a held-out text
    overrides_skipped: int
    new: dict[str, Any]
    running_model_id: int | None
    #: the running model's figures on the same held-out texts (None when there was none)
    running: dict[str, Any] | None
    baseline: dict[str, float]
    active_model_id: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def usable_overrides(rows: list[dict], held_out: list[corpus.Example]) -> tuple[list[tuple[str, str]], int]:
    """(text, subcategory) pairs to train on; overrides of held-out texts would leak into the evaluation."""
    held = {corpus.normalise(e.text) for e in held_out}
    usable = [
        (r["text"], r["subcategory"])
        for r in rows
        if SUBCATEGORIES.get(r["subcategory"]) == r["category"] and corpus.normalise(r["text"]) not in held
    ]
    return usable, len(rows) - len(usable)


def retrain(
    conn: psycopg.Connection,
    settings: service.ClassifierSettings,
    *,
    actor: str,
    user_id: int | None,
    now: datetime,
    force: bool = False,
) -> RetrainReport:
    store.lock_training(conn)
    examples = corpus.load()
    split = corpus.split(examples)
    usable, skipped = usable_overrides(store.overrides(conn), split.held_out)
    trained = service.train(split, usable, corpus_hash=corpus.content_hash())
    new = trained.stored.figures
    ref = store.active_ref(conn)
    running = None
    unreadable = ""
    if ref is not None:
        summary = store.get_summary(conn, ref["id"])
        assert summary is not None
        try:
            pipeline = service.load_pipeline(conn, ref["id"], ref["digest"])
        except service.ModelUnreadable as exc:
            unreadable = exc.reason
        else:
            n_training = summary["corpus_training"] + summary["overrides_used"]
            running = model.evaluate(pipeline, split.training, split.held_out, n_training=n_training).as_dict()
    tolerance = settings.retrain_tolerance
    new_f1 = new["subcategory_macro_f1"]
    if unreadable:
        replaced, reason = True, f"replaced an unreadable model: {unreadable}"
    elif running is None:
        replaced, reason = True, "no model was active"
    else:
        old_f1 = running["subcategory_macro_f1"]
        not_worse = new_f1 >= old_f1 - tolerance
        comparison = f"subcategory macro-F1 {new_f1:.3f} against the running model's {old_f1:.3f}"
        if not_worse:
            replaced, reason = True, f"replaced: not worse ({comparison}, tolerance {tolerance:.3f})"
        elif force:
            replaced, reason = True, f"replaced by force although worse ({comparison}, tolerance {tolerance:.3f})"
        else:
            replaced = False
            reason = f"kept the running model: the new one is worse ({comparison}, tolerance {tolerance:.3f})"
    model_id = store.insert_model(conn, trained.stored, created_by=actor, user_id=user_id, now=now, note=reason)
    if replaced:
        store.activate(conn, model_id, now)
        service.remember(trained.stored.digest, trained.pipeline)
    baseline = {k.removeprefix("baseline_"): v for k, v in new.items() if k.startswith("baseline_")}
    return RetrainReport(
        model_id=model_id,
        replaced=replaced,
        forced=force,
        reason=reason,
        tolerance=tolerance,
        corpus_training=len(split.training),
        corpus_held_out=len(split.held_out),
        overrides_used=len(usable),
        overrides_skipped=skipped,
        new=new,
        running_model_id=ref["id"] if ref else None,
        running=running,
        baseline=baseline,
        active_model_id=model_id if replaced else ref["id"],  # type: ignore[index]
    )


def format_report(report: RetrainReport) -> str:
    """The report as the CLI prints it: the headline figures side by side, then the decision."""
    lines = [
        f"trained on {report.corpus_training} corpus texts + {report.overrides_used} overrides "
        f"({report.overrides_skipped} overrides left out); held out: {report.corpus_held_out} texts",
        f"{'held-out figure':<24}{'new model':>12}{'running':>12}{'majority':>12}",
    ]
    for key in HEADLINE:
        running = f"{report.running[key]:.3f}" if report.running else "-"
        lines.append(f"{key:<24}{report.new[key]:>12.3f}{running:>12}{report.baseline[key]:>12.3f}")
    lines.append(f"model {report.model_id}: {report.reason}; active model: {report.active_model_id}")
    return "\n".join(lines)
