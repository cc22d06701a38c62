"""Point-cloud I/O: any supported file -> PointCloud; validation; normalise; resample; decimate.

Parsers for PLY, PCD, XYZ-like text, CSV, NPY/NPZ, HDF5, OBJ, OFF and STL are small numpy code
(vectorised with np.frombuffer / np.fromstring, sizes checked before anything is allocated);
open3d is imported on first use and only for .glb/.gltf. Anything wrong with a user's file raises
PointCloudError with a sentence that names the file, says what is wrong and what is accepted.
"""
from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

MAX_FILE_BYTES = 200 * 1024**2
MAX_POINTS = 5_000_000
MIN_POINTS = 16
DECODE_FACTOR = 4  # compressed data (npz, PCD binary_compressed) and HDF5 reads may expand to 4 x max_bytes
SUPPORTED_EXTENSIONS: tuple[str, ...] = (
    ".ply", ".pcd", ".xyz", ".xyzn", ".xyzrgb", ".pts", ".txt", ".csv", ".npy", ".npz",
    ".h5", ".hdf5", ".obj", ".off", ".stl", ".glb", ".gltf",
)
MESH_EXTENSIONS = (".obj", ".off", ".stl", ".glb", ".gltf")  # .ply may be either
ACCEPTED = ("Accepted: point clouds as .ply, .pcd, .xyz/.xyzn/.xyzrgb/.pts, .txt/.csv, .npy/.npz or "
            ".h5/.hdf5, and meshes as .ply, .obj, .off, .stl or .glb/.gltf.")
FPS_TORCH_MAX_N = 20_000  # above this, resample(method="fps") uses fpsample (same indices, much faster)

_TEXT_EXTS = (".xyz", ".xyzn", ".xyzrgb", ".pts", ".txt", ".csv")
_FORMAT_NAMES = {".ply": "PLY", ".pcd": "PCD", ".npy": "NumPy .npy", ".npz": "NumPy .npz",
                 ".h5": "HDF5", ".hdf5": "HDF5", ".obj": "OBJ", ".off": "OFF", ".stl": "STL",
                 ".glb": "binary glTF (.glb)", ".gltf": "glTF (.gltf)"}
_FORMAT_NAMES.update({e: f"{e} text" for e in _TEXT_EXTS})
# what a file of each kind should look like, appended to format-specific errors
_HINTS = {
    ".ply": "A PLY file starts with the line 'ply', a header that ends with 'end_header', then the data.",
    ".pcd": "A PCD file has a header (VERSION, FIELDS, SIZE, TYPE, COUNT, WIDTH, HEIGHT, POINTS, DATA) "
            "and ascii, binary or binary_compressed data.",
    ".off": "An OFF file starts with 'OFF', then 'n_vertices n_faces n_edges', the vertex lines and the face lines.",
    ".obj": "An OBJ file has 'v x y z' vertex lines and optional 'f i j k' face lines.",
    ".stl": "An STL file is a binary STL (80-byte header, triangle count, 50 bytes per triangle) or ASCII "
            "('solid', 'facet normal', 'vertex x y z', ...).",
    ".npy": "A .npy file must hold a plain numeric array of shape (N, 3+) or (B, N, 3+).",
    ".npz": "A .npz file must hold a plain numeric array of shape (N, 3+) or (B, N, 3+) "
            "(named e.g. 'points', 'xyz' or 'data').",
    ".h5": "An HDF5 file must hold a dataset of shape (N, 3+) or (B, N, 3+) (e.g. ModelNet40's 'data').",
}
_HINTS[".hdf5"] = _HINTS[".h5"]
_HINTS[".glb"] = _HINTS[".gltf"] = "A glTF model must contain at least one triangle mesh."
for _e in _TEXT_EXTS:
    _HINTS[_e] = ("A text point file has one point per line: 'x y z' followed by optional columns "
                  "(normals, colours, a label), separated by spaces or commas.")


class PointCloudError(ValueError):
    """The one exception for a bad user file: the message says what is wrong and what is accepted."""

    def __init__(self, message: str, path: str | Path | None = None):
        super().__init__(message)
        self.path = None if path is None else str(path)


@dataclass
class PointCloud:
    """A point cloud: float32 points (N, 3) and optional per-point colours, normals and labels."""

    points: np.ndarray                  # (N, 3) float32, finite
    colors: np.ndarray | None = None    # (N, 3) float32 in [0, 1]
    normals: np.ndarray | None = None   # (N, 3) float32
    labels: np.ndarray | None = None    # (N,) int64 per-point labels (e.g. part ids)
    source: str = ""                    # file name or generator description
    n_dropped: int = 0                  # non-finite points removed on load
    info: dict = field(default_factory=dict)  # format, is_mesh, n_in_file, decimated_from, offset, ...

    def __post_init__(self):
        self.points = np.asarray(self.points, dtype=np.float32)
        if self.points.ndim != 2 or self.points.shape[1] != 3:
            raise ValueError(f"PointCloud.points must have shape (N, 3), got {self.points.shape}")
        n = len(self.points)
        for name in ("colors", "normals"):
            v = getattr(self, name)
            if v is not None:
                v = np.asarray(v, dtype=np.float32)
                if v.shape != (n, 3):
                    raise ValueError(f"PointCloud.{name} must have shape ({n}, 3), got {v.shape}")
                setattr(self, name, v)
        if self.labels is not None:
            self.labels = np.asarray(self.labels).astype(np.int64, copy=False)
            if self.labels.shape != (n,):
                raise ValueError(f"PointCloud.labels must have shape ({n},), got {self.labels.shape}")

    def __len__(self) -> int:
        """Number of points."""
        return int(self.points.shape[0])

    def subset(self, idx: np.ndarray) -> "PointCloud":
        """The same cloud restricted to the points at idx (all per-point fields)."""
        idx = np.asarray(idx)
        pick = lambda a: None if a is None else a[idx]  # noqa: E731
        return replace(self, points=self.points[idx], colors=pick(self.colors), normals=pick(self.normals),
                       labels=pick(self.labels), info=dict(self.info))


# ---------------------------------------------------------------------------------------------
# Internal representation a parser returns: raw arrays before validation (any float dtype).

@dataclass
class _Raw:
    points: np.ndarray                       # (N, 3) vertices of a mesh or the points of a cloud
    colors: np.ndarray | None = None         # (N, 3) any numeric dtype, normalised later
    normals: np.ndarray | None = None
    labels: np.ndarray | None = None
    faces: np.ndarray | None = None          # (M, 3) int64 triangles -> the file is a mesh
    face_labels: np.ndarray | None = None    # (M,) e.g. OBJ groups
    info: dict = field(default_factory=dict)


class _Fail(Exception):
    """Raised inside parsers with a problem sentence; load_point_cloud adds the file name and a hint."""


def _human_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


# ---------------------------------------------------------------------------------------------
# Public API

def load_point_cloud(path, *, mesh_samples: int | None = 20_000, h5_key: str | None = None, h5_index: int = 0,
                     max_points: int = MAX_POINTS, max_bytes: int = MAX_FILE_BYTES,
                     decimate_to: int | None = None, seed: int = 0) -> PointCloud:
    """Read any supported point-cloud or mesh file into a validated PointCloud (raises PointCloudError).

    Meshes are sampled uniformly over their surface (mesh_samples points, deterministic by seed;
    mesh_samples=0 or None keeps the mesh's vertices instead). h5_key / h5_index choose the dataset
    (also the array of an .npz) and the sample of a (B, N, C) array. A cloud with more than
    max_points points is refused unless decimate_to is given; then any cloud with more than
    decimate_to points is randomly decimated to it and info["decimated_from"] records the original count.
    """
    path = Path(path)
    name = path.name or str(path)
    ext = path.suffix.lower()
    hint = _HINTS.get(ext, ACCEPTED)

    def fail(problem: str, hint: str = hint) -> PointCloudError:
        return PointCloudError(f"{name}: {problem}. {hint}".replace(".. ", ". "), path)

    if not path.exists():
        raise fail("file not found", ACCEPTED)
    if path.is_dir():
        raise fail("this is a folder, not a file", ACCEPTED)
    if ext not in SUPPORTED_EXTENSIONS:
        what = f"the extension '{path.suffix}'" if path.suffix else "a file without an extension"
        raise fail(f"{what} is not a supported point-cloud or mesh format", ACCEPTED)
    size = path.stat().st_size
    if size == 0:
        raise fail("the file is empty (0 bytes)")
    if size > max_bytes:
        raise fail(f"the file is {_human_bytes(size)}, larger than the limit of {_human_bytes(max_bytes)} "
                   f"(max_bytes); decimate or crop it before loading", ACCEPTED)
    if mesh_samples is not None and mesh_samples < 0:
        raise fail(f"mesh_samples must be >= 0, got {mesh_samples}", ACCEPTED)
    # a parser may allocate at most this many points; with decimate_to a bigger cloud is allowed
    # (it is decimated afterwards) but still bounded, because compressed formats can expand a lot
    cap = max_points if decimate_to is None else max(max_points, 4 * MAX_POINTS)

    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as e:
        raise fail(f"the file cannot be read ({e.strerror or e})", ACCEPTED) from e
    kind, looks_like = _sniff(head)
    _check_content_matches(ext, kind, looks_like, fail)

    parser = _PARSERS[ext]
    try:
        raw = parser(path, ext=ext, cap=cap, h5_key=h5_key, h5_index=h5_index,
                     decode_limit=DECODE_FACTOR * max_bytes)
        is_mesh = raw.faces is not None and len(raw.faces) > 0
        if is_mesh and mesh_samples:
            if mesh_samples > cap:
                raise _Fail(f"mesh_samples={mesh_samples} is more than the point limit of {cap:,}")
            raw = _sample_mesh(raw, mesh_samples, seed)
        raw.info["is_mesh"] = bool(is_mesh)
        cloud = _finish(raw, name, max_points, decimate_to, seed)
    except PointCloudError:
        raise
    except _Fail as e:
        raise fail(str(e)) from None
    except MemoryError as e:
        raise fail(f"not enough memory to read this {_FORMAT_NAMES[ext]} file ({_human_bytes(size)})") from e
    except Exception as e:  # a bug or a file we did not foresee: never a traceback from inside a parser
        raise fail(f"could not be read as a {_FORMAT_NAMES[ext]} file ({type(e).__name__}: {e}); "
                   f"the file may be damaged or use an unusual variant of the format") from e
    cloud.info.setdefault("format", ext[1:])
    cloud.info["file_bytes"] = size
    return cloud


def h5_datasets(path) -> dict[str, tuple[int, ...]]:
    """Every dataset in an HDF5 file (nested names joined by '/') -> its shape, for a key chooser."""
    path = Path(path)
    try:
        import h5py
        with h5py.File(path, "r") as f:
            return _h5_shapes(f)
    except _Fail as e:
        raise PointCloudError(f"{path.name}: {e}. {_HINTS['.h5']}", path) from None
    except Exception as e:
        raise PointCloudError(f"{path.name}: could not list the datasets of this HDF5 file ({type(e).__name__}: {e}). "
                              f"{_HINTS['.h5']}", path) from e


def normalize(points: np.ndarray) -> np.ndarray:
    """Centre at the mean and scale so the farthest point is at distance 1; float32 (N, 3)."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0:
        raise ValueError(f"normalize expects a non-empty (N, 3) array, got shape {p.shape}")
    p = p - p.mean(axis=0)
    scale = np.sqrt((p * p).sum(axis=1).max())
    if scale > 0:
        p /= scale
    return p.astype(np.float32)


def resample(points: np.ndarray, n: int, method: str = "fps", seed: int = 0, start: str = "index0") -> np.ndarray:
    """Indices (n,) int64 of n points: farthest point sampling or random; n > N repeats points.

    start (FPS only): "index0" starts at the first point (training and the field's code), "geometric" at the
    point farthest from the centroid (pcdviz.ops.FPS_STARTS), so a permutation of the points gives the same
    points. With n > N every point is taken and the extra n - N follow: index0 cycles in the file's order,
    geometric in FPS order (so which points repeat does not depend on the file's order either)."""
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[0] == 0:
        raise ValueError(f"resample expects a non-empty (N, 3) array, got shape {pts.shape}")
    if n < 1:
        raise ValueError(f"resample needs n >= 1, got {n}")
    N = pts.shape[0]
    if method == "random":
        rng = np.random.default_rng(seed)
        if n <= N:
            return rng.choice(N, n, replace=False).astype(np.int64)
        return np.concatenate([rng.permutation(N), rng.integers(0, N, n - N)]).astype(np.int64)
    if method != "fps":
        raise ValueError(f"resample method must be 'fps' or 'random', got {method!r}")
    if start not in ("index0", "geometric"):
        raise ValueError(f"resample start must be 'index0' or 'geometric', got {start!r}")
    xyz = np.ascontiguousarray(pts[:, :3], dtype=np.float32)
    if n >= N:  # every point, then cycle through them again
        order = np.arange(N, dtype=np.int64) if start == "index0" else _farthest_point_indices(xyz, N, start)
        return np.resize(order, n)
    return _farthest_point_indices(xyz, n, start)


def decimate_for_display(points: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices (sorted, int64) of a fixed-seed random subset of at most n points; milliseconds for millions."""
    N = len(points)
    if n >= N:
        return np.arange(N, dtype=np.int64)
    if n < 1:
        raise ValueError(f"decimate_for_display needs n >= 1, got {n}")
    # uniform random keeps the density the eye expects; sorting keeps the file's order (and cache locality)
    idx = np.random.default_rng(seed).choice(N, n, replace=False)
    idx.sort()
    return idx.astype(np.int64, copy=False)


def save_ply(path, points, colors=None, *, scalar=None, binary: bool = True, normals=None,
             labels=None, scalar_name: str = "attention") -> None:
    """Write a PLY point cloud: float xyz, optional normals, uchar colours, a float scalar and int labels."""
    pts = np.asarray(points, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"save_ply expects points of shape (N, 3), got {pts.shape}")
    n = len(pts)
    fields: list[tuple[str, str, np.ndarray]] = [("x", "f4", pts[:, 0]), ("y", "f4", pts[:, 1]), ("z", "f4", pts[:, 2])]
    if normals is not None:
        nrm = _check_cols(normals, n, "normals").astype(np.float32)
        fields += [("nx", "f4", nrm[:, 0]), ("ny", "f4", nrm[:, 1]), ("nz", "f4", nrm[:, 2])]
    if colors is not None:
        c = _check_cols(colors, n, "colors")
        if c.dtype != np.uint8:
            c = np.clip(np.rint(np.asarray(c, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
        fields += [("red", "u1", c[:, 0]), ("green", "u1", c[:, 1]), ("blue", "u1", c[:, 2])]
    if scalar is not None:
        s = np.asarray(scalar, dtype=np.float32).reshape(-1)
        if s.shape != (n,):
            raise ValueError(f"save_ply scalar must have shape ({n},), got {np.shape(scalar)}")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", scalar_name):
            raise ValueError(f"save_ply scalar_name must be an identifier, got {scalar_name!r}")
        fields.append((scalar_name, "f4", s))
    if labels is not None:
        lab = np.asarray(labels).reshape(-1)
        if lab.shape != (n,):
            raise ValueError(f"save_ply labels must have shape ({n},), got {np.shape(labels)}")
        fields.append(("label", "i4", lab.astype(np.int32)))
    ply_types = {"f4": "float", "u1": "uchar", "i4": "int"}
    header = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0", "comment written by pcdviz",
              f"element vertex {n}"]
    header += [f"property {ply_types[t]} {name}" for name, t, _ in fields]
    header.append("end_header")
    path = Path(path)
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        rec = np.empty(n, dtype=[(name, "<" + t) for name, t, _ in fields])
        for name, _, col in fields:
            rec[name] = col
        if binary:
            f.write(rec.tobytes())
        elif n:
            np.savetxt(f, rec, fmt=" ".join("%.9g" if t == "f4" else "%d" for _, t, _ in fields))


def _check_cols(a, n: int, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.shape != (n, 3):
        raise ValueError(f"save_ply {what} must have shape ({n}, 3), got {a.shape}")
    return a


# ---------------------------------------------------------------------------------------------
# Sniffing: what the first bytes say the file is

_SIGNATURES = [
    (b"\x89PNG\r\n\x1a\n", "png", "a PNG image"),
    (b"\xff\xd8\xff", "jpeg", "a JPEG image"),
    (b"GIF87a", "gif", "a GIF image"), (b"GIF89a", "gif", "a GIF image"),
    (b"PK\x03\x04", "zip", "a ZIP archive (an .npz file is one)"), (b"PK\x05\x06", "zip", "an empty ZIP archive"),
    (b"\x89HDF\r\n\x1a\n", "hdf5", "an HDF5 file"),
    (b"\x93NUMPY", "npy", "a NumPy .npy array"),
    (b"glTF", "glb", "a binary glTF (.glb) model"),
    (b"%PDF", "pdf", "a PDF document"),
    (b"\x1f\x8b", "gzip", "a gzip-compressed file; decompress it first"),
    (b"\xfd7zXZ\x00", "xz", "an xz-compressed file; decompress it first"),
    (b"7z\xbc\xaf\x27\x1c", "7z", "a 7-Zip archive; extract it first"),
    (b"Rar!", "rar", "a RAR archive; extract it first"),
    (b"LASF", "las", "a LAS lidar file, which is not supported; convert it to .ply or .pcd"),
    (b"RIFF", "riff", "a RIFF file (WebP image, WAV audio or AVI video)"),
    (b"\xff\xfe", "utf16", "UTF-16 text; save it as plain ASCII/UTF-8 text"),
    (b"\xfe\xff", "utf16", "UTF-16 text; save it as plain ASCII/UTF-8 text"),
]
_OFF_RE = re.compile(rb"^(ST)?C?N?4?n?OFF\b")
_STRONG_KINDS = {"png", "jpeg", "gif", "zip", "hdf5", "npy", "glb", "pdf", "gzip", "xz", "7z", "rar", "las",
                 "ply", "pcd", "html"}
_KIND_EXT = {"ply": ".ply", "pcd": ".pcd", "npy": ".npy", "zip": ".npz", "hdf5": ".h5", "glb": ".glb", "off": ".off"}


def _sniff(head: bytes) -> tuple[str, str]:
    """(kind, description) of a file from its first bytes."""
    for magic, kind, desc in _SIGNATURES:
        if head.startswith(magic):
            return kind, desc
    for off in (512, 1024, 2048):  # HDF5 allows a user block before the signature
        if head[off:off + 8] == b"\x89HDF\r\n\x1a\n":
            return "hdf5", "an HDF5 file"
    text = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
    text = text.lstrip()
    low = text[:64].lower()
    if re.match(rb"ply\s", text[:4] + b" "):
        return "ply", "a PLY file"
    if low.startswith(b"# .pcd") or low.startswith(b"version") or low.startswith(b"fields"):
        return "pcd", "a PCD file"
    if low.startswith(b"<!doctype html") or low.startswith(b"<html"):
        return "html", "an HTML web page (perhaps a failed download)"
    if low.startswith(b"<?xml"):
        return "xml", "an XML document"
    if _OFF_RE.match(text):
        return "off", "an OFF mesh"
    if text.startswith(b"{"):
        return "json", "a JSON document"
    if low.startswith(b"solid"):
        return "stl_ascii", "an ASCII STL mesh"
    if b"\x00" in head:
        return "binary", "binary data"
    return "text", "text"


def _check_content_matches(ext, kind, looks_like, fail) -> None:
    """Refuse a file whose content is another format than its extension says (e.g. a PNG renamed .ply)."""
    fmt = _FORMAT_NAMES[ext]
    ok = {
        ".ply": {"ply"}, ".pcd": {"pcd"}, ".npy": {"npy"}, ".npz": {"zip"}, ".h5": {"hdf5"}, ".hdf5": {"hdf5"},
        ".glb": {"glb"}, ".gltf": {"json"}, ".off": {"off", "text"}, ".obj": {"text"},
    }.get(ext, {"text"})
    # a binary STL header is 80 arbitrary bytes, so only refuse what is clearly something else
    if kind in ok or (ext == ".stl" and kind not in _STRONG_KINDS):
        return
    rename = ""
    if kind in _KIND_EXT and _KIND_EXT[kind] != ext:
        rename = f"; if so, rename it to {_KIND_EXT[kind]}"
    problem = f"this file is not a {fmt} file (it looks like {looks_like}{rename})"
    if kind in ("binary",) and ext in _TEXT_EXTS + (".obj", ".off"):
        problem = f"this file is binary, not text, so it is not a {fmt} file"
    raise fail(problem, _HINTS.get(ext, "") + " " + ACCEPTED)


# ---------------------------------------------------------------------------------------------
# Shared helpers for parsers

_COLOR_NAMES = [("red", "green", "blue"), ("r", "g", "b"), ("diffuse_red", "diffuse_green", "diffuse_blue")]
_NORMAL_NAMES = [("nx", "ny", "nz"), ("normal_x", "normal_y", "normal_z"), ("normalx", "normaly", "normalz")]
_LABEL_NAMES = ("label", "labels", "class", "part", "part_id", "part_label", "pid", "seg", "semantic",
                "scalar_label", "segment")


def _pick_named(names) -> dict:
    """Map roles (xyz, normals, colors, label) to field names, case-insensitively."""
    low = {n.lower(): n for n in names}
    out = {}
    if all(k in low for k in ("x", "y", "z")):
        out["xyz"] = (low["x"], low["y"], low["z"])
    for triple in _NORMAL_NAMES:
        if all(k in low for k in triple):
            out["normals"] = tuple(low[k] for k in triple)
            break
    for triple in _COLOR_NAMES:
        if all(k in low for k in triple):
            out["colors"] = tuple(low[k] for k in triple)
            break
    for k in _LABEL_NAMES:
        if k in low:
            out["label"] = low[k]
            break
    return out


def _stack(get, names) -> np.ndarray:
    return np.stack([np.asarray(get(n)) for n in names], axis=1)


def _looks_like_normals(a: np.ndarray) -> bool:
    a = a[np.isfinite(a).all(axis=1)]
    if len(a) == 0 or np.abs(a).max() > 1.001:
        return False
    norms = np.sqrt((a.astype(np.float64) ** 2).sum(axis=1))
    return bool(np.median(np.abs(norms - 1.0)) < 0.01)


def _looks_like_colors(a: np.ndarray) -> bool:
    a = a[np.isfinite(a).all(axis=1)]
    if len(a) == 0 or a.min() < 0:
        return False
    mx = a.max()
    return bool(mx <= 1.0 or (mx <= 255.0 and np.all(a == np.round(a))))


def _looks_like_labels(a: np.ndarray) -> bool:
    a = a[np.isfinite(a)]
    return bool(len(a) and a.min() >= 0 and np.all(a == np.round(a)) and a.max() < 1e6)


def _interpret_columns(arr: np.ndarray, names=None, ext: str | None = None) -> _Raw:
    """A numeric table (N, C>=3) -> points and whatever the extra columns are (by name or by content)."""
    C = arr.shape[1]
    if C < 3:
        raise _Fail(f"each point needs at least 3 values (x y z), but the data has {C} column{'s' * (C != 1)}")
    raw = _Raw(points=arr[:, :3])
    cols = ["x", "y", "z"]
    if names is not None and len(names) == C:
        roles = _pick_named(names)
        index = {n: i for i, n in enumerate(names)}
        if "xyz" in roles:
            raw.points = arr[:, [index[n] for n in roles["xyz"]]]
        if "normals" in roles:
            raw.normals = arr[:, [index[n] for n in roles["normals"]]]
        if "colors" in roles:
            raw.colors = arr[:, [index[n] for n in roles["colors"]]]
        if "label" in roles:
            raw.labels = arr[:, index[roles["label"]]]
        raw.info["columns"] = list(names)
        return raw
    if ext == ".xyzn" and C >= 6:
        raw.normals, cols = arr[:, 3:6], cols + ["nx", "ny", "nz"]
    elif ext == ".xyzrgb" and C >= 6:
        raw.colors, cols = arr[:, 3:6], cols + ["r", "g", "b"]
    elif ext == ".pts" and C in (4, 7):  # Leica .pts: x y z intensity [r g b]
        cols.append("intensity")
        if C == 7:
            raw.colors, cols = arr[:, 4:7], cols + ["r", "g", "b"]
    else:
        nxt = 3
        for _ in range(2):  # up to two triplets after xyz: normals and/or colours, in either order
            if C >= nxt + 3:
                block = arr[:, nxt:nxt + 3]
                if raw.normals is None and _looks_like_normals(block):
                    raw.normals, cols, nxt = block, cols + ["nx", "ny", "nz"], nxt + 3
                    continue
                if raw.colors is None and _looks_like_colors(block):
                    raw.colors, cols, nxt = block, cols + ["r", "g", "b"], nxt + 3
                    continue
            break
        if C == nxt + 1 and nxt > 3 and _looks_like_labels(arr[:, nxt]):  # e.g. ShapeNetPart x y z nx ny nz part
            raw.labels, cols = arr[:, nxt], cols + ["label"]
    cols += [f"extra{i}" for i in range(len(cols), C)]
    raw.info["columns"] = cols
    return raw


def _fromstring(text: bytes | str) -> np.ndarray:
    """All whitespace-separated numbers in text as float64; raises ValueError on a non-number.

    (NumPy >= 2.3 raises on unmatched data; older NumPy only warned, and catching that warning meant
    switching the process-wide warning filters, which in a threaded server turned other threads'
    warnings into exceptions.)"""
    return np.fromstring(text, dtype=np.float64, sep=" ")


def _first_bad_token(lines, first_line_no: int = 1) -> str:
    """'line L: "tok"' for the first token that is not a number (for error messages)."""
    for i, line in enumerate(lines):
        for tok in re.split(rb"[\s,;]+", line.strip()):
            if not tok:
                continue
            try:
                float(tok)
            except ValueError:
                return f'line {i + first_line_no}: "{tok[:40].decode("latin-1")}"'
    return "an unreadable value"


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _fmt_count(n: int) -> str:
    return f"{n:,}"


def _too_many(n: int, cap: int) -> str:
    return (f"it has {n:,} points, more than the limit of {cap:,} (max_points); pass decimate_to to load a "
            f"random subset, or raise max_points")


# ---------------------------------------------------------------------------------------------
# PLY

_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


@dataclass
class _PlyProp:
    name: str
    dtype: str                    # numpy type code without byte order
    count_dtype: str | None = None  # set for list properties


@dataclass
class _PlyElement:
    name: str
    count: int
    props: list = field(default_factory=list)


def _parse_ply_header(data: bytes):
    end = data.find(b"end_header", 0, 1 << 20)
    if end < 0:
        raise _Fail("the PLY header has no 'end_header' line (the file is truncated or not a PLY file)")
    nl = data.find(b"\n", end)
    body_start = len(data) if nl < 0 else nl + 1
    lines = data[:end].decode("latin-1").splitlines()
    fmt, elements = None, []
    for i, line in enumerate(lines[1:], start=2):
        tok = line.split()
        if not tok or tok[0] in ("comment", "obj_info"):
            continue
        if tok[0] == "format":
            if len(tok) < 2 or tok[1] not in ("ascii", "binary_little_endian", "binary_big_endian"):
                raise _Fail(f"header line {i}: unknown PLY format '{line.strip()}' (expected ascii, "
                            f"binary_little_endian or binary_big_endian)")
            fmt = tok[1]
        elif tok[0] == "element":
            if len(tok) != 3 or not tok[2].isdigit():
                raise _Fail(f"header line {i}: malformed element line '{line.strip()}'")
            elements.append(_PlyElement(tok[1], int(tok[2])))
        elif tok[0] == "property":
            if not elements:
                raise _Fail(f"header line {i}: a property before any element")
            if len(tok) == 5 and tok[1] == "list":
                if tok[2] not in _PLY_TYPES or tok[3] not in _PLY_TYPES:
                    raise _Fail(f"header line {i}: unknown PLY type in '{line.strip()}'")
                elements[-1].props.append(_PlyProp(tok[4], _PLY_TYPES[tok[3]], _PLY_TYPES[tok[2]]))
            elif len(tok) == 3 and tok[1] in _PLY_TYPES:
                elements[-1].props.append(_PlyProp(tok[2], _PLY_TYPES[tok[1]]))
            else:
                raise _Fail(f"header line {i}: malformed or unknown property '{line.strip()}'")
    if fmt is None:
        raise _Fail("the PLY header has no 'format' line")
    return fmt, elements, body_start


def _unique_names(props) -> list[str]:
    seen, out = {}, []
    for p in props:
        k = seen.get(p.name, 0)
        seen[p.name] = k + 1
        out.append(p.name if k == 0 else f"{p.name}_{k}")
    return out


def _ply_binary_element(data, pos, el: _PlyElement, bo: str):
    """Read one binary element at pos -> (dict name -> array or (counts, flat) for lists, new pos)."""
    names = _unique_names(el.props)
    remaining = len(data) - pos
    has_list = any(p.count_dtype for p in el.props)
    if not has_list:
        dt = np.dtype([(n, bo + p.dtype) for n, p in zip(names, el.props)])
        need = el.count * dt.itemsize
        if need > remaining:
            raise _Fail(f"the file is truncated: the header declares {_fmt_count(el.count)} '{el.name}' elements "
                        f"({_human_bytes(need)}) but only {_human_bytes(remaining)} of data follow")
        arr = np.frombuffer(data, dtype=dt, count=el.count, offset=pos)
        return {n: arr[n] for n in names}, pos + need
    # the smallest possible size (all lists empty) is a cheap bound that catches absurd counts
    min_row = sum(np.dtype(p.count_dtype or p.dtype).itemsize for p in el.props)
    if el.count * min_row > remaining:
        raise _Fail(f"the file is truncated: the header declares {_fmt_count(el.count)} '{el.name}' elements "
                    f"(at least {_human_bytes(el.count * min_row)}) but only {_human_bytes(remaining)} of data follow")
    if el.count == 0:
        return {n: (np.zeros(0, np.int64), np.zeros(0)) if p.count_dtype else np.zeros(0)
                for n, p in zip(names, el.props)}, pos
    # fast path: every row has the same list lengths as the first row (e.g. all triangles)
    q, first_counts, fields = pos, [], []
    for n, p in zip(names, el.props):
        if p.count_dtype:
            k = int(np.frombuffer(data, bo + p.count_dtype, 1, q)[0]) if q < len(data) else -1
            if k < 0:
                break
            first_counts.append(k)
            fields += [(f"__n_{n}", bo + p.count_dtype), (n, bo + p.dtype, (k,))]
            q += np.dtype(p.count_dtype).itemsize + k * np.dtype(p.dtype).itemsize
        else:
            fields.append((n, bo + p.dtype))
            q += np.dtype(p.dtype).itemsize
    else:
        dt = np.dtype(fields)
        if el.count * dt.itemsize <= remaining:
            arr = np.frombuffer(data, dtype=dt, count=el.count, offset=pos)
            list_names = [n for n, p in zip(names, el.props) if p.count_dtype]
            if all(np.all(arr[f"__n_{n}"] == k) for n, k in zip(list_names, first_counts)):
                out = {}
                for n, p in zip(names, el.props):
                    if p.count_dtype:
                        flat = arr[n].reshape(-1)
                        out[n] = (np.full(el.count, arr[n].shape[1] if arr[n].ndim == 2 else 1, np.int64), flat)
                    else:
                        out[n] = arr[n]
                return out, pos + el.count * dt.itemsize
    # slow path: variable-length rows, one Python step per row (mixed polygons)
    mv = memoryview(data)
    cols = {n: [] for n in names}
    counts = {n: np.empty(el.count, np.int64) for n, p in zip(names, el.props) if p.count_dtype}
    plan = []
    for n, p in zip(names, el.props):
        if p.count_dtype:
            plan.append((n, struct.Struct(bo + np.dtype(p.count_dtype).char), np.dtype(bo + p.dtype)))
        else:
            plan.append((n, None, np.dtype(bo + p.dtype)))
    end = len(data)
    for r in range(el.count):
        for n, cstruct, idt in plan:
            if cstruct is None:
                _check_row_end(pos, idt.itemsize, end, el, r)
                cols[n].append(mv[pos:pos + idt.itemsize])
                pos += idt.itemsize
            else:
                _check_row_end(pos, cstruct.size, end, el, r)
                k = cstruct.unpack_from(data, pos)[0]
                pos += cstruct.size
                nbytes = k * idt.itemsize
                _check_row_end(pos, nbytes, end, el, r)
                counts[n][r] = k
                cols[n].append(mv[pos:pos + nbytes])
                pos += nbytes
    out = {}
    for n, cstruct, idt in plan:
        buf = b"".join(cols[n])
        flat = np.frombuffer(buf, dtype=idt)
        out[n] = (counts[n], flat) if cstruct is not None else flat
    return out, pos


def _check_row_end(pos, nbytes, end, el, r) -> None:
    """Raise if a row of a binary PLY element runs past the end of the file."""
    if pos + nbytes > end:
        raise _Fail(f"the file is truncated: it ends inside '{el.name}' element {r + 1:,} of {el.count:,}")


def _ply_ascii_elements(body: bytes, elements, wanted: set):
    """Parse the ASCII body: one line per element row; extra tokens at the end of a line are ignored."""
    if b"\r" in body:
        body = body.replace(b"\r", b"")
    lines = body.split(b"\n")
    if re.search(rb"(^|\n)[ \t]*\n", body):  # blank lines are not rows
        lines = [ln for ln in lines if ln.strip()]
    pos, out = 0, {}
    for el in elements:
        if not wanted - set(out):
            break
        if el.count > len(lines) - pos:
            raise _Fail(f"the file is truncated: the header declares {_fmt_count(el.count)} '{el.name}' elements "
                        f"but only {max(0, len(lines) - pos):,} lines of data are left for them")
        rows = lines[pos:pos + el.count]
        first_line_no = pos + 1
        pos += el.count
        names = _unique_names(el.props)
        if el.count == 0:
            out[el.name] = {n: (np.zeros(0, np.int64), np.zeros(0)) if p.count_dtype else np.zeros(0)
                            for n, p in zip(names, el.props)}
            continue
        try:
            first = _fromstring(rows[0]) if rows else np.zeros(0)
        except ValueError:
            raise _Fail(f"the '{el.name}' data contains something that is not a number "
                        f"({_first_bad_token(rows[:1], first_line_no)} after the header)") from None
        # column layout from the first row: (name, column, list length or None)
        layout, c = [], 0
        for n, p in zip(names, el.props):
            if p.count_dtype:
                k = _list_length(first[c], first_line_no) if c < first.size else 0
                layout.append((n, c, k))
                c += 1 + k
            else:
                layout.append((n, c, None))
                c += 1
        width = c
        try:
            flat = _fromstring(b"\n".join(rows))
        except ValueError:
            raise _Fail(f"the '{el.name}' data contains something that is not a number "
                        f"({_first_bad_token(rows, first_line_no)} after the header)") from None
        row_width = first.size
        if row_width >= width and flat.size == el.count * row_width:
            block = flat.reshape(el.count, row_width)
            if all(k is None or np.all(block[:, c] == k) for _, c, k in layout):
                out[el.name] = {n: block[:, c] if k is None else
                                (np.full(el.count, k, np.int64), block[:, c + 1:c + 1 + k].reshape(-1))
                                for n, c, k in layout}
                continue
        # rows of different lengths (mixed polygons): one line at a time
        cols = {n: np.empty(el.count) for n, p in zip(names, el.props) if not p.count_dtype}
        cnt = {n: np.empty(el.count, np.int64) for n, p in zip(names, el.props) if p.count_dtype}
        lists = {n: [] for n in cnt}
        for r, ln in enumerate(rows):
            try:
                vals = np.array(ln.split(), dtype=np.float64)
            except ValueError:
                raise _Fail(f"the '{el.name}' data contains something that is not a number "
                            f"({_first_bad_token([ln], first_line_no + r)} after the header)") from None
            c = 0
            for n, p in zip(names, el.props):
                if c >= vals.size:
                    raise _Fail(f"data line {first_line_no + r} has too few values for a '{el.name}' element")
                if p.count_dtype:
                    k = _list_length(vals[c], first_line_no + r)
                    if k < 0 or c + 1 + k > vals.size:
                        raise _Fail(f"data line {first_line_no + r} says its list has {k} values but it holds fewer")
                    cnt[n][r] = k
                    lists[n].append(vals[c + 1:c + 1 + k])
                    c += 1 + k
                else:
                    cols[n][r] = vals[c]
                    c += 1
        out[el.name] = {n: cols[n] if n in cols else (cnt[n], np.concatenate(lists[n])) for n in names}
    return out


def _list_length(value: float, line_no: int) -> int:
    """A PLY/OFF list length read as a number: a non-negative integer, or a sentence saying it is not."""
    if not (np.isfinite(value) and value == int(value) and 0 <= value <= 1 << 31):
        raise _Fail(f"data line {line_no}: a list length of {value:g} is not a count")
    return int(value)


def _triangulate(counts: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """Fan-triangulate polygons given as (counts, flat vertex indices) -> (M, 3) int64."""
    counts = np.asarray(counts, dtype=np.int64)
    flat = np.asarray(flat).astype(np.int64, copy=False)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    tris = []
    for k in np.unique(counts):
        if k < 3:
            continue
        s = starts[counts == k]
        for j in range(1, int(k) - 1):
            tris.append(np.stack([flat[s], flat[s + j], flat[s + j + 1]], axis=1))
    return np.concatenate(tris) if tris else np.zeros((0, 3), np.int64)


def _parse_ply(path: Path, *, cap: int, **_) -> _Raw:
    data = _read_bytes(path)
    fmt, elements, body_start = _parse_ply_header(data)
    vert = next((e for e in elements if e.name in ("vertex", "vertices", "point", "points")), None)
    if vert is None:
        vert = next((e for e in elements if {"x", "y", "z"} <= {p.name.lower() for p in e.props}), None)
    if vert is None:
        raise _Fail(f"the PLY file has no vertex element (elements: {', '.join(e.name for e in elements) or 'none'})")
    roles = _pick_named([p.name for p in vert.props])
    if "xyz" not in roles:
        raise _Fail(f"the PLY vertex element has no x, y, z properties (found: {', '.join(p.name for p in vert.props)})")
    # a header that promises more than the file holds is truncated, whatever the count (checked first)
    remaining = len(data) - body_start
    if fmt == "ascii":
        have = data.count(b"\n", body_start)
        before = sum(e.count for e in elements[:elements.index(vert)])
        if before + vert.count > have + 1:
            raise _Fail(f"the file is truncated: the header declares {_fmt_count(vert.count)} 'vertex' elements "
                        f"but the data has only {have:,} lines")
    else:
        least = 0
        for e in elements[:elements.index(vert) + 1]:
            least += e.count * sum(np.dtype(p.count_dtype or p.dtype).itemsize for p in e.props)
        if least > remaining:
            raise _Fail(f"the file is truncated: the header declares {_fmt_count(vert.count)} 'vertex' elements "
                        f"(at least {_human_bytes(least)}) but only {_human_bytes(remaining)} of data follow")
    if vert.count > cap:
        raise _Fail(_too_many(vert.count, cap))
    face = next((e for e in elements if e.name in ("face", "faces")), None)
    wanted = {vert.name} | ({face.name} if face is not None else set())
    if fmt == "ascii":
        parsed = _ply_ascii_elements(data[body_start:], elements, wanted)
    else:
        bo = "<" if fmt == "binary_little_endian" else ">"
        parsed, pos = {}, body_start
        for el in elements:
            if not wanted - set(parsed):
                break
            parsed[el.name], pos = _ply_binary_element(data, pos, el, bo)
    v = parsed[vert.name]
    raw = _Raw(points=_stack(v.__getitem__, roles["xyz"]))
    if "normals" in roles:
        raw.normals = _stack(v.__getitem__, roles["normals"])
    if "colors" in roles:
        types = {p.name: p.dtype for p in vert.props}
        c = _stack(v.__getitem__, roles["colors"])
        raw.colors = c.astype(np.float32) / 65535.0 if types[roles["colors"][0]] == "u2" else c
    if "label" in roles:
        raw.labels = v[roles["label"]]
    raw.info.update(format=f"ply ({fmt})", fields=[p.name for p in vert.props], n_vertices=vert.count)
    if face is not None and face.count > 0:
        f = parsed[face.name]
        key = next((p.name for p in face.props if p.name in ("vertex_indices", "vertex_index") and p.count_dtype), None)
        key = key or next((p.name for p in face.props if p.count_dtype), None)
        if key is not None:
            counts, flat = f[key]
            raw.faces = _triangulate(counts, flat)
            raw.info["n_faces"] = face.count
    return raw


# ---------------------------------------------------------------------------------------------
# PCD (Point Cloud Library)

_PCD_TYPES = {("F", 4): "f4", ("F", 8): "f8", ("I", 1): "i1", ("I", 2): "i2", ("I", 4): "i4", ("I", 8): "i8",
              ("U", 1): "u1", ("U", 2): "u2", ("U", 4): "u4", ("U", 8): "u8"}


def _lzf_decompress(src: bytes, out_len: int) -> bytes:
    """Decompress LZF (liblzf, as PCL's binary_compressed uses) into exactly out_len bytes."""
    out = bytearray(out_len)
    ip, op, n = 0, 0, len(src)
    while ip < n:
        ctrl = src[ip]
        ip += 1
        if ctrl < 32:  # literal run of ctrl + 1 bytes
            length = ctrl + 1
            if ip + length > n:
                raise _Fail("the compressed data is truncated (an LZF literal run goes past its end)")
            if op + length > out_len:
                raise _Fail("the compressed data is damaged (it decompresses to more bytes than the header says)")
            out[op:op + length] = src[ip:ip + length]
            ip += length
            op += length
        else:  # back reference: copy length bytes from distance behind the output position
            length = ctrl >> 5
            if length == 7:
                if ip >= n:
                    raise _Fail("the compressed data is truncated (inside an LZF back reference)")
                length += src[ip]
                ip += 1
            if ip >= n:
                raise _Fail("the compressed data is truncated (inside an LZF back reference)")
            ref = op - ((ctrl & 0x1F) << 8) - src[ip] - 1
            ip += 1
            length += 2
            if ref < 0:
                raise _Fail("the compressed data is damaged (an LZF back reference points before the start)")
            if op + length > out_len:
                raise _Fail("the compressed data is damaged (it decompresses to more bytes than the header says)")
            dist = op - ref
            if dist >= length:
                out[op:op + length] = out[ref:ref + length]
            else:  # overlapping copy repeats the last `dist` bytes
                pattern = bytes(out[ref:op])
                out[op:op + length] = (pattern * (length // dist + 1))[:length]
            op += length
    if op != out_len:
        raise _Fail(f"the compressed data is truncated (it decompresses to {op:,} bytes, the header says {out_len:,})")
    return bytes(out)


def _header_int(hdr: dict, key: str, text: str) -> int:
    """A non-negative integer from a PCD header line, or a sentence naming the line."""
    if not re.fullmatch(r"\d{1,19}", text):
        raise _Fail(f"the PCD header's {key} line should hold a non-negative whole number, got "
                    f"'{' '.join(hdr.get(key, []))[:40]}'")
    return int(text)


def _parse_pcd(path: Path, *, cap: int, decode_limit: int = DECODE_FACTOR * MAX_FILE_BYTES, **_) -> _Raw:
    data = _read_bytes(path)
    hdr, pos, line_no = {}, 0, 0
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0 or pos > 1 << 20:
            raise _Fail("the PCD header has no DATA line (the file is truncated or not a PCD file)")
        line = data[pos:nl].decode("latin-1").strip()
        pos, line_no = nl + 1, line_no + 1
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        hdr[key.upper()] = value.split()
        if key.upper() == "DATA":
            break
    for k in ("FIELDS", "SIZE", "TYPE"):
        if k not in hdr:
            raise _Fail(f"the PCD header has no {k} line")
    names = hdr["FIELDS"]
    counts = [_header_int(hdr, "COUNT", c) for c in hdr.get("COUNT", ["1"] * len(names))]
    if 0 in counts:
        raise _Fail("the PCD header's COUNT line has a 0: every field needs at least one value")
    try:
        sizes = [int(s) for s in hdr["SIZE"]]
        types = [t.upper() for t in hdr["TYPE"]]
        dts = [_PCD_TYPES[(t, s)] for t, s in zip(types, sizes)]
    except (KeyError, ValueError):
        raise _Fail(f"the PCD header has an unknown TYPE/SIZE combination ({' '.join(hdr['TYPE'])} / "
                    f"{' '.join(hdr['SIZE'])}); accepted: F 4/8, I 1/2/4/8, U 1/2/4/8") from None
    if not (len(names) == len(sizes) == len(types) == len(counts)):
        raise _Fail("the PCD header's FIELDS, SIZE, TYPE and COUNT lines have different lengths")
    if "POINTS" in hdr:
        n = _header_int(hdr, "POINTS", (hdr["POINTS"] or [""])[0])
    else:
        n = _header_int(hdr, "WIDTH", hdr.get("WIDTH", ["0"])[0]) * _header_int(hdr, "HEIGHT", hdr.get("HEIGHT", ["1"])[0])
    mode = hdr["DATA"][0].lower() if hdr["DATA"] else ""
    point_size = sum(s * c for s, c in zip(sizes, counts))
    if mode == "binary" and n * point_size > len(data) - pos:
        raise _Fail(f"the file is truncated: the header declares {_fmt_count(n)} points "
                    f"({_human_bytes(n * point_size)}) but only {_human_bytes(len(data) - pos)} of data follow")
    if n > cap:
        raise _Fail(_too_many(n, cap))
    uniq = _unique_names([_PlyProp(nm, "") for nm in names])
    fields: dict[str, np.ndarray] = {}
    if mode == "ascii":
        try:
            flat = _fromstring(data[pos:])
        except ValueError:
            raise _Fail(f"the data contains something that is not a number "
                        f"({_first_bad_token(data[pos:].splitlines(), line_no + 1)})") from None
        width = sum(counts)
        if flat.size < n * width:
            raise _Fail(f"the file is truncated: the header declares {_fmt_count(n)} points but the data holds "
                        f"{flat.size // max(1, width):,}")
        table = flat[:n * width].reshape(n, width)
        c0 = 0
        for nm, dt, c in zip(uniq, dts, counts):
            col = table[:, c0:c0 + c]
            if nm.lower() in ("rgb", "rgba"):  # the packed colour is a float or an int whose bits are 0x00RRGGBB
                col = col.astype(np.float32).view(np.uint32) if dt[0] == "f" else col.astype(np.uint32)
            fields[nm] = col[:, 0] if c == 1 else col
            c0 += c
    elif mode in ("binary", "binary_compressed"):
        if mode == "binary":
            need = n * point_size
            if need > len(data) - pos:
                raise _Fail(f"the file is truncated: the header declares {_fmt_count(n)} points "
                            f"({_human_bytes(need)}) but only {_human_bytes(len(data) - pos)} of data follow")
            dt = np.dtype([(nm, "<" + d, (c,)) if c > 1 else (nm, "<" + d) for nm, d, c in zip(uniq, dts, counts)])
            arr = np.frombuffer(data, dtype=dt, count=n, offset=pos)
            fields = {nm: arr[nm] for nm in uniq}
        else:
            if len(data) - pos < 8:
                raise _Fail("the file is truncated: the compressed data block is missing")
            comp_size, raw_size = struct.unpack_from("<II", data, pos)
            if raw_size != n * point_size:
                raise _Fail(f"the compressed block says {raw_size:,} bytes but {_fmt_count(n)} points of "
                            f"{point_size} bytes need {n * point_size:,} (damaged header or data)")
            if comp_size > len(data) - pos - 8:
                raise _Fail(f"the file is truncated: the compressed block should hold {_human_bytes(comp_size)} but "
                            f"only {_human_bytes(len(data) - pos - 8)} follow")
            if raw_size > 90 * comp_size + 64:  # LZF cannot expand more than ~88x
                raise _Fail("the compressed block's sizes are impossible (damaged file)")
            if raw_size > decode_limit:
                raise _Fail(f"the compressed block would decompress to {_human_bytes(raw_size)}, more than the "
                            f"limit of {_human_bytes(decode_limit)}")
            buf = _lzf_decompress(data[pos + 8:pos + 8 + comp_size], raw_size)
            off = 0  # binary_compressed stores each field for all points contiguously
            for nm, d, c in zip(uniq, dts, counts):
                col = np.frombuffer(buf, dtype="<" + d, count=n * c, offset=off).reshape(n, c)
                fields[nm] = col[:, 0] if c == 1 else col
                off += n * c * np.dtype(d).itemsize
    else:
        raise _Fail(f"unknown PCD DATA mode '{' '.join(hdr['DATA'])}' (accepted: ascii, binary, binary_compressed)")
    roles = _pick_named(uniq)
    if "xyz" not in roles:
        raise _Fail(f"the PCD file has no x, y, z fields (found: {' '.join(names)})")
    raw = _Raw(points=_stack(fields.__getitem__, roles["xyz"]))
    if "normals" in roles:
        raw.normals = _stack(fields.__getitem__, roles["normals"])
    rgb_name = next((nm for nm in uniq if nm.lower() in ("rgb", "rgba")), None)
    if rgb_name is not None:
        v = np.ascontiguousarray(fields[rgb_name])
        if v.dtype.kind == "f":
            v = v.astype(np.float32).view(np.uint32)
        v = v.astype(np.uint32)
        raw.colors = np.stack([(v >> 16) & 255, (v >> 8) & 255, v & 255], axis=1).astype(np.uint8)
    elif "colors" in roles:
        raw.colors = _stack(fields.__getitem__, roles["colors"])
    if "label" in roles:
        raw.labels = fields[roles["label"]]
    raw.info.update(format=f"pcd ({mode})", fields=names)
    return raw


# ---------------------------------------------------------------------------------------------
# Text tables: .xyz .xyzn .xyzrgb .pts .txt .csv

_NUM_RE = re.compile(rb"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(nan|inf|infinity)$", re.IGNORECASE)


def _is_number(tok: bytes) -> bool:
    return bool(_NUM_RE.match(tok))


def _split_tokens(line: bytes) -> list[bytes]:
    return [t for t in re.split(rb"[\s,;]+", line.strip()) if t]


def _parse_text(path: Path, *, ext: str, cap: int, **_) -> _Raw:
    data = _read_bytes(path)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    # walk the first lines: comments, an optional header row of names, an optional count line
    pos, line_no, names, count, comment = 0, 0, None, None, None
    while True:
        nl = data.find(b"\n", pos)
        line = data[pos:] if nl < 0 else data[pos:nl]
        s = line.strip()
        line_no += 1
        if s and not (s.startswith(b"#") or s.startswith(b"//") or s.startswith(b"%")):
            toks = _split_tokens(s)
            numeric = [_is_number(t) for t in toks]
            if not all(numeric):
                if any(numeric) or names is not None or count is not None:  # a header row has names only
                    bad = toks[numeric.index(False)].decode("latin-1")[:40]
                    raise _Fail(f'line {line_no}: "{bad}" is not a number (line: "{s[:60].decode("latin-1")}")')
                names = [t.decode("latin-1") for t in toks]
            elif len(toks) == 1 and count is None and names is None and re.fullmatch(rb"\d+", toks[0]):
                count = int(toks[0])  # a leading point count (.pts, some .xyz)
            else:
                break
        elif s:
            comment = s.lstrip(b"#/% ")
        if nl < 0:
            raise _Fail("the file has no rows of numbers" if line_no > 1 or s else "the file is empty")
        pos = nl + 1
    if b";" in s:  # "1,5;2,0;3,25": semicolons separate, commas are decimal commas
        norm = (lambda b: b.replace(b",", b".").replace(b";", b" ")) if b"," in s else (lambda b: b.replace(b";", b" "))
    elif b"," in s:
        norm = lambda b: b.replace(b",", b" ")  # noqa: E731
    else:
        norm = lambda b: b  # noqa: E731
    first = _split_tokens(norm(s))
    ncols = len(first)
    if names is None and comment:  # e.g. CloudCompare's "//X,Y,Z,R,G,B" header comment
        ctoks = [t.decode("latin-1") for t in _split_tokens(comment)]
        if len(ctoks) == ncols and not any(_is_number(t.encode()) for t in ctoks) and "xyz" in _pick_named(ctoks):
            names = ctoks
    body = norm(data[pos:].rstrip())
    n_lines = body.count(b"\n") + 1
    table = None
    try:
        flat = _fromstring(body)
        if flat.size == n_lines * ncols:
            table = flat.reshape(n_lines, ncols)
    except ValueError:
        pass
    if table is None:
        table = _parse_text_slow(data[pos:], ncols, line_no, cap)
    if count is not None and len(table) < count:
        raise _Fail(f"the file is truncated: its first line says {_fmt_count(count)} points but only "
                    f"{_fmt_count(len(table))} rows follow")
    if len(table) > cap:
        raise _Fail(_too_many(len(table), cap))
    raw = _interpret_columns(table, names, ext)
    raw.info["format"] = ext[1:]
    if count is not None:
        raw.info["count_line"] = count
    return raw


def _parse_text_slow(body: bytes, ncols: int, first_line_no: int, cap: int) -> np.ndarray:
    """Line by line, for files the fast path cannot take: precise messages, comments, count lines."""
    rows = []
    for i, line in enumerate(body.splitlines()):
        s = line.strip()
        if not s or s.startswith(b"#") or s.startswith(b"//") or s.startswith(b"%"):
            continue
        toks = _split_tokens(s.replace(b",", b".") if b";" in s and b"," in s else s)
        if len(toks) == 1 and re.fullmatch(rb"\d+", toks[0]) and ncols > 1:
            continue  # a count line between scans (multi-scan .pts)
        if len(toks) != ncols:
            raise _Fail(f"line {i + first_line_no} has {len(toks)} value{'s' * (len(toks) != 1)} but the first "
                        f"data line has {ncols}; every line must have the same number of columns")
        try:
            rows.append([float(t) for t in toks])
        except ValueError:
            bad = next(t for t in toks if not _is_number(t))
            raise _Fail(f'line {i + first_line_no}: "{bad[:40].decode("latin-1")}" is not a number') from None
        if len(rows) > cap:
            raise _Fail(_too_many(len(rows), cap))
    if not rows:
        raise _Fail("the file has no rows of numbers")
    return np.asarray(rows, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# NumPy and HDF5 arrays

def _check_read_size(key: str, shape, itemsize: int, decode_limit: int) -> None:
    """Refuse to read (and allocate) more than decode_limit bytes, whatever an HDF5/npz header declares."""
    need = math.prod(shape) * itemsize
    if need > decode_limit:
        raise _Fail(f"'{key}' would need {_human_bytes(need)} of memory for the part read (shape {tuple(shape)}), "
                    f"more than the limit of {_human_bytes(decode_limit)}")


def _pick_sample(arr, key: str, index: int, cap: int, ext: str, decode_limit: int = DECODE_FACTOR * MAX_FILE_BYTES):
    """(N, C) cloud from an (N, C), (C, N) or (B, N, C) array-like; checks sizes before reading."""
    shape = tuple(arr.shape)
    kind = getattr(arr.dtype, "kind", "?")
    if kind not in "fiub":
        raise _Fail(f"'{key}' holds {arr.dtype} values, not numbers")
    if len(shape) == 3:
        if not -shape[0] <= index < shape[0]:
            raise _Fail(f"sample index {index} is out of range: '{key}' holds {shape[0]} samples (0..{shape[0] - 1})")
        if shape[1] > cap:
            raise _Fail(f"'{key}' (per sample): " + _too_many(shape[1], cap))
        _check_read_size(key, shape[1:], arr.dtype.itemsize, decode_limit)
        return np.asarray(arr[index]), True
    if len(shape) == 2:
        n, c = shape
        if 3 <= n <= 9 and c > 16:  # (C, N), as torch code often saves it
            if c > cap:
                raise _Fail(f"'{key}': " + _too_many(c, cap))
            _check_read_size(key, shape, arr.dtype.itemsize, decode_limit)
            return np.asarray(arr).T, False
        if n > cap:
            raise _Fail(_too_many(n, cap))
        _check_read_size(key, shape, arr.dtype.itemsize, decode_limit)
        return np.asarray(arr), False
    raise _Fail(f"'{key}' has shape {shape}; expected (N, 3+) points or (B, N, 3+) samples")


def _candidate_key(shapes: dict, preferred=("points", "xyz", "pos", "data", "pc", "point_cloud", "pointcloud",
                                              "cloud", "vertices", "coords", "verts")):
    for k in preferred:
        for name in shapes:
            if name.split("/")[-1].lower() == k and len(shapes[name]) in (2, 3) and max(shapes[name][-2:]) >= 3:
                return name
    for name, shp in shapes.items():
        if len(shp) in (2, 3) and shp[-1] >= 3:
            return name
    return None


def _attach_per_point(raw: _Raw, get, shapes: dict, main: str, index: int, batched: bool, n: int,
                      decode_limit: int = DECODE_FACTOR * MAX_FILE_BYTES):
    """Attach companion arrays (normals, colours, part labels, class label) that match the chosen sample."""
    def fetch(name):
        shp = shapes[name]
        if math.prod(shp[1:] if batched else shp) * 8 > decode_limit:  # 8: the widest numeric type
            return None
        if batched:
            if len(shp) >= 2 and shp[0] == shapes[main][0] and shp[1] == n:
                return np.asarray(get(name)[index])
            return None
        return np.asarray(get(name)) if shp[:1] == (n,) else None

    names = {k.split("/")[-1].lower(): k for k in shapes if k != main}
    for nm in ("normal", "normals"):
        if nm in names and raw.normals is None:
            a = fetch(names[nm])
            if a is not None and a.ndim == 2 and a.shape[1] >= 3:
                raw.normals = a[:, :3]
    for nm in ("color", "colors", "colour", "colours", "rgb"):
        if nm in names and raw.colors is None:
            a = fetch(names[nm])
            if a is not None and a.ndim == 2 and a.shape[1] >= 3:
                raw.colors = a[:, :3]
    for nm in ("pid", "seg", "part", "parts", "part_label", "part_labels", "mask", "labels_per_point",
               "point_labels", "semantic"):
        if nm in names and raw.labels is None:
            a = fetch(names[nm])
            if a is not None and a.reshape(-1).shape == (n,):
                raw.labels = a.reshape(-1)
                raw.info["labels_from"] = names[nm]
    for nm in ("label", "labels", "class", "category"):  # a class label per shape, or labels per point
        if nm not in names:
            continue
        shp = shapes[names[nm]]
        per_sample = shp[1:] if batched and shp[:1] == shapes[main][:1] else shp if not batched else None
        if per_sample is None:
            continue
        value = (lambda: np.asarray(get(names[nm])[index])) if batched else (lambda: np.asarray(get(names[nm])))
        if int(np.prod(per_sample)) == 1:
            raw.info["label"] = int(value().reshape(-1)[0])
        elif raw.labels is None and per_sample in ((n,), (n, 1)):
            raw.labels = value().reshape(-1)
            raw.info["labels_from"] = names[nm]


def _array_to_raw(arr, key: str, index: int, cap: int, ext: str,
                  decode_limit: int = DECODE_FACTOR * MAX_FILE_BYTES) -> tuple[_Raw, bool]:
    if getattr(arr.dtype, "names", None):  # structured array with x, y, z fields
        roles = _pick_named(arr.dtype.names)
        if "xyz" not in roles or arr.ndim != 1:
            raise _Fail(f"'{key}' is a structured array without x, y, z fields (fields: {', '.join(arr.dtype.names)})")
        if arr.shape[0] > cap:
            raise _Fail(f"'{key}': " + _too_many(arr.shape[0], cap))
        _check_read_size(key, arr.shape, arr.dtype.itemsize, decode_limit)
        arr = np.asarray(arr)
        raw = _Raw(points=_stack(arr.__getitem__, roles["xyz"]))
        if "normals" in roles:
            raw.normals = _stack(arr.__getitem__, roles["normals"])
        if "colors" in roles:
            raw.colors = _stack(arr.__getitem__, roles["colors"])
        if "label" in roles:
            raw.labels = arr[roles["label"]]
        return raw, False
    table, batched = _pick_sample(arr, key, index, cap, ext, decode_limit)
    raw = _interpret_columns(np.asarray(table), None, ext)
    raw.info.update(key=key, shape=tuple(arr.shape))
    if batched:
        raw.info.update(index=index, n_samples=int(arr.shape[0]))
    return raw, batched


def _read_npy_header(f, what: str = "the .npy header"):
    """(shape, dtype) from an .npy header (numpy parses it with ast.literal_eval: no code runs); damage -> _Fail."""
    try:
        version = np.lib.format.read_magic(f)
        # numpy reads the declared header length in one go (up to 4 GB for version 2/3): check it first
        pos = f.tell()
        length = f.read(2 if version == (1, 0) else 4)
        declared = int.from_bytes(length, "little") if len(length) in (2, 4) else 0
        if declared > 65536:
            raise _Fail(f"{what} is damaged (it declares a {declared:,}-byte header)")
        f.seek(pos)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
    except _Fail:
        raise
    except Exception as e:  # ValueError, SyntaxError, tokenize errors, EOF: a damaged header, whatever the detail
        import zipfile
        import zlib

        if isinstance(e, (zipfile.BadZipFile, zlib.error, OSError)):
            raise  # the archive around the header is damaged: the caller says so
        raise _Fail(f"{what} is damaged ({type(e).__name__}: {str(e)[:80]})") from None
    if any(d < 0 for d in shape):
        raise _Fail(f"{what} is damaged (it declares the negative shape {tuple(shape)})")
    return tuple(shape), dtype


def _npy_array(path: Path):
    """Memory-map an .npy (no allocation, no pickles) and check the file holds all its data."""
    with open(path, "rb") as f:
        shape, dtype = _read_npy_header(f)
        offset = f.tell()
    if dtype.hasobject:
        raise _Fail("the array holds Python objects (it would need unpickling, which is never done for user files); "
                    "save a plain numeric array")
    need = math.prod(shape) * dtype.itemsize
    have = path.stat().st_size - offset
    if need > have:
        raise _Fail(f"the file is truncated: its header declares an array of shape {shape} ({_human_bytes(need)}) "
                    f"but only {_human_bytes(have)} of data follow")
    return np.load(path, mmap_mode="r", allow_pickle=False)


def _parse_npy(path: Path, *, ext: str, cap: int, h5_index: int, **_) -> _Raw:
    arr = _npy_array(path)
    raw, _ = _array_to_raw(arr, "array", h5_index, cap, ext)
    raw.info["format"] = "npy"
    return raw


def _parse_npz(path: Path, *, ext: str, cap: int, h5_key, h5_index: int, decode_limit: int, **_) -> _Raw:
    import zipfile
    import zlib

    try:
        npz = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, NotImplementedError) as e:  # NotImplementedError: a 'version needed' beyond zipfile's
        raise _Fail(f"the ZIP archive is damaged or truncated ({e})") from None
    try:
        with npz:
            shapes = _npz_shapes(npz, decode_limit)
            key = _choose_key(shapes, h5_key, "array")
            # check the size before decompressing the chosen member
            shp = shapes[key]
            n_pts = shp[1] if len(shp) == 3 else max(shp[:2]) if len(shp) == 2 else 0
            if n_pts > cap:
                raise _Fail(f"'{key}': " + _too_many(n_pts, cap))
            arr = npz[key]
            raw, batched = _array_to_raw(arr, key, h5_index, cap, ext, decode_limit)
            _attach_per_point(raw, npz.__getitem__, shapes, key, h5_index, batched, len(raw.points), decode_limit)
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:  # checked when a member is read: CRC, deflate stream
        raise _Fail(f"the ZIP archive is damaged ({type(e).__name__}: {str(e)[:80]})") from None
    raw.info["format"] = "npz"
    return raw


def _npz_shapes(npz, decode_limit: int) -> dict[str, tuple[int, ...]]:
    """Shapes of an .npz's plain numeric members from their .npy headers alone (nothing is decompressed
    beyond a header); a member whose header declares more data than the archive holds for it, or more
    than decode_limit, is refused here, because numpy would allocate the declared size before reading."""
    import zipfile

    shapes, members, objects = {}, {i.filename: i for i in npz.zip.infolist()}, 0
    for k in npz.files:
        info = members.get(k + ".npy") or members.get(k)
        if info is None:
            continue
        try:
            with npz.zip.open(info) as f:
                shape, dtype = _read_npy_header(f, f"the header of array '{k}'")
                header_bytes = f.tell()
        # (NotImplementedError: zipfile meets an unknown compression method in a damaged directory entry)
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as e:
            raise _Fail(f"the ZIP archive is damaged ({type(e).__name__}: {str(e)[:80]})") from None
        except _Fail:
            continue  # not an .npy member: never chosen
        if dtype.hasobject:
            objects += 1
            continue  # never unpickle; skip object arrays
        need, have = math.prod(shape) * dtype.itemsize, info.file_size - header_bytes
        if need > have:
            raise _Fail(f"array '{k}' is damaged: its header declares shape {shape} ({_human_bytes(need)}) but the "
                        f"archive holds {_human_bytes(max(have, 0))} for it")
        if need > decode_limit:
            raise _Fail(f"array '{k}' would decompress to {_human_bytes(need)}, more than the limit of "
                        f"{_human_bytes(decode_limit)}")
        shapes[k] = shape if not dtype.names else (shape[0], 3) if len(shape) == 1 else shape
    if not shapes:
        raise _Fail("the archive holds no plain numeric arrays" + (" (only Python objects, which are never "
                                                                    "unpickled)" if objects else ""))
    return shapes


def _choose_key(shapes: dict[str, tuple[int, ...]], key: str | None, kind: str) -> str:
    """The array to read from an .npz/.h5: the one asked for, else the likeliest (N, 3+) or (B, N, 3+) one."""
    listing = ", ".join(f"{k} {v}" for k, v in shapes.items())
    if key is not None:
        if key not in shapes:
            raise _Fail(f"no {kind} named '{key}' ({kind}s: {listing})")
        return key
    key = _candidate_key(shapes)
    if key is None:
        raise _Fail(f"no {kind} of shape (N, 3+) or (B, N, 3+) ({kind}s: {listing})")
    return key


def _h5_shapes(f) -> dict[str, tuple[int, ...]]:
    """Every dataset (nested names joined by '/') -> shape; refuses data kept in other files of this machine."""
    import h5py

    shapes, foreign = {}, []

    def visit(name, obj):
        if not isinstance(obj, h5py.Dataset):
            return
        if obj.external or obj.is_virtual:
            foreign.append(name)
        elif obj.shape is not None:  # None: an HDF5 null dataspace (no data at all)
            shapes[name] = tuple(obj.shape)

    f.visititems(visit)
    if foreign:
        raise _Fail(f"dataset '{foreign[0]}' keeps its data in another file (HDF5 external storage or a virtual "
                    f"dataset); such files are refused, because reading them would read other files on this "
                    f"machine. Save the data inside the file")
    return shapes


# libhdf5 visits every chunk of a read, ~10 us each even when none was ever written: a 1.4 KB file that
# declares a million (1, 3) chunks takes 10 s to read. Reads touching more chunks than this are refused.
MAX_H5_CHUNKS_READ = 65_536


def _checked_h5(dataset, key: str):
    """The dataset, after refusing one whose read (one sample of a batch, or all of it) spans too many chunks."""
    if dataset.chunks is not None and dataset.shape:
        region = (1, *dataset.shape[1:]) if dataset.ndim == 3 else dataset.shape
        n = math.prod(-(-r // c) for r, c in zip(region, dataset.chunks))
        if n > MAX_H5_CHUNKS_READ:
            raise _Fail(f"dataset '{key}' is stored in {n:,} chunks of shape {dataset.chunks}, more than the "
                        f"{MAX_H5_CHUNKS_READ:,} a read may touch (every chunk costs time, written or not); rewrite it "
                        f"with larger chunks (h5py: chunks=True) or without chunking")
    return dataset


def _parse_h5(path: Path, *, ext: str, cap: int, h5_key, h5_index: int, decode_limit: int, **_) -> _Raw:
    import h5py
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        msg = str(e)
        if "truncated" in msg:
            raise _Fail("the HDF5 file is truncated (it ends before the data its header describes)") from None
        raise _Fail(f"the HDF5 file cannot be opened; it is damaged ({msg})") from None
    try:
        with f:
            shapes = _h5_shapes(f)
            if not shapes:
                raise _Fail("the HDF5 file holds no datasets")
            key = _choose_key(shapes, h5_key, "dataset")
            raw, batched = _array_to_raw(_checked_h5(f[key], key), key, h5_index, cap, ext, decode_limit)
            _attach_per_point(raw, lambda k: _checked_h5(f[k], k), shapes, key, h5_index, batched, len(raw.points),
                              decode_limit)
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:  # libhdf5 reading damaged structures
        raise _Fail(f"the HDF5 file is damaged ({type(e).__name__}: {str(e)[:100]})") from None
    if "label" in raw.info:  # ModelNet40's shape_names.txt next to the .h5 names the class
        names_file = path.parent / "shape_names.txt"
        if names_file.is_file():
            names = names_file.read_text(errors="replace").split()
            if 0 <= raw.info["label"] < len(names):
                raw.info["class_name"] = names[raw.info["label"]]
    raw.info["format"] = "hdf5"
    return raw


# ---------------------------------------------------------------------------------------------
# Meshes: OBJ, OFF, STL, glTF

def _parse_obj(path: Path, **_) -> _Raw:
    data = _read_bytes(path)
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    lines = data.split(b"\n")
    if b"\n " in data or b"\n\t" in data or data[:1] in (b" ", b"\t"):
        lines = [ln.lstrip() for ln in lines]
    v_no = [i for i, ln in enumerate(lines) if ln[:2] in (b"v ", b"v\t")]
    f_no = [i for i, ln in enumerate(lines) if ln[:2] in (b"f ", b"f\t")]
    nv = len(v_no)
    if nv == 0:
        raise _Fail("the OBJ file has no vertex ('v x y z') lines")
    # vertices: "v x y z [w]" or "v x y z r g b" (a common colour extension)
    try:
        flat = _fromstring(b" ".join(lines[i][2:] for i in v_no))
    except ValueError:
        flat = None
    width = flat.size // nv if flat is not None and flat.size % nv == 0 else 0
    if width in (3, 4, 6, 7):
        table = flat.reshape(nv, width)
    else:  # ragged vertex lines: take x y z (and r g b when a line has 6 values) one line at a time
        table = np.zeros((nv, 6))
        width = 6
        for j, i in enumerate(v_no):
            toks = lines[i].split()[1:]
            try:
                vals = [float(t) for t in toks]
            except ValueError:
                raise _Fail(f'line {i + 1}: a vertex line with a value that is not a number: '
                            f'"{lines[i][:60].decode("latin-1")}"') from None
            if len(vals) < 3:
                raise _Fail(f"line {i + 1}: a vertex line needs x y z, got {len(vals)} values")
            table[j, :3] = vals[:3]
            table[j, 3:6] = vals[3:6] if len(vals) >= 6 else np.nan
        if np.isnan(table[:, 3]).any():
            width = 3
    raw = _Raw(points=table[:, :3])
    if width in (6, 7):
        raw.colors = table[:, 3:6] if width == 6 else table[:, 4:7]
    raw.info.update(format="obj", n_vertices=nv)
    if not f_no:
        return raw
    # faces: "f 1 2 3", "f 1/1/1 2/2/2 ...", negative = relative to the vertices defined so far
    f_lines = [lines[i][2:] for i in f_no]
    counts = np.fromiter((len(ln.split()) for ln in f_lines), dtype=np.int64, count=len(f_lines))
    joined = re.sub(rb"/\S*", b"", b" ".join(f_lines))
    try:
        idx = _fromstring(joined)
    except ValueError:
        raise _Fail(f"a face line has an index that is not a number ({_first_bad_token([lines[i] for i in f_no])} "
                    f"among the face lines)") from None
    if idx.size != counts.sum() or np.any(idx != np.round(idx)):
        raise _Fail("the face lines could not be read (expected 'f i j k' with integer vertex indices)")
    idx = idx.astype(np.int64)
    if np.any(idx < 0):  # relative indices
        seen = np.searchsorted(np.asarray(v_no), np.asarray(f_no))  # vertices defined before each face
        seen_per_index = np.repeat(seen, counts)
        idx = np.where(idx < 0, seen_per_index + idx + 1, idx)
    if np.any(idx == 0):
        raise _Fail("a face refers to vertex 0, but OBJ vertex indices start at 1")
    idx -= 1
    raw.faces = _triangulate(counts, idx)
    raw.info["n_faces"] = len(f_no)
    # groups ('g'/'o') become part labels of the sampled points when there are several
    g_no = [i for i, ln in enumerate(lines) if ln[:2] in (b"g ", b"o ")]
    if len(g_no) >= 2:
        group_of_face = np.searchsorted(np.asarray(g_no), np.asarray(f_no), side="right") - 1
        group_names = [lines[i][2:].strip().decode("utf-8", "replace") for i in g_no]
        uniq_names = sorted(set(group_names[g] for g in set(group_of_face.tolist()) if g >= 0))
        if len(uniq_names) >= 2:
            label_of_group = np.array([uniq_names.index(nm) if nm in uniq_names else -1 for nm in group_names] + [-1])
            face_lab = label_of_group[group_of_face]  # -1 indexes the trailing -1 (faces before any group)
            raw.face_labels = np.repeat(face_lab, np.maximum(counts - 2, 0))
            raw.info["label_names"] = uniq_names
    return raw


def _parse_off(path: Path, *, cap: int, **_) -> _Raw:
    data = _read_bytes(path)
    if b"#" in data:
        data = re.sub(rb"#[^\n]*", b"", data)
    lines = [ln for ln in data.replace(b"\r", b"").split(b"\n") if ln.strip()]
    if not lines:
        raise _Fail("the file has no content")
    first = lines[0].split()
    kw = first[0].decode("latin-1") if first and _OFF_RE.match(first[0]) else ""
    rest = first[1:] if kw else first
    li = 1
    if not rest:
        if len(lines) < 2:
            raise _Fail("the file ends after the OFF keyword (no vertex and face counts)")
        rest, li = lines[1].split(), 2
    try:
        nv, nf = int(rest[0]), int(rest[1])
    except (ValueError, IndexError):
        raise _Fail(f"the counts line should be 'n_vertices n_faces n_edges', got "
                    f"'{b' '.join(rest).decode('latin-1')[:60]}'") from None
    if nv < 0 or nf < 0:
        raise _Fail("negative vertex or face count")
    if li + nv > len(lines):
        raise _Fail(f"the file is truncated: the header declares {nv:,} vertices but only {len(lines) - li:,} lines follow")
    if nv > cap:
        raise _Fail(_too_many(nv, cap))
    try:
        flat = _fromstring(b"\n".join(lines[li:li + nv]))
    except ValueError:
        raise _Fail(f"a vertex line has a value that is not a number ({_first_bad_token(lines[li:li + nv], li + 1)} "
                    f"of the non-empty lines)") from None
    if nv == 0 or flat.size % nv or flat.size // nv < 3:
        raise _Fail("the vertex lines have different numbers of values (expected 'x y z' on each)")
    width = flat.size // nv
    vt = flat.reshape(nv, width)
    raw = _Raw(points=vt[:, :3])
    col0 = 3 + (3 if "N" in kw else 0)
    if "C" in kw and width >= col0 + 3:
        raw.colors = vt[:, col0:col0 + 3]
    if "N" in kw and width >= 6:
        raw.normals = vt[:, 3:6]
    raw.info.update(format="off", n_vertices=nv)
    if nf == 0:
        return raw
    face_lines = lines[li + nv:li + nv + nf]
    if len(face_lines) < nf:
        raise _Fail(f"the file is truncated: the header declares {nf:,} faces but only {len(face_lines):,} lines follow")
    try:
        flat = _fromstring(b"\n".join(face_lines))
    except ValueError:
        raise _Fail("a face line has a value that is not a number") from None
    k = int(flat[0]) if flat.size and np.isfinite(flat[0]) else 0
    if k >= 3 and flat.size == nf * (k + 1) and np.all(flat.reshape(nf, k + 1)[:, 0] == k):
        fv = flat.reshape(nf, k + 1)[:, 1:]
        counts, vflat = np.full(nf, k, np.int64), fv.reshape(-1)
    else:  # mixed polygons or trailing face colours: one line at a time
        counts = np.empty(nf, np.int64)
        parts = []
        for j, ln in enumerate(face_lines):
            toks = ln.split()
            try:
                kk = int(toks[0])
                idx = np.array([int(t) for t in toks[1:1 + max(kk, 0)]], dtype=np.int64)
            except (ValueError, OverflowError):
                raise _Fail(f"face {j + 1} holds something that is not a whole number: "
                            f"'{ln[:60].decode('latin-1')}'") from None
            if kk < 0 or len(toks) < kk + 1:
                raise _Fail(f"face {j + 1} says it has {kk} vertices but lists {len(toks) - 1}")
            counts[j] = kk
            parts.append(idx)
        vflat = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    if vflat.size and not (np.isfinite(vflat).all() and np.all(vflat == np.round(vflat))):
        raise _Fail("a face line has a vertex index that is not a whole number")
    if vflat.size and (vflat.min() < 0 or vflat.max() >= nv):
        raise _Fail(f"a face refers to vertex {int(vflat.max() if vflat.max() >= nv else vflat.min())}, "
                    f"but the file has {nv:,} vertices (0..{nv - 1})")
    raw.faces = _triangulate(counts, vflat.astype(np.int64))
    raw.info["n_faces"] = nf
    return raw


def _parse_stl(path: Path, *, cap: int, **_) -> _Raw:
    data = _read_bytes(path)
    size = len(data)
    n = struct.unpack_from("<I", data, 80)[0] if size >= 84 else -1
    binary_ok = n >= 0 and size >= 84 + 50 * n
    is_ascii = data.lstrip()[:5].lower() == b"solid" and not (n >= 0 and size == 84 + 50 * n)
    if is_ascii:
        verts = re.findall(rb"vertex([^\n]*)", data)
        if not verts:
            raise _Fail("the ASCII STL has no 'vertex x y z' lines")
        try:
            flat = _fromstring(b" ".join(verts))
        except ValueError:
            raise _Fail("a 'vertex' line of the ASCII STL holds something that is not a number") from None
        if flat.size % 9:
            raise _Fail("the ASCII STL's facets do not each have three 'vertex x y z' lines")
        tri = flat.reshape(-1, 3, 3)
        fmt = "stl (ascii)"
    else:
        if n < 0:
            raise _Fail(f"the file is only {size} bytes, too short for a binary STL (84-byte header)")
        if not binary_ok:
            raise _Fail(f"the file is truncated: its header declares {n:,} triangles ({_human_bytes(84 + 50 * n)}) "
                        f"but the file is {_human_bytes(size)}")
        if n > cap:
            raise _Fail(f"the STL file has {n:,} triangles, more than the limit of {cap:,}")
        rec = np.frombuffer(data, dtype=np.dtype([("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")]), count=n, offset=84)
        tri = rec["v"]
        fmt = "stl (binary)"
    m = len(tri)
    raw = _Raw(points=tri.reshape(-1, 3), faces=np.arange(3 * m, dtype=np.int64).reshape(m, 3))
    raw.info.update(format=fmt, n_faces=m, n_vertices=3 * m)
    return raw


def _import_open3d():
    """open3d on first use only; a clear fix when its shared libraries are missing."""
    try:
        import open3d
    except Exception as e:  # ImportError / OSError: libusb-1.0.so.0 missing on a fresh Debian
        raise PointCloudError(
            f"open3d could not be loaded ({type(e).__name__}: {e}); it is needed for .glb/.gltf files. On Debian "
            f"install libusb-1.0-0 (apt-get install libusb-1.0-0) or run scripts/setup.sh; or convert the "
            f"model to .obj, .ply or .stl.") from e
    return open3d


def _gltf_json(path: Path, ext: str):
    """The JSON document of a .gltf, or the JSON chunk of a .glb (None when a .glb has none to read)."""
    data = _read_bytes(path)
    if ext == ".glb":
        if len(data) < 20 or data[:4] != b"glTF":
            raise _Fail("the GLB header is damaged (expected 'glTF', a version, a length and a JSON chunk)")
        n, kind = struct.unpack_from("<I4s", data, 12)
        if kind != b"JSON" or 20 + n > len(data):
            raise _Fail("the GLB file's JSON chunk is damaged or truncated")
        data = data[20:20 + n]
    try:
        return json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise _Fail(f"the glTF JSON cannot be parsed ({str(e)[:80]})") from None


def _check_gltf_uris(doc, path: Path) -> None:
    """Buffers and images may only be embedded (data: URIs) or files beside the model, never elsewhere:
    an uploaded model naming '/etc/passwd' or '../../secret.bin' must not make the server read that file."""
    if not isinstance(doc, dict):
        return
    folder = path.parent.resolve()
    for kind in ("buffers", "images"):
        items = doc.get(kind, [])
        for item in items if isinstance(items, list) else []:
            uri = item.get("uri", "") if isinstance(item, dict) else ""
            if not isinstance(uri, str) or not uri or uri.startswith("data:"):
                continue
            target = (folder / uri).resolve()
            if "://" in uri or Path(uri).is_absolute() or folder not in target.parents:
                raise _Fail(f"it refers to the file '{uri[:80]}' outside its own folder; only embedded data "
                            f"or files beside the model are read")
            if kind == "buffers" and not target.is_file():
                raise _Fail(f"it refers to the buffer file '{uri[:80]}', which is not next to it; load the .glb "
                            f"version or put '{uri[:80]}' beside the .gltf")


def _parse_gltf(path: Path, *, ext: str, **_) -> _Raw:
    o3d = _import_open3d()
    _check_gltf_uris(_gltf_json(path, ext), path)  # open3d would read any file a URI names, and fails with no reason
    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    mesh = o3d.io.read_triangle_mesh(str(path))
    v = np.asarray(mesh.vertices)
    t = np.asarray(mesh.triangles)
    if len(v) == 0:
        raise _Fail("open3d found no mesh vertices in this model (it may hold only cameras, lights or "
                    "an unsupported compression such as Draco)")
    raw = _Raw(points=v, faces=t.astype(np.int64) if len(t) else None)
    if mesh.has_vertex_colors():
        raw.colors = np.asarray(mesh.vertex_colors)
    if mesh.has_vertex_normals() and not len(t):
        raw.normals = np.asarray(mesh.vertex_normals)
    raw.info.update(format=ext[1:], n_vertices=len(v), n_faces=len(t))
    return raw


_PARSERS = {".ply": _parse_ply, ".pcd": _parse_pcd, ".npy": _parse_npy, ".npz": _parse_npz,
            ".h5": _parse_h5, ".hdf5": _parse_h5, ".obj": _parse_obj, ".off": _parse_off, ".stl": _parse_stl,
            ".glb": _parse_gltf, ".gltf": _parse_gltf}
_PARSERS.update({e: _parse_text for e in _TEXT_EXTS})


# ---------------------------------------------------------------------------------------------
# Mesh sampling, validation, normalisation of fields

def _sample_mesh(raw: _Raw, n: int, seed: int) -> _Raw:
    """n points uniformly over the surface (area-weighted), normals from the faces, colours interpolated."""
    V = np.asarray(raw.points, dtype=np.float64)
    F = np.asarray(raw.faces, dtype=np.int64)
    nv = len(V)
    if F.size and (F.min() < 0 or F.max() >= nv):
        bad = int(F.max()) if F.max() >= nv else int(F.min())
        raise _Fail(f"a face refers to vertex {bad + 1 if raw.info.get('format') == 'obj' else bad}, but the mesh "
                    f"has {nv:,} vertices")
    finite_v = np.isfinite(V).all(axis=1)
    a, b, c = V[F[:, 0]], V[F[:, 1]], V[F[:, 2]]
    cross = np.cross(b - a, c - a)
    area = 0.5 * np.sqrt((cross * cross).sum(axis=1))
    area[~(finite_v[F].all(axis=1) & np.isfinite(area))] = 0.0  # faces touching NaN vertices are skipped
    total = area.sum()
    info = dict(raw.info, n_vertices=nv, n_triangles=len(F), n_dropped_vertices=int((~finite_v).sum()))
    if not total > 0:  # all faces degenerate: fall back to the vertices as a point cloud
        info["sampled"] = False
        return replace(raw, faces=None, info=info)
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(area)
    face = np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), len(F) - 1)
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1.0  # reflect into the triangle so samples are uniform
    u[flip], v[flip] = 1.0 - u[flip], 1.0 - v[flip]
    w = 1.0 - u - v
    fa, fb, fc = F[face, 0], F[face, 1], F[face, 2]
    pts = w[:, None] * V[fa] + u[:, None] * V[fb] + v[:, None] * V[fc]
    nrm = cross[face] / np.maximum(np.linalg.norm(cross[face], axis=1, keepdims=True), 1e-300)
    out = _Raw(points=pts, normals=nrm, info=info)
    if raw.colors is not None:
        col = np.asarray(raw.colors, dtype=np.float64)
        col = col / (255.0 if col.max(initial=0) > 1.0 else 1.0)
        out.colors = w[:, None] * col[fa] + u[:, None] * col[fb] + v[:, None] * col[fc]
    if raw.face_labels is not None:
        out.labels = np.asarray(raw.face_labels)[face]
    info.update(sampled=True, surface_area=float(total), mesh_samples=n, sample_seed=seed)
    return out


def _colors_to_unit(c: np.ndarray) -> np.ndarray:
    """Colours of any numeric type -> float32 in [0, 1] (uchar / 255, floats in [0, 255] / 255)."""
    if c.dtype == np.uint8:
        return c.astype(np.float32) / 255.0
    c = np.nan_to_num(c.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    if c.size and c.max() > 1.0:
        c = c / (65535.0 if c.max() > 255.0 else 255.0)
    return np.clip(c, 0.0, 1.0)


def _finish(raw: _Raw, name: str, max_points: int, decimate_to: int | None, seed: int) -> PointCloud:
    """Validate a parsed cloud (finite, enough points, not degenerate, within limits) -> PointCloud."""
    pts = np.asarray(raw.points)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise _Fail(f"the points have shape {pts.shape}, not (N, 3)")
    n_in = len(pts)
    info = dict(raw.info)
    info.setdefault("n_in_file", int(info.get("n_vertices", n_in)))
    if n_in == 0:
        raise _Fail("the file contains no points")
    # finite, and finite once stored as float32 (1e39 is a float64 number but an infinite float32 one);
    # NaN compares False. Per column: faster than .all(axis=1)
    big = float(np.finfo(np.float32).max)
    finite = (np.abs(pts[:, 0]) <= big) & (np.abs(pts[:, 1]) <= big) & (np.abs(pts[:, 2]) <= big)
    n_bad = int(n_in - finite.sum())
    n_dropped = n_bad + int(info.pop("n_dropped_vertices", 0))
    if n_bad:
        if n_bad == n_in:
            raise _Fail(f"all {n_in:,} points have non-finite coordinates (NaN, infinity, or beyond float32's range)")
        keep = np.flatnonzero(finite)
    else:
        keep = None
    pick = (lambda a: None if a is None else np.asarray(a)[keep]) if keep is not None else (
        lambda a: None if a is None else np.asarray(a))
    pts, colors, normals, labels = pick(pts), pick(raw.colors), pick(raw.normals), pick(raw.labels)
    n = len(pts)
    if n < MIN_POINTS:
        extra = f" ({n_dropped:,} more were not finite)" if n_dropped else ""
        raise _Fail(f"it has only {n} valid point{'s' * (n != 1)}{extra}; at least {MIN_POINTS} are needed")
    lo = np.array([pts[:, i].min() for i in range(3)], dtype=np.float64)  # per column: faster than axis=0
    hi = np.array([pts[:, i].max() for i in range(3)], dtype=np.float64)
    extent = float((hi - lo).max())
    if extent == 0.0:
        raise _Fail(f"all {n:,} points are the same point ({', '.join(f'{x:g}' for x in lo)}): the cloud has no extent")
    if n > max_points and decimate_to is None:
        raise _Fail(_too_many(n, max_points))
    if decimate_to is not None and n > decimate_to:
        idx = decimate_for_display(pts, decimate_to, seed)
        pts, colors, normals, labels = (None if a is None else a[idx] for a in (pts, colors, normals, labels))
        info["decimated_from"] = n
    # far from the origin (georeferenced scans), float32 would lose the detail: shift by a float64 offset
    maxabs = float(np.abs(np.concatenate([lo, hi])).max())
    if np.spacing(np.float32(maxabs)) > 1e-5 * extent:
        offset = (lo + hi) / 2.0
        pts = (pts.astype(np.float64) - offset).astype(np.float32)
        info["offset"] = [float(x) for x in offset]  # original = points + offset
    else:
        pts = pts.astype(np.float32, copy=False)
    if colors is not None:
        colors = _colors_to_unit(np.asarray(colors))
    if normals is not None:
        normals = np.nan_to_num(np.asarray(normals, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if labels is not None:
        lab = np.asarray(labels)
        if lab.dtype.kind == "f":
            lab = np.nan_to_num(lab, nan=-1)
        labels = lab.astype(np.int64)
    return PointCloud(points=np.ascontiguousarray(pts), colors=colors, normals=normals, labels=labels,
                      source=name, n_dropped=n_dropped, info=info)


# ---------------------------------------------------------------------------------------------
# Farthest point sampling

def _farthest_point_indices(points: np.ndarray, n: int, start: str = "index0") -> np.ndarray:
    """FPS indices (n,) int64 from `start` (see resample), by pcdviz.ops, which picks the fastest backend (on CPU
    fpsample's QuickFPS from 128 samples up: ~10x faster than vanilla FPS for 100k -> 1024 points)."""
    import torch
    from pcdviz.ops import farthest_point_sample
    idx = farthest_point_sample(torch.from_numpy(points).unsqueeze(0), n, start=start)[0]
    return idx.numpy().astype(np.int64)
