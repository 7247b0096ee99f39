"""HTTP helpers for the dump host: bounded back-off on 429 and 5xx that honours Retry-After."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

import httpx

from common.logging import get_logger

log = get_logger(__name__)

RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})


class RetryBudgetExceededError(httpx.HTTPError):
    """The host kept answering 429/5xx (or asked to wait longer than allowed)."""


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def backoff_seconds(attempt: int, base: float, cap: float) -> float:
    delay: float = min(cap, base * (2 ** max(0, attempt - 1)))
    return delay + random.uniform(0, delay / 4)


def wait_for_response(response: httpx.Response, attempt: int, base: float, max_wait: float) -> float:
    """How long to wait before retrying `response`; raises when the host asks for too long."""
    advised = retry_after_seconds(response.headers.get("Retry-After"))
    if advised is not None and advised > max_wait:
        raise RetryBudgetExceededError(
            f"{response.request.url} answered {response.status_code} with Retry-After {advised:.0f}s "
            f"(more than the allowed {max_wait:.0f}s)"
        )
    return advised if advised is not None else backoff_seconds(attempt, base, max_wait)


async def get_with_retry(
    client: httpx.AsyncClient,
    url: str,
    *,
    attempts: float = 6,
    backoff: float = 5.0,
    max_wait: float = 3600.0,
) -> httpx.Response:
    """GET a (small) page, retrying 429/5xx and transport errors a bounded number of times."""
    last: str = ""
    tries = int(attempts)
    for attempt in range(1, tries + 1):
        try:
            response = await client.get(url)
        except httpx.TransportError as exc:
            last = f"{type(exc).__name__}: {exc}"
            if attempt == tries:
                break
            await asyncio.sleep(backoff_seconds(attempt, backoff, max_wait))
            continue
        if response.status_code in RETRY_STATUSES:
            last = f"HTTP {response.status_code}"
            if attempt == tries:
                break
            delay = wait_for_response(response, attempt, backoff, max_wait)
            log.warning(
                "http_retry", url=url, status=response.status_code, delay_s=round(delay, 2), attempt=attempt
            )
            await asyncio.sleep(delay)
            continue
        response.raise_for_status()
        return response
    raise RetryBudgetExceededError(f"GET {url} failed after {tries} attempts ({last})")
