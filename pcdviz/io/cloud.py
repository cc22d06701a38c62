"""What every part of pcdviz.io shares: PointCloud (what a load returns), PointCloudError (the one exception for
a bad user file, its message a sentence), _Raw (what a format parser returns before validation), _Fail (a parser's
problem sentence), the limits, and the names and hints of the formats that messages use."""
from __future__ import annotations

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


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _fmt_count(n: int) -> str:
    return f"{n:,}"


def _too_many(n: int, cap: int) -> str:
    return (f"it has {n:,} points, more than the limit of {cap:,} (max_points); pass decimate_to to load a "
            f"random subset, or raise max_points")
