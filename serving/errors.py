"""Request errors and the one table from library exceptions to HTTP statuses."""

from __future__ import annotations

from mfstore import errors


class RequestError(Exception):
    """A bad request: answered with `status` and `{"error": message}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


STATUS: list[tuple[type[errors.MFStoreError], int]] = [
    (errors.NotFoundError, 404),
    (errors.ConfigError, 400),
    (errors.SpecError, 400),
    (errors.MFStoreError, 500),
]


def status_of(err: errors.MFStoreError) -> int:
    return next(code for cls, code in STATUS if isinstance(err, cls))
