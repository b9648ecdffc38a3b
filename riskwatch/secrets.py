"""Generated secrets, kept in files only the owner can read.

A secret that the settings leave unset is generated once and stored as
``<run_dir>/secrets/<name>`` (mode 0600), so that every process of the same
stack (services, gateway, tests) reads the same value. Secret values are never
logged.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import SecretStr


class SecretStore:
    """Files of generated secrets under one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"secret name {name!r} must be a plain file name")
        return self.folder / name

    def get(self, name: str, configured: SecretStr | None = None) -> str | None:
        """Return the configured value, else the stored one, else None.

        Never writes: for read-only commands such as ``services status``.
        """
        if configured is not None:
            return configured.get_secret_value()
        try:
            return self.path(name).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None

    def get_or_create(self, name: str, configured: SecretStr | None = None) -> str:
        """Return the configured value, else the stored one, else a new one."""
        if configured is not None:
            return configured.get_secret_value()
        path = self.path(name)
        if path.exists():
            return path.read_text(encoding="utf-8").strip()
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        value = secrets.token_urlsafe(24)
        # Write a private temporary file, then link it into place: link fails
        # if another process won the race, and we read the winner's value, so
        # every process of the stack ends up with the same secret.
        tmp = self.folder / f".{name}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(value + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            value = path.read_text(encoding="utf-8").strip()
        finally:
            tmp.unlink()
        return value
