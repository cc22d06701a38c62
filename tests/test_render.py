"""pcdviz.render: figure structure, shared colour ranges and cameras, payload size, standalone HTML."""
import json

import numpy as np
import plotly.graph_objects as go
import pytest
from conftest import median_seconds

from pcdviz.render import DEFAULT_CAMERA, cloud_figure, compare_figure, figure_to_html, heads_grid_figure


def cloud(n=2048, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3)).astype(np.float32), rng.random(n).astype(np.float32)


def scenes(fig):
    return sorted(k for k in fig.layout._props if k.startswith("scene"))


def decode_xyz(fig, trace):
    """Real coordinates of a trace from the figure's int16 coordinates and layout.meta."""
    meta = fig.layout.meta["xyz"]
    q = np.stack([np.asarray(trace.x), np.asarray(trace.y), np.asarray(trace.z)], 1).astype(np.float64)
    return q / meta["scale"] + np.asarray(meta["center"])


def test_cloud_figure_structure():
    pts, vals = cloud()
    fig = cloud_figure(pts, vals, title="head 0")
    assert len(fig.data) == 1 and scenes(fig) == ["scene"]
    t = fig.data[0]
    assert isinstance(t, go.Scatter3d) and t.mode == "markers"
    assert t.marker.showscale and t.marker.cmin == pytest.approx(vals.min()) and t.marker.cmax == pytest.approx(vals.max())
    assert t.text is None and t.hovertext is None            # no per-point strings
    assert "%{pointNumber}" in t.hovertemplate and "%{marker.color" in t.hovertemplate
    sc = fig.layout.scene
    assert sc.aspectmode == "manual" and sc.xaxis.visible is False and sc.zaxis.visible is False
    ext = np.ptp(pts, 0)
    assert [sc.aspectratio.x, sc.aspectratio.y, sc.aspectratio.z] == pytest.approx(list(ext / ext.max()), rel=1e-3)
    assert sc.camera.eye.x == DEFAULT_CAMERA["eye"]["x"]
    assert np.asarray(t.x).dtype == np.int16                  # compact coordinates...
    np.testing.assert_allclose(decode_xyz(fig, t), pts, atol=2e-4 * np.abs(pts).max())   # ...that decode back
    exact = cloud_figure(pts, vals, exact_xyz=True)
    np.testing.assert_array_equal(np.asarray(exact.data[0].x), pts[:, 0])


def test_cloud_figure_centres_highlight_hover_and_camera():
    pts, vals = cloud()
    centres = pts[:64]
    mask = np.zeros(len(pts), bool)
    mask[[3, 5, 8]] = True
    camera = dict(eye=dict(x=0.1, y=2.0, z=0.3), up=dict(x=0, y=0, z=1))
    fig = cloud_figure(pts, vals, centers=centres, highlight=mask, hover=np.arange(len(pts)) % 64,
                       camera=camera, cmin=0.2, cmax=0.4, point_size=4)
    assert len(fig.data) == 3
    points, cen, hi = fig.data
    assert (points.marker.cmin, points.marker.cmax) == (0.2, 0.4)
    assert len(cen.x) == 64 and len(hi.x) == 3 and hi.marker.size > points.marker.size
    np.testing.assert_allclose(decode_xyz(fig, hi), pts[[3, 5, 8]], atol=1e-3)
    assert np.asarray(points.customdata).dtype == np.uint8 and "patch %{customdata}" in points.hovertemplate
    assert fig.layout.scene.camera.eye.y == 2.0 and fig.layout.scene.camera.up.z == 1
    same = cloud_figure(pts, vals, centers=centres, highlight=[3, 5, 8])   # indices == mask
    np.testing.assert_array_equal(np.asarray(same.data[2].x), np.asarray(hi.x))
    ids = cloud_figure(pts, vals, hover=np.arange(len(pts)) % 64, point_ids=np.arange(len(pts)) * 10)
    cd = np.asarray(ids.data[0].customdata)
    assert cd.shape == (len(pts), 2) and cd[7].tolist() == [70, 7]
    assert "%{customdata[0]}" in ids.data[0].hovertemplate and "%{customdata[1]}" in ids.data[0].hovertemplate
    plain = cloud_figure(pts)                                                # no values: one plain colour
    assert isinstance(plain.data[0].marker.color, str)


def test_bad_inputs_are_value_errors():
    pts, vals = cloud()
    with pytest.raises(ValueError):
        cloud_figure(pts, vals[:-1])
    with pytest.raises(ValueError):
        cloud_figure(pts, vals, hover=np.arange(5))
    with pytest.raises(ValueError):
        cloud_figure(pts, vals, highlight=np.zeros(5, bool))
    with pytest.raises(ValueError):
        heads_grid_figure(pts, [vals, vals], ["only one title"])
    with pytest.raises(ValueError):
        compare_figure(pts, [], [])


def test_payload_bytes_per_point():
    pts, vals = cloud(50_000)
    patch = (np.arange(50_000) % 64)
    plain = len(cloud_figure(pts, vals).to_json()) / 50_000
    with_patch = len(cloud_figure(pts, vals, hover=patch, centers=pts[:64]).to_json()) / 50_000
    print(f"\nfig.to_json() bytes per point (50k points): values {plain:.2f}, values + patch ids + centres "
          f"{with_patch:.2f}")
    assert plain < 20 and with_patch < 20
    js = json.loads(cloud_figure(pts, vals).to_json())
    assert js["data"][0]["x"]["dtype"] == "i2" and js["data"][0]["marker"]["color"]["dtype"] == "f4"


def test_heads_grid_shares_camera_and_colour_scale():
    pts, vals = cloud()
    heads = [vals * (i + 1) for i in range(6)]
    camera = dict(eye=dict(x=1.0, y=1.0, z=1.0))
    fig = heads_grid_figure(pts, heads, [f"head {i}" for i in range(6)], camera=camera, centers=pts[:64])
    assert scenes(fig) == ["scene"] + [f"scene{i}" for i in range(2, 7)]
    assert len(fig.data) == 12                                        # points + centres per head
    point_traces = [t for t in fig.data if t.name == "points"]
    assert [t.scene for t in point_traces] == ["scene"] + [f"scene{i}" for i in range(2, 7)]
    assert len({(t.marker.cmin, t.marker.cmax) for t in point_traces}) == 1
    assert point_traces[0].marker.cmax == pytest.approx(float(heads[-1].max()))
    assert sum(bool(t.marker.showscale) for t in point_traces) == 1  # one colour bar
    for s in scenes(fig):
        assert fig.layout[s].camera.eye.x == 1.0 and fig.layout[s].aspectmode == "manual"
    assert [a.text for a in fig.layout.annotations] == [f"head {i}" for i in range(6)]
    own = heads_grid_figure(pts, heads, [str(i) for i in range(6)], shared_scale=False, cols=6)
    assert len({t.marker.cmax for t in own.data}) == 6
    doms = [own.layout[s].domain.x[0] for s in scenes(own)]
    assert doms == sorted(doms)                                      # one row, left to right


def test_compare_side_by_side():
    pts, vals = cloud()
    fig = compare_figure(pts, [vals, vals * 3, vals * 2], ["a", "b", "c"], highlight=[1, 2, 3])  # shared indices
    assert scenes(fig) == ["scene", "scene2", "scene3"] and len(fig.data) == 6
    xs = [fig.layout[s].domain.x for s in scenes(fig)]
    assert xs[0][1] <= xs[1][0] and xs[1][1] <= xs[2][0]
    assert len({tuple(fig.layout[s].domain.y) for s in scenes(fig)}) == 1
    pt = [t for t in fig.data if t.name == "points"]
    assert len({(t.marker.cmin, t.marker.cmax) for t in pt}) == 1
    assert pt[0].marker.cmax == pytest.approx(float((vals * 3).max()))
    own = compare_figure([pts, pts[:1000]], [vals, vals[:1000] * 3], ["a", "b"], shared_scale=False)
    pt = [t for t in own.data if t.name == "points"]
    assert pt[0].marker.cmax != pt[1].marker.cmax and all(t.marker.showscale for t in pt)
    assert len(pt[1].x) == 1000
    per_panel = compare_figure(pts, [vals, vals], ["a", "b"], highlight=[np.array([1, 2]), np.array([4])])
    assert [len(t.x) for t in per_panel.data if t.name == "highlight"] == [2, 1]


def test_figure_to_html_is_standalone():
    pts, vals = cloud(500)
    html = figure_to_html(cloud_figure(pts, vals))
    assert "<html" in html[:100].lower() and "Plotly.newPlot" in html
    assert "<title>pcdviz</title>" in html[:300]
    assert "<title>a &lt;b&gt; title</title>" in figure_to_html(cloud_figure(pts, vals), title="a <b> title")[:300]
    assert "<title>head 0</title>" in figure_to_html(cloud_figure(pts, vals, title="head 0"))[:300]
    assert len(html) > 1_000_000                                   # plotly.js inlined
    assert 'src="http' not in html and "cdn.plot.ly" not in html.split("Plotly.newPlot")[-1]


def test_figure_build_time_at_2048_points():
    pts, vals = cloud()
    heads = [vals + i for i in range(6)]

    one = median_seconds(lambda: cloud_figure(pts, vals, centers=pts[:64], hover=np.arange(2048) % 64).to_json(), n=7)
    grid = median_seconds(lambda: heads_grid_figure(pts, heads, [str(i) for i in range(6)], centers=pts[:64]).to_json(), n=7)
    print(f"\nmedian build + to_json at 2048 points: one cloud {one * 1e3:.1f} ms, 6-head grid {grid * 1e3:.1f} ms")
    assert one < 0.5 and grid < 2.0


def test_long_clouds_fit_the_default_view_and_colour_bars_say_what_they_show():
    pts, vals = cloud()
    long = pts * np.array([164.0, 32.0, 24.0]) / 3   # sofia.stl's proportions
    sc = cloud_figure(long, vals, colorbar_title="× uniform").layout.scene
    assert max(sc.aspectratio.x, sc.aspectratio.y, sc.aspectratio.z) == pytest.approx(1.0)  # the box the camera frames
    assert sc.aspectratio.x == pytest.approx(1.0) and sc.aspectratio.y == pytest.approx(32 / 164, rel=0.2)
    flat = pts.copy()
    flat[:, 2] = 0.0
    assert cloud_figure(flat, vals).layout.scene.aspectratio.z == pytest.approx(0.01)  # a flat cloud keeps a sliver
    fig = cloud_figure(pts, vals, colorbar_title="× uniform")
    assert fig.data[0].marker.colorbar.title.text == "× uniform"
    own = compare_figure(pts, [vals, vals * 2], ["cos", "att"], shared_scale=False, cmin=[-1.0, 0.0], cmax=[1.0, 5.0],
                         colorbar_title=["cosine", "× uniform"])
    pt = [t for t in own.data if t.name == "points"]
    assert [(t.marker.cmin, t.marker.cmax) for t in pt] == [(-1.0, 1.0), (0.0, 5.0)]
    assert [t.marker.colorbar.title.text for t in pt] == ["cosine", "× uniform"]
    grid = heads_grid_figure(pts, [vals] * 6, [str(i) for i in range(6)], height=640)
    assert grid.layout.height == 640   # given a height, two rows of three in the single view's height: no row below the fold
