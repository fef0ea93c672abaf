"""The complaint classifier: its figures, a suggestion for a text, retraining (docs/classification.md)."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from cloud.api.deps import ClockDep, Conn
from cloud.api.deps import allow as allow_roles
from cloud.classify import retrain as retraining
from cloud.classify import store
from cloud.classify.service import MAX_TEXT_CHARS, Classifier
from cloud.domain import routing
from cloud.domain.access import OFFICE, Principal, Role
from cloud.domain.errors import Refused

router = APIRouter(prefix="/api/v1/classifier", tags=["classifier"])

Office = Annotated[Principal, Depends(allow_roles(*OFFICE))]
Filer = Annotated[Principal, Depends(allow_roles(*OFFICE, Role.RESIDENT))]
Admin = Annotated[Principal, Depends(allow_roles(Role.ADMIN))]


class SuggestIn(BaseModel):
    text: Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
    #: whose routing rules name the department; default: the caller's site when they have one
    site_id: Annotated[str, Field(max_length=63)] | None = None


class Suggestion(BaseModel):
    category: str
    subcategory: str
    #: the top subcategory probability, compared with the threshold
    confidence: float
    threshold: float
    #: false: a ticket filed without a category would go to the service desk instead
    above_threshold: bool
    department_id: int | None
    department_name: str | None
    site_id: str | None
    model_id: int


class RetrainIn(BaseModel):
    #: replace the running model even when the new one does better on nothing
    force: bool = False


def _classifier(request: Request) -> Classifier:
    return request.app.state.classifier


ClassifierDep = Annotated[Classifier, Depends(_classifier)]


@router.get("")
def show(conn: Conn, clock: ClockDep, who: Office, classifier: ClassifierDep) -> dict[str, Any]:
    """The active model (trained from the corpus now when none is stored yet), its held-out figures, the threshold."""
    active = classifier.active(conn, clock.now())
    summary = store.get_summary(conn, active.id)
    counts = conn.execute(
        """SELECT count(*) AS total, count(*) FILTER (WHERE created_at > %s) AS since_model,
                  count(*) FILTER (WHERE NOT agrees) AS disagreeing
           FROM classifier_overrides""",
        (summary["activated_at"] if summary else None,),
    ).fetchone()
    return {
        "model": summary,
        "threshold": classifier.settings.min_confidence,
        "thresholded": "the top subcategory probability",
        "desk_department": classifier.settings.desk_department,
        "overrides": counts,
    }


@router.post("/suggest", response_model=Suggestion)
def suggest(body: SuggestIn, conn: Conn, clock: ClockDep, who: Filer, classifier: ClassifierDep) -> dict[str, Any]:
    """What the classifier makes of a text, and the department the caller's site routes that to."""
    text = body.text.strip()
    if not text:
        raise Refused(422, "text: empty; describe the problem")
    site_id = body.site_id
    if site_id is not None:
        known = conn.execute("SELECT 1 FROM sites WHERE id = %s", (site_id,)).fetchone() is not None
        if not known or not who.reaches_site(site_id):
            raise Refused(404, f"site {site_id} does not exist")
    else:
        sites = who.site_list()
        site_id = sites[0] if sites is not None and len(sites) == 1 else None
    active, prediction = classifier.predict(conn, text, clock.now())
    route = routing.find_route(
        conn, site_id=site_id, category=prediction.category, subcategory=prediction.subcategory, building_id=None
    )
    department = (
        conn.execute("SELECT id, name FROM departments WHERE id = %s", (route.department_id,)).fetchone()
        if route
        else None
    )
    threshold = classifier.settings.min_confidence
    return {
        "category": prediction.category,
        "subcategory": prediction.subcategory,
        "confidence": round(prediction.confidence, 4),
        "threshold": threshold,
        "above_threshold": prediction.confidence >= threshold,
        "department_id": department["id"] if department else None,
        "department_name": department["name"] if department else None,
        "site_id": site_id,
        "model_id": active.id,
    }


@router.post("/retrain")
def retrain(body: RetrainIn, conn: Conn, clock: ClockDep, who: Admin, classifier: ClassifierDep) -> dict[str, Any]:
    """Train on the corpus' training part and the overrides; replace the running model unless the new one
    is worse on the held-out part (or `force`). The answer has both models' figures and the decision."""
    report = retraining.retrain(
        conn, classifier.settings, actor=who.actor, user_id=who.user_id, now=clock.now(), force=body.force
    )
    return report.as_dict()
