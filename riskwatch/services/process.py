"""Start, find and stop the server processes that ``riskwatch services up`` owns.

A started process gets its own session (so its children share its process
group), writes its output to a log file, and is recorded in a pid file that
holds the pid *and* the kernel's start time of that pid. A pid file is trusted
only while both still match, so a pid recycled by an unrelated program is never
signalled. Processes are never looked up or killed by name.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from riskwatch.timeouts import Deadline, wait_until

log = logging.getLogger(__name__)

# Children started by this process. The CLI exits right after starting them and
# they are adopted by init; a long-lived caller (tests, a supervisor) keeps the
# Popen here so the child can be reaped when it stops instead of lingering as a
# zombie, and so Popen does not warn about a child still running when dropped.
_children: dict[int, subprocess.Popen[bytes]] = {}


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
    fields = _proc_stat(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


@dataclass(frozen=True)
class PidRecord:
    pid: int
    start_time: int

    def alive(self) -> bool:
        return start_time_of(self.pid) == self.start_time


class PidFile:
    """The pid file of one managed process."""

    def __init__(self, path: Path) -> None:
        self.path = path

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
        """The recorded process if it is still the one we started, else None."""
        try:
            pid_text, start_text = self.path.read_text(encoding="utf-8").split()
            record = PidRecord(int(pid_text), int(start_text))
        except (FileNotFoundError, ValueError):
            return None
        return record if record.alive() else None

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def spawn(
    argv: Sequence[str],
    *,
    log_file: Path,
    pid_file: PidFile,
    cwd: Path,
    env: Mapping[str, str] | None = None,
) -> PidRecord:
    """Start ``argv`` detached from us, output appended to ``log_file``."""
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
    return pid_file.write(proc.pid)


def terminate(
    record: PidRecord,
    *,
    timeout_s: float,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """SIGTERM the process group of ``record``, SIGKILL it after ``timeout_s``.

    Returns:
        True if the process stopped on SIGTERM, False if it had to be killed.
    """
    if not record.alive():
        return True  # already gone, or the pid now belongs to someone else
    # The process leads its own session and group (spawn uses
    # start_new_session), so the group holds it and its children only.
    _signal_group(record, signal.SIGTERM)
    graceful = wait_until(lambda: not record.alive(), Deadline(timeout_s), sleep=sleep)
    if not graceful:
        log.warning("pid=%s did not stop within %ss, killing it", record.pid, timeout_s)
        _signal_group(record, signal.SIGKILL)
        wait_until(lambda: not record.alive(), Deadline(5.0), sleep=sleep)
    child = _children.pop(record.pid, None)
    if child is not None:
        child.wait(timeout=5.0)
    return graceful


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


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:])
