"""Servers run in the background: start one, wait for its health URL, stop it.

A server is started in its own session (process group), its output appended to a
log, so that stopping it also stops the workers it forks. Its pid may go into a pid
file holding just the number, which `kill -- -$(cat FILE)` understands (`make
serve-stop`); a pid file is trusted only while its process is the one that was
started (a recycled pid belongs to a process younger than the file).

Used by the dashboards (`mlflow ui`), `bentoml serve` and the tests' servers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

POLL_S = 0.3
TAIL_LINES = 30


class BackgroundError(RuntimeError):
    """A background server that exited early or never answered; names its log."""


def tail(log: Path, lines: int = TAIL_LINES) -> str:
    """The last lines of a log, for an error message."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start(
    command: Sequence[str], log: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen:
    """Starts a server in its own process group, its output appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,  # stopping the group reaches its workers too
        )


def answers(url: str, any_status: bool = False, timeout: float = 2.0) -> bool:
    """Whether `url` answers a GET: with a 2xx status, or with any if `any_status`."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return any_status or 200 <= response.status < 300
    except urllib.error.HTTPError:
        return any_status  # it answers, if only with an error status
    except (OSError, ValueError):
        return False


def wait_ready(
    url: str,
    process: subprocess.Popen | None,
    log: Path | None,
    what: str,
    timeout: float,
    any_status: bool = False,
) -> None:
    """Waits until `url` answers (see `answers`).

    Args:
        url: The health URL.
        process: The server's process, to fail as soon as it exits (None: not ours).
        log: Its log, named (with its tail) in an error.
        what: The server, as people call it (`bentoml serve`).
        timeout: Seconds to wait.
        any_status: Whether an HTTP error status counts as an answer.

    Raises:
        BackgroundError: It exited, or did not answer within `timeout`.
    """
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise BackgroundError(
                f"{what} exited with status {process.returncode} before answering "
                f"{url}; see {log}:\n{tail(log) if log else ''}".rstrip()
            )
        if answers(url, any_status):
            return
        if time.monotonic() >= deadline:
            where = f"; see {log}:\n{tail(log)}" if log else "."
            raise BackgroundError(
                f"{what} did not answer {url} within {timeout:.0f} s{where}"
            )
        time.sleep(POLL_S)


def group_alive(pgid: int) -> bool:
    """Whether any process of the group is alive (zombies do not count)."""
    import psutil

    for process in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(process.pid) == pgid and process.status() != "zombie":
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


def _reap(pid: int) -> None:
    """Collects the exit status of a child of this process (not a zombie then)."""
    with contextlib.suppress(ChildProcessError, ProcessLookupError):
        os.waitpid(pid, os.WNOHANG)


def stop_group(pgid: int, timeout: float = 10.0) -> None:
    """Stops a process group: SIGTERM, then SIGKILL if it outlives `timeout`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + timeout
        while True:
            _reap(pgid)
            if not group_alive(pgid):
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(0.1)


def stop(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stops a server started by `start`, and its process group."""
    stop_group(process.pid, timeout)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout)


def write_pid(pid_file: Path, pid: int) -> None:
    """Records a server's pid (also its process group) in `pid_file`."""
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{pid}\n")


def read_pid(pid_file: Path) -> int | None:
    """The pid recorded in `pid_file` if that process still runs, else None.

    A process younger than the file has a recycled pid: not ours.
    """
    import psutil

    try:
        pid = int(pid_file.read_text().strip())
        written = pid_file.stat().st_mtime
        process = psutil.Process(pid)
        if process.status() != "zombie" and process.create_time() <= written + 1.0:
            return pid
    except (OSError, ValueError, psutil.Error):
        pass
    return None


def stop_recorded(pid_file: Path, timeout: float = 10.0) -> int | None:
    """Stops the server recorded in `pid_file` and removes the file.

    Returns:
        The pid stopped, or None when none was running.
    """
    pid = read_pid(pid_file)
    if pid is not None:
        stop_group(pid, timeout)
    pid_file.unlink(missing_ok=True)
    return pid
