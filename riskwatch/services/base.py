"""What every managed service has in common: install, configure, start, check,
stop, all idempotent, all under one run folder.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from riskwatch.errors import InstallError, ServiceError, StartupTimeout
from riskwatch.secrets import SecretStore
from riskwatch.services.process import (
    Outcome,
    PidFile,
    PidRecord,
    UnreadablePidFile,
    clean_environ,
    log_size,
    seconds,
    spawn,
    tail,
    terminate,
)
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
    # "healthy", "stopped", "unhealthy: <reason>", or "unknown: <reason>" when
    # a port answers without a valid pid record of this run folder.
    health: str


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

    Prints a heartbeat every 30 s so a long build is visibly alive. Without
    ``env``, the command gets our environment minus the ``RISKWATCH_*``
    variables, which may hold secrets.

    Raises:
        InstallError: the command failed or ran past ``timeout_s``; the message
            holds the log file and its last lines.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    report(f"{label}: {' '.join(argv[:3])} ... (log: {log_file})")
    started = time.monotonic()
    deadline = Deadline(timeout_s)
    log_start = log_size(log_file)
    with log_file.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else clean_environ(),
            cwd=cwd,
        )
        next_beat = started + HEARTBEAT_S
        while proc.poll() is None:
            if deadline.expired():
                proc.kill()
                proc.wait()
                raise InstallError(
                    label, f"gave up after {seconds(timeout_s)}; see {log_file}"
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
            f"log {log_file} ends with:\n{tail(log_file, start=log_start)}",
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
        # Every command() names a path in this folder (a config file or the
        # data path), which is how a record is told from one of another stack.
        self.pid_file = PidFile(self.folder / f"{self.name}.pid", owner=self.folder)
        self.log_file = self.folder / f"{self.name}.log"

    # What each service supplies -------------------------------------------

    @property
    @abstractmethod
    def host(self) -> str: ...

    @property
    @abstractmethod
    def port(self) -> int: ...

    @property
    def ports(self) -> tuple[int, ...]:
        """Every port the server binds; all must be free before it starts."""
        return (self.port,)

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
    def problem(self) -> str | None:
        """A quick check (a few seconds at most) that the server serves.

        Read-only: it creates no secret or file. Returns None when healthy,
        else why not, phrased for an operator.
        """

    def healthy(self) -> bool:
        return self.problem() is None

    def after_start(self) -> None:  # noqa: B027 - optional hook
        """Idempotent set-up that needs the running server (topics, users)."""

    def reload(self, record: PidRecord) -> None:  # noqa: B027 - optional hook
        """Apply changed settings to a server that is already running."""

    def environment(self) -> dict[str, str]:
        """The server's environment: ours without the ``RISKWATCH_*`` secrets."""
        return clean_environ()

    # Shared lifecycle ------------------------------------------------------

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def up(self) -> None:
        """Start the server unless it runs; then the set-up after start.

        The caller holds the run folder's lock (see :class:`Stack`).
        """
        record = self._read_pid_file("start")
        if record is not None:
            self.reload(record)
            problem = self.problem()
            if problem is None:
                self.report(f"{self.name}: already running (pid {record.pid})")
            else:
                self.report(
                    f"{self.name}: running (pid {record.pid}) but {problem}; waiting"
                )
                self._wait_healthy(record, log_size(self.log_file))
        else:
            self._refuse_taken_ports()
            self.pid_file.remove()  # stale: its process is gone or not ours
            self.install()
            self.prepare()
            self.report(f"{self.name}: starting on {self.address}")
            log_start = log_size(self.log_file)
            try:
                record = spawn(
                    self.command(),
                    log_file=self.log_file,
                    pid_file=self.pid_file,
                    cwd=self.folder,
                    env=self.environment(),
                )
            except ProcessLookupError as exc:
                raise self._exited(log_start) from exc
            log.info("service=%s pid=%s started", self.name, record.pid)
            self._wait_healthy(record, log_start)
            self.report(f"{self.name}: healthy (pid {record.pid})")
        self.after_start()

    def _read_pid_file(self, action: str) -> PidRecord | None:
        try:
            return self.pid_file.read()
        except UnreadablePidFile as exc:
            busy = self._busy_ports()
            state = (
                f"port {self.host}:{busy[0]} still answers, so the server may "
                f"still run: stop it by hand (`ss -ltnp` shows its pid), then "
                if busy
                else "no port of it answers: "
            )
            raise ServiceError(
                self.name,
                f"cannot {action}: {exc}; {state}remove {exc.path}",
            ) from exc

    def _busy_ports(self) -> list[int]:
        return [p for p in self.ports if port_open(self.host, p)]

    def _refuse_taken_ports(self) -> None:
        for port in self._busy_ports():
            raise ServiceError(
                self.name,
                f"port {self.host}:{port} is taken by a process not started from "
                f"this run folder ({self.settings.run_dir}); stop it or choose "
                f"another port in the settings",
            )

    def _exited(self, log_start: int) -> ServiceError:
        return ServiceError(
            self.name,
            f"exited during start-up; log {self.log_file} ends with:\n"
            f"{tail(self.log_file, start=log_start)}",
        )

    def _wait_healthy(self, record: PidRecord, log_start: int) -> None:
        timeout_s = self.settings.startup_timeout_s
        deadline = Deadline(timeout_s)

        def ready() -> bool:
            if not record.alive():
                # Never leave the record of a dead server behind: the next
                # `up` would have to tell it from a live one.
                self.pid_file.remove()
                raise self._exited(log_start)
            return self.healthy()

        if not wait_until(ready, deadline, interval=0.5):
            raise StartupTimeout(
                self.name,
                f"not healthy on {self.address} after {seconds(timeout_s)} "
                f"(pid {record.pid}, still running; `riskwatch services down "
                f"{self.name}` stops it); see {self.log_file}:\n"
                f"{tail(self.log_file, start=log_start)}",
            )

    def down(self) -> None:
        """Stop the recorded server; the caller holds the run folder's lock."""
        record = self._read_pid_file("stop")
        if record is None:
            self.pid_file.remove()
            busy = self._busy_ports()
            note = (
                f" (port {self.host}:{busy[0]} is held by a process not started "
                f"from this run folder ({self.settings.run_dir}); left alone)"
                if busy
                else ""
            )
            self.report(f"{self.name}: not running{note}")
            return
        outcome = terminate(record, timeout_s=60.0)
        if outcome is Outcome.SURVIVED:
            raise ServiceError(
                self.name,
                f"pid {record.pid} survived SIGKILL (stuck in the kernel?); "
                f"{self.pid_file.path} is kept so that `down` can try again",
            )
        self.pid_file.remove()
        how = "stopped" if outcome is Outcome.STOPPED else "killed after 60 s"
        log.info("service=%s pid=%s %s", self.name, record.pid, how)
        self.report(f"{self.name}: {how} (pid {record.pid})")

    def status(self) -> ServiceStatus:
        """Where the service stands; read-only, like the command it serves."""
        try:
            record = self.pid_file.read()
        except UnreadablePidFile as exc:
            port = "port in use" if port_open(self.host, self.port) else "port free"
            health = f"unknown: {port}, pid file {exc.path} unreadable ({exc.reason})"
            return ServiceStatus(self.name, self.address, None, health)
        if record is None:
            health = "stopped"
            # Only the address the service serves on: Kafka's controller port
            # held by another stack does not make this one "in use".
            if port_open(self.host, self.port):
                health = (
                    "unknown: port in use by a process not started from this run "
                    f"folder ({self.settings.run_dir})"
                )
            return ServiceStatus(self.name, self.address, None, health)
        problem = self.problem()
        health = "healthy" if problem is None else f"unhealthy: {problem}"
        return ServiceStatus(self.name, self.address, record.pid, health)
