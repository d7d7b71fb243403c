"""Every error as OpenAI's JSON shape, ``{"error": {"message", "type", "code"}}``, never a stack trace."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from genzoo.core.errors import GenzooError

log = logging.getLogger("genzoo.serve")

TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
         405: "invalid_request_error", 408: "timeout_error", 413: "invalid_request_error", 422: "invalid_request_error",
         429: "rate_limit_error", 503: "server_overloaded", 504: "timeout_error"}


class ApiError(StarletteHTTPException):
    """An error the client caused or must wait out: its status, message and OpenAI-style code.
    An HTTPException, so FastAPI passes it through unchanged even from inside body parsing."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(status_code=status, detail=message, headers=headers)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


def error_body(status: int, message: str, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"),
                      "param": None, "code": code}}


def error_response(status: int, message: str, code: str | None = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, code), status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """Handlers for our errors, genzoo's (a clear refusal: 400, or 403 for access), FastAPI's and anything else."""
    from genzoo.store.api import AccessDenied

    @app.exception_handler(ApiError)
    async def _api(request: Request, e: ApiError):
        return error_response(e.status, e.message, e.code, e.headers)

    @app.exception_handler(AccessDenied)
    async def _denied(request: Request, e: AccessDenied):
        return error_response(403, str(e), "access_denied")

    @app.exception_handler(GenzooError)
    async def _genzoo(request: Request, e: GenzooError):
        return error_response(400, str(e), "invalid_request")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        msg = first.get("msg", "invalid request")
        return error_response(400 if first.get("type") == "json_invalid" else 422,
                              f"{where}: {msg}" if where else msg, "invalid_json" if first.get("type") == "json_invalid" else "invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException):
        message = e.detail if isinstance(e.detail, str) else "request failed"
        return error_response(e.status_code, message, None, getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def _other(request: Request, e: Exception):  # logged here, never sent: a trace can leak paths and data
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal server error (logged on the server)", "internal_error")
