"""Process settings: one frozen object, built at start-up from the environment.

Sources, highest priority first:

1. environment variables with the prefix ``RISKWATCH_``; nested fields use a
   double underscore, e.g. ``RISKWATCH_KAFKA__PORT=19092``;
2. an optional TOML file named by ``--config`` or ``RISKWATCH_CONFIG``, with one
   table per section (``[mqtt]``, ``[kafka]``, ``[influxdb]``);
3. the defaults below, which run everything on 127.0.0.1.

Secrets left unset (MQTT passwords, the InfluxDB admin password and operator
token) are generated on first use and kept under ``<run_dir>/secrets``; see
:mod:`riskwatch.secrets`.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from riskwatch.errors import ConfigError

Port = Annotated[int, Field(ge=1, le=65535)]
_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "riskwatch"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MqttSettings(_Section):
    """Mosquitto broker and its accounts.

    ``device_accounts`` maps an MQTT username to the enterprise id whose topic
    prefix (``<topic_root>/<enterprise>/#``) that user may publish under, and
    nothing else. The gateway user may read all telemetry.
    """

    host: str = "127.0.0.1"
    port: Port = 1883
    topic_root: str = "riskwatch/v1"
    gateway_username: str = "riskwatch-gateway"
    gateway_password: SecretStr | None = None
    device_accounts: dict[str, str] = Field(
        default_factory=lambda: {"device-e001": "E001", "device-e002": "E002"}
    )
    device_passwords: dict[str, SecretStr] = Field(default_factory=dict)
    # May write telemetry for every enterprise: for the fleet simulator and the
    # replayer. Set to null in production so that no such account exists.
    simulator_username: str | None = "riskwatch-simulator"
    simulator_password: SecretStr | None = None

    @field_validator("device_accounts")
    @classmethod
    def _check_accounts(cls, value: dict[str, str]) -> dict[str, str]:
        for user, enterprise in value.items():
            if not re.match(_ID_PATTERN, user):
                raise ValueError(f"username {user!r} must match {_ID_PATTERN}")
            if not re.match(_ID_PATTERN, enterprise):
                raise ValueError(
                    f"enterprise id {enterprise!r} of user {user!r} must match "
                    f"{_ID_PATTERN}"
                )
        return value


class KafkaSettings(_Section):
    """Single-node KRaft broker (combined broker and controller)."""

    host: str = "127.0.0.1"
    port: Port = 9092
    controller_port: Port = 9093
    version: str = "3.9.1"
    heap_mb: int = Field(default=768, ge=256, le=8192)
    readings_partitions: int = Field(default=8, ge=1, le=1024)
    default_partitions: int = Field(default=4, ge=1, le=1024)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"


class InfluxSettings(_Section):
    """InfluxDB 2.x OSS, built from source once and cached."""

    host: str = "127.0.0.1"
    port: Port = 8086
    version: str = "2.9.1"
    org: str = "riskwatch"
    bucket: str = "telemetry"
    retention_days: int = Field(default=30, ge=1, le=36500)
    admin_username: str = "riskwatch-admin"
    admin_password: SecretStr | None = None
    token: SecretStr | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class GatewaySettings(_Section):
    """The MQTT -> Kafka gateway.

    Several gateways split the load through an MQTT shared subscription when
    ``shared_group`` is set; each needs its own ``client_id``.
    """

    client_id: str = Field(default="riskwatch-gateway-1", pattern=_ID_PATTERN)
    shared_group: str | None = Field(default="riskwatch", pattern=_ID_PATTERN)
    session_expiry_s: int = Field(default=86400, ge=0)
    # MQTT v5 Receive Maximum: unacknowledged QoS 1 messages the broker may
    # have in flight to us, i.e. the gateway's bounded in-flight window.
    receive_maximum: int = Field(default=1000, ge=1, le=65535)
    max_payload_bytes: int = Field(default=65536, ge=256)
    max_future_skew_s: float = Field(default=300.0, ge=0)
    # Readings older than this are dead-lettered: InfluxDB would refuse them
    # anyway once they fall outside the bucket's retention (influxdb.retention_days).
    max_age_s: float | None = Field(default=30 * 86400.0, gt=0)
    produce_attempts: int = Field(default=5, ge=1, le=100)
    produce_backoff_s: float = Field(default=0.5, gt=0)


class WorkerSettings(_Section):
    """The Faust stream-processing worker."""

    app_id: str = Field(default="riskwatch-worker", pattern=_ID_PATTERN)
    # Where a new consumer group starts: "earliest" processes what is already
    # on the topics; the demo uses "latest" with a fresh app_id.
    offset_reset: Literal["earliest", "latest"] = "earliest"
    web_port: Port = 6066
    rules_dir: Path | None = None  # None: the default rules shipped in alert_rules
    authority: str = "Municipal Market Supervision and Work Safety Office"
    silent_after_s: float = Field(default=900.0, gt=0)
    # A feed outage (stream_jobs/outage.py): at least outage_min_devices
    # devices, and at least outage_share of those heard from in the last
    # outage_window_s, due for silence in the same scan give one feed
    # warning instead of one device-silent warning each. A device due alone
    # is reported outage_settle_s late, so that an outage's devices, whose
    # last readings are up to a reporting interval apart, are due together.
    outage_min_devices: int = Field(default=5, ge=1)
    outage_share: float = Field(default=0.5, gt=0, le=1)
    outage_window_s: float = Field(default=3600.0, gt=0)
    outage_settle_s: float = Field(default=60.0, ge=0)
    # A device not heard from for this long (wall time since its last reading
    # reached the gateway) has its active warnings expired; keep it well
    # above silent_after_s, or the silence warnings open after the expiry.
    expire_after_s: float = Field(default=7 * 24 * 3600.0, gt=0)
    # Event time (docs/rules.md, "Late and out-of-order readings"): a device's
    # readings are held until its latest device time is lateness_s past them
    # (or nothing has come from it for lateness_s of wall time), then scored
    # and evaluated in timestamp order; 0 applies each as it arrives. The
    # buffer is part of the device's table entry, which Kafka caps at 1 MiB.
    # 30 s by default: every warning waits that long (a level I gas reading
    # too), so it covers QoS 1 redeliveries and a gateway's reconnect, not a
    # device's store-and-forward backlog of minutes.
    lateness_s: float = Field(default=30.0, ge=0, le=3600)
    # Sized for a burst: 2048 single-metric readings (about 110 bytes each
    # held) fit, e.g. 15 s of a 100 Hz device arriving shuffled.
    reorder_max_readings: int = Field(default=2048, ge=1, le=10_000)
    reorder_max_bytes: int = Field(default=262_144, ge=1024, le=512 * 1024)
    influx_batch: int = Field(default=2000, ge=1)
    influx_flush_s: float = Field(default=1.0, gt=0)
    # The scoring agent takes up to score_batch readings at a time, waiting
    # at most score_wait_s for a batch to fill, and scores them together
    # (numpy across the devices: stream_jobs/detectors.py); their offsets are
    # committed once the whole batch is done.
    score_batch: int = Field(default=1000, ge=1)
    score_wait_s: float = Field(default=0.1, gt=0)
    # Hours an officer has to handle a warning, by level, from its opening:
    # the record's deadline (alert_rules.lifecycle).
    handling_hours: dict[str, float] = Field(
        default_factory=lambda: {"I": 1.0, "II": 4.0, "III": 24.0, "IV": 72.0}
    )

    @model_validator(mode="after")
    def _lateness_before_silence(self) -> WorkerSettings:
        # The silence scan releases a quiet device's held readings after
        # lateness_s; only then can it be judged silent, from its last reading.
        if self.lateness_s >= self.silent_after_s:
            raise ValueError(
                f"lateness_s ({self.lateness_s:g}) must be below silent_after_s "
                f"({self.silent_after_s:g}): a device's held readings are applied "
                "before its silence is judged"
            )
        return self

    @field_validator("handling_hours")
    @classmethod
    def _check_handling(cls, value: dict[str, float]) -> dict[str, float]:
        levels = {"I", "II", "III", "IV"}
        if set(value) != levels:
            raise ValueError(
                f"needs exactly the levels I, II, III, IV; got {sorted(value)}"
            )
        for level, hours in value.items():
            if not hours > 0:
                raise ValueError(f"level {level}: hours must be > 0, got {hours}")
        return value


class PlatformSettings(_Section):
    """The supervision platform that receives warnings by HTTP POST.

    Each warning version is POSTed as a signed CloudEvent (see
    :mod:`stream_jobs.delivery` and :mod:`riskwatch.signing`).

    Attributes:
        webhook_url: where to POST; None delivers nothing.
        timeout_s: per attempt, connecting included.
        max_attempts: attempts per event before it is dead-lettered.
        sender_id: this riskwatch instance as CAP ``sender`` and (as
            ``urn:riskwatch:<sender_id>``) CloudEvents ``source``; CAP forbids
            spaces, commas, ``<`` and ``&`` in it, so the authority's name
            travels in CAP ``senderName`` and in the record instead.
        signing_secret: HMAC key shared with the platform; None generates one
            into ``<run_dir>/secrets/platform-signing-secret``.
        fallback_file: JSONL file, relative to ``run_dir`` unless absolute,
            that events still undelivered after ``max_attempts`` are appended
            to, for an operator to pass on by another channel.
    """

    webhook_url: str | None = "http://127.0.0.1:8787/warnings"
    timeout_s: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=8, ge=1)
    sender_id: str = Field(
        default="riskwatch.local", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$"
    )
    signing_secret: SecretStr | None = None
    fallback_file: Path = Path("undelivered-warnings.jsonl")


ApiRole = Literal["supervisor", "officer", "viewer"]


class ApiUser(_Section):
    """One account of the officer API.

    Attributes:
        role: ``officer`` may read and act; ``supervisor`` may also record
            silences up to ``api.silences.supervisor_factor`` times longer;
            ``viewer`` may only read.
        token: its bearer token; None generates one into
            ``<run_dir>/secrets/api-token-<name>``.
    """

    role: ApiRole
    token: SecretStr | None = None


class SilenceLimits(_Section):
    """How long a silence or maintenance window may last, from its start, by
    what it names; an officer asking longer is refused (422 naming ``until``).

    Attributes:
        device_h: one device (a calibration, a repair): 7 days.
        enterprise_h: every device of one enterprise (a turnaround): 3 days.
        rule_h: one rule across the whole fleet, the widest silence: 1 day.
        supervisor_factor: a ``supervisor`` may record silences this many
            times longer (28 days, 12 days, 4 days by default).
        ahead_h: how far ahead a maintenance window may start: 30 days.
    """

    device_h: float = Field(default=7 * 24.0, gt=0)
    enterprise_h: float = Field(default=3 * 24.0, gt=0)
    rule_h: float = Field(default=24.0, gt=0)
    supervisor_factor: float = Field(default=4.0, ge=1)
    ahead_h: float = Field(default=30 * 24.0, gt=0)


class ApiSettings(_Section):
    """The officer HTTP API (``riskwatch api``) and its command-line client.

    Attributes:
        host: address it listens on, and the CLI connects to.
        port: its TCP port.
        users: accounts by name; the name is the ``by`` of the audit entries
            its commands make.
        apply_timeout_s: how long an action waits for the worker to apply the
            command before answering 202 (accepted, not yet applied).
        evidence_points: most readings returned per evidence series.
        silences: the longest silence per subject kind.
    """

    host: str = "127.0.0.1"
    port: Port = 8788
    users: dict[str, ApiUser] = Field(
        default_factory=lambda: {
            "supervisor": ApiUser(role="supervisor"),
            "officer": ApiUser(role="officer"),
            "viewer": ApiUser(role="viewer"),
        }
    )
    apply_timeout_s: float = Field(default=10.0, gt=0)
    evidence_points: int = Field(default=2000, ge=1, le=100_000)
    silences: SilenceLimits = Field(default_factory=SilenceLimits)

    @field_validator("users")
    @classmethod
    def _check_users(cls, value: dict[str, ApiUser]) -> dict[str, ApiUser]:
        for name in value:
            if not re.match(_ID_PATTERN, name):
                raise ValueError(f"user name {name!r} must match {_ID_PATTERN}")
        return value

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class Settings(BaseSettings):
    """Everything one riskwatch process needs to know; frozen once built."""

    model_config = SettingsConfigDict(
        env_prefix="RISKWATCH_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
    )

    run_dir: Path = Field(default_factory=lambda: Path.cwd() / ".riskwatch")
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    startup_timeout_s: float = Field(default=120.0, gt=0)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    influxdb: InfluxSettings = Field(default_factory=InfluxSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    platform: PlatformSettings = Field(default_factory=PlatformSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)

    @field_validator("run_dir", "cache_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @model_validator(mode="after")
    def _distinct_ports(self) -> Settings:
        # All of these bind on this machine; two on one port means the second
        # fails to start, far from the setting that caused it.
        seen: dict[int, str] = {}
        for field, port in (
            ("mqtt.port", self.mqtt.port),
            ("kafka.port", self.kafka.port),
            ("kafka.controller_port", self.kafka.controller_port),
            ("influxdb.port", self.influxdb.port),
            ("worker.web_port", self.worker.web_port),
            ("api.port", self.api.port),
        ):
            if port in seen:
                raise ValueError(
                    f"{seen[port]} and {field} are both {port}; each service "
                    "needs a port of its own"
                )
            seen[port] = field
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML source reads nothing unless load_settings() named a file.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def load_settings(config_file: Path | None = None) -> Settings:
    """Build the settings once, at start-up.

    Args:
        config_file: optional TOML file; ``RISKWATCH_CONFIG`` is used when None.

    Raises:
        ConfigError: the file is missing, unreadable or not valid TOML, an
            environment variable holds invalid JSON, or a value is invalid; the
            message names the file, variable or field and the reason.
    """
    if config_file is None and os.environ.get("RISKWATCH_CONFIG"):
        config_file = Path(os.environ["RISKWATCH_CONFIG"])
    try:
        if config_file is None:
            return Settings()
        if not config_file.is_file():
            raise ConfigError(f"config file {config_file} does not exist")

        class _FromFile(Settings):
            model_config = SettingsConfigDict(toml_file=config_file)

        return _FromFile()
    except ValidationError as exc:
        problems = "; ".join(
            ".".join(str(p) for p in err["loc"]) + ": " + err["msg"]
            if err["loc"]
            else err["msg"]
            for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"config file {config_file} is not valid TOML: {exc}"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {config_file} cannot be read: {exc}") from exc
    except SettingsError as exc:
        raise ConfigError(_env_problem(exc)) from exc


def _env_problem(exc: SettingsError) -> str:
    """Name the variable behind a SettingsError, which names only the section.

    pydantic-settings raises it when a variable of a nested section (``mqtt``)
    holds text that is not JSON; its cause is the JSONDecodeError.
    """
    reason = str(exc.__cause__ or exc)
    match = re.search(r'field "([^"]+)"', str(exc))
    if match is None:
        return f"invalid environment variable: {reason}"
    prefix = f"RISKWATCH_{match.group(1).upper()}"
    candidates = sorted(
        key
        for key in os.environ
        if key.upper() == prefix or key.upper().startswith(prefix + "__")
    )
    culprits = [key for key in candidates if not _is_json(os.environ[key])]
    named = ", ".join(culprits or candidates) or prefix + "*"
    return f"environment variable {named} is not valid JSON: {reason}"


def _is_json(text: str) -> bool:
    # Plain values ("19092", "E001") are no JSON documents but are not what
    # failed: only values meant as JSON objects or lists are parsed as such.
    if not text.lstrip().startswith(("{", "[")):
        return True
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
