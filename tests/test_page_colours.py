"""The page's colours equal the server's (issue 16): pcdviz/static/recolor.js, run by node on the bundle the
server sends (pcdviz/pagedata.py), against Explorer.view (what /view returns) for the same settings.

Covers the layers, heads and fusions, the mass threshold, both units and every colour range, query views
(one checkpoint and a comparison), the heads grid, rollout, a model without a CLS token, a comparison of
models of other depths (relative layers), and more than one patching.
"""
from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pcdviz import pagedata
from pcdviz.explorer import Explorer, ViewSettings

REPO = Path(__file__).resolve().parents[1]
NODE = shutil.which("node") or shutil.which("nodejs")
RUNNER = r"""
const R = require(process.argv[2]);
let text = '';
process.stdin.on('data', d => text += d);
process.stdin.on('end', () => {
  const job = JSON.parse(text), out = [];
  for (const s of job.cases) {
    const b = JSON.parse(job.bundle);   // a fresh bundle each time: recolour must not change it
    const r = R.recolor(b, s);
    out.push({caption: r.caption, colorscale: r.colorscale, size: r.size, symbol: r.symbol, colorbarTitle: r.colorbarTitle,
              panels: r.panels.map(p => ({title: p.title, cmin: p.cmin, cmax: p.cmax,
                                          values: Buffer.from(new Uint8Array(p.values.buffer)).toString('base64'),
                                          highlight: p.highlight ? Array.from(p.highlight) : null}))});
  }
  process.stdout.write(JSON.stringify(out));
});
"""

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed (Debian: apt-get install nodejs)")


def run_page(bundle: dict, cases: list[dict], tmp_path) -> list[dict]:
    runner = tmp_path / "run_recolor.js"
    runner.write_text(RUNNER)
    job = json.dumps({"bundle": json.dumps(bundle), "cases": cases})
    res = subprocess.run([NODE, str(runner), str(REPO / "pcdviz" / "static" / "recolor.js")], input=job,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def case(**kw) -> dict:
    s = dict(mode="cls", layer=-1, head="mean", query=0, keep=1.0, point_size=0, colorscale="Viridis",
             color_range="auto", units="uniform")
    s.update(kw)
    return s


def check(ex: Explorer, checkpoint: str, cloud_id: str, base: ViewSettings, compare, cases, tmp_path):
    """Build the bundle for `base`, recolour it in node for each case, and compare with Explorer.view."""
    from dataclasses import replace

    from pcdviz.explorer import _color_limits  # noqa: F401  (the server's rule the page mirrors)

    v0 = ex.view(checkpoint, cloud_id, base, compare)
    bundle = pagedata.page_bundle(ex, v0, checkpoint, compare)
    assert base.mode in bundle["local"], f"the page cannot recolour a {base.mode} view: {bundle['local']}"
    got = run_page(bundle, cases, tmp_path)
    for c, page in zip(cases, got):
        s = replace(base, mode=c["mode"], layer=c["layer"], head=c["head"], query=c["query"], keep=c["keep"],
                    colorscale=c["colorscale"], color_range=c["color_range"], units=c["units"],
                    point_size=c["point_size"])
        v = ex.view(checkpoint, cloud_id, s, compare)
        traces = [t for t in v.figure.data if t.name == "points"]
        assert len(page["panels"]) == len(traces), c
        assert page["caption"] == v.caption, c
        for p, t, panel in zip(page["panels"], traces, v.panels):
            values = np.frombuffer(base64.b64decode(p["values"]), dtype=np.float32)
            server = np.asarray(t.marker.color, dtype=np.float32)
            np.testing.assert_allclose(values, server, rtol=1e-5, atol=1e-7, err_msg=str(c))
            assert p["cmin"] == pytest.approx(t.marker.cmin, rel=1e-5, abs=1e-7), c
            assert p["cmax"] == pytest.approx(t.marker.cmax, rel=1e-5, abs=1e-7), c
            assert p["title"] == panel.title, c
            if panel.highlight is not None:
                assert np.array_equal(np.asarray(p["highlight"], dtype=bool), panel.highlight[:len(values)]
                                      if len(panel.highlight) == len(values) else panel.highlight), c
        assert page["colorscale"] == [list(x) for x in traces[0].marker.colorscale], c
        assert page["size"] == pytest.approx(traces[0].marker.size), c
        assert page["symbol"] == traces[0].marker.symbol, c
    return got


@pytest.fixture(scope="module")
def ex():
    return Explorer(REPO / "checkpoints")


def test_single_view_layers_heads_thresholds_units_ranges(ex, tmp_path):
    cid = ex.load_shape("chair", 0, 2048).cloud_id
    ck = "dwc-tiny"
    cases = [case(layer=l, head=h) for l in (0, 3) for h in ("0", "5", "mean", "max", "min")]
    cases += [case(layer=2, head="1", keep=k) for k in (0.3, 0.6, 0.95)]
    cases += [case(head="2", units="raw", color_range=r) for r in ("auto", "minmax", "zero", "robust")]
    cases += [case(head="mean", keep=0.5, colorscale="RdBu_r", color_range="robust")]
    cases += [case(head="3", point_size=p) for p in (2.5, 6)]   # squares up to 4 px, circles above
    check(ex, ck, cid, ViewSettings(patchings=4), [], cases, tmp_path)
    roll = [case(mode="rollout", head=h, keep=k) for h in ("mean", "max", "3") for k in (1.0, 0.7)]
    check(ex, ck, cid, ViewSettings(mode="rollout", patchings=4), [], roll, tmp_path)


def test_default_patchings_heads_grid_and_near_uniform_notes(ex, tmp_path):
    cid = ex.load_shape("table", 1, 3000).cloud_id
    grid = [case(mode="heads", layer=l, keep=k) for l in (0, 3) for k in (1.0, 0.6)]
    check(ex, "dwc-tiny", cid, ViewSettings(mode="heads"), [], grid, tmp_path)
    flat = [case(layer=l, head="mean", color_range=r) for l in (0, 3) for r in ("auto", "minmax")]
    check(ex, "random-tiny (built in)" if "random-tiny" not in ex.checkpoint_names() else "random-tiny", cid,
          ViewSettings(), [], flat, tmp_path)


def test_query_views_and_comparisons(ex, tmp_path):
    cid = ex.load_shape("airplane", 2, 4096).cloud_id
    q = [case(mode="query", layer=l, head=h, query=qq, keep=k) for l, h, qq, k in
         [(0, "mean", 0, 1.0), (1, "2", 7, 1.0), (3, "max", 31, 0.6), (2, "min", 12, 1.0)]]
    check(ex, "dwc-tiny", cid, ViewSettings(mode="query", patchings=3), [], q, tmp_path)
    check(ex, "dwc-tiny", cid, ViewSettings(mode="query", patchings=3), ["dino-tiny", "random-tiny"], q, tmp_path)
    both = [case(layer=l, head=h) for l, h in [(1, "0"), (3, "mean"), (0, "max")]]
    check(ex, "dwc-tiny", cid, ViewSettings(patchings=2), ["dino-tiny", "random-tiny"], both, tmp_path)


def test_no_cls_model_and_other_depths(ex, tmp_path):
    """A model without a CLS token (mean attention received) beside one of another depth (relative layer)."""
    import torch

    from pcdviz.checkpoints import save_checkpoint
    from pcdviz.model import PointViT, preset

    torch.manual_seed(3)
    root = tmp_path / "ckpts"
    shutil.copytree(REPO / "checkpoints" / "dwc-tiny", root / "dwc-tiny")
    save_checkpoint(root / "nocls", PointViT(preset("tiny", cls_tokens=0)), {"method": "random"})
    save_checkpoint(root / "deep", PointViT(preset("tiny", depth=6)), {"method": "random"})
    ex2 = Explorer(root)
    cid = ex2.load_shape("chair", 0, 2048).cloud_id
    cases = [case(layer=l, head=h) for l, h in [(0, "1"), (2, "mean"), (-1, "max")]]
    check(ex2, "nocls", cid, ViewSettings(patchings=2), ["deep", "dwc-tiny"], cases, tmp_path)
    check(ex2, "deep", cid, ViewSettings(mode="query", patchings=2), ["nocls"],
          [case(mode="query", layer=l, query=5) for l in (1, 4)], tmp_path)


def test_both_renders_offer_the_same_named_endpoints(ex):
    """--render server (the old path, kept for the comparison) and the default page render expose the same
    public API; the page render's own events are private twins."""
    from pcdviz.app import build_app

    def public(demo):
        deps = demo.config["dependencies"]
        return sorted(d["api_name"] for d in deps if d.get("api_name") and d.get("api_visibility", "public") == "public")

    page, server = build_app(ex), build_app(ex, render="server")
    try:
        assert public(page) == public(server)
        assert {"view", "set_mode", "load_shape", "pick_point", "select_checkpoint"} <= set(public(page))
    finally:
        page.close()
        server.close()
    with pytest.raises(ValueError, match="render must be one of"):
        build_app(ex, render="client")
