"""OAuth 1.0a signing (published test vectors), percent-encoding, the rate limiter, and the client
against the fake Discogs server (signature checks on its side are its own code)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from common.discogs_client import (
    DiscogsAuthError,
    DiscogsClient,
    DiscogsUnavailableError,
    OAuthCredentials,
    RateLimiter,
    RetryPolicy,
    authorization_header,
    normalize_base_url,
    oauth_parameters,
    percent_encode,
    signature_base_string,
    user_path,
)
from tests.conftest import free_port
from tests.fakes.discogs_api import FakeDiscogs

PHOTOS = OAuthCredentials("dpf43f3p2l4k3l03", "kd94hf93k423kf44", "nnch734d00sl2jdk", "pfkkdhi9sl3r4s00")


def test_hmac_sha1_matches_the_oauth_core_1_0_example() -> None:
    # OAuth Core 1.0 Appendix A.5: the published signature for this exact request.
    params = oauth_parameters(
        "GET",
        "http://photos.example.net/photos",
        PHOTOS,
        query=[("file", "vacation.jpg"), ("size", "original")],
        nonce="kllo9940pd9333jh",
        timestamp=1191242096,
    )
    assert params["oauth_signature"] == "tR3+Ty81lMeYAr/Fid0kMTYa/WM="
    # The query may also come inside the URL: same signature.
    inline = oauth_parameters(
        "GET",
        "http://photos.example.net/photos?file=vacation.jpg&size=original",
        PHOTOS,
        nonce="kllo9940pd9333jh",
        timestamp=1191242096,
    )
    assert inline["oauth_signature"] == params["oauth_signature"]


def test_signature_base_string_includes_query_parameters_sorted() -> None:
    base = signature_base_string(
        "get", "HTTP://Example.COM:80/a b", [("b", "2"), ("a", "x y"), ("oauth_token", "t")]
    )
    assert base == "GET&http%3A%2F%2Fexample.com%2Fa%20b&a%3Dx%2520y%26b%3D2%26oauth_token%3Dt"
    assert normalize_base_url("https://api.discogs.com:443/x?y=1") == "https://api.discogs.com/x"
    assert normalize_base_url("http://127.0.0.1:8080/x") == "http://127.0.0.1:8080/x"


def test_percent_encoding_and_header_format() -> None:
    assert percent_encode("a b") == "a%20b"
    assert percent_encode("/&=") == "%2F%26%3D"
    assert percent_encode("-_.~") == "-_.~"
    assert percent_encode("é") == "%C3%A9"
    header = authorization_header({"b": "2 3", "a": "1"})
    assert header == 'OAuth a="1", b="2%203"'


def test_plaintext_signature_is_both_secrets() -> None:
    params = oauth_parameters("GET", "https://x/y", PHOTOS, signature_method="PLAINTEXT")
    assert params["oauth_signature"] == "kd94hf93k423kf44&pfkkdhi9sl3r4s00"


def test_usernames_are_encoded_in_paths() -> None:
    assert user_path("a b/c", "wants") == "/users/a%20b%2Fc/wants"


async def test_rate_limiter_never_starts_more_than_the_limit_in_any_window() -> None:
    limiter = RateLimiter(3, window_s=0.3)
    starts: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        starts.append(time.monotonic())

    await asyncio.gather(*(one() for _ in range(8)))
    starts.sort()
    for i in range(len(starts) - 3):
        assert starts[i + 3] - starts[i] >= 0.3 - 1e-3


async def test_rate_limiter_pauses_when_remaining_runs_low() -> None:
    limiter = RateLimiter(60, window_s=6.0, low_water=2)
    limiter.observe({"X-Discogs-Ratelimit-Remaining": "0"})
    before = time.monotonic()
    await limiter.acquire()
    assert time.monotonic() - before >= 0.29  # 6 s / 60 * 3


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscogs]:
    server = FakeDiscogs()
    user = server.add_user("alice")
    for n in range(1, 251):
        user.add_collected(n, f"Release {n}")
    await server.start(free_port())
    yield server
    await server.stop()


async def _link(client: DiscogsClient, fake: FakeDiscogs) -> tuple[str, str]:
    token, secret = await client.request_token("oob")
    verifier = fake.approve(token, "alice")
    return await client.access_token(token, secret, verifier)


@pytest.mark.parametrize("method", ["HMAC-SHA1", "PLAINTEXT"])
async def test_oauth_flow_and_pages_against_the_fake(fake: FakeDiscogs, method: str) -> None:
    async with DiscogsClient(
        consumer_key=fake.consumer_key,
        consumer_secret=fake.consumer_secret,
        api_url=fake.base_url,
        signature_method=method,  # type: ignore[arg-type]
    ) as client:
        token, secret = await _link(client, fake)
        assert (await client.identity(token, secret))["username"] == "alice"
        pages = [
            p
            async for p in client.pages(
                user_path("alice", "collection", "folders", "0", "releases"),
                "releases",
                token=token,
                token_secret=secret,
            )
        ]
    assert [p.page for p in pages] == [1, 2, 3]
    assert sum(len(p.items) for p in pages) == 250 == pages[0].total_items
    assert method in fake.signature_methods_seen


async def test_wrong_secret_is_refused(fake: FakeDiscogs) -> None:
    async with DiscogsClient(
        consumer_key=fake.consumer_key, consumer_secret="wrong", api_url=fake.base_url
    ) as client:
        with pytest.raises(DiscogsAuthError, match="HTTP 401"):
            await client.request_token()


async def test_429_is_retried_and_5xx_gives_up(fake: FakeDiscogs) -> None:
    retry = RetryPolicy(max_429_retries=2, retry_after_s=0.05, max_error_retries=1, error_backoff_s=0.01)
    async with DiscogsClient(
        consumer_key=fake.consumer_key,
        consumer_secret=fake.consumer_secret,
        api_url=fake.base_url,
        limiter=RateLimiter(60, 60.0),
        retry=retry,
    ) as client:
        fake.fail_next(429, 429)
        token, _ = await client.request_token()
        assert token
        assert fake.status_counts[429] == 2
        fake.fail_next(503, 503)
        with pytest.raises(DiscogsUnavailableError, match="HTTP 503"):
            await client.request_token()


async def test_unreachable_discogs_is_a_readable_error() -> None:
    port = free_port()
    async with DiscogsClient(
        consumer_key="k",
        consumer_secret="s",
        api_url=f"http://127.0.0.1:{port}",
        retry=RetryPolicy(max_error_retries=1, error_backoff_s=0.01),
    ) as client:
        with pytest.raises(DiscogsUnavailableError, match="cannot reach Discogs"):
            await client.request_token()
