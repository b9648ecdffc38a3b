"""Webhook signatures: made, verified, and refused when anything is off."""

import hashlib
import hmac
import stat

import pytest
from pydantic import SecretStr

from riskwatch.settings import Settings
from riskwatch.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    signature,
    signed_headers,
    signing_secret,
    verify,
)

SECRET = SecretStr("s3cret")
BODY = b'{"specversion": "1.0", "id": "rw-1.v1"}'
NOW = 1_800_000_000.7


def test_signature_is_hmac_sha256_of_timestamp_dot_body():
    expected = hmac.new(b"s3cret", b"1800000000." + BODY, hashlib.sha256).hexdigest()
    assert signature(SECRET, 1_800_000_000, BODY) == f"sha256={expected}"
    headers = signed_headers(SECRET, BODY, NOW)
    assert headers == {
        TIMESTAMP_HEADER: "1800000000",
        SIGNATURE_HEADER: f"sha256={expected}",
    }


def test_a_correct_signature_verifies():
    verify(SECRET, signed_headers(SECRET, BODY, NOW), BODY, now_s=NOW + 10)


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        (lambda h, b: (h, b[:-1] + b"x"), SIGNATURE_HEADER, "does not match"),
        (lambda h, b: (h, b + b" "), SIGNATURE_HEADER, "does not match"),
        (
            lambda h, b: ({**h, TIMESTAMP_HEADER: str(int(NOW) + 1)}, b),
            SIGNATURE_HEADER,
            "does not match",
        ),
        (
            lambda h, b: ({TIMESTAMP_HEADER: h[TIMESTAMP_HEADER]}, b),
            SIGNATURE_HEADER,
            "missing",
        ),
        (
            lambda h, b: ({SIGNATURE_HEADER: h[SIGNATURE_HEADER]}, b),
            TIMESTAMP_HEADER,
            "missing",
        ),
        (
            lambda h, b: ({**h, TIMESTAMP_HEADER: "soon"}, b),
            TIMESTAMP_HEADER,
            "Unix seconds",
        ),
        (
            lambda h, b: ({**h, SIGNATURE_HEADER: "md5=00"}, b),
            SIGNATURE_HEADER,
            "sha256=<hex>",
        ),
    ],
    ids=[
        "tampered",
        "appended",
        "timestamp-changed",
        "no-signature",
        "no-timestamp",
        "bad-timestamp",
        "other-scheme",
    ],
)
def test_anything_off_is_refused_naming_the_header(change, field, reason):
    headers, body = change(signed_headers(SECRET, BODY, NOW), BODY)
    with pytest.raises(SignatureError, match=reason) as caught:
        verify(SECRET, headers, body, now_s=NOW)
    assert caught.value.field == field


def test_another_secret_is_refused():
    headers = signed_headers(SecretStr("other"), BODY, NOW)
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, headers, BODY, now_s=NOW)


@pytest.mark.parametrize("skew", [-301, 301])
def test_a_stale_or_future_timestamp_is_refused(skew):
    headers = signed_headers(SECRET, BODY, NOW)
    with pytest.raises(SignatureError, match="tolerance 300 s") as caught:
        verify(SECRET, headers, BODY, now_s=int(NOW) + skew)
    assert caught.value.field == TIMESTAMP_HEADER


def test_secret_is_generated_once_into_the_run_folder(tmp_path):
    settings = Settings(run_dir=tmp_path)
    first = signing_secret(settings)
    assert signing_secret(settings) == first
    path = tmp_path / "secrets" / "platform-signing-secret"
    assert path.read_text().strip() == first.get_secret_value()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "**" in repr(first)


def test_configured_secret_wins(tmp_path):
    settings = Settings(run_dir=tmp_path, platform={"signing_secret": "given"})
    assert signing_secret(settings).get_secret_value() == "given"
    assert not (tmp_path / "secrets" / "platform-signing-secret").exists()
