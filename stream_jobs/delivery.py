"""Delivery of warnings to the supervision platform: signed CloudEvents by POST.

Each warning version is POSTed as a CloudEvent in structured JSON mode
(:mod:`stream_jobs.cloudevent`), signed with HMAC-SHA256 (:mod:`riskwatch.signing`)
and carrying ``Idempotency-Key: <event id>``, so a platform that sees the same
event twice (a retry after a lost answer, a worker restart) can record it once.

Connection errors, timeouts and 5xx/429 answers are retried with exponential
backoff and full jitter (tenacity's ``wait_random_exponential``: attempt n waits
a uniform time in [0, min(30, 0.5 * 2**(n-1))] s), so workers that lost the
platform together do not all come back at the same instant. A 4xx answer is
the platform refusing this event, which a retry would not change.

An event that was refused, or still fails after ``max_attempts``, is
*undelivered*: it is produced with its reason to the undelivered-warnings topic
(:data:`riskwatch.topics.WARNINGS_UNDELIVERED`, as a
:class:`riskwatch.contracts.DeadLetter` whose payload is the exact event body)
and appended to the fallback JSONL file (``platform.fallback_file``), from where
an operator passes it on by another channel, or posts it again once the
platform is back (:func:`resend_fallback`, ``riskwatch warnings resend``).

The platform's 2xx answer may carry a receipt, ``{"reference": "..."}``, its
own reference for the warning; :meth:`WebhookClient.post` returns it in a
:class:`Receipt` and logs it at INFO.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from pydantic import SecretStr, ValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from alert_rules.warning import WarningRecord
from riskwatch.contracts import DeadLetter, PayloadError, to_json_bytes
from riskwatch.errors import ConfigError
from riskwatch.settings import PlatformSettings
from riskwatch.signing import signed_headers
from riskwatch.topics import WARNINGS
from stream_jobs.cloudevent import source_of, to_http

log = logging.getLogger(__name__)

BACKOFF_S = 0.5  # the first retry waits up to this long
BACKOFF_MAX_S = 30.0  # no wait is longer than this

DeadLetterSink = Callable[[bytes, bytes], Awaitable[None]]
"""Produces ``(key, value)`` to the undelivered-warnings topic."""


@dataclass(frozen=True)
class Receipt:
    """The platform's answer to one delivered event.

    Attributes:
        warning: the warning id.
        event: the CloudEvent id (the warning version).
        status: the HTTP status (2xx).
        reference: the platform's reference for the warning, when its answer
            was a JSON object with a string ``reference``; else None.
        attempts: how many POSTs it took.
    """

    warning: str
    event: str
    status: int
    reference: str | None
    attempts: int


class _Retryable(Exception):
    pass


class _Refused(Exception):
    pass


class WebhookClient:
    """Delivers warning versions to ``settings.webhook_url``.

    Args:
        settings: the platform settings (URL, timeout, attempts, sender id).
        secret: the HMAC signing secret (see :func:`riskwatch.signing.signing_secret`).
        fallback: JSONL file for undelivered events; None keeps them only on
            the topic (and in the log).
        dead_letter: produces undelivered events to Kafka; None skips that.
        clock: Unix time in seconds, for the signature timestamp.

    Counters: ``delivered``, ``failed`` (undelivered), ``referenced`` (answers
    that carried a reference), ``dead_lettered`` and ``fallback_written``.
    """

    def __init__(
        self,
        settings: PlatformSettings,
        *,
        secret: SecretStr,
        fallback: Path | None = None,
        dead_letter: DeadLetterSink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.source = source_of(settings.sender_id)
        self._secret = secret
        self._fallback = fallback
        self._dead_letter = dead_letter
        self._clock = clock
        self.delivered = 0
        self.failed = 0
        self.referenced = 0
        self.dead_lettered = 0
        self.fallback_written = 0
        self._session: aiohttp.ClientSession | None = None

    async def post(self, record: WarningRecord) -> Receipt | None:
        """POST one warning version; its receipt when the platform took it (2xx).

        Returns None when no webhook URL is set, and when the event ended
        undelivered (refused, or failing after ``max_attempts``); it is then
        dead-lettered and written to the fallback file. Never raises for a
        delivery problem.
        """
        url = self.settings.webhook_url
        if not url:
            return None
        headers, body = to_http(record, self.source)
        attempts = 0
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.settings.max_attempts),
                wait=wait_random_exponential(multiplier=BACKOFF_S, max=BACKOFF_MAX_S),
                retry=retry_if_exception_type(_Retryable),
                before_sleep=lambda state: _log_retry(record, state),
            ):
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    status, reference = await self._post_once(url, headers, body)
        except RetryError as exc:
            reason = f"{exc.last_attempt.exception()} after {attempts} attempts"
            log.error(  # noqa: TRY400 - the cause is in the message, no traceback
                "warning delivery failed warning=%s event=%s url=%s attempts=%s: %s",
                record.id,
                record.version_id,
                url,
                attempts,
                exc.last_attempt.exception(),
            )
            await self._undelivered(record, body, reason)
            return None
        except _Refused as exc:
            log.error(  # noqa: TRY400 - the cause is in the message, no traceback
                "warning refused by platform warning=%s event=%s url=%s: %s",
                record.id,
                record.version_id,
                url,
                exc,
            )
            await self._undelivered(record, body, f"refused: {exc}")
            return None
        self.delivered += 1
        self.referenced += reference is not None
        log.info(
            "warning delivered warning=%s event=%s reference=%s status=%s "
            "attempts=%s url=%s",
            record.id,
            record.version_id,
            reference,
            status,
            attempts,
            url,
        )
        return Receipt(record.id, record.version_id, status, reference, attempts)

    async def _post_once(
        self, url: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, str | None]:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s)
            )
        # Signed per attempt: the timestamp is part of what is signed.
        signed = {**headers, **signed_headers(self._secret, body, self._clock())}
        try:
            async with self._session.post(url, data=body, headers=signed) as response:
                if response.status == 429 or response.status >= 500:
                    raise _Retryable(f"HTTP {response.status}")
                if response.status >= 400:
                    raise _Refused(f"HTTP {response.status}: {await response.text()}")
                return response.status, _reference(await response.read())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Retryable(repr(exc)) from exc

    async def _undelivered(
        self, record: WarningRecord, body: bytes, reason: str
    ) -> None:
        """Dead-letter the event and write it to the fallback file."""
        self.failed += 1
        now_ns = time.time_ns()
        if self._dead_letter is not None:
            letter = DeadLetter.of(
                source=f"kafka:{WARNINGS}",
                topic=WARNINGS,
                error=PayloadError("webhook", reason),
                payload=body,
                received_ns=now_ns,
                stage="delivery",
            )
            try:
                await self._dead_letter(record.id.encode(), to_json_bytes(letter))
                self.dead_lettered += 1
            except Exception as exc:  # noqa: BLE001 - the fallback file still gets it
                log.error(  # noqa: TRY400 - the cause is in the message
                    "undelivered warning not dead-lettered warning=%s event=%s: %r",
                    record.id,
                    record.version_id,
                    exc,
                )
        if self._fallback is not None:
            line = {
                "failed_at": datetime.fromtimestamp(now_ns / 1e9, UTC).isoformat(),
                "reason": reason,
                "url": self.settings.webhook_url,
                "event": json.loads(body),
            }
            # A short synchronous append: this agent handles one warning at a
            # time and has just spent seconds retrying, so blocking for a
            # local write costs nothing worth a thread.
            try:
                append_line(self._fallback, json.dumps(line, ensure_ascii=False))
            except OSError as exc:
                log.error(  # noqa: TRY400 - the cause is in the message
                    "undelivered warning not written to fallback warning=%s "
                    "event=%s file=%s: %s",
                    record.id,
                    record.version_id,
                    self._fallback,
                    exc,
                )
                return
            self.fallback_written += 1
            log.warning(
                "undelivered warning written to fallback warning=%s event=%s file=%s",
                record.id,
                record.version_id,
                self._fallback,
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def append_line(path: Path, line: str) -> None:
    """Append ``line`` and a line break to ``path``, made owner-only (0600)
    when new: it holds officers' names and phone numbers.

    A file that does not end in a line break (a write torn by a crash or a
    full disk, a hand edit) gets one first, so that the new line is never
    glued to the torn one, which would hide it from a resend.
    ``surrogateescape``: a kept line that is not UTF-8 goes back byte for
    byte.

    Raises:
        OSError: the folder or file cannot be made or written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        size = os.fstat(fd).st_size
        torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
        text = ("\n" if torn else "") + line.rstrip("\n") + "\n"
        os.write(fd, text.encode("utf-8", "surrogateescape"))
    finally:
        os.close(fd)


@dataclass(frozen=True)
class ResendResult:
    """What :func:`resend_fallback` did with a fallback file's lines.

    Attributes:
        delivered: events the platform took this time.
        undelivered: events that failed again; the client wrote them back to
            the fallback file with the new reason.
        kept: lines that hold no warning event, written back unchanged.
    """

    delivered: int = 0
    undelivered: int = 0
    kept: int = 0


async def resend_fallback(
    settings: PlatformSettings, secret: SecretStr, path: Path
) -> ResendResult:
    """Post every event of the fallback file ``path`` again, with its own id.

    The platform deduplicates by event id, so an event it got after all is
    not recorded twice. An event that fails again (after
    ``settings.max_attempts``) goes back to ``path`` with its new reason, and
    a line that holds no warning event goes back unchanged: nothing is lost.
    It is not dead-lettered again; it is on the undelivered topic already.

    The file is first renamed aside (``<name>.resending-<ns>``), so that a
    worker appending to it meanwhile starts a new one rather than racing
    this rewrite; leftovers of an interrupted resend are taken up too, and
    each is removed once every line of it was posted or written back.
    Beside it, ``<aside>.done`` holds how many of its lines are finished, so
    a resend killed mid-file takes up at the next line instead of writing
    the finished ones back again; a kill between a line's write-back and
    that count can repeat that one line (an event, which the platform
    deduplicates, or a kept line).

    Raises:
        ConfigError: ``settings.webhook_url`` is not set.
    """
    if not settings.webhook_url:
        raise ConfigError("platform.webhook_url is not set: nowhere to resend to")
    client = WebhookClient(settings, secret=secret, fallback=path)
    try:
        return await _resend(path, client)
    finally:
        await client.close()


def _finished(file: Path) -> Path:
    """Where the count of ``file``'s finished lines is kept."""
    return file.with_name(file.name + ".done")


async def _resend(path: Path, client: WebhookClient) -> ResendResult:
    taken = sorted(
        aside
        for aside in path.parent.glob(f"{path.name}.resending-*")
        if aside.name.rsplit("-", 1)[1].isdigit()
    )
    if path.exists():
        aside = path.with_name(f"{path.name}.resending-{time.time_ns()}")
        path.rename(aside)
        taken.append(aside)
    counts = {"delivered": 0, "undelivered": 0, "kept": 0}
    for file in taken:
        progress = _finished(file)
        done = int(progress.read_text()) if progress.exists() else 0
        # surrogateescape: a line kept goes back byte for byte, even one
        # that is not UTF-8.
        with file.open(encoding="utf-8", errors="surrogateescape") as lines:
            for number, line in enumerate(lines, start=1):
                if number <= done or not line.strip():
                    continue
                counts[await _resend_line(path, client, file, number, line)] += 1
                progress.write_text(str(number))
        file.unlink()
        progress.unlink(missing_ok=True)
    log.info(
        "fallback resent file=%s delivered=%d undelivered=%d kept=%d",
        path,
        counts["delivered"],
        counts["undelivered"],
        counts["kept"],
    )
    return ResendResult(**counts)


async def _resend_line(
    path: Path, client: WebhookClient, file: Path, number: int, line: str
) -> str:
    """Post one fallback line's event again, or write the line back to
    ``path`` when it holds none; which of the counts it adds to."""
    record = _fallback_record(line)
    if isinstance(record, str):
        log.warning(
            "fallback line kept: no warning event file=%s line=%d: %s",
            file,
            number,
            record,
        )
        append_line(path, line)
        return "kept"
    return "delivered" if await client.post(record) is not None else "undelivered"


def _fallback_record(line: str) -> WarningRecord | str:
    """The warning of a fallback line, or why the line holds none."""
    try:
        entry = json.loads(line)
    except ValueError as exc:
        return f"not JSON ({str(exc).splitlines()[0]})"
    event = entry.get("event") if isinstance(entry, dict) else None
    data = event.get("data") if isinstance(event, dict) else None
    if not isinstance(data, dict):
        return (
            "no event.data object (a fallback line is {failed_at, reason, url, event})"
        )
    try:
        return WarningRecord.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = ".".join(map(str, err["loc"])) or "data"
        return f"event.data.{field}: {err['msg']} ({exc.error_count()} problem(s))"


def _reference(body: bytes) -> str | None:
    """The platform's reference from a 2xx answer, if it gave one."""
    try:
        answer = json.loads(body) if body else None
    except ValueError:
        return None
    if isinstance(answer, dict) and isinstance(answer.get("reference"), str):
        return str(answer["reference"])
    return None


def _log_retry(record: WarningRecord, state: RetryCallState) -> None:
    outcome = state.outcome
    log.warning(
        "warning delivery retry warning=%s event=%s attempt=%s wait_s=%.2f: %s",
        record.id,
        record.version_id,
        state.attempt_number,
        state.upcoming_sleep,
        outcome.exception() if outcome is not None else "?",
    )
