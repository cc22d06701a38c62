"""Remake docs/app.png: the explorer on the shipped checkpoints, all heads of the last layer on the built-in chair.

    .venv/bin/python docs/make_screenshot.py            # needs Debian's chromium (scripts/setup.sh --test)

Launches the app on 127.0.0.1 in this process, drives it with headless chromium (as tests/test_browser.py
does) and writes the PNG; nothing else is touched.
"""
from __future__ import annotations

import socket
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CHROMIUM = "/usr/bin/chromium"
PLOT = "#pcd-plot .js-plotly-plot"


def main(out: Path = REPO / "docs" / "app.png") -> None:
    from playwright.sync_api import sync_playwright

    from pcdviz.app import build_app, launch
    from pcdviz.explorer import Explorer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = build_app(Explorer(REPO / "checkpoints"))
    launch(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector(PLOT)
            page.get_by_text("all heads of the layer (grid)").click()
            page.wait_for_function("() => document.querySelector('#pcd-status').innerText.includes('all 6 heads')")
            page.wait_for_timeout(1500)   # let plotly finish drawing every panel
            page.screenshot(path=str(out))
            browser.close()
    finally:
        demo.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
