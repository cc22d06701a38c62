"""The explorer in a headless browser, for the browser tests and the README's screenshot scripts.

    with served(Explorer("checkpoints")) as url, chromium_page(url) as page:
        page.screenshot(path="out.png")

Launches the Gradio app on a free 127.0.0.1 port in this process and drives Debian's chromium through
playwright (playwright's own browser download is not reachable on these machines).
"""
from __future__ import annotations

import socket
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
PLOT = "#pcd-plot .js-plotly-plot"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(explorer):
    """The app on `explorer`, launched on 127.0.0.1 without blocking; yields its URL, closes it after."""
    from pcdviz.app import build_app, launch

    demo = build_app(explorer)
    port = free_port()
    launch(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@contextmanager
def chromium_page(url: str, width: int = 1500, height: int = 1250, timeout_ms: int = 60_000, wait_for: str = PLOT):
    """A page of headless chromium open on `url`, once `wait_for` (the app's plot) is on screen."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(timeout_ms)
            page.goto(url)
            page.wait_for_selector(wait_for)
            yield page
        finally:
            browser.close()
