"""Errors of the officer API's client, as the CLI prints them."""

from __future__ import annotations

from riskwatch.errors import RiskwatchError


class ApiError(RiskwatchError):
    """The API answered with an error, or could not be reached.

    Attributes:
        status: the HTTP status, None when there was no answer.
        field: the offending input field of a 422, else None.
    """

    def __init__(
        self, message: str, *, status: int | None = None, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


class Unauthorized(ApiError):
    """401: the token is missing or not known."""


class Forbidden(ApiError):
    """403: the token's role may not do this."""


class NotFound(ApiError):
    """404: no such warning."""


class Conflict(ApiError):
    """409: the action is not allowed from the warning's current status."""


class InvalidInput(ApiError):
    """422: a field of the request is invalid; ``field`` names it."""


class Unavailable(ApiError):
    """The API cannot be reached, or its store is still loading (503)."""


BY_STATUS: dict[int, type[ApiError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: InvalidInput,
    503: Unavailable,
}
