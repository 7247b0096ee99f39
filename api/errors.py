"""One error envelope for every api error (design §3):

    {"error": "<human message>", "code": "<snake_case>", "detail": <message | validation problems>}

Routes raise `ApiError`; framework errors (HTTPException, request validation), store outages and
unhandled exceptions are turned into the same envelope by the handlers installed here. An
unhandled exception becomes a 500 without any stack trace in the body.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import neo4j.exceptions
import orjson
import psycopg
import psycopg_pool
import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.models import ErrorResponse
from common.logging import get_logger

log = get_logger(__name__)


class ApiError(Exception):
    """An error a route answers with: status, stable code, human message, optional headers."""

    def __init__(
        self, status_code: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.headers = headers


def error_body(code: str, message: str, detail: Any = None) -> dict[str, Any]:
    return {"error": message, "code": code, "detail": message if detail is None else detail}


def error_response(
    status_code: int,
    code: str,
    message: str,
    detail: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(code, message, detail), status_code=status_code, headers=dict(headers or {})
    )


def _code_for_status(status_code: int) -> str:
    special = {401: "not_authenticated", 422: "validation_error", 500: "internal_error"}
    if status_code in special:
        return special[status_code]
    try:
        return HTTPStatus(status_code).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def _jsonable(value: Any) -> Any:
    """Make a validation problem's `input`/`ctx` JSON-safe (they may hold exceptions or bytes)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", errors="replace")
    return str(value)


def validation_problems(errors: Sequence[Any]) -> list[dict[str, Any]]:
    problems: list[dict[str, Any]] = []
    for err in errors:
        problem: dict[str, Any] = {
            "type": str(err.get("type", "value_error")),
            "loc": [p if isinstance(p, int) else str(p) for p in err.get("loc", ())],
            "msg": str(err.get("msg", "invalid value")),
        }
        if "input" in err:
            problem["input"] = _jsonable(err["input"])
        if err.get("ctx"):
            problem["ctx"] = _jsonable(err["ctx"])
        problems.append(problem)
    return problems


def _validation_message(problems: list[dict[str, Any]]) -> str:
    if not problems:
        return "Invalid request"
    first = problems[0]
    where = ".".join(str(p) for p in first["loc"])
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"Invalid request: {where}: {first['msg']}{more}"


async def _api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status_code, exc.code, exc.message, headers=exc.headers)


async def _http_exception(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 401 and message == "Not authenticated":
        message = "Not authenticated"
    return error_response(exc.status_code, _code_for_status(exc.status_code), message, headers=exc.headers)


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = validation_problems(exc.errors())
    return error_response(422, "validation_error", _validation_message(problems), detail=problems)


def _store_unavailable(store: str) -> Any:
    async def handler(request: Request, exc: Exception) -> Response:
        log.warning("store_unavailable", store=store, path=request.url.path, error=str(exc))
        return error_response(503, f"{store}_unavailable", f"{store} is unavailable, try again later")

    return handler


async def _invalid_input(request: Request, exc: Exception) -> Response:
    log.warning("invalid_input", path=request.url.path, error=type(exc).__name__)
    return error_response(400, "invalid_input", "The request contains text that cannot be stored")


async def _neo4j_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, neo4j.exceptions.Neo4jError)
    code = exc.code or ""
    if "TransactionTimedOut" in code or "Transaction.Terminated" in code or "TransactionTimedOut" in str(exc):
        log.warning("neo4j_query_timeout", path=request.url.path)
        return error_response(503, "query_timeout", "The query took too long; try a narrower request")
    if isinstance(exc, neo4j.exceptions.TransientError):
        return error_response(503, "neo4j_unavailable", "neo4j is busy, try again later")
    log.error("neo4j_error", path=request.url.path, code=code, error=str(exc))
    return error_response(500, "internal_error", "Internal server error")


def install_error_handlers(app: FastAPI) -> None:
    """Install the envelope handlers and the catch-all middleware on `app`."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(redis.exceptions.ConnectionError, _store_unavailable("redis"))
    app.add_exception_handler(redis.exceptions.TimeoutError, _store_unavailable("redis"))
    app.add_exception_handler(psycopg.OperationalError, _store_unavailable("postgresql"))
    app.add_exception_handler(psycopg.DataError, _invalid_input)
    app.add_exception_handler(UnicodeEncodeError, _invalid_input)
    app.add_exception_handler(psycopg_pool.PoolTimeout, _store_unavailable("postgresql"))
    app.add_exception_handler(neo4j.exceptions.ServiceUnavailable, _store_unavailable("neo4j"))
    app.add_exception_handler(neo4j.exceptions.SessionExpired, _store_unavailable("neo4j"))
    app.add_exception_handler(neo4j.exceptions.Neo4jError, _neo4j_error)
    app.add_middleware(CatchAllMiddleware)


class BodyTooLargeError(Exception):
    """A streamed request body went over the configured limit (answered with 413)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"Request body exceeds {max_bytes} bytes")


async def send_envelope(send: Send, status: int, code: str, message: str) -> None:
    body = orjson.dumps(error_body(code, message))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class CatchAllMiddleware:
    """Outermost guard: an exception no handler took becomes a 500 envelope (no stack trace)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except BodyTooLargeError as exc:
            if started:
                raise
            await send_envelope(send, 413, "payload_too_large", str(exc))
        except Exception:
            log.exception("unhandled_error", path=scope.get("path"), method=scope.get("method"))
            if started:
                raise
            await send_envelope(send, 500, "internal_error", "Internal server error")


# OpenAPI: the envelope on every documented error status.
def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorResponse, "description": HTTPStatus(status).phrase} for status in statuses}
