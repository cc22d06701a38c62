"""Maps a researcher can trust (issue 15), through the launched app and gradio_client on the shipped checkpoints
and real files: the same map for any point order, averaging over patchings, colours as multiples of uniform
with a near-uniform note, query dependence per layer, the up axis and framing, and the exports' fixes."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from pcdviz.attention import (multiple_of_uniform, near_uniform, query_dependence, uniform_deviation)

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- the measures themselves


def test_multiple_of_uniform_and_near_uniform():
    flat = np.full(32, 1 / 33)
    assert np.allclose(multiple_of_uniform(flat), 1.0) and uniform_deviation(flat) == pytest.approx(0.0, abs=1e-6)
    rng = np.random.default_rng(0)
    noise = (1 + 0.02 * rng.uniform(-1, 1, 32)) / 33          # random-tiny's kind of map: within 2 %
    assert near_uniform(noise) and uniform_deviation(noise) < 0.05
    peak = np.full(32, 0.01)
    peak[3] = 0.5
    m = multiple_of_uniform(peak)
    assert m[3] == pytest.approx(0.5 / peak.mean()) and not near_uniform(peak)
    assert np.allclose(multiple_of_uniform(np.zeros(5)), 0)    # no mass: no division by zero


def test_query_dependence_is_zero_for_identical_rows_and_high_for_disjoint_ones():
    L, H, G = 2, 3, 8
    same = np.zeros((L, H, G + 1, G + 1))
    same[..., 1:] = np.random.default_rng(1).dirichlet(np.ones(G))  # every query: the same row
    assert np.allclose(query_dependence(same), 0, atol=1e-6)
    own = np.zeros((L, H, G + 1, G + 1))
    own[..., 1:, 1:] = np.eye(G)                                    # every query attends only to itself
    assert np.allclose(query_dependence(own), 1 - 1 / G)           # TV of a one-hot from the uniform mean
    assert query_dependence(own, head=1).shape == (L,)


def test_resample_with_a_geometric_start_picks_the_same_points_in_any_order():
    from pcdviz.io import resample

    pts = np.random.default_rng(3).normal(size=(3000, 3)).astype(np.float32)
    perm = np.random.default_rng(4).permutation(len(pts))
    for n in (256, 5000):   # FPS picks, and padding beyond the cloud (repeats in FPS order, not file order)
        a = pts[resample(pts, n, start="geometric")]
        b = pts[perm][resample(pts[perm], n, start="geometric")]
        assert np.array_equal(a, b), n
    a = pts[resample(pts, 256)]                      # the default is still index 0 (training, peers)
    assert np.array_equal(a[0], pts[0]) and not np.array_equal(a, pts[perm][resample(pts[perm], 256)])
    with pytest.raises(ValueError, match="start"):
        resample(pts, 10, start="middle")


# --------------------------------------------------------------------------- the launched app


@pytest.fixture(scope="module")
def url():
    pytest.importorskip("gradio_client")
    from pcdviz.explorer import Explorer
    from pcdviz.headless import served

    with served(Explorer(REPO / "checkpoints")) as url:
        yield url


@pytest.fixture(scope="module")
def client(url, tmp_path_factory):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


def _decode(a) -> np.ndarray:
    if isinstance(a, dict) and "bdata" in a:
        out = np.frombuffer(base64.b64decode(a["bdata"]), dtype=np.dtype(a["dtype"]))
        return out.reshape(a["shape"]) if isinstance(a.get("shape"), list) else out
    return np.asarray(a)


def _fig(plot) -> dict:
    return json.loads(plot["plot"])


def _points(plot, i=0) -> dict:
    return [t for t in _fig(plot)["data"] if t.get("name") == "points"][i]


def _colours(plot) -> np.ndarray:
    return _decode(_points(plot)["marker"]["color"]).astype(np.float64)


def _xyz(plot) -> np.ndarray:
    """Shown coordinates of the points trace (int16 in the figure, decoded with layout.meta)."""
    fig = _fig(plot)
    t = _points(plot)
    meta = fig["layout"]["meta"]["xyz"]
    q = np.stack([_decode(t[a]) for a in "xyz"], 1).astype(np.float64)
    return q / meta["scale"] + np.asarray(meta["center"])


def _upload(client, path: Path, **kw):
    from gradio_client import handle_file

    cid, info, _, plot, status = client.predict(file=handle_file(str(path)), h5_key=None, h5_index=0,
                                                checkpoint="dwc-tiny", api_name="/load_upload", **kw)
    assert not status.startswith("⚠️"), status
    return cid, info, plot, status


@pytest.mark.parametrize("name", ["car6.pcd", "bunny.pcd"])   # 10,031 points (FPS picks), 397 (padded to 1,024)
def test_a_permuted_file_gives_the_same_map(client, samples_dir, tmp_path, name):
    from pcdviz import io

    pts = io.load_point_cloud(samples_dir / name).points.astype(np.float32)
    perm = np.random.default_rng(7).permutation(len(pts))
    np.save(tmp_path / "a.npy", pts)
    np.save(tmp_path / "b.npy", pts[perm])
    maps = {}
    for start in ("geometric", "index0"):
        a = _colours(_upload(client, tmp_path / "a.npy", fps_start=start)[2])
        b_perm = _colours(_upload(client, tmp_path / "b.npy", fps_start=start)[2])
        b = np.empty_like(b_perm)
        b[perm] = b_perm            # back to the file's order
        maps[start] = (a, b)
    a, b = maps["geometric"]
    assert np.allclose(a, b, rtol=1e-4, atol=1e-5), f"max difference {np.abs(a - b).max()}"
    a, b = maps["index0"]           # the training's rule follows the file's order: another map
    assert not np.allclose(a, b, rtol=1e-3, atol=1e-4)


def test_averaging_patchings_steadies_the_map_under_jitter(client, samples_dir, tmp_path):
    from scipy.stats import spearmanr

    from pcdviz import io

    pts = io.load_point_cloud(samples_dir / "car6.pcd").points.astype(np.float64)
    rng = np.random.default_rng(0)
    d = rng.normal(size=pts.shape)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    np.save(tmp_path / "car.npy", pts.astype(np.float32))
    np.save(tmp_path / "car_jit.npy", (pts + 0.005 * np.linalg.norm(np.ptp(pts, 0)) * d).astype(np.float32))
    rho = {}
    for k in (1, 16):
        a = _colours(_upload(client, tmp_path / "car.npy", patchings=k)[2])
        cid, info, plot, status = _upload(client, tmp_path / "car_jit.npy", patchings=k)
        rho[k] = spearmanr(a, _colours(plot)).statistic
        if k > 1:
            assert f"mean of {k} patchings" in status
            assert f"maps averaged over {k} patchings, each smoothed over its nearest patch centres" in info
    assert rho[16] > rho[1] + 0.1 and rho[16] >= 0.9, rho


def test_colours_are_multiples_of_uniform_and_near_uniform_maps_stay_flat(client):
    cid, *_ = client.predict(category="chair", api_name="/load_shape")
    plot, status = client.predict(cloud_id=cid, checkpoint="random-tiny", api_name="/view")
    marker = _points(plot)["marker"]
    values = _colours(plot)
    assert 0.9 < values.min() <= values.max() < 1.1                      # multiples of uniform, all near 1
    assert marker["cmin"] == 0 and marker["cmax"] >= 2                    # not stretched to full contrast
    assert "uniform" in marker["colorbar"]["title"]["text"]               # the colour bar says what they are
    assert "near uniform" in status and "±10%" in status
    assert "near uniform" in _fig(plot)["layout"]["title"]["text"]       # on the picture too
    plot, status = client.predict(cloud_id=cid, checkpoint="random-tiny", color_range="minmax", units="raw",
                                  api_name="/view")                       # min-max stays available
    assert "the contrast the 'minmax' colour range gives it is noise" in status
    marker = _points(plot)["marker"]
    assert marker["cmin"] == pytest.approx(_colours(plot).min(), rel=1e-5) and marker["cmax"] < 0.04
    assert "weight" in marker["colorbar"]["title"]["text"]
    plot, status = client.predict(cloud_id=cid, checkpoint="dwc-tiny", api_name="/view")
    assert "near uniform" not in status and _points(plot)["marker"]["cmax"] == pytest.approx(_colours(plot).max())


def test_query_mode_starts_where_queries_differ_and_says_when_they_do_not(client):
    from pcdviz.explorer import Explorer, ViewSettings

    cid, *_ = client.predict(category="chair", api_name="/load_shape")
    dep = Explorer(REPO / "checkpoints").query_dependence("dwc-tiny", cid, ViewSettings())
    layer, plot, status = client.predict(cloud_id=cid, checkpoint="dwc-tiny", mode="query", layer=3,
                                         api_name="/set_mode")
    assert layer == int(np.argmax(dep)) and f"layer {int(layer)}" in status
    assert "query dependence by layer: " + " · ".join(f"{i}: {d:.3f}" for i, d in enumerate(dep)) in status
    plot, status = client.predict(cloud_id=cid, checkpoint="dwc-tiny", mode="query", layer=3, api_name="/view")
    assert dep[3] > 0.1 and "nearly the same map" not in status        # dwc-tiny's distance bias: local heads
    flat = Explorer(REPO / "checkpoints").query_dependence("random-tiny", cid, ViewSettings())
    plot, status = client.predict(cloud_id=cid, checkpoint="random-tiny", mode="query", layer=3, api_name="/view")
    assert flat[3] < 0.02 and "every query patch gets nearly the same map" in status
    layer, _, status = client.predict(cloud_id=cid, checkpoint="dwc-tiny", mode="cls", layer=2, api_name="/set_mode")
    assert layer == 2 and "query dependence" not in status                # other modes keep the layer


def test_up_axis_follows_the_format_and_can_be_chosen(client, samples_dir, tmp_path):
    _, info, plot, _ = _upload(client, samples_dir / "cylinder.stl")     # 2 x 2 x 8, long along z
    assert "up axis: z (auto: STL" in info
    ext = np.ptp(_xyz(plot), 0)
    assert ext[1] > 3 * ext[0] and ext[1] > 3 * ext[2]                   # drawn standing: long along the screen's up
    from pcdviz import io

    np.save(tmp_path / "post.npy", io.load_point_cloud(samples_dir / "cylinder.stl").points)  # a z-up .npy
    cid, info, plot, _ = _upload(client, tmp_path / "post.npy")
    assert "up axis: y (auto: the format has no up convention" in info
    assert np.ptp(_xyz(plot), 0)[1] < 0.5 * np.ptp(_xyz(plot), 0).max()  # lying down, as stored
    info, plot, status = client.predict(cloud_id=cid, checkpoint="dwc-tiny", up="z", api_name="/set_options")
    assert "up axis: z (chosen)" in info and not status.startswith("⚠️")
    ext = np.ptp(_xyz(plot), 0)
    assert ext[1] == pytest.approx(ext.max())                             # standing up
    assert "sampling start (input and patch centres): geometric" in info


def test_default_camera_frames_a_long_mesh(client):
    _, _, plot, _ = client.predict(mesh="sofia.stl", api_name="/load_mesh")   # 164 x 32 x 24
    scene = _fig(plot)["layout"]["scene"]
    ratio = scene["aspectratio"]
    assert scene["aspectmode"] == "manual" and max(ratio.values()) == pytest.approx(1.0)
    eye = scene["camera"]["eye"]
    assert np.linalg.norm([eye["x"], eye["y"], eye["z"]]) > np.sqrt(3) * 1.0  # outside the unit box it shows


def test_exports_name_the_view_keep_file_coordinates_and_have_a_title(client, samples_dir):
    from pcdviz import io

    cid, *_ = _upload(client, samples_dir / "car6.pcd")
    path, status = client.predict(cloud_id=cid, checkpoint="dwc-tiny", layer=2, head="4", api_name="/export_ply")
    assert "_cls_layer2_head4" in Path(path).name, path
    back = io.load_point_cloud(path).points
    orig = io.load_point_cloud(samples_dir / "car6.pcd").points
    assert np.allclose(np.sort(back[:, 0]), np.sort(orig[:, 0]), atol=1e-3)   # x spans -40..-34 as in the file
    assert -40.5 < back[:, 0].min() < back[:, 0].max() < -33.5
    path, _ = client.predict(cloud_id=cid, checkpoint="dwc-tiny", mode="rollout", head="max", api_name="/export_html")
    assert "_rollout_max" in Path(path).name
    head = Path(path).read_text(encoding="utf-8")[:2000]
    assert "<title>pcdviz · dwc-tiny · car6.pcd" in head and "rollout" in head


def test_npy_info_has_no_stray_array_line_and_a_refused_file_replaces_the_status(client, tmp_path):
    np.save(tmp_path / "cloud.npy", np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32))
    _, info, _, _ = _upload(client, tmp_path / "cloud.npy")
    assert "array `" not in info and "500 points" in info
    status = client.predict(rejected=json.dumps({"name": "scan.las", "why": "type", "limit_mb": 200, "t": 1}),
                            api_name="/refuse_upload")
    assert status.startswith("⚠️ scan.las was not loaded: its type is not one the app reads")
    status = client.predict(rejected=json.dumps({"name": "big.ply", "why": "size", "limit_mb": 200, "t": 2}),
                            api_name="/refuse_upload")
    assert "larger than the upload limit of 200 MB" in status


def test_export_command_takes_the_new_settings(tmp_path, samples_dir):
    from pcdviz.cli import main

    out = tmp_path / "cyl.npz"
    assert main(["export", str(REPO / "checkpoints" / "dwc-tiny"), str(samples_dir / "cylinder.stl"), "--out", str(out),
                 "--up", "y", "--fps-start", "index0", "--patchings", "2", "--units", "raw"]) == 0
    with np.load(out) as z:
        meta = json.loads(str(z["meta_json"]))
        shown, in_file = z["display_points"], z["display_points_file"]
    assert meta["up"] == "y" and meta["settings"]["fps_start"] == "index0" and meta["settings"]["patchings"] == 2
    assert np.ptp(in_file[:, 2]) == pytest.approx(8.0, rel=0.01)          # the file's own units: 8 long in z
    assert np.ptp(shown, 0).max() <= 2.0 + 1e-5                             # shown normalised into the unit sphere


def test_big_clouds_average_through_order_independent_anchors(tmp_path):
    from pcdviz.explorer import ANCHORS_MAX, Explorer, ViewSettings

    pts = np.random.default_rng(5).normal(size=(ANCHORS_MAX + 5000, 3)).astype(np.float32)
    perm = np.random.default_rng(6).permutation(len(pts))
    np.save(tmp_path / "a.npy", pts)
    np.save(tmp_path / "b.npy", pts[perm])
    ex = Explorer(REPO / "checkpoints")
    a_cloud = ex.load_upload(tmp_path / "a.npy")
    a = ex.view("dwc-tiny", a_cloud.cloud_id, ViewSettings(patchings=3)).panels[0].values
    b_perm = ex.view("dwc-tiny", ex.load_upload(tmp_path / "b.npy").cloud_id, ViewSettings(patchings=3)).panels[0].values
    b = np.empty_like(b_perm)
    b[perm] = b_perm
    assert a_cloud.anchors() is not None and len(a_cloud.anchors()[0]) == ANCHORS_MAX
    assert np.allclose(a, b, rtol=1e-4, atol=1e-5)


def test_the_model_card_and_the_info_panel_name_the_sampling_start(client):
    cid, *_ = client.predict(category="mug", api_name="/load_shape")
    card, *_, info, plot, status = client.predict(checkpoint="dino-tiny", cloud_id=cid, api_name="/select_checkpoint")
    assert "FPS start: index0 in training" in card and "default geometric" in card
    assert "sampling start (input and patch centres): geometric" in info
    info, plot, status = client.predict(cloud_id=cid, checkpoint="dino-tiny", fps_start="index0", patchings=1,
                                        api_name="/set_options")
    assert "sampling start (input and patch centres): index0, the file's first point" in info
    assert "patchings" not in info and "patchings" not in status
