"""Analytics for the office and management: KPIs, causes, top sources, alarm-to-fix (docs/analytics.md)."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/analytics", tags=["analytics"])
