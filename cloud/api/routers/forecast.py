"""The complaint volume forecast (docs/analytics.md, "Forecast")."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/analytics", tags=["analytics"])
