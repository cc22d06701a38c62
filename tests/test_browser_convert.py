"""A converted peer checkpoint beside dwc-tiny in the compare view, in headless chromium.

Uses the Point-MAE pre-training fixture of ../shared/peers (no CLS token, depth 2 against dwc-tiny's 4):
the page must draw both panels, each titled with what it shows.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "peers" / "point_mae_pretrain" / "ckpt-last.pth"
TITLES = "() => document.querySelector('#pcd-plot .js-plotly-plot')._fullLayout.annotations.map(a => a.text)"


def test_converted_fixture_beside_dwc_tiny(tmp_path):
    from pcdviz.headless import CHROMIUM

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found (Debian's chromium: apt-get install chromium)")
    if not FIXTURE.is_file():
        pytest.skip(f"the peer checkpoint fixtures are not here ({FIXTURE})")
    pytest.importorskip("playwright.sync_api")
    from pcdviz.convert import convert_file
    from pcdviz.explorer import Explorer
    from pcdviz.headless import chromium_page, served

    shutil.copytree(REPO / "checkpoints" / "dwc-tiny", tmp_path / "dwc-tiny")
    convert_file(FIXTURE, tmp_path / "point-mae-pretrain", heads=4)
    with served(Explorer(tmp_path)) as url, chromium_page(url) as page:
        page.locator("#pcd-compare label", has_text="point-mae-pretrain").click()
        page.wait_for_function(f"() => ({TITLES})().length == 2")
        titles = page.evaluate(TITLES)
        page.screenshot(path=str(tmp_path / "compare.png"))
    assert titles[0].startswith("dwc-tiny: CLS") and "layer 3" in titles[0]
    # the converted model has no CLS token and 2 layers: its panel says what it shows instead
    assert titles[1].startswith("point-mae-pretrain: mean attention received (no CLS token)") and "layer 1" in titles[1]
