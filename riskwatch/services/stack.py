"""The whole local stack: Mosquitto, Kafka and InfluxDB, in start order."""

from __future__ import annotations

from collections.abc import Iterable

from riskwatch.errors import ConfigError, ServiceError
from riskwatch.services.base import Report, Service, ServiceStatus
from riskwatch.services.influxdb import InfluxDB
from riskwatch.services.kafka import Kafka
from riskwatch.services.mosquitto import Mosquitto
from riskwatch.services.process import folder_lock
from riskwatch.settings import Settings

SERVICE_TYPES: tuple[type[Service], ...] = (Mosquitto, Kafka, InfluxDB)
SERVICE_NAMES = tuple(t.name for t in SERVICE_TYPES)


class Stack:
    """The services of one run folder."""

    def __init__(self, settings: Settings, report: Report = lambda _: None) -> None:
        self.settings = settings
        self.report = report
        self.services: dict[str, Service] = {
            t.name: t(settings, report) for t in SERVICE_TYPES
        }

    def select(self, names: Iterable[str] = ()) -> list[Service]:
        """The named services in start order; all of them when none is named."""
        wanted = list(names) or list(SERVICE_NAMES)
        unknown = sorted(set(wanted) - set(SERVICE_NAMES))
        if unknown:
            raise ConfigError(
                f"unknown service {', '.join(unknown)}; "
                f"choose from {', '.join(SERVICE_NAMES)}"
            )
        return [s for n, s in self.services.items() if n in wanted]

    def install(self, names: Iterable[str] = ()) -> None:
        """Install (or build) the named services' software without starting it.

        The slow part of a first ``up`` on a fresh machine; cached, so a
        second call only checks the caches.
        """
        services = self.select(names)
        with folder_lock(self.settings.run_dir, self._waiting):
            for service in services:
                service.install()
                self.report(f"{service.name}: installed")

    def up(self, names: Iterable[str] = ()) -> None:
        """Start the named services in order, under the run folder's lock."""
        services = self.select(names)
        with folder_lock(self.settings.run_dir, self._waiting):
            for service in services:
                service.up()

    def down(self, names: Iterable[str] = ()) -> None:
        """Stop the named services in reverse order, under the run folder's lock.

        One service that cannot be stopped does not keep the others running.

        Raises:
            ServiceError: some service could not be stopped; the message holds
                each one's reason.
        """
        services = list(reversed(self.select(names)))
        failed: list[ServiceError] = []
        with folder_lock(self.settings.run_dir, self._waiting):
            for service in services:
                try:
                    service.down()
                except ServiceError as exc:
                    failed.append(exc)
        if len(failed) == 1:
            raise failed[0]
        if failed:
            raise ServiceError(
                ", ".join(e.service for e in failed),
                "not stopped:\n" + "\n".join(str(e) for e in failed),
            )

    def status(self, names: Iterable[str] = ()) -> list[ServiceStatus]:
        """Read-only: takes no lock, writes nothing."""
        return [service.status() for service in self.select(names)]

    def _waiting(self) -> None:
        self.report(
            f"waiting for another `riskwatch services up/down` on "
            f"{self.settings.run_dir} to finish"
        )

    @property
    def mosquitto(self) -> Mosquitto:
        service = self.services["mosquitto"]
        assert isinstance(service, Mosquitto)  # noqa: S101 - built above
        return service

    @property
    def influxdb(self) -> InfluxDB:
        service = self.services["influxdb"]
        assert isinstance(service, InfluxDB)  # noqa: S101 - built above
        return service
