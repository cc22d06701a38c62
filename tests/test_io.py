"""pcdviz.io: every format round-trips, the real samples load, every bad input gives a helpful PointCloudError."""
from __future__ import annotations

import struct
import sys
import time
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest

from pcdviz import io as pio
from pcdviz.io import (MIN_POINTS, PointCloud, PointCloudError, decimate_for_display, h5_datasets,
                       load_point_cloud, normalize, resample, save_ply)

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "samples"


def _gradio_models() -> Path | None:
    try:
        import gradio
    except Exception:
        return None
    d = Path(gradio.__file__).parent / "media_assets" / "models3d"
    return d if d.is_dir() else None


def cloud(n=200, seed=0) -> np.ndarray:
    """Random float32 points with a non-trivial extent."""
    return (np.random.default_rng(seed).normal(size=(n, 3)) * [1.0, 2.0, 0.5]).astype(np.float32)


def unit_normals(n=200, seed=1) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, 3))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Writers used by the tests (independent of pcdviz.io)

_PLY_CODES = {"float": "f4", "double": "f8", "uchar": "u1", "int": "i4", "short": "i2", "ushort": "u2", "uint": "u4"}


def write_ply(path, vertex: list[tuple[str, str, np.ndarray]], faces=None, fmt="binary_little_endian",
              face_colors=False):
    """vertex: [(name, ply type, values)]; faces: list of index lists (uchar count, int indices)."""
    lines = ["ply", f"format {fmt} 1.0", "comment test", f"element vertex {len(vertex[0][2])}"]
    lines += [f"property {t} {n}" for n, t, _ in vertex]
    if faces is not None:
        lines += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
        if face_colors:
            lines += ["property uchar red", "property uchar green", "property uchar blue"]
    lines.append("end_header")
    out = ("\n".join(lines) + "\n").encode()
    n = len(vertex[0][2])
    if fmt == "ascii":
        rows = []
        for i in range(n):
            rows.append(" ".join(repr(float(v[i])) if t in ("float", "double") else str(int(v[i])) for _, t, v in vertex))
        for f in faces or []:
            rows.append(" ".join(map(str, [len(f), *f] + ([10, 20, 30] if face_colors else []))))
        out += ("\n".join(rows) + "\n").encode()
    else:
        bo = "<" if fmt == "binary_little_endian" else ">"
        rec = np.empty(n, dtype=[(nm, bo + _PLY_CODES[t]) for nm, t, _ in vertex])
        for nm, _, v in vertex:
            rec[nm] = v
        out += rec.tobytes()
        for f in faces or []:
            out += struct.pack(bo + "B" + "i" * len(f), len(f), *f)
            if face_colors:
                out += bytes([10, 20, 30])
    Path(path).write_bytes(out)


def lzf_compress(data: bytes, literal_only=False) -> bytes:
    """A small greedy LZF compressor (liblzf format) so tests can write binary_compressed PCD."""
    out, lit, i, table, n = bytearray(), bytearray(), 0, {}, len(data)

    def flush():
        while lit:
            chunk = lit[:32]
            out.append(len(chunk) - 1)
            out.extend(chunk)
            del lit[:32]

    while i < n:
        if not literal_only and i + 2 < n:
            key = data[i:i + 3]
            ref = table.get(key)
            table[key] = i
            if ref is not None and i - ref - 1 < 8192:
                length, maxlen = 3, min(264, n - i)
                while length < maxlen and data[ref + length] == data[i + length]:
                    length += 1
                flush()
                off, L = i - ref - 1, length - 2
                if L < 7:
                    out.append((L << 5) | (off >> 8))
                else:
                    out += bytes([(7 << 5) | (off >> 8), L - 7])
                out.append(off & 0xFF)
                i += length
                continue
        lit.append(data[i])
        i += 1
    flush()
    return bytes(out)


def write_pcd(path, fields: list[tuple[str, str, int, np.ndarray]], mode="binary", literal_only=False, nan_rows=0):
    """fields: [(name, TYPE letter, SIZE, values (N,) )]; mode ascii | binary | binary_compressed."""
    n = len(fields[0][3])
    dt = np.dtype([(nm, "<" + {"F": "f", "U": "u", "I": "i"}[t] + str(s)) for nm, t, s, _ in fields])
    rec = np.empty(n, dtype=dt)
    for nm, _, _, v in fields:
        rec[nm] = v
    head = ("# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\n"
            f"FIELDS {' '.join(f[0] for f in fields)}\nSIZE {' '.join(str(f[2]) for f in fields)}\n"
            f"TYPE {' '.join(f[1] for f in fields)}\nCOUNT {' '.join('1' for _ in fields)}\n"
            f"WIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {mode}\n").encode()
    if mode == "ascii":
        rows = [" ".join(repr(float(rec[nm][i])) if t == "F" else str(int(rec[nm][i])) for nm, t, _, _ in fields)
                for i in range(n)]
        body = ("\n".join(rows) + "\n").encode()
    elif mode == "binary":
        body = rec.tobytes()
    else:
        raw = b"".join(np.ascontiguousarray(rec[nm]).tobytes() for nm, _, _, _ in fields)
        comp = lzf_compress(raw, literal_only)
        body = struct.pack("<II", len(comp), len(raw)) + comp
    Path(path).write_bytes(head + body)


def pack_rgb_float(rgb_u8: np.ndarray) -> np.ndarray:
    v = (rgb_u8[:, 0].astype(np.uint32) << 16) | (rgb_u8[:, 1].astype(np.uint32) << 8) | rgb_u8[:, 2]
    return v.view(np.float32)


def box_mesh(sx=2.0, sy=1.0, sz=1.0):
    """A closed box as 6 quads (one face split into two triangles, so polygons are mixed)."""
    v = np.array([[x, y, z] for x in (0, sx) for y in (0, sy) for z in (0, sz)], dtype=np.float64)
    quads = [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4]]
    tris = [[1, 5, 7], [1, 7, 3]]  # the x..z face at z = sz as two triangles
    return v - v.mean(0), quads + tris


def check_on_box(c: PointCloud, half=(1.0, 0.5, 0.5)):
    """Every sampled point lies on the box surface and its normal is an axis."""
    d = np.abs(np.abs(c.points) - np.asarray(half, dtype=np.float32))
    assert np.all(d.min(axis=1) < 1e-5)
    assert np.allclose(np.abs(c.normals).max(axis=1), 1.0, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# PLY

@pytest.mark.parametrize("binary", [True, False])
def test_save_ply_round_trip_with_colours_normals_scalar(tmp_path, binary):
    pts, nrm = cloud(300), unit_normals(300)
    col = np.random.default_rng(2).random((300, 3)).astype(np.float32)
    att = np.linspace(0, 1, 300, dtype=np.float32)
    p = tmp_path / "out.ply"
    save_ply(p, pts, col, scalar=att, binary=binary, normals=nrm)
    header = p.read_bytes().split(b"end_header")[0].decode()
    assert "property float attention" in header and "property uchar red" in header
    c = load_point_cloud(p)
    assert len(c) == 300 and c.points.dtype == np.float32
    assert np.array_equal(c.points, pts) if binary else np.allclose(c.points, pts, rtol=1e-7, atol=0)
    assert np.allclose(c.colors, np.rint(col * 255) / 255, atol=1e-6)
    assert np.allclose(c.normals, nrm, atol=1e-7)
    assert "attention" in c.info["fields"] and c.info["format"].startswith("ply")
    if binary:  # the scalar is stored exactly as float32
        rec = np.frombuffer(p.read_bytes(), offset=p.read_bytes().index(b"end_header\n") + 11,
                            dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("nx", "<f4"), ("ny", "<f4"),
                                   ("nz", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1"), ("attention", "<f4")])
        assert np.array_equal(rec["attention"], att)


def test_save_ply_uint8_colours_and_labels(tmp_path):
    pts = cloud(50)
    col = np.random.default_rng(0).integers(0, 256, (50, 3)).astype(np.uint8)
    save_ply(tmp_path / "a.ply", pts, col, labels=np.arange(50) % 4)
    c = load_point_cloud(tmp_path / "a.ply")
    assert np.allclose(c.colors * 255, col, atol=1e-4)
    assert np.array_equal(c.labels, np.arange(50) % 4)


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian", "binary_big_endian"])
def test_ply_point_cloud_all_encodings(tmp_path, fmt):
    pts, nrm = cloud(100).astype(np.float64), unit_normals(100)
    col = np.random.default_rng(3).random((100, 3)).astype(np.float32)  # float colours in [0, 1]
    lab = np.arange(100) % 5
    vertex = [("x", "double", pts[:, 0]), ("y", "double", pts[:, 1]), ("z", "double", pts[:, 2]),
              ("nx", "float", nrm[:, 0]), ("ny", "float", nrm[:, 1]), ("nz", "float", nrm[:, 2]),
              ("red", "float", col[:, 0]), ("green", "float", col[:, 1]), ("blue", "float", col[:, 2]),
              ("label", "int", lab)]
    write_ply(tmp_path / "c.ply", vertex, fmt=fmt)
    c = load_point_cloud(tmp_path / "c.ply")
    assert np.allclose(c.points, pts, atol=1e-6) and np.allclose(c.normals, nrm, atol=1e-6)
    assert np.allclose(c.colors, col, atol=1e-6) and np.array_equal(c.labels, lab)
    assert c.info["is_mesh"] is False and fmt in c.info["format"]


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian", "binary_big_endian"])
def test_ply_mesh_mixed_polygons_is_sampled_on_the_surface(tmp_path, fmt):
    v, faces = box_mesh()
    vertex = [("x", "float", v[:, 0]), ("y", "float", v[:, 1]), ("z", "float", v[:, 2])]
    write_ply(tmp_path / "box.ply", vertex, faces, fmt=fmt, face_colors=True)
    c = load_point_cloud(tmp_path / "box.ply", mesh_samples=6000, seed=3)
    assert len(c) == 6000 and c.info["is_mesh"] and c.info["n_triangles"] == 12
    check_on_box(c)
    # area-weighted: the two 1x1 end faces (x = +-1) hold 2 of the 10 units of area
    on_x = np.abs(np.abs(c.points[:, 0]) - 1.0) < 1e-5
    assert abs(on_x.mean() - 0.2) < 0.03
    again = load_point_cloud(tmp_path / "box.ply", mesh_samples=6000, seed=3)
    other = load_point_cloud(tmp_path / "box.ply", mesh_samples=6000, seed=4)
    assert np.array_equal(c.points, again.points) and not np.array_equal(c.points, other.points)


def test_ply_triangle_fast_path_with_extra_face_properties(tmp_path):
    # a regular grid of triangles with per-face colours (list fast path, like VCG/Meshlab files)
    g = np.stack(np.meshgrid(np.arange(6.0), np.arange(6.0), indexing="ij"), -1).reshape(-1, 2)
    v = np.c_[g, np.sin(g[:, 0])]
    faces = []
    for i in range(5):
        for j in range(5):
            a, b, cc, d = i * 6 + j, i * 6 + j + 1, (i + 1) * 6 + j, (i + 1) * 6 + j + 1
            faces += [[a, b, d], [a, d, cc]]
    vertex = [("x", "float", v[:, 0]), ("y", "float", v[:, 1]), ("z", "float", v[:, 2])]
    for fmt in ("binary_little_endian", "ascii"):
        write_ply(tmp_path / "g.ply", vertex, faces, fmt=fmt, face_colors=True)
        c = load_point_cloud(tmp_path / "g.ply", mesh_samples=500)
        assert len(c) == 500 and c.info["n_triangles"] == 50
        verts = load_point_cloud(tmp_path / "g.ply", mesh_samples=0)  # the mesh's vertices
        assert len(verts) == 36 and np.allclose(verts.points, v, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# PCD

def _pcd_fields(n=120, with_label=True):
    pts, nrm = cloud(n), unit_normals(n)
    rgb = np.random.default_rng(4).integers(0, 256, (n, 3)).astype(np.uint8)
    f = [("x", "F", 4, pts[:, 0]), ("y", "F", 4, pts[:, 1]), ("z", "F", 4, pts[:, 2]),
         ("rgb", "F", 4, pack_rgb_float(rgb)),
         ("normal_x", "F", 4, nrm[:, 0]), ("normal_y", "F", 4, nrm[:, 1]), ("normal_z", "F", 4, nrm[:, 2])]
    if with_label:
        f.append(("label", "U", 4, np.arange(n) % 3))
    return f, pts, nrm, rgb


@pytest.mark.parametrize("mode", ["ascii", "binary", "binary_compressed"])
def test_pcd_round_trip(tmp_path, mode):
    fields, pts, nrm, rgb = _pcd_fields()
    write_pcd(tmp_path / "a.pcd", fields, mode)
    c = load_point_cloud(tmp_path / "a.pcd")
    assert len(c) == 120 and c.info["format"] == f"pcd ({mode})"
    assert np.allclose(c.points, pts, atol=1e-7) and np.allclose(c.normals, nrm, atol=1e-7)
    assert np.allclose(c.colors * 255, rgb, atol=1e-3)
    assert np.array_equal(c.labels, np.arange(120) % 3)


def test_pcd_rgba_uint_and_literal_only_lzf_and_nan_points(tmp_path):
    pts = cloud(80)
    pts[::10] = np.nan  # organised clouds mark invalid points with NaN
    rgb = np.random.default_rng(5).integers(0, 256, (80, 3)).astype(np.uint32)
    rgba = (255 << 24) | (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
    fields = [("x", "F", 4, pts[:, 0]), ("y", "F", 4, pts[:, 1]), ("z", "F", 4, pts[:, 2]), ("rgba", "U", 4, rgba)]
    write_pcd(tmp_path / "b.pcd", fields, "binary_compressed", literal_only=True)
    c = load_point_cloud(tmp_path / "b.pcd")
    keep = np.isfinite(pts).all(1)
    assert len(c) == 72 and c.n_dropped == 8
    assert np.allclose(c.points, pts[keep]) and np.allclose(c.colors * 255, rgb[keep], atol=1e-3)


@pytest.mark.parametrize("data", [b"", b"abc", bytes(range(256)) * 40, b"abcabcabcabc" * 300,
                                  b"\x00" * 5000, np.random.default_rng(0).integers(0, 4, 20000, dtype=np.uint8).tobytes()])
def test_lzf_round_trip(data):
    for literal_only in (False, True):
        comp = lzf_compress(data, literal_only)
        assert pio._lzf_decompress(comp, len(data)) == data
    if len(data) > 1000 and len(set(data)) < 10:
        assert len(lzf_compress(data)) < 0.7 * len(data)  # back references really are exercised


# ---------------------------------------------------------------------------------------------
# Text formats

def _rows(a, fmt="%.9g", sep=" "):
    return "\n".join(sep.join(fmt % x for x in r) for r in a) + "\n"


def test_xyz_plain_and_with_count_line(tmp_path):
    pts = cloud(64)
    (tmp_path / "a.xyz").write_text(_rows(pts))
    (tmp_path / "b.xyz").write_text("64\n" + _rows(pts))
    for name in ("a.xyz", "b.xyz"):
        c = load_point_cloud(tmp_path / name)
        assert len(c) == 64 and np.array_equal(c.points, pts)
    assert load_point_cloud(tmp_path / "b.xyz").info["count_line"] == 64


def test_xyzn_xyzrgb_and_pts(tmp_path):
    pts, nrm = cloud(40), unit_normals(40)
    rgb = np.random.default_rng(6).integers(0, 256, (40, 3))
    (tmp_path / "a.xyzn").write_text(_rows(np.c_[pts, nrm]))
    (tmp_path / "a.xyzrgb").write_text(_rows(np.c_[pts, rgb]))
    # Leica .pts: a count line, then x y z intensity r g b
    (tmp_path / "a.pts").write_text("40\n" + _rows(np.c_[pts, np.full(40, -1200), rgb]))
    c = load_point_cloud(tmp_path / "a.xyzn")
    assert np.allclose(c.normals, nrm, atol=1e-7) and c.colors is None
    for name in ("a.xyzrgb", "a.pts"):
        c = load_point_cloud(tmp_path / name)
        assert np.allclose(c.points, pts) and np.allclose(c.colors * 255, rgb, atol=1e-3)


def test_modelnet_csv_and_whitespace_txt(tmp_path):
    pts, nrm = cloud(50), unit_normals(50)
    (tmp_path / "airplane_0001.txt").write_text(_rows(np.c_[pts, nrm], "%.6f", ","))  # ModelNet40 resampled layout
    (tmp_path / "b.txt").write_text("# a comment\n" + _rows(pts).replace(" ", "\t"))
    (tmp_path / "c.csv").write_text(_rows(np.c_[pts, nrm], sep=", ").replace("\n", "\r\n"))
    for name in ("airplane_0001.txt", "c.csv"):
        c = load_point_cloud(tmp_path / name)
        assert np.allclose(c.points, pts, atol=1e-6) and np.allclose(c.normals, nrm, atol=1e-6)
    assert np.array_equal(load_point_cloud(tmp_path / "b.txt").points, pts)


def test_csv_header_names_shapenetpart_labels_and_decimal_commas(tmp_path):
    pts, nrm = cloud(30), unit_normals(30)
    rgb = np.random.default_rng(7).integers(0, 256, (30, 3))
    lab = np.arange(30) % 4
    (tmp_path / "named.csv").write_text("label,z,y,x,red,green,blue\n" + _rows(np.c_[lab, pts[:, ::-1], rgb], sep=","))
    c = load_point_cloud(tmp_path / "named.csv")
    assert np.allclose(c.points, pts) and np.array_equal(c.labels, lab) and np.allclose(c.colors * 255, rgb)
    (tmp_path / "part.txt").write_text(_rows(np.c_[pts, nrm, lab]))  # ShapeNetPart: x y z nx ny nz part
    c = load_point_cloud(tmp_path / "part.txt")
    assert np.array_equal(c.labels, lab) and np.allclose(c.normals, nrm, atol=1e-7)
    (tmp_path / "eu.csv").write_text(_rows(pts, "%.4f", ";").replace(".", ","))
    assert np.allclose(load_point_cloud(tmp_path / "eu.csv").points, pts, atol=1e-4)


def test_text_slow_path_comments_in_the_middle_and_multi_scan_pts(tmp_path):
    pts = cloud(40)
    text = "20\n" + _rows(pts[:20]) + "# second scan\n20\n" + _rows(pts[20:])
    (tmp_path / "m.pts").write_text(text)
    c = load_point_cloud(tmp_path / "m.pts")
    assert len(c) == 40 and np.array_equal(c.points, pts)


def test_georeferenced_coordinates_keep_precision_with_an_offset(tmp_path):
    pts = cloud(100).astype(np.float64) + [665187.0, 5648349.0, 240.0]
    (tmp_path / "geo.xyz").write_text(_rows(pts, "%.6f"))
    c = load_point_cloud(tmp_path / "geo.xyz")
    assert "offset" in c.info
    assert np.allclose(c.points.astype(np.float64) + c.info["offset"], pts, atol=1e-3)


# ---------------------------------------------------------------------------------------------
# NumPy and HDF5

def test_npy_layouts(tmp_path):
    pts, nrm = cloud(100), unit_normals(100)
    np.save(tmp_path / "a.npy", pts)
    np.save(tmp_path / "b.npy", np.c_[pts, nrm].astype(np.float64))
    np.save(tmp_path / "c.npy", np.stack([pts, pts * 2, pts * 3]))  # (B, N, 3)
    np.save(tmp_path / "d.npy", pts.T.copy())  # (3, N) as torch code saves it
    rec = np.zeros(100, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("intensity", "f4")])
    rec["x"], rec["y"], rec["z"] = pts.T
    np.save(tmp_path / "e.npy", rec)
    assert np.array_equal(load_point_cloud(tmp_path / "a.npy").points, pts)
    assert np.allclose(load_point_cloud(tmp_path / "b.npy").normals, nrm)
    c = load_point_cloud(tmp_path / "c.npy", h5_index=2)
    assert np.allclose(c.points, pts * 3) and c.info["n_samples"] == 3
    assert np.array_equal(load_point_cloud(tmp_path / "d.npy").points, pts)
    assert np.array_equal(load_point_cloud(tmp_path / "e.npy").points, pts)


def test_npz_key_choice_and_companions(tmp_path):
    pts, nrm = cloud(100), unit_normals(100)
    np.savez(tmp_path / "a.npz", meta=np.arange(3), points=pts, normals=nrm, labels=np.arange(100) % 2)
    c = load_point_cloud(tmp_path / "a.npz")
    assert np.array_equal(c.points, pts) and np.allclose(c.normals, nrm) and np.array_equal(c.labels, np.arange(100) % 2)
    np.savez_compressed(tmp_path / "b.npz", arr_0=np.arange(5), arr_1=pts * 2)  # first (N, 3+) array wins
    assert np.allclose(load_point_cloud(tmp_path / "b.npz").points, pts * 2)
    np.savez(tmp_path / "c.npz", first=pts, second=pts + 1)
    assert np.allclose(load_point_cloud(tmp_path / "c.npz", h5_key="second").points, pts + 1)


def _write_h5(path, **arrays):
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)


def test_h5_modelnet40_layout(tmp_path):
    data = np.stack([cloud(256, s) for s in range(4)])
    normal = np.stack([unit_normals(256, s) for s in range(4)])
    _write_h5(tmp_path / "ply_data_train0.h5", data=data, label=np.array([[3], [7], [1], [0]], np.uint8), normal=normal)
    (tmp_path / "shape_names.txt").write_text("\n".join(f"class{i}" for i in range(10)) + "\n")
    c = load_point_cloud(tmp_path / "ply_data_train0.h5", h5_index=1)
    assert np.array_equal(c.points, data[1]) and np.allclose(c.normals, normal[1])
    assert c.info["label"] == 7 and c.info["class_name"] == "class7" and c.info["n_samples"] == 4
    assert h5_datasets(tmp_path / "ply_data_train0.h5") == {"data": (4, 256, 3), "label": (4, 1), "normal": (4, 256, 3)}


def test_h5_shapenetpart_and_scanobjectnn_layouts(tmp_path):
    data = np.stack([cloud(128, s) for s in range(3)])
    pid = np.random.default_rng(0).integers(0, 50, (3, 128))
    _write_h5(tmp_path / "ply_data_val0.h5", data=data, label=np.array([[0], [1], [2]]), pid=pid)
    c = load_point_cloud(tmp_path / "ply_data_val0.h5", h5_index=2)
    assert np.array_equal(c.points, data[2]) and np.array_equal(c.labels, pid[2]) and c.info["label"] == 2
    mask = np.where(np.random.default_rng(1).random((3, 128)) < 0.3, -1, 5)
    _write_h5(tmp_path / "objectdataset.h5", data=data, label=np.array([4, 5, 6]), mask=mask)
    c = load_point_cloud(tmp_path / "objectdataset.h5", h5_index=0)
    assert np.array_equal(c.labels, mask[0]) and c.info["label"] == 4 and c.info["labels_from"] == "mask"


def test_h5_explicit_key_and_nested_group(tmp_path):
    with h5py.File(tmp_path / "g.hdf5", "w") as f:
        f.create_dataset("scan/xyz", data=cloud(64).astype(np.float64))
        f.create_dataset("other", data=cloud(64) + 5)
    assert np.allclose(load_point_cloud(tmp_path / "g.hdf5", h5_key="scan/xyz").points, cloud(64))
    assert set(h5_datasets(tmp_path / "g.hdf5")) == {"scan/xyz", "other"}


# ---------------------------------------------------------------------------------------------
# Meshes

def test_off_and_coff(tmp_path):
    v, faces = box_mesh()
    body = "\n".join(" ".join(map(str, r)) for r in v) + "\n" + "\n".join(f"{len(f)} " + " ".join(map(str, f)) for f in faces)
    (tmp_path / "box.off").write_text(f"OFF\n# a comment\n{len(v)} {len(faces)} 0\n{body}\n")
    c = load_point_cloud(tmp_path / "box.off", mesh_samples=2000)
    assert len(c) == 2000 and c.info["n_triangles"] == 12
    check_on_box(c)
    cols = "\n".join(" ".join(map(str, r)) + " 255 0 0 255" for r in v)
    tris = "\n".join(f"3 {f[0]} {f[1]} {f[2]}" for f in faces if len(f) == 3) + "\n"
    quads = "\n".join(f"3 {f[0]} {f[1]} {f[2]}\n3 {f[0]} {f[2]} {f[3]}" for f in faces if len(f) == 4)
    (tmp_path / "box_c.off").write_text(f"COFF {len(v)} 12 0\n{cols}\n{tris}{quads}\n")
    c = load_point_cloud(tmp_path / "box_c.off", mesh_samples=500)
    check_on_box(c)
    assert np.allclose(c.colors, [1, 0, 0])


def test_obj_quads_slashes_negative_indices_colours_and_groups(tmp_path):
    v, faces = box_mesh()
    lines = ["# box", "mtllib box.mtl", "o box"]
    lines += [f"v {x} {y} {z} 0 1 0" for x, y, z in v]
    lines += ["vt 0 0", "vn 0 0 1", "g side_a"]
    for k, f in enumerate(faces):
        if k == 3:
            lines.append("g side_b")
        if k % 2:
            lines.append("f " + " ".join(f"{i + 1}/1/1" for i in f))
        else:
            lines.append("f " + " ".join(str(i - len(v)) for i in f))  # relative: -1 is the last vertex
    (tmp_path / "box.obj").write_text("\n".join(lines) + "\n")
    c = load_point_cloud(tmp_path / "box.obj", mesh_samples=3000)
    assert len(c) == 3000 and c.info["n_triangles"] == 12
    check_on_box(c)
    assert np.allclose(c.colors, [0, 1, 0])
    assert set(c.labels.tolist()) == {0, 1} and c.info["label_names"] == ["side_a", "side_b"]
    (tmp_path / "pts.obj").write_text("\n".join(f"v {x} {y} {z}" for x, y, z in cloud(30)) + "\n")
    c = load_point_cloud(tmp_path / "pts.obj")  # no faces: a point cloud
    assert len(c) == 30 and not c.info["is_mesh"]


def _stl_triangles():
    v, faces = box_mesh()
    tris = []
    for f in faces:
        for j in range(1, len(f) - 1):
            tris.append(v[[f[0], f[j], f[j + 1]]])
    return np.asarray(tris, dtype=np.float32)


@pytest.mark.parametrize("kind", ["binary", "binary_solid_header", "ascii"])
def test_stl(tmp_path, kind):
    tris = _stl_triangles()
    if kind == "ascii":
        body = "solid box\n" + "".join(
            "facet normal 0 0 0\n outer loop\n" + "".join(f"  vertex {x:.7e} {y:.7e} {z:.7e}\n" for x, y, z in t)
            + " endloop\nendfacet\n" for t in tris) + "endsolid box\n"
        (tmp_path / "box.stl").write_text(body)
    else:
        header = (b"solid exported by a CAD tool" if kind == "binary_solid_header" else b"binary stl").ljust(80, b" ")
        rec = np.zeros(len(tris), dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")])
        rec["v"] = tris
        (tmp_path / "box.stl").write_bytes(header + struct.pack("<I", len(tris)) + rec.tobytes())
    c = load_point_cloud(tmp_path / "box.stl", mesh_samples=1000)
    assert len(c) == 1000 and c.info["n_triangles"] == 12 and ("ascii" in c.info["format"]) == (kind == "ascii")
    check_on_box(c)


@pytest.mark.parametrize("name", ["Duck.glb", "Fox.gltf", "Bunny.obj", "face.obj", "sofia.stl"])
def test_gradio_bundled_meshes(name):
    d = _gradio_models()
    if d is None or not (d / name).is_file():
        pytest.skip(f"gradio's media_assets/models3d/{name} is not installed")
    if name.endswith((".glb", ".gltf")):
        try:
            pio._import_open3d()
        except PointCloudError as e:
            pytest.skip(f"open3d cannot load here: {e}")
    c = load_point_cloud(d / name, mesh_samples=4000)
    assert len(c) == 4000 and c.info["is_mesh"] and c.normals is not None
    assert np.isfinite(c.points).all() and np.ptp(c.points, axis=0).max() > 0


# ---------------------------------------------------------------------------------------------
# The real samples in ../shared/samples

SAMPLE_COUNTS = {"bunny.pcd": 397, "milk_color.pcd": 13704, "car6.pcd": 10031, "points_agisoft.xyz": 100,
                 "chair_model.obj": None, "ballA.off": None, "fuze_ascii.ply": None, "cylinder.stl": None,
                 "cow.obj": None, "suzanne.obj": None}


@pytest.mark.parametrize("name", sorted(SAMPLE_COUNTS))
def test_real_sample_loads(name):
    if not (SAMPLES / name).is_file():
        pytest.skip(f"real sample {SAMPLES / name} is absent (the shared samples folder is not on this machine)")
    c = load_point_cloud(SAMPLES / name, mesh_samples=3000)
    expected = SAMPLE_COUNTS[name]
    assert len(c) == (expected if expected is not None else 3000)
    assert c.n_dropped == 0 and np.isfinite(c.points).all() and np.ptp(c.points, axis=0).min() > 0
    if name == "milk_color.pcd":
        assert c.colors is not None and c.colors.std() > 0.01
    if name in ("fuze_ascii.ply", "points_agisoft.xyz"):
        assert c.colors is not None
    if expected is None:
        assert c.info["is_mesh"] and c.info["n_vertices"] > 100


def test_real_sample_vertices_match_their_headers():
    if not SAMPLES.is_dir():
        pytest.skip(f"shared samples folder {SAMPLES} is absent")
    assert len(load_point_cloud(SAMPLES / "fuze_ascii.ply", mesh_samples=0)) == 502
    assert len(load_point_cloud(SAMPLES / "ballA.off", mesh_samples=0)) == 1900
    assert len(load_point_cloud(SAMPLES / "cow.obj", mesh_samples=0)) == 2903
    assert load_point_cloud(SAMPLES / "fuze_ascii.ply").info["n_triangles"] == 1000


# ---------------------------------------------------------------------------------------------
# Bad inputs: one exception type, a sentence naming the file, the problem and what is accepted

def expect_error(path, *fragments, **kw) -> str:
    with pytest.raises(PointCloudError) as ei:
        load_point_cloud(path, **kw)
    msg = str(ei.value)
    assert Path(path).name in msg, msg
    for frag in fragments:
        assert frag.lower() in msg.lower(), f"{frag!r} not in: {msg}"
    assert "Traceback" not in msg
    return msg


def test_missing_folder_unknown_extension(tmp_path):
    expect_error(tmp_path / "nope.ply", "not found", ".pcd")
    (tmp_path / "d.ply").mkdir()
    expect_error(tmp_path / "d.ply", "folder")
    (tmp_path / "scan.las2").write_text("1 2 3\n")
    expect_error(tmp_path / "scan.las2", "'.las2' is not a supported", ".ply", ".pcd", ".obj", ".h5")
    (tmp_path / "noext").write_text("1 2 3\n")
    expect_error(tmp_path / "noext", "without an extension")


@pytest.mark.parametrize("name", ["e.ply", "e.xyz", "e.npy", "e.h5", "e.obj", "e.stl"])
def test_empty_files(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    expect_error(tmp_path / name, "empty")


def test_whitespace_and_comment_only_text(tmp_path):
    (tmp_path / "w.xyz").write_text("\n\n   \n# only a comment\n")
    expect_error(tmp_path / "w.xyz", "no rows of numbers")


def test_all_nan_too_few_and_degenerate(tmp_path):
    (tmp_path / "nan.xyz").write_text("nan nan nan\n" * 50 + "inf 1 2\n")
    expect_error(tmp_path / "nan.xyz", "all 51 points", "non-finite")
    (tmp_path / "few.xyz").write_text(_rows(cloud(5)))
    expect_error(tmp_path / "few.xyz", "only 5 valid points", f"at least {MIN_POINTS}")
    (tmp_path / "same.ply").write_bytes(b"")
    save_ply(tmp_path / "same.ply", np.tile([[1.0, 2.0, 3.0]], (100, 1)))
    expect_error(tmp_path / "same.ply", "same point", "no extent")


def test_non_finite_points_are_dropped_and_counted(tmp_path):
    pts = cloud(100).astype(np.float64)
    pts[[3, 50, 77]] = [np.nan, 0, np.inf]
    (tmp_path / "a.xyz").write_text(_rows(pts))
    c = load_point_cloud(tmp_path / "a.xyz")
    assert len(c) == 97 and c.n_dropped == 3 and np.isfinite(c.points).all()


@pytest.mark.parametrize("name, content, fragments", [
    ("photo.ply", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, ["not a PLY file", "PNG image"]),
    ("photo.pcd", b"\xff\xd8\xff\xe0" + b"\x00" * 100, ["not a PCD file", "JPEG image"]),
    ("cloud.pcd", b"ply\nformat ascii 1.0\nelement vertex 0\nend_header\n", ["it looks like a PLY file", "rename it to .ply"]),
    ("page.obj", b"<!DOCTYPE html><html><body>404</body></html>", ["HTML web page"]),
    ("arch.npy", b"PK\x03\x04" + b"\x00" * 100, ["not a NumPy .npy file", "ZIP archive"]),
    ("data.h5", b"1 2 3\n4 5 6\n", ["not a HDF5 file"]),
    ("blob.xyz", bytes(range(256)) * 4, ["binary, not text"]),
    ("scan.xyz", b"LASF" + b"\x00" * 300, ["LAS lidar file"]),
    ("model.gltf", b"glTF\x02\x00\x00\x00", ["it looks like a binary glTF", "rename it to .glb"]),
    ("pic.stl", b"\x89PNG\r\n\x1a\n" + b"\x00" * 200, ["not a STL file", "PNG"]),
    ("packed.xyz", b"\x1f\x8b\x08\x00" + b"\x00" * 50, ["gzip", "decompress"]),
])
def test_mismatched_content(tmp_path, name, content, fragments):
    (tmp_path / name).write_bytes(content)
    msg = expect_error(tmp_path / name, *fragments)
    assert "Accepted:" in msg


def test_truncated_binary_ply_and_absurd_header_do_not_allocate(tmp_path):
    p = tmp_path / "t.ply"
    save_ply(p, cloud(1000))
    data = p.read_bytes()
    p.write_bytes(data[:-100])
    expect_error(p, "truncated", "1,000 'vertex' elements")
    huge = data.split(b"end_header\n")[0].replace(b"element vertex 1000", b"element vertex 1000000000000")
    p.write_bytes(huge + b"end_header\n" + data.split(b"end_header\n")[1])
    tracemalloc.start()
    t = time.perf_counter()
    expect_error(p, "truncated", "1,000,000,000,000")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 * 1024**2 and time.perf_counter() - t < 1.0


def test_truncated_ply_mesh_faces_and_ascii(tmp_path):
    v, faces = box_mesh()
    vertex = [("x", "float", v[:, 0]), ("y", "float", v[:, 1]), ("z", "float", v[:, 2])]
    write_ply(tmp_path / "m.ply", vertex, faces)
    data = (tmp_path / "m.ply").read_bytes()
    (tmp_path / "m.ply").write_bytes(data[:-6])
    expect_error(tmp_path / "m.ply", "truncated", "face")
    write_ply(tmp_path / "a.ply", vertex, faces, fmt="ascii")
    text = (tmp_path / "a.ply").read_bytes()
    (tmp_path / "a.ply").write_bytes(text[:text.index(b"end_header") + 40])
    expect_error(tmp_path / "a.ply", "truncated")
    (tmp_path / "noend.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\n")
    expect_error(tmp_path / "noend.ply", "end_header")
    write_ply(tmp_path / "noxyz.ply", [("u", "float", np.arange(20.0)), ("v", "float", np.arange(20.0))])
    expect_error(tmp_path / "noxyz.ply", "no x, y, z")


def test_faces_referring_to_missing_vertices(tmp_path):
    pts = cloud(20)
    write_ply(tmp_path / "bad.ply", [("x", "float", pts[:, 0]), ("y", "float", pts[:, 1]), ("z", "float", pts[:, 2])],
              [[0, 1, 99]])
    expect_error(tmp_path / "bad.ply", "vertex 99", "20 vertices")
    (tmp_path / "bad.obj").write_text("\n".join(f"v {x} {y} {z}" for x, y, z in pts) + "\nf 1 2 40\n")
    expect_error(tmp_path / "bad.obj", "vertex 40")
    (tmp_path / "bad.off").write_text("OFF\n20 1 0\n" + _rows(pts) + "3 0 1 20\n")
    expect_error(tmp_path / "bad.off", "vertex 20")


def test_truncated_pcd_variants(tmp_path):
    fields, *_ = _pcd_fields(200, with_label=False)
    for mode in ("binary", "binary_compressed", "ascii"):
        p = tmp_path / f"{mode}.pcd"
        write_pcd(p, fields, mode)
        data = p.read_bytes()
        p.write_bytes(data[:len(data) - 300])
        expect_error(p, "truncated")
    write_pcd(tmp_path / "c.pcd", fields, "binary_compressed")
    data = bytearray((tmp_path / "c.pcd").read_bytes())
    start = data.index(b"DATA binary_compressed\n") + len(b"DATA binary_compressed\n")
    data[start + 8:start + 40] = bytes([0xFF]) * 32  # back references before the start of the output
    (tmp_path / "c.pcd").write_bytes(bytes(data))
    expect_error(tmp_path / "c.pcd", "compressed data")
    hdr = b"# .PCD v0.7\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 1\nHEIGHT 1\n"
    (tmp_path / "huge.pcd").write_bytes(hdr + b"POINTS 1000000000000\nDATA binary\n" + b"\x00" * 120)
    expect_error(tmp_path / "huge.pcd", "truncated", "1,000,000,000,000 points")
    write_pcd(tmp_path / "ok.pcd", fields, "binary_compressed")
    expect_error(tmp_path / "ok.pcd", "200 points", "more than the limit of 100", max_points=100)
    (tmp_path / "huge2.pcd").write_bytes(hdr + b"POINTS 4000000\nDATA binary\n" + b"\x00" * 120)
    expect_error(tmp_path / "huge2.pcd", "truncated", "4,000,000 points")
    (tmp_path / "odd.pcd").write_bytes(hdr.replace(b"TYPE F F F", b"TYPE F F Q") + b"POINTS 1\nDATA ascii\n1 2 3\n")
    expect_error(tmp_path / "odd.pcd", "unknown TYPE/SIZE")


def test_truncated_stl_npy_h5_and_count_line(tmp_path):
    rec = np.zeros(100, dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")])
    (tmp_path / "t.stl").write_bytes(b"x" * 80 + struct.pack("<I", 100) + rec.tobytes()[:-500])
    expect_error(tmp_path / "t.stl", "truncated", "100 triangles")
    np.save(tmp_path / "t.npy", cloud(1000))
    data = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(data[:-400])
    expect_error(tmp_path / "t.npy", "truncated", "(1000, 3)")
    _write_h5(tmp_path / "t.h5", data=np.stack([cloud(512, s) for s in range(8)]))
    data = (tmp_path / "t.h5").read_bytes()
    (tmp_path / "t.h5").write_bytes(data[:len(data) // 2])
    expect_error(tmp_path / "t.h5", "HDF5")
    (tmp_path / "c.pts").write_text("500\n" + _rows(cloud(100)))
    expect_error(tmp_path / "c.pts", "truncated", "500 points", "100 rows")


def test_size_and_point_limits_and_decimation(tmp_path):
    p = tmp_path / "big.ply"
    save_ply(p, cloud(5000))
    expect_error(p, "larger than the limit", max_bytes=10_000)
    expect_error(p, "5,000 points", "more than the limit of 1,000", "decimate_to", max_points=1000)
    c = load_point_cloud(p, max_points=1000, decimate_to=800)
    assert len(c) == 800 and c.info["decimated_from"] == 5000
    assert np.array_equal(c.points, load_point_cloud(p, decimate_to=800).points)  # fixed seed
    (tmp_path / "big.xyz").write_text(_rows(cloud(3000)))
    expect_error(tmp_path / "big.xyz", "more than the limit", max_points=1000)


def test_bad_text_rows_are_located(tmp_path):
    (tmp_path / "r.xyz").write_text(_rows(cloud(10)) + "1.0 2.0\n" + _rows(cloud(10)))
    expect_error(tmp_path / "r.xyz", "line 11 has 2 values", "first data line has 3")
    (tmp_path / "n.csv").write_text("1,2,3\n4,5,6\n7,abc,9\n" + _rows(cloud(20), sep=","))
    expect_error(tmp_path / "n.csv", 'line 3: "abc" is not a number')
    (tmp_path / "two.txt").write_text("1 2\n3 4\n" * 20)
    expect_error(tmp_path / "two.txt", "at least 3 values (x y z)", "2 columns")


def test_arrays_never_unpickled_and_bad_shapes(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    expect_error(tmp_path / "obj.npy", "python objects", "unpickling")
    np.savez(tmp_path / "obj.npz", a=np.array([{"a": 1}], dtype=object))
    expect_error(tmp_path / "obj.npz", "no plain numeric arrays")
    np.save(tmp_path / "flat.npy", np.arange(100.0))
    expect_error(tmp_path / "flat.npy", "shape (100,)")
    np.save(tmp_path / "b.npy", np.zeros((2, 50, 3)))
    expect_error(tmp_path / "b.npy", "sample index 5 is out of range", "2 samples", h5_index=5)
    np.savez(tmp_path / "k.npz", points=cloud(20))
    expect_error(tmp_path / "k.npz", "no array named 'xyz'", "points (20, 3)", h5_key="xyz")


def test_h5_bad_key_and_index(tmp_path):
    _write_h5(tmp_path / "m.h5", data=np.zeros((2, 64, 3)) + np.arange(64)[None, :, None], label=np.zeros((2, 1)))
    expect_error(tmp_path / "m.h5", "no dataset named 'points'", "data (2, 64, 3)", h5_key="points")
    expect_error(tmp_path / "m.h5", "sample index 2 is out of range", "2 samples (0..1)", h5_index=2)
    _write_h5(tmp_path / "n.h5", label=np.zeros(3))
    expect_error(tmp_path / "n.h5", "no dataset of shape")


def test_unexpected_parser_exception_is_wrapped(tmp_path, monkeypatch):
    def broken(path, **kw):
        return 1 / 0

    monkeypatch.setitem(pio._PARSERS, ".xyz", broken)
    (tmp_path / "a.xyz").write_text(_rows(cloud(20)))
    with pytest.raises(PointCloudError) as ei:
        load_point_cloud(tmp_path / "a.xyz")
    assert isinstance(ei.value.__cause__, ZeroDivisionError)
    assert "a.xyz" in str(ei.value) and "ZeroDivisionError" in str(ei.value)


def test_open3d_import_failure_message(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "open3d", None)  # makes `import open3d` raise ImportError
    (tmp_path / "m.glb").write_bytes(b"glTF\x02\x00\x00\x00" + b"\x00" * 20)
    with pytest.raises(PointCloudError) as ei:
        load_point_cloud(tmp_path / "m.glb")
    msg = str(ei.value)
    assert "open3d could not be loaded" in msg and "apt-get install libusb-1.0-0" in msg and "scripts/setup.sh" in msg


def test_gltf_with_missing_buffer(tmp_path):
    (tmp_path / "m.gltf").write_text('{"asset": {"version": "2.0"}, "buffers": [{"uri": "m.bin", "byteLength": 12}]}')
    expect_error(tmp_path / "m.gltf", "'m.bin'", "not next to it")


# ---------------------------------------------------------------------------------------------
# normalize, resample, decimate_for_display, PointCloud

def test_normalize():
    pts = cloud(500) * 7.0 + [100.0, -3.0, 2.0]
    out = normalize(pts)
    assert out.dtype == np.float32 and np.allclose(out.mean(0), 0, atol=1e-5)
    assert np.isclose(np.linalg.norm(out, axis=1).max(), 1.0, atol=1e-6)
    assert np.allclose(normalize(out), out, atol=1e-6)
    assert np.allclose(normalize(np.ones((4, 3))), 0)


def test_resample_fps_matches_ops_and_is_deterministic():
    import torch
    from pcdviz.ops import farthest_point_sample
    pts = cloud(3000)
    idx = resample(pts, 256)
    assert idx.dtype == np.int64 and idx[0] == 0 and len(set(idx.tolist())) == 256
    assert np.array_equal(idx, resample(pts, 256))
    ref = farthest_point_sample(torch.from_numpy(pts)[None], 256)[0].numpy()
    assert np.array_equal(idx, ref)


def test_resample_fps_large_clouds_use_fpsample_with_identical_indices():
    pytest.importorskip("fpsample")
    import torch
    from pcdviz.ops import farthest_point_sample
    pts = cloud(pio.FPS_TORCH_MAX_N + 5000)
    idx = resample(pts, 48)
    ref = farthest_point_sample(torch.from_numpy(pts)[None], 48)[0].numpy()
    assert idx[0] == 0 and np.array_equal(idx, ref)


def test_resample_padding_and_random():
    pts = cloud(100)
    idx = resample(pts, 250)
    assert len(idx) == 250 and set(idx.tolist()) == set(range(100))
    r = resample(pts, 60, method="random", seed=1)
    assert len(set(r.tolist())) == 60 and np.array_equal(r, resample(pts, 60, method="random", seed=1))
    assert not np.array_equal(r, resample(pts, 60, method="random", seed=2))
    r = resample(pts, 130, method="random")
    assert len(r) == 130 and set(r.tolist()) == set(range(100))
    with pytest.raises(ValueError):
        resample(pts, 10, method="grid")


def test_decimate_for_display_is_fast_sorted_and_fixed():
    pts = np.random.default_rng(0).random((1_000_000, 3), dtype=np.float32)
    t = time.perf_counter()
    idx = decimate_for_display(pts, 100_000)
    assert time.perf_counter() - t < 1.0
    assert len(idx) == 100_000 and np.all(np.diff(idx) > 0) and idx.max() < 1_000_000
    assert np.array_equal(idx, decimate_for_display(pts, 100_000))
    assert np.array_equal(decimate_for_display(pts[:50], 100), np.arange(50))


def test_point_cloud_subset_and_validation():
    c = PointCloud(points=cloud(10), colors=np.zeros((10, 3)), labels=np.arange(10), info={"a": 1})
    s = c.subset(np.array([1, 3]))
    assert len(s) == 2 and s.labels.tolist() == [1, 3] and s.colors.shape == (2, 3) and s.normals is None
    s.info["a"] = 2
    assert c.info["a"] == 1
    with pytest.raises(ValueError):
        PointCloud(points=np.zeros((5, 2)))
    with pytest.raises(ValueError):
        PointCloud(points=np.zeros((5, 3)), labels=np.zeros(4))
