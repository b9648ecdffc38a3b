import os
import subprocess
import sys
import time

import pytest

from riskwatch.services.process import (
    Outcome,
    PidFile,
    PidRecord,
    UnreadablePidFile,
    clean_environ,
    folder_lock,
    log_size,
    mentions,
    seconds,
    spawn,
    start_time_of,
    tail,
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
    assert terminate(record, timeout_s=10) is Outcome.STOPPED
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
    assert terminate(record, timeout_s=0.5) is Outcome.KILLED
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


@pytest.mark.parametrize("content", ["", "abc", "12", "1 2 3", "0 5", "-1 5"])
def test_garbled_pid_file_is_reported_not_read_as_stopped(tmp_path, content):
    path = tmp_path / "x.pid"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UnreadablePidFile, match=rf"pid file {path} is unreadable"):
        PidFile(path).read()
    assert path.exists()


def test_pid_file_that_is_a_directory_or_not_text_is_unreadable(tmp_path):
    folder = tmp_path / "d.pid"
    folder.mkdir()
    with pytest.raises(UnreadablePidFile, match="it is a directory"):
        PidFile(folder).read()
    binary = tmp_path / "b.pid"
    binary.write_bytes(b"\xff\xfe 12")
    with pytest.raises(UnreadablePidFile, match=r"b\.pid is unreadable"):
        PidFile(binary).read()


def test_missing_pid_file_reads_as_not_running(tmp_path):
    assert PidFile(tmp_path / "none.pid").read() is None


def test_process_of_another_run_folder_is_not_ours(tmp_path):
    # A copied run folder holds the pid and start time of the original's
    # server: both match, only the command line tells them apart.
    run = tmp_path / "run"
    argv = [sys.executable, "-c", "import time; time.sleep(120)", f"{run}/x.conf"]
    record = spawn(
        argv, log_file=tmp_path / "l", pid_file=PidFile(tmp_path / "p"), cwd=tmp_path
    )
    try:
        line = f"{record.pid} {record.start_time}\n"
        for owner, expected in ((run, record), (tmp_path / "copy", None)):
            pid_file = PidFile(tmp_path / f"{owner.name}.pid", owner=owner)
            pid_file.path.write_text(line, encoding="utf-8")
            assert pid_file.read() == expected
    finally:
        terminate(record, timeout_s=5)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["mosquitto", "-c", "/r/run/mosquitto/m.conf"], True),
        (["influxd", "--bolt-path=/r/run/influxdb/data/b"], True),
        (["java", "-Dlog4j.configuration=file:/r/run/kafka/l.properties"], True),
        (["mosquitto", "-c", "/x/r/run/mosquitto/m.conf"], False),
        (["mosquitto", "-c", "/r/run-copy/mosquitto/m.conf"], False),
        (["mosquitto"], False),
    ],
)
def test_mentions_requires_a_path_inside_the_folder(argv, expected):
    assert mentions(argv, __import__("pathlib").Path("/r/run")) is expected


def test_lock_makes_a_second_holder_wait(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from riskwatch.services.process import folder_lock\n"
            "with folder_lock(Path(sys.argv[1]), lambda: None):\n"
            "    print('locked', flush=True)\n"
            "    time.sleep(1.0)\n",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline() == b"locked\n"
    waited = []
    started = time.monotonic()
    with folder_lock(tmp_path, lambda: waited.append(time.monotonic())):
        got_it = time.monotonic()
    assert waited, "on_wait was not called while the lock was busy"
    assert got_it - started > 0.5, "we got the lock while it was held"
    holder.stdout.close()
    holder.wait()


def test_lock_is_free_again_after_the_block(tmp_path):
    calls = []
    with folder_lock(tmp_path, lambda: calls.append(1)):
        pass
    with folder_lock(tmp_path, lambda: calls.append(1)):
        pass
    assert calls == []
    assert (tmp_path / ".lock").exists()


def test_tail_quotes_only_what_came_after_start(tmp_path):
    log = tmp_path / "s.log"
    log.write_text("old run: address in use\n", encoding="utf-8")
    start = log_size(log)
    with log.open("a", encoding="utf-8") as out:
        out.write("new run: boom\n")
    assert tail(log, start=start) == "new run: boom"
    assert "old run" in tail(log)
    assert tail(log, start=log_size(log)) == "(nothing logged)"
    assert log_size(tmp_path / "none") == 0


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.5, "0.5 s"), (120.0, "120 s"), (60, "60 s"), (0.25, "0.25 s")],
)
def test_seconds_keeps_fractions(value, text):
    assert seconds(value) == text


def test_clean_environ_drops_riskwatch_variables():
    env = {
        "PATH": "/bin",
        "RISKWATCH_MQTT__GATEWAY_PASSWORD": "s3cret",
        "riskwatch_influxdb__token": "t",
        "HOME": "/root",
    }
    assert clean_environ(env) == {"PATH": "/bin", "HOME": "/root"}
