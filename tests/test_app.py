"""The explorer: its plain functions (Explorer) and the launched app driven through gradio_client.

Checkpoints used here are written into a temporary folder: the shipped random-tiny, two more random
models (one with a different depth and head count), one that scan refuses (corrupt header) and one that
scans but cannot load (weights that do not match its config).
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from pcdviz.explorer import MODES, Explorer, ExplorerError, ViewSettings, parse_camera

REPO = Path(__file__).resolve().parents[1]
CAMERA = {"eye": {"x": 0.1, "y": 2.0, "z": 0.3}, "center": {"x": 0, "y": 0, "z": 0}, "up": {"x": 0, "y": 1, "z": 0}}


# --------------------------------------------------------------------------- fixtures


def _write_checkpoints(root: Path) -> Path:
    import torch

    from pcdviz.checkpoints import save_checkpoint
    from pcdviz.model import PointViT, preset

    shutil.copytree(REPO / "checkpoints" / "random-tiny", root / "random-tiny")
    torch.manual_seed(1)
    save_checkpoint(root / "seed1", PointViT(preset("tiny")),
                    {"method": "dino+contrast", "data": "synthetic-16", "epochs": 3,
                     "scores": {"svm_acc": 0.61, "part_iou": 0.42}})
    torch.manual_seed(2)
    save_checkpoint(root / "shallow", PointViT(preset("tiny", depth=2, n_heads=4, width=128)), {"method": "random"})
    shutil.copytree(root / "seed1", root / "seed1-copy")
    bad = root / "corrupt"
    shutil.copytree(root / "seed1", bad)
    (bad / "model.safetensors").write_bytes(b"\xff" * 64)  # header claims far more than the file holds
    mismatch = root / "mismatch"  # scans fine (header is valid) but the weights belong to another config
    shutil.copytree(root / "seed1", mismatch)
    card = json.loads((mismatch / "config.json").read_text())
    card["model"]["width"] = 96
    card["model"]["n_heads"] = 4
    (mismatch / "config.json").write_text(json.dumps(card))
    return root


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory) -> Path:
    return _write_checkpoints(tmp_path_factory.mktemp("ckpts"))


@pytest.fixture(scope="module")
def ex(ckpt_dir) -> Explorer:
    return Explorer(ckpt_dir)


@pytest.fixture(scope="module")
def chair(ex):
    return ex.load_shape("chair", 0, 2048)


def _points_trace(fig, i=0):
    return [t for t in fig.data if t.name == "points"][i]


def _write_xyz(path: Path, pts: np.ndarray) -> Path:
    np.savetxt(path, pts, fmt="%.6f")
    return path


# --------------------------------------------------------------------------- plain functions


def test_checkpoints_scanned_with_cards(ex):
    assert ex.usable_checkpoints() and "corrupt" in ex.checkpoint_names()
    assert "corrupt" not in ex.usable_checkpoints()
    assert ex.default_checkpoint() == "seed1"  # a trained one is shown first
    card = ex.checkpoint_card_markdown("seed1")
    for text in ("dino+contrast", "synthetic-16", "epochs: 3", "linear SVM 61.0 %", "attention-part IoU 0.420", "depth 4", "6 heads"):
        assert text in card
    assert "cannot be used" in ex.checkpoint_card_markdown("corrupt")


def test_every_category_and_the_gradio_meshes_load(ex):
    for cat in ex.categories():
        c = ex.load_shape(cat, 3, 512)
        assert c.points.shape == (512, 3) and np.isfinite(c.points).all()
    meshes = ex.mesh_assets()
    assert "Bunny.obj" in meshes
    for name in meshes:
        c = ex.load_mesh(name)
        assert len(c.points) > 1000 and c.is_mesh
        assert "sampled on its surface" in ex.cloud_info_markdown(c, "seed1")


def test_cloud_info_says_counts_and_downsampling(ex, chair):
    info = ex.cloud_info_markdown(chair, "seed1")
    assert "2,048 points" in info and "non-finite points dropped: 0" in info
    assert "2,048 → 1,024 points (farthest point sampling)" in info


@pytest.mark.parametrize("mode", list(MODES))
def test_each_view_mode_never_reruns_the_model(ex, chair, mode):
    ex.maps("seed1", chair.cloud_id)
    ex.view("seed1", chair.cloud_id, ViewSettings(mode=mode, query=3))  # crop mode runs its crop once here
    before = ex.n_forward
    colours = []
    for layer, head, keep in [(0, "0", 1.0), (3, "2", 1.0), (3, "max", 0.6), (1, "min", 1.0)]:
        v = ex.view("seed1", chair.cloud_id, ViewSettings(mode=mode, layer=layer, head=head, keep=keep, query=3))
        assert v.figure.data and all(np.isfinite(p.values).all() for p in v.panels)
        colours.append(np.asarray(_points_trace(v.figure).marker.color))
    assert ex.n_forward == before, "changing layer, head or threshold re-ran the model"
    if mode in ("cls", "heads", "query"):
        assert not np.allclose(colours[0], colours[1]), "different layer/head, same colours"
    n_panels = {"heads": 6, "crop": 2, "similarity": 2}.get(mode, 1)  # similarity: beside the query's attention
    assert len(v.panels) == n_panels


def test_mass_threshold_zeroes_the_rest(ex, chair):
    full = ex.view("seed1", chair.cloud_id, ViewSettings(head="0")).panels[0].patch_values
    half = ex.view("seed1", chair.cloud_id, ViewSettings(head="0", keep=0.5)).panels[0].patch_values
    kept = half > 0
    assert 0 < kept.sum() < len(half)
    assert full[kept].sum() >= 0.5 * full.sum() - 1e-6
    assert full[kept].min() >= full[~kept].max()  # the kept patches are the strongest ones


def test_head_switch_is_fast_at_2048_points(ex, chair):
    ex.view("seed1", chair.cloud_id, ViewSettings())
    times = []
    for h in range(6):
        t0 = time.perf_counter()
        ex.view("seed1", chair.cloud_id, ViewSettings(head=str(h))).figure.to_json()
        times.append(time.perf_counter() - t0)
    assert np.median(times) < 0.25, f"head switch took {np.median(times) * 1000:.0f} ms (target well under 100 ms)"


def test_query_patch_by_number_and_by_click(ex, chair):
    mv = ex.maps("seed1", chair.cloud_id)
    q = 7
    assert ex.pick("seed1", chair.cloud_id, mv.maps.centers[q]) == q
    v = ex.view("seed1", chair.cloud_id, ViewSettings(mode="query", query=q, show_centers=True, units="raw"))
    assert v.panels[0].highlight.sum() > 0 and "patch 7 → patches" in v.caption
    names = [t.name for t in v.figure.data]
    assert "patch centres" in names and "highlight" in names
    row, to_cls = mv.maps.patch_to_patches(mv.n_layers - 1, "mean", q)
    assert np.allclose(v.panels[0].patch_values, row) and f"{to_cls:.3f}" in v.caption
    with pytest.raises(ExplorerError):
        ex.pick("seed1", chair.cloud_id, ["nan", 0, 0])


def test_local_global_crop_beside_teacher_attention(ex, chair):
    v = ex.view("seed1", chair.cloud_id, ViewSettings(mode="crop", query=5, crop_ratio=0.3, units="raw"))
    crop, teacher = v.panels
    assert crop.highlight.sum() > 0 and (crop.highlight == teacher.highlight).all()
    assert -1.0 <= crop.patch_values.min() and crop.patch_values.max() <= 1.0  # cosine similarities
    assert np.allclose(teacher.patch_values, ex.maps("seed1", chair.cloud_id).maps.cls_to_patches(3, "mean"))


def test_local_global_in_a_comparison_shares_one_cosine_scale(ex, chair):
    v = ex.view("seed1", chair.cloud_id, ViewSettings(mode="crop", query=5), compare=["random-tiny", "shallow"])
    assert len(v.panels) == 3 and all("crop" in p.title for p in v.panels)
    traces = [t for t in v.figure.data if t.name == "points"]
    assert len({(t.marker.cmin, t.marker.cmax) for t in traces}) == 1


@pytest.mark.parametrize("n", [2, 4])
def test_compare_checkpoints_one_scale_one_camera(ex, chair, n):
    others = ["random-tiny", "shallow", "seed1-copy"]
    v = ex.view("seed1", chair.cloud_id, ViewSettings(layer=3, head="5", camera=CAMERA), compare=others[: n - 1])
    assert len(v.panels) == n
    traces = [t for t in v.figure.data if t.name == "points"]
    assert len(traces) == n
    assert len({(t.marker.cmin, t.marker.cmax) for t in traces}) == 1, "panels must share one colour scale"
    scenes = [k for k in v.figure.layout.to_plotly_json() if k.startswith("scene")]
    assert len(scenes) == n
    for k in scenes:
        assert v.figure.layout[k].camera.eye.y == pytest.approx(2.0)
    if n == 4:  # "shallow" has 2 layers and 4 heads: the settings are clipped to what it has
        assert any("shallow: CLS → patches · layer 1 · head 3" in p.title for p in v.panels)


def test_compare_dedups_and_stops_at_four(ex, chair):
    v = ex.view("seed1", chair.cloud_id, ViewSettings(), compare=["random-tiny", "seed1", "random-tiny"])
    assert len(v.panels) == 2
    v = ex.view("seed1", chair.cloud_id, ViewSettings(), compare=["random-tiny", "shallow", "seed1-copy", "mismatch"])
    assert len(v.panels) == 4 and "first 4 of 5" in v.caption


def test_exports(ex, chair, tmp_path):
    from pcdviz import io

    v = ex.view("seed1", chair.cloud_id, ViewSettings(mode="query", query=2, colorscale="Inferno"))
    html = ex.export_html(v)
    text = html.read_text()
    assert "<html" in text[:200] and len(text) > 1_000_000  # plotly.js inlined: opens offline
    assert '<script src="http' not in text
    ply = ex.export_ply(v)
    back = io.load_point_cloud(ply)
    assert len(back) == len(chair.points) and back.colors is not None
    assert back.colors.std() > 0  # attention turned into varied colours
    npz = ex.export_npz(v)
    with np.load(npz, allow_pickle=False) as z:
        assert z["attentions"].shape == (4, 6, 33, 33)
        assert z["panel0_display_values"].shape == (2048,)
        meta = json.loads(str(z["meta_json"]))
    assert meta["settings"]["mode"] == "query" and meta["checkpoints"] == ["seed1"]
    vc = ex.view("seed1", chair.cloud_id, ViewSettings(), compare=["shallow"])
    with np.load(ex.export_npz(vc)) as z:
        assert "ckpt1_attentions" in z and z["ckpt1_attentions"].shape[:2] == (2, 4)


def test_bad_uploads_are_sentences_and_the_explorer_keeps_working(ex, chair, tmp_path):
    rng = np.random.default_rng(0)
    corrupt = tmp_path / "corrupt.ply"
    corrupt.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 1000000\nproperty float x\n"
                        b"property float y\nproperty float z\nend_header\n" + rng.bytes(100))
    empty = tmp_path / "empty.xyz"
    empty.write_bytes(b"")
    nan = _write_xyz(tmp_path / "nan.xyz", np.full((100, 3), np.nan))
    wrong = tmp_path / "notes.docx"
    wrong.write_bytes(b"PK\x03\x04 this is not a point cloud")
    text_as_ply = tmp_path / "readme.ply"
    text_as_ply.write_text("hello, this is not a ply file\n" * 10)
    big = tmp_path / "big.xyz"
    with open(big, "wb") as f:
        f.truncate(201 * 1024**2)  # sparse: no disk used
    few = _write_xyz(tmp_path / "few.xyz", rng.normal(size=(5, 3)))
    for path in (corrupt, empty, nan, wrong, text_as_ply, big, few, tmp_path / "missing.ply", None):
        with pytest.raises(ExplorerError) as e:
            ex.load_upload(path)
        msg = str(e.value)
        assert msg and "Traceback" not in msg and len(msg) < 600, msg
    assert "200 MB" in _msg(ex, big) and "empty" in _msg(ex, empty)
    assert ex.view("seed1", chair.cloud_id).figure.data  # still working


def _msg(ex, path) -> str:
    try:
        ex.load_upload(path)
    except ExplorerError as e:
        return str(e)
    return ""


def test_nan_points_are_dropped_and_counted(ex, tmp_path):
    pts = np.random.default_rng(1).normal(size=(500, 3)).astype(np.float32)
    pts[::50] = np.nan
    c = ex.load_upload(_write_xyz(tmp_path / "some_nan.xyz", pts))
    assert len(c.points) == 490 and c.n_dropped == 10
    assert "non-finite points dropped: 10" in ex.cloud_info_markdown(c)
    again = ex.load_upload(_write_xyz(tmp_path / "copy.xyz", pts))
    assert again is c  # same bytes, same cached cloud


def test_million_point_upload_is_decimated_for_display(ex, tmp_path):
    pts = np.random.default_rng(2).normal(size=(1_000_000, 3)).astype(np.float32)
    path = tmp_path / "million.npy"
    np.save(path, pts)
    c = ex.load_upload(path)
    assert len(c.points) == ex.display_max == 100_000
    assert "decimated 1,000,000 → 100,000" in ex.cloud_info_markdown(c, "seed1")
    v = ex.view("seed1", c.cloud_id)
    t = _points_trace(v.figure)
    assert len(t.x) == 100_000
    assert np.asarray(t.customdata).max() < 32  # hover data is the patch id only (payload: ~17 B/point)
    with np.load(ex.export_npz(v)) as z:  # the export maps displayed points back to the loaded cloud
        assert z["display_source_index"].max() > 100_000 and len(z["display_source_index"]) == 100_000
    grid = ex.view("seed1", c.cloud_id, ViewSettings(mode="heads"))
    assert sum(len(t.x) for t in grid.figure.data if t.name == "points") <= 200_000  # panels share a budget


def test_h5_upload_with_key_and_index(ex, tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "shapes.h5"
    rng = np.random.default_rng(3)
    with h5py.File(path, "w") as f:
        f["data"] = rng.normal(size=(4, 256, 3)).astype(np.float32)
        f["other"] = rng.normal(size=(300, 3)).astype(np.float32)
        f["label"] = np.arange(4)[:, None]
    assert set(ex.upload_keys(path)) == {"data", "other"}
    c0 = ex.load_upload(path)
    assert c0.h5_key == "data" and len(c0.points) == 256
    c2 = ex.load_upload(path, "data", 2)
    assert c2.cloud_id != c0.cloud_id and "sample 2 of 4" in ex.cloud_info_markdown(c2)
    assert len(ex.load_upload(path, "other").points) == 300
    with pytest.raises(ExplorerError, match="out of range"):
        ex.load_upload(path, "data", 9)


def test_unusable_checkpoints_are_sentences(ex, chair, ckpt_dir):
    for name, words in [("corrupt", "cannot be used"), ("mismatch", "cannot be used"),
                        ("../../etc", "no checkpoint called"), ("/etc/passwd", "no checkpoint called")]:
        with pytest.raises(ExplorerError, match=words) as e:
            ex.view(name, chair.cloud_id)
        assert str(ckpt_dir) not in str(e.value)  # no server paths in what strangers read
    assert ex.view("seed1", chair.cloud_id).figure.data


def test_bad_settings_and_ids(ex, chair):
    for kw in [dict(mode="bogus"), dict(head="x"), dict(head="-1"), dict(layer="nan"), dict(query="abc"),
               dict(colorscale="NotAScale"), dict(color_range="?")]:
        with pytest.raises(ExplorerError):
            ViewSettings.parse(**kw)
    assert parse_camera("{not json") is None and parse_camera('{"eye": {"x": 1e9, "y": 0, "z": 0}}') is None
    assert parse_camera(json.dumps(CAMERA))["eye"]["y"] == 2.0
    s = ViewSettings.parse(layer=99, head="42", query=10_000, keep=7, point_size=-3)
    v = ex.view("seed1", chair.cloud_id, s)  # clipped to what the model has
    assert "layer 3" in v.caption and "head 5" in v.caption
    for bad in ["", "nothing/here", "shape/chair/0", "shape/unicorn/0/2048", "shape/chair/0/10",
                "mesh/../../etc/passwd", "upload/0123456789abcdef//0"]:
        with pytest.raises(ExplorerError):
            ex.view("seed1", bad)


def test_without_checkpoints_a_builtin_model_is_shown(tmp_path):
    e = Explorer(tmp_path / "does-not-exist")
    assert e.checkpoint_names() == ["random-tiny (built in)"]
    c = e.load_shape("mug", 1, 1024)
    assert e.view(e.default_checkpoint(), c.cloud_id).figure.data


def test_lru_cache_evicts_and_uploads_must_come_back(ckpt_dir, tmp_path):
    e = Explorer(ckpt_dir, max_clouds=2, max_maps=2)
    pts = np.random.default_rng(4).normal(size=(300, 3))
    up = e.load_upload(_write_xyz(tmp_path / "a.xyz", pts))
    e.load_shape("lamp", 0, 512)
    e.load_shape("vase", 0, 512)
    with pytest.raises(ExplorerError, match="upload the file again"):
        e.cloud(up.cloud_id)
    assert e.cloud("shape/chair/5/512").points.shape == (512, 3)  # shapes are re-made from their id


# --------------------------------------------------------------------------- the launched app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def launched(ckpt_dir):
    """(the Blocks, its URL) of an app launched on loopback for this module."""
    pytest.importorskip("gradio_client")
    from pcdviz.app import build_app, launch

    demo = build_app(Explorer(ckpt_dir))
    port = _free_port()
    launch(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True, max_file_size=2 * 1024**2)
    try:
        yield demo, f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture(scope="module")
def client(launched, ckpt_dir):
    from gradio_client import Client

    return Client(launched[1], verbose=False, download_files=str(ckpt_dir.parent / "downloads"))


ENDPOINTS = ["/view", "/set_mode", "/set_options", "/select_checkpoint", "/load_shape", "/load_mesh", "/load_upload",
             "/refuse_upload", "/pick_point", "/export_html", "/export_ply", "/export_npz"]


def _decode(a) -> np.ndarray:
    """A plotly JSON array: a list, or a typed array {"dtype", "bdata"} (base64)."""
    if isinstance(a, dict) and "bdata" in a:
        out = np.frombuffer(base64.b64decode(a["bdata"]), dtype=np.dtype(a["dtype"]))
        return out.reshape(a["shape"]) if "shape" in a and isinstance(a["shape"], list) else out
    return np.asarray(a)


def _colours(plot) -> np.ndarray:
    fig = json.loads(plot["plot"])
    return _decode([t for t in fig["data"] if t.get("name") == "points"][0]["marker"]["color"])


def _n_scenes(plot) -> int:
    return sum(1 for k in json.loads(plot["plot"])["layout"] if k.startswith("scene"))


def test_app_documents_every_endpoint(client):
    api = client.view_api(print_info=False, return_format="dict")
    assert set(ENDPOINTS) <= set(api["named_endpoints"])


def test_app_loads_every_kind_of_cloud(client, samples_dir):
    from gradio_client import handle_file

    cid, info, plot, status = client.predict(category="guitar", seed=4, n_points=3000, api_name="/load_shape")
    assert cid == "shape/guitar/4/3000" and "3,000 points" in info and len(_colours(plot)) == 3000
    cid, info, plot, status = client.predict(mesh="Bunny.obj", api_name="/load_mesh")
    assert cid == "mesh/Bunny.obj" and "sampled on its surface" in info
    cid, info, keys, plot, status = client.predict(file=handle_file(str(samples_dir / "car6.pcd")), h5_key=None,
                                                   h5_index=0, api_name="/load_upload")
    assert cid.startswith("upload/") and "car6.pcd" in info and "10,031" in info
    assert not status.startswith("⚠️")


def test_app_every_view_mode_and_checkpoint_switch(client):
    cid, *_ = client.predict(category="chair", api_name="/load_shape")
    seen = []
    for mode in MODES:
        plot, status = client.predict(cloud_id=cid, checkpoint="seed1", mode=mode, layer=2, head="1", query=4,
                                      api_name="/view")
        assert not status.startswith("⚠️"), status
        seen.append((mode, _n_scenes(plot)))
    assert dict(seen) == {"cls": 1, "heads": 6, "rollout": 1, "query": 1, "crop": 2, "pca": 1, "similarity": 2}
    a, _ = client.predict(cloud_id=cid, checkpoint="seed1", head="0", api_name="/view")
    b, _ = client.predict(cloud_id=cid, checkpoint="seed1", head="3", api_name="/view")
    assert not np.allclose(_colours(a), _colours(b))
    card, layer, head, query, info, plot, status = client.predict(
        checkpoint="shallow", cloud_id=cid, head="5", query=40, api_name="/select_checkpoint")
    assert "**shallow**" in card and _n_scenes(plot) == 1
    assert layer["maximum"] == layer["value"] == 1 and head["value"] == "mean" and query == 31
    # the update is per session: switch back so later calls in this session may use layer 3 again
    out = client.predict(checkpoint="seed1", cloud_id=cid, layer=1, api_name="/select_checkpoint")
    assert out[1]["maximum"] == 3 and not out[-1].startswith("⚠️")


def test_app_click_picks_query_patch_and_compare(client):
    cid, *_ = client.predict(category="table", api_name="/load_shape")
    query, mode, layer, plot, status = client.predict(click=json.dumps({"x": 0.0, "y": 0.5, "z": 0.0}), cloud_id=cid,
                                                      checkpoint="seed1", mode="cls", api_name="/pick_point")
    assert mode == "query" and isinstance(query, (int, float)) and f"clicked patch {int(query)}" in status
    assert f"layer {int(layer)}" in status   # query mode starts on the layer whose maps depend most on the query
    plot, status = client.predict(cloud_id=cid, checkpoint="seed1", compare=["random-tiny", "shallow"],
                                  camera=json.dumps(CAMERA), api_name="/view")
    fig = json.loads(plot["plot"])
    scenes = [k for k in fig["layout"] if k.startswith("scene")]
    assert len(scenes) == 3 and all(fig["layout"][k]["camera"]["eye"]["y"] == 2.0 for k in scenes)
    *_, status = client.predict(click="not a point", cloud_id=cid, api_name="/pick_point")
    assert status.startswith("⚠️")


def test_app_exports(client, tmp_path):
    from pcdviz import io

    cid, *_ = client.predict(category="bed", api_name="/load_shape")
    for kind in ("html", "ply", "npz"):
        path, status = client.predict(cloud_id=cid, checkpoint="seed1", mode="rollout", api_name=f"/export_{kind}")
        assert Path(path).suffix == f".{kind}" and Path(path).stat().st_size > 1000, status
        if kind == "ply":
            assert len(io.load_point_cloud(path)) == 2048


def test_app_bad_inputs_leave_it_working(client, tmp_path):
    from gradio_client import handle_file

    bad = {
        "corrupt.pcd": b"VERSION .7\nFIELDS x y z\nPOINTS 99999999\nDATA binary\n\x00\x01",
        "empty.ply": b"",
        "nan.xyz": b"nan nan nan\n" * 50,
        "notes.ply": b"this is a text file, not a PLY\n" * 20,
    }
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
        cid, info, keys, plot, status = client.predict(file=handle_file(str(tmp_path / name)), h5_key=None,
                                                       h5_index=0, api_name="/load_upload")
        assert status.startswith("⚠️") and name in status and "Traceback" not in status, status
    (tmp_path / "virus.exe").write_bytes(b"MZ\x90\x00" * 100)  # refused by the upload component itself
    with pytest.raises(Exception, match="Invalid file type"):
        client.predict(file=handle_file(str(tmp_path / "virus.exe")), h5_key=None, h5_index=0, api_name="/load_upload")
    too_big = tmp_path / "too_big.xyz"  # this test server caps uploads at 2 MB
    too_big.write_bytes(b"0 0 0\n" * 600_000)
    with pytest.raises(Exception, match="maximum file size"):
        client.predict(file=handle_file(str(too_big)), h5_key=None, h5_index=0, api_name="/load_upload")
    for name in ("corrupt", "mismatch"):
        out = client.predict(checkpoint=name, cloud_id="shape/chair/0/2048", api_name="/select_checkpoint")
        assert out[-1].startswith("⚠️") and "cannot be used" in out[-1]
    _, status = client.predict(cloud_id="upload/ffffffffffffffff//0", checkpoint="seed1", api_name="/view")
    assert status.startswith("⚠️") and "upload the file again" in status
    _, status = client.predict(cloud_id="shape/chair/0/2048", checkpoint="seed1", mode="cls", layer=1,
                               camera="}{", api_name="/view")
    assert not status.startswith("⚠️")  # a garbled camera is ignored; the app still answers


def test_the_shipped_app_opens_on_the_full_method():
    shipped = Path(__file__).resolve().parents[1] / "checkpoints"
    ex = Explorer(shipped)
    assert {"dwc-tiny", "dino-tiny", "random-tiny"} <= set(ex.usable_checkpoints())
    assert ex.default_checkpoint() == "dwc-tiny"


def test_app_session_state_does_not_grow_with_requests(launched, tmp_path):
    """Gradio keeps one more copy of a component in the session's state for every property update it
    answers, for as long as the session lives; the app sends one only when the session's layer range, head
    list or HDF5 dataset list really changes (or is not known yet), so uploads, views and switches of like
    checkpoints or of the datasets of one file add nothing."""
    import h5py
    from gradio_client import Client, handle_file

    demo, url = launched
    c = Client(url, verbose=False, download_files=False)
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["data"] = rng.normal(size=(2, 256, 3)).astype(np.float32)
        f["other"] = rng.normal(size=(300, 3)).astype(np.float32)

    def upload(path, key=None):
        cid, _, keys, _, status = c.predict(file=handle_file(str(path)), h5_key=key, h5_index=0,
                                            checkpoint="seed1", api_name="/load_upload")
        assert not status.startswith("⚠️"), status
        return cid, keys

    def switch(ckpt, cid):
        out = c.predict(checkpoint=ckpt, cloud_id=cid, api_name="/select_checkpoint")
        assert not out[-1].startswith("⚠️"), out
        return out

    def xyz(i):
        return _write_xyz(tmp_path / f"r{i}.xyz", rng.normal(size=(300, 3)))

    cid, keys = upload(xyz(0))              # a new session: what the page offers is not known, so an update
    assert keys["choices"] == [] and keys["value"] is None
    assert upload(xyz(1))[1] is None        # known now and the same: a plain value
    _, keys = upload(tmp_path / "two.h5")   # the list changes: an update offering both
    assert sorted(k for k, _ in keys["choices"]) == ["data", "other"] and keys["value"] == "data"
    _, keys = upload(xyz(2))                # and back: an update clearing it
    assert keys["choices"] == [] and keys["value"] is None
    first = switch("seed1-copy", cid)       # the first switch of a session updates the layer range and heads
    assert first[1]["maximum"] == 3 and first[1]["value"] == 3 and first[2]["value"] == "mean", first
    upload(tmp_path / "two.h5")
    upload(tmp_path / "two.h5", "other")    # the first event that reads an updated component stores its copy
    state = demo.state_holder.session_data[c.session_hash]
    size = len(state.blocks_config.blocks)
    for i in range(3):
        for key in ("other", "data"):       # datasets of the same file: same list, plain values
            assert upload(tmp_path / "two.h5", key)[1] == key
        for ckpt in ("seed1", "seed1-copy"):  # same depth and heads: plain values
            out = switch(ckpt, cid)
            assert out[1] == 3 and out[2] == "mean", out
        c.predict(cloud_id=cid, checkpoint="seed1", mode="heads", api_name="/view")
    assert len(state.blocks_config.blocks) == size
    for i in range(3, 6):                   # once the list is empty, uploads of clouds add nothing either
        assert upload(xyz(i))[1] is None or i == 3
    size = len(state.blocks_config.blocks)
    for i in range(6, 9):
        assert upload(xyz(i))[1] is None
    assert len(state.blocks_config.blocks) == size


def test_app_keeps_at_most_max_sessions_and_an_evicted_session_goes_on(ckpt_dir, tmp_path):
    """Gradio keeps a session's state (~230 KB, and the last figure it was sent) until it is evicted; the app
    caps the sessions kept. A session whose state went gets correct answers on its next events (updates,
    since what its page offers is no longer known)."""
    pytest.importorskip("gradio_client")
    from gradio_client import Client

    from pcdviz.app import build_app, launch

    demo = build_app(Explorer(ckpt_dir))
    port = _free_port()
    launch(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True, max_sessions=3)
    try:
        clients = [Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False) for _ in range(6)]
        cids = [c.predict(category="mug", seed=i, n_points=512, api_name="/load_shape")[0]
                for i, c in enumerate(clients)]
        for c, cid in zip(clients, cids):
            out = c.predict(checkpoint="seed1-copy", cloud_id=cid, api_name="/select_checkpoint")
            assert out[1]["maximum"] == 3 and not out[-1].startswith("⚠️"), out
            assert len(demo.state_holder.session_data) <= 3
        first = clients[0]                  # evicted long ago: its next events work
        assert first.session_hash not in demo.state_holder.session_data
        plot, status = first.predict(cloud_id=cids[0], checkpoint="seed1", mode="query", query=2,
                                     api_name="/view")
        assert status.startswith("patch 2 → patches"), status
        out = first.predict(checkpoint="seed1", cloud_id=cids[0], api_name="/select_checkpoint")
        assert out[1]["maximum"] == 3 and not out[-1].startswith("⚠️"), out
        assert len(demo.state_holder.session_data) <= 3
    finally:
        demo.close()


def test_gradio_keeps_few_event_records_and_never_summarises_them(launched, client):
    """Gradio's queue summarises its last 10,000 event records in a pandas DataFrame after every event (for a
    monitoring page); the app turns that off through Gradio's environment settings (pcdviz/app.py)."""
    demo, _ = launched
    cid = client.predict(category="mug", seed=0, n_points=512, api_name="/load_shape")[0]
    for head in ("0", "1", "max"):
        client.predict(cloud_id=cid, checkpoint="seed1", head=head, api_name="/view")
    q = demo._queue
    assert q.events_recorded >= 4 and len(q.event_analytics) <= 100
    assert q.cached_event_analytics_summary == {"functions": {}}   # never computed
