"""What every managed service has in common: install, configure, start, check,
stop, all idempotent, all under one run folder.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from riskwatch.errors import InstallError, ServiceError, StartupTimeout
from riskwatch.secrets import SecretStore
from riskwatch.services.process import PidFile, PidRecord, spawn, tail, terminate
from riskwatch.settings import Settings
from riskwatch.timeouts import Deadline, wait_until

log = logging.getLogger(__name__)

Report = Callable[[str], None]
HEARTBEAT_S = 30.0


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    address: str
    pid: int | None
    health: str  # "healthy", "unhealthy" or "stopped"


def port_open(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def run_step(
    label: str,
    argv: Sequence[str],
    *,
    log_file: Path,
    report: Report,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout_s: float = 3600.0,
) -> None:
    """Run an install or build command, its output to ``log_file``.

    Prints a heartbeat every 30 s so a long build is visibly alive.

    Raises:
        InstallError: the command failed or ran past ``timeout_s``; the message
            holds the log file and its last lines.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    report(f"{label}: {' '.join(argv[:3])} ... (log: {log_file})")
    started = time.monotonic()
    deadline = Deadline(timeout_s)
    with log_file.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
        next_beat = started + HEARTBEAT_S
        while proc.poll() is None:
            if deadline.expired():
                proc.kill()
                proc.wait()
                raise InstallError(
                    label, f"gave up after {timeout_s:.0f}s; see {log_file}"
                )
            if time.monotonic() >= next_beat:
                report(f"{label}: still running ({time.monotonic() - started:.0f}s)")
                next_beat += HEARTBEAT_S
            time.sleep(0.5)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise InstallError(
            label,
            f"{argv[0]} exited with {proc.returncode} after {elapsed:.0f}s; "
            f"log {log_file} ends with:\n{tail(log_file)}",
        )
    report(f"{label}: done in {elapsed:.0f}s")


class Service(ABC):
    """One server process of the stack."""

    name: str

    def __init__(self, settings: Settings, report: Report) -> None:
        self.settings = settings
        self.report = report
        self.secrets = SecretStore(settings.run_dir / "secrets")
        self.folder = settings.run_dir / self.name
        self.pid_file = PidFile(self.folder / f"{self.name}.pid")
        self.log_file = self.folder / f"{self.name}.log"

    # What each service supplies -------------------------------------------

    @property
    @abstractmethod
    def host(self) -> str: ...

    @property
    @abstractmethod
    def port(self) -> int: ...

    @abstractmethod
    def install(self) -> None:
        """Make the software available; cached, so cheap when already done."""

    @abstractmethod
    def prepare(self) -> None:
        """Write configuration and initialise storage before a start."""

    @abstractmethod
    def command(self) -> list[str]:
        """The argv that runs the server in the foreground."""

    @abstractmethod
    def healthy(self) -> bool:
        """A quick check (a few seconds at most) that the server serves."""

    def after_start(self) -> None:  # noqa: B027 - optional hook
        """Idempotent set-up that needs the running server (topics, users)."""

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    # Shared lifecycle ------------------------------------------------------

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def up(self) -> None:
        record = self.pid_file.read()
        if record is not None:
            if self.healthy():
                self.report(f"{self.name}: already running (pid {record.pid})")
            else:
                self.report(f"{self.name}: running (pid {record.pid}), waiting")
                self._wait_healthy(record)
        else:
            if port_open(self.host, self.port):
                raise ServiceError(
                    self.name,
                    f"port {self.address} is taken by a process riskwatch did "
                    f"not start; stop it or choose another port in the settings",
                )
            self.install()
            self.prepare()
            self.report(f"{self.name}: starting on {self.address}")
            record = spawn(
                self.command(),
                log_file=self.log_file,
                pid_file=self.pid_file,
                cwd=self.folder,
                env=self.environment(),
            )
            log.info("service=%s pid=%s started", self.name, record.pid)
            self._wait_healthy(record)
            self.report(f"{self.name}: healthy (pid {record.pid})")
        self.after_start()

    def _wait_healthy(self, record: PidRecord) -> None:
        deadline = Deadline(self.settings.startup_timeout_s)

        def ready() -> bool:
            if not record.alive():
                raise ServiceError(
                    self.name,
                    f"exited during start-up; log {self.log_file} ends with:\n"
                    f"{tail(self.log_file)}",
                )
            return self.healthy()

        if not wait_until(ready, deadline, interval=0.5):
            raise StartupTimeout(
                self.name,
                f"not healthy on {self.address} after "
                f"{self.settings.startup_timeout_s:.0f}s (pid {record.pid}); "
                f"see {self.log_file}:\n{tail(self.log_file)}",
            )

    def down(self) -> None:
        record = self.pid_file.read()
        if record is None:
            self.pid_file.remove()
            self.report(f"{self.name}: not running")
            return
        graceful = terminate(record, timeout_s=60.0)
        self.pid_file.remove()
        how = "stopped" if graceful else "killed after 60s"
        log.info("service=%s pid=%s %s", self.name, record.pid, how)
        self.report(f"{self.name}: {how} (pid {record.pid})")

    def status(self) -> ServiceStatus:
        record = self.pid_file.read()
        if record is None:
            return ServiceStatus(self.name, self.address, None, "stopped")
        health = "healthy" if self.healthy() else "unhealthy"
        return ServiceStatus(self.name, self.address, record.pid, health)
