"""A headless Chromium page for the tests of the web page, driven through Playwright.

A pytest plugin: a module that needs `page` says `pytest_plugins = ["tests.browser"]`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Nothing in the browser reaches beyond loopback: no updates, sync, QUIC or proxy.
# The fake camera (a generated test pattern) answers getUserMedia without a prompt.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]


def _chromium() -> str:
    """The Debian `chromium` binary; in CI (`CI` set) its absence is a failure."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    message = (
        "Debian `chromium` is not installed; to run this test: sudo apt-get install "
        "-y --no-install-recommends chromium (`make test` does it as root)"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def page(tmp_path: Path):
    """A page in a fresh headless Chromium profile, driven through Playwright."""
    chromium = _chromium()
    if os.environ.get("CI"):
        from playwright.sync_api import sync_playwright
    else:
        sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_FLAGS,
            accept_downloads=True,
            # Crash reports and dconf would otherwise land in ~/.config, ~/.cache.
            env={
                **os.environ,
                "HOME": str(tmp_path),
                "XDG_CONFIG_HOME": str(tmp_path / "config"),
                "XDG_CACHE_HOME": str(tmp_path / "cache"),
            },
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context.new_page()
        finally:
            context.close()
