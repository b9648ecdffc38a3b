"""Delivery of warnings to the supervision platform by HTTP POST (JSON).

Retries with exponential backoff (tenacity) on connection errors, timeouts and
5xx/429 answers; a 4xx answer is the platform refusing this warning, which a
retry would not change. A warning that still fails after ``max_attempts`` is
logged at ERROR with its id and left on the warnings topic, where it stays
(that topic is never expired) for a later re-delivery.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from riskwatch.settings import PlatformSettings

log = logging.getLogger(__name__)


class _Retryable(Exception):
    pass


class WebhookClient:
    def __init__(self, settings: PlatformSettings) -> None:
        self.settings = settings
        self.delivered = 0
        self.failed = 0
        self._session: aiohttp.ClientSession | None = None

    async def post(self, warning: dict[str, Any]) -> bool:
        """POST one warning; True when the platform accepted it (2xx)."""
        url = self.settings.webhook_url
        if not url:
            return False
        ident = warning.get("id", "?")
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.settings.max_attempts),
                wait=wait_exponential(multiplier=0.5, max=30),
                retry=retry_if_exception_type(_Retryable),
            ):
                with attempt:
                    await self._post_once(url, warning)
        except RetryError as exc:
            self.failed += 1
            log.error(  # noqa: TRY400 - the cause is in the message, no traceback
                "warning delivery failed warning=%s url=%s attempts=%s: %s",
                ident,
                url,
                self.settings.max_attempts,
                exc.last_attempt.exception(),
            )
            return False
        except _Refused as exc:
            self.failed += 1
            log.error(  # noqa: TRY400 - the cause is in the message, no traceback
                "warning refused by platform warning=%s url=%s: %s", ident, url, exc
            )
            return False
        self.delivered += 1
        log.info("warning delivered warning=%s url=%s", ident, url)
        return True

    async def _post_once(self, url: str, warning: dict[str, Any]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s)
            )
        try:
            async with self._session.post(url, json=warning) as response:
                if response.status == 429 or response.status >= 500:
                    raise _Retryable(f"HTTP {response.status}")
                if response.status >= 400:
                    raise _Refused(f"HTTP {response.status}: {await response.text()}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Retryable(repr(exc)) from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class _Refused(Exception):
    pass
