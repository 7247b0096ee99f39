"""Error types shared by workers: transient errors are retried, permanent ones dead-lettered."""

from __future__ import annotations


class DiscogsographyError(Exception):
    """Base class for the project's own errors."""


class ServiceUnavailableError(DiscogsographyError):
    """A store or broker could not be reached after the configured retries."""

    def __init__(self, service: str, address: str, cause: BaseException | None = None) -> None:
        self.service = service
        self.address = address
        reason = f": {cause}" if cause else ""
        super().__init__(f"cannot reach {service} at {address}{reason}")


class PermanentRecordError(DiscogsographyError):
    """A record that can never be processed (bad shape, bad JSON); dead-letter it with the reason."""


class TransientError(DiscogsographyError):
    """A failure that may succeed on retry (connection lost, deadlock, timeout)."""
