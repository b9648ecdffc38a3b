"""Start, find and stop the server processes that ``riskwatch services up`` owns.

A started process gets its own session (so its children share its process
group), writes its output to a log file, and is recorded in a pid file that
holds the pid *and* the kernel's start time of that pid. A pid file is trusted
only while both still match and the process's command line names a path in
the run folder that wrote it, so neither a pid recycled by an unrelated
program nor the server of another run folder (say, the original of a copied
folder) is ever signalled. Processes are never looked up or killed by name.
"""

from __future__ import annotations

import enum
import fcntl
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from riskwatch.timeouts import Deadline, wait_until

log = logging.getLogger(__name__)

# Children started by this process. The CLI exits right after starting them and
# they are adopted by init; a long-lived caller (tests, a supervisor) keeps the
# Popen here so the child can be reaped when it stops instead of lingering as a
# zombie, and so Popen does not warn about a child still running when dropped.
_children: dict[int, subprocess.Popen[bytes]] = {}

# Variables that may carry riskwatch's secrets (RISKWATCH_MQTT__GATEWAY_PASSWORD
# and the like); servers and build tools never need them, so they never see them.
_PRIVATE_PREFIX = "RISKWATCH_"


def clean_environ(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: ours) without the ``RISKWATCH_*`` variables."""
    source = os.environ if env is None else env
    return {
        k: v for k, v in source.items() if not k.upper().startswith(_PRIVATE_PREFIX)
    }


def seconds(value: float) -> str:
    """A duration for a message: ``0.5 s``, ``120 s``, never a rounded ``0s``."""
    return f"{value:g} s"


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name, or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may itself contain spaces or ')'.
    return raw[raw.rindex(")") + 2 :].split()


def start_time_of(pid: int) -> int | None:
    """Kernel start time (clock ticks since boot) of a live process, else None.

    A zombie counts as gone: it has exited, only its parent has not reaped it.
    """
    if pid <= 0:
        return None
    fields = _proc_stat(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def cmdline_of(pid: int) -> list[str]:
    """The argv of a live process; empty if it is gone or cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [arg.decode("utf-8", "replace") for arg in raw.split(b"\0") if arg]


def mentions(argv: Sequence[str], folder: Path) -> bool:
    """True if an argument is a path inside ``folder``.

    An argument counts when it starts with the folder, or holds it right after
    ``=`` or ``:`` (``--bolt-path=/run/...``, ``file:/run/...``). A plain
    substring test would let ``/a/run`` match ``/x/a/run``.
    """
    prefix = f"{folder}/"
    return any(
        arg.startswith(prefix) or f"={prefix}" in arg or f":{prefix}" in arg
        for arg in argv
    )


@dataclass(frozen=True)
class PidRecord:
    pid: int
    start_time: int

    def alive(self) -> bool:
        return start_time_of(self.pid) == self.start_time


class UnreadablePidFile(Exception):
    """A pid file exists but cannot be read or parsed.

    Nothing can be said about the process it recorded, so it must be neither
    trusted nor deleted: the server may still be running.
    """

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"pid file {path} is unreadable ({reason})")
        self.path = path
        self.reason = reason


class PidFile:
    """The pid file of one managed process.

    Args:
        path: where the record is kept.
        owner: when given, a recorded process counts as ours only if one of
            its arguments is a path under this folder.
    """

    def __init__(self, path: Path, owner: Path | None = None) -> None:
        self.path = path
        self.owner = owner

    def write(self, pid: int) -> PidRecord:
        started = start_time_of(pid)
        if started is None:
            raise ProcessLookupError(f"process {pid} exited before it was recorded")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{pid} {started}\n", encoding="utf-8")
        tmp.replace(self.path)
        return PidRecord(pid, started)

    def read(self) -> PidRecord | None:
        """The recorded process if it is still the one we started, else None.

        None also means "no pid file" and "a stale record" (process gone, pid
        reused, or a server of another run folder).

        Raises:
            UnreadablePidFile: the file exists but is not a pid record.
        """
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise UnreadablePidFile(self.path, _reason(exc)) from exc
        fields = text.split()
        try:
            pid, start_time = (int(field) for field in fields)
        except ValueError as exc:
            raise UnreadablePidFile(
                self.path, f"expected '<pid> <start time>', found {text[:40]!r}"
            ) from exc
        if pid <= 0 or start_time < 0:
            raise UnreadablePidFile(self.path, f"invalid record {text.strip()!r}")
        record = PidRecord(pid, start_time)
        if not record.alive():
            return None
        if self.owner is not None and not mentions(cmdline_of(pid), self.owner):
            log.info(
                "pid_file=%s pid=%s not started from %s, ignored",
                self.path,
                pid,
                self.owner,
            )
            return None
        return record

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, IsADirectoryError):
        return "it is a directory"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc)


def log_size(path: Path) -> int:
    """Current size of a log file (0 if absent): where the next start begins."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def spawn(
    argv: Sequence[str],
    *,
    log_file: Path,
    pid_file: PidFile,
    cwd: Path,
    env: Mapping[str, str] | None = None,
) -> PidRecord:
    """Start ``argv`` detached from us, output appended to ``log_file``.

    Raises:
        ProcessLookupError: the process exited before it could be recorded; no
            pid file is written then.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            close_fds=True,
        )
    _children[proc.pid] = proc
    try:
        return pid_file.write(proc.pid)
    except ProcessLookupError:
        _children.pop(proc.pid, None)
        proc.wait()
        raise


class Outcome(enum.Enum):
    """How :func:`terminate` ended."""

    STOPPED = "stopped"  # exited on SIGTERM, or was already gone
    KILLED = "killed"  # needed SIGKILL, and is gone now
    SURVIVED = "survived"  # still alive after SIGKILL (uninterruptible sleep?)


def terminate(
    record: PidRecord,
    *,
    timeout_s: float,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """SIGTERM the process group of ``record``, SIGKILL it after ``timeout_s``."""
    if not record.alive():
        return Outcome.STOPPED  # already gone, or the pid now belongs to another
    # The process leads its own session and group (spawn uses
    # start_new_session), so the group holds it and its children only.
    _signal_group(record, signal.SIGTERM)
    if wait_until(lambda: not record.alive(), Deadline(timeout_s), sleep=sleep):
        outcome = Outcome.STOPPED
    else:
        log.warning(
            "pid=%s did not stop within %s, killing it", record.pid, seconds(timeout_s)
        )
        _signal_group(record, signal.SIGKILL)
        gone = wait_until(lambda: not record.alive(), Deadline(5.0), sleep=sleep)
        outcome = Outcome.KILLED if gone else Outcome.SURVIVED
    if outcome is not Outcome.SURVIVED:
        child = _children.pop(record.pid, None)
        if child is not None:
            child.wait(timeout=5.0)
    return outcome


def _signal_group(record: PidRecord, sig: signal.Signals) -> None:
    if not record.alive():
        return
    try:
        if os.getpgid(record.pid) == record.pid:
            os.killpg(record.pid, sig)
        else:
            os.kill(record.pid, sig)
    except ProcessLookupError:
        pass


def send_signal(record: PidRecord, sig: signal.Signals) -> bool:
    """Send ``sig`` to the recorded process only; False if it is gone."""
    if not record.alive():
        return False
    try:
        os.kill(record.pid, sig)
    except ProcessLookupError:
        return False
    return True


@contextmanager
def folder_lock(folder: Path, on_wait: Callable[[], None]) -> Iterator[None]:
    """Hold an exclusive lock on ``<folder>/.lock`` for the ``with`` block.

    ``up`` and ``down`` of one run folder take turns: without it, two ``up``
    at once both find a service stopped, both start it, and the loser's pid
    overwrites the winner's. ``on_wait`` runs once if the lock is busy, before
    we block. The kernel drops a flock when its holder dies, so a crashed
    command never leaves the folder locked.
    """
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the lock


def tail(path: Path, lines: int = 20, start: int = 0) -> str:
    """The last lines a log file got from byte ``start`` on, for error messages.

    Logs are appended across runs; ``start`` (see :func:`log_size`) keeps a
    message to what the current run wrote.
    """
    try:
        with path.open("rb") as handle:
            handle.seek(start)
            text = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    if not text.strip():
        return "(nothing logged)"
    return "\n".join(text.splitlines()[-lines:])
