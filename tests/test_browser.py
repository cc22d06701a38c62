"""The explorer in a real browser: Debian's chromium, headless, driven by playwright.

Opens the app, uploads a real file from ../shared/samples, changes the head, clicks a point to pick a
query patch, turns on a comparison and rotates one scene. After each step it reads the plotted colours
from the page (the plotly element's data) and saves a screenshot to tests/artifacts/. Only that walk
needs ../shared/samples; the other tests (instant browsing, the page's plotly, refused files) run without it.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from pcdviz.headless import CHROMIUM, CHROMIUM_ARGS, PLOT

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
ARTIFACTS = REPO / "tests" / "artifacts"
COLOURS = f"() => Array.from(document.querySelector('{PLOT}')._fullData[0].marker.color)"
# the live camera of each scene (layout.sceneN.camera only changes when plotly reports a relayout)
CAMERAS = f"""() => {{ const l = document.querySelector('{PLOT}')._fullLayout;
  return Object.keys(l).filter(k => /^scene\\d*$/.test(k)).map(k => l[k]._scene.getCamera().eye); }}"""


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found (Debian's chromium: apt-get install chromium)")
    pytest.importorskip("playwright.sync_api")
    import torch

    from pcdviz.checkpoints import save_checkpoint
    from pcdviz.explorer import Explorer
    from pcdviz.headless import served
    from pcdviz.model import PointViT, preset

    root = tmp_path_factory.mktemp("ckpts")
    shutil.copytree(REPO / "checkpoints" / "random-tiny", root / "random-tiny")
    torch.manual_seed(1)
    save_checkpoint(root / "seed1", PointViT(preset("tiny")), {"method": "random", "notes": "second random model"})
    with served(Explorer(root)) as url:
        yield url


@pytest.fixture(scope="module")
def browser(app_url):
    """One headless chromium for the module (playwright's sync API allows one running instance at a time)."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser, app_url):
    """The module's page, for the walk through that starts with uploading a real file."""
    if not SAMPLES.is_dir():
        pytest.skip(f"real sample files not found at {SAMPLES} (they live in ../shared/samples beside the checkout)")
    pg = browser.new_page(viewport={"width": 1500, "height": 1250})
    pg.set_default_timeout(30_000)
    pg.goto(app_url)
    pg.wait_for_selector(PLOT)
    yield pg
    pg.close()


def _status(page) -> str:
    return page.locator("#pcd-status").inner_text()


def _wait_status(page, text: str):
    page.wait_for_function("t => document.querySelector('#pcd-status').innerText.includes(t)", arg=text)
    page.wait_for_timeout(500)  # let plotly finish drawing before reading or screenshotting


def _choose_head(page, name: str):
    """One click on the head's radio button ("2", "max": app_layout.head_choices)."""
    page.locator("#pcd-head").get_by_role("radio", name=name, exact=True).click()


def _click_a_point(page) -> bool:
    """Hover the plot until a point is under the mouse, then click it (plotly 3D picks on hover)."""
    box = page.locator(PLOT).bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    for dx, dy in [(0, 0), (0, 25), (25, 0), (-25, 0), (0, -25), (40, 40), (-40, -40), (0, 60), (60, 0)]:
        page.mouse.move(cx + dx, cy + dy)
        page.wait_for_timeout(300)
        if page.locator("#pcd-plot .hovertext").count():
            page.mouse.down()
            page.wait_for_timeout(50)
            page.mouse.up()
            return True
    return False


def test_upload_change_head_click_and_compare(page):
    page.screenshot(path=str(ARTIFACTS / "01_start.png"))
    start = np.array(page.evaluate(COLOURS))
    assert len(start) == 2048  # the built-in chair

    # upload a real mesh from ../shared/samples
    page.get_by_role("tab", name="Upload").click()
    page.locator("#pcd-upload input[type=file]").set_input_files(str(SAMPLES / "car6.pcd"))
    page.wait_for_function("() => document.querySelector('#pcd-cloud-info').innerText.includes('car6.pcd')")
    _wait_status(page, "CLS → patches")
    uploaded = np.array(page.evaluate(COLOURS))
    assert len(uploaded) == 10_031 and not _status(page).startswith("⚠️")   # errors start with it; notes follow the title
    page.screenshot(path=str(ARTIFACTS / "02_uploaded_car6.png"))

    # change the head
    _choose_head(page, "2")
    _wait_status(page, "head 2")
    head2 = np.array(page.evaluate(COLOURS))
    assert len(head2) == len(uploaded) and not np.allclose(head2, uploaded), "colours did not change with the head"
    page.screenshot(path=str(ARTIFACTS / "03_head2.png"))

    # click a point: its patch becomes the query
    assert _click_a_point(page), "no point found under the mouse"
    _wait_status(page, "clicked patch")
    query = int(page.locator("#pcd-query input").input_value())
    assert f"clicked patch {query}" in _status(page)
    assert page.locator("#pcd-mode input[value=query]").is_checked()
    clicked = np.array(page.evaluate(COLOURS))
    assert not np.allclose(clicked, head2), "colours did not change after picking a query patch"
    traces = page.evaluate(f"() => document.querySelector('{PLOT}')._fullData.map(t => t.name)")
    assert "highlight" in traces  # the selected patch's points are drawn on top
    page.screenshot(path=str(ARTIFACTS / "04_clicked_query_patch.png"))

    # compare with a second checkpoint on a built-in shape; rotate one scene: the other follows
    page.get_by_role("tab", name="Shape").click()
    page.get_by_role("button", name="Show shape").click()
    _wait_status(page, "patch")  # the chair, still in query mode
    page.locator("#pcd-compare label", has_text="seed1").click()
    _wait_status(page, "2 checkpoints")
    before = page.evaluate(CAMERAS)
    assert len(before) == 2 and before[0] == pytest.approx(before[1])
    box = page.locator(PLOT).bounding_box()
    x, y = box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.55
    page.mouse.move(x, y)
    page.mouse.down()
    for i in range(1, 7):  # a slow drag: software WebGL draws few frames, and plotly rotates per frame
        page.mouse.move(x + 20 * i, y + 5 * i)
        page.wait_for_timeout(30)
    page.mouse.up()
    page.wait_for_timeout(800)
    eyes = page.evaluate(CAMERAS)
    assert eyes[0] != pytest.approx(before[0], abs=1e-3), "the drag did not rotate the scene"
    assert "clicked patch" not in _status(page), "ending a rotation over a point must not count as a click"
    assert eyes[0] == pytest.approx(eyes[1], abs=1e-6), f"cameras did not move together: {eyes}"
    moved = dict(eyes[0])
    page.screenshot(path=str(ARTIFACTS / "05_compare_rotated.png"))

    # a new figure from the server keeps the camera (gr.Plot would reset it otherwise)
    _choose_head(page, "max")
    _wait_status(page, "max of heads")
    eyes = page.evaluate(CAMERAS)
    assert all(e == pytest.approx(moved, abs=1e-3) for e in eyes), f"camera reset on update: {eyes} vs {moved}"
    page.screenshot(path=str(ARTIFACTS / "06_compare_after_update.png"))


# --------------------------------------------------------------------------- issue 15: slider, grid, small fixes


@pytest.fixture
def fresh(browser, app_url):
    """A page of its own (the module's page has been through uploads, clicks and a comparison)."""
    pg = browser.new_page(viewport={"width": 1440, "height": 960})   # a 1080p screen less the browser's bars
    pg.set_default_timeout(30_000)
    joins = []   # every event the page sends to the server's queue
    pg.on("request", lambda r: joins.append(r.post_data_json) if "/queue/join" in r.url else None)
    pg.goto(app_url)
    pg.wait_for_selector(PLOT)
    pg.wait_for_timeout(1000)
    pg.joins = joins
    yield pg
    pg.close()


def _settle(page, ms: int = 1500):
    page.wait_for_function("() => !document.querySelector('#pcd-status .pending, #pcd-plot .pending')")
    page.wait_for_timeout(ms)


def test_typing_a_layer_or_the_arrow_keys_redraw(fresh):
    page = fresh
    assert "layer 3" in _status(page)
    before = np.array(page.evaluate(COLOURS))
    box = page.locator("#pcd-layer input[type=number]")
    box.fill("1")                     # typed into the slider's number box, then Enter
    box.press("Enter")
    _wait_status(page, "layer 1 ·")
    assert int(page.locator("#pcd-layer input[type=range]").input_value()) == 1
    typed = np.array(page.evaluate(COLOURS))
    assert not np.allclose(typed, before), "typing a layer moved the control but did not redraw"
    rng = page.locator("#pcd-layer input[type=range]")
    rng.focus()
    rng.press("ArrowRight")           # the arrow keys on the slider
    _wait_status(page, "layer 2 ·")
    rng.press("ArrowLeft")
    rng.press("ArrowLeft")
    _wait_status(page, "layer 0 ·")
    assert not np.allclose(np.array(page.evaluate(COLOURS)), typed)
    keep = page.locator("#pcd-keep input[type=number]")
    keep.fill("0.5")                  # the keep-mass box with Enter
    keep.press("Enter")
    _wait_status(page, "top 50% of mass")
    page.screenshot(path=str(ARTIFACTS / "07_typed_layer_and_keep.png"))


def test_one_request_per_head_change_and_the_compare_list(fresh):
    page = fresh
    _settle(page)
    shown = page.locator("#pcd-checkpoint input").input_value()
    labels = page.locator("#pcd-compare label")
    visible = [labels.nth(i).inner_text().strip() for i in range(labels.count()) if labels.nth(i).is_visible()]
    assert shown not in visible and visible, f"the compare list offers the checkpoint shown ({shown}): {visible}"
    n = len(page.joins)
    _choose_head(page, "3")
    _wait_status(page, "head 3")
    _settle(page)
    sent = page.joins[n:]   # one request, or none where the page recolours by itself: never the same one twice
    assert len(sent) <= 1, f"a head change sent {len(sent)} events: {sent}"


def test_heads_grid_fits_where_the_single_view_was(fresh):
    page = fresh
    single = page.locator(PLOT).bounding_box()
    page.locator("#pcd-mode label", has_text="all heads").click()
    _wait_status(page, "all 6 heads")
    page.wait_for_timeout(1500)
    grid = page.locator(PLOT).bounding_box()
    assert grid["height"] <= single["height"] + 1, (single, grid)     # both rows in the single view's place
    doms = page.evaluate(f"""() => {{ const l = document.querySelector('{PLOT}')._fullLayout;
        return Object.keys(l).filter(k => /^scene\\d*$/.test(k)).map(k => l[k].domain.y[0]); }}""")
    assert len(doms) == 6 and len({round(d, 3) for d in doms}) == 2   # two rows of three
    assert grid["y"] + grid["height"] <= page.viewport_size["height"] + 1, "the second row is below the fold"
    page.screenshot(path=str(ARTIFACTS / "08_heads_grid.png"))


def test_a_refused_file_replaces_the_status(fresh, tmp_path):
    page = fresh
    page.get_by_role("tab", name="Upload").click()
    bad = tmp_path / "notes.docx"
    bad.write_bytes(b"PK\x03\x04 not a point cloud")
    page.locator("#pcd-upload input[type=file]").set_input_files(str(bad))
    _wait_status(page, "notes.docx was not loaded")
    assert "its type is not one the app reads" in _status(page)


# --------------------------------------------------------------------------- issue 16: recoloured in the page

SHOWN = f"""() => {{ const t = document.querySelector('{PLOT}')._fullData[0];
  return {{colours: Array.from(t.marker.color), cmin: t.marker.cmin, cmax: t.marker.cmax,
          canvas: !!(document.querySelector('#pcd-plot canvas') || {{}}).__pcdMark}}; }}"""


def test_a_head_change_asks_nothing_and_shows_what_view_returns(fresh, app_url):
    """A head change sends no request at all, keeps the plot's WebGL canvas (no remount), only rewrites the colours
    of the page's points layer, and the colours, their range and the status equal what the /view endpoint returns
    for the same settings."""
    from gradio_client import Client

    page = fresh
    _settle(page)
    page.evaluate("() => { document.querySelector('#pcd-plot canvas').__pcdMark = true; }")
    sent = []
    page.on("request", lambda r: sent.append(r.url))
    _choose_head(page, "4")
    _wait_status(page, "head 4")
    assert sent == [], f"a head change asked the server: {sent}"
    shown = page.evaluate(SHOWN)
    assert shown["canvas"], "the plot was mounted anew"
    # the page's points layer drew the plot and took the change as a colour-buffer write (static/page.js)
    fast = page.evaluate("() => Object.assign({}, window.pcdviz.fast)")
    assert fast["enabled"] and fast["hooked"] >= 1 and fast["drawn"] >= 1 and fast["recoloured"] >= 1, fast
    cloud_id = page.locator("#pcd-cloud-id textarea, #pcd-cloud-id input").first.input_value()
    checkpoint = page.locator("#pcd-checkpoint input").input_value()
    layer = int(page.locator("#pcd-layer input[type=range]").input_value())
    plot, status = Client(app_url, verbose=False).predict(cloud_id=cloud_id, checkpoint=checkpoint, layer=layer,
                                                          head="4", api_name="/view")
    trace = [t for t in json.loads(plot["plot"])["data"] if t.get("name") == "points"][0]
    server = _decode_array(trace["marker"]["color"])
    assert len(shown["colours"]) == len(server) == 2048
    np.testing.assert_allclose(np.array(shown["colours"], dtype=np.float32), server, rtol=1e-5, atol=1e-7)
    assert shown["cmin"] == pytest.approx(trace["marker"]["cmin"]) and shown["cmax"] == pytest.approx(trace["marker"]["cmax"])
    timing = re.compile(r" · \d+ ms( in the page)?$")
    assert timing.sub("", _status(page)) == timing.sub("", status), (_status(page), status)


def test_the_page_draws_with_its_own_small_plotly_and_keeps_it(browser, app_url):
    """The page render draws the main plot with the vendored gl3d-only plotly (app.PLOTLY_BUNDLE) and never asks
    for Gradio's full plotly at page open; when a panel's gr.Plot later loads that one (and with it a new
    window.Plotly), a head change still recolours the main plot in the page, with no request."""
    from pcdviz.app import PLOTLY_BUNDLE

    page = browser.new_page(viewport={"width": 1440, "height": 960})
    page.set_default_timeout(30_000)
    urls = []
    page.on("request", lambda r: urls.append(r.url))
    try:
        page.goto(app_url)
        page.wait_for_selector(PLOT)
        _settle(page, 500)
        assert any(PLOTLY_BUNDLE.name in u for u in urls), urls
        assert not [u for u in urls if "PlotlyPlot-" in u], "page open fetched gr.Plot's plotly"
        assert page.evaluate("() => window.pcdviz.Plotly === window.Plotly && window.Plotly.version") == "3.3.1"
        page.get_by_text("Head statistics").click()
        page.get_by_role("button", name="Compute for the checkpoints shown").click()
        page.wait_for_selector("#pcd-stats-plot .js-plotly-plot")
        assert [u for u in urls if "PlotlyPlot-" in u], "the head statistics' gr.Plot did not load Gradio's plotly"
        assert page.evaluate("() => window.pcdviz.Plotly !== window.Plotly"), "Gradio's plotly did not replace window.Plotly"
        _settle(page, 500)
        n, local = len(urls), page.evaluate("() => window.pcdviz.stats.local")
        _choose_head(page, "2")
        _wait_status(page, "head 2")
        assert urls[n:] == [], f"a head change asked the server: {urls[n:]}"
        assert page.evaluate("() => window.pcdviz.stats.local") == local + 1
    finally:
        page.close()


def test_without_its_plotly_the_page_says_why(browser, app_url):
    """Where the vendored plotly cannot load (blocked here), the plot's box says so instead of staying empty."""
    from pcdviz.app import PLOTLY_BUNDLE

    page = browser.new_page(viewport={"width": 1440, "height": 960})
    page.set_default_timeout(30_000)
    try:
        page.route(f"**/*{PLOTLY_BUNDLE.name}", lambda route: route.abort())
        page.goto(app_url)
        page.wait_for_function("() => (document.querySelector('#pcd-plot .pcd-gd') || {}).textContent"
                               " && document.querySelector('#pcd-plot .pcd-gd').textContent.includes('cannot be drawn')")
        assert PLOTLY_BUNDLE.name in page.locator("#pcd-plot").inner_text()
    finally:
        page.close()


def _decode_array(a) -> np.ndarray:
    """A plotly JSON array: a list, or a typed array {"dtype", "bdata"} (base64)."""
    if isinstance(a, dict) and "bdata" in a:
        return np.frombuffer(base64.b64decode(a["bdata"]), dtype=np.dtype(a["dtype"]))
    return np.asarray(a)
