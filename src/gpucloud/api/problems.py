"""Every error a caller sees, as RFC 9457 problem+json, mapped from error types in one place."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException

from gpucloud.core import errors
from gpucloud.core.jobspec import describe_validation_error
from gpucloud.store.db import DATABASE_UNAVAILABLE

log = logging.getLogger("gpucloud.api")
PROBLEM = "application/problem+json"

STATUS: list[tuple[type[errors.GpucloudError], int]] = [
    (errors.IdempotencyMismatch, 422),
    (errors.InvalidRequest, 422),
    (errors.NeverFits, 422),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.InsufficientFunds, 402),
    (errors.Unauthenticated, 401),
    (errors.Forbidden, 403),
    (errors.RateLimited, 429),
    (errors.EngineError, 502),
]
TITLES = {
    400: "Bad request",
    401: "Unauthenticated",
    402: "Payment required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    429: "Too many requests",
    422: "Invalid request",
    500: "Internal error",
    502: "Engine error",
    503: "Unavailable, retry",
}


def problem(status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    body = {
        "type": f"urn:gpucloud:problem:{code}",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "code": code,
        "detail": detail,
        **extra,
    }
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status == 503:
        headers = {"Retry-After": "1"}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def status_of(err: errors.GpucloudError) -> int:
    for kind, status in STATUS:
        if isinstance(err, kind):
            return status
    return 400


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.GpucloudError)
    async def _domain(_: Request, err: errors.GpucloudError) -> JSONResponse:
        extra = {"field": err.field} if isinstance(err, errors.InvalidRequest) and err.field else {}
        response = problem(status_of(err), err.code, str(err), **extra)
        if isinstance(err, errors.RateLimited):
            response.headers["Retry-After"] = str(math.ceil(err.retry_after_s))
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, err: RequestValidationError) -> JSONResponse:
        detail = describe_validation_error(list(err.errors()))
        return problem(422, errors.InvalidRequest.code, detail)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, err: HTTPException) -> JSONResponse:
        return problem(err.status_code, "http_error", str(err.detail))

    async def _database(_: Request, err: Exception) -> JSONResponse:
        # One line, never a traceback: the operator sees the cause, the caller a retryable 503.
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        log.warning("database unavailable: %s", first)
        return problem(
            503, "database_unavailable", "the database is briefly unavailable; retry the request"
        )

    for kind in DATABASE_UNAVAILABLE:
        app.add_exception_handler(kind, _database)

    @app.exception_handler(IntegrityError)
    async def _integrity(_: Request, err: IntegrityError) -> JSONResponse:
        log.info("integrity conflict: %s", err)
        return problem(
            409, errors.Conflict.code, "the request conflicts with a concurrent change; retry it"
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, err: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return problem(
            500, "internal_error", "an internal error occurred; it was logged for the operator"
        )
