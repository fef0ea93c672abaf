"""Every error is JSON with a reason: `{"error": "...", "detail": ...}`; never a bare 500 page."""

import logging

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cloud.domain.errors import Refused
from contract.common import format_validation_errors

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, reason: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [dict(e) for e in exc.errors()]
        return JSONResponse(
            status_code=422,
            content={
                "error": format_validation_errors(errors),
                "detail": [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in errors],
            },
        )

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content={"error": exc.reason}, headers=exc.headers)

    @app.exception_handler(Refused)
    async def _refused(_request: Request, exc: Refused) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content={"error": exc.reason})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            status_code=exc.status_code, content={"error": str(exc.detail)}, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(psycopg.OperationalError)
    async def _database_down(_request: Request, exc: psycopg.OperationalError) -> JSONResponse:
        log.error("database unavailable: %s", exc)
        return JSONResponse(status_code=503, content={"error": "database unavailable; try again shortly"})
