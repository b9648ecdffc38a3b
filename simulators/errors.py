"""Errors of the simulators package; all are :class:`RiskwatchError` so that the
CLI prints them as ``ErrorName: message``."""

from __future__ import annotations

from riskwatch.errors import RiskwatchError


class SimulatorError(RiskwatchError):
    """Base of every error the simulators raise on purpose."""


class InjectionError(SimulatorError):
    """A requested anomaly does not fit the fleet (unknown device, metric,
    kind, or a start outside the window)."""


class ReplayInputError(SimulatorError):
    """A CSV series cannot be replayed (missing file or column, bad value or
    timestamp, timestamps not increasing)."""


class BrokerUnavailable(SimulatorError):
    """The MQTT broker refused the connection or could not be reached.

    Attributes:
        reason_code: the MQTT CONNACK reason code, or None when no answer came.
    """

    def __init__(self, message: str, reason_code: int | None = None) -> None:
        super().__init__(message)
        self.reason_code = reason_code


class PublishError(SimulatorError):
    """A message could not be handed to the broker (connection lost, or the
    in-flight window stayed full past its deadline)."""
