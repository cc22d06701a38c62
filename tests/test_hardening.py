"""Hostile input beyond the fuzzer: regression tests for the bugs it found, hostile checkpoint names and
safetensors headers, and a launched app fed damaged uploads that must leave it working.

The fuzzer itself is tests/test_fuzz.py; the many-users load test is tests/test_load.py.
"""
from __future__ import annotations

import io as _io
import json
import random
import shutil
import socket
import struct
import time
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcdviz.checkpoints import CheckpointError, check_safetensors_header, load_checkpoint, save_checkpoint, scan_checkpoints
from pcdviz.explorer import Explorer, ExplorerError
from pcdviz.io import PointCloudError, load_point_cloud
from pcdviz.model import PointViT, preset

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(n_points=128, n_groups=8, group_size=16, width=24, depth=2, n_heads=2, embed_dims=(8, 16), pos_hidden=16)


def refused(path, *fragments, **kw) -> str:
    """The PointCloudError message for path; it must be a deliberate sentence, not a wrapped internal error."""
    with pytest.raises(PointCloudError) as e:
        load_point_cloud(path, **kw)
    msg = str(e.value)
    assert e.value.__cause__ is None, f"wrapped {type(e.value.__cause__).__name__}: {msg}"
    for frag in fragments:
        assert frag in msg, msg
    return msg


def peak_allocation(fn) -> int:
    """Peak bytes allocated (Python and numpy buffers) while fn runs."""
    tracemalloc.start()
    try:
        fn()
    except (PointCloudError, CheckpointError):
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


# --------------------------------------------------------------------------- bugs the fuzzer found (pcdviz.io)


def test_reading_files_leaves_the_process_wide_warning_filters_alone(tmp_path, monkeypatch):
    """The text parsers used to turn warnings into errors around each parse (warnings.catch_warnings with
    simplefilter("error")): the filters are process-wide, so in the threaded server other threads' warnings
    raised meanwhile (Gradio's queue bookkeeping failed on thousands of events), and two overlapping parses
    could leave them set to "error" for good."""
    calls = []
    for name in ("catch_warnings", "simplefilter", "filterwarnings", "resetwarnings"):
        real = getattr(warnings, name)
        monkeypatch.setattr(warnings, name, lambda *a, _n=name, _f=real, **k: calls.append(_n) or _f(*a, **k))
    rng = np.random.default_rng(0)
    files = {"good.xyz": "\n".join(" ".join(f"{v:.4f}" for v in p) for p in rng.normal(size=(50, 3))),
             "bad.xyz": "0 0 0\n1 2 x\n" * 20,
             "bad.off": "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 zz\n3 0 1 2\n",
             "good.obj": "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        try:
            load_point_cloud(tmp_path / name)
        except PointCloudError:
            assert name.startswith("bad")
    assert not calls


def test_coordinates_beyond_float32_are_dropped_not_loaded_as_inf(tmp_path):
    """csv fuzz case 'number=9e39': finite in float64, infinite as float32; such points are dropped and counted."""
    pts = np.random.default_rng(0).normal(size=(40, 3))
    rows = [",".join(f"{v:.6g}" for v in p) for p in pts]
    rows[3] = "1e39,0,0"
    (tmp_path / "big.csv").write_text("\n".join(rows) + "\n")
    c = load_point_cloud(tmp_path / "big.csv")
    assert len(c) == 39 and c.n_dropped == 1 and np.isfinite(c.points).all()
    (tmp_path / "all.xyz").write_text("1e39 1e39 1e39\n" * 20)
    refused(tmp_path / "all.xyz", "non-finite")


def test_stl_vertices_beyond_float32_give_no_inf_samples(tmp_path):
    """stl_ascii fuzz case: a vertex at 1e39 made sampled points infinite; those faces are now skipped."""
    tri = ["facet normal 0 0 1\nouter loop\n" + "".join(f"vertex {x} {y} 0\n" for x, y in t) + "endloop\nendfacet\n"
           for t in [((0, 0), (1, 0), (0, 1)), ((1, 0), (1, 1), (0, 1)), ((1e39, 0), (1, 1), (0, 1))]]
    (tmp_path / "m.stl").write_text("solid m\n" + "".join(tri) + "endsolid m\n")
    c = load_point_cloud(tmp_path / "m.stl", mesh_samples=500)
    assert np.isfinite(c.points).all()


@pytest.mark.parametrize("name, content, fragment", [
    ("bad_count.pcd", b"VERSION .7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 x\nPOINTS 3\nDATA ascii\n", "COUNT"),
    ("bad_points.pcd", b"VERSION .7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nPOINTS -5\nDATA ascii\n1 2 3\n", "POINTS"),
    ("bad_width.pcd", b"VERSION .7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nWIDTH 1e309\nDATA ascii\n", "WIDTH"),
    ("bad_list.ply", b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
                     b"element face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 0\nnan 0 1 2\n",
     "list length"),
    ("bad_row.ply", b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\n"
                    b"end_header\n0 0 \x00\xff\n1 1 1\n", "not a number"),
    ("bad_face.off", b"OFF\n4 1 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 1 1e309\n", "whole number"),
    ("inf_face.off", b"OFF\n4 2 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 1 -inf\n3 0 1 2\n", "whole number"),
    ("bad_header.npy", b"\x93NUMPY\x01\x00\x20\x00{'descr': '<f4', 'shape': (5, 3}  \n", "header is damaged"),
    ("negative.npy", b"\x93NUMPY\x01\x00\x46\x00" + b"{'descr': '<f4', 'fortran_order': False, 'shape': (-3, 3), }".ljust(69)
     + b"\n", "negative shape"),                                      # long fuzz run: 'number=-3'
    ("long_header.npy", b"\x93NUMPY\x02\x00" + (700_000_000).to_bytes(4, "little") + b"{}", "byte header"),  # 669 MB
    ("count0.pcd", b"VERSION .7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 0\nPOINTS 1\nDATA ascii\n1 2\n", "COUNT"),
])
def test_damaged_headers_are_sentences_not_wrapped_errors(tmp_path, name, content, fragment):
    """Fuzz cases that used to reach load_point_cloud's catch-all (ValueError, OverflowError, TokenError)."""
    (tmp_path / name).write_bytes(content)
    refused(tmp_path / name, fragment)


def test_damaged_zip_and_hdf5_structures_are_sentences(tmp_path):
    """npz with a bad CRC / local header and an HDF5 file with a damaged symbol table: clear refusals."""
    buf = _io.BytesIO()
    np.savez(buf, points=np.random.default_rng(0).normal(size=(50, 3)))
    blob = bytearray(buf.getvalue())
    blob[blob.find(b"\x93NUMPY") + 300] ^= 0xFF  # inside the member's data: the CRC check fails when it is read
    (tmp_path / "crc.npz").write_bytes(bytes(blob))
    refused(tmp_path / "crc.npz", "ZIP archive is damaged")
    with h5py.File(tmp_path / "ok.h5", "w") as f:
        f["data"] = np.random.default_rng(1).normal(size=(2, 32, 3))
        f["label"] = np.array([[1], [2]])
    blob = bytearray((tmp_path / "ok.h5").read_bytes())
    i = blob.find(b"SNOD")
    blob[i:i + 4] = b"XXXX"  # the symbol table node's signature
    (tmp_path / "bad.h5").write_bytes(bytes(blob))
    refused(tmp_path / "bad.h5", "HDF5 file is damaged")


@pytest.mark.parametrize("field, value, detail", [(10, 99, "compression method"),   # central directory offsets
                                                   (6, 127, "zip file version")])
def test_npz_members_zipfile_cannot_open_are_sentences(tmp_path, field, value, detail):
    """Long fuzz run (20,025 cases, 2026-12-01): a damaged npz whose central directory names an unknown
    compression method or a 'version needed' beyond zipfile's reached the catch-all (NotImplementedError)."""
    buf = _io.BytesIO()
    np.savez(buf, points=np.random.default_rng(0).normal(size=(50, 3)))
    blob = bytearray(buf.getvalue())
    cd = blob.find(b"PK\x01\x02")
    blob[cd + field:cd + field + 2] = value.to_bytes(2, "little")
    (tmp_path / "odd.npz").write_bytes(bytes(blob))
    refused(tmp_path / "odd.npz", "ZIP archive", detail)


def test_hdf5_external_storage_and_virtual_datasets_are_refused(tmp_path):
    """An uploaded HDF5 file must not make the server read another of its files (found by the h5 layouts fuzz)."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(bytes(range(192)))
    with h5py.File(tmp_path / "ext.h5", "w") as f:
        f.create_dataset("data", shape=(64, 3), dtype="u1", external=[(str(secret), 0, 192)])
    refused(tmp_path / "ext.h5", "another file")
    with h5py.File(tmp_path / "src.h5", "w") as f:
        f["data"] = np.random.default_rng(2).normal(size=(64, 3))
    layout = h5py.VirtualLayout(shape=(64, 3), dtype="f8")
    layout[:] = h5py.VirtualSource(str(tmp_path / "src.h5"), "data", shape=(64, 3))
    with h5py.File(tmp_path / "vds.h5", "w") as f:
        f.create_virtual_dataset("data", layout)
    refused(tmp_path / "vds.h5", "another file")
    with pytest.raises(ExplorerError, match="another file"):
        Explorer(None).load_upload(tmp_path / "ext.h5")


def test_hdf5_and_npz_absurd_declared_sizes_allocate_nothing(tmp_path):
    """A (1, 64, 10^9) HDF5 sample tried to allocate 256 GB; an npz member declaring 10^12 points likewise."""
    with h5py.File(tmp_path / "cols.h5", "w") as f:
        f.create_dataset("data", shape=(1, 64, 10**9), dtype="f4")   # contiguous, never written: a tiny file
    peak = peak_allocation(lambda: refused(tmp_path / "cols.h5", "more than the limit"))
    assert peak < 16 * 1024**2
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1000, 1000000000, 3), }"
    member = b"\x93NUMPY\x01\x00" + struct.pack("<H", 118) + header.ljust(117).encode() + b"\n" + b"\0" * 64
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("points.npy", member)
    peak = peak_allocation(lambda: refused(tmp_path / "bomb.npz", "damaged", "points"))
    assert peak < 16 * 1024**2


def test_hdf5_reads_spanning_a_million_chunks_are_refused_at_once(tmp_path):
    """A 1.4 KB file declaring 10^6 unwritten (1, 3) chunks took 10 s to read (fuzz: huge_declared, size 6)."""
    with h5py.File(tmp_path / "chunks.h5", "w") as f:
        f.create_dataset("data", shape=(10**6, 3), dtype="f4", chunks=(1, 3))
    t = time.perf_counter()
    refused(tmp_path / "chunks.h5", "1,000,000 chunks")
    assert time.perf_counter() - t < 1.0
    with h5py.File(tmp_path / "ok.h5", "w") as f:   # ModelNet40's layout with per-sample chunks still loads
        f.create_dataset("data", data=np.random.default_rng(0).normal(size=(4, 2048, 3)).astype("f4"), chunks=(1, 2048, 3))
    assert len(load_point_cloud(tmp_path / "ok.h5", h5_index=3)) == 2048


def test_compressed_pcd_decoding_is_bounded(tmp_path):
    """binary_compressed may expand ~88x: the decoded size is checked against 4 x max_bytes before allocating."""
    n = 20_000
    head = (f"VERSION .7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH {n}\nHEIGHT 1\nPOINTS {n}\n"
            f"DATA binary_compressed\n").encode()
    raw_size = n * 12
    comp = b"\x00\x00" * (raw_size // 90 + 1)  # enough claimed input for the 90x plausibility check
    (tmp_path / "z.pcd").write_bytes(head + struct.pack("<II", len(comp), raw_size) + comp)
    refused(tmp_path / "z.pcd", "decompress", max_bytes=40_000)  # limit 160 KB < 240 KB decoded


@pytest.mark.parametrize("uri", ["../secret.bin", "/etc/passwd", "file:///etc/passwd", "sub/../../secret.bin"])
def test_gltf_buffers_outside_the_models_folder_are_refused(tmp_path, uri):
    """A .gltf/.glb naming '../secret.bin' made open3d read that file (path traversal through the upload)."""
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], "<f4").tobytes()
    (tmp_path / "secret.bin").write_bytes(verts)
    doc = {"asset": {"version": "2.0"}, "buffers": [{"byteLength": 36, "uri": uri}],
           "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
           "bufferViews": [{"buffer": 0, "byteLength": 36}],
           "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3"}]}
    folder = tmp_path / "upload"
    folder.mkdir()
    (folder / "m.gltf").write_text(json.dumps(doc))
    refused(folder / "m.gltf", "outside its own folder")
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    glb = struct.pack("<4sII", b"glTF", 2, 20 + len(js)) + struct.pack("<I4s", len(js), b"JSON") + js
    (folder / "m.glb").write_bytes(glb)
    refused(folder / "m.glb", "outside its own folder")


def test_gltf_buffer_beside_the_model_still_loads(tmp_path):
    """The URI check keeps the legitimate layout: a .gltf with its .bin next to it."""
    gradio_assets = pytest.importorskip("pcdviz.explorer").gradio_assets_dir()
    if gradio_assets is None or not (gradio_assets / "Fox.gltf").is_file():
        pytest.skip("Gradio's Fox.gltf is not installed")
    assert len(load_point_cloud(gradio_assets / "Fox.gltf")) > 1000


# --------------------------------------------------------------------------- hostile checkpoints


@pytest.fixture(scope="module")
def ckpt_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ckpts")
    torch.manual_seed(0)
    save_checkpoint(root / "good", PointViT(preset("tiny", **SMALL)), {"method": "random"})
    outside = tmp_path_factory.mktemp("outside")
    save_checkpoint(outside / "elsewhere", PointViT(preset("tiny", **SMALL)), {"method": "random"})
    return root


def test_checkpoint_names_outside_the_scan_are_refused(ckpt_root):
    """Only names scan_checkpoints found may be loaded: traversal, absolute paths (even to a valid checkpoint)."""
    ex = Explorer(ckpt_root)
    assert ex.usable_checkpoints() == ["good"]
    elsewhere = str(next(ckpt_root.parent.glob("outside*")) / "elsewhere")
    for name in ["../../etc", "/etc", "/etc/passwd", "..", ".", "good/..", "good/../good", "./good", "good/",
                 elsewhere, str(ckpt_root / "good"), "good\x00", "x" * 10_000, None, 42]:
        with pytest.raises(ExplorerError, match="no checkpoint called"):
            ex.model(name)
        with pytest.raises(ExplorerError):
            ex.view(name, "shape/chair/0/512")
    assert "good" in ex.checkpoint_card_markdown("good") and "no checkpoint" in ex.checkpoint_card_markdown("../x")


def _write_header(path: Path, header, data: bytes = b"") -> Path:
    blob = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)
    return path


CRAFTED_HEADERS = {
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    "a list": [1, 2, 3],
    "huge shape": {"w": {"dtype": "F32", "shape": [10**6, 10**6], "data_offsets": [0, 4 * 10**12]}},
    "huge shape, small offsets": {"w": {"dtype": "F32", "shape": [10**9, 10**3], "data_offsets": [0, 16]}},
    "negative offset": {"w": {"dtype": "F32", "shape": [4], "data_offsets": [-16, 0]}},
    "reversed offsets": {"w": {"dtype": "F32", "shape": [4], "data_offsets": [16, 0]}},
    "float offsets": {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0.0, 16.0]}},
    "bool in shape": {"w": {"dtype": "F32", "shape": [True, 4], "data_offsets": [0, 16]}},
    "negative shape": {"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}},
    "unknown dtype": {"w": {"dtype": "F8", "shape": [4], "data_offsets": [0, 16]}},
    "object dtype": {"w": {"dtype": {"pickle": True}, "shape": [4], "data_offsets": [0, 16]}},
    "overlap": {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}},
    "extra key": {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16], "pickle": "x"}},
    "metadata not strings": {"__metadata__": {"a": 1}},
}


@pytest.mark.parametrize("what", sorted(CRAFTED_HEADERS))
def test_crafted_safetensors_headers_are_refused_without_allocating(tmp_path, what):
    """Huge declared sizes, overlaps, wrong dtypes, deep nesting: a CheckpointError, nothing big allocated."""
    path = _write_header(tmp_path / "model.safetensors", CRAFTED_HEADERS[what], b"\0" * 32)
    t0 = time.perf_counter()
    peak = peak_allocation(lambda: check_safetensors_header(path))
    assert time.perf_counter() - t0 < 5 and peak < 8 * 1024**2
    with pytest.raises(CheckpointError):
        check_safetensors_header(path)


@settings(max_examples=150, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_mutated_safetensors_headers_load_or_refuse(ckpt_root, data):
    """Random edits of a real checkpoint's header values: load_checkpoint loads it or says CheckpointError."""
    src = ckpt_root / "good" / "model.safetensors"
    blob = src.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    header, body = json.loads(blob[8:8 + n]), blob[8 + n:]
    names = sorted(k for k in header if k != "__metadata__")
    name = data.draw(st.sampled_from(names))
    field = data.draw(st.sampled_from(["dtype", "shape", "data_offsets"]))
    absurd = st.one_of(st.integers(-2**64, 2**64), st.sampled_from([0, 1, 10**12, 2**63, -1]),
                       st.floats(allow_nan=True), st.text(max_size=4), st.none())
    value = data.draw({"dtype": st.sampled_from(["F32", "F16", "BF16", "I64", "U8", "BOOL", "F64", "STR", "", 7]),
                       "shape": st.lists(absurd, max_size=4),
                       "data_offsets": st.lists(absurd, min_size=0, max_size=3)}[field])
    header[name][field] = value
    folder = ckpt_root.parent / "mutated"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(ckpt_root / "good", folder)
    _write_header(folder / "model.safetensors", json.loads(json.dumps(header)), body)
    try:
        load_checkpoint(folder)
    except CheckpointError as e:
        assert str(e)
    shutil.rmtree(folder, ignore_errors=True)


def test_a_broken_card_does_not_hide_the_other_checkpoints(ckpt_root, tmp_path):
    """config.json of '[[[[...' raised RecursionError out of scan_checkpoints: every checkpoint vanished."""
    root = tmp_path / "ckpts"
    shutil.copytree(ckpt_root / "good", root / "good")
    (root / "nested").mkdir()
    (root / "nested" / "config.json").write_text("[" * 100_000)
    found = {i.name: i.error for i in scan_checkpoints(root)}
    assert found["good"] is None and "nested too deeply" in found["nested"]
    ex = Explorer(root)
    assert ex.usable_checkpoints() == ["good"] and not ex.scan_error


# --------------------------------------------------------------------------- the launched app


@pytest.fixture(scope="module")
def app_client(ckpt_root):
    pytest.importorskip("gradio_client")
    from gradio_client import Client

    from pcdviz.app import build_app, launch

    shutil.copytree(REPO / "checkpoints" / "random-tiny", ckpt_root / "random-tiny", dirs_exist_ok=True)
    demo = build_app(Explorer(ckpt_root))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    launch(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
    finally:
        demo.close()


def _hostile_uploads(folder: Path, n: int) -> list[Path]:
    """n damaged files of every format the fuzzer knows (fixed seed), plus hand-made hostile ones."""
    from test_fuzz import SEEDS, seed_bytes

    rng = random.Random(6)
    out = []
    for i in range(n):
        fmt = sorted(SEEDS)[i % len(SEEDS)]
        data = bytearray(seed_bytes(fmt))
        cut = rng.randrange(len(data))
        how = i // len(SEEDS) % 3
        if how == 0:
            data = data[:cut]                                                   # truncated
        elif how == 1:
            data[cut:cut + 8] = bytes(rng.randrange(256) for _ in range(8))     # random bytes
        else:
            data = bytearray(bytes(data).replace(b"40", b"4000000000000", 2).replace(b"64", b"-1", 2))  # counts
        out.append(folder / f"bad{i:02d}_{fmt}{SEEDS[fmt][0]}")
        out[-1].write_bytes(bytes(data))
    secret = folder / "secret.bin"
    secret.write_bytes(bytes(range(192)))
    with h5py.File(folder / "external.h5", "w") as f:
        f.create_dataset("data", shape=(64, 3), dtype="u1", external=[(str(secret), 0, 192)])
    doc = {"asset": {"version": "2.0"}, "buffers": [{"byteLength": 36, "uri": "/etc/passwd"}]}
    (folder / "traversal.gltf").write_text(json.dumps(doc))
    (folder / "deep.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1000000000000\nproperty float x\n"
                                      b"property float y\nproperty float z\nend_header\n0 0 0\n")
    return out + [folder / "external.h5", folder / "traversal.gltf", folder / "deep.ply"]


def test_bad_uploads_leave_the_session_and_the_server_working(app_client, tmp_path):
    """40 damaged uploads through the running app: each is a loaded cloud or a sentence; the app still works."""
    from gradio_client import handle_file

    cid0, *_ = app_client.predict(category="chair", api_name="/load_shape")
    outcomes = {"loaded": 0, "refused": 0}
    for path in _hostile_uploads(tmp_path, 40):
        cid, info, keys, plot, status = app_client.predict(file=handle_file(str(path)), h5_key=None, h5_index=0,
                                                           api_name="/load_upload")
        assert "Traceback" not in status and "Something went wrong" not in status, status
        if status.startswith("⚠️"):
            assert path.name in status, status
            outcomes["refused"] += 1
        else:
            assert cid.startswith("upload/"), (path.name, cid)
            outcomes["loaded"] += 1
        # the same session still draws its previous cloud
        _, vstatus = app_client.predict(cloud_id=cid0, checkpoint="good", mode="heads", api_name="/view")
        assert not vstatus.startswith("⚠️"), vstatus
    assert outcomes["refused"] >= 30, outcomes
    good = tmp_path / "good.xyz"
    np.savetxt(good, np.random.default_rng(0).normal(size=(500, 3)))
    cid, info, keys, plot, status = app_client.predict(file=handle_file(str(good)), h5_key=None, h5_index=0,
                                                       api_name="/load_upload")
    assert not status.startswith("⚠️") and "500 points" in info


def test_hostile_checkpoint_names_through_the_app(app_client):
    """/select_checkpoint and /view with traversal and absolute names: refused (by Gradio or by the app)."""
    for name in ["../../etc", "/etc/passwd", str(REPO / "checkpoints" / "dwc-tiny"), "good/.."]:
        try:
            out = app_client.predict(checkpoint=name, cloud_id="shape/chair/0/2048", api_name="/select_checkpoint")
            assert out[-1].startswith("⚠️"), out[-1]
        except Exception as e:  # Gradio itself refuses a value that is not one of the dropdown's choices
            assert "not in" in str(e) or "choices" in str(e) or "Error" in type(e).__name__, e
        try:
            _, status = app_client.predict(cloud_id="shape/chair/0/2048", checkpoint=name, api_name="/view")
            assert status.startswith("⚠️"), status
        except Exception as e:
            assert "not in" in str(e) or "choices" in str(e) or "Error" in type(e).__name__, e
    _, status = app_client.predict(cloud_id="shape/chair/0/2048", checkpoint="good", api_name="/view")
    assert not status.startswith("⚠️"), status
