"""HMAC-SHA256 signatures of webhook requests, made by riskwatch and checked
by the receiving platform.

The signed bytes are the timestamp header's value, a dot, and the exact body
bytes: ``HMAC-SHA256(secret, f"{timestamp}.".encode() + body)``, sent as
``X-Riskwatch-Signature: sha256=<hex>``. The timestamp is inside the signature
so that a captured request cannot be replayed later with a fresh timestamp;
a receiver refuses timestamps further than its tolerance from its own clock.
Each attempt of a delivery is signed anew (its timestamp changes), while the
``Idempotency-Key`` header stays the event id.

The secret is ``platform.signing_secret`` or, when that is unset, one generated
into ``<run_dir>/secrets/platform-signing-secret`` (see :mod:`riskwatch.secrets`),
shared by every process of the stack. It is never logged.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from pydantic import SecretStr

from riskwatch.errors import RiskwatchError
from riskwatch.secrets import SecretStore
from riskwatch.settings import Settings

SIGNATURE_HEADER = "X-Riskwatch-Signature"
TIMESTAMP_HEADER = "X-Riskwatch-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
SECRET_NAME = "platform-signing-secret"  # noqa: S105 - a file name, not a secret
_SCHEME = "sha256="


class SignatureError(RiskwatchError):
    """A request's signature is missing, malformed, stale or wrong.

    Attributes:
        field: the header at fault.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def signing_secret(settings: Settings) -> SecretStr:
    """The webhook signing secret: configured, else generated once per run folder."""
    store = SecretStore(settings.run_dir / "secrets")
    return SecretStr(store.get_or_create(SECRET_NAME, settings.platform.signing_secret))


def signature(secret: SecretStr, timestamp: int, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``.

    Args:
        secret: the shared secret.
        timestamp: Unix time in whole seconds, as sent in the timestamp header.
        body: the exact request body.

    >>> signature(SecretStr("s"), 0, b"{}")[:15]
    'sha256=e79b1f68'
    """
    mac = hmac.new(
        secret.get_secret_value().encode(),
        f"{timestamp}.".encode() + body,
        hashlib.sha256,
    )
    return _SCHEME + mac.hexdigest()


def signed_headers(secret: SecretStr, body: bytes, now_s: float) -> dict[str, str]:
    """The timestamp and signature headers for one attempt at ``now_s``."""
    timestamp = int(now_s)
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }


def verify(
    secret: SecretStr,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now_s: float,
    tolerance_s: float = 300.0,
) -> None:
    """Check a request's signature; return quietly when it is right.

    Args:
        secret: the shared secret.
        headers: the request headers (a case-insensitive mapping, such as
            aiohttp's, or one with the header names as spelt here).
        body: the exact request body.
        now_s: the receiver's clock, Unix seconds.
        tolerance_s: how far the timestamp may be from ``now_s``, either way.

    Raises:
        SignatureError: a header is missing or malformed, the timestamp is
            outside the tolerance, or the signature does not match.
    """
    stamp = headers.get(TIMESTAMP_HEADER)
    given = headers.get(SIGNATURE_HEADER)
    if stamp is None:
        raise SignatureError(TIMESTAMP_HEADER, "header is missing")
    if given is None:
        raise SignatureError(SIGNATURE_HEADER, "header is missing")
    if not stamp.isdigit():
        raise SignatureError(TIMESTAMP_HEADER, f"expected Unix seconds, got {stamp!r}")
    if abs(now_s - int(stamp)) > tolerance_s:
        raise SignatureError(
            TIMESTAMP_HEADER,
            f"{int(now_s) - int(stamp)} s from the receiver's clock "
            f"(tolerance {tolerance_s:g} s)",
        )
    if not given.startswith(_SCHEME):
        raise SignatureError(SIGNATURE_HEADER, f"expected {_SCHEME}<hex>")
    # Constant-time comparison: a byte-by-byte one leaks how much matched.
    if not hmac.compare_digest(given, signature(secret, int(stamp), body)):
        raise SignatureError(SIGNATURE_HEADER, "does not match the body")
