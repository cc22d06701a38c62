"""Remake docs/app.png: the explorer on the shipped checkpoints, all heads of the last layer on the built-in chair.

    .venv/bin/python docs/make_screenshot.py            # needs Debian's chromium (scripts/setup.sh --test)

Launches the app on 127.0.0.1 in this process, drives it with headless chromium (pcdviz.headless, as the
browser tests do) and writes the PNG; nothing else is touched.
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(out: Path = REPO / "docs" / "app.png") -> None:
    from pcdviz.explorer import Explorer
    from pcdviz.headless import chromium_page, served

    with served(Explorer(REPO / "checkpoints")) as url, chromium_page(url, 1400, 1000) as page:
        page.get_by_text("all heads of the layer (grid)").click()
        page.wait_for_function("() => document.querySelector('#pcd-status').innerText.includes('all 6 heads')")
        page.wait_for_timeout(1500)   # let plotly finish drawing every panel
        page.screenshot(path=str(out))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
