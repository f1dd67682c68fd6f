"""Offline holds: no traffic leaves loopback, and state stays in the project."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from visionops.core.env import state_dir


def test_guard_refuses_and_records_outbound(outbound: list[str]) -> None:
    with pytest.raises(OSError):
        socket.create_connection(
            ("192.0.2.1", 80), timeout=1
        )  # TEST-NET-1, never routed
    with pytest.raises(OSError):
        socket.getaddrinfo("github.com", 443)
    assert len(outbound) == 2


def test_guard_allows_loopback(outbound: list[str]) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    with socket.create_connection(server.getsockname(), timeout=1):
        pass
    server.close()
    assert outbound == []


def test_state_lives_in_the_state_dir() -> None:
    state = state_dir()
    for key in ("ZENML_CONFIG_PATH", "YOLO_CONFIG_DIR", "BENTOML_HOME", "MPLCONFIGDIR"):
        assert Path(os.environ[key]).is_relative_to(state), key
    # Ultralytics finds its font locally instead of downloading Arial.ttf.
    assert (Path(os.environ["YOLO_CONFIG_DIR"]) / "Ultralytics" / "Arial.ttf").is_file()
    for key in (
        "YOLO_OFFLINE",
        "ZENML_ANALYTICS_OPT_IN",
        "MLFLOW_DISABLE_TELEMETRY",
        "BENTOML_DO_NOT_TRACK",
        "DO_NOT_TRACK",
        "ITERATIVE_DO_NOT_TRACK",
    ):
        assert key in os.environ


def test_importing_the_stack_makes_no_connection(tmp_path: Path) -> None:
    """A fresh interpreter imports everything with sockets audited from the start."""
    code = (
        "import sys, ipaddress\n"
        "bad = []\n"
        "local = ('localhost', '127.0.0.1', '::1', None)\n"
        "def hook(e, a):\n"
        "    if e == 'socket.getaddrinfo' and a[0] not in local:\n"
        "        bad.append(a[0])\n"
        "    if e == 'socket.connect' and isinstance(a[1], tuple):\n"
        "        if not str(a[1][0]).startswith('127.'):\n"
        "            bad.append(a[1])\n"
        "sys.addaudithook(hook)\n"
        "import visionops, ultralytics, zenml, mlflow, evidently\n"
        "from ultralytics.utils.checks import check_font\n"
        "check_font('Arial.ttf')\n"
        "print('OUTBOUND', bad)\n"
    )
    env = {**os.environ, "VISIONOPS_STATE_DIR": str(tmp_path)}
    for key in ("ZENML_CONFIG_PATH", "YOLO_CONFIG_DIR", "BENTOML_HOME", "MPLCONFIGDIR"):
        env.pop(key, None)
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert "OUTBOUND []" in result.stdout, result.stdout + result.stderr
