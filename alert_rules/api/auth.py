"""Bearer tokens and roles of the officer API.

Each account (``api.users``) has a role and a token: configured, or generated
once into ``<run_dir>/secrets/api-token-<name>`` (:mod:`riskwatch.secrets`).
Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from riskwatch.secrets import SecretStore
from riskwatch.settings import ApiRole, ApiSettings


@dataclass(frozen=True)
class Account:
    """Who a request is from."""

    name: str
    role: ApiRole

    @property
    def may_act(self) -> bool:
        return self.role in ("officer", "supervisor")

    @property
    def may_silence_long(self) -> bool:
        """Whether silences up to ``api.silences.supervisor_factor`` times the
        officers' limit are taken from this account."""
        return self.role == "supervisor"


def token_secret_name(user: str) -> str:
    """The secret file of a generated token.

    >>> token_secret_name("officer")
    'api-token-officer'
    """
    return f"api-token-{user}"


class Tokens:
    """Maps a bearer token to its account."""

    def __init__(self, tokens: dict[str, Account]) -> None:
        self._tokens = tokens

    @classmethod
    def from_settings(cls, api: ApiSettings, secrets: SecretStore) -> Tokens:
        """Every configured account, generating the tokens left unset."""
        return cls(
            {
                secrets.get_or_create(token_secret_name(name), user.token): Account(
                    name, user.role
                )
                for name, user in api.users.items()
            }
        )

    def account(self, authorization: str | None) -> Account | None:
        """The account of an ``Authorization: Bearer <token>`` header, if any."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        try:
            given = token.strip().encode()
        except UnicodeEncodeError:
            # Bytes that are not text (aiohttp hands them on as surrogates):
            # no token of ours.
            return None
        found = None
        # Compare against every token, so the time taken tells nothing.
        for known, account in self._tokens.items():
            if hmac.compare_digest(known.encode(), given):
                found = account
        return found
