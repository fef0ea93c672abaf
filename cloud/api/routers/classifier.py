"""The complaint classifier: its figures, a suggestion for a text, retraining (docs/classification.md)."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/classifier", tags=["classifier"])
