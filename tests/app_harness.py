"""What the browser tests share: Debian's chromium through Playwright, `vitalflow app` as a real
server on a free loopback port, and the screenshot directory."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@contextlib.contextmanager
def app_server(roots: list, state: Path, ready_path: str = "/jobs", timeout_s: float = 60) -> Iterator[str]:
    """``vitalflow app`` with ``roots`` and ``state`` (its log: ``state/app.log``) until the block
    ends; yields its URL once ``ready_path`` answers 200. Stopped with SIGTERM (the app stops its
    jobs gracefully), killed after 60 s."""
    import httpx

    state.mkdir(parents=True, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_path = state / "app.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "vitalflow", "app", "--port", str(port),
                                    *[arg for root in roots for arg in ("--root", str(root))],
                                    "--state-dir", str(state)], stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(f"{url}{ready_path}", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"the app did not start: {log_path.read_text()}")
            time.sleep(0.3)
        try:
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def browser_page(url: str):
    """A Playwright page on Debian's chromium with ``url`` as its base URL."""
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(base_url=url, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(30_000)
        try:
            yield context.new_page()
        finally:
            browser.close()


def screenshots_dir(tmp_path_factory) -> Path:
    """``$VITALFLOW_SCREENSHOTS``, else a temporary directory."""
    directory = Path(os.environ.get("VITALFLOW_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    directory.mkdir(parents=True, exist_ok=True)
    return directory
