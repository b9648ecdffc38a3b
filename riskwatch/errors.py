"""The exception tree of the riskwatch package.

Every error the CLI expects is a :class:`RiskwatchError`; the CLI prints it as
``ErrorName: message`` and exits non-zero without a traceback.
"""


class RiskwatchError(Exception):
    """Base of every error riskwatch raises on purpose."""


class ConfigError(RiskwatchError):
    """A setting or configuration file is missing or invalid."""


class ServiceError(RiskwatchError):
    """A managed service could not be installed, started, checked or stopped."""

    def __init__(self, service: str, message: str) -> None:
        super().__init__(f"{service}: {message}")
        self.service = service


class InstallError(ServiceError):
    """Fetching or building a service's software failed."""


class StartupTimeout(ServiceError):
    """A service did not become healthy before its deadline."""
