"""Background servers: started in their own group, waited for, stopped with workers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.servers import free_port
from visionops.app.dashboards import port_open
from visionops.core import background


def _http_server(tmp_path: Path, port: int) -> list[str]:
    """`python -m http.server` on loopback, with a worker (`sleep`) in its group."""
    (tmp_path / "health").write_text("ok")
    server = (
        f"{sys.executable} -m http.server {port} --bind 127.0.0.1 "
        f"--directory {tmp_path}"
    )
    return ["sh", "-c", f"sleep 300 & exec {server}"]


def test_a_server_is_started_waited_for_and_stopped_with_its_group(
    tmp_path: Path,
) -> None:
    port, log = free_port(), tmp_path / "logs" / "http.log"
    process = background.start(_http_server(tmp_path, port), log)
    try:
        url = f"http://127.0.0.1:{port}/health"
        background.wait_ready(url, process, log, "http.server", timeout=60)
        assert background.answers(url)
        assert os.getpgid(process.pid) == process.pid  # its own group
        assert background.group_alive(process.pid)
    finally:
        background.stop(process)
    assert process.poll() is not None
    assert not background.group_alive(process.pid)  # the `sleep` worker too
    assert not port_open(port)
    assert "GET /health" in log.read_text()


def test_a_pid_file_stops_the_recorded_server(tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "http.log"
    pid_file = tmp_path / "state" / "http.pid"
    process = background.start(_http_server(tmp_path, port), log)
    try:
        background.wait_ready(
            f"http://127.0.0.1:{port}/health", process, log, "http.server", 60
        )
        background.write_pid(pid_file, process.pid)
        assert pid_file.read_text().strip() == str(process.pid)  # `kill -- -$(cat)`
        assert background.read_pid(pid_file) == process.pid
        assert background.stop_recorded(pid_file) == process.pid
    finally:
        background.stop(process)
    assert not pid_file.exists()
    assert not background.group_alive(process.pid)
    assert not port_open(port)
    assert background.stop_recorded(pid_file) is None  # nothing left to stop


def test_a_pid_older_than_its_process_is_not_trusted(tmp_path: Path) -> None:
    """A recycled pid: the process now holding it started after the file was written."""
    pid_file = tmp_path / "old.pid"
    background.write_pid(pid_file, os.getpid())
    assert background.read_pid(pid_file) == os.getpid()
    os.utime(pid_file, (0, 0))  # written in 1970: before this process existed
    assert background.read_pid(pid_file) is None
    pid_file.write_text("not a pid")
    assert background.read_pid(pid_file) is None


def test_a_server_that_exits_early_names_its_log(tmp_path: Path) -> None:
    log = tmp_path / "broken.log"
    command = [sys.executable, "-c", "print('no model in the store'); exit(3)"]
    process = background.start(command, log)
    with pytest.raises(background.BackgroundError) as caught:
        background.wait_ready(
            f"http://127.0.0.1:{free_port()}/readyz", process, log, "broken", 60
        )
    message = str(caught.value)
    assert "broken exited with status 3" in message
    assert str(log) in message
    assert "no model in the store" in message  # the log's tail


def test_a_server_that_never_answers_times_out(tmp_path: Path) -> None:
    log = tmp_path / "silent.log"
    port = free_port()
    process = background.start(
        [sys.executable, "-c", "import time; time.sleep(120)"], log
    )
    try:
        with pytest.raises(background.BackgroundError) as caught:
            background.wait_ready(
                f"http://127.0.0.1:{port}/health", process, log, "silent", timeout=1
            )
    finally:
        background.stop(process)
    message = str(caught.value)
    assert f"silent did not answer http://127.0.0.1:{port}/health within 1 s" in (
        message
    )
    assert str(log) in message
    assert process.poll() is not None
