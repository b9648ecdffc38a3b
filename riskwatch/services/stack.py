"""The whole local stack: Mosquitto, Kafka and InfluxDB, in start order."""

from __future__ import annotations

from collections.abc import Iterable

from riskwatch.errors import ConfigError
from riskwatch.services.base import Report, Service, ServiceStatus
from riskwatch.services.influxdb import InfluxDB
from riskwatch.services.kafka import Kafka
from riskwatch.services.mosquitto import Mosquitto
from riskwatch.settings import Settings

SERVICE_TYPES: tuple[type[Service], ...] = (Mosquitto, Kafka, InfluxDB)
SERVICE_NAMES = tuple(t.name for t in SERVICE_TYPES)


class Stack:
    """The services of one run folder."""

    def __init__(self, settings: Settings, report: Report = lambda _: None) -> None:
        self.settings = settings
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

    def up(self, names: Iterable[str] = ()) -> None:
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        for service in self.select(names):
            service.up()

    def down(self, names: Iterable[str] = ()) -> None:
        for service in reversed(self.select(names)):
            service.down()

    def status(self, names: Iterable[str] = ()) -> list[ServiceStatus]:
        return [service.status() for service in self.select(names)]

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
