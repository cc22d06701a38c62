"""Make docs/converted.png: a converted Point-MAE checkpoint beside dwc-tiny in the compare view.

    .venv/bin/python docs/make_convert_screenshot.py PEER.pth [--heads 4] [--out docs/converted.png]

Converts PEER.pth (any file `pcdviz convert` reads; the README's picture uses the Point-MAE fine-tune
fixture of ../shared/peers, random weights at width 96) into a temporary folder beside a copy of dwc-tiny,
opens the explorer in headless chromium, ticks the converted model (named after the file's folder) under "Compare with" and saves the page.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("peer", type=Path)
    ap.add_argument("--heads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "converted.png")
    args = ap.parse_args(argv)

    from pcdviz.convert import convert_file
    from pcdviz.explorer import Explorer
    from pcdviz.headless import chromium_page, served

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(REPO / "checkpoints" / "dwc-tiny", root / "dwc-tiny")
        name = args.peer.resolve().parent.name   # e.g. point_mae_ft
        _, conv = convert_file(args.peer, root / name, heads=args.heads)
        with served(Explorer(root)) as url, chromium_page(url, 1500, 900) as page:
            page.locator("#pcd-compare label", has_text=name).click()
            page.wait_for_function("() => document.querySelector('#pcd-plot .js-plotly-plot')"
                                   "._fullLayout.scene2 !== undefined")
            page.wait_for_timeout(1500)   # let plotly finish drawing both scenes
            page.screenshot(path=str(args.out))
    print(f"wrote {args.out} ({conv.kind} beside dwc-tiny)")


if __name__ == "__main__":
    main()
