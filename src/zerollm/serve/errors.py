"""OpenAI-style error bodies and the status codes the server answers with.

Every error is `{"error": {"message", "type", "param", "code"}}` (interop.md §3). Client mistakes get 4xx:

    400 invalid_request_error        malformed JSON or body, bad messages/tools, unsupported parameter values
    400 exceed_context_size_error    the prompt does not fit in the model's context
    401 authentication_error         missing or wrong API key
    404 not_found_error              unknown model or path
    413 request_too_large            body over the size limit
    422 invalid_request_error        well-formed but unprocessable (e.g. a tool schema the decoder cannot use)
    429 rate_limit_error             too many requests waiting

The `openai` client retries 408/409/429/5xx, so a client mistake must never be a 5xx; only a server bug is
answered 500 (`server_error`).
"""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
         404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large",
         422: "invalid_request_error", 429: "rate_limit_error", 500: "server_error", 503: "unavailable_error"}


class APIError(Exception):
    """Raise anywhere in a handler to answer with an OpenAI error body."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param = status, message, param
        self.type = type or TYPES.get(status, "invalid_request_error")
        self.code = code


def error_body(status: int, message: str, param: str | None = None, code: str | None = None,
               type: str | None = None) -> dict:
    return {"error": {"message": message, "type": type or TYPES.get(status, "invalid_request_error"),
                      "param": param, "code": code}}


def error_response(status: int, message: str, param: str | None = None, code: str | None = None,
                   type: str | None = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code, type), status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    """A one-line message naming the first offending field, and that field's dotted path as `param`."""
    errors = exc.errors()
    if not errors:
        return "invalid request body", None
    e = errors[0]
    loc = [str(x) for x in e.get("loc", ()) if x != "body"]
    param = ".".join(loc) or None
    if e.get("type") == "json_invalid":
        return f"request body is not valid JSON: {e.get('msg', '')}", None
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{param or 'body'}: {e.get('msg', 'invalid')}{more}", param


def install(app: FastAPI) -> None:
    """Register the handlers that turn every failure into an OpenAI error body."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.message, exc.param, exc.code, exc.type, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):  # FastAPI's 422 → 400
        message, param = _validation_message(exc)
        return error_response(400, message, param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
        return error_response(exc.status_code, message)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):  # a server bug: the only path to a 5xx
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}")
