import os
import subprocess
import sys
import time

import pytest

from riskwatch.services.process import (
    PidFile,
    PidRecord,
    spawn,
    start_time_of,
    terminate,
)


@pytest.fixture
def sleeper(tmp_path):
    """A detached process that runs until told to stop."""
    pid_file = PidFile(tmp_path / "p.pid")
    record = spawn(
        [sys.executable, "-c", "import time; time.sleep(120)"],
        log_file=tmp_path / "p.log",
        pid_file=pid_file,
        cwd=tmp_path,
    )
    yield record, pid_file
    terminate(record, timeout_s=5)


def test_spawned_process_is_recorded_and_found_again(sleeper):
    record, pid_file = sleeper
    assert pid_file.read() == record
    assert record.alive()
    # It leads its own session, so stopping it never signals our group.
    assert os.getpgid(record.pid) == record.pid != os.getpgid(0)


def test_terminate_stops_the_process_and_reports_a_graceful_stop(sleeper):
    record, pid_file = sleeper
    assert terminate(record, timeout_s=10) is True
    assert not record.alive()
    assert pid_file.read() is None


def test_process_ignoring_sigterm_is_killed(tmp_path):
    code = (
        "import signal, time, sys\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(120)\n"
    )
    record = spawn(
        [sys.executable, "-c", code],
        log_file=tmp_path / "l",
        pid_file=PidFile(tmp_path / "p"),
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 10
    while b"ready" not in (tmp_path / "l").read_bytes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert terminate(record, timeout_s=0.5) is False
    assert not record.alive()


def test_recycled_pid_is_not_trusted(tmp_path, sleeper):
    record, _ = sleeper
    # Same pid, other start time: what a pid file looks like after the pid
    # was reused by an unrelated program.
    stale = PidFile(tmp_path / "stale.pid")
    stale.path.write_text(f"{record.pid} {record.start_time + 1}\n", encoding="utf-8")
    assert stale.read() is None
    terminate(PidRecord(record.pid, record.start_time + 1), timeout_s=0.1)
    assert record.alive(), "a process that is not ours must never be signalled"


def test_zombie_counts_as_stopped():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while start_time_of(child.pid) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    # Exited but not yet reaped by us: a zombie, which is gone for our purposes.
    assert start_time_of(child.pid) is None
    child.wait()


@pytest.mark.parametrize("content", ["", "abc", "12", "1 2 3"])
def test_garbled_pid_file_reads_as_not_running(tmp_path, content):
    path = tmp_path / "x.pid"
    path.write_text(content, encoding="utf-8")
    assert PidFile(path).read() is None
