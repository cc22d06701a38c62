"""The explorer's clouds: `LoadedCloud` (a cloud ready to show and to feed the model) and `CloudStore`, which
makes them from a synthetic shape, a mesh Gradio ships or an upload, and keeps the recent ones in an LRU.

A cloud is normalised to the unit sphere and decimated for display on load; every checkpoint sees the
same points (its input is resampled from them, `LoadedCloud.model_input`), turned to the view's up axis.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pcdviz.lru import LRUCache
from pcdviz.view_settings import FPS_STARTS, ExplorerError, ViewSettings, as_int

log = logging.getLogger("pcdviz.explorer")

DISPLAY_MAX = 100_000          # points drawn for one view; more are decimated (payload ~16 B/point/scene)
MAX_UPLOAD_BYTES = 200 * 1024**2
SHAPE_POINTS = (256, 100_000)  # allowed point counts for a generated shape
ANCHORS_MAX = 20_000           # beyond this many points shown, patchings k >= 1 work on an FPS subset (anchors)


def gradio_assets_dir() -> Path | None:
    """Gradio's wheel ships a few real meshes (Bunny.obj, face.obj, sofia.stl, Duck.glb, Fox.gltf)."""
    import importlib.util

    spec = importlib.util.find_spec("gradio")
    if spec is None or not spec.origin:
        return None
    folder = Path(spec.origin).parent / "media_assets" / "models3d"
    return folder if folder.is_dir() else None



@dataclass
class LoadedCloud:
    """A cloud ready to show: normalised display points (decimated) and how it got here."""

    cloud_id: str
    title: str
    points: np.ndarray                 # (M, 3) float32, normalised, at most DISPLAY_MAX
    colors: np.ndarray | None = None   # (M, 3) float32 in [0, 1], from the file
    labels: np.ndarray | None = None   # (M,) part ids for synthetic shapes
    source_kind: str = ""              # "shape" | "mesh" | "upload"
    n_loaded: int = 0                  # finite points after loading (before display decimation)
    n_in_file: int | None = None       # points (or vertices) in the file, when the reader says
    n_dropped: int = 0                 # non-finite points removed on load
    is_mesh: bool = False
    fmt: str = ""
    h5_keys: dict = field(default_factory=dict)   # dataset -> shape, for .h5 uploads
    h5_key: str | None = None          # dataset (HDF5) or array (.npz) read, as pcdviz.io reports it
    h5_index: int = 0
    extra: dict = field(default_factory=dict)  # n_samples, class_name, label, category when known
    source_index: np.ndarray | None = None  # (M,) index among the loaded points, when decimated for display
    norm_center: np.ndarray = field(default_factory=lambda: np.zeros(3))  # file xyz = R^T p * norm_scale + norm_center
    norm_scale: float = 1.0
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))   # R: shown = R @ normalised file xyz
    up: str = "y"                      # the file's axis drawn (and fed to the model) as up
    _model_inputs: dict = field(default_factory=dict, repr=False)   # (size, start, patching) -> indices
    _oriented: dict = field(default_factory=dict, repr=False)       # up axis -> rotated copy of this cloud
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _order: np.ndarray | None = field(default=None, repr=False)

    def oriented(self, axis: str) -> "LoadedCloud":
        """This cloud turned so that the file's `axis` (x, y or z) points up (+y, the model's and the camera's up).

        The turned copy is cached on the cloud and has its own id (`<id>|up=<axis>`), so its model inputs and
        maps are cached apart; y returns the cloud itself."""
        if axis == self.up:
            return self
        with self._lock:
            hit = self._oriented.get(axis)
        if hit is None:
            rot = UP_ROTATIONS[axis]
            hit = LoadedCloud(**{**{k: getattr(self, k) for k in self.__dataclass_fields__ if not k.startswith("_")},
                                 "cloud_id": f"{self.cloud_id}|up={axis}", "up": axis, "rotation": rot,
                                 "points": np.ascontiguousarray(self.points @ rot.T, dtype=np.float32)})
            with self._lock:
                hit = self._oriented.setdefault(axis, hit)
        return hit

    def file_points(self) -> np.ndarray:
        """The displayed points in the file's own coordinates (undoing the turn and the normalisation)."""
        p = self.points.astype(np.float64) @ self.rotation   # R^T p for each row p
        return (p * self.norm_scale + self.norm_center).astype(np.float32)

    def model_input(self, n_points: int, start: str = "index0", patching: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(indices into `points` of the model's input, nearest input point of each display point). Cached per
        (input size, FPS start, patching), so every checkpoint of that size shares them (comparisons).

        Patching 0: farthest point sampling from `start`. Patching k >= 1: FPS started at the k-th point of
        patching 0's order (so each patching is a different, still order-independent, subsample), and that
        point first, where the model's own FPS (index-0 start) takes its first centre."""
        key = (int(n_points), start, int(patching))
        with self._lock:
            hit = self._model_inputs.get(key)
        if hit is None:
            from pcdviz import io
            from pcdviz.ops import nearest_index

            first = None if patching == 0 else int(self.model_input(n_points, start, 0)[0][patching % n_points])
            anchors = None if patching == 0 else self.anchors()
            if patching == 0:
                idx = np.asarray(io.resample(self.points, n_points, method="fps", start=start), dtype=np.int64)
            elif anchors is None:
                idx = _fps_from(self.points, n_points, first)
            else:  # a big cloud: sample its anchors, and show each point as its anchor (see anchors)
                a_idx, to_anchor = anchors
                idx = a_idx[_fps_from(self.points[a_idx], n_points, int(to_anchor[first]))]
            # attention.to_points' rule for other clouds: a display point takes its nearest input point's value
            if anchors is None:
                nearest = nearest_index(self.points[idx], self.points)
            else:
                nearest = nearest_index(self.points[idx], self.points[anchors[0]])[anchors[1]]
            hit = (idx, nearest.astype(np.uint16) if n_points <= 65535 else nearest)   # small: one per patching
            with self._lock:
                self._model_inputs[key] = hit
        return hit

    def anchors(self) -> tuple[np.ndarray, np.ndarray] | None:
        """For a cloud of more than ANCHORS_MAX points: (ANCHORS_MAX anchor indices by FPS from the geometric
        start, the nearest anchor of every point), else None. Patchings k >= 1 sample the anchors and are shown
        through them, so each costs a 20,000-point search instead of a 100,000-point one (BENCHMARKS.md)."""
        if len(self.points) <= ANCHORS_MAX:
            return None
        with self._lock:
            hit = self._model_inputs.get("anchors")
        if hit is None:
            from pcdviz import io
            from pcdviz.ops import nearest_index

            a_idx = np.asarray(io.resample(self.points, ANCHORS_MAX, method="fps", start="geometric"), dtype=np.int64)
            hit = (a_idx, nearest_index(self.points[a_idx], self.points))
            with self._lock:
                self._model_inputs["anchors"] = hit
        return hit

    def panel_subset(self, m: int) -> np.ndarray | None:
        """Indices of a fixed random subset of m display points (None when all fit); same subset every view."""
        if m >= len(self.points):
            return None
        if self._order is None:
            self._order = np.random.default_rng(0).permutation(len(self.points))
        return np.sort(self._order[:m])


# rows: the shown x, y, z in the file's axes; each turns the named axis to +y (rotations, det +1)
UP_ROTATIONS = {"x": np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
                "y": np.eye(3),
                "z": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])}
# auto: the axis a format's convention makes up; formats without one are taken as y-up (ShapeNet, ModelNet's
# HDF5 files and the training data are y-up). Keys are LoadedCloud.fmt's first word.
UP_CONVENTIONS = {"glb": ("y", "glTF is y-up by its specification"),
                  "gltf": ("y", "glTF is y-up by its specification"),
                  "stl": ("z", "STL is z-up by the convention of CAD and 3D printing"),
                  "pcd": ("z", "PCD scans are z-up by the PCL / ROS convention (REP 103)")}
UP_DEFAULT_REASON = "the format has no up convention: y, as in ShapeNet, ModelNet's HDF5 files and the training data"


def resolve_up(fmt: str, up: str = "auto") -> tuple[str, str]:
    """(axis, reason) for an up-axis setting: auto follows the format's convention (UP_CONVENTIONS), else y."""
    if up != "auto":
        return up, "chosen"
    return UP_CONVENTIONS.get(str(fmt or "").split(" ")[0].lower(), ("y", UP_DEFAULT_REASON))


def _fps_from(points: np.ndarray, n: int, first: int) -> np.ndarray:
    """FPS indices (n,) of points started at index `first`; beyond len(points), FPS order again (cycled)."""
    import torch

    from pcdviz.ops import farthest_point_sample

    perm = np.concatenate([[first], np.arange(first), np.arange(first + 1, len(points))]).astype(np.int64)
    xyz = torch.from_numpy(np.ascontiguousarray(points[perm], dtype=np.float32))[None]
    idx = farthest_point_sample(xyz, min(n, len(points)), start="index0")[0].numpy()
    return np.resize(perm[idx], n).astype(np.int64)



class CloudStore:
    """Loads clouds by id and keeps the recent ones (shapes and meshes are remade on demand, uploads are not)."""

    def __init__(self, display_max: int = DISPLAY_MAX, max_clouds: int = 16):
        self.display_max = int(display_max)
        self.clouds = LRUCache(max_clouds)

    @staticmethod
    def shape_id(category: str, seed: int = 0, n_points: int = 2048) -> str:
        """The cloud id of a generated synthetic shape."""
        return f"shape/{category}/{int(seed)}/{int(n_points)}"

    @staticmethod
    def mesh_id(name: str) -> str:
        """The cloud id of a mesh shipped in Gradio's wheel."""
        return f"mesh/{name}"

    @staticmethod
    def categories() -> list[str]:
        """Synthetic shape categories."""
        from pcdviz.data.synthetic import CATEGORIES

        return list(CATEGORIES)

    @staticmethod
    def mesh_assets() -> list[str]:
        """File names of the meshes Gradio's wheel ships (those that exist in this install)."""
        folder = gradio_assets_dir()
        if folder is None:
            return []
        from pcdviz import io

        exts = tuple(e.lower() for e in io.SUPPORTED_EXTENSIONS)
        return sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in exts)

    def cloud_choices(self) -> list[tuple[str, str]]:
        """(title, cloud id) of the clouds held now, most recent first: what the feature views can put beside."""
        return [(c.title, c.cloud_id) for c in reversed(self.clouds.values()) if "|up=" not in c.cloud_id]

    def cloud(self, cloud_id: str) -> LoadedCloud:
        """A loaded cloud by id; shapes and meshes are (re)made on demand, uploads must be in the cache."""
        cloud_id = str(cloud_id or "")
        hit = self.clouds.get(cloud_id)
        if hit is not None:
            return hit
        base, turned, axis = cloud_id.partition("|up=")
        if turned:  # a cloud turned to another up axis (LoadedCloud.oriented)
            if axis not in UP_ROTATIONS:
                raise ExplorerError(f"Unknown up axis {axis!r} in the cloud id; use x, y or z.")
            return self.cloud(base).oriented(axis)
        kind, _, rest = cloud_id.partition("/")
        if kind == "shape":
            parts = rest.split("/")
            if len(parts) != 3:
                raise ExplorerError(f"Bad shape id {cloud_id!r}; expected shape/CATEGORY/SEED/POINTS.")
            category, seed, n = parts
            return self.load_shape(category, seed, n)
        if kind == "mesh":
            return self.load_mesh(rest)
        if kind == "upload":
            raise ExplorerError("That uploaded cloud is no longer in memory; please upload the file again.")
        raise ExplorerError(f"Unknown cloud {cloud_id!r}; load a shape, a mesh or a file first.")

    def load_shape(self, category: str, seed=0, n_points=2048) -> LoadedCloud:
        """A synthetic part-labelled shape of any category and seed."""
        cats = self.categories()
        if category not in cats:
            raise ExplorerError(f"Unknown shape category {category!r}; choose one of: {', '.join(cats)}.")
        seed = as_int(seed, "seed", 0)
        if not 0 <= seed < 2**31:
            raise ExplorerError("The seed must be between 0 and 2147483647.")
        n = as_int(n_points, "number of points", 2048)
        if not SHAPE_POINTS[0] <= n <= SHAPE_POINTS[1]:
            raise ExplorerError(f"A generated shape can have {SHAPE_POINTS[0]:,} to {SHAPE_POINTS[1]:,} points, not {n:,}.")
        cloud_id = self.shape_id(category, seed, n)

        def make():
            from pcdviz.data.synthetic import make_shape

            pc = make_shape(category, seed=seed, n_points=n)
            return self._prepare(pc, cloud_id, f"{category} (synthetic, seed {seed})", "shape")

        return self.clouds.get_or_compute(cloud_id, make)

    def load_mesh(self, name: str) -> LoadedCloud:
        """One of the meshes shipped in Gradio's wheel (points sampled on its surface)."""
        assets = self.mesh_assets()
        if name not in assets:
            raise ExplorerError(f"Unknown built-in mesh {name!r}; choose one of: {', '.join(assets) or '(none installed)'}.")
        cloud_id = self.mesh_id(name)

        def make():
            return self._load_file(gradio_assets_dir() / name, cloud_id, f"{name} (Gradio's sample mesh)", "mesh")

        return self.clouds.get_or_compute(cloud_id, make)

    def upload_keys(self, path) -> dict[str, tuple]:
        """For an HDF5 upload, its datasets that hold point arrays (name -> shape); {} for other formats."""
        path = Path(path)
        if path.suffix.lower() not in (".h5", ".hdf5"):
            return {}
        from pcdviz import io

        try:
            keys = io.h5_datasets(path)
        except io.PointCloudError as e:
            raise ExplorerError(f"Could not read {path.name}: {e}") from None
        # point arrays: (N, 3+) or (B, N, 3+), as pcdviz.io reads them; else list everything so the error names it
        def is_points(s):  # (N, 3+), (B, N, 3+), or (3..9, N) as torch code saves it
            return (len(s) == 3 and s[-1] >= 3) or (len(s) == 2 and (s[1] >= 3 or (3 <= s[0] <= 9 and s[1] > 16)))

        return {k: tuple(s) for k, s in keys.items() if is_points(s)} or dict(keys)

    def load_upload(self, path, h5_key: str | None = None, h5_index=0) -> LoadedCloud:
        """A file the person uploaded, in any format pcdviz.io reads (for .h5: a dataset and an index)."""
        if path is None or str(path) == "":
            raise ExplorerError("Choose a file to upload first.")
        if not isinstance(path, (str, os.PathLike)):  # a file object (older Gradio) or a FileData-like dict
            path = path.get("path") if isinstance(path, dict) else getattr(path, "name", None)
            if not path:
                raise ExplorerError("The upload did not arrive as a file; please try again.")
        path = Path(path)
        if not path.is_file():
            raise ExplorerError(f"The uploaded file {path.name} is not there any more; please upload it again.")
        size = path.stat().st_size
        if size == 0:
            raise ExplorerError(f"{path.name} is empty.")
        if size > MAX_UPLOAD_BYTES:
            raise ExplorerError(f"{path.name} is {size / 1024**2:.0f} MB; the limit is {MAX_UPLOAD_BYTES // 1024**2} MB.")
        h5_index = as_int(h5_index, "HDF5 index", 0)
        keys = self.upload_keys(path)
        if not keys or h5_key not in keys:
            h5_key = None  # pcdviz.io picks the likely point dataset (points, xyz, data, ...)
        digest = _file_digest(path)
        cloud_id = f"upload/{digest}/{h5_key or ''}/{h5_index if keys else 0}"

        def make():
            c = self._load_file(path, cloud_id, path.name, "upload", h5_key=h5_key, h5_index=h5_index)
            c.h5_keys = keys
            return c

        return self.clouds.get_or_compute(cloud_id, make)

    def _load_file(self, path: Path, cloud_id: str, title: str, kind: str, **kw) -> LoadedCloud:
        from pcdviz import io

        try:  # big clouds are decimated on load (beyond display_max), never refused for their point count
            pc = io.load_point_cloud(path, decimate_to=self.display_max, **kw)
        except io.PointCloudError as e:
            raise ExplorerError(str(e)) from None  # already a sentence naming the file
        except MemoryError:
            raise ExplorerError(f"{path.name} is too large to load in memory.") from None
        except Exception as e:  # a reader bug must not show a traceback or stop the app
            log.exception("loading %s", path)
            raise ExplorerError(f"Could not read {path.name}: {type(e).__name__}: {e}") from None
        return self._prepare(pc, cloud_id, title, kind)

    def _prepare(self, pc, cloud_id: str, title: str, kind: str) -> LoadedCloud:
        """Normalise, decimate for display (beyond display_max) and record where the points came from."""
        from pcdviz import io

        points = np.asarray(pc.points, dtype=np.float32)
        min_points = getattr(io, "MIN_POINTS", 16)
        if len(points) < min_points:
            raise ExplorerError(f"{title} has only {len(points)} usable points; at least {min_points} are needed.")
        info = dict(getattr(pc, "info", {}) or {})
        n_loaded = int(info.get("decimated_from") or len(points))
        colors, labels, source_index = pc.colors, pc.labels, None
        if info.get("decimated_from"):
            # io decimated with decimate_for_display(seed 0), which depends only on the count: the same
            # call gives the kept points' indices among the loaded ones (shown on hover)
            source_index = np.asarray(io.decimate_for_display(np.empty((n_loaded, 0)), len(points)), dtype=np.int64)
        elif len(points) > self.display_max:  # big clouds are decimated for display, not refused
            source_index = np.asarray(io.decimate_for_display(points, self.display_max), dtype=np.int64)
            points = points[source_index]
            colors = None if colors is None else np.asarray(colors)[source_index]
            labels = None if labels is None else np.asarray(labels)[source_index]
        # io.normalize's centre and scale, kept so exports can go back to the file's own coordinates
        p64 = np.asarray(points, dtype=np.float64)
        center = p64.mean(axis=0)
        scale = float(np.sqrt(((p64 - center) ** 2).sum(axis=1).max()))
        points = np.ascontiguousarray(io.normalize(points), dtype=np.float32)
        n_in_file = info.get("n_in_file")
        return LoadedCloud(cloud_id=cloud_id, title=title, points=points,
                           colors=None if colors is None else np.asarray(colors, dtype=np.float32),
                           labels=None if labels is None else np.asarray(labels),
                           source_kind=kind, n_loaded=n_loaded,
                           n_in_file=int(n_in_file) if isinstance(n_in_file, (int, np.integer)) else None,
                           n_dropped=int(getattr(pc, "n_dropped", 0) or 0), is_mesh=bool(info.get("is_mesh")),
                           fmt=str(info.get("format", "")), source_index=source_index,
                           h5_key=info.get("key"), h5_index=int(info.get("index", 0) or 0),
                           norm_center=center, norm_scale=scale if scale > 0 else 1.0,
                           extra={k: info[k] for k in ("n_samples", "class_name", "label", "category") if k in info})

    def shown_cloud(self, cloud_id: str, up: str = "auto") -> LoadedCloud:
        """The cloud turned the way a view shows it (and the model sees it): its up axis resolved."""
        cloud = self.cloud(cloud_id)
        if "|up=" in cloud.cloud_id:
            return cloud
        return cloud.oriented(resolve_up(cloud.fmt, up)[0])


def cloud_info_markdown(cloud: LoadedCloud, n_in: int | None, s: ViewSettings) -> str:
    """Point count, what was dropped, how it was downsampled for display and for the model (n_in points in,
    when a checkpoint is chosen), which way is up."""
    lines = [f"**{cloud.title}**" + (f" ({cloud.fmt})" if cloud.fmt else "")]
    if cloud.is_mesh:
        verts = f" with {cloud.n_in_file:,} vertices" if cloud.n_in_file else ""
        lines.append(f"mesh{verts}: {cloud.n_loaded:,} points sampled on its surface")
    elif cloud.n_in_file is not None and cloud.n_in_file != cloud.n_loaded:
        lines.append(f"{cloud.n_in_file:,} points in the file, {cloud.n_loaded:,} loaded")
    else:
        lines.append(f"{cloud.n_loaded:,} points")
    lines.append(f"non-finite points dropped: {cloud.n_dropped:,}")
    if len(cloud.points) < cloud.n_loaded:
        lines.append(f"display: decimated {cloud.n_loaded:,} → {len(cloud.points):,} points")
    else:
        lines.append(f"display: all {len(cloud.points):,} points")
    if n_in:
        how = "farthest point sampling" if len(cloud.points) >= n_in else "padded by repeating points"
        lines.append(f"model input: {len(cloud.points):,} → {n_in:,} points ({how})")
        lines.append(f"sampling start (input and patch centres): {s.fps_start}, {FPS_STARTS[s.fps_start]}"
                     + (f"; maps averaged over {s.patchings} patchings, each smoothed over its nearest patch centres"
                        if s.patchings > 1 else ""))
    axis, reason = resolve_up(cloud.fmt, s.up)
    lines.append(f"up axis: {axis}" + (f" (auto: {reason})" if s.up == "auto" else " (chosen)"))
    n_samples = cloud.extra.get("n_samples")
    if cloud.h5_key and cloud.fmt != "npy":   # a .npy holds one unnamed array: only its sample is news
        lines.append(f"array `{cloud.h5_key}`" + (f", sample {cloud.h5_index} of {n_samples}" if n_samples else ""))
    elif n_samples:
        lines.append(f"sample {cloud.h5_index} of {n_samples}")
    if cloud.extra.get("class_name") or cloud.extra.get("label") is not None:
        lines.append(f"class: {cloud.extra.get('class_name', cloud.extra.get('label'))}")
    return "  \n".join(lines)


def _file_digest(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]
